"""Answer a remote repository's request: from the cache, or from the upstream once.

    fresh entry                      → HIT: the CAS blob (or the remembered 404)
    missing or expired, one leader   → the upstream, conditional if there is a copy:
        304                          → the copy, good for another metadata_ttl
        404/410                      → remembered for negative_ttl, 404
        200                          → MISS: streamed to the client and into the CAS at once,
                                       verified against the published digest if any, then a row
        5xx, timeout, unreachable    → STALE: the expired copy if there is one, else 502/504
    the others                       → wait for the leader, then HIT

A body that breaks (truncated, wrong checksum, too large) is never cached; a client
already being served sees its response cut short, never a whole wrong body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Literal

import aiohttp
import structlog
from aiohttp import web

from app.backends.metadata import MetadataStore
from app.cas import ContentStore
from app.errors import ApiError, BadGateway, GatewayTimeout, NotFound
from app.http import BlobBody, send_blob
from app.metrics import Metrics
from app.proxy.entries import Entries, Entry
from app.proxy.singleflight import FlightFailed, Leases, SingleFlight
from app.proxy.upstream import Upstream, UpstreamError, UpstreamTimeout
from app.repositories import Repository
from pipelines import Digest, DigestMismatch, TooLarge

log = structlog.get_logger("artifactapi.proxy")

Kind = Literal["artifact", "metadata"]
HIT_FLUSH_INTERVAL = 10.0
ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Fetch:
    """What a format makes of a request to a remote repository."""

    path: str  # the cache key: what the client asked for, normalised
    upstream_path: str  # what to ask the upstream for, percent-encoded
    kind: Kind  # artifact: cached forever; metadata: for the repository's metadata_ttl
    expected: Digest | None = None  # the checksum the format publishes for it
    accept: str | None = None  # the Accept header to send upstream
    keep_headers: tuple[str, ...] = ()  # upstream headers to remember and replay
    content_type: str | None = None  # instead of the upstream's
    headers: tuple[tuple[str, str], ...] = ()  # sent with every answer (a format's own)


class _Unavailable(Exception):
    """The upstream failed in a way a stale copy may stand in for."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class RemoteEngine:
    def __init__(
        self, cas: ContentStore, metadata: MetadataStore, leases: Leases, metrics: Metrics
    ) -> None:
        self.cas = cas
        self.entries = Entries(metadata.db)
        self.flight = SingleFlight(leases)
        self.metrics = metrics
        self._hits: dict[tuple[int, str], tuple[float, int]] = {}

    async def serve(
        self, request: web.Request, repo: Repository, upstream: Upstream, fetch: Fetch
    ) -> web.StreamResponse:
        key = f"{repo.id}:{fetch.path}"
        for _ in range(ATTEMPTS):
            entry = await self.entries.get(repo.id, fetch.path)
            if entry is not None and entry.fresh(time.time()):
                cached = await self._from_cache(request, repo, entry, "HIT")
                if cached is not None:
                    return cached
                entry = None  # its blob was collected: fetch it again
            # Shielded: aiohttp cancels a handler whose client hangs up, and the fill
            # (and the lease other requests wait on) must outlive that.
            turn = asyncio.ensure_future(self._turn(request, repo, upstream, fetch, key))
            turn.add_done_callback(_retrieve)
            try:
                response = await asyncio.shield(turn)
            except FlightFailed as exc:
                raise BadGateway(f"fetching {fetch.path} from upstream failed: {exc}") from None
            if response is not None:
                return response
        raise BadGateway(f"{fetch.path} could not be fetched from upstream; try again")

    async def _turn(
        self, request: web.Request, repo: Repository, upstream: Upstream, fetch: Fetch, key: str
    ) -> web.StreamResponse | None:
        """Fetch if this request leads for ``key``; None once another request has."""
        async with self.flight.turn(key) as leading:
            if leading:
                return await self._fetch(request, repo, upstream, fetch)
        return None

    async def _from_cache(
        self, request: web.Request, repo: Repository, entry: Entry, how: str
    ) -> web.StreamResponse | None:
        self._count(repo, entry.path, how)
        if entry.status == 404:
            raise NotFound(f"{entry.path} not found upstream", headers={"X-Cache": how})
        blob = await self.cas.stat(entry.blob_digest) if entry.blob_digest else None
        if blob is None:
            return None
        headers = {**entry.headers, "X-Cache": how}
        if how == "STALE":
            headers["Warning"] = '110 - "Response is Stale"'
        body = BlobBody.stored(self.cas, blob.digest, blob.size, entry.content_type, redirect=False)
        return await send_blob(request, body, headers)

    async def _fetch(
        self, request: web.Request, repo: Repository, upstream: Upstream, fetch: Fetch
    ) -> web.StreamResponse:
        # Looked up again under the lease: a leader elsewhere may have just finished.
        entry = await self.entries.get(repo.id, fetch.path)
        if entry is not None and entry.fresh(time.time()):
            cached = await self._from_cache(request, repo, entry, "HIT")
            if cached is not None:
                return cached
        stale = entry if entry is not None and entry.status == 200 else None
        started = time.monotonic()
        try:
            try:
                async with upstream.get(fetch.upstream_path, self._ask(fetch, stale)) as response:
                    return await self._answer(request, repo, upstream, fetch, stale, response)
            except UpstreamTimeout as exc:
                raise _Unavailable(GatewayTimeout(str(exc))) from exc
            except UpstreamError as exc:
                raise _Unavailable(BadGateway(str(exc))) from exc
        except _Unavailable as failure:
            log.warning(
                "upstream unavailable", repository=repo.name, path=fetch.path, error=str(failure)
            )
            if stale is not None:
                cached = await self._from_cache(request, repo, stale, "STALE")
                if cached is not None:
                    return cached
            raise failure.error from None
        finally:
            self.metrics.upstream_seconds.labels(repo.name).observe(time.monotonic() - started)

    @staticmethod
    def _ask(fetch: Fetch, stale: Entry | None) -> dict[str, str]:
        headers = {"Accept": fetch.accept} if fetch.accept else {}
        if stale is not None and stale.etag:
            headers["If-None-Match"] = stale.etag
        elif stale is not None and stale.last_modified:
            headers["If-Modified-Since"] = stale.last_modified
        return headers

    async def _answer(
        self,
        request: web.Request,
        repo: Repository,
        upstream: Upstream,
        fetch: Fetch,
        stale: Entry | None,
        response: aiohttp.ClientResponse,
    ) -> web.StreamResponse:
        options = upstream.options
        status = response.status
        if status == 304 and stale is not None:
            expires = time.time() + options.metadata_ttl
            await self.entries.revalidated(repo.id, fetch.path, expires)
            cached = await self._from_cache(request, repo, stale, "HIT")
            if cached is not None:
                return cached
            raise _Unavailable(BadGateway(f"{fetch.path}: upstream said unchanged, copy is gone"))
        if status in (404, 410):
            missing = Entry(
                fetch.path, 404, None, 0, "", expires_at=time.time() + options.negative_ttl
            )
            await self.entries.put(repo.id, missing)
            self._count(repo, fetch.path, "MISS")
            raise NotFound(f"{fetch.path} not found upstream", headers={"X-Cache": "MISS"})
        if status >= 500 or status == 429:
            raise _Unavailable(BadGateway(f"upstream answered {status} for {fetch.path}"))
        if status != 200:
            raise BadGateway(f"upstream answered {status} for {fetch.path}")
        return await self._fill(request, repo, upstream, fetch, response)

    async def _fill(
        self,
        request: web.Request,
        repo: Repository,
        upstream: Upstream,
        fetch: Fetch,
        response: aiohttp.ClientResponse,
    ) -> web.StreamResponse:
        options = upstream.options
        metadata = fetch.kind == "metadata"
        length = response.content_length
        if metadata and length is not None and length > options.max_metadata_size:
            raise BadGateway(
                f"upstream metadata for {fetch.path} exceeds {options.max_metadata_size} bytes"
            )
        content_type: str = (
            fetch.content_type or response.headers.get("Content-Type") or "application/octet-stream"
        )
        kept = {h: response.headers[h] for h in fetch.keep_headers if h in response.headers}
        kept.update(fetch.headers)  # what the format knows beats what the upstream says
        client: web.StreamResponse | None = None
        if request.method == "GET":
            client = web.StreamResponse(
                headers={**kept, "Content-Type": content_type, "X-Cache": "MISS"}
            )
            if length is not None:
                client.content_length = length
            await client.prepare(request)
        self._count(repo, fetch.path, "MISS")
        try:
            blob = await self.cas.ingest(
                _counted(self.metrics, repo.name, _body(response)),
                fetch.expected,
                max_size=options.max_metadata_size if metadata else None,
                tap=client.write if client is not None else None,
            )
        except (DigestMismatch, TooLarge, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "upstream body rejected", repository=repo.name, path=fetch.path, error=repr(exc)
            )
            if client is None:
                raise BadGateway(f"upstream body for {fetch.path} rejected: {exc}") from exc
            return _cut(request, client)
        entry = Entry(
            path=fetch.path,
            status=200,
            blob_digest=blob.digest,
            size=blob.size,
            content_type=content_type,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            headers=kept,
            fetched_at=time.time(),
            expires_at=time.time() + options.metadata_ttl if metadata else None,
        )
        await self.entries.put(repo.id, entry)
        if client is None:  # HEAD: answered from the new entry
            cached = await self._from_cache(request, repo, entry, "MISS")
            if cached is None:
                raise BadGateway(f"{fetch.path} vanished right after it was cached")
            return cached
        with suppress(ConnectionError):  # the client left; the cache is filled all the same
            await client.write_eof()
        return client

    def _count(self, repo: Repository, path: str, how: str) -> None:
        self.metrics.proxy_requests.labels(repo.name, how).inc()
        if how != "MISS":
            _, count = self._hits.get((repo.id, path), (0.0, 0))
            self._hits[(repo.id, path)] = (time.time(), count + 1)

    async def flush_hits(self) -> None:
        """Write the hits counted since the last flush (for eviction by idle time)."""
        hits, self._hits = self._hits, {}
        if hits:
            await self.entries.requested(hits)

    async def flush_quietly(self) -> None:
        try:
            await self.flush_hits()
        except Exception as exc:  # statistics only: never worth a crash
            log.warning("could not record cache hits", error=repr(exc))

    async def flush_every(self, interval: float = HIT_FLUSH_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush_quietly()


async def _body(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    content = response.content
    while True:
        chunk, _ = await content.readchunk()
        if chunk:
            yield chunk
        elif content.at_eof():
            return


async def _counted(
    metrics: Metrics, repository: str, body: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    counter = metrics.upstream_bytes.labels(repository)
    async for chunk in body:
        counter.inc(len(chunk))
        yield chunk


def _retrieve(task: asyncio.Future[web.StreamResponse | None]) -> None:
    """A fill whose client left still ends; its failure is logged, not lost."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("fetch ended with an error", error=repr(task.exception()))


def _cut(request: web.Request, client: web.StreamResponse) -> web.StreamResponse:
    """The response started and cannot be finished: close the connection, so the
    client sees a short body instead of a complete wrong one."""
    with suppress(Exception):
        if request.transport is not None:
            request.transport.close()
    return client
