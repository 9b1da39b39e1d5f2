"""``/api/v1/gc``: the last collection's report, and a way to start one now."""

from __future__ import annotations

import asyncio

from aiohttp import web

from app import keys
from app.errors import ApiError
from collector.run import LEASE

# Runs started here, held so that shutdown can cancel them (a run is safe to stop).
RUNS: web.AppKey[set[asyncio.Task[object]]] = web.AppKey("gc_runs")


class CollectionRunning(ApiError):
    code, status = "COLLECTION_RUNNING", 409


def setup(app: web.Application) -> None:
    app[RUNS] = set()
    app.router.add_get("/api/v1/gc", status)
    app.router.add_post("/api/v1/gc", start)
    app.on_shutdown.append(_cancel_runs)


async def status(request: web.Request) -> web.Response:
    """Whether a collection is running (on any replica) and the last report."""
    await request.app[keys.AUTH].admin(request)
    metadata = request.app[keys.METADATA]
    holder = await metadata.lease_holder(LEASE)
    last = await metadata.last_gc_run()
    return web.json_response({"running": holder is not None, "holder": holder, "last": last})


async def start(request: web.Request) -> web.Response:
    """Start a collection in the background (``?dry_run=true`` to only count); 202."""
    await request.app[keys.AUTH].admin(request)
    dry_run = request.query.get("dry_run", "").lower() in ("1", "true", "yes")
    holder = await request.app[keys.METADATA].lease_holder(LEASE)
    if holder is not None:
        raise CollectionRunning(f"a collection is running ({holder})")
    task = asyncio.create_task(request.app[keys.COLLECTOR].run(dry_run=dry_run))
    runs = request.app[RUNS]
    runs.add(task)
    task.add_done_callback(runs.discard)
    return web.json_response(
        {"started": True, "dry_run": dry_run}, status=202, headers={"Location": "/api/v1/gc"}
    )


async def _cancel_runs(app: web.Application) -> None:
    runs: set[asyncio.Task[object]] = app[RUNS]
    for task in runs:
        task.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
