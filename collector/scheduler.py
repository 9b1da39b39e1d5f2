"""The collector inside the server: a run every ``gc.interval`` on each replica,
of which the lease lets one collect."""

from __future__ import annotations

import asyncio
import random

import structlog

from collector.run import Collector

log = structlog.get_logger("artifactapi.collector")


async def every(collector: Collector, interval: float) -> None:
    """Run forever; a jitter of ±10% keeps replicas started together from colliding."""
    while True:
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))
        try:
            await collector.run()
        except Exception:  # run() reports its own failures; never let the loop die
            log.exception("scheduled collection failed")
