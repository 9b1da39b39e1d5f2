"""Where pipelines start: the buffers of a network stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class ChunkedStream(Protocol):
    """aiohttp's StreamReader, as a request body or a client response has it."""

    async def readchunk(self) -> tuple[bytes, bool]: ...

    def at_eof(self) -> bool: ...


async def received(stream: ChunkedStream) -> AsyncIterator[bytes]:
    """Every buffer the stream receives, as is, until its end.

    ``readchunk`` hands over each buffer without copying (``iter_any`` joins what is
    buffered into a new bytes object). The end is ``at_eof()``, not an empty read: an
    empty chunk also marks the end of an HTTP chunk, and aiohttp's shared empty-body
    reader answers every read after the first with one forever.
    """
    while True:
        data, _ = await stream.readchunk()
        if data:
            yield data
        elif stream.at_eof():
            return


async def once(data: bytes) -> AsyncIterator[bytes]:
    """A body already in memory (a manifest, a metadata document), as a stream."""
    yield data
