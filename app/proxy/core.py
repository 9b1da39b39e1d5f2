"""The remote core: a remote repository's path answered from the cache, or from the
upstream once, as plain results (:mod:`app.proxy.results`); no HTTP responses here
(:mod:`app.proxy.edge` makes those).

    fresh entry                      → Cached HIT (or Missing, a remembered 404)
    missing or expired, one leader   → the upstream, conditional if there is a copy:
        304                          → Cached HIT: the copy, good for another metadata_ttl
        404/410                      → Missing MISS, remembered for negative_ttl
        200                          → Fill MISS: read as it arrives while it goes into
                                       the CAS, verified against the published digest if
                                       any, then a row (or, for a document, whole)
        5xx, timeout, unreachable    → Cached STALE: the expired copy, else 502/504
    the others                       → wait for the leader, then look again: HIT

A body that breaks (truncated, wrong checksum, too large) is never cached. Nor is one
whose end cannot be told from a crash (no Content-Length, not chunked, no published
digest): it is passed on as it comes, and for a while requests for that path go
straight upstream: with nothing to cache, there is nothing to wait for.

Each call is independent: :meth:`RemoteCore.open` and :meth:`RemoteCore.document` may
run concurrently for any number of repositories (``asyncio.gather``).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

import aiohttp
import structlog

from app.backends.metadata import MetadataStore
from app.cas import ContentStore
from app.errors import ApiError, BadGateway, GatewayTimeout
from app.http import SMALL_BODY
from app.metrics import Metrics
from app.proxy.entries import Entries, Entry, Links
from app.proxy.fill import Fill, content_type_of, delimited, new_entry
from app.proxy.hits import HitCounter
from app.proxy.hot import RememberedEntries
from app.proxy.options import RemoteOptions
from app.proxy.renderings import Renderings
from app.proxy.results import Cached, CacheStatus, Document, Fetch, Missing
from app.proxy.singleflight import FlightFailed, Leases, SingleFlight
from app.proxy.upstream import Upstream, UpstreamError, UpstreamTimeout
from app.repositories import Repository
from pipelines.sources import once, received

log = structlog.get_logger("artifactapi.proxy")

ATTEMPTS = 3
UNPROVABLE_FOR = 60.0  # a path whose body could not be proven whole skips single flight

Opened = Cached | Missing | Fill
Accept = Callable[[bytes], Awaitable[None]]  # checks a new document; BadGateway refuses it
_Answer = Cached | Missing | Fill | Document


class _Unavailable(Exception):
    """The upstream failed in a way a stale copy may stand in for."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class RemoteCore:
    def __init__(
        self, cas: ContentStore, metadata: MetadataStore, leases: Leases, metrics: Metrics
    ) -> None:
        self.cas = cas
        self.entries = Entries(metadata.db)
        self.links = Links(metadata.db)
        self.flight = SingleFlight(leases)
        self.metrics = metrics
        self.hits = HitCounter(self.entries, metrics)
        self.remembered = RememberedEntries(cas)
        self.renderings = Renderings()
        self._unprovable: dict[str, float] = {}  # key -> until when it skips single flight
        self._fetches: set[asyncio.Task[None]] = set()  # running, held until they end

    # -- what callers ask -----------------------------------------------------------

    async def open(self, repo: Repository, upstream: Upstream, fetch: Fetch) -> Opened:
        """``fetch`` as the upstream published it: a stored copy, a miss being filled
        (read it, or leave it), or missing upstream."""
        remembered = await self.remembered_hit(repo, fetch.path)
        if remembered is not None:
            return remembered
        answer = await self._answer(repo, upstream, fetch, None)
        assert not isinstance(answer, Document)
        if isinstance(answer, Cached):
            return await self._with_small_body(repo, answer)
        return answer

    async def document(
        self, repo: Repository, upstream: Upstream, fetch: Fetch, accept: Accept
    ) -> Document | Missing:
        """A metadata document a format parses or rewrites before anyone sees it (a
        PyPI page, an npm packument), whole, with the same caching rules. ``accept``
        checks a newly fetched body (raising :class:`BadGateway` keeps it out of the
        cache, and an expired copy stands in) and may record what it names."""
        answer = await self._answer(repo, upstream, fetch, accept)
        if isinstance(answer, Cached):
            return Document(answer.blob.digest, answer.entry.content_type, answer.how, answer.read)
        assert not isinstance(answer, Fill)
        return answer

    async def remembered_hit(self, repo: Repository, path: str) -> Cached | None:
        """A hit on an entry this process remembers (no database query); None otherwise."""
        key = f"{repo.id}:{path}"
        hot = self.remembered.get(key)
        if hot is None or not await self.remembered.still_stored(key, hot):
            return None  # never seen, expired, or collected: ask the database
        self.hits.count(repo, path, "HIT")
        return Cached("HIT", hot.entry, hot.blob, self.cas, hot.path, hot.body)

    # -- a miss, top to bottom ------------------------------------------------------

    async def _answer(
        self, repo: Repository, upstream: Upstream, fetch: Fetch, accept: Accept | None
    ) -> _Answer:
        key = f"{repo.id}:{fetch.path}"
        for _ in range(ATTEMPTS):
            hit = await self._fresh_hit(repo, await self.entries.get(repo.id, fetch.path))
            if hit is not None:
                return hit
            # The last body could not be cached: a leader would leave nothing to
            # wait for, and the others would queue up behind it one by one.
            alone = self._unprovable.get(key, 0.0) > time.monotonic()
            answer = await self._lead_or_follow(repo, upstream, fetch, accept, key, alone)
            if answer is not None:
                return answer
        raise BadGateway(f"{fetch.path} could not be fetched from upstream; try again")

    async def _lead_or_follow(
        self,
        repo: Repository,
        upstream: Upstream,
        fetch: Fetch,
        accept: Accept | None,
        key: str,
        alone: bool,
    ) -> _Answer | None:
        """The upstream's answer if this call leads the fetch for ``key``; None once
        another call (here or in another process) has led it: look again.

        The fetch runs as its own task, :meth:`_fetch_in_turn`, handing its answer
        over as soon as the upstream's status is known and then filling the cache: a
        caller may be cancelled (aiohttp cancels a handler whose client hangs up), and
        the fill, with the lease others wait on, must outlive it."""
        handed: asyncio.Future[_Answer | None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            self._fetch_in_turn(repo, upstream, fetch, accept, key, alone, handed)
        )
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)
        try:
            return await asyncio.shield(handed)
        except FlightFailed as exc:
            raise BadGateway(f"fetching {fetch.path} from upstream failed: {exc}") from None
        except asyncio.CancelledError:
            handed.add_done_callback(_leave_unread)  # a fill handed to nobody goes on alone
            raise

    async def _fetch_in_turn(
        self,
        repo: Repository,
        upstream: Upstream,
        fetch: Fetch,
        accept: Accept | None,
        key: str,
        alone: bool,
        handed: asyncio.Future[_Answer | None],
    ) -> None:
        turn = _alone() if alone else self.flight.turn(key)
        try:
            async with turn as leading:
                if not leading:
                    handed.set_result(None)
                    return
                try:
                    answer = await self._fetch(repo, upstream, fetch, accept)
                except ApiError as error:
                    # Handed over, not raised: the calls that waited then look in the
                    # cache again (a remembered 404) instead of failing with it.
                    handed.set_exception(error)
                    return
                handed.set_result(answer)
                if isinstance(answer, Fill):
                    # The body into the CAS, handed to the caller as it comes; the
                    # lease is held until it is recorded.
                    await answer.run()
        except BaseException as exc:
            if not handed.done():
                handed.set_exception(exc if isinstance(exc, Exception) else FlightFailed("stopped"))
            if not isinstance(exc, Exception):
                raise
            log.debug("fetch ended with an error", path=fetch.path, error=repr(exc))

    async def _fetch(
        self, repo: Repository, upstream: Upstream, fetch: Fetch, accept: Accept | None
    ) -> _Answer:
        # Looked up again under the lease: a leader elsewhere may have just finished.
        entry = await self.entries.get(repo.id, fetch.path)
        hit = await self._fresh_hit(repo, entry)
        if hit is not None:
            return hit
        stale = entry if entry is not None and entry.status == 200 else None
        started = time.monotonic()
        filling = False
        try:
            async with AsyncExitStack() as held:
                try:
                    asked = upstream.get(fetch.upstream_path, _conditions(fetch, stale))
                    response = await held.enter_async_context(asked)
                except UpstreamTimeout as exc:
                    raise _Unavailable(GatewayTimeout(str(exc))) from exc
                except UpstreamError as exc:
                    raise _Unavailable(BadGateway(str(exc))) from exc
                answer = await self._upstream_said(repo, upstream, fetch, stale, response, accept)
                if isinstance(answer, Fill):
                    answer.holding(held.pop_all(), started)  # the response stays open
                    filling = True
                return answer
        except _Unavailable as failure:
            log.warning(
                "upstream unavailable", repository=repo.name, path=fetch.path, error=str(failure)
            )
            if stale is not None:
                cached = await self._stored(repo, stale, "STALE")
                if cached is not None:
                    return cached
            raise failure.error from None
        finally:
            if not filling:  # a fill observes its own time, body and all
                elapsed = time.monotonic() - started
                self.metrics.upstream_seconds.labels(repo.name).observe(elapsed)

    async def _fresh_hit(self, repo: Repository, entry: Entry | None) -> Cached | Missing | None:
        """What a fresh ``entry`` answers (a HIT, or a remembered 404); None if there is
        none, it has expired, or its blob is gone."""
        if entry is None or not entry.fresh(time.time()):
            return None
        return await self._stored(repo, entry, "HIT")

    async def _upstream_said(
        self,
        repo: Repository,
        upstream: Upstream,
        fetch: Fetch,
        stale: Entry | None,
        response: aiohttp.ClientResponse,
        accept: Accept | None,
    ) -> _Answer:
        options = upstream.options
        status = response.status
        if status == 304 and stale is not None:
            await self.entries.revalidated(repo.id, fetch.path, time.time() + options.metadata_ttl)
            cached = await self._stored(repo, stale, "HIT")
            if cached is not None:
                return cached
            raise _Unavailable(BadGateway(f"{fetch.path}: upstream said unchanged, copy is gone"))
        if status in (404, 410):
            expires = time.time() + options.negative_ttl
            await self.entries.put(repo.id, Entry(fetch.path, 404, None, 0, "", expires_at=expires))
            self.hits.count(repo, fetch.path, "MISS")
            return Missing(fetch.path, "MISS")
        if status >= 500 or status == 429:
            raise _Unavailable(BadGateway(f"upstream answered {status} for {fetch.path}"))
        if status != 200:
            raise BadGateway(f"upstream answered {status} for {fetch.path}")
        length = response.content_length
        if fetch.kind == "metadata" and length is not None and length > options.max_metadata_size:
            raise BadGateway(
                f"upstream metadata for {fetch.path} exceeds {options.max_metadata_size} bytes"
            )
        self.hits.count(repo, fetch.path, "MISS")
        key = f"{repo.id}:{fetch.path}"
        provable = fetch.expected is not None or delimited(response)
        if provable:
            self._unprovable.pop(key, None)
        else:
            self._skip_flight(key)
        if accept is not None:
            return await self._whole(repo, options, fetch, response, accept, provable)
        return Fill(
            self.cas, self.entries, self.metrics, repo, fetch, options, response, cache=provable
        )

    async def _whole(
        self,
        repo: Repository,
        options: RemoteOptions,
        fetch: Fetch,
        response: aiohttp.ClientResponse,
        accept: Accept,
        provable: bool,
    ) -> Document:
        """A new document, read whole and accepted by its format before it is cached."""
        limit = options.max_metadata_size
        body = bytearray()
        try:
            async for chunk in received(response.content):
                body += chunk
                if len(body) > limit:
                    raise BadGateway(f"upstream document {fetch.path} exceeds {limit} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:  # the body broke off
            raise _Unavailable(BadGateway(f"upstream document {fetch.path}: {exc!r}")) from exc
        document = bytes(body)
        self.metrics.upstream_bytes.labels(repo.name).inc(len(document))
        try:
            await accept(document)  # a broken document never replaces a good copy
        except BadGateway as exc:  # and the good copy, if expired, stands in (STALE)
            raise _Unavailable(exc) from exc
        content_type = content_type_of(fetch, response)
        if not provable:  # handed over like any other, not cached; its digest still
            # names its renderings
            digest = "sha256:" + hashlib.sha256(document).hexdigest()
            return Document(digest, content_type, "MISS", partial(_ready, document))
        blob = await self.cas.ingest(once(document), fetch.expected)
        await self.entries.put(repo.id, new_entry(fetch, options, response, blob.digest, blob.size))
        return Document(blob.digest, content_type, "MISS", partial(_ready, document))

    # -- the cache's side -----------------------------------------------------------

    async def _stored(
        self, repo: Repository, entry: Entry, how: CacheStatus
    ) -> Cached | Missing | None:
        """What ``entry`` answers; None if its blob is gone (collected): fetch again."""
        if entry.status == 404:
            self.hits.count(repo, entry.path, how)
            return Missing(entry.path, how)
        blob = await self.cas.stat(entry.blob_digest) if entry.blob_digest else None
        if blob is None:
            return None
        self.hits.count(repo, entry.path, how)
        return Cached(how, entry, blob, self.cas, self.cas.local_path(blob.digest))

    async def _with_small_body(self, repo: Repository, cached: Cached) -> Cached:
        """A small blob in object storage is read whole; a HIT is remembered, so the
        next one needs no database query (and, for a small blob, no read either)."""
        if cached.local_path is None and 0 < cached.blob.size <= SMALL_BODY:
            data = b"".join([chunk async for chunk in self.cas.open(cached.blob.digest)])
            cached = Cached(cached.how, cached.entry, cached.blob, self.cas, None, data)
        if cached.how == "HIT":
            key = f"{repo.id}:{cached.entry.path}"
            self.remembered.remember(key, cached.entry, cached.blob, cached.local_path, cached.data)
        return cached

    def _skip_flight(self, key: str) -> None:
        now = time.monotonic()
        if len(self._unprovable) >= 1000:  # rare; keep only what still counts
            self._unprovable = {k: t for k, t in self._unprovable.items() if t > now}
        self._unprovable[key] = now + UNPROVABLE_FOR


def _conditions(fetch: Fetch, stale: Entry | None) -> dict[str, str]:
    headers = {"Accept": fetch.accept} if fetch.accept else {}
    if stale is not None and stale.etag:
        headers["If-None-Match"] = stale.etag
    elif stale is not None and stale.last_modified:
        headers["If-Modified-Since"] = stale.last_modified
    return headers


@asynccontextmanager
async def _alone() -> AsyncIterator[bool]:
    yield True  # leads without single flight


async def _ready(body: bytes) -> bytes:
    return body


def _leave_unread(handed: asyncio.Future[_Answer | None]) -> None:
    if not handed.cancelled() and handed.exception() is None:
        answer = handed.result()
        if isinstance(answer, Fill):
            answer.leave()


async def whole(opened: Cached | Fill) -> bytes:
    """All of a small body (a manifest, a tags list), from the cache or as it fills."""
    if isinstance(opened, Cached):
        return await opened.read()
    return b"".join([chunk async for chunk in opened.chunks()])
