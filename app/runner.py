"""Running the service: one process, or several workers sharing the port.

With ``server.workers > 1`` the parent forks workers that each bind the port with
SO_REUSEPORT, so the kernel spreads connections over them and every core is used.
Workers share nothing in memory; like replicas, they meet only in the database,
storage and cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from typing import Any

import structlog
from aiohttp import web

from app.backends.metadata import open_metadata
from app.config import Config
from app.connections import GuardedRunner
from app.draining import INFLIGHT
from app.formats import available_formats, migrations
from app.logs import configure_logging
from app.server import create_app

log = structlog.get_logger("artifactapi")


async def migrate_once(config: Config) -> list[str]:
    metadata = await open_metadata(config.database.url, 1, 2)
    try:
        return await metadata.migrate(migrations(available_formats().values()))
    finally:
        await metadata.close()


def _run(config: Config, main: Coroutine[Any, Any, None]) -> None:
    if config.server.loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def make_runner(app: web.Application, config: Config) -> web.AppRunner:
    """The runner every worker serves ``app`` with: our access log instead of
    aiohttp's, signals left to us, and connections bounded (see app.connections)."""
    return GuardedRunner(
        app,
        header_timeout=config.server.header_timeout,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=config.server.shutdown_grace,
    )


async def _serve(
    config: Config, reuse_port: bool, announce: bool, ready_fd: int | None = None
) -> None:
    app = create_app(config, migrate=False)
    runner = make_runner(app, config)
    await runner.setup()
    # What start-up made (modules, routes, the app, its backends) lives as long as the
    # process: out of the collector's sight, a full collection walks only what came
    # after (tens of thousands of objects fewer, milliseconds of a paused loop each).
    gc.freeze()
    try:
        site = web.TCPSite(
            runner, config.server.host, config.server.port, reuse_port=reuse_port, backlog=1024
        )
        await site.start()
        if ready_fd is not None:
            os.write(ready_fd, b".")  # tell the parent this worker is listening
            os.close(ready_fd)  # so the parent sees EOF if a sibling dies before its byte
        if announce:
            port = _bound_port(site)
            print(f"artifactapi listening on http://{config.server.host}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        grace = config.server.shutdown_grace
        log.info("shutting down", grace_seconds=grace, in_flight=app[INFLIGHT].count)
        await site.stop()  # no new connections; requests in flight go on
        if not await app[INFLIGHT].drain(grace):
            log.warning("grace period over, cutting requests", in_flight=app[INFLIGHT].count)
    finally:
        await runner.cleanup()


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp keeps the asyncio Server here
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else 0


def serve(config: Config) -> int:
    configure_logging(config.logging)
    # Migrate once before any worker starts; also fails fast on an unreachable database.
    asyncio.run(migrate_once(config))
    workers = config.server.workers
    if workers == 1:
        _run(config, _serve(config, reuse_port=False, announce=True))
        return 0
    return _supervise(config, workers)


def _supervise(config: Config, workers: int) -> int:
    # Reserve the port (bound, never listening, so it takes no connections) so
    # that port 0 resolves to one port for every worker.
    reservation = socket.socket(socket.AF_INET6 if ":" in config.server.host else socket.AF_INET)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reservation.bind((config.server.host, config.server.port))
    port = reservation.getsockname()[1]
    config = config.model_copy(update={"server": config.server.model_copy(update={"port": port})})
    children: list[int] = []
    ready_read, ready_write = os.pipe()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            reservation.close()
            os.close(ready_read)
            code = 0
            try:
                _run(config, _serve(config, reuse_port=True, announce=False, ready_fd=ready_write))
            except BaseException as exc:  # a worker must never return into the parent's code
                print(f"artifactapi worker {os.getpid()} failed: {exc}", file=sys.stderr)
                code = 1
            os._exit(code)
        children.append(pid)
    os.close(ready_write)
    if not _wait_ready(ready_read, workers):
        print("artifactapi: a worker failed to start", file=sys.stderr)
        _stop(children)
        for child in children:
            os.waitpid(child, 0)
        return 1
    print(
        f"artifactapi listening on http://{config.server.host}:{port} ({workers} workers)",
        flush=True,
    )

    def forward(signum: int, _frame: object) -> None:
        _stop(children)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = False
    try:
        while children:
            pid, status = os.wait()
            if pid in children:
                children.remove(pid)
                if os.waitstatus_to_exitcode(status) != 0 and not failed:
                    failed = True  # one worker died: stop the others rather than limp on
                    _stop(children)
    finally:
        reservation.close()
    return 1 if failed else 0


def _wait_ready(fd: int, workers: int) -> bool:
    """Read one byte per worker; EOF first means a worker died before listening."""
    seen = 0
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while seen < workers:
            data = pipe.read(workers - seen)
            if not data:
                return False
            seen += len(data)
    return True


def _stop(children: list[int]) -> None:
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
