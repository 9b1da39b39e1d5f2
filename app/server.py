"""The application factory: wires backends, formats, middlewares and routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from app import gc_routes, health, keys
from app.access_log import AccessWriter, JsonAccessLog, console_access_log
from app.backends.cache import CacheError, open_cache
from app.backends.metadata import open_metadata
from app.backends.storage import open_storage
from app.cas import ContentStore
from app.config import Config
from app.draining import INFLIGHT, Inflight
from app.errors import NotFound, PayloadTooLarge
from app.formats import Format, available_formats, migrations, validate_repositories
from app.formats.base import Services
from app.http import ExternalUrl
from app.metrics import Metrics
from app.middleware import (
    ACCESS_LOG,
    FORMAT,
    FORMATS,
    REQUEST_IDS,
    RequestIds,
    identify,
    observing,
    request_ids_added,
)
from app.proxy import edge
from app.proxy.core import RemoteCore
from app.proxy.options import RemoteOptions
from app.proxy.singleflight import CacheLeases, CacheOutage, DatabaseLeases, FallbackLeases
from app.proxy.upstream import Upstream
from app.repositories import Repositories
from collector import Collector
from collector.scheduler import every

log = structlog.get_logger("artifactapi")


def create_app(config: Config, *, migrate: bool = True) -> web.Application:
    """Build the service. Backends open in ``cleanup_ctx`` when the app starts.

    ``migrate=False`` is for worker processes whose parent already migrated.
    """
    formats = available_formats()
    options = validate_repositories(config, formats)  # fail before opening anything

    app = web.Application(client_max_size=1024**2)
    app[keys.CONFIG] = config
    external_url = ExternalUrl(config.server.base_url, config.server.trust_forwarded)
    app[keys.METRICS] = Metrics()
    app[FORMATS] = formats
    app[INFLIGHT] = Inflight()
    app[REQUEST_IDS] = RequestIds()
    app[ACCESS_LOG] = access = _access_log(config)
    app.middlewares.append(observing(app))  # the first: every other runs inside it
    app.on_response_prepare.append(request_ids_added(app))

    async def backends(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if isinstance(access, JsonAccessLog):
                stack.callback(access.flush)  # last, after every request is done
            # Every storage call goes through the one wrapper: keys checked, calls tallied.
            storage = await open_storage(config.storage, app[keys.METRICS].storage)
            stack.push_async_callback(storage.close)
            await storage.ping()  # an unreachable bucket stops start-up, like the database
            metadata = await open_metadata(
                config.database.url, config.database.pool_min, config.database.pool_max
            )
            stack.push_async_callback(metadata.close)
            if migrate:
                applied = await metadata.migrate(migrations(formats.values()))
                if applied:
                    log.info("migrated", scripts=applied)
            cache = open_cache(config.cache.url)
            stack.push_async_callback(cache.close)
            outage = CacheOutage(app[keys.METRICS])
            try:
                await cache.ping()
            except CacheError as exc:  # optional: the replica starts, leasing in the database
                outage.failed(exc)
            app[keys.STORAGE] = storage
            app[keys.METADATA] = metadata
            app[keys.CACHE] = cache
            app[keys.CAS] = ContentStore(storage, metadata)
            app[keys.REPOSITORIES] = await Repositories.sync(metadata, config.repositories, options)
            leases = (
                DatabaseLeases(metadata)
                if config.cache.url.startswith("memory://")  # workers share the database only
                else FallbackLeases(CacheLeases(cache), DatabaseLeases(metadata), outage)
            )
            app[keys.PROXY] = core = RemoteCore(app[keys.CAS], metadata, leases, app[keys.METRICS])
            app[keys.UPSTREAMS] = upstreams = {
                repo.name: Upstream(repo.name, repo.narrowed(RemoteOptions).options)
                for repo in app[keys.REPOSITORIES]
                if repo.kind == "remote"
            }
            for upstream in upstreams.values():
                stack.push_async_callback(upstream.close)
            services = Services(
                metadata=metadata,
                cas=app[keys.CAS],
                repositories=app[keys.REPOSITORIES],
                remote=core,
                upstreams=upstreams,
                external_url=external_url,
                max_body_size=config.server.max_body_size,
            )
            for fmt in formats.values():
                fmt.bind(services)
            stack.push_async_callback(core.hits.flush_quietly)
            flushing = asyncio.create_task(core.hits.flush_periodically())
            stack.push_async_callback(_cancelled, flushing)
            app[keys.COLLECTOR] = Collector(
                config.gc, metadata, storage, formats, app[keys.REPOSITORIES], app[keys.METRICS]
            )
            if config.gc.enabled:
                scheduled = asyncio.create_task(every(app[keys.COLLECTOR], config.gc.interval))
                stack.push_async_callback(_cancelled, scheduled)
            yield

    app.cleanup_ctx.append(backends)

    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    gc_routes.setup(app)
    app.router.add_route(
        "*", "/repository/{repository}/{path:.*}", dispatch, expect_handler=expect_continue
    )
    app.router.add_route("*", "/repository/{repository}", dispatch)
    for fmt in formats.values():
        fmt.setup(app)
    return app


def _access_log(config: Config) -> AccessWriter | None:
    logging = config.logging
    if not logging.access or logging.level not in ("debug", "info"):
        return None
    return JsonAccessLog() if logging.format == "json" else console_access_log


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """Answer ``Expect: 100-continue``: refuse a too-large body before the client sends it."""
    limit = request.app[keys.CONFIG].server.max_body_size
    if request.content_length is not None and request.content_length > limit:
        request[FORMAT] = _format_of(request)
        error = PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        # Answered before the middleware runs: the id is given here.
        response = request[FORMAT].render_error(request, error, identify(request))
        response.force_close()  # the unread body must not be parsed as the next request
        return response
    if request.version < (1, 1):
        return None  # HTTP/1.0 has no interim responses
    if request.headers.get("Expect", "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"unknown Expect: {request.headers['Expect']}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the response proper has not started
    return None


def _format_of(request: web.Request) -> Format:
    formats = request.app[FORMATS]
    try:
        repo = request.app[keys.REPOSITORIES].get(request.match_info["repository"])
    except NotFound:
        return Format()
    return formats[repo.format]


async def dispatch(request: web.Request) -> web.StreamResponse:
    """``/repository/<name>/<path>``: hand the request to the repository's format."""
    # app and match_info are properties: read once, on the path every cache hit takes.
    app = request.app
    match = request.match_info
    repo = app[keys.REPOSITORIES].get(match["repository"])
    fmt = app[FORMATS][repo.format]
    request[FORMAT] = fmt
    if repo.kind not in fmt.kinds:
        raise NotFound(f"repository {repo.name} is not served")
    path = match.get("path", "")
    if repo.kind == "remote" and request.method in ("GET", "HEAD"):
        remembered = edge.answer_by_request_path(request, app[keys.PROXY], repo, path)
        if remembered is not None:
            return remembered
    return await fmt.handle(request, repo, path)
