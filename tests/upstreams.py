"""Fake upstreams for remote repositories: real aiohttp servers that speak HTTP,
count what they are asked and misbehave on demand."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class File:
    body: bytes
    content_type: str = "application/octet-stream"
    etag: str | None = None

    def __post_init__(self) -> None:
        if self.etag is None:
            self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class FileTree:
    """An HTTP file tree. ``fault`` makes every request fail in one way:
    "500", "timeout" (no answer for ``delay`` s), "reset" (the body stops half-way),
    "redirect-loop"; ``delay`` also slows every body down (chunk by chunk)."""

    files: dict[str, File] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    conditional: Counter[str] = field(default_factory=Counter)  # requests with If-None-Match
    fault: str | None = None
    delay: float = 0.0
    chunk: int = 64 * 1024

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.requests[path] += 1
        if self.fault == "500":
            return web.Response(status=500, text="upstream broken")
        if self.fault == "timeout":
            await asyncio.sleep(self.delay)
            return web.Response(status=500)
        if self.fault == "redirect-loop":
            raise web.HTTPFound(f"/{path}")
        file = self.files.get(path)
        if file is None:
            return web.Response(status=404, text="no such file")
        if request.headers.get("If-None-Match"):
            self.conditional[path] += 1
            if request.headers["If-None-Match"] == file.etag:
                return web.Response(status=304, headers={"ETag": file.etag or ""})
        response = web.StreamResponse(
            headers={"Content-Type": file.content_type, "ETag": file.etag or ""}
        )
        response.content_length = len(file.body)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        for offset in range(0, len(file.body), self.chunk):
            if self.fault == "reset" and offset >= len(file.body) // 2:
                assert request.transport is not None
                request.transport.abort()  # a connection reset mid-body
                return response
            await response.write(file.body[offset : offset + self.chunk])
            if self.delay:
                await asyncio.sleep(self.delay)
        await response.write_eof()
        return response
