"""HTTP helpers shared by every format: byte ranges, conditional requests, blob bodies."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from app.errors import RangeNotSatisfiable

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def request_body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives, one received buffer at a time.

    ``readchunk`` hands over each buffer as is; ``iter_any`` joins whatever is
    buffered into a new bytes object, one more copy of every byte. The end is
    ``at_eof()``, not an empty read: aiohttp's shared empty-body reader answers
    every read after the first with an empty chunk forever.
    """
    content = request.content
    while True:
        data, _ = await content.readchunk()
        if data:
            yield data
        elif content.at_eof():
            return


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
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if last and int(last) < start:
        return None  # invalid syntax per the RFC: ignore it
    if start >= size:
        raise _unsatisfiable(size)
    return ByteRange(start, end)


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


async def send_blob(
    request: web.Request, body: BlobBody, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Answer GET or HEAD for a stored object, honouring Range, If-Range and If-None-Match."""
    out = {
        "ETag": f'"{body.etag}"',
        "Accept-Ranges": "bytes",
        "Content-Type": body.content_type,
        **(headers or {}),
    }
    if etag_matches(request.headers.get("If-None-Match"), body.etag):
        return web.Response(status=304, headers=out)
    if_range = request.headers.get("If-Range")
    honour_range = if_range is None or if_range.strip() == f'"{body.etag}"'
    selected = parse_range(request.headers.get("Range"), body.size) if honour_range else None
    offset, count, status = 0, body.size, 200
    if selected is not None:
        offset, count, status = selected.start, selected.length, 206
        out["Content-Range"] = f"bytes {selected.start}-{selected.end}/{body.size}"
    response = web.StreamResponse(status=status, headers=out)
    response.content_length = count
    await response.prepare(request)
    if request.method == "HEAD" or count == 0:
        await response.write_eof()
        return response
    if body.local_path is not None and await _sendfile(request, body.local_path, offset, count):
        await response.write_eof()
        return response
    async for chunk in body.open(offset, count):
        await response.write(chunk)
    await response.write_eof()
    return response


async def _sendfile(request: web.Request, path: Path, offset: int, count: int) -> bool:
    """Let the kernel copy the file to the socket; False where the loop cannot.

    The stdlib event loop implements ``loop.sendfile``; uvloop does not, and the
    caller then streams the object itself.
    """
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("connection lost")
    loop = asyncio.get_running_loop()
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        await loop.sendfile(transport, handle, offset, count, fallback=False)
    except (NotImplementedError, RuntimeError):
        return False
    finally:
        handle.close()
    return True
