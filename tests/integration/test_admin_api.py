"""The management API (``/api/v1/``) and the audit log, in both shapes: every endpoint's
answer and refusal, a user managing only their own tokens, and no answer ever holding
a password, its hash or a token's secret but the one that makes the token."""

from __future__ import annotations

import argparse
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app import cli_auth, keys
from app.auth.audit import AuditRecords, Entry
from app.auth.manage import create_principal, create_token
from app.config import Config, GcConfig
from app.middleware import FORMATS
from app.server import create_app
from collector import Collector
from tests.integration.conftest import ConfigFactory
from tests.oci_docs import digest_of, image_manifest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPOS = [
    {"name": "files", "format": "generic", "kind": "local"},
    {"name": "docker", "format": "oci", "kind": "local"},
]
PERMISSIONS = [{"repository": "files", "users": ["reader"], "actions": ["read"]}]
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-1"}


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Api:
    client: TestClient
    config: Config
    headers: dict[str, dict[str, str]]
    secrets: set[str]  # every password and token secret handed out
    answers: list[tuple[Answer, str | None]] = field(default_factory=list)  # (it, its secret)

    @property
    def app(self) -> web.Application:
        app = self.client.app
        assert app is not None
        return app

    async def call(self, who: str, method: str, path: str, body: Any = None) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        response = await self.client.request(
            method, path, data=data, headers={"Content-Type": "application/json",
                                              **self.headers[who]},
        )  # fmt: skip
        answer = Answer(response.status, await response.read())
        made = None
        if method == "POST" and path == "/api/v1/tokens" and answer.status == 201:
            made = answer.json()["token"]
            self.secrets.add(made)
        self.answers.append((answer, made))
        return answer

    async def flushed(self) -> None:
        await self.app[keys.AUTH].audit.flush()


@pytest.fixture
async def api(aiohttp_client: Any, make_config: ConfigFactory) -> Any:
    config = make_config(repositories=REPOS, auth={"permissions": PERMISSIONS})
    app = create_app(config)
    client: TestClient = await aiohttp_client(app, anonymous=True)
    records = app[keys.AUTH].records
    for name, password in PASSWORDS.items():
        await create_principal(records, name, password=password)
    await create_principal(records, "ci", kind="service")
    admin_token, _ = await create_token(records, "admin")
    alice_token, _ = await create_token(records, "alice")
    scoped, _ = await create_token(records, "alice", [{"repository": "files", "actions": ["read"]}])
    headers = {
        "anonymous": {},
        "admin": {"Authorization": f"Bearer {admin_token}"},
        "alice": {"Authorization": basic("alice", PASSWORDS["alice"])},
        "alice-token": {"Authorization": f"Bearer {alice_token}"},
        "alice-scoped": {"Authorization": f"Bearer {scoped}"},
        "bob": {"Authorization": basic("bob", PASSWORDS["bob"])},
    }
    service = Api(client, config, headers, {admin_token, alice_token, scoped, *PASSWORDS.values()})
    yield service
    # No answer holds a secret (but the token a create made) or a password's hash.
    hashes = {r.password_hash for r in await records.principals() if r.password_hash}
    assert hashes
    for answer, made in service.answers:
        for secret in service.secrets | hashes:
            if secret != made:
                assert secret.encode() not in answer.body, answer.body


def error_of(answer: Answer) -> dict[str, Any]:
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    error: dict[str, Any] = body["error"]
    return error


# (method, path, body) of every administrator's endpoint.
ADMIN_ONLY: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/users", None),
    ("POST", "/api/v1/users", {"name": "mallory"}),
    ("GET", "/api/v1/users/bob", None),
    ("PATCH", "/api/v1/users/bob", {"admin": True}),
    ("DELETE", "/api/v1/users/bob", None),
    ("GET", "/api/v1/groups", None),
    ("POST", "/api/v1/groups", {"name": "team"}),
    ("DELETE", "/api/v1/groups/team", None),
    ("PUT", "/api/v1/groups/team/members/alice", None),
    ("DELETE", "/api/v1/groups/team/members/alice", None),
    ("GET", "/api/v1/permissions", None),
    (
        "POST",
        "/api/v1/permissions",
        {"subject": "user:alice", "repository": "*", "actions": ["admin"]},
    ),
    ("DELETE", "/api/v1/permissions?subject=user:alice&repository=files", None),
    ("GET", "/api/v1/signing-keys", None),
    ("POST", "/api/v1/signing-keys", None),
    ("DELETE", "/api/v1/signing-keys/some-kid", None),
    ("GET", "/api/v1/audit", None),
]
SELF_SERVICE: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/whoami", None),
    ("GET", "/api/v1/tokens", None),
    ("POST", "/api/v1/tokens", {}),
    ("DELETE", "/api/v1/tokens/1", None),
]


async def test_anonymous_is_asked_to_sign_in_and_a_user_is_refused(api: Api) -> None:
    for method, path, body in ADMIN_ONLY + SELF_SERVICE:
        answer = await api.call("anonymous", method, path, body)
        assert answer.status == 401, (method, path)
        assert error_of(answer)["code"] == "UNAUTHORIZED"
    for method, path, body in ADMIN_ONLY:
        for who in ("alice", "alice-token"):
            answer = await api.call(who, method, path, body)
            assert answer.status == 403, (who, method, path)
            assert error_of(answer)["code"] == "DENIED"
    wrong = {"Authorization": basic("alice", "not-her-password")}
    api.headers["wrong"] = wrong
    assert (await api.call("wrong", "GET", "/api/v1/whoami")).status == 401
    # Nothing refused changed anything.
    assert (await api.call("admin", "GET", "/api/v1/users/mallory")).status == 404


async def test_whoami(api: Api) -> None:
    alice = await api.call("alice-token", "GET", "/api/v1/whoami")
    assert alice.status == 200
    assert alice.json()["name"] == "alice" and alice.json()["admin"] is False
    assert alice.json()["token_id"] is not None
    admin = await api.call("admin", "GET", "/api/v1/whoami")
    assert admin.json()["name"] == "admin" and admin.json()["admin"] is True


async def test_users_and_service_accounts(api: Api) -> None:
    made = await api.call(
        "admin",
        "POST",
        "/api/v1/users",
        {"name": "carol", "password": "carol-pw-1", "description": "QA"},
    )
    api.secrets.add("carol-pw-1")
    assert made.status == 201
    assert made.json() == {"name": "carol", "kind": "user", "admin": False, "disabled": False,
                           "description": "QA", "password": True}  # fmt: skip
    service = await api.call(
        "admin", "POST", "/api/v1/users", {"name": "deploy", "kind": "service"}
    )
    assert service.status == 201 and service.json()["password"] is False
    for body, status in [
        ({"name": "carol"}, 409),
        ({"name": "bad name"}, 400),
        ({"name": "x" * 129}, 400),
        ({"name": "svc", "kind": "service", "password": "pw"}, 400),
        ({"name": "k", "kind": "robot"}, 400),
        ({"name": "e", "password": ""}, 400),
        ({"name": "f", "admin": "yes"}, 400),
        ({"name": "g", "colour": "red"}, 400),
        ([], 400),
    ]:
        answer = await api.call("admin", "POST", "/api/v1/users", body)
        assert answer.status == status, body
        assert error_of(answer)["message"]
    names = [u["name"] for u in (await api.call("admin", "GET", "/api/v1/users")).json()]
    assert names == sorted(["admin", "alice", "bob", "carol", "ci", "deploy"])
    assert (await api.call("admin", "GET", "/api/v1/users/carol")).json()["description"] == "QA"
    assert (await api.call("admin", "GET", "/api/v1/users/nobody")).status == 404
    assert (await api.call("admin", "GET", "/api/v1/users/bad%20name")).status == 400

    api.headers["carol"] = {"Authorization": basic("carol", "carol-pw-1")}
    assert (await api.call("carol", "GET", "/api/v1/whoami")).status == 200
    changed = await api.call(
        "admin", "PATCH", "/api/v1/users/carol", {"admin": True, "password": "carol-pw-2"}
    )
    api.secrets.add("carol-pw-2")
    assert changed.status == 200 and changed.json()["admin"] is True
    assert (await api.call("carol", "GET", "/api/v1/whoami")).status == 401  # the old password
    api.headers["carol"] = {"Authorization": basic("carol", "carol-pw-2")}
    assert (await api.call("carol", "GET", "/api/v1/users")).status == 200  # an admin now
    assert (
        await api.call("admin", "PATCH", "/api/v1/users/carol", {"disabled": True})
    ).status == 200
    assert (await api.call("carol", "GET", "/api/v1/whoami")).status == 401
    for body, status in [
        ({}, 400),
        ({"disabled": 1}, 400),
        ({"password": "x"}, 404),
        ({"name": "other"}, 400),
    ]:
        path = "/api/v1/users/nobody" if status == 404 else "/api/v1/users/carol"
        assert (await api.call("admin", "PATCH", path, body)).status == status, body
    assert (
        await api.call("admin", "PATCH", "/api/v1/users/deploy", {"password": "p"})
    ).status == 400
    assert (await api.call("admin", "PATCH", "/api/v1/users/admin", {"admin": False})).status == 400
    assert (await api.call("admin", "DELETE", "/api/v1/users/admin")).status == 400
    assert (await api.call("admin", "DELETE", "/api/v1/users/carol")).status == 204
    assert (await api.call("admin", "DELETE", "/api/v1/users/carol")).status == 404
    assert (await api.call("admin", "GET", "/api/v1/users/carol")).status == 404


async def test_groups_and_members(api: Api) -> None:
    assert (await api.call("admin", "POST", "/api/v1/groups", {"name": "team"})).status == 201
    assert (await api.call("admin", "POST", "/api/v1/groups", {"name": "team"})).status == 409
    assert (await api.call("admin", "POST", "/api/v1/groups", {"name": "a/b"})).status == 400
    assert (await api.call("admin", "POST", "/api/v1/groups", {})).status == 400
    for member in ("alice", "ci"):
        path = f"/api/v1/groups/team/members/{member}"
        assert (await api.call("admin", "PUT", path)).status == 204
    assert (await api.call("admin", "PUT", "/api/v1/groups/team/members/nobody")).status == 404
    assert (await api.call("admin", "PUT", "/api/v1/groups/none/members/alice")).status == 404
    listed = await api.call("admin", "GET", "/api/v1/groups")
    assert listed.json() == [{"name": "team", "members": ["alice", "ci"]}]
    # Membership counts at once: a grant to the group lets alice write.
    grant = {"subject": "group:team", "repository": "files", "actions": ["write"]}
    assert (await api.call("admin", "POST", "/api/v1/permissions", grant)).status == 201
    put = await api.client.put("/repository/files/a.txt", data=b"a", headers=api.headers["alice"])
    assert put.status == 201
    assert (await api.call("admin", "DELETE", "/api/v1/groups/team/members/alice")).status == 204
    put = await api.client.put("/repository/files/b.txt", data=b"b", headers=api.headers["alice"])
    assert put.status == 403
    listed = await api.call("admin", "GET", "/api/v1/groups")
    assert listed.json() == [{"name": "team", "members": ["ci"]}]
    assert (await api.call("admin", "DELETE", "/api/v1/groups/team")).status == 204
    assert (await api.call("admin", "DELETE", "/api/v1/groups/team")).status == 404
    assert (await api.call("admin", "GET", "/api/v1/groups")).json() == []


async def test_a_user_manages_only_their_own_tokens(api: Api) -> None:
    made = await api.call("alice", "POST", "/api/v1/tokens", {"description": "laptop",
                                                              "expires_in": "30d"})  # fmt: skip
    assert made.status == 201
    token = made.json()
    assert token["owner"] == "alice" and token["token"].startswith(token["prefix"])
    assert token["expires_at"] > time.time() + 29 * 86400
    mine = await api.call("alice", "GET", "/api/v1/tokens")
    assert {t["owner"] for t in mine.json()} == {"alice"} and len(mine.json()) == 3
    assert all("token" not in t for t in mine.json())
    assert (await api.call("alice", "GET", "/api/v1/tokens?user=bob")).status == 403
    assert (await api.call("alice", "POST", "/api/v1/tokens", {"user": "bob"})).status == 403
    assert (await api.call("alice-scoped", "POST", "/api/v1/tokens", {})).status == 403
    assert (await api.call("alice-scoped", "GET", "/api/v1/tokens")).status == 403

    bobs = await api.call("admin", "POST", "/api/v1/tokens", {"user": "bob"})
    assert bobs.status == 201 and bobs.json()["owner"] == "bob"
    assert (await api.call("alice", "DELETE", f"/api/v1/tokens/{bobs.json()['id']}")).status == 404
    assert (await api.call("bob", "GET", "/api/v1/tokens")).json()[0]["revoked"] is False

    api.headers["laptop"] = {"Authorization": f"Bearer {token['token']}"}
    assert (await api.call("laptop", "GET", "/api/v1/whoami")).status == 200
    assert (await api.call("alice", "DELETE", f"/api/v1/tokens/{token['id']}")).status == 204
    await api.app[keys.AUTH].look()
    assert (await api.call("laptop", "GET", "/api/v1/whoami")).status == 401  # right after
    assert (await api.call("alice", "DELETE", f"/api/v1/tokens/{token['id']}")).status == 404
    assert (await api.call("alice", "DELETE", "/api/v1/tokens/abc")).status == 400
    assert (await api.call("alice", "DELETE", "/api/v1/tokens/999999")).status == 404


async def test_an_administrator_makes_tokens_for_anyone(api: Api) -> None:
    scopes = [{"repository": "files", "actions": ["write", "read"]}]
    made = await api.call("admin", "POST", "/api/v1/tokens", {"user": "ci", "scopes": scopes})
    assert made.status == 201
    assert made.json()["scopes"] == [{"repository": "files", "actions": ["read", "write"]}]
    api.headers["ci"] = {"Authorization": f"Bearer {made.json()['token']}"}
    assert (await api.call("ci", "GET", "/api/v1/whoami")).json()["kind"] == "service"
    for body, status in [
        ({"user": "nobody"}, 404),
        ({"user": "bad name"}, 400),
        ({"scopes": [{"repository": "files", "actions": ["fly"]}]}, 400),
        ({"scopes": "all"}, 400),
        ({"expires_in": -5}, 400),
        ({"expires_in": "soon"}, 400),
        ({"expires_in": True}, 400),
        ({"secret": "mine"}, 400),
    ]:
        answer = await api.call("admin", "POST", "/api/v1/tokens", body)
        assert answer.status == status, body
    every = await api.call("admin", "GET", "/api/v1/tokens")
    assert {"admin", "alice", "ci"} <= {t["owner"] for t in every.json()}
    only = await api.call("admin", "GET", "/api/v1/tokens?user=ci")
    assert [t["id"] for t in only.json()] == [made.json()["id"]]
    assert (await api.call("admin", "DELETE", f"/api/v1/tokens/{made.json()['id']}")).status == 204
    assert (await api.call("ci", "GET", "/api/v1/whoami")).status == 401


async def test_permissions(api: Api) -> None:
    listed = await api.call("admin", "GET", "/api/v1/permissions")
    assert listed.json() == {
        "granted": [],
        "configured": [{"repository": "files", "users": ["reader"], "groups": [],
                        "actions": ["read"]}],
    }  # fmt: skip
    put = await api.client.put("/repository/files/x.txt", data=b"x", headers=api.headers["bob"])
    assert put.status == 403
    grant = {"subject": "user:bob", "repository": "fil*", "actions": ["write", "read"]}
    answer = await api.call("admin", "POST", "/api/v1/permissions", grant)
    assert answer.status == 201 and answer.json()["actions"] == ["read", "write"]
    put = await api.client.put("/repository/files/x.txt", data=b"x", headers=api.headers["bob"])
    assert put.status == 201
    listed = await api.call("admin", "GET", "/api/v1/permissions")
    assert listed.json()["granted"] == [
        {"subject": "user:bob", "repository": "fil*", "actions": ["read", "write"]}
    ]
    for body in [
        {"subject": "bob", "repository": "*", "actions": ["read"]},
        {"subject": "user:", "repository": "*", "actions": ["read"]},
        {"subject": "user:bob", "repository": "", "actions": ["read"]},
        {"subject": "user:bob", "repository": "*", "actions": []},
        {"subject": "user:bob", "repository": "*", "actions": ["root"]},
        {"subject": "user:bob", "repository": "*", "actions": "read"},
    ]:
        assert (await api.call("admin", "POST", "/api/v1/permissions", body)).status == 400, body
    gone = "/api/v1/permissions?subject=user:bob&repository=fil*"
    assert (await api.call("admin", "DELETE", gone)).status == 204
    assert (await api.call("admin", "DELETE", gone)).status == 404
    assert (await api.call("admin", "DELETE", "/api/v1/permissions")).status == 400
    put = await api.client.put("/repository/files/y.txt", data=b"y", headers=api.headers["bob"])
    assert put.status == 403


async def test_signing_keys(api: Api) -> None:
    token = await api.client.get(
        "/v2/token?service=artifactapi&scope=repository:docker/app:pull",
        headers=api.headers["admin"],
    )
    assert token.status == 200  # made the first key
    first = (await api.call("admin", "GET", "/api/v1/signing-keys")).json()
    assert len(first) == 1 and first[0]["retired"] is False
    rotated = await api.call("admin", "POST", "/api/v1/signing-keys")
    assert rotated.status == 201 and rotated.json()["kid"] != first[0]["kid"]
    kid = first[0]["kid"]
    assert (await api.call("admin", "DELETE", f"/api/v1/signing-keys/{kid}")).status == 204
    assert (await api.call("admin", "DELETE", f"/api/v1/signing-keys/{kid}")).status == 404
    listed = (await api.call("admin", "GET", "/api/v1/signing-keys")).json()
    assert {k["kid"]: k["retired"] for k in listed} == {kid: True, rotated.json()["kid"]: False}
    for answer, _ in api.answers:
        assert b"PRIVATE KEY" not in answer.body


async def push_image(api: Api, tag: str) -> None:
    config, layer = json.dumps({"tag": tag}).encode(), tag.encode() * 100
    for data in (config, layer):
        response = await api.client.post(
            f"/v2/docker/app/blobs/uploads/?digest={digest_of(data)}", data=data,
            headers={**api.headers["admin"], "Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert response.status == 201
    response = await api.client.put(
        f"/v2/docker/app/manifests/{tag}", data=image_manifest(config, [layer]),
        headers={**api.headers["admin"], "Content-Type": OCI_MANIFEST},
    )  # fmt: skip
    assert response.status == 201


async def test_the_audit_log(api: Api) -> None:
    since = time.time() - 1
    for who, path, status in [("admin", "a.txt", 201), ("bob", "b.txt", 403)]:
        put = await api.client.put(f"/repository/files/{path}", data=b"x", headers=api.headers[who])
        assert put.status == status
    anonymous = await api.client.delete("/repository/files/a.txt")
    assert anonymous.status == 401
    deleted = await api.client.delete("/repository/files/a.txt", headers=api.headers["admin"])
    assert deleted.status == 204
    read = await api.client.get("/repository/files/b.txt", headers=api.headers["admin"])
    assert read.status == 404
    await push_image(api, "v1")
    assert (await api.call("admin", "POST", "/api/v1/groups", {"name": "ops"})).status == 201
    assert (await api.call("alice", "POST", "/api/v1/groups", {"name": "mine"})).status == 403
    await api.flushed()

    page = await api.call("admin", "GET", f"/api/v1/audit?since={since}&limit=1000")
    assert page.status == 200 and page.json()["next"] is None
    rows = [(e["actor"], e["action"], e["target"], e["outcome"]) for e in page.json()["entries"]]
    assert rows == [
        ("alice", "admin: group.create", "/api/v1/groups", 403),
        ("admin", "admin: group.create", "group:ops", 201),
        ("admin", "write", "/v2/docker/app/manifests/v1", 201),
        ("admin", "write", "/v2/docker/app/blobs/uploads/", 201),
        ("admin", "write", "/v2/docker/app/blobs/uploads/", 201),
        ("admin", "delete", "/repository/files/a.txt", 204),
        ("", "delete", "/repository/files/a.txt", 401),
        ("bob", "write", "/repository/files/b.txt", 403),
        ("admin", "write", "/repository/files/a.txt", 201),
    ]  # fmt: skip
    assert all(e["source"] == "127.0.0.1" for e in page.json()["entries"])
    assert [e["at"] for e in page.json()["entries"]] == sorted(
        (e["at"] for e in page.json()["entries"]), reverse=True
    )

    bobs = await api.call("admin", "GET", "/api/v1/audit?actor=bob")
    assert [e["target"] for e in bobs.json()["entries"]] == ["/repository/files/b.txt"]
    deletes = await api.call("admin", "GET", "/api/v1/audit?action=delete")
    assert [e["outcome"] for e in deletes.json()["entries"]] == [204, 401]
    later = await api.call("admin", "GET", f"/api/v1/audit?since={time.time() + 60}")
    assert later.json() == {"entries": [], "next": None}
    iso = await api.call("admin", "GET", "/api/v1/audit?since=2000-01-01T00:00:00Z&actor=bob")
    assert len(iso.json()["entries"]) == 1

    seen, path = [], f"/api/v1/audit?since={since}&limit=4"
    while path:
        answer = await api.call("admin", "GET", path)
        assert len(answer.json()["entries"]) <= 4
        seen += [
            (e["actor"], e["action"], e["target"], e["outcome"]) for e in answer.json()["entries"]
        ]
        path = answer.json()["next"]
    assert seen == rows
    for query in ("limit=0", "limit=1001", "limit=x", "since=yesterday", "before=-1",
                  "since=2000-01-01T00:00:00"):  # fmt: skip
        assert (await api.call("admin", "GET", f"/api/v1/audit?{query}")).status == 400, query


async def test_the_collector_trims_old_audit_rows(api: Api) -> None:
    records = AuditRecords(api.app[keys.AUTH].records.db)
    old = time.time() - 10 * 86400
    await records.add([Entry(old, "admin", "write", "/repository/files/old", "", 201)])
    await records.add([Entry(time.time(), "admin", "write", "/repository/files/new", "", 201)])
    app = api.app

    def collector(retention: float) -> Collector:
        return Collector(
            GcConfig(), app[keys.METADATA], app[keys.STORAGE], app[FORMATS],
            app[keys.REPOSITORIES], audit_retention=retention,
        )  # fmt: skip

    dry = await collector(7 * 86400).run(dry_run=True)
    assert dry.freed["audit"].objects == 1 and not dry.errors
    assert len(await records.entries()) == 2
    report = await collector(7 * 86400).run()
    assert report.freed["audit"].objects == 1
    assert [e["target"] for e in await records.entries()] == ["/repository/files/new"]
    again = await collector(7 * 86400).run()
    assert again.freed.get("audit") is None or again.freed["audit"].objects == 0


async def test_the_cli_prints_the_audit_log(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    assert (await api.call("admin", "POST", "/api/v1/groups", {"name": "ops"})).status == 201
    assert (await api.call("admin", "DELETE", "/api/v1/groups/ops")).status == 204
    await api.flushed()
    capsys.readouterr()  # the access log's lines so far
    code = await cli_auth.run(api.config, argparse.Namespace(command="audit", action=None, limit=1))
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert (entry["actor"], entry["action"], entry["target"], entry["outcome"]) == (
        "admin", "admin: group.delete", "group:ops", 204,
    )  # fmt: skip
