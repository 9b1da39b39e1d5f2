"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from app import keys
from app.draining import INFLIGHT
from app.metrics import CONTENT_TYPE_LATEST

CHECK_TIMEOUT = 3.0
OPTIONAL = frozenset({"cache"})  # this replica serves without them, less well


async def healthz(request: web.Request) -> web.Response:
    """The process answers: nothing else is checked (restart me if this fails)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Route traffic to me: the database and storage answer (503 naming which does
    not). The cache is optional: without it single flight goes through the database,
    so it is reported as degraded, and the answer is still 200."""
    app = request.app
    probes: dict[str, Callable[[], Awaitable[None]]] = {
        "database": app[keys.METADATA].ping,
        "storage": app[keys.STORAGE].ping,
        "cache": app[keys.CACHE].ping,
    }
    results = await asyncio.gather(
        *(asyncio.wait_for(probe(), CHECK_TIMEOUT) for probe in probes.values()),
        return_exceptions=True,
    )
    checks: dict[str, str] = {}
    failing: list[str] = []
    degraded: list[str] = []
    for name, result in zip(probes, results, strict=True):
        if result is None:
            checks[name] = "ok"
        elif name in OPTIONAL:
            checks[name] = f"degraded: {_reason(result)}"
            degraded.append(name)
        else:
            checks[name] = f"failed: {_reason(result)}"
            failing.append(name)
    status = "unavailable" if failing else "degraded" if degraded else "ready"
    return web.json_response(
        {"status": status, "failing": failing, "degraded": degraded, "checks": checks},
        status=503 if failing else 200,
    )


def _reason(result: object) -> str:
    if isinstance(result, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT:g}s"
    return str(result) or type(result).__name__


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[keys.METRICS]
    count, size = await request.app[keys.METADATA].blob_totals()
    registry.blobs.set(count)
    registry.blob_bytes.set(size)
    registry.in_flight.set(request.app[INFLIGHT].count)
    response = web.Response(body=registry.render())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
