"""Who may do what, through every kind of credential clients send: the permission
matrix over a local and a remote repository of every format, in both shapes."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app import keys
from app.auth.manage import create_principal, create_token
from app.auth.records import AuthRecords
from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.npm_bodies import publish_body
from tests.oci_docs import digest_of, image_manifest
from tests.pypi_dists import upload, wheel, wheel_name
from tests.upstreams import FileTree

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

PRIVATE = [
    {"name": "files", "format": "generic", "kind": "local"},
    {"name": "docker", "format": "oci", "kind": "local"},
    {"name": "pypi-local", "format": "pypi", "kind": "local"},
    {"name": "npm", "format": "npm", "kind": "local"},
]
PUBLIC_FILES = {"name": "public", "format": "generic", "kind": "local", "anonymous_read": True}
PERMISSIONS = [
    {"repository": "*", "users": ["reader"], "actions": ["read"]},
    {"repository": "*", "users": ["writer"], "actions": ["write"]},
    {"repository": "*", "groups": ["cleaners"], "actions": ["delete"]},
]


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@dataclass
class Service:
    client: TestClient  # carries no credentials
    headers: dict[str, dict[str, str]]  # Authorization by principal ("" for anonymous)
    records: AuthRecords


@pytest.fixture
async def service(aiohttp_client: Any, aiohttp_server: Any, make_config: ConfigFactory) -> Service:
    tree = FileTree()
    upstream: TestServer = await aiohttp_server(tree.app())
    url = str(upstream.make_url("")).rstrip("/")
    remotes = [
        {"name": f"{fmt}-remote", "format": fmt, "kind": "remote",
         "options": {"upstream": url, "retries": 0}}
        for fmt in ("generic", "oci", "pypi", "npm")
    ]  # fmt: skip
    config = make_config(
        repositories=[*PRIVATE, PUBLIC_FILES, *remotes], auth={"permissions": PERMISSIONS}
    )
    app: web.Application = create_app(config)
    client: TestClient = await aiohttp_client(app, anonymous=True)
    records = app[keys.AUTH].records
    for name in ("reader", "writer", "deleter"):
        await create_principal(records, name, password=f"{name}-password")
    await records.create_group("cleaners")
    assert await records.set_member("cleaners", "deleter", True)
    await create_principal(records, "ci", kind="service")
    await records.grant("user:ci", "*", ["write"])
    admin_token, _ = await create_token(records, "admin")
    writer_token, _ = await create_token(records, "writer")
    deleter_token, _ = await create_token(records, "deleter")
    ci_token, _ = await create_token(
        records, "ci", scopes=[{"repository": "files", "actions": ["write"]}]
    )
    headers = {
        "anonymous": {},
        "reader": {"Authorization": basic("reader", "reader-password")},  # a password
        "writer": {"Authorization": basic("__token__", writer_token)},  # twine's way
        "deleter": {"Authorization": f"Bearer {deleter_token}"},  # curl's, npm's
        "admin": {"Authorization": basic("admin", admin_token)},  # docker's password
        "ci": {"Authorization": f"Bearer {ci_token}"},
    }
    return Service(client, headers, records)


async def call(
    service: Service, who: str, method: str, path: str, body: bytes | None = None, **headers: str
) -> int:
    response = await service.client.request(
        method, path, data=body, headers={**service.headers[who], **headers}
    )
    await response.read()
    return response.status


async def push_image(service: Service, tag: str) -> str:
    config, layer = json.dumps({"tag": tag}).encode(), tag.encode() * 100
    for data in (config, layer):
        status = await call(
            service, "admin", "POST", f"/v2/docker/app/blobs/uploads/?digest={digest_of(data)}",
            data, **{"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert status == 201
    manifest = image_manifest(config, [layer])
    status = await call(
        service, "admin", "PUT", f"/v2/docker/app/manifests/{tag}", manifest,
        **{"Content-Type": OCI_MANIFEST},
    )  # fmt: skip
    assert status == 201
    return digest_of(manifest)


PRINCIPALS = ("anonymous", "reader", "writer", "deleter", "admin", "ci")

# (what, expected status per principal, in PRINCIPALS' order). A remote read of a path
# the upstream lacks is 404 for whoever may read: not 401 or 403.
MATRIX: list[tuple[str, tuple[int, ...]]] = [
    ("generic local read", (401, 200, 200, 200, 200, 200)),
    ("generic local write", (401, 403, 201, 403, 201, 201)),
    ("generic local delete", (401, 403, 403, 204, 204, 403)),
    ("generic public read", (200, 200, 200, 200, 200, 403)),
    ("generic public write", (401, 403, 201, 403, 201, 403)),
    ("generic remote read", (401, 404, 404, 404, 404, 403)),
    ("oci local pull", (401, 200, 200, 200, 200, 403)),
    ("oci local push", (401, 403, 202, 403, 202, 403)),
    ("oci local delete", (401, 403, 403, 202, 202, 403)),
    ("oci remote pull", (401, 404, 404, 404, 404, 403)),
    ("pypi remote read", (401, 404, 404, 404, 404, 403)),
    ("pypi local read", (401, 200, 200, 200, 200, 403)),
    ("pypi local upload", (401, 403, 200, 403, 200, 403)),
    ("pypi local yank", (401, 403, 200, 403, 200, 403)),
    ("pypi local delete", (401, 403, 403, 200, 200, 403)),
    ("npm remote read", (401, 404, 404, 404, 404, 403)),
    ("npm local read", (401, 200, 200, 200, 200, 403)),
    ("npm local publish", (401, 403, 201, 403, 201, 403)),
    ("npm local unpublish", (401, 403, 403, 200, 200, 403)),
]


async def attempt(service: Service, what: str, who: str) -> int:
    if what == "generic local read":
        return await call(service, who, "GET", "/repository/files/seed.txt")
    if what == "generic local write":
        return await call(service, who, "PUT", f"/repository/files/by-{who}.txt", b"x")
    if what == "generic local delete":
        return await call(service, who, "DELETE", f"/repository/files/delete-{who}.txt")
    if what == "generic public read":
        return await call(service, who, "GET", "/repository/public/seed.txt")
    if what == "generic public write":
        return await call(service, who, "PUT", f"/repository/public/by-{who}.txt", b"x")
    if what == "generic remote read":
        return await call(service, who, "GET", "/repository/generic-remote/absent.bin")
    if what == "oci local pull":
        return await call(service, who, "GET", "/v2/docker/app/manifests/seed",
                          Accept=OCI_MANIFEST)  # fmt: skip
    if what == "oci local push":
        return await call(service, who, "POST", "/v2/docker/app/blobs/uploads/")
    if what == "oci local delete":
        digest = await push_image(service, f"delete-{who}")
        return await call(service, who, "DELETE", f"/v2/docker/app/manifests/{digest}")
    if what == "oci remote pull":
        return await call(service, who, "GET", "/v2/oci-remote/library/absent/manifests/1",
                          Accept=OCI_MANIFEST)  # fmt: skip
    if what == "pypi remote read":
        return await call(service, who, "GET", "/repository/pypi-remote/simple/absent/")
    if what.startswith("pypi local"):
        return await pypi_local(service, what, who)
    if what == "npm remote read":
        return await call(service, who, "GET", "/repository/npm-remote/absent-package")
    if what == "npm local read":
        return await call(service, who, "GET", "/repository/npm/seed")
    if what == "npm local publish":
        return await call(service, who, "PUT", f"/repository/npm/by-{who}",
                          publish_body(f"by-{who}", "1.0.0"))  # fmt: skip
    if what == "npm local unpublish":
        return await call(service, who, "DELETE", f"/repository/npm/delete-{who}/-rev/1")
    raise AssertionError(what)


async def pypi_upload(service: Service, who: str, version: str) -> int:
    data = wheel("demo_pkg", version)
    form = upload(data, wheel_name("demo_pkg", version), version=version).form()
    response = await service.client.post(
        "/repository/pypi-local/", data=form, headers=service.headers[who]
    )
    await response.read()
    return response.status


async def pypi_local(service: Service, what: str, who: str) -> int:
    number = PRINCIPALS.index(who)
    packages = "/api/v1/repositories/pypi-local/packages/demo-pkg"
    if what == "pypi local read":
        return await call(service, who, "GET", "/repository/pypi-local/simple/demo-pkg/")
    if what == "pypi local upload":
        return await pypi_upload(service, who, f"2.{number}")
    if what == "pypi local yank":
        return await call(service, who, "POST", f"{packages}/versions/1.0/yank")
    assert await pypi_upload(service, "admin", f"3.{number}") == 200
    return await call(service, who, "DELETE", f"{packages}/versions/3.{number}")


async def test_the_permission_matrix(service: Service) -> None:
    assert await pypi_upload(service, "admin", "1.0") == 200
    for path in ("files/seed.txt", "public/seed.txt"):
        assert await call(service, "admin", "PUT", f"/repository/{path}", b"seed") == 201
    for who in PRINCIPALS:
        status = await call(service, "admin", "PUT", f"/repository/files/delete-{who}.txt", b"x")
        assert status == 201
    await push_image(service, "seed")
    for name in ("seed", *(f"delete-{who}" for who in PRINCIPALS)):
        body = publish_body(name, "1.0.0")
        assert await call(service, "admin", "PUT", f"/repository/npm/{name}", body) == 201
    got = {
        what: tuple([await attempt(service, what, who) for who in PRINCIPALS]) for what, _ in MATRIX
    }
    assert got == dict(MATRIX)


async def test_a_401_says_how_to_authenticate_in_each_format(service: Service) -> None:
    generic = await service.client.get("/repository/files/seed.txt")
    assert generic.status == 401
    assert generic.headers["WWW-Authenticate"] == 'Basic realm="artifactapi"'
    npm = await service.client.get("/repository/npm-remote/left-pad")
    assert npm.status == 401 and "error" in await npm.json()
    oci = await service.client.get("/v2/docker/app/manifests/latest")
    assert oci.status == 401
    challenge = oci.headers["WWW-Authenticate"]
    host = service.client.make_url("").host
    assert challenge.startswith(f'Bearer realm="http://{host}:')
    assert challenge.endswith('/v2/token",service="artifactapi",scope="repository:docker/app:pull"')
    assert (await oci.json())["errors"][0]["code"] == "UNAUTHORIZED"
    root = await service.client.get("/v2/")
    assert root.status == 401 and "Bearer realm=" in root.headers["WWW-Authenticate"]
    wrong = await service.client.get("/v2/", headers={"Authorization": basic("reader", "nope")})
    assert wrong.status == 401  # docker login must not succeed with a wrong password
    right = await service.client.get("/v2/", headers=service.headers["reader"])
    assert right.status == 200


async def test_passwords_and_tokens_are_not_stored_in_clear(service: Service) -> None:
    rows = await service.records.db.fetch("SELECT * FROM auth_principals")
    tokens = await service.records.db.fetch("SELECT * FROM auth_tokens")
    stored = json.dumps([*rows, *tokens], default=str)
    for who in ("reader", "writer", "deleter"):
        assert f"{who}-password" not in stored
    for headers in service.headers.values():
        value = headers.get("Authorization", "")
        if value.startswith("Bearer "):
            assert value.removeprefix("Bearer ") not in stored
    assert all(str(r["password_hash"]).startswith("$argon2id$") for r in rows if r["password_hash"])


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b"\x00user:password").decode(),
        "Basic " + base64.b64encode(("u" * 10_000 + ":p").encode()).decode(),
        "Bearer " + "x" * 64 * 1024,  # a 64 kB header
        "Bearer ",
        "Bearer not-a-token",
        "Bearer aat_" + "x" * 43,  # a token's shape, but no such token
        "Negotiate abc",
        "Digest username=admin",
    ],
)
async def test_malformed_credentials_are_a_401_never_a_500_or_a_grant(
    service: Service, authorization: str
) -> None:
    response = await service.client.get(
        "/repository/public/anything", headers={"Authorization": authorization}
    )
    body = await response.text()
    credential = authorization.partition(" ")[2]
    assert not credential or credential not in body  # never echoed
    if len(authorization) > 8190:  # beyond aiohttp's header limit: refused as it is read
        assert response.status == 400
        return
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="artifactapi"'


async def test_a_revoked_token_a_disabled_user_and_an_expired_token_are_refused(
    service: Service,
) -> None:
    records, auth = service.records, service.client.app[keys.AUTH]
    secret, row = await create_token(records, "writer")
    headers = {"Authorization": f"Bearer {secret}"}
    put = "/repository/files/revoked.txt"
    assert (await service.client.put(put, data=b"1", headers=headers)).status == 201
    assert await records.revoke_token(row.id)
    await auth.look()  # what the watch does every half second
    assert (await service.client.put(put, data=b"2", headers=headers)).status == 401
    expiring, _ = await create_token(records, "writer", expires_in=-1)
    expired = {"Authorization": f"Bearer {expiring}"}
    assert (await service.client.get("/repository/files/seed.txt", headers=expired)).status == 401
    assert await records.update_principal("reader", disabled=True)
    await auth.look()
    reader = service.headers["reader"]
    assert (await service.client.get("/repository/files/seed.txt", headers=reader)).status == 401


async def test_the_first_start_makes_an_admin_once(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Any, capsys: Any
) -> None:
    path = tmp_path / "first" / "initial-admin-password"
    config = make_config(auth={"initial_admin_password_file": str(path)})
    client: TestClient = await aiohttp_client(create_app(config), anonymous=True)
    password = path.read_text().strip()
    assert path.stat().st_mode & 0o777 == 0o600
    assert capsys.readouterr().out.count(password) == 1  # printed once, beside the file
    assert (await client.get("/api/v1/gc")).status == 401
    assert (
        await client.get("/api/v1/gc", headers={"Authorization": basic("admin", password)})
    ).status == 200
    path.unlink()
    await aiohttp_client(create_app(config), anonymous=True)  # a second start, same database
    assert not path.exists() and password not in capsys.readouterr().out


async def test_the_management_of_collections_is_for_admins(service: Service) -> None:
    assert await call(service, "reader", "GET", "/api/v1/gc") == 403
    assert await call(service, "ci", "POST", "/api/v1/gc?dry_run=true") == 403
    assert await call(service, "admin", "GET", "/api/v1/gc") == 200


async def test_a_login_flood_is_slowed_to_429_and_the_real_user_too(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    limits = {"failed_logins_per_user": 10, "failed_logins_per_source": 12}
    config = make_config(repositories=PRIVATE, auth={"permissions": PERMISSIONS, **limits})
    app = create_app(config)
    # From an address of this run's own, and below a name of its own: the scale-out
    # shape's counters live in a Redis other tests share.
    source = f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    client: TestClient = await aiohttp_client(app, anonymous=True, connector=connector)
    user = f"writer-{uuid.uuid4().hex[:8]}"
    await create_principal(app[keys.AUTH].records, user, password="writer-password")
    await app[keys.AUTH].records.grant(f"user:{user}", "*", ["read"])
    token, _ = await create_token(app[keys.AUTH].records, user)
    service = Service(
        client, {"writer": {"Authorization": f"Bearer {token}"}}, app[keys.AUTH].records
    )
    assert await call(service, "writer", "GET", "/repository/files/seed.txt") == 404  # verified
    wrong = {"Authorization": basic(user, "guess")}
    statuses = [
        (await service.client.get("/repository/files/seed.txt", headers=wrong)).status
        for _ in range(12)
    ]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    flooded = await service.client.get("/repository/files/seed.txt", headers=wrong)
    assert flooded.status == 429 and int(flooded.headers["Retry-After"]) >= 1
    # The name is held for the window, whoever asks (a password guessed from many places).
    right = {"Authorization": basic(user, "writer-password")}
    assert (await service.client.get("/repository/files/seed.txt", headers=right)).status == 429
    # A token, verified before, still works: it costs no login.
    assert await call(service, "writer", "GET", "/repository/files/seed.txt") == 404
    # Past the source's limit, every new credential from it waits too.
    others = [basic(f"nobody-{i}", "x") for i in range(3)]
    got = [
        (await client.get("/repository/files/seed.txt", headers={"Authorization": o})).status
        for o in others
    ]
    assert got[-1] == 429


async def test_curl_with_a_bearer_token_and_with_basic(service: Service, tmp_path: Any) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed (apt-get install curl)"
    url = str(service.client.make_url("/repository/files/by-curl.txt"))
    source = tmp_path / "body.txt"
    source.write_bytes(b"sent by curl\n")
    writer = service.headers["writer"]["Authorization"]
    deleter = service.headers["deleter"]["Authorization"].removeprefix("Bearer ")

    def run(*args: str) -> str:
        done = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", *args],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        return done.stdout

    assert await asyncio.to_thread(run, "-T", str(source), url) == "401"
    assert (
        await asyncio.to_thread(run, "-H", f"Authorization: {writer}", "-T", str(source), url)
        == "201"
    )
    assert await asyncio.to_thread(run, "-u", "reader:reader-password", url) == "200"
    assert (
        await asyncio.to_thread(run, "-H", f"Authorization: Bearer {deleter}", "-X", "DELETE", url)
        == "204"
    )


async def test_a_password_sent_on_many_connections_at_once_is_checked_once(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argon2 costs 64 MiB and tens of milliseconds a check: 32 connections opened at
    once with one password (docker, a CI's parallel downloads) pay for one."""
    import app.auth.service as auth_service

    checks: list[str] = []
    real = auth_service.verify_password

    async def counted(stored: str | None, password: str) -> bool:
        checks.append(password)
        return await real(stored, password)

    monkeypatch.setattr(auth_service, "verify_password", counted)
    headers = {"Authorization": basic("reader", "reader-password")}
    statuses = await asyncio.gather(
        *(service.client.get("/repository/files/none.txt", headers=headers) for _ in range(32))
    )
    assert [s.status for s in statuses] == [404] * 32
    assert len(checks) == 1


async def test_a_private_repositorys_answers_are_kept_out_of_shared_caches(
    service: Service,
) -> None:
    for path in ("files/seed.txt", "public/seed.txt"):
        assert await call(service, "admin", "PUT", f"/repository/{path}", b"seed") == 201
    await push_image(service, "cached")
    admin = service.headers["admin"]
    private = await service.client.get("/repository/files/seed.txt", headers=admin)
    assert private.status == 200 and private.headers["Cache-Control"] == "private"
    manifest = await service.client.get(
        "/v2/docker/app/manifests/cached", headers={**admin, "Accept": OCI_MANIFEST}
    )
    assert manifest.status == 200 and manifest.headers["Cache-Control"] == "private"
    public = await service.client.get("/repository/public/seed.txt")
    assert public.status == 200 and "Cache-Control" not in public.headers
    refused = await service.client.get("/repository/files/seed.txt")
    assert refused.status == 401 and refused.headers["Cache-Control"] == "private"
