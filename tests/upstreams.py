"""Fake upstreams for remote repositories: real aiohttp servers that speak HTTP,
count what they are asked and misbehave on demand."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

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
    "redirect-loop"; ``delay`` also slows every body down (chunk by chunk), and
    ``head_delay`` every answer's headers."""

    files: dict[str, File] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    conditional: Counter[str] = field(default_factory=Counter)  # requests with If-None-Match
    fault: str | None = None
    delay: float = 0.0
    chunk: int = 64 * 1024
    head_delay: float = 0.0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.requests[path] += 1
        if self.head_delay:
            await asyncio.sleep(self.head_delay)
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


@dataclass
class Registry:
    """A distribution-API registry serving one OCI image layout as ``name:tag``, with
    the token flow docker and skopeo meet at Docker Hub: ``/v2/…`` answers 401 with a
    Bearer challenge; ``/token`` (basic auth) hands out a token for the scope."""

    layout: Path
    name: str
    tag: str
    username: str = "reader"
    password: str = "s3cret"
    corrupt: set[str] = field(default_factory=set)  # blob digests served wrong
    requests: Counter[str] = field(default_factory=Counter)
    tokens: set[str] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_route("*", "/v2/{path:.*}", self.handle)
        return app

    async def token(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        if request.query.get("scope") != f"repository:{self.name}:pull":
            return web.Response(status=403)
        token = uuid.uuid4().hex
        self.tokens.add(token)
        return web.json_response({"token": token, "expires_in": 300})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.requests[path] += 1
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.tokens:
            realm = f"http://{request.host}/token"
            scope = f"repository:{self.name}:pull"
            challenge = f'Bearer realm="{realm}",service="fake",scope="{scope}"'
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED"}]}, status=401,
                headers={"WWW-Authenticate": challenge},
            )  # fmt: skip
        prefix = f"{self.name}/"
        if not path.startswith(prefix):
            return web.json_response({"errors": [{"code": "NAME_UNKNOWN"}]}, status=404)
        kind, _, reference = path[len(prefix) :].partition("/")
        if kind == "manifests":
            digest = self._manifest_digest(reference)
            if digest is None:
                return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
            body = self._blob(digest)
            media_type = json.loads(body)["mediaType"]
            # Asked by a sha512 digest, a registry answers in that algorithm.
            answered = reference if reference.startswith("sha512:") else digest
            headers = {"Content-Type": media_type, "Docker-Content-Digest": answered}
            return web.Response(body=body, headers=headers)
        if kind == "tags" and reference == "list":
            return web.json_response({"name": self.name, "tags": [self.tag]})
        if kind == "blobs":
            try:
                body = self._blob(reference)
            except (FileNotFoundError, ValueError):
                return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
            if reference in self.corrupt:
                body = body[:-1] + bytes([body[-1] ^ 1])
            return web.Response(body=body, content_type="application/octet-stream")
        return web.json_response({"errors": [{"code": "UNSUPPORTED"}]}, status=404)

    def _manifest_digest(self, reference: str) -> str | None:
        """The sha256 digest of the manifest a tag, a sha256 or a sha512 digest names."""
        if reference.startswith("sha256:"):
            return reference
        index = json.loads((self.layout / "index.json").read_text())
        for entry in index["manifests"]:
            if reference.startswith("sha512:"):
                sha512 = hashlib.sha512(self._blob(entry["digest"])).hexdigest()
                if reference == f"sha512:{sha512}":
                    return str(entry["digest"])
            elif entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == reference:
                return str(entry["digest"])
        return None

    def _blob(self, digest: str) -> bytes:
        hexpart = digest.removeprefix("sha256:")
        if len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
            raise ValueError(digest)
        return (self.layout / "blobs" / "sha256" / hexpart).read_bytes()


@dataclass
class RawFile:
    """A body, and how a :class:`RawUpstream` sends it: "length" (Content-Length),
    "close" (HTTP/1.0 style: no length, the end is the connection closing), "cut" (no
    length, the connection closed after ``cut_at`` bytes: a crash mid-body)."""

    body: bytes
    how: str = "close"
    cut_at: int = 0
    content_type: str = "application/octet-stream"


@dataclass
class RawUpstream:
    """An upstream below HTTP libraries: a raw asyncio TCP server writing its answers by
    hand, for what aiohttp's server never does (a body delimited only by the close)."""

    files: dict[str, RawFile] = field(default_factory=dict)  # path without "/" -> file
    requests: Counter[str] = field(default_factory=Counter)
    chunk: int = 64 * 1024
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", 0)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            path = target.lstrip("/")
            self.requests[path] += 1
            file = self.files.get(path)
            if file is None:
                writer.write(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            lines = ["HTTP/1.0 200 OK", f"Content-Type: {file.content_type}"]
            if file.how == "length":
                lines.append(f"Content-Length: {len(file.body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            if method == "HEAD":
                return
            body = file.body[: file.cut_at] if file.how == "cut" else file.body
            for offset in range(0, len(body), self.chunk):
                writer.write(body[offset : offset + self.chunk])
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()  # the end of the body, for "close" and "cut"
