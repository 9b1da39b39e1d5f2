"""npm remote repositories against a fake npm registry: the real npm client,
packuments (full and abbreviated, rewritten), tarballs verified against the
published integrity, names checked, stale packuments when the upstream fails."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.server import create_app
from tests.integration.conftest import ConfigFactory

Service = Callable[..., Any]
ABBREVIATED = "application/vnd.npm.install-v1+json"
NPM_ACCEPT = f"{ABBREVIATED}; q=1.0, application/json; q=0.8, */*"


def tarball(name: str, version: str) -> bytes:
    """A real npm tarball: package/package.json and package/index.js, gzipped."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        files = {
            "package/package.json": json.dumps(
                {"name": name, "version": version, "main": "index.js"}
            ).encode(),
            "package/index.js": f"module.exports = {json.dumps(name)};\n".encode(),
        }
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


@dataclass
class FakeRegistry:
    """Serves packuments for "demo" and "@acme/util" (either URL form) and their
    tarballs; counts requests by decoded path. ``corrupt`` serves tarballs whose
    bytes do not match the integrity; ``fault == "500"`` fails everything."""

    base: str = ""
    tarballs: dict[str, bytes] = field(default_factory=dict)  # file path -> bytes
    requests: Counter[str] = field(default_factory=Counter)
    accepts: list[str] = field(default_factory=list)
    corrupt: bool = False
    fault: str | None = None
    packages: tuple[str, ...] = ("demo", "@acme/util")

    def __post_init__(self) -> None:
        for name in self.packages:
            self.tarballs[self.tarball_path(name)] = tarball(name, "1.0.0")

    @staticmethod
    def tarball_path(name: str) -> str:
        return f"{name}/-/{name.rpartition('/')[2]}-1.0.0.tgz"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{path:.*}", self.handle)
        return app

    def packument(self, name: str, abbreviated: bool) -> dict[str, Any]:
        data = self.tarballs[self.tarball_path(name)]
        dist = {
            "tarball": f"{self.base}/{self.tarball_path(name)}",
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(),
            "shasum": hashlib.sha1(data).hexdigest(),
        }
        manifest: dict[str, Any] = {"name": name, "version": "1.0.0", "dist": dist}
        document: dict[str, Any] = {
            "name": name,
            "dist-tags": {"latest": "1.0.0"},
            "versions": {"1.0.0": manifest},
        }
        if not abbreviated:
            manifest["description"] = "full document only"
            document["time"] = {"1.0.0": "2024-01-01T00:00:00.000Z"}
        return document

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = unquote(request.raw_path.lstrip("/").split("?")[0])
        self.requests[path] += 1
        if self.fault == "500":
            return web.Response(status=500, text="registry broken")
        if path in self.tarballs:
            data = self.tarballs[path]
            if self.corrupt:
                data = data[:-1] + bytes([data[-1] ^ 1])
            return web.Response(body=data, content_type="application/octet-stream")
        if path in self.packages:
            accept = request.headers.get("Accept", "")
            self.accepts.append(accept)
            abbreviated = ABBREVIATED in accept
            content_type = ABBREVIATED if abbreviated else "application/json"
            body = json.dumps(self.packument(path, abbreviated)).encode()
            return web.Response(body=body, content_type=content_type)
        return web.json_response({"error": "Not found"}, status=404)


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
async def upstream(aiohttp_server, registry: FakeRegistry) -> TestServer:  # type: ignore[no-untyped-def]
    server = await aiohttp_server(registry.app())
    registry.base = str(server.make_url("")).rstrip("/")
    return server


@pytest.fixture
def service(aiohttp_client, make_config: ConfigFactory, upstream: TestServer) -> Service:  # type: ignore[no-untyped-def]
    async def start(**options: Any) -> TestClient:
        repo = {
            "name": "npm-remote",
            "format": "npm",
            "kind": "remote",
            "options": {
                "upstream": str(upstream.make_url("")).rstrip("/"),
                "retries": 0,
                **options,
            },
        }
        return await aiohttp_client(create_app(make_config(repositories=[repo])))

    return start


def npm_install(registry_url: str, where: Path, *packages: str) -> subprocess.CompletedProcess[str]:
    where.mkdir(parents=True)
    (where / "package.json").write_text(json.dumps({"name": "consumer", "version": "0.0.0"}))
    userconfig = where.parent / f"{where.name}.npmrc"
    userconfig.write_text("")
    env = {
        key: value for key, value in os.environ.items() if not key.lower().startswith("npm_config_")
    }
    env.update(npm_config_userconfig=str(userconfig), npm_config_update_notifier="false")
    return subprocess.run(
        [
            "npm", "install", "--registry", registry_url, "--no-audit", "--no-fund",
            "--cache", str(where.parent / f"{where.name}-cache"), *packages,
        ],
        cwd=where, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


async def test_npm_installs_through_the_cache(
    service: Service, registry: FakeRegistry, tmp_path: Path
) -> None:
    client = await service()
    url = str(client.make_url("/repository/npm-remote/"))
    for run in ("first", "second"):  # a fresh directory and npm cache each time
        where = tmp_path / run
        result = await asyncio.to_thread(npm_install, url, where, "demo", "@acme/util")
        assert result.returncode == 0, result.stdout + result.stderr
        for name in ("demo", "@acme/util"):
            installed = json.loads((where / "node_modules" / name / "package.json").read_text())
            assert installed["name"] == name and installed["version"] == "1.0.0"
    for name in ("demo", "@acme/util"):
        assert registry.requests[registry.tarball_path(name)] == 1
        assert registry.requests[name] == 1  # the packument, within its metadata_ttl


async def test_packuments_are_rewritten_in_both_forms(
    service: Service, registry: FakeRegistry
) -> None:
    client = await service()
    base = str(client.make_url("/repository/npm-remote")).rstrip("/")
    for path in ("@acme/util", "@acme%2futil", "@acme%2Futil", "demo"):
        name = unquote(path)
        original = registry.packument(name, abbreviated=False)["versions"]["1.0.0"]["dist"]
        for accept, full in ((NPM_ACCEPT, False), ("application/json", True), (None, True)):
            headers = {"Accept": accept} if accept else {}
            response = await client.get(f"/repository/npm-remote/{path}", headers=headers)
            assert response.status == 200, await response.text()
            document = json.loads(await response.read())
            assert document["name"] == name and document["dist-tags"] == {"latest": "1.0.0"}
            assert ("time" in document) is full
            dist = document["versions"]["1.0.0"]["dist"]
            assert dist["tarball"] == f"{base}/{registry.tarball_path(name)}"
            assert dist["integrity"] == original["integrity"]
            assert dist["shasum"] == original["shasum"]
            expected_type = "application/json" if full else ABBREVIATED
            assert response.headers["Content-Type"].startswith(expected_type)
    # Each form of each package was fetched once: both URL forms share a cache entry.
    assert registry.requests["demo"] == 2 and registry.requests["@acme/util"] == 2
    head = await client.head("/repository/npm-remote/demo")
    assert head.status == 200
    etag = (await client.get("/repository/npm-remote/demo")).headers["ETag"]
    unchanged = await client.get("/repository/npm-remote/demo", headers={"If-None-Match": etag})
    assert unchanged.status == 304
    tgz = await client.get(f"/repository/npm-remote/{registry.tarball_path('@acme/util')}")
    assert tgz.status == 200
    assert await tgz.read() == registry.tarballs[registry.tarball_path("@acme/util")]
    missing = await client.get("/repository/npm-remote/no-such-package")
    assert missing.status == 404 and "error" in await missing.json()


async def test_a_tarball_that_fails_its_integrity_is_not_cached(
    service: Service, registry: FakeRegistry
) -> None:
    client = await service()
    assert (await client.get("/repository/npm-remote/demo")).status == 200
    registry.corrupt = True
    path = f"/repository/npm-remote/{registry.tarball_path('demo')}"
    for _ in range(2):
        try:
            response = await client.get(path)
            await response.read()
        except aiohttp.ClientPayloadError:
            pass  # the response was cut short
        else:
            assert response.status == 502
    assert registry.requests[registry.tarball_path("demo")] == 2  # nothing was cached
    registry.corrupt = False
    good = await client.get(path)
    assert good.status == 200 and good.headers["X-Cache"] == "MISS"
    assert await good.read() == registry.tarballs[registry.tarball_path("demo")]


async def test_unlisted_tarballs_and_bad_names_are_refused(
    service: Service, registry: FakeRegistry
) -> None:
    client = await service()
    unlisted = await client.get("/repository/npm-remote/demo/-/demo-1.0.0.tgz")
    assert unlisted.status == 404 and "error" in await unlisted.json()
    assert registry.requests[registry.tarball_path("demo")] == 0
    assert (await client.get("/repository/npm-remote/demo")).status == 200
    other = await client.get("/repository/npm-remote/demo/-/demo-9.9.9.tgz")
    assert other.status == 404
    assert sum(registry.requests.values()) == 1  # the packument only
    for bad in (
        "..",
        "%2e%2e",
        "a..b",
        ".hidden",
        "_private",
        "x" * 215,
        "@acme/..",
        "@/name",
        "demo/-/..%2fx.tgz",
        "demo/-/evil.tgz%3f",
        "n%20ame",
    ):
        response = await client.get(f"/repository/npm-remote/{bad}")
        assert 400 <= response.status < 500, (bad, response.status)
    assert sum(registry.requests.values()) == 1
    put = await client.put("/repository/npm-remote/demo", data=b"{}")
    assert put.status == 405 and put.headers["Allow"] == "GET, HEAD"


async def test_a_stale_packument_is_served_when_the_upstream_fails(
    service: Service, registry: FakeRegistry
) -> None:
    client = await service(metadata_ttl=0.1)
    first = await client.get("/repository/npm-remote/@acme%2futil", headers={"Accept": NPM_ACCEPT})
    assert first.status == 200 and first.headers["X-Cache"] == "MISS"
    await asyncio.sleep(0.2)
    registry.fault = "500"
    stale = await client.get("/repository/npm-remote/@acme%2futil", headers={"Accept": NPM_ACCEPT})
    assert stale.status == 200 and stale.headers["X-Cache"] == "STALE"
    assert stale.headers["Warning"].startswith("110")
    assert json.loads(await stale.read())["dist-tags"] == {"latest": "1.0.0"}
    assert registry.requests["@acme/util"] == 2
    never = await client.get("/repository/npm-remote/demo")
    assert never.status == 502 and "error" in await never.json()
