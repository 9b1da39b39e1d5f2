"""The upstream's project pages, cached like the engine caches metadata.

Why not :meth:`RemoteEngine.serve`: the engine streams the upstream's bytes straight
to the client, and a project page must be rewritten first (every file URL made one
of ours). So the page is fetched here, with the engine's own pieces: the raw
upstream page is stored as a CAS blob under a ``remote_entries`` row (which keeps
the blob from the collector and records ETag/Last-Modified for revalidation), is
fresh for ``metadata_ttl``, a 404 is remembered for ``negative_ttl``, only one
request per page goes upstream at a time (the engine's single flight), and an
expired copy stands in when the upstream fails (stale-if-error). The caller learns
which of HIT, MISS or STALE it got, for the ``X-Cache`` header.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from aiohttp import web

from app import keys
from app.errors import ApiError, BadGateway, GatewayTimeout, NotFound
from app.proxy.entries import Entries, Entry
from app.proxy.singleflight import FlightFailed
from app.proxy.upstream import Upstream, UpstreamError, UpstreamTimeout
from app.repositories import Repository

log = structlog.get_logger("artifactapi.pypi")

ATTEMPTS = 3
# Where the page was really fetched from (after redirects): relative links resolve
# against it. Kept in the entry's headers, which only this module reads.
URL_HEADER = "X-Upstream-Url"


@dataclass(frozen=True, slots=True)
class Cached:
    body: bytes
    content_type: str
    url: str
    how: str  # HIT, MISS or STALE


class _Unavailable(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


async def project_page(
    request: web.Request, repo: Repository, upstream: Upstream, key: str, upstream_path: str,
    accept: str,
) -> Cached:  # fmt: skip
    """The upstream's page at ``upstream_path``, cached under ``key``."""
    entries = Entries(request.app[keys.METADATA].db)
    flight = request.app[keys.PROXY].flight
    for _ in range(ATTEMPTS):
        entry = await entries.get(repo.id, key)
        if entry is not None and entry.fresh(time.time()):
            cached = await _read(request, entry, "HIT")
            if cached is not None:
                return cached
        try:
            async with flight.turn(f"{repo.id}:pypi:{key}") as leading:
                if leading:
                    return await _fetch(
                        request, repo, upstream, entries, key, upstream_path, accept
                    )
        except FlightFailed:
            pass  # the leader failed: look again, and lead if nobody else does
    raise BadGateway(f"{key} could not be fetched from upstream; try again")


async def _read(request: web.Request, entry: Entry, how: str) -> Cached | None:
    if entry.status == 404:
        raise NotFound(f"{entry.path} not found upstream", headers={"X-Cache": how})
    cas = request.app[keys.CAS]
    if entry.blob_digest is None or await cas.stat(entry.blob_digest) is None:
        return None  # collected meanwhile: fetch again
    chunks = [chunk async for chunk in cas.open(entry.blob_digest)]
    url = entry.headers.get(URL_HEADER, "")
    return Cached(b"".join(chunks), entry.content_type, url, how)


async def _fetch(
    request: web.Request, repo: Repository, upstream: Upstream, entries: Entries, key: str,
    upstream_path: str, accept: str,
) -> Cached:  # fmt: skip
    # Looked up again under the lease: another leader may have just finished.
    entry = await entries.get(repo.id, key)
    if entry is not None and entry.fresh(time.time()):
        cached = await _read(request, entry, "HIT")
        if cached is not None:
            return cached
    stale = entry if entry is not None and entry.status == 200 else None
    headers = {"Accept": accept}
    if stale is not None and stale.etag:
        headers["If-None-Match"] = stale.etag
    elif stale is not None and stale.last_modified:
        headers["If-Modified-Since"] = stale.last_modified
    try:
        try:
            async with upstream.get(upstream_path, headers) as response:
                status = response.status
                if status == 304 and stale is not None:
                    expires = time.time() + upstream.options.metadata_ttl
                    await entries.revalidated(repo.id, key, expires)
                    cached = await _read(request, stale, "HIT")
                    if cached is None:
                        raise _Unavailable(BadGateway(f"{key}: unchanged upstream, copy gone"))
                    return cached
                if status in (404, 410):
                    expires = time.time() + upstream.options.negative_ttl
                    await entries.put(repo.id, Entry(key, 404, None, 0, "", expires_at=expires))
                    raise NotFound(f"{key} not found upstream", headers={"X-Cache": "MISS"})
                if status >= 500 or status == 429:
                    raise _Unavailable(BadGateway(f"upstream answered {status} for {key}"))
                if status != 200:
                    raise BadGateway(f"upstream answered {status} for {key}")
                limit = upstream.options.max_metadata_size
                if response.content_length is not None and response.content_length > limit:
                    raise BadGateway(f"upstream page {key} exceeds {limit} bytes")
                body = await response.content.read(limit + 1)
                if len(body) > limit:
                    raise BadGateway(f"upstream page {key} exceeds {limit} bytes")
                content_type = response.headers.get("Content-Type", "text/html")
                fetched = Cached(body, content_type, str(response.url), "MISS")
                etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
                await _store(request, repo, upstream, entries, key, fetched, etag, modified)
                return fetched
        except UpstreamTimeout as exc:
            raise _Unavailable(GatewayTimeout(str(exc))) from exc
        except (UpstreamError, OSError, TimeoutError) as exc:
            raise _Unavailable(BadGateway(str(exc))) from exc
    except _Unavailable as failure:
        log.warning("upstream unavailable", repository=repo.name, path=key, error=str(failure))
        if stale is not None:
            cached = await _read(request, stale, "STALE")
            if cached is not None:
                return cached
        raise failure.error from None


async def _store(
    request: web.Request, repo: Repository, upstream: Upstream, entries: Entries, key: str,
    page: Cached, etag: str | None, last_modified: str | None,
) -> None:  # fmt: skip
    async def once() -> AsyncIterator[bytes]:
        yield page.body

    blob = await request.app[keys.CAS].ingest(once())
    now = time.time()
    entry = Entry(
        path=key,
        status=200,
        blob_digest=blob.digest,
        size=blob.size,
        content_type=page.content_type,
        etag=etag,
        last_modified=last_modified,
        headers={URL_HEADER: page.url},
        fetched_at=now,
        expires_at=now + upstream.options.metadata_ttl,
    )
    await entries.put(repo.id, entry)
