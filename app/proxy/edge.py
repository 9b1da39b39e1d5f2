"""The HTTP edge of the remote core: its plain results made into responses.

    Cached   → send_blob (Range, conditions, sendfile or one write), X-Cache HIT or
               STALE (with the Warning a stale copy carries), the entry's headers
    Missing  → 404 in the format's shape (the format may raise its own), X-Cache
    Fill     → the headers at once, then the body as the core hands it over; a body
               that breaks is cut short; a HEAD waits for the copy and answers from it

and the quickest hit there is, taken in ``dispatch`` before a format parses anything
(:func:`answer_by_request_path`).
"""

from __future__ import annotations

from contextlib import suppress

from aiohttp import web

from app.errors import BadGateway, MethodNotAllowed, NotFound
from app.http import BlobBody, cut, send_blob
from app.proxy.core import Opened, RemoteCore
from app.proxy.fill import Fill, FillRejected
from app.proxy.results import Cached, CacheStatus, Fetch, Missing
from app.proxy.upstream import Upstream
from app.repositories import Repository

STALE_WARNING = '110 - "Response is Stale"'


def read_only(request: web.Request, repo: Repository) -> None:
    """Remote repositories answer GET and HEAD; anything else is a 405."""
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(
            f"{repo.name} is a remote repository: only GET and HEAD",
            headers={"Allow": "GET, HEAD"},
        )


def cache_headers(how: CacheStatus) -> dict[str, str]:
    """``X-Cache``, and the ``Warning`` a stale copy carries."""
    return {"X-Cache": how, "Warning": STALE_WARNING} if how == "STALE" else {"X-Cache": how}


async def serve(
    request: web.Request, core: RemoteCore, repo: Repository, upstream: Upstream, fetch: Fetch
) -> web.StreamResponse:
    """Answer ``fetch`` as the upstream published it (streamed through on a miss)."""
    return await respond(request, await core.open(repo, upstream, fetch))


async def respond(request: web.Request, opened: Opened) -> web.StreamResponse:
    if isinstance(opened, Cached):
        return await send_cached(request, opened)
    if isinstance(opened, Missing):
        raise missing(opened)
    return await stream_fill(request, opened)


def missing(answer: Missing) -> NotFound:
    return NotFound(f"{answer.path} not found upstream", headers={"X-Cache": answer.how})


async def send_cached(request: web.Request, cached: Cached) -> web.StreamResponse:
    headers = {**cached.entry.headers, **cache_headers(cached.how)}
    body = BlobBody.stored(
        cached.cas,
        cached.blob.digest,
        cached.blob.size,
        cached.entry.content_type,
        redirect=False,
        local_path=cached.local_path,
        data=cached.data,
    )
    return await send_blob(request, body, headers)


async def stream_fill(request: web.Request, fill: Fill) -> web.StreamResponse:
    """A miss: the client gets the upstream's bytes as they arrive, while they are
    stored. Leaving (the client hangs up, the handler is cancelled) leaves the fill
    running for the others."""
    headers = {**fill.headers, "Content-Type": fill.content_type, "X-Cache": "MISS"}
    if request.method != "GET":
        fill.leave()
        if fill.cache:  # answered from the new copy once it is stored
            stored = await fill.stored()
            if stored is None:
                raise BadGateway(f"{fill.fetch.path} vanished right after it was cached")
            return await send_cached(request, stored)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        with suppress(ConnectionError):
            await response.write_eof()
        return response
    response = web.StreamResponse(headers=headers)
    if fill.length is not None:
        response.content_length = fill.length
    await response.prepare(request)
    chunks = fill.chunks()
    try:
        async for chunk in chunks:
            await response.write(chunk)
    except (FillRejected, ConnectionError):
        # A body that broke, a client gone or dropped for stalling: the client sees a
        # short body, never a whole wrong one.
        return cut(request, response)
    finally:
        await chunks.aclose()
    with suppress(ConnectionError):
        await response.write_eof()
    return response


async def answer_by_cache_path(
    request: web.Request, core: RemoteCore, repo: Repository, path: str
) -> web.StreamResponse | None:
    """A hit on an entry this process remembers, by the cache path a format made of
    the request, before it looks up what a miss would need (the link behind a PyPI
    file or an npm tarball); None otherwise. The request path is then remembered as
    that entry's, for :func:`answer_by_request_path`."""
    cached = await core.remembered_hit(repo, path)
    if cached is None:
        return None
    requested = request.match_info.get("path")
    if requested is not None:
        core.remembered.alias(repo.id, requested, f"{repo.id}:{path}")
    return await send_cached(request, cached)


def answer_by_request_path(
    request: web.Request, core: RemoteCore, repo: Repository, requested: str
) -> web.Response | None:
    """The quickest hit there is, taken before the format parses the path: a request
    path a format already mapped to a remembered entry whose small body is in memory,
    asked for plainly (GET or HEAD, no Range nor conditions). None for anything else:
    the format then answers as usual. No awaits, no copies of the body."""
    hot = core.remembered.for_plain_request(repo.id, requested, request.headers)
    if hot is None:
        return None
    core.hits.count(repo, hot.entry.path, "HIT")
    return web.Response(body=hot.body, headers=hot.headers)
