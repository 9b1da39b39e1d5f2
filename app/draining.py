"""Graceful shutdown: count requests in flight and let them finish.

aiohttp's own shutdown stops reading from every connection at once, which cuts
off an upload whose body is still arriving. So the runner first stops listening,
then waits here until the requests in flight are done (or the grace runs out),
and only then lets aiohttp close the connections.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web


class Inflight:
    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        # Made when a drain begins: until then a request costs two additions, not an
        # Event cleared and set (this runs for every request, each cache hit included).
        self._idle: asyncio.Event | None = None

    def started(self) -> None:
        self.count += 1

    def finished(self) -> None:
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()

    async def drain(self, grace: float) -> bool:
        """Wait until no request is in flight; False if the grace ran out first."""
        self.draining = True
        if self._idle is None:
            self._idle = asyncio.Event()
        if self.count == 0:
            return True
        self._idle.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        return self.count == 0


INFLIGHT: web.AppKey[Inflight] = web.AppKey("inflight")
