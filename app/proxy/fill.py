"""A cache miss on its way: the upstream's body read once, teed into the CAS, and
handed to one reader (the request that asked first) chunk by chunk as it arrives.

The fill runs in a task of its own (:meth:`Fill.run`, started by the core), not in
the reader's: aiohttp cancels a handler whose client hangs up, and the fill, which
other requests wait on, must go on without it. The reader gets what the CAS gets,
verified (the last chunk is held back until the published digest matches), so it
sees a broken body cut short, never a whole wrong one.

    reader leaves (stops iterating, is cancelled)  → the fill goes on alone
    reader stalls for CLIENT_STALL                 → dropped; its reading raises
    body rejected (digest, size, broken off)       → nothing cached; reading raises
                                                     :class:`FillRejected`
    stored, but the row cannot be written          → the reader, who has every
                                                     verified byte, still ends whole

A body that nothing proves whole (no length, not chunked, no digest) is passed on the
same way and never stored (``cache=False``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
import structlog

from app.backends.metadata import MetadataError
from app.backends.storage import StorageError
from app.cas import BlobBeingCollected, ContentStore
from app.errors import BadGateway
from app.metrics import Metrics
from app.proxy.entries import Entries, Entry
from app.proxy.options import RemoteOptions
from app.proxy.results import Cached, CacheStatus, Fetch
from app.repositories import Repository
from pipelines import DigestMismatch, TooLarge, limited
from pipelines.sources import received

log = structlog.get_logger("artifactapi.proxy")

CLIENT_STALL = 30.0  # a reader that takes no chunk for this long is dropped


class FillRejected(BadGateway):
    """The upstream's body was not what it should be: nothing was cached."""


@dataclass(frozen=True, slots=True)
class _End:
    error: BaseException | None = None


class Fill:
    """A MISS: read it with :meth:`chunks`, or :meth:`leave` it and await :meth:`stored`."""

    how: CacheStatus = "MISS"

    def __init__(
        self,
        cas: ContentStore,
        entries: Entries,
        metrics: Metrics,
        repo: Repository,
        fetch: Fetch,
        options: RemoteOptions,
        response: aiohttp.ClientResponse,
        *,
        cache: bool,
    ) -> None:
        self.cas, self.entries, self.metrics = cas, entries, metrics
        self.repo, self.fetch, self.options = repo, fetch, options
        self.cache = cache  # False: passed on, never stored (nothing proves it whole)
        self.content_type = content_type_of(fetch, response)
        self.headers = kept_headers(fetch, response)  # replayed with every answer
        self.length = response.content_length
        self._response = response
        self._upstream = AsyncExitStack()  # holds the response open until run() ends
        self._started = time.monotonic()
        self._handed: asyncio.Queue[bytes | _End] = asyncio.Queue(maxsize=1)
        self._reading = True
        self._sent = 0
        self._stored: asyncio.Future[Cached | None] = asyncio.get_running_loop().create_future()
        self._stored.add_done_callback(_retrieved)

    def holding(self, upstream: AsyncExitStack, started: float) -> None:
        """Take over the upstream response's context (closed when the fill ends) and
        the time it was asked for (the upstream's time is observed with the body)."""
        self._upstream, self._started = upstream, started

    # -- the reader's side --------------------------------------------------------

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body as it arrives; it ends once the fill is recorded. Raises
        :class:`FillRejected` for a body that broke, ``ConnectionResetError`` if this
        reader was dropped for stalling. Leaving early leaves the fill running."""
        try:
            while True:
                if not self._reading:
                    raise ConnectionResetError("dropped from the cache fill: it stopped reading")
                item = await self._handed.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            self.leave()

    def leave(self) -> None:
        """Stop being handed chunks; the fill goes on (a HEAD, a client gone)."""
        self._reading = False
        while not self._handed.empty():  # a hand-over waiting for room goes through
            self._handed.get_nowait()

    async def stored(self) -> Cached | None:
        """Once the fill is over: the new copy; None for a body passed on, not cached.
        Raises what kept it out of the cache."""
        return await asyncio.shield(self._stored)

    # -- the fill's side ------------------------------------------------------------

    async def run(self) -> None:
        """Read the body to its end, whoever reads along; store and record it."""
        try:
            async with self._upstream:
                if self.cache:
                    await self._store()
                else:
                    await self._pass_on()
        except BaseException as exc:  # cancelled (shutdown), or a failure of our own
            self._end(exc if isinstance(exc, Exception) else ConnectionAbortedError("fill stopped"))
            raise
        finally:
            elapsed = time.monotonic() - self._started
            self.metrics.upstream_seconds.labels(self.repo.name).observe(elapsed)

    async def _store(self) -> None:
        fetch, repo = self.fetch, self.repo
        source = _Source(_counted(self.metrics, repo.name, received(self._response.content)))
        limit = self.options.max_metadata_size if fetch.kind == "metadata" else None
        try:
            blob = await self.cas.ingest(source, fetch.expected, max_size=limit, tap=self._hand)
        except (DigestMismatch, TooLarge, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "upstream body rejected", repository=repo.name, path=fetch.path, error=repr(exc)
            )
            self._end(FillRejected(f"upstream body for {fetch.path} rejected: {exc}"))
            return
        except (MetadataError, StorageError, BlobBeingCollected) as exc:
            # Stored last (the object, then its row): the reader may have every
            # verified byte already, and then keeps its answer whole.
            if not (source.ended and self._sent == source.read and self._reading):
                self._end(exc)
                raise
            await self._unrecorded(exc)
            return
        entry = new_entry(fetch, self.options, self._response, blob.digest, blob.size, self.headers)
        try:
            await self.entries.put(repo.id, entry)
        except MetadataError as exc:
            await self._unrecorded(exc)
            return
        local = self.cas.local_path(blob.digest)
        self._stored.set_result(Cached("MISS", entry, blob, self.cas, local))
        await self._finish()

    async def _unrecorded(self, error: Exception) -> None:
        """Every verified byte went to the reader; only keeping them failed. Work after
        the last byte never changes the answer (nor its access-log line): a warning,
        and the next request fetches again."""
        log.warning(
            "fill not recorded; the answer went out whole",
            repository=self.repo.name,
            path=self.fetch.path,
            error=str(error) or type(error).__name__,
        )
        if not self._stored.done():
            self._stored.set_exception(error)
        await self._finish()

    async def _pass_on(self) -> None:
        """Without a length, chunking or a digest, the connection closing is the only
        end there is, and a crash ends it the same way: handed on as it comes, as any
        client of that upstream would get it, and never stored."""
        log.info(
            "upstream body unprovable (no length, no digest): served, not cached",
            repository=self.repo.name,
            path=self.fetch.path,
        )
        body = _counted(self.metrics, self.repo.name, received(self._response.content))
        if self.fetch.kind == "metadata":
            body = limited(body, self.options.max_metadata_size)
        try:
            async for chunk in body:
                await self._hand(chunk)
        except (TooLarge, aiohttp.ClientError, TimeoutError, ConnectionResetError) as exc:
            if not self._reading:  # its reader left, or was dropped: nobody else wants it
                self._stored.set_result(None)
                return
            log.warning(
                "upstream body rejected",
                repository=self.repo.name,
                path=self.fetch.path,
                error=repr(exc),
            )
            self._end(FillRejected(f"upstream body for {self.fetch.path} rejected: {exc}"))
            return
        self._stored.set_result(None)
        await self._finish()

    async def _hand(self, chunk: bytes) -> None:
        """The tap: one chunk to the reader, waiting (a while) for it to take the last."""
        if not self._reading:
            raise ConnectionResetError("the fill's reader left")
        try:
            async with asyncio.timeout(CLIENT_STALL):
                await self._handed.put(chunk)
        except TimeoutError:
            # One slow link must not hold back a fill that others are waiting for.
            self._reading = False
            raise ConnectionResetError("reader dropped from the cache fill") from None
        self._sent += len(chunk)

    async def _finish(self) -> None:
        """The end, after the last chunk: the reader's body is whole."""
        if not self._reading:
            return
        try:
            async with asyncio.timeout(CLIENT_STALL):
                await self._handed.put(_End())
        except TimeoutError:
            self._reading = False

    def _end(self, error: BaseException) -> None:
        """A failed fill: the reader's next read raises ``error``, at once."""
        if not self._stored.done():
            self._stored.set_exception(error)
        if self._reading:
            while not self._handed.empty():  # what it has not taken yet is of no use now
                self._handed.get_nowait()
            self._handed.put_nowait(_End(error))


def content_type_of(fetch: Fetch, response: aiohttp.ClientResponse) -> str:
    return fetch.content_type or response.headers.get("Content-Type") or "application/octet-stream"


def kept_headers(fetch: Fetch, response: aiohttp.ClientResponse) -> dict[str, str]:
    kept = {h: response.headers[h] for h in fetch.keep_headers if h in response.headers}
    kept.update(fetch.headers)  # what the format knows beats what the upstream says
    return kept


def delimited(response: aiohttp.ClientResponse) -> bool:
    """Whether the body's end is the upstream's word (a length, or chunked encoding's
    last chunk), so that a body cut short is told from a whole one."""
    if response.content_length is not None:
        return True
    return "chunked" in response.headers.get("Transfer-Encoding", "").lower()


def new_entry(
    fetch: Fetch,
    options: RemoteOptions,
    response: aiohttp.ClientResponse,
    digest: str,
    size: int,
    headers: dict[str, str] | None = None,
) -> Entry:
    """The row for a body just stored: artifacts never expire, metadata after its TTL."""
    now = time.time()
    return Entry(
        path=fetch.path,
        status=200,
        blob_digest=digest,
        size=size,
        content_type=content_type_of(fetch, response),
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        headers=headers if headers is not None else {},
        fetched_at=now,
        expires_at=now + options.metadata_ttl if fetch.kind == "metadata" else None,
    )


async def _counted(
    metrics: Metrics, repository: str, body: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    counter = metrics.upstream_bytes.labels(repository)
    async for chunk in body:
        counter.inc(len(chunk))
        yield chunk


class _Source:
    """The upstream body, telling whether it was read to its end and how much of it."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self.body = body
        self.read = 0
        self.ended = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.body:
            self.read += len(chunk)
            yield chunk
        self.ended = True


def _retrieved(future: asyncio.Future[Cached | None]) -> None:
    """A failure nobody asks :meth:`Fill.stored` for is not an unretrieved exception."""
    if not future.cancelled():
        future.exception()
