"""npm's account endpoints with the real npm CLI: ``npm login`` both ways (legacy,
prompted on a terminal; web, its page driven from here), ``whoami``, ``logout``,
``token list|create|revoke``, and an install from a private remote with the token
login wrote, in both shapes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from app import keys
from app.auth.manage import create_principal, create_token
from app.auth.records import AuthRecords
from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.integration.test_remote_npm import FakeRegistry

REPO = "npm-private"
PASSWORD = "correct horse battery staple"
TOKEN = re.compile(r"aat_[A-Za-z0-9_-]{43}")


@dataclass
class Service:
    client: TestClient  # carries no credentials
    records: AuthRecords
    registry: FakeRegistry

    @property
    def url(self) -> str:
        return str(self.client.make_url(f"/repository/{REPO}/"))

    async def login(self, user: str = "alice") -> str:
        """A token from the legacy login, as npm would get it."""
        response = await self.client.put(
            f"/repository/{REPO}/-/user/org.couchdb.user:{user}",
            json={"name": user, "password": PASSWORD},
        )
        assert response.status == 201, await response.text()
        token: str = (await response.json())["token"]
        return token


def private_config(make_config: ConfigFactory, upstream: TestServer) -> Any:
    repo = {
        "name": REPO, "format": "npm", "kind": "remote", "anonymous_read": False,
        "options": {"upstream": str(upstream.make_url("")).rstrip("/"), "retries": 0},
    }  # fmt: skip
    grants = [{"repository": REPO, "users": ["alice", "bob"], "actions": ["read"]}]
    return make_config(repositories=[repo], auth={"permissions": grants})


@pytest.fixture
async def service(aiohttp_client: Any, aiohttp_server: Any, make_config: ConfigFactory) -> Service:
    registry = FakeRegistry()
    upstream: TestServer = await aiohttp_server(registry.app())
    registry.base = str(upstream.make_url("")).rstrip("/")
    app = create_app(private_config(make_config, upstream))
    client: TestClient = await aiohttp_client(app, anonymous=True)
    records = app[keys.AUTH].records
    for name in ("alice", "bob"):
        await create_principal(records, name, password=PASSWORD)
    return Service(client, records, registry)


@dataclass
class Npm:
    """The real npm, with a config, a cache and a project of its own under ``home``,
    talking to ``registry`` only."""

    home: Path
    registry: str

    def __post_init__(self) -> None:
        (self.home / "project").mkdir(parents=True, exist_ok=True)
        package = {"name": "consumer", "version": "0.0.0"}
        (self.home / "project" / "package.json").write_text(json.dumps(package))
        self.userconfig.touch()

    @property
    def userconfig(self) -> Path:
        return self.home / "npmrc"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_")}
        env.update(npm_config_update_notifier="false", npm_config_fund="false")
        return env

    def args(self, *args: str) -> list[str]:
        return [
            *args, "--registry", self.registry, "--userconfig", str(self.userconfig),
            "--cache", str(self.home / "cache"),
        ]  # fmt: skip

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["npm", *self.args(*args)], cwd=self.home / "project", env=self.env(),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def prompted(self, answers: list[tuple[str, str]], *args: str) -> tuple[int, str]:
        """Run npm on a terminal, answering each prompt; its exit status and output."""
        child = pexpect.spawn(
            "npm", self.args(*args), cwd=str(self.home / "project"), env=self.env(),
            encoding="utf-8", timeout=60,
        )  # fmt: skip
        for prompt, answer in answers:
            child.expect_exact(prompt)
            child.sendline(answer)
        child.expect(pexpect.EOF)
        child.close()
        output = child.before or ""
        return child.exitstatus if child.exitstatus is not None else -1, output

    def token(self) -> str | None:
        """The ``_authToken`` npm keeps for this registry (npm deletes a config it empties)."""
        key = "//" + self.registry.split("://", 1)[1] + ":_authToken="
        kept = self.userconfig.read_text() if self.userconfig.exists() else ""
        for line in kept.splitlines():
            if line.startswith(key):
                return line.removeprefix(key)
        return None

    def use(self, token: str) -> None:
        key = "//" + self.registry.split("://", 1)[1] + ":_authToken="
        self.userconfig.write_text(f"{key}{token}\n")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def whoami(service: Service, token: str) -> int:
    response = await service.client.get(f"/repository/{REPO}/-/whoami", headers=bearer(token))
    return response.status


async def test_legacy_login_on_a_terminal(service: Service, tmp_path: Path) -> None:
    npm = Npm(tmp_path, service.url)
    status, output = await asyncio.to_thread(
        npm.prompted, [("Username:", "alice"), ("Password:", PASSWORD)],
        "login", "--auth-type=legacy",
    )  # fmt: skip
    assert status == 0, output
    token = npm.token()
    assert token is not None and TOKEN.fullmatch(token), npm.userconfig.read_text()
    (row,) = await service.records.tokens("alice")
    assert row.description == "npm login" and token.startswith(row.prefix)
    whoami = await asyncio.to_thread(npm.run, "whoami")
    assert whoami.returncode == 0 and whoami.stdout.strip() == "alice", whoami.stderr

    # A wrong password signs nobody in, and npm says so.
    other = Npm(tmp_path / "wrong", service.url)
    status, output = await asyncio.to_thread(
        other.prompted, [("Username:", "alice"), ("Password:", "not it")],
        "login", "--auth-type=legacy",
    )  # fmt: skip
    assert status != 0 and "401" in output, output
    assert other.token() is None
    assert len(await service.records.tokens("alice")) == 1


async def test_legacy_login_refuses_in_npm_shape(service: Service) -> None:
    base = f"/repository/{REPO}/-/user/org.couchdb.user:"
    attempts = [
        ("alice", {"name": "alice", "password": "not it"}),
        ("nobody", {"name": "nobody", "password": PASSWORD}),  # no self-registration
        ("alice", {"name": "alice"}),
    ]
    for name, body in attempts:
        response = await service.client.put(base + name, json=body)
        assert response.status == 401, await response.text()
        answer = await response.json()
        assert set(answer) == {"error"} and "password" in answer["error"]
        assert PASSWORD not in await response.text()
    assert await service.records.principal("nobody") is None
    # A token as the password: no trading a token for a new one.
    token = await service.login()
    response = await service.client.put(base + "alice", json={"name": "alice", "password": token})
    assert response.status == 401
    response = await service.client.put(base + "alice", json={"name": "bob", "password": PASSWORD})
    assert response.status == 400
    response = await service.client.put(base + "alice", data=b"[1]")
    assert response.status == 400
    response = await service.client.put(
        base + "alice", json={"name": "alice", "password": PASSWORD}
    )
    assert response.status == 201
    answer = await response.json()
    assert answer["ok"] is True and answer["id"] == "org.couchdb.user:alice"
    assert response.headers["Cache-Control"] == "no-store"
    assert await whoami(service, answer["token"]) == 200


async def test_web_login_with_npm(service: Service, tmp_path: Path) -> None:
    npm = Npm(tmp_path, service.url)
    process = await asyncio.create_subprocess_exec(
        "npm", *npm.args("login"), cwd=npm.home / "project", env=npm.env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        login_url = ""
        while not login_url:
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            assert line, "npm ended without printing a login URL"
            if "/-/v1/login/" in line:
                login_url = line.strip()
        assert login_url.startswith(service.url + "-/v1/login/")
        path = login_url.removeprefix(str(service.client.make_url("")).rstrip("/"))
        page = await service.client.get(path)
        assert page.status == 200 and 'name="password"' in await page.text()
        assert page.headers["X-Frame-Options"] == "DENY"
        wrong = await service.client.post(path, data={"username": "alice", "password": "no"})
        assert wrong.status == 401 and "wrong" in await wrong.text()
        signed = await service.client.post(path, data={"username": "alice", "password": PASSWORD})
        assert signed.status == 200 and "alice" in await signed.text()
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    token = npm.token()
    assert token is not None and TOKEN.fullmatch(token), npm.userconfig.read_text()
    assert await whoami(service, token) == 200
    # The page is done with: a second sign-in finds nothing to sign in to.
    again = await service.client.post(path, data={"username": "bob", "password": PASSWORD})
    assert again.status == 404
    assert await service.records.tokens("bob") == []


async def test_web_login_sessions_across_replicas(
    service: Service, aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    """Opened on one replica, signed in on another, collected on the first; the row
    never holds the token, the done secret only as its sha256; once, then gone."""
    assert service.client.app is not None
    config = service.client.app[keys.CONFIG]
    other: TestClient = await aiohttp_client(create_app(config), anonymous=True)
    first, second = service.client, other
    opened = await first.post(f"/repository/{REPO}/-/v1/login", json={})
    assert opened.status == 200
    urls = await opened.json()
    origin = str(first.make_url("")).rstrip("/")
    login, done = urls["loginUrl"], urls["doneUrl"]
    assert login.startswith(f"{origin}/repository/{REPO}/-/v1/login/")
    assert done.startswith(f"{origin}/repository/{REPO}/-/v1/done/")
    login_path, done_path = login.removeprefix(origin), done.removeprefix(origin)
    secret = done.partition("?secret=")[2]
    assert secret

    waiting = await first.get(done_path)
    assert waiting.status == 202 and waiting.headers["Retry-After"] == "1"
    other_secret = ("y" if secret[0] == "x" else "x") + secret[1:]  # never the same one
    wrong_secret = await first.get(done_path.replace(secret, other_secret))
    assert wrong_secret.status == 404
    signed = await second.post(login_path, data={"username": "bob", "password": PASSWORD})
    assert signed.status == 200
    db = service.client.app[keys.METADATA].db
    (row,) = await db.fetch("SELECT * FROM npm_login_sessions")
    assert row["principal"] == "bob" and secret not in json.dumps(row)
    assert "aat_" not in json.dumps(row)

    collected = await first.get(done_path)
    assert collected.status == 200
    token = (await collected.json())["token"]
    assert TOKEN.fullmatch(token) and await whoami(service, token) == 200
    assert (await service.records.tokens("bob"))[0].description == "npm login"
    for client in (first, second):
        assert (await client.get(done_path)).status == 404  # collected once
    assert await db.fetch("SELECT * FROM npm_login_sessions") == []

    # A session nobody finished in time is gone (410), then unknown.
    late = await (await second.post(f"/repository/{REPO}/-/v1/login", json={})).json()
    late_done = URL(late["doneUrl"]).path_qs
    await db.execute("UPDATE npm_login_sessions SET expires_at = 0")
    page = await first.get(URL(late["loginUrl"]).path_qs)
    assert page.status == 404
    assert (await first.get(late_done)).status == 410
    assert (await first.get(late_done)).status == 404


async def test_whoami_tokens_and_logout_with_npm(service: Service, tmp_path: Path) -> None:
    npm = Npm(tmp_path, service.url)
    token = await service.login()
    npm.use(token)
    whoami_run = await asyncio.to_thread(npm.run, "whoami")
    assert whoami_run.returncode == 0 and whoami_run.stdout.strip() == "alice"

    listed = await asyncio.to_thread(npm.run, "token", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (shown,) = json.loads(listed.stdout)
    (row,) = await service.records.tokens("alice")
    assert shown["key"] == str(row.id) and shown["token"] == row.prefix
    assert shown["readonly"] is False and shown["cidr_whitelist"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", shown["created"])

    status, output = await asyncio.to_thread(
        npm.prompted, [("npm password:", PASSWORD)], "token", "create"
    )
    assert status == 0, output
    (created,) = TOKEN.findall(output)
    assert await whoami(service, created) == 200
    assert len(await service.records.tokens("alice")) == 2
    status, output = await asyncio.to_thread(
        npm.prompted, [("npm password:", "not it")], "token", "create"
    )
    assert status != 0 and "401" in output, output
    assert len(await service.records.tokens("alice")) == 2

    created_row = next(r for r in await service.records.tokens("alice") if r.id != row.id)
    revoked = await asyncio.to_thread(npm.run, "token", "revoke", str(created_row.id))
    assert revoked.returncode == 0 and "Removed 1 token" in revoked.stdout, revoked.stderr
    assert await whoami(service, created) == 401
    listed = await asyncio.to_thread(npm.run, "token", "list", "--json")
    assert [t["key"] for t in json.loads(listed.stdout)] == [str(row.id)]

    logout = await asyncio.to_thread(npm.run, "logout")
    assert logout.returncode == 0, logout.stderr
    assert npm.token() is None
    assert await whoami(service, token) == 401
    after = await asyncio.to_thread(npm.run, "whoami")
    assert after.returncode != 0 and "ENEEDAUTH" in after.stderr


async def test_account_endpoints_are_the_callers_own(service: Service) -> None:
    client = service.client
    base = f"/repository/{REPO}/-"
    assert (await client.get(f"{base}/whoami")).status == 401
    assert (await client.get(f"{base}/npm/v1/tokens")).status == 401
    alice, bob = await service.login("alice"), await service.login("bob")
    answer = await client.get(f"{base}/whoami", headers=bearer(alice))
    assert await answer.json() == {"username": "alice"}
    basic = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    answer = await client.get(f"{base}/whoami", headers={"Authorization": f"Basic {basic}"})
    assert await answer.json() == {"username": "bob"}

    (bobs,) = await service.records.tokens("bob")
    tokens = f"{base}/npm/v1/tokens"
    assert (await client.delete(f"{tokens}/token/{bobs.id}", headers=bearer(alice))).status == 404
    assert (await client.delete(f"{tokens}/token/{bobs.id}")).status == 401
    assert await whoami(service, bob) == 200
    # A token's whole secret in a path (so in the access log) is revoked, whoever sent it.
    for where in (f"{tokens}/token/", f"{base}/user/token/"):
        assert (await client.delete(where + bob, headers=bearer(alice))).status in (204, 200)
        assert await whoami(service, bob) == 401
        bob = await service.login("bob")
    unknown = f"{base}/user/token/aat_{'x' * 43}"
    assert (await client.delete(unknown, headers=bearer(alice))).status == 404
    listed = await (await client.get(f"{base}/npm/v1/tokens", headers=bearer(alice))).json()
    assert listed["total"] == 1 and listed["urls"] == {}

    # A token limited by scopes neither lists nor makes tokens.
    scoped, _ = await create_token(
        service.records, "alice", scopes=[{"repository": REPO, "actions": ["read"]}]
    )
    assert (await client.get(f"{base}/npm/v1/tokens", headers=bearer(scoped))).status == 403
    refused = await client.post(
        f"{base}/npm/v1/tokens", json={"password": PASSWORD}, headers=bearer(scoped)
    )
    assert refused.status == 403

    body = {"password": PASSWORD, "readonly": True, "cidr_whitelist": ["10.0.0.0/8"]}
    refused = await client.post(tokens, json=body, headers=bearer(alice))
    assert refused.status == 400  # an allow-list is refused, never ignored
    made = await client.post(tokens, json={**body, "cidr_whitelist": []}, headers=bearer(alice))
    assert made.status == 200, await made.text()
    readonly = await made.json()
    assert readonly["readonly"] is True and TOKEN.fullmatch(readonly["token"])
    row = await service.records.token(int(readonly["key"]))
    assert row is not None and row.scopes == [{"repository": "*", "actions": ["read"]}]
    read = await client.get(f"/repository/{REPO}/demo", headers=bearer(readonly["token"]))
    assert read.status == 200


async def test_private_install_needs_the_token(service: Service, tmp_path: Path) -> None:
    anonymous = Npm(tmp_path / "anonymous", service.url)
    refused = await asyncio.to_thread(anonymous.run, "install", "--no-audit", "demo")
    assert refused.returncode != 0 and "E401" in refused.stderr, refused.stderr
    assert not (anonymous.home / "project" / "node_modules" / "demo").exists()

    npm = Npm(tmp_path / "alice", service.url)
    npm.use(await service.login())
    installed = await asyncio.to_thread(npm.run, "install", "--no-audit", "demo", "@acme/util")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    for name in ("demo", "@acme/util"):
        package = npm.home / "project" / "node_modules" / name / "package.json"
        assert json.loads(package.read_text())["name"] == name
    assert service.registry.requests[service.registry.tarball_path("demo")] == 1
