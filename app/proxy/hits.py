"""Hit counting for remote repositories: the ``artifactapi_proxy_requests_total``
tally, and when each entry was last asked for and how often, counted in memory and
written every ``FLUSH_EVERY`` seconds (``last_requested_at``, ``request_count``), so
that a hit costs no write. The collector evicts by those."""

from __future__ import annotations

import asyncio
import time

import structlog

from app.metrics import Metrics
from app.proxy.entries import Entries
from app.proxy.results import CacheStatus
from app.repositories import Repository

log = structlog.get_logger("artifactapi.proxy")

FLUSH_EVERY = 10.0


class HitCounter:
    def __init__(self, entries: Entries, metrics: Metrics) -> None:
        self.entries = entries
        self.metrics = metrics
        self._hits: dict[tuple[int, str], tuple[float, int]] = {}  # -> (last asked, count)

    def count(self, repo: Repository, path: str, how: CacheStatus) -> None:
        """One answer for ``path``; a MISS is counted by the row its fill writes."""
        self.metrics.proxy.add(repo.name, how)
        if how != "MISS":
            key = (repo.id, path)
            last = self._hits.get(key)
            self._hits[key] = (time.time(), 1 if last is None else last[1] + 1)

    async def flush(self) -> None:
        """Write the hits counted since the last flush."""
        hits, self._hits = self._hits, {}
        if hits:
            await self.entries.requested(hits)

    async def flush_quietly(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # statistics only: never worth a crash
            log.warning("could not record cache hits", error=repr(exc))

    async def flush_periodically(self, interval: float = FLUSH_EVERY) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush_quietly()
