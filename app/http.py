"""HTTP helpers shared by every format: byte ranges, conditional requests, blob bodies."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog
from aiohttp import web

from app.backends.storage import ObjectNotFound, StorageError
from app.cas import ContentStore
from app.errors import ContentMissing, RangeNotSatisfiable
from app.inputs import whole_number
from pipelines.sources import received

log = structlog.get_logger(__name__)

# Bodies up to this size are read and sent in one write rather than by sendfile.
SMALL_BODY = 64 * 1024

# Request key: body bytes sent by sendfile, which aiohttp's response does not count.
SENDFILE_BYTES: web.RequestKey[int] = web.RequestKey("sendfile_bytes")

_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
# host, host:port, [v6]:port; letters, digits, dots and dashes only.
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")


@dataclass(frozen=True, slots=True)
class ExternalUrl:
    """Where clients reach this service, for URLs a format hands out whole (made at
    start-up from ``server.base_url`` and ``server.trust_forwarded``)."""

    base_url: str | None = None
    trust_forwarded: bool = False

    def __call__(self, request: web.Request) -> str:
        """The configured base URL; else, when trusted, the scheme and host a proxy in
        front passes on; else the request's own. A forwarded value that is not a plain
        scheme or host is ignored, never echoed into a URL."""
        if self.base_url is not None:
            return self.base_url
        scheme, host = request.scheme, request.host
        if self.trust_forwarded:
            proto = _first(request.headers.get("X-Forwarded-Proto")).lower()
            forwarded_host = _first(request.headers.get("X-Forwarded-Host"))
            scheme = proto if proto in ("http", "https") else scheme
            host = forwarded_host if _HOST.match(forwarded_host) else host
        if not _HOST.match(host):
            host = "localhost"  # a Host header no client would send: never put it in a URL
        return f"{scheme}://{host}"


def _first(header: str | None) -> str:
    """The value the proxy nearest the client set (the first of a list)."""
    return (header or "").split(",", 1)[0].strip()


def request_body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives, one received buffer at a time."""
    return received(request.content)


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One ``bytes=`` range resolved against ``size``; None means the whole body.

    Syntax we do not serve (other units, several ranges, garbage) is ignored, as
    RFC 9110 allows; a well-formed range that selects nothing is a 416.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = _position(match.group(1), size), _position(match.group(2), size)
    if first is None:  # suffix: the last N bytes
        assert last is not None
        if last == 0 or size == 0:
            raise _unsatisfiable(size)
        return ByteRange(max(0, size - last), size - 1)
    if last is not None and last < first:
        return None  # invalid syntax per the RFC: ignore it
    if first >= size:
        raise _unsatisfiable(size)
    return ByteRange(first, size - 1 if last is None else min(last, size - 1))


def _position(text: str, size: int) -> int | None:
    """One number of a range; None where it is left out. A number longer than any
    stored size can be is a 416, refused before ``int()`` meets thousands of digits."""
    if not text:
        return None
    number = whole_number(text)
    if number is None:
        raise _unsatisfiable(size)
    return number


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        "requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"}
    )


def etag_matches(header: str | None, etag: str) -> bool:
    """Weak comparison of an ``If-None-Match`` list against our strong ETag."""
    if not header:
        return False
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return "*" in candidates or f'"{etag}"' in candidates


@dataclass(frozen=True, slots=True)
class BlobBody:
    """What :func:`send_blob` needs to answer for one stored object."""

    size: int
    etag: str
    content_type: str
    open: Callable[[int, int], AsyncIterator[bytes]]  # (offset, length) -> chunks
    local_path: Path | None = None
    redirect: Callable[[], Awaitable[str | None]] | None = None  # where clients may fetch it
    data: bytes | None = None  # the whole body, when a caller holds it in memory

    @classmethod
    def stored(
        cls,
        cas: ContentStore,
        digest: str,
        size: int,
        content_type: str,
        *,
        etag: str | None = None,
        redirect: bool = True,
        local_path: Path | None = None,
        data: bytes | None = None,
    ) -> BlobBody:
        """A CAS blob; ``redirect`` lets the storage send clients to fetch it directly.

        ``etag`` defaults to the CAS digest; formats that name content by another
        digest (an OCI sha512 reference) pass that one.
        """
        return cls(
            size=size,
            etag=etag or digest,
            content_type=content_type,
            open=lambda offset, length: cas.open(digest, offset, length),
            local_path=local_path or cas.local_path(digest),  # resolving costs a stat per level
            redirect=(lambda: cas.download_url(digest, content_type)) if redirect else None,
            data=data,
        )


def blob_headers(
    etag: str, content_type: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The headers of every answer :func:`send_blob` gives for a blob."""
    return {
        "ETag": f'"{etag}"',
        "Accept-Ranges": "bytes",
        "Content-Type": content_type,
        **(extra or {}),
    }


async def send_blob(
    request: web.Request, body: BlobBody, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Answer GET or HEAD for a stored object, honouring Range, If-Range and If-None-Match."""
    out = blob_headers(body.etag, body.content_type, headers)
    if etag_matches(request.headers.get("If-None-Match"), body.etag):
        return web.Response(status=304, headers=out)
    if request.method == "GET" and body.redirect is not None:
        # The client repeats its Range and conditions at the new location.
        location = await body.redirect()
        if location is not None:
            return web.Response(status=307, headers={**out, "Location": location})
    if_range = request.headers.get("If-Range")
    honour_range = if_range is None or if_range.strip() == f'"{body.etag}"'
    selected = parse_range(request.headers.get("Range"), body.size) if honour_range else None
    offset, count, status = 0, body.size, 200
    if selected is not None:
        offset, count, status = selected.start, selected.length, 206
        out["Content-Range"] = f"bytes {selected.start}-{selected.end}/{body.size}"
    if request.method == "GET" and 0 < count <= SMALL_BODY:
        data = _small(body, offset, count)
        if data is not None:
            return web.Response(status=status, headers=out, body=data)
    # Opened before the headers go out: content whose object is gone is a 404, never
    # a 200 that is cut after its headers.
    source = await _opened(request, body, offset, count) if request.method == "GET" else None
    response = web.StreamResponse(status=status, headers=out)
    response.content_length = count
    try:
        await response.prepare(request)
        if isinstance(source, _Chunks):
            await response.write(source.first)
            async for chunk in source.rest:
                await response.write(chunk)
        elif source is not None:
            await _sendfile(request, source, offset, count)
    except ConnectionError as exc:
        # The client left, or the body cannot be completed: the connection cannot
        # carry another response, so close it; aiohttp then finishes quietly.
        level = log.warning if isinstance(exc, ConnectionAbortedError) else log.info
        level("response body cut short", error=repr(exc))
        return cut(request, response)
    finally:
        await _close(source)
    await response.write_eof()
    return response


async def _close(source: _Chunks | BinaryIO | None) -> None:
    """Let go of a source whatever happened to the response (closing twice is fine)."""
    if isinstance(source, _Chunks):
        close = getattr(source.rest, "aclose", None)
        if close is not None:
            await close()
    elif source is not None:
        source.close()


def cut(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """A response that started and cannot be finished: close the connection, so the
    client sees a short body (never a complete wrong one, nor the next response run
    into it); aiohttp then finishes quietly."""
    with suppress(Exception):
        if request.transport is not None:
            request.transport.close()
    return response


def _small(body: BlobBody, offset: int, count: int) -> bytes | None:
    if body.data is not None and len(body.data) == body.size:
        return body.data if count == body.size else body.data[offset : offset + count]
    return read_small(body.local_path, offset, count) if body.local_path is not None else None


def read_small(path: Path, offset: int, count: int) -> bytes | None:
    """A small body read in one go, on the loop: a few microseconds from the page
    cache, where a thread hop or sendfile's extra system calls cost more than the
    read. None if the file is not (wholly) there; the streaming path then reports it."""
    try:
        with open(path, "rb", buffering=0) as handle:
            handle.seek(offset)
            data = handle.read(count)
    except OSError:
        return None
    return data if len(data) == count else None


@dataclass(frozen=True, slots=True)
class _Chunks:
    first: bytes
    rest: AsyncIterator[bytes]


async def _opened(
    request: web.Request, body: BlobBody, offset: int, count: int
) -> _Chunks | BinaryIO | None:
    """The body's source, ready to send: an open file for sendfile, else its stream
    with the first chunk read. :class:`ContentMissing` if the object is gone."""
    if count == 0:
        return None
    if body.local_path is not None and _sendfile_possible(request):
        try:
            return await asyncio.to_thread(open, body.local_path, "rb", buffering=0)
        except FileNotFoundError:
            raise _missing(body) from None
        except OSError as exc:
            raise StorageError(f"stored file unreadable: {exc}") from exc
    chunks = body.open(offset, count)
    try:
        first = await anext(chunks)
    except ObjectNotFound:
        raise _missing(body) from None
    except StopAsyncIteration:
        first = b""  # shorter than its row says: the streaming loop reports it
    return _Chunks(first, chunks)


def _missing(body: BlobBody) -> ContentMissing:
    log.error("stored object missing under its row", etag=body.etag)
    return ContentMissing(f"content {body.etag} is missing from storage")


def _sendfile_possible(request: web.Request) -> bool:
    transport = request.transport
    return (
        transport is not None
        and transport.get_extra_info("socket") is not None
        and transport.get_extra_info("sslcontext") is None
    )


async def _sendfile(request: web.Request, handle: BinaryIO, offset: int, count: int) -> None:
    """Let the kernel copy the file to the socket (never over TLS: see _sendfile_possible).

    Neither uvloop (no ``loop.sendfile``) nor the transport's own buffer is used: the
    headers are flushed, then ``os.sendfile`` writes straight to a duplicate of the
    socket's descriptor, waiting for room on that duplicate, so the event loop's
    registration of the original is never touched. The stdlib loop's
    ``sock_sendfile`` works the same way.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("connection lost")
    sock = transport.get_extra_info("socket")
    await _flushed(transport)
    try:
        out = os.dup(sock.fileno())
    except OSError as exc:  # closed while the headers went out
        raise ConnectionResetError("connection lost") from exc
    try:
        await _copy_file(out, handle.fileno(), offset, count)
    finally:
        os.close(out)
    request[SENDFILE_BYTES] = count


async def _flushed(transport: asyncio.Transport) -> None:
    """Wait until the transport has sent what it buffered (the response headers)."""
    while transport.get_write_buffer_size() > 0:
        if transport.is_closing():
            raise ConnectionResetError("connection lost")
        await asyncio.sleep(0.001)


async def _copy_file(out: int, source: int, offset: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    while count > 0:
        try:
            sent = os.sendfile(out, source, offset, count)
        except BlockingIOError:
            await _writable(loop, out)
            continue
        if sent == 0:
            raise ConnectionAbortedError(f"file ended {count} bytes short of its recorded size")
        offset += sent
        count -= sent


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _resolve, ready)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
