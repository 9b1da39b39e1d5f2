"""The stages themselves. Each holds at most one chunk of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from pipelines.digest import Digest, Digests
from pipelines.errors import DigestMismatch, TooLarge


async def limited(source: AsyncIterable[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    """Raise :class:`TooLarge` as soon as the stream passes ``max_bytes``."""
    total = 0
    async for chunk in source:
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(max_bytes)
        yield chunk


async def hashed(source: AsyncIterable[bytes], digests: Digests) -> AsyncIterator[bytes]:
    """Feed every chunk to ``digests`` before passing it on.

    Inline, on the event loop: network reads are tens of KiB (about 50 us of sha256
    each), and a thread hop per chunk cost more CPU than it saved. hashlib releases
    the GIL meanwhile, so a storage write in another thread goes on in parallel.
    """
    async for chunk in source:
        digests.update(chunk)
        yield chunk


async def hashed_aside(source: AsyncIterable[bytes], digests: Digests) -> AsyncIterator[bytes]:
    """Like :func:`hashed`, each hash in a worker thread of its own while the chunk
    goes on.

    For digests computed beside another stage's (an upload's md5 and blake2b next to
    the content store's sha256): the event loop hashes one stream, not three, and goes
    back to reading the socket, and the hashes run side by side (hashlib releases the
    GIL). One chunk is hashed at a time, in order; the stream ends only once every
    chunk is in ``digests``.
    """
    loop = asyncio.get_running_loop()
    updaters = digests.updaters()
    pending: list[asyncio.Future[None]] = []
    async for chunk in source:
        for future in pending:
            await future
        pending = [loop.run_in_executor(None, update, chunk) for update in updaters]
        digests.counted(len(chunk))
        yield chunk
    for future in pending:
        await future


async def verified(
    source: AsyncIterable[bytes], digests: Digests, expected: Digest | None
) -> AsyncIterator[bytes]:
    """Raise :class:`DigestMismatch` at the end of the stream if ``expected`` is wrong.

    ``digests`` must be fed upstream of this stage (by :func:`hashed`). The last chunk
    is held back until the check passes, so neither a sink that commits only on a
    clean end nor a client teed downstream ever gets a whole wrong body.
    """
    held: bytes | None = None
    async for chunk in source:
        if held is not None:
            yield held
        held = chunk
    if expected is not None:
        actual = digests.digest(expected.algorithm)
        if actual != expected:
            raise DigestMismatch(str(expected), str(actual))
    if held is not None:
        yield held


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
