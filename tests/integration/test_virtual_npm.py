"""npm virtual repositories over a local repository and a remote one (a fake npm
registry), in both shapes: the merge rules, the dependency-confusion guard, the
cooldown, members failing or slow, explain, writes through the virtual, and a publish
seen at once on another replica; with the real npm and pnpm."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.integration.npm_upstream import DAY, NpmUpstream
from tests.integration.test_npm_local_clients import PNPM, Publisher, ok, pnpm
from tests.integration.test_remote_npm import ABBREVIATED, NPM_ACCEPT
from tests.npm_bodies import publish_body
from tests.signin import admin_token

VIRTUAL, LOCAL, REMOTE = "npm", "npm-local", "npm-remote"


@dataclass
class Stack:
    client: TestClient  # signed in as the admin
    upstream: NpmUpstream
    token: str
    config: Any

    def url(self, repo: str = VIRTUAL) -> str:
        return str(self.client.make_url(f"/repository/{repo}/"))

    async def publish(self, name: str, version: str, repo: str = VIRTUAL, **manifest: Any) -> None:
        response = await self.client.put(
            f"/repository/{repo}/{name.replace('/', '%2f')}",
            data=publish_body(name, version, **manifest),
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 201, await response.text()

    async def get(self, path: str, repo: str = VIRTUAL, **headers: str) -> Any:
        return await self.client.get(f"/repository/{repo}/{path}", headers=headers)

    async def packument(self, name: str, accept: str = "application/json") -> dict[str, Any]:
        response = await self.get(name.replace("/", "%2f"), Accept=accept)
        assert response.status == 200, await response.text()
        document: dict[str, Any] = json.loads(await response.read())
        return document


Make = Callable[..., Awaitable[Stack]]


def repositories(upstream: str, remote: dict[str, Any], virtual: dict[str, Any]) -> list[Any]:
    return [
        {"name": LOCAL, "format": "npm", "kind": "local"},
        {
            "name": REMOTE, "format": "npm", "kind": "remote", "anonymous_read": True,
            "options": {"upstream": upstream, "retries": 0, **remote},
        },
        {
            "name": VIRTUAL, "format": "npm", "kind": "virtual", "anonymous_read": True,
            "options": {"members": [LOCAL, REMOTE], "deploy_to": LOCAL, **virtual},
        },
    ]  # fmt: skip


@pytest.fixture
async def make(aiohttp_client: Any, aiohttp_server: Any, make_config: ConfigFactory) -> Make:
    async def start(remote: dict[str, Any] | None = None, **virtual: Any) -> Stack:
        upstream = NpmUpstream()
        server: TestServer = await aiohttp_server(upstream.app())
        upstream.base = str(server.make_url("")).rstrip("/")
        config = make_config(repositories=repositories(upstream.base, remote or {}, virtual))
        app = create_app(config)
        client: TestClient = await aiohttp_client(app)
        token = await admin_token(app)
        client.session.headers["Authorization"] = f"Bearer {token}"
        return Stack(client, upstream, token, config)

    return start


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


async def every_tarball_downloads(stack: Stack, document: dict[str, Any]) -> int:
    """Listed ⇒ downloadable: each tarball the packument lists, fetched through the
    virtual, matches the integrity it lists."""
    base = stack.url().rstrip("/")
    for version, manifest in document["versions"].items():
        dist = manifest["dist"]
        assert dist["tarball"].startswith(base + "/"), (version, dist["tarball"])
        response = await stack.client.get(dist["tarball"].removeprefix(str(stack.client.make_url(""))))
        assert response.status == 200, (version, await response.text())
        assert sri(await response.read()) == dist["integrity"], version
    return len(document["versions"])


# -- the merge rules -------------------------------------------------------------------


async def test_precedence_and_the_merge_rules(make: Make) -> None:
    stack = await make(allow=["shared"])
    up = stack.upstream
    up.add("shared", "1.0.0", age=400 * DAY, tag=None)  # other bytes than the local 1.0.0
    up.add("shared", "2.0.0", age=10 * DAY, tag="latest")
    up.tags["shared"]["next"] = "2.0.0"
    await stack.publish("shared", "1.0.0", description="ours")
    mine = json.loads(await (await stack.get("shared", repo=LOCAL)).read())
    for accept in ("application/json", NPM_ACCEPT):
        document = await stack.packument("shared", accept)
        assert sorted(document["versions"]) == ["1.0.0", "2.0.0"]
        one, two = document["versions"]["1.0.0"], document["versions"]["2.0.0"]
        # The first member that has a version gives its whole object.
        assert one["dist"]["integrity"] == mine["versions"]["1.0.0"]["dist"]["integrity"]
        assert two["dist"]["integrity"] == sri(up.releases["shared"][1].data)
        assert two["dist"]["shasum"] == hashlib.sha1(up.releases["shared"][1].data).hexdigest()
        # First member wins per tag: the local latest, the remote's next.
        assert document["dist-tags"] == {"latest": "1.0.0", "next": "2.0.0"}
        assert await every_tarball_downloads(stack, document) == 2
        if accept == NPM_ACCEPT:
            assert "time" not in document and "modified" in document
        else:
            times = document["time"]
            assert times["created"] == up.packument("shared", False)["time"]["created"]
            assert times["modified"] == mine["time"]["modified"]  # the local publish: now
            assert times["1.0.0"] == mine["time"]["1.0.0"]
            assert times["2.0.0"] == up.packument("shared", False)["time"]["2.0.0"]
            assert document["description"] == "ours"  # the first member's fields
            assert "_rev" not in document
    version = await stack.get("shared/2.0.0")
    assert version.status == 200 and (await version.json())["dist"]["integrity"] == two["dist"]["integrity"]
    tagged = await stack.get("shared/next")
    assert (await tagged.json())["version"] == "2.0.0"
    tags = await stack.get("-/package/shared/dist-tags")
    assert await tags.json() == {"latest": "1.0.0", "next": "2.0.0"}
    unlisted = await stack.get("shared/-/shared-3.0.0.tgz")
    assert unlisted.status == 404 and "error" in await unlisted.json()
    missing = await stack.get("no-such-package")
    assert missing.status == 404 and "error" in await missing.json()
