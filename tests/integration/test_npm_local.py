"""npm local repositories over HTTP, as the npm CLI speaks to them (the bodies it sends
built in tests/npm_bodies.py), in both shapes: publish, packuments, tarballs,
republish refused, dist-tags, deprecate, unpublish, provenance, the management API."""

from __future__ import annotations

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
