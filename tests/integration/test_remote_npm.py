"""npm remote repositories against a fake npm registry: the real npm client,
packuments (full and abbreviated, rewritten), tarballs verified against the
published integrity, names checked, stale packuments when the upstream fails."""

from __future__ import annotations

import asyncio
import base64
import functools
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
from aiohttp.test_utils import TestServer

from tests.integration.conftest import RemoteFactory
from tests.waiting import expired

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
        app.router.add_get("/-/v1/search", self.search)
        app.router.add_post("/-/npm/v1/security/advisories/bulk", self.advisories)
        app.router.add_get("/{path:.*}", self.handle)
        return app

    async def search(self, request: web.Request) -> web.Response:
        self.requests["-/v1/search"] += 1
        text = request.query.get("text", "")
        found = [
            {
                "package": {
                    "name": name, "version": "1.0.0", "description": "", "keywords": [],
                    "date": "2024-01-01T00:00:00.000Z", "links": {},
                    "publisher": {"username": "me"}, "maintainers": [{"username": "me"}],
                },
                "score": {"final": 1.0}, "searchScore": 1.0,
            }
            for name in self.packages if text in name
        ]  # fmt: skip
        return web.json_response({"objects": found, "total": len(found)})

    async def advisories(self, request: web.Request) -> web.Response:
        """The bulk advisory API npm audit asks: every known package below 2.0.0 is
        vulnerable. The body arrives gzipped; aiohttp decodes it."""
        self.requests["-/npm/v1/security/advisories/bulk"] += 1
        asked: dict[str, list[str]] = await request.json()
        return web.json_response({
            name: [{
                "id": 1000 + i, "url": f"https://example.invalid/advisories/{i}",
                "title": f"{name} is vulnerable", "severity": "high",
                "vulnerable_versions": "<2.0.0", "cwe": [], "cvss": {"score": 7.5},
            }]
            for i, name in enumerate(sorted(asked)) if name in self.packages
        })  # fmt: skip

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
        if self.fault == "html" and path in self.packages:  # a captive portal, a login page
            return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")
        if self.fault == "json-error" and path in self.packages:  # a gateway's own JSON
            return web.json_response({"error": "authentication required"})
        if self.fault == "other-name" and path in self.packages:  # not the package asked for
            return web.json_response(self.packument(self.packages[-1], False) | {"name": "other"})
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
def service(remote_service: RemoteFactory, upstream: TestServer) -> Service:
    return functools.partial(remote_service, "npm-remote", "npm", upstream)


def npm(where: Path, registry_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real npm in ``where`` (made, with a package.json, on first use), with its
    own empty config and cache, talking to ``registry_url`` only."""
    if not where.exists():
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
            "npm", *args, "--registry", registry_url, "--no-fund",
            "--cache", str(where.parent / f"{where.name}-cache"),
        ],
        cwd=where, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def npm_install(registry_url: str, where: Path, *packages: str) -> subprocess.CompletedProcess[str]:
    return npm(where, registry_url, "install", "--no-audit", *packages)


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
    await expired(client, "@acme/util#abbreviated")
    registry.fault = "500"
    stale = await client.get("/repository/npm-remote/@acme%2futil", headers={"Accept": NPM_ACCEPT})
    assert stale.status == 200 and stale.headers["X-Cache"] == "STALE"
    assert stale.headers["Warning"].startswith("110")
    assert json.loads(await stale.read())["dist-tags"] == {"latest": "1.0.0"}
    assert registry.requests["@acme/util"] == 2
    never = await client.get("/repository/npm-remote/demo")
    assert never.status == 502 and "error" in await never.json()


async def test_version_documents_and_dist_tags_come_from_the_packument(
    service: Service, registry: FakeRegistry
) -> None:
    client = await service()
    base = str(client.make_url("/repository/npm-remote")).rstrip("/")
    for path in ("demo/1.0.0", "demo/latest", "@acme%2futil/1.0.0", "@acme/util/latest"):
        response = await client.get(f"/repository/npm-remote/{path}")
        assert response.status == 200, (path, await response.text())
        manifest = await response.json()
        name = unquote(path).rsplit("/", 1)[0]
        assert manifest["name"] == name and manifest["version"] == "1.0.0"
        assert manifest["dist"]["tarball"] == f"{base}/{registry.tarball_path(name)}"
    missing = await client.get("/repository/npm-remote/demo/9.9.9")
    assert missing.status == 404
    assert await missing.json() == {"error": "version not found: 9.9.9"}
    tags = await client.get("/repository/npm-remote/-/package/@acme%2futil/dist-tags")
    assert tags.status == 200 and await tags.json() == {"latest": "1.0.0"}
    assert (await client.get("/repository/npm-remote/-/package/nope/dist-tags")).status == 404
    # One full and one abbreviated packument per package: every document above is made
    # from those two.
    assert registry.requests["demo"] == 1 and registry.requests["@acme/util"] == 2
    for bad in ("demo/1.0.0/x", "demo/..%2f1", "demo/%20", "-/package/../dist-tags"):
        response = await client.get(f"/repository/npm-remote/{bad}")
        assert 400 <= response.status < 500, (bad, response.status)
    put = await client.put("/repository/npm-remote/-/package/demo/dist-tags/next", data=b'"1"')
    assert put.status == 405


async def test_ping_search_and_audit_through_the_real_npm(
    service: Service, registry: FakeRegistry, tmp_path: Path
) -> None:
    client = await service()
    url = str(client.make_url("/repository/npm-remote/"))
    ping = await asyncio.to_thread(npm, tmp_path / "ping", url, "ping")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert sum(registry.requests.values()) == 0  # answered here
    for _ in range(2):  # searches are relayed every time, never cached
        found = await asyncio.to_thread(npm, tmp_path / "search", url, "search", "--json", "acme")
        assert found.returncode == 0, found.stdout + found.stderr
        assert [p["name"] for p in json.loads(found.stdout)] == ["@acme/util"]
    assert registry.requests["-/v1/search"] == 2
    where = tmp_path / "audited"
    installed = await asyncio.to_thread(npm_install, url, where, "demo", "@acme/util")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    audit = await asyncio.to_thread(npm, where, url, "audit", "--json")
    assert audit.returncode == 1, audit.stdout + audit.stderr  # vulnerabilities found
    report = json.loads(audit.stdout)
    assert sorted(report["vulnerabilities"]) == ["@acme/util", "demo"]
    assert report["vulnerabilities"]["demo"]["severity"] == "high"
    assert registry.requests["-/npm/v1/security/advisories/bulk"] == 1
    get = await client.get("/repository/npm-remote/-/npm/v1/security/advisories/bulk")
    assert get.status == 405 and get.headers["Allow"] == "POST"
    huge = await client.post(
        "/repository/npm-remote/-/npm/v1/security/advisories/bulk",
        data=b"x" * (16 * 1024 * 1024 + 1),
    )
    assert huge.status == 413
    assert registry.requests["-/npm/v1/security/advisories/bulk"] == 1


@pytest.mark.parametrize(
    ("server", "headers", "expected"),
    [
        ({"base_url": "https://artifacts.example.com"}, {}, "https://artifacts.example.com"),
        (
            {"trust_forwarded": True},
            {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "npm.example.com"},
            "https://npm.example.com",
        ),
        ({}, {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "npm.example.com"}, None),
    ],
)
async def test_tarball_urls_name_where_clients_reach_us(
    service: Service,
    registry: FakeRegistry,
    server: dict[str, Any],
    headers: dict[str, str],
    expected: str | None,
) -> None:
    client = await service(server=server)
    origin = expected or str(client.make_url("")).rstrip("/")
    response = await client.get("/repository/npm-remote/demo", headers=headers)
    tarball = (await response.json())["versions"]["1.0.0"]["dist"]["tarball"]
    assert tarball == f"{origin}/repository/npm-remote/{registry.tarball_path('demo')}"


async def test_each_host_gets_its_own_rewritten_packument(
    service: Service, registry: FakeRegistry
) -> None:
    """Rewritten packuments are remembered per cached copy and URL: a second host
    must not get the first host's tarball URLs."""
    client = await service()
    for host in ("one.example:8080", "two.example", "one.example:8080"):
        response = await client.get("/repository/npm-remote/demo", headers={"Host": host})
        tarball = (await response.json())["versions"]["1.0.0"]["dist"]["tarball"]
        assert tarball == f"http://{host}/repository/npm-remote/{registry.tarball_path('demo')}"
    assert registry.requests["demo"] == 1


@pytest.mark.parametrize("fault", ["html", "json-error", "other-name"])
async def test_a_packument_that_is_not_the_packages_is_refused_and_not_cached(
    service: Service, registry: FakeRegistry, fault: str
) -> None:
    client = await service(metadata_ttl=0.1)
    registry.fault = fault
    for _ in range(2):
        refused = await client.get("/repository/npm-remote/demo")
        assert refused.status == 502 and "packument" in (await refused.json())["error"]
    assert registry.requests["demo"] == 2  # nothing was cached
    registry.fault = None
    good = await client.get("/repository/npm-remote/demo")
    assert good.status == 200 and good.headers["X-Cache"] == "MISS"
    await expired(client, "demo#full")
    registry.fault = fault  # an expired good copy is not replaced: it stands in
    for _ in range(2):
        kept = await client.get("/repository/npm-remote/demo")
        assert kept.status == 200 and kept.headers["X-Cache"] == "STALE"
        document = await kept.json()
        assert document["name"] == "demo" and document["dist-tags"] == {"latest": "1.0.0"}
    assert registry.requests["demo"] == 5
