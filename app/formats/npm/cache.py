"""The packument cache: raw upstream packuments kept as remote entries, with the
engine's rules for metadata (fresh for ``metadata_ttl``, revalidated with the
upstream's validators, stale copies standing in when the upstream fails, upstream
404s remembered for ``negative_ttl``, one upstream request at a time per document).

Why not :meth:`RemoteEngine.serve`: it streams the upstream's bytes to the client,
and a packument has to be rewritten (tarball URLs point at us, built from the
request's own host) before anyone sees it. So the raw document is cached — in the
CAS, under a ``remote_entries`` row like any other metadata — and rewritten on
the way out. The tarball links are recorded whenever a new copy is fetched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import web

from app import keys
from app.errors import ApiError, BadGateway, GatewayTimeout, NotFound
from app.formats.npm import packuments
from app.formats.npm.names import Target
from app.proxy.entries import Entries, Entry, Links
from app.proxy.singleflight import FlightFailed
from app.proxy.upstream import Upstream, UpstreamError, UpstreamTimeout
from app.repositories import Repository

log = structlog.get_logger("artifactapi.npm")

ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Cached:
    body: bytes  # the upstream's packument as published
    content_type: str
    how: str  # HIT, MISS or STALE


class _Unavailable(Exception):
    """The upstream failed in a way a stale copy may stand in for."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def cache_key(target: Target, abbreviated: bool) -> str:
    # "#" is in no package name nor tarball path: the two forms never collide with
    # each other or with a tarball's entry.
    return f"{target.package}#{'abbreviated' if abbreviated else 'full'}"


async def packument(
    request: web.Request, repo: Repository, target: Target, abbreviated: bool
) -> Cached:
    engine = request.app[keys.PROXY]
    key = cache_key(target, abbreviated)
    for _ in range(ATTEMPTS):
        entry = await engine.entries.get(repo.id, key)
        if entry is not None and entry.fresh(time.time()):
            cached = await _read(request, entry, "HIT")
            if cached is not None:
                return cached
        # Shielded: a client hanging up must not cancel the fill others wait on.
        turn = asyncio.ensure_future(_turn(request, repo, target, abbreviated, key))
        turn.add_done_callback(_retrieve)
        try:
            outcome = await asyncio.shield(turn)
        except FlightFailed as exc:
            raise BadGateway(f"fetching {target.package} from upstream failed: {exc}") from None
        if isinstance(outcome, ApiError):
            raise outcome
        if outcome is not None:
            return outcome
    raise BadGateway(f"{target.package} could not be fetched from upstream; try again")


async def _turn(
    request: web.Request, repo: Repository, target: Target, abbreviated: bool, key: str
) -> Cached | ApiError | None:
    """The leader's answer (an error is returned, not raised, so the requests waiting
    on it look in the cache again instead of failing with it); None for the others."""
    async with request.app[keys.PROXY].flight.turn(f"{repo.id}:{key}") as leading:
        if not leading:
            return None
        try:
            return await _fetch(request, repo, target, abbreviated, key)
        except ApiError as error:
            return error
    return None


def _retrieve(task: asyncio.Future[Cached | ApiError | None]) -> None:
    """A fill whose client left still ends; its failure is logged, not lost."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("packument fetch ended with an error", error=repr(task.exception()))


async def _read(request: web.Request, entry: Entry, how: str) -> Cached | None:
    if entry.status == 404:
        raise NotFound(f"{entry.path.partition('#')[0]} not found", headers={"X-Cache": how})
    if entry.blob_digest is None:
        return None
    cas = request.app[keys.CAS]
    if await cas.stat(entry.blob_digest) is None:
        return None  # collected: fetch it again
    body = b"".join([chunk async for chunk in cas.open(entry.blob_digest)])
    return Cached(body, entry.content_type, how)


async def _fetch(
    request: web.Request, repo: Repository, target: Target, abbreviated: bool, key: str
) -> Cached:
    entries: Entries = request.app[keys.PROXY].entries
    upstream: Upstream = request.app[keys.UPSTREAMS][repo.name]
    # Looked up again under the lease: a leader elsewhere may have just finished.
    entry = await entries.get(repo.id, key)
    if entry is not None and entry.fresh(time.time()):
        cached = await _read(request, entry, "HIT")
        if cached is not None:
            return cached
    stale = entry if entry is not None and entry.status == 200 else None
    headers = {"Accept": packuments.ACCEPT_ABBREVIATED if abbreviated else packuments.ACCEPT_FULL}
    if stale is not None and stale.etag:
        headers["If-None-Match"] = stale.etag
    elif stale is not None and stale.last_modified:
        headers["If-Modified-Since"] = stale.last_modified
    try:
        try:
            async with upstream.get(target.upstream_name, headers) as response:
                return await _answer(request, repo, target, key, stale, response)
        except UpstreamTimeout as exc:
            raise _Unavailable(GatewayTimeout(str(exc))) from exc
        except UpstreamError as exc:
            raise _Unavailable(BadGateway(str(exc))) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:  # the body broke off
            raise _Unavailable(
                BadGateway(f"upstream packument for {target.package}: {exc!r}")
            ) from exc
    except _Unavailable as failure:
        log.warning(
            "upstream unavailable", repository=repo.name, package=target.package, error=str(failure)
        )
        if stale is not None:
            cached = await _read(request, stale, "STALE")
            if cached is not None:
                return cached
        raise failure.error from None


async def _answer(
    request: web.Request,
    repo: Repository,
    target: Target,
    key: str,
    stale: Entry | None,
    response: aiohttp.ClientResponse,
) -> Cached:
    options = request.app[keys.UPSTREAMS][repo.name].options
    entries: Entries = request.app[keys.PROXY].entries
    status = response.status
    if status == 304 and stale is not None:
        await entries.revalidated(repo.id, key, time.time() + options.metadata_ttl)
        cached = await _read(request, stale, "HIT")
        if cached is not None:
            return cached
        raise _Unavailable(BadGateway(f"{target.package}: upstream said unchanged, copy is gone"))
    if status in (404, 410):
        missing = Entry(key, 404, None, 0, "", expires_at=time.time() + options.negative_ttl)
        await entries.put(repo.id, missing)
        raise NotFound(f"{target.package} not found", headers={"X-Cache": "MISS"})
    if status >= 500 or status == 429:
        raise _Unavailable(BadGateway(f"upstream answered {status} for {target.package}"))
    if status != 200:
        raise BadGateway(f"upstream answered {status} for {target.package}")
    limit = options.max_metadata_size
    if response.content_length is not None and response.content_length > limit:
        raise BadGateway(f"upstream packument for {target.package} exceeds {limit} bytes")
    body = await _read_limited(response, limit, target)
    # Checked before it is cached: a broken document never replaces a good copy.
    document = packuments.parse(body, target.package)
    cas = request.app[keys.CAS]
    blob = await cas.ingest(_once(body), max_size=limit)
    content_type = response.headers.get("Content-Type") or "application/json"
    now = time.time()
    await entries.put(
        repo.id,
        Entry(
            path=key,
            status=200,
            blob_digest=blob.digest,
            size=blob.size,
            content_type=content_type,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            fetched_at=now,
            expires_at=now + options.metadata_ttl,
        ),
    )
    await Links(request.app[keys.METADATA].db).put_many(repo.id, packuments.links(document, target))
    return Cached(body, content_type, "MISS")


async def _read_limited(response: aiohttp.ClientResponse, limit: int, target: Target) -> bytes:
    body = bytearray()
    while chunk := await response.content.read(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise BadGateway(f"upstream packument for {target.package} exceeds {limit} bytes")
    return bytes(body)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body
