"""One upstream fetch per uncached path, however many ask at once.

Within a process, the first request for a key leads and later ones wait on its
future. Across processes and replicas, the leader also holds a lease (in Redis for
the scale-out shape, in the database when the cache is in-process, so worker
processes on one machine share it); a request whose lease attempt fails waits for
the lease to go, then looks again. Waiting followers are then served from the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Protocol

from app.backends.cache import Cache
from app.backends.metadata import MetadataStore

LEASE_TTL = 30.0  # renewed every third of it while the leader works
POLL_FIRST = 0.002  # a short fill is over in a few ms: look again soon, then less often
POLL_MAX = 0.05


class Leases(Protocol):
    async def acquire(self, name: str, token: str, ttl: float) -> bool: ...

    async def release(self, name: str, token: str) -> None: ...

    async def held(self, name: str) -> bool: ...


class CacheLeases:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    async def acquire(self, name: str, token: str, ttl: float) -> bool:
        if await self.cache.acquire(name, token, ttl):
            return True
        return await self.cache.renew(name, token, ttl)

    async def release(self, name: str, token: str) -> None:
        await self.cache.release(name, token)

    async def held(self, name: str) -> bool:
        probe = uuid.uuid4().hex
        if await self.cache.acquire(name, probe, 0.001):
            await self.cache.release(name, probe)
            return False
        return True


class DatabaseLeases:
    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    async def acquire(self, name: str, token: str, ttl: float) -> bool:
        return await self.metadata.acquire_lease(name, token, ttl)

    async def release(self, name: str, token: str) -> None:
        await self.metadata.release_lease(name, token)

    async def held(self, name: str) -> bool:
        return await self.metadata.lease_holder(name) is not None


class FlightFailed(Exception):
    """The leader's fetch failed: followers in this process fail the same way."""


class SingleFlight:
    def __init__(self, leases: Leases) -> None:
        self.leases = leases
        self._local: dict[str, asyncio.Future[None]] = {}

    @asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[bool]:
        """Yield True to the one caller that should fetch ``key`` now; the others wait
        until that fetch is over and get False (then look in the cache again)."""
        running = self._local.get(key)
        if running is not None:
            await asyncio.shield(running)  # raises the leader's failure
            yield False
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._local[key] = done
        name = "fetch:" + hashlib.sha256(key.encode()).hexdigest()[:40]
        token = uuid.uuid4().hex
        try:
            if not await self.leases.acquire(name, token, LEASE_TTL):
                await self._wait_released(name)
                done.set_result(None)
                yield False
                return
            renewing = asyncio.create_task(self._renew(name, token))
            try:
                yield True
            finally:
                renewing.cancel()
                with suppress(asyncio.CancelledError):
                    await renewing
                await self.leases.release(name, token)
        except BaseException as exc:
            if not done.done():
                done.set_exception(FlightFailed(str(exc) or type(exc).__name__))
                done.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            if not done.done():
                done.set_result(None)
        finally:
            self._local.pop(key, None)

    async def _wait_released(self, name: str) -> None:
        # The leader may be another process: nothing to await but the shared lease.
        poll = POLL_FIRST
        while await self.leases.held(name):
            await asyncio.sleep(poll)
            poll = min(poll * 2, POLL_MAX)

    async def _renew(self, name: str, token: str) -> None:
        while True:
            await asyncio.sleep(LEASE_TTL / 3)
            await self.leases.acquire(name, token, LEASE_TTL)
