"""One upstream fetch per uncached path, however many ask at once.

Within a process, the first request for a key leads and later ones wait on its
future. Across processes and replicas, the leader also holds a lease (in Redis for
the scale-out shape, in the database when the cache is in-process, so worker
processes on one machine share it); a request whose lease attempt fails waits for
the lease to go, then looks again. Waiting followers are then served from the cache.

Redis holds nothing but these leases, so losing it must not cost a request: while it
cannot be reached, leases are taken in the database (:class:`FallbackLeases`), and a
lease that cannot be given up is left to expire. Either way the fetch goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Protocol, TypeVar

import structlog

from app.backends.cache import Cache, CacheError
from app.backends.metadata import MetadataStore
from app.metrics import Metrics

log = structlog.get_logger("artifactapi.proxy")

T = TypeVar("T")
LEASE_TTL = 30.0  # renewed every third of it while the leader works
POLL_FIRST = 0.002  # a short fill is over in a few ms: look again soon, then less often
POLL_MAX = 0.05
CACHE_RETRY = 5.0  # while the cache is away, it is tried again this often, not per request
CACHE_TIMEOUT = 2.0  # a cache that does not answer within this is away (a healthy one: <1 ms)
WARN_EVERY = 60.0  # while it stays away, one warning this often, not one per request


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


class CacheOutage:
    """Whether this process can reach its cache, as it last found out: the
    ``artifactapi_cache_degraded`` gauge, ``artifactapi_cache_errors_total``, a warning
    when the cache goes (then at most one every ``WARN_EVERY`` while it stays away)
    and a line when it is back."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.degraded = False
        self._retry_at = 0.0
        self._warned_at = 0.0
        self._unwarned = 0

    def worth_trying(self) -> bool:
        return not self.degraded or time.monotonic() >= self._retry_at

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        self.metrics.cache_errors.inc()
        self.metrics.cache_degraded.set(1)
        self._retry_at = now + CACHE_RETRY
        self._unwarned += 1
        if not self.degraded or now - self._warned_at >= WARN_EVERY:
            log.warning(
                "cache unavailable: single flight goes through the database",
                error=str(error) or type(error).__name__,
                failures=self._unwarned,
            )
            self._warned_at, self._unwarned = now, 0
        self.degraded = True

    def answered(self) -> None:
        if self.degraded:
            log.info("cache is back: single flight goes through it again")
            self.metrics.cache_degraded.set(0)
        self.degraded = False


class FallbackLeases:
    """Leases in the cache, or in the database while the cache cannot be reached.

    The database's leases table is seen by every replica and worker, so single flight
    still holds among those that lease there; while some replicas reach Redis and
    others do not, a path may be fetched once by each group, which costs an upstream
    request, never a wrong answer (the CAS stores content once). A lease is renewed
    and given up where it was taken."""

    def __init__(self, cache: Leases, database: Leases, outage: CacheOutage) -> None:
        self.cache, self.database, self.outage = cache, database, outage
        self._taken: dict[str, Leases] = {}  # token -> where its lease is

    async def _either(self, call: Callable[[Leases], Awaitable[T]]) -> tuple[T, Leases]:
        if self.outage.worth_trying():
            try:
                result = await asyncio.wait_for(call(self.cache), CACHE_TIMEOUT)
            except (CacheError, TimeoutError) as exc:
                self.outage.failed(exc)
            else:
                self.outage.answered()
                return result, self.cache
        return await call(self.database), self.database

    async def acquire(self, name: str, token: str, ttl: float) -> bool:
        if self._taken.get(token) is self.database:  # renewed where it is
            return await self.database.acquire(name, token, ttl)
        # A lease taken in the cache that can no longer be renewed there moves to the
        # database; the cache's copy expires by itself.
        taken, where = await self._either(lambda leases: leases.acquire(name, token, ttl))
        if taken:
            self._taken[token] = where
        return taken

    async def release(self, name: str, token: str) -> None:
        where = self._taken.pop(token, self.database)
        if where is self.database:
            await self.database.release(name, token)
            return
        try:
            await asyncio.wait_for(self.cache.release(name, token), CACHE_TIMEOUT)
        except (CacheError, TimeoutError) as exc:
            self.outage.failed(exc)
            raise

    async def held(self, name: str) -> bool:
        held, _ = await self._either(lambda leases: leases.held(name))
        return held


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
                await self._release(name, token)
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

    async def _release(self, name: str, token: str) -> None:
        # The fetch is over and its client may have every byte: nothing that fails
        # now may change that answer (or how it is logged). The lease lapses by itself.
        try:
            await self.leases.release(name, token)
        except Exception as exc:
            log.warning(
                "lease release failed; it expires by itself",
                lease=name,
                within=LEASE_TTL,
                error=str(exc) or type(exc).__name__,
            )

    async def _renew(self, name: str, token: str) -> None:
        while True:
            await asyncio.sleep(LEASE_TTL / 3)
            try:
                await self.leases.acquire(name, token, LEASE_TTL)
            except Exception as exc:  # the fetch goes on; the next renewal may succeed
                log.warning("lease renewal failed", lease=name, error=str(exc))
