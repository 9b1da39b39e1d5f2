"""The application factory: wires backends, formats, middlewares and routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import hdrs, web

from app import (
    admin_routes,
    gc_routes,
    health,
    keys,
    oidc_routes,
    package_routes,
)
from app.access_log import AccessWriter, JsonAccessLog, console_access_log
from app.auth.audit import ACTION, TARGET, recorded
from app.auth.manage import first_admin
from app.auth.oidc import TrustedPublishing
from app.auth.records import AuthRecords
from app.auth.service import PRINCIPAL, PRIVATE, Auth
from app.auth.throttle import Throttle
from app.authorising import authorised, written_to
from app.backends.cache import CacheError, open_cache
from app.backends.metadata import open_metadata
from app.backends.storage import open_storage
from app.cas import ContentStore
from app.config import Config
from app.draining import INFLIGHT, Inflight
from app.errors import ApiError, NotFound, PayloadTooLarge
from app.formats import available_formats, migrations, validate_repositories
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
    render,
    request_ids_added,
)
from app.proxy import edge
from app.proxy.core import RemoteCore
from app.proxy.options import RemoteOptions
from app.proxy.singleflight import CacheLeases, CacheOutage, DatabaseLeases, FallbackLeases
from app.proxy.upstream import Upstream
from app.repositories import Repositories
from app.virtual import Virtuals, member_headers
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
    app.on_response_prepare.append(answered)
    app.on_response_prepare.append(member_headers)

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
            throttle = Throttle(
                cache, config.auth.failed_logins_per_source, config.auth.failed_logins_per_user
            )
            app[keys.AUTH] = auth = Auth(AuthRecords(metadata.db), config.auth, throttle)
            await first_admin(auth.records, config.auth.initial_admin_password_file)
            await auth.look()
            app[oidc_routes.PUBLISHING] = publishing = TrustedPublishing(
                auth.records, cache, config.auth.trusted_publishers
            )
            stack.push_async_callback(publishing.close)
            watching = asyncio.create_task(auth.watch())
            stack.push_async_callback(auth.flush_uses)
            stack.push_async_callback(auth.audit.flush)  # after the last request's row
            auditing = asyncio.create_task(auth.audit.flush_periodically())
            stack.push_async_callback(_cancelled, auditing)
            stack.push_async_callback(_cancelled, watching)
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
                auth=auth,
                virtuals=Virtuals(app[keys.REPOSITORIES]),
            )
            for fmt in formats.values():
                fmt.bind(services)
            stack.push_async_callback(core.hits.flush_quietly)
            flushing = asyncio.create_task(core.hits.flush_periodically())
            stack.push_async_callback(_cancelled, flushing)
            app[keys.COLLECTOR] = Collector(
                config.gc,
                metadata,
                storage,
                formats,
                app[keys.REPOSITORIES],
                app[keys.METRICS],
                audit_retention=config.auth.audit_retention,
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
    oidc_routes.setup(app)
    admin_routes.setup(app)
    package_routes.setup(app)
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
    """Answer ``Expect: 100-continue``: refuse a body before the client sends it, when it
    is too large or the caller may not send it."""
    limit = request.app[keys.CONFIG].server.max_body_size
    error: ApiError | None = None
    if request.content_length is not None and request.content_length > limit:
        error = PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    else:
        try:
            repo = request.app[keys.REPOSITORIES].get(request.match_info["repository"])
            fmt = request.app[FORMATS][repo.format]
            action = fmt.action(request, repo, request.match_info["path"])
            repo = written_to(request, repo, action, fmt, request.match_info["path"])
            if action is not None:
                await authorised(request, repo, action, fmt)
        except ApiError as refused:
            error = refused if refused.status in (401, 403) else None
    if error is not None:
        identify(request)  # answered before the middleware runs: the id is given here
        response = render(request, error)
        response.force_close()  # the unread body must not be parsed as the next request
        return response
    if request.version < (1, 1):
        return None  # HTTP/1.0 has no interim responses
    if request.headers.get("Expect", "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"unknown Expect: {request.headers['Expect']}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the response proper has not started
    return None


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
    action = fmt.action(request, repo, path)
    repo = written_to(request, repo, action, fmt, path)
    # The anonymous read of a public repository, every cache hit's path, asks nothing.
    if action is None:
        pass  # a sign-in: the handler checks the credentials it is given
    elif action != "read" or not repo.anonymous_read or hdrs.AUTHORIZATION in request.headers:
        await authorised(request, repo, action, fmt)
    if repo.kind == "remote" and request.method in ("GET", "HEAD"):
        remembered = edge.answer_by_request_path(request, app[keys.PROXY], repo, path)
        if remembered is not None:
            return remembered
    return await fmt.handle(request, repo, path)


_READS = frozenset({"GET", "HEAD", "OPTIONS"})  # always reads (Format.action)


async def answered(request: web.Request, response: web.StreamResponse) -> None:
    """What authorisation leaves on an answer: ``Cache-Control: private`` for a private
    repository's, and the audit log's row for a request that wrote, deleted or
    administered, with the status it got; a public read costs two tests."""
    if request.get(PRIVATE):
        kept_private(response)
    if request.method in _READS:
        return
    action = request.get(ACTION)
    if action is None or not recorded(action):
        return
    principal = request.get(PRINCIPAL)
    actor = principal.name if principal is not None else ""
    target = request.get(TARGET) or request.path
    request.app[keys.AUTH].audit.record(actor, action, target, request.remote, response.status)


def kept_private(response: web.StreamResponse) -> None:
    """Mark ``response`` for the client's own cache only (an upstream's ``public``,
    relayed, becomes ``private``; ``no-store`` stays as it is)."""
    current = response.headers.get(hdrs.CACHE_CONTROL)
    if current is None:
        response.headers[hdrs.CACHE_CONTROL] = "private"
        return
    directives = [d.strip() for d in current.split(",") if d.strip()]
    if any(d.lower() in ("private", "no-store") for d in directives):
        return
    kept = [d for d in directives if d.lower() != "public"]
    response.headers[hdrs.CACHE_CONTROL] = ", ".join(["private", *kept])
