"""npm local repositories over HTTP, as the npm CLI speaks to them (the bodies it sends
built in tests/npm_bodies.py), in both shapes: publish, packuments, tarballs,
republish refused, dist-tags, deprecate, unpublish, provenance, the management API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.npm_bodies import publish_body, publish_document, tarball, with_provenance

REPO = "npm-local"
ROOT = f"/repository/{REPO}"
LOCAL = {"name": REPO, "format": "npm", "kind": "local"}
ABBREVIATED = "application/vnd.npm.install-v1+json"


@pytest.fixture
async def client(aiohttp_client: Any, make_config: ConfigFactory) -> TestClient:
    app = create_app(make_config(repositories=[LOCAL]))
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def put(client: TestClient, name: str, body: bytes) -> tuple[int, Any]:
    path = name.replace("/", "%2f")
    response = await client.put(
        f"{ROOT}/{path}", data=body, headers={"Content-Type": "application/json"}
    )
    return response.status, await response.json()


async def packument(client: TestClient, name: str, accept: str = "application/json") -> Any:
    response = await client.get(f"{ROOT}/{name.replace('/', '%2f')}", headers={"Accept": accept})
    assert response.status == 200, await response.text()
    return await response.json()


@pytest.mark.parametrize("name", ["demo", "@acme/util"])
async def test_a_published_version_is_served_from_its_rows(client: TestClient, name: str) -> None:
    data = tarball(name, "1.0.0")
    status, body = await put(client, name, publish_body(name, "1.0.0", data, description="d"))
    assert status == 201, body
    doc = await packument(client, name)
    assert doc["name"] == name and doc["dist-tags"] == {"latest": "1.0.0"}
    assert doc["description"] == "d" and doc["_rev"].startswith("1-")
    manifest = doc["versions"]["1.0.0"]
    unscoped = name.rpartition("/")[2]
    url = f"{client.make_url(ROOT)}/{name}/-/{unscoped}-1.0.0.tgz"
    assert manifest["dist"]["tarball"] == url
    assert manifest["dist"]["shasum"] == hashlib.sha1(data).hexdigest()
    assert set(doc["time"]) == {"created", "modified", "1.0.0"}
    assert manifest["_npmUser"] == {"name": "admin"}  # who published it, not who it claims
    packed = await client.get(
        f"{ROOT}/{name.replace('/', '%2f')}", headers={"Accept-Encoding": "gzip"}
    )
    assert packed.headers["Content-Encoding"] == "gzip" and await packed.json() == doc
    plain = await client.get(f"{ROOT}/{name}", headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in plain.headers and await plain.json() == doc
    unchanged = await client.get(
        f"{ROOT}/{name}",
        headers={"If-None-Match": packed.headers["ETag"], "Accept-Encoding": "gzip"},
    )
    assert unchanged.status == 304
    short = await packument(client, name, ABBREVIATED)
    assert set(short) == {"name", "modified", "dist-tags", "versions"}
    assert short["versions"]["1.0.0"]["dist"] == manifest["dist"]
    got = await client.get(f"{ROOT}/{name}/-/{unscoped}-1.0.0.tgz")
    assert got.status == 200 and await got.read() == data
    one = await client.get(f"{ROOT}/{name}/latest")
    assert (await one.json())["version"] == "1.0.0"


async def test_a_version_is_published_once(client: TestClient) -> None:
    assert (await put(client, "demo", publish_body("demo", "1.0.0")))[0] == 201
    other = tarball("demo", "1.0.0") + b"\0"
    status, body = await put(client, "demo", publish_body("demo", "1.0.0", other))
    assert status == 403
    assert body == {"error": "You cannot publish over the previously published versions: 1.0.0"}
    got = await client.get(f"{ROOT}/demo/-/demo-1.0.0.tgz")
    assert await got.read() == tarball("demo", "1.0.0")


async def test_provenance_is_stored_and_served_with_the_version(client: TestClient) -> None:
    data = tarball("@acme/signed", "1.0.0")
    document = publish_document("@acme/signed", "1.0.0", data)
    status, body = await put(
        client, "@acme/signed", with_provenance(document, "@acme/signed", "1.0.0", data)
    )
    assert status == 201, body
    dist = (await packument(client, "@acme/signed"))["versions"]["1.0.0"]["dist"]
    url = f"{client.make_url(ROOT)}/-/npm/v1/attestations/@acme/signed@1.0.0"
    predicate = "https://slsa.dev/provenance/v1"
    assert dist["attestations"] == {"url": url, "provenance": {"predicateType": predicate}}
    got = await client.get(url.removeprefix(str(client.make_url(""))))
    (attestation,) = (await got.json())["attestations"]
    sent = document["_attachments"]["@acme/signed-1.0.0.sigstore"]["data"]
    assert attestation == {"predicateType": predicate, "bundle": json.loads(sent)}


# -- bad input: a 4xx in npm's shape, nothing stored ----------------------------------


def _changed(name: str, version: str, change: Any) -> bytes:
    data = tarball(name, version)
    document = publish_document(name, version, data)
    change(document, data)
    return json.dumps(document).encode()


def _set(document: dict[str, Any], *path_value: Any) -> None:
    *path, last, value = path_value
    for key in path:
        document = document[key]
    document[last] = value


ATTACHMENT = ("_attachments", "demo-1.0.0.tgz")
BAD_BODIES = {
    "version differs": lambda d, _: d["versions"].update({"1.0.1": {**d["versions"].pop("1.0.0"), "version": "1.0.1"}}),
    "manifest version differs": lambda d, _: _set(d, "versions", "1.0.0", "version", "1.0.1"),
    "attachments missing": lambda d, _: _set(d, "_attachments", {}),
    "attachments absent": lambda d, _: d.pop("_attachments"),
    "extra attachment": lambda d, _: _set(d, "_attachments", "demo-1.0.0.txt", {"data": "AAAA"}),
    "other tarball": lambda d, _: _set(d, "_attachments", "demo-2.0.0.tgz", {"data": "AAAA"}),
    "not base64": lambda d, _: _set(d, *ATTACHMENT, "data", "not base64!"),
    "data not a string": lambda d, _: _set(d, *ATTACHMENT, "data", 5),
    "not gzip": lambda d, _: _set(d, *ATTACHMENT, "data", base64.b64encode(b"plain tar").decode()),
    "integrity": lambda d, _: _set(d, "versions", "1.0.0", "dist", "integrity", "sha512-" + base64.b64encode(bytes(64)).decode()),
    "integrity not sha512": lambda d, _: _set(d, "versions", "1.0.0", "dist", "integrity", "sha1-AAAA"),
    "shasum": lambda d, _: _set(d, "versions", "1.0.0", "dist", "shasum", "0" * 40),
    "no checksums": lambda d, _: _set(d, "versions", "1.0.0", "dist", {}),
    "length": lambda d, data: _set(d, *ATTACHMENT, "length", len(data) + 1),
    "other package": lambda d, _: _set(d, "name", "other"),
    "not semver": lambda d, _: d.update(versions={"latest": {"name": "demo", "version": "latest"}}),
    "tag names another": lambda d, _: _set(d, "dist-tags", {"latest": "9.9.9"}),
    "ten thousand versions": lambda d, _: _set(d, "versions", {f"1.0.{i}": {"name": "demo", "version": f"1.0.{i}"} for i in range(10_000)}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_a_bad_publish_is_refused_and_stores_nothing(client: TestClient, case: str) -> None:
    status, body = await put(client, "demo", _changed("demo", "1.0.0", BAD_BODIES[case]))
    assert status == 400, body
    assert set(body) == {"error"} and body["error"]
    assert (await client.get(f"{ROOT}/demo")).status == 404
    # And the same version publishes cleanly afterwards: nothing half-written holds it.
    assert (await put(client, "demo", publish_body("demo", "1.0.0")))[0] == 201


@pytest.mark.parametrize(
    "body",
    [b'{"name": "demo", "_attachments": {"demo-1.0.0.tgz": {"data": "H4sI',
     b'{"name": "demo", "versions": {', b"[1, 2]", b"", b"not json"],
)  # fmt: skip
async def test_a_truncated_or_malformed_body_is_refused(client: TestClient, body: bytes) -> None:
    status, answer = await put(client, "demo", body)
    assert status == 400 and set(answer) == {"error"}, answer
    assert (await client.get(f"{ROOT}/demo")).status == 404


@pytest.mark.parametrize(
    "name",
    ["Upper", ".hidden", "_under", "node_modules", "favicon.ico", "a" * 215, "a b", "caf%C3%A9",
     "ex!claim", "@Scope/x", "@acme/.x", "@acme/node_modules", "http", "fs"],
)  # fmt: skip
async def test_names_npm_forbids_are_refused(client: TestClient, name: str) -> None:
    response = await client.put(
        f"{ROOT}/{name.replace('/', '%2f')}", data=publish_body(name, "1.0.0")
    )
    assert response.status == 400, await response.text()
    assert set(await response.json()) == {"error"}
    listed = await client.get(f"/api/v1/repositories/{REPO}/packages")
    assert (await listed.json())["packages"] == []


async def test_a_client_that_leaves_mid_upload_leaves_nothing(client: TestClient) -> None:
    body = publish_body("demo", "1.0.0", tarball("demo", "1.0.0") + bytes(200_000))
    host, port = client.server.host, client.server.port
    _, writer = await asyncio.open_connection(host, port)
    token = client.session.headers["Authorization"]
    head = (f"PUT {ROOT}/demo HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    writer.write(head.encode() + body[: len(body) // 2])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await asyncio.sleep(0.3)
    assert (await client.get(f"{ROOT}/demo")).status == 404
    assert (await put(client, "demo", publish_body("demo", "1.0.0")))[0] == 201


@pytest.mark.parametrize("chunked", [False, True])
async def test_the_body_limit_is_the_servers(
    aiohttp_client: Any, make_config: ConfigFactory, chunked: bool
) -> None:
    config = make_config(repositories=[LOCAL], server={"max_body_size": "64KiB"})
    limited: TestClient = await aiohttp_client(create_app(config))
    fits = publish_body("demo", "1.0.0", tarball("demo", "1.0.0") + bytes(30_000))
    # A tarball under the limit whose base64 is over it: the body is what is limited.
    big = publish_body("demo", "2.0.0", tarball("demo", "2.0.0") + bytes(55_000))

    async def stream(body: bytes) -> Any:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    assert (await limited.put(f"{ROOT}/demo", data=fits)).status == 201
    refused = await limited.put(f"{ROOT}/demo", data=stream(big) if chunked else big)
    assert refused.status == 413 and set(await refused.json()) == {"error"}
    assert list((await packument(limited, "demo"))["versions"]) == ["1.0.0"]
