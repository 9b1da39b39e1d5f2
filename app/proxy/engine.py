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
already being served sees its response cut short, never a whole wrong body. Nor is a
body whose end cannot be told from a crash: no Content-Length, not chunked (read
until the connection closes) and no published digest. It is passed on as it comes,
and for a while requests for that path go straight upstream: with nothing to cache,
there is nothing to wait for.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import aiohttp
import structlog
from aiohttp import web

from app.backends.metadata import MetadataError, MetadataStore
from app.backends.storage import StorageError
from app.cas import Blob, BlobBeingCollected, ContentStore
from app.errors import ApiError, BadGateway, GatewayTimeout, MethodNotAllowed, NotFound
from app.http import SMALL_BODY, BlobBody, cut, send_blob
from app.metrics import Metrics
from app.proxy.entries import Entries, Entry
from app.proxy.hot import Hot, HotEntries
from app.proxy.options import RemoteOptions
from app.proxy.renderings import Renderings
from app.proxy.singleflight import FlightFailed, Leases, SingleFlight
from app.proxy.upstream import Upstream, UpstreamError, UpstreamTimeout
from app.repositories import Repository
from pipelines import Digest, DigestMismatch, TooLarge, limited
from pipelines.sources import once, received

log = structlog.get_logger("artifactapi.proxy")

Kind = Literal["artifact", "metadata"]
HIT_FLUSH_INTERVAL = 10.0
ATTEMPTS = 3
CLIENT_STALL = 30.0
STALE_WARNING = '110 - "Response is Stale"'
UNPROVABLE_FOR = 60.0  # a path whose body could not be proven whole skips single flight
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


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


def read_only(request: web.Request, repo: Repository) -> None:
    """Remote repositories answer GET and HEAD; anything else is a 405."""
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(
            f"{repo.name} is a remote repository: only GET and HEAD",
            headers={"Allow": "GET, HEAD"},
        )


def cache_headers(how: str) -> dict[str, str]:
    """``X-Cache``, and the ``Warning`` a stale copy carries."""
    return {"X-Cache": how, "Warning": STALE_WARNING} if how == "STALE" else {"X-Cache": how}


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
        self.hot = HotEntries(cas)
        self.renderings = Renderings()
        self._unprovable: dict[str, float] = {}  # key -> until when it skips single flight

    async def serve(
        self, request: web.Request, repo: Repository, upstream: Upstream, fetch: Fetch
    ) -> web.StreamResponse:
        """Answer ``fetch`` as the upstream published it (streamed through on a miss)."""
        return await self._run(
            repo, upstream, fetch, _Streamed(self, request, repo, upstream, fetch)
        )

    async def serve_remembered(
        self, request: web.Request, repo: Repository, path: str
    ) -> web.StreamResponse | None:
        """A hit on an entry this process remembers, before a format looks up what it
        needs for a miss (the link behind a PyPI file or npm tarball); None otherwise."""
        key = f"{repo.id}:{path}"
        hot = self.hot.get(key)
        if hot is None:
            return None
        reply = _Cached(self, request, repo)
        answer = await reply.hot(key, hot)
        requested = request.match_info.get("path")
        if answer is not None and requested is not None:
            # The format mapped this request path to this entry just now: the next
            # request for it may skip the format (see answer_remembered).
            self.hot.alias(repo.id, requested, key)
        return answer

    def answer_remembered(
        self, request: web.Request, repo: Repository, requested: str
    ) -> web.Response | None:
        """The quickest hit there is, taken before the format parses the path: a request
        path a format already mapped to a remembered entry whose small body is in memory,
        asked for plainly (GET or HEAD, no Range nor conditions). None for anything else:
        the format then answers as usual. No awaits, no copies of the body."""
        hot = self.hot.quick(repo.id, requested, request.headers)
        if hot is None:
            return None
        self._count(repo, hot.entry.path, "HIT")
        return web.Response(body=hot.body, headers=hot.headers)

    async def document(
        self,
        repo: Repository,
        upstream: Upstream,
        fetch: Fetch,
        accept: Callable[[bytes], Awaitable[None]],
    ) -> Document:
        """A metadata document a format rewrites before anyone sees it (a PyPI page, an
        npm packument), whole, with the same caching rules. ``accept`` checks a newly
        fetched body (raising :class:`BadGateway` keeps it out of the cache) and may
        record what it names."""
        return await self._run(
            repo, upstream, fetch, _Buffered(self, repo, upstream, fetch, accept)
        )

    async def _run(self, repo: Repository, upstream: Upstream, fetch: Fetch, reply: _Reply[T]) -> T:
        key = f"{repo.id}:{fetch.path}"
        hot = self.hot.get(key)
        if hot is not None:
            answer = await reply.hot(key, hot)
            if answer is not None:
                return answer
        for _ in range(ATTEMPTS):
            entry = await self.entries.get(repo.id, fetch.path)
            if entry is not None and entry.fresh(time.time()):
                cached = await reply.cached(entry, "HIT")
                if cached is not None:
                    return cached
            if self._unprovable.get(key, 0.0) > time.monotonic():
                # The last body could not be cached: a leader would leave nothing to
                # wait for, and the others would queue up behind it one by one.
                return await self._fetch(repo, upstream, fetch, reply)
            # Shielded: aiohttp cancels a handler whose client hangs up, and the fill
            # (and the lease other requests wait on) must outlive that.
            turn = asyncio.ensure_future(self._turn(repo, upstream, fetch, key, reply))
            turn.add_done_callback(_retrieve)
            try:
                outcome = await asyncio.shield(turn)
            except FlightFailed as exc:
                raise BadGateway(f"fetching {fetch.path} from upstream failed: {exc}") from None
            if isinstance(outcome, ApiError):
                raise outcome
            if outcome is not None:
                return outcome
        raise BadGateway(f"{fetch.path} could not be fetched from upstream; try again")

    async def _turn(
        self, repo: Repository, upstream: Upstream, fetch: Fetch, key: str, reply: _Reply[T]
    ) -> T | ApiError | None:
        """Fetch if this request leads for ``key``; None once another request has. The
        leader's error is returned, not raised: the requests that waited then look in
        the cache again (a remembered 404) instead of failing with it."""
        async with self.flight.turn(key) as leading:
            if leading:
                try:
                    return await self._fetch(repo, upstream, fetch, reply)
                except ApiError as error:
                    return error
        return None

    async def _fetch(
        self, repo: Repository, upstream: Upstream, fetch: Fetch, reply: _Reply[T]
    ) -> T:
        # Looked up again under the lease: a leader elsewhere may have just finished.
        entry = await self.entries.get(repo.id, fetch.path)
        if entry is not None and entry.fresh(time.time()):
            cached = await reply.cached(entry, "HIT")
            if cached is not None:
                return cached
        stale = entry if entry is not None and entry.status == 200 else None
        started = time.monotonic()
        try:
            try:
                async with upstream.get(fetch.upstream_path, self._ask(fetch, stale)) as response:
                    return await self._answer(repo, upstream, fetch, stale, response, reply)
            except UpstreamTimeout as exc:
                raise _Unavailable(GatewayTimeout(str(exc))) from exc
            except UpstreamError as exc:
                raise _Unavailable(BadGateway(str(exc))) from exc
        except _Unavailable as failure:
            log.warning(
                "upstream unavailable", repository=repo.name, path=fetch.path, error=str(failure)
            )
            if stale is not None:
                cached = await reply.cached(stale, "STALE")
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
        repo: Repository,
        upstream: Upstream,
        fetch: Fetch,
        stale: Entry | None,
        response: aiohttp.ClientResponse,
        reply: _Reply[T],
    ) -> T:
        options = upstream.options
        status = response.status
        if status == 304 and stale is not None:
            expires = time.time() + options.metadata_ttl
            await self.entries.revalidated(repo.id, fetch.path, expires)
            cached = await reply.cached(stale, "HIT")
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
        if fetch.kind == "metadata":
            length = response.content_length
            if length is not None and length > options.max_metadata_size:
                raise BadGateway(
                    f"upstream metadata for {fetch.path} exceeds {options.max_metadata_size} bytes"
                )
        self._count(repo, fetch.path, "MISS")
        key = f"{repo.id}:{fetch.path}"
        if fetch.expected is None and not _delimited(response):
            self._skip_flight(key)
            return await reply.unprovable(response)
        self._unprovable.pop(key, None)
        return await reply.filled(response)

    def _skip_flight(self, key: str) -> None:
        now = time.monotonic()
        if len(self._unprovable) >= 1000:  # rare; keep only what still counts
            self._unprovable = {k: t for k, t in self._unprovable.items() if t > now}
        self._unprovable[key] = now + UNPROVABLE_FOR

    def _count(self, repo: Repository, path: str, how: str) -> None:
        self.metrics.proxy.add(repo.name, how)
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


async def _counted(
    metrics: Metrics, repository: str, body: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    counter = metrics.upstream_bytes.labels(repository)
    async for chunk in body:
        counter.inc(len(chunk))
        yield chunk


@dataclass(frozen=True, slots=True)
class Document:
    """A cached metadata document. Its body is read only if asked for: a format that
    remembers its rendering by ``digest`` (see :mod:`app.proxy.renderings`) need not."""

    digest: str  # the CAS blob: one body, so a rendering of it never goes stale
    content_type: str
    how: str  # HIT, MISS or STALE
    read: Callable[[], Awaitable[bytes]]  # the body, as the upstream published it


class _Reply(Protocol[T_co]):
    """How one request is answered: from a cached entry, or from a 200 upstream."""

    async def cached(self, entry: Entry, how: str) -> T_co | None:
        """The answer from ``entry``; None if its blob is gone (collected)."""
        ...

    async def filled(self, response: aiohttp.ClientResponse) -> T_co: ...

    async def unprovable(self, response: aiohttp.ClientResponse) -> T_co:
        """The answer from a 200 whose body cannot be proven whole: not cached."""
        ...

    async def hot(self, key: str, hot: Hot) -> T_co | None:
        """The answer from a remembered entry, or None to look it up properly."""
        ...


class _Cached:
    """A client's answer from the cache: a stored blob, or a remembered 404."""

    def __init__(self, engine: RemoteEngine, request: web.Request, repo: Repository) -> None:
        self.engine, self.request, self.repo = engine, request, repo

    async def cached(self, entry: Entry, how: str) -> web.StreamResponse | None:
        engine = self.engine
        engine._count(self.repo, entry.path, how)
        if entry.status == 404:
            raise NotFound(f"{entry.path} not found upstream", headers={"X-Cache": how})
        blob = await engine.cas.stat(entry.blob_digest) if entry.blob_digest else None
        if blob is None:
            return None
        path = engine.cas.local_path(blob.digest)
        data = None
        if path is None and 0 < blob.size <= SMALL_BODY:
            # In object storage: a small body is read whole, and remembered with its entry.
            data = b"".join([chunk async for chunk in engine.cas.open(blob.digest)])
        if how == "HIT":
            engine.hot.remember(f"{self.repo.id}:{entry.path}", entry, blob, path, data)
        return await self._send(entry, blob, how, path, data)

    async def hot(self, key: str, hot: Hot) -> web.StreamResponse | None:
        if not await self.engine.hot.confirm(key, hot):
            return None  # expired, or collected: ask the database
        self.engine._count(self.repo, hot.entry.path, "HIT")
        return await self._send(hot.entry, hot.blob, "HIT", hot.path, hot.body)

    async def _send(
        self, entry: Entry, blob: Blob, how: str, path: Path | None, data: bytes | None = None
    ) -> web.StreamResponse:
        headers = {**entry.headers, **cache_headers(how)}
        body = BlobBody.stored(
            self.engine.cas,
            blob.digest,
            blob.size,
            entry.content_type,
            redirect=False,
            local_path=path,
            data=data,
        )
        return await send_blob(self.request, body, headers)


class _Streamed(_Cached):
    """The client gets the upstream's bytes as they arrive, while they are stored."""

    def __init__(
        self,
        engine: RemoteEngine,
        request: web.Request,
        repo: Repository,
        upstream: Upstream,
        fetch: Fetch,
    ) -> None:
        super().__init__(engine, request, repo)
        self.upstream, self.fetch = upstream, fetch

    async def filled(self, response: aiohttp.ClientResponse) -> web.StreamResponse:
        engine, request, fetch = self.engine, self.request, self.fetch
        options = self.upstream.options
        content_type = _content_type(fetch, response)
        kept = _kept_headers(fetch, response)
        client: web.StreamResponse | None = None
        if request.method == "GET":
            client = web.StreamResponse(
                headers={**kept, "Content-Type": content_type, "X-Cache": "MISS"}
            )
            if response.content_length is not None:
                client.content_length = response.content_length
            await client.prepare(request)
        tap = _ClientTap(client) if client is not None else None
        source = _Source(_counted(engine.metrics, self.repo.name, received(response.content)))
        try:
            blob = await engine.cas.ingest(
                source,
                fetch.expected,
                max_size=options.max_metadata_size if fetch.kind == "metadata" else None,
                tap=tap,
            )
        except (DigestMismatch, TooLarge, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "upstream body rejected",
                repository=self.repo.name,
                path=fetch.path,
                error=repr(exc),
            )
            if client is None:
                raise BadGateway(f"upstream body for {fetch.path} rejected: {exc}") from exc
            return cut(request, client)
        except (MetadataError, StorageError, BlobBeingCollected) as exc:
            # Stored last (the object, then its row): the client may have every
            # verified byte already, and then keeps its answer whole.
            if client is None or tap is None or not source.ended or tap.sent != source.read:
                raise
            return await self._unrecorded(client, tap, exc)
        entry = _entry(fetch, options, response, blob.digest, blob.size, content_type, kept)
        try:
            await engine.entries.put(self.repo.id, entry)
        except MetadataError as exc:
            if client is None or tap is None:
                raise
            return await self._unrecorded(client, tap, exc)
        if client is None:  # HEAD: answered from the new entry
            cached = await self.cached(entry, "MISS")
            if cached is None:
                raise BadGateway(f"{fetch.path} vanished right after it was cached")
            return cached
        if tap is not None and tap.dropped:
            return cut(request, client)  # it left or stalled; the cache is filled all the same
        with suppress(ConnectionError):
            await client.write_eof()
        return client

    async def _unrecorded(
        self, client: web.StreamResponse, tap: _ClientTap, error: Exception
    ) -> web.StreamResponse:
        """The client got the whole verified body; only keeping it failed. Work after
        the last byte never changes the answer (nor its access-log line): a warning,
        and the next request fetches again."""
        log.warning(
            "fill not recorded; the answer went out whole",
            repository=self.repo.name,
            path=self.fetch.path,
            error=str(error) or type(error).__name__,
        )
        if tap.dropped:
            return cut(self.request, client)
        with suppress(ConnectionError):
            await client.write_eof()
        return client

    async def unprovable(self, response: aiohttp.ClientResponse) -> web.StreamResponse:
        """Passed on as it comes and never cached: without a length, chunking or a
        digest, the connection closing is the only end there is, and a crash ends it
        the same way. The client gets what the upstream sent, as any client of that
        upstream would."""
        engine, request, fetch = self.engine, self.request, self.fetch
        log.info(
            "upstream body unprovable (no length, no digest): served, not cached",
            repository=self.repo.name,
            path=fetch.path,
        )
        headers = {**_kept_headers(fetch, response), "Content-Type": _content_type(fetch, response)}
        client = web.StreamResponse(headers={**headers, "X-Cache": "MISS"})
        await client.prepare(request)
        if request.method == "GET":
            body = _counted(engine.metrics, self.repo.name, received(response.content))
            if fetch.kind == "metadata":
                body = limited(body, self.upstream.options.max_metadata_size)
            tap = _ClientTap(client)
            try:
                async for chunk in body:
                    await tap(chunk)
            except (TooLarge, aiohttp.ClientError, TimeoutError, ConnectionResetError) as exc:
                log.warning(
                    "upstream body rejected",
                    repository=self.repo.name,
                    path=fetch.path,
                    error=repr(exc),
                )
                return cut(request, client)
        with suppress(ConnectionError):
            await client.write_eof()
        return client


class _Buffered:
    """The whole document, for a format to rewrite; checked before it is cached."""

    def __init__(
        self,
        engine: RemoteEngine,
        repo: Repository,
        upstream: Upstream,
        fetch: Fetch,
        accept: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self.engine, self.repo, self.options, self.fetch = engine, repo, upstream.options, fetch
        self.accept = accept

    async def cached(self, entry: Entry, how: str) -> Document | None:
        self.engine._count(self.repo, entry.path, how)
        if entry.status == 404:
            raise NotFound(f"{entry.path} not found upstream", headers={"X-Cache": how})
        cas, digest = self.engine.cas, entry.blob_digest
        if digest is None or await cas.stat(digest) is None:
            return None

        async def read() -> bytes:
            return b"".join([chunk async for chunk in cas.open(digest)])

        return Document(digest, entry.content_type, how, read)

    async def hot(self, key: str, hot: Hot) -> Document | None:
        return None  # documents are not remembered: reading them needs the CAS anyway

    async def filled(self, response: aiohttp.ClientResponse) -> Document:
        fetch, document = self.fetch, await self._accepted(response)
        blob = await self.engine.cas.ingest(once(document), fetch.expected)
        content_type = _content_type(fetch, response)
        entry = _entry(fetch, self.options, response, blob.digest, blob.size, content_type, {})
        await self.engine.entries.put(self.repo.id, entry)
        return Document(blob.digest, content_type, "MISS", partial(_ready, document))

    async def unprovable(self, response: aiohttp.ClientResponse) -> Document:
        """Checked and handed over like any other, but not cached (see
        :meth:`_Streamed.unprovable`); its digest still names its renderings."""
        document = await self._accepted(response)
        digest = "sha256:" + hashlib.sha256(document).hexdigest()
        content_type = _content_type(self.fetch, response)
        return Document(digest, content_type, "MISS", partial(_ready, document))

    async def _accepted(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, once ``accept`` has found it to be the document asked for."""
        fetch, limit = self.fetch, self.options.max_metadata_size
        body = bytearray()
        try:
            async for chunk in received(response.content):
                body += chunk
                if len(body) > limit:
                    raise BadGateway(f"upstream document {fetch.path} exceeds {limit} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:  # the body broke off
            raise _Unavailable(BadGateway(f"upstream document {fetch.path}: {exc!r}")) from exc
        document = bytes(body)
        self.engine.metrics.upstream_bytes.labels(self.repo.name).inc(len(document))
        try:
            await self.accept(document)  # a broken document never replaces a good copy
        except BadGateway as exc:  # and the good copy, if expired, stands in (STALE)
            raise _Unavailable(exc) from exc
        return document


async def _ready(body: bytes) -> bytes:
    return body


def _delimited(response: aiohttp.ClientResponse) -> bool:
    """Whether the body's end is the upstream's word (a length, or chunked encoding's
    last chunk), so that a body cut short is told from a whole one."""
    if response.content_length is not None:
        return True
    return "chunked" in response.headers.get("Transfer-Encoding", "").lower()


def _content_type(fetch: Fetch, response: aiohttp.ClientResponse) -> str:
    return fetch.content_type or response.headers.get("Content-Type") or "application/octet-stream"


def _kept_headers(fetch: Fetch, response: aiohttp.ClientResponse) -> dict[str, str]:
    kept = {h: response.headers[h] for h in fetch.keep_headers if h in response.headers}
    kept.update(fetch.headers)  # what the format knows beats what the upstream says
    return kept


def _entry(
    fetch: Fetch,
    options: RemoteOptions,
    response: aiohttp.ClientResponse,
    digest: str,
    size: int,
    content_type: str,
    headers: dict[str, str],
) -> Entry:
    now = time.time()
    return Entry(
        path=fetch.path,
        status=200,
        blob_digest=digest,
        size=size,
        content_type=content_type,
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        headers=headers,
        fetched_at=now,
        expires_at=now + options.metadata_ttl if fetch.kind == "metadata" else None,
    )


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


class _ClientTap:
    """Feeds the client that asked first while the cache fills. A client that stops
    reading for ``CLIENT_STALL`` seconds is dropped (its connection cut), so one slow
    link cannot hold back a fill that other requests are waiting for."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.dropped = False
        self.sent = 0

    async def __call__(self, chunk: bytes) -> None:
        try:
            await asyncio.wait_for(self.response.write(chunk), CLIENT_STALL)
        except BaseException:
            self.dropped = True
            raise ConnectionResetError("client dropped from the cache fill") from None
        self.sent += len(chunk)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """A fill whose client left still ends; its failure is logged, not lost."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("fetch ended with an error", error=repr(task.exception()))
