"""The middleware (one, see :func:`observing`): request id, access log and metrics, and
error shaping.

Errors are turned into responses in one place, before the response starts; an
error after the first byte went out can only abort the connection, which is
what a client needs to notice a truncated body.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import re
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import ClientPayloadError, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from aiohttp.web_urldispatcher import SystemRoute
from multidict import istr

from app import keys, logs
from app.access_log import AccessWriter
from app.backends.cache import CacheError
from app.backends.metadata import BlobsGone, MetadataError
from app.backends.storage import InvalidKey, StorageError
from app.draining import INFLIGHT
from app.errors import (
    ApiError,
    BadRequest,
    DigestMismatch,
    PayloadTooLarge,
    Unavailable,
    error_for_status,
)
from app.formats.base import Format
from app.http import SENDFILE_BYTES
from app.inputs import unstorable_part
from pipelines import DigestMismatch as StreamDigestMismatch
from pipelines import InvalidDigest, TooLarge

log = structlog.get_logger("artifactapi.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
FORMATS: web.AppKey[dict[str, Format]] = web.AppKey("formats")
# Set by the dispatcher once it knows which format answers, so errors take its shape.
FORMAT: web.RequestKey[Format] = web.RequestKey("format")

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# An istr: looked up without folding the name's case on every request.
_X_REQUEST_ID = istr("X-Request-ID")
_DEFAULT_FORMAT = Format()


@functools.lru_cache(maxsize=1024)
def _route_name(route: web.AbstractRoute) -> str:
    """A declared route's path template, for metrics. Remembered: four property
    lookups on every request otherwise."""
    resource = route.resource
    return "unmatched" if resource is None else resource.canonical


class RequestIds:
    """Request ids for requests that bring none: a random prefix per process and a
    counter, unique across workers and replicas, and far cheaper than a uuid4 per
    request. Made in each worker after the fork, so no two share a prefix."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._next = itertools.count(1).__next__

    def new(self) -> str:
        return f"{self._prefix}{self._next():016x}"


REQUEST_IDS: web.AppKey[RequestIds] = web.AppKey("request_ids")
# Writes each request's access-log line; None with logging.access off or above info.
ACCESS_LOG: web.AppKey[AccessWriter | None] = web.AppKey("access_log")


PrepareHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def observing(app: web.Application) -> Middleware:
    """The one middleware for ``app``, :func:`observe`-ing every request with the app's
    in-flight count, tallies, access log and id maker, looked up here once rather than
    on every request."""
    inflight = app[INFLIGHT]
    tallies = app[keys.METRICS].http
    access = app[ACCESS_LOG]
    ids = app[REQUEST_IDS]

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        """The one middleware: request id, errors shaped, one access-log line and the
        metrics of every request. One, and one frame: each middleware or helper
        coroutine is another frame on every request, and a cache hit costs little more
        than a few."""
        request_id = identify(request, ids)
        bound = logs.REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500
        response: web.StreamResponse | None = None
        inflight.started()
        try:
            # The handler's response, or its error in the shape of the format that owns it.
            try:
                refused = unstorable_part(request)
                if refused is not None:
                    raise BadRequest(f"{refused} holds a NUL or text that is not UTF-8")
                response = await handler(request)
            except asyncio.CancelledError:
                raise
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                response = _http_error(request, exc)
            except Exception as exc:
                if request.writer is not None and request.writer.output_size > 0:
                    log.warning("response aborted after it started", error=repr(exc))
                    raise
                error = _translate(exc)
                response = render(request, error)
            status = response.status
            return response
        finally:
            inflight.finished()
            elapsed = time.perf_counter() - started
            received = request.content.total_bytes
            sent = _bytes_sent(response)
            # Only a streamed response can have gone out by sendfile (see app.http).
            if not isinstance(response, web.Response) and SENDFILE_BYTES in request:
                sent += request[SENDFILE_BYTES]
            matched = request.match_info.route
            # aiohttp makes a SystemRoute for each request no route matched (a 404 or
            # 405): named on the spot, never remembered (it holds its exception).
            unmatched = type(matched) is SystemRoute
            route = "unmatched" if unmatched else _route_name(matched)
            tallies.add(route, request.method, status, elapsed, received, sent)
            if access is not None:
                ms = round(elapsed * 1000, 1)
                access(request.method, request.path, status, ms, received, sent, request_id)
            logs.REQUEST_ID.reset(bound)

    return observe


def identify(request: web.Request, ids: RequestIds | None = None) -> str:
    """The request's id (the client's own if it is a sane one), kept on the request so
    that every response carries it (:func:`request_ids_added`). ``ids``: the app's, if
    the caller has them at hand."""
    supplied = request.headers.get(_X_REQUEST_ID)
    if supplied and _CLIENT_ID.match(supplied):
        request_id = supplied
    else:
        request_id = (ids or request.app[REQUEST_IDS]).new()
    request[REQUEST_ID] = request_id
    return request_id


def _bytes_sent(response: web.StreamResponse | None) -> int:
    if response is None:
        return 0
    if response.prepared:
        return response.body_length
    # A plain Response is only written after the middlewares return.
    body = response.body if isinstance(response, web.Response) else None
    return len(body) if isinstance(body, bytes) else 0


def _format_owning(request: web.Request) -> Format | None:
    """The format of the prefix (``/v2/``) or repository the request is for, for an
    error raised before the dispatcher named it."""
    formats = request.app[FORMATS]
    for fmt in formats.values():
        if fmt.path_prefix and request.path.startswith(fmt.path_prefix):
            return fmt
    name = request.match_info.get("repository")
    if name is None or keys.REPOSITORIES not in request.app:
        return None
    try:
        return formats[request.app[keys.REPOSITORIES].get(name).format]
    except ApiError:  # no such repository
        return None


def request_ids_added(app: web.Application) -> PrepareHook:
    """The on_response_prepare hook for ``app``: every response, streamed or not,
    carries the id; while the server drains, no connection is kept alive for another
    request."""
    inflight = app[INFLIGHT]  # looked up once: this runs for every response

    async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
        # Not request.get: Mapping.get is two Python calls more, on every response.
        try:
            request_id: str | None = request[REQUEST_ID]
        except KeyError:  # before the middleware ran (parser errors)
            request_id = None
        if request_id is not None:
            response.headers[_X_REQUEST_ID] = request_id
        if inflight.draining:
            response.force_close()

    return add_request_id


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return render(request, error_for_status(exc.status, exc.reason, headers), exc.status)


def _translate(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, TooLarge):
        return PayloadTooLarge(str(exc))
    if isinstance(exc, StreamDigestMismatch):
        return DigestMismatch(str(exc), detail={"expected": exc.expected, "actual": exc.actual})
    if isinstance(exc, (InvalidDigest, InvalidKey)):
        return BadRequest(str(exc))
    if isinstance(exc, BlobsGone):  # collected while this request wrote a reference to it
        return Unavailable(f"{exc}; try again", headers={"Retry-After": "1"})
    if isinstance(exc, (ClientPayloadError, HttpProcessingError, ConnectionResetError)):
        # The client went away or sent a broken body; nothing of it was kept.
        log.info("request body incomplete", error=repr(exc))
        return BadRequest("request body incomplete")
    for backend, name in (
        (StorageError, "storage"),
        (MetadataError, "database"),
        (CacheError, "cache"),
    ):
        if isinstance(exc, backend):
            log.error("backend failure", backend=name, error=str(exc))
            return Unavailable(f"{name} unavailable, try again")
    log.exception("unhandled error")
    return ApiError("internal error")


def render(request: web.Request, error: ApiError, status: int | None = None) -> web.Response:
    """``error`` in the shape of the format the request is for (its status, or
    ``status``), with the request's id, and a 401 with that format's challenge."""
    status = error.status if status is None else status
    fmt = request.get(FORMAT) or _format_owning(request) or _DEFAULT_FORMAT
    response = fmt.render_error(request, error, request.get(REQUEST_ID, ""))
    if response.status != status:  # else the format's reason phrase stays (PyPI's has the why)
        response.set_status(status)
    if status == 401 and hdrs.WWW_AUTHENTICATE not in response.headers:
        # Every 401 says how to authenticate, in the format's way, wherever it came from.
        response.headers[hdrs.WWW_AUTHENTICATE] = fmt.challenge(request, None)
    return response
