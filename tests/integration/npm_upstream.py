"""A fake npm registry for virtual repositories' tests: packages added one release at
a time, each with its publication time (``time`` in the full packument, none in the
abbreviated one, as registry.npmjs.org answers), dependencies and a real tarball."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.integration.test_remote_npm import ABBREVIATED, tarball

DAY = 24 * 3600.0


def iso(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@dataclass
class Release:
    version: str
    published: float | None  # None: the packument's time has no entry for it
    dependencies: dict[str, str]
    data: bytes


@dataclass
class NpmUpstream:
    """``fault``: "500" fails every request; ``delay`` holds every packument (or 404) back."""

    base: str = ""
    releases: dict[str, list[Release]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    fault: str | None = None
    delay: float = 0.0
    audited: list[dict[str, list[str]]] = field(default_factory=list)  # bulk audits' bodies

    def add(
        self,
        name: str,
        version: str,
        age: float | None = 30 * DAY,
        tag: str | None = "latest",
        **dependencies: str,
    ) -> Release:
        """Publish ``name@version`` ``age`` seconds ago (None: no time given)."""
        published = None if age is None else time.time() - age
        release = Release(version, published, dependencies, tarball(name, version))
        self.releases.setdefault(name, []).append(release)
        if tag is not None:
            self.tags.setdefault(name, {})[tag] = version
        return release

    def tarball_path(self, name: str, version: str) -> str:
        return f"{name}/-/{name.rpartition('/')[2]}-{version}.tgz"

    def packument(self, name: str, abbreviated: bool) -> dict[str, Any]:
        versions = {}
        for release in self.releases[name]:
            manifest: dict[str, Any] = {
                "name": name,
                "version": release.version,
                "dependencies": release.dependencies,
                "dist": {
                    "tarball": f"{self.base}/{self.tarball_path(name, release.version)}",
                    "integrity": integrity(release.data),
                    "shasum": hashlib.sha1(release.data).hexdigest(),
                },
            }
            if not abbreviated:
                manifest["description"] = f"{name} from upstream"
            versions[release.version] = manifest
        document: dict[str, Any] = {
            "name": name, "dist-tags": dict(self.tags.get(name, {})), "versions": versions,
        }  # fmt: skip
        stamps = [r.published for r in self.releases[name] if r.published is not None]
        if abbreviated:
            if stamps:
                document["modified"] = iso(max(stamps))
            return document
        document["description"] = f"{name} from upstream"
        times = {r.version: iso(r.published) for r in self.releases[name] if r.published}
        if stamps:
            times |= {"created": iso(min(stamps)), "modified": iso(max(stamps))}
        document["time"] = times
        return document

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/-/npm/v1/security/advisories/bulk", self.advisories)
        app.router.add_get("/{path:.*}", self.handle)
        return app

    async def advisories(self, request: web.Request) -> web.Response:
        """Every package it has is vulnerable below 2.0.0."""
        asked: dict[str, list[str]] = await request.json()
        self.audited.append(asked)
        return web.json_response({
            name: [{
                "id": 1000 + i, "url": f"https://example.invalid/advisories/{i}",
                "title": f"{name} is vulnerable", "severity": "high",
                "vulnerable_versions": "<2.0.0", "cwe": [], "cvss": {"score": 7.5},
            }]
            for i, name in enumerate(sorted(asked)) if name in self.releases
        })  # fmt: skip

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = unquote(request.raw_path.lstrip("/").split("?")[0])
        self.requests[path] += 1
        if self.fault == "500":
            return web.Response(status=500, text="registry broken")
        for name, releases in self.releases.items():
            for release in releases:
                if path == self.tarball_path(name, release.version):
                    return web.Response(body=release.data, content_type="application/octet-stream")
        if self.delay:  # every packument, found or not
            await asyncio.sleep(self.delay)
        if path in self.releases:
            abbreviated = ABBREVIATED in request.headers.get("Accept", "")
            body = json.dumps(self.packument(path, abbreviated)).encode()
            return web.Response(
                body=body, content_type=ABBREVIATED if abbreviated else "application/json"
            )
        return web.json_response({"error": "Not found"}, status=404)
