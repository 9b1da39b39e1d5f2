"""The stages themselves. Each holds at most one chunk of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from pipelines.digest import Digest, Digests
from pipelines.errors import DigestMismatch, TooLarge

# Chunks at least this large are hashed in a worker thread: the event loop stays
# free for other requests, and hashing overlaps the sink's write of the previous
# chunk (both release the GIL).
THREAD_HASH_THRESHOLD = 256 * 1024


async def rechunked(source: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """Coalesce small chunks into chunks of ``size`` bytes (the last may be shorter).

    Network reads arrive in pieces of a few KiB; hashing and writing them one by one
    costs a thread hop or a syscall each. Chunks already ``size`` or larger pass
    through uncopied.
    """
    buffer = bytearray()
    async for chunk in source:
        if not buffer and len(chunk) >= size:
            yield chunk
            continue
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


async def limited(source: AsyncIterable[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    """Raise :class:`TooLarge` as soon as the stream passes ``max_bytes``."""
    total = 0
    async for chunk in source:
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(max_bytes)
        yield chunk


async def hashed(source: AsyncIterable[bytes], digests: Digests) -> AsyncIterator[bytes]:
    """Feed every chunk to ``digests`` before passing it on."""
    async for chunk in source:
        if len(chunk) >= THREAD_HASH_THRESHOLD:
            await asyncio.to_thread(digests.update, chunk)
        else:
            digests.update(chunk)
        yield chunk


async def verified(
    source: AsyncIterable[bytes], digests: Digests, expected: Digest | None
) -> AsyncIterator[bytes]:
    """Raise :class:`DigestMismatch` at the end of the stream if ``expected`` is wrong.

    ``digests`` must be fed upstream of this stage (by :func:`hashed`). The check
    raises before the consumer sees the end of the stream, so a sink that commits
    only on a clean end commits nothing.
    """
    async for chunk in source:
        yield chunk
    if expected is not None:
        actual = digests.digest(expected.algorithm)
        if actual != expected:
            raise DigestMismatch(str(expected), str(actual))


async def teed(
    source: AsyncIterable[bytes], side: Callable[[bytes], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """Hand every chunk to ``side`` (a client being served) and pass it on (to storage).

    If ``side`` fails (the client went away), it is dropped and the stream goes on:
    a cache fill must not die with the first client that asked for it.
    """
    side_alive = True
    async for chunk in source:
        if side_alive:
            try:
                await side(chunk)
            except (ConnectionError, RuntimeError, OSError):
                side_alive = False
        yield chunk


async def drain(source: AsyncIterable[bytes]) -> int:
    """Consume a stream for its side effects (hashing, verifying); return its size."""
    total = 0
    async for chunk in source:
        total += len(chunk)
    return total
