"""The cache interface: short-lived values and cross-replica leases.

Everything in a cache is safe to lose: a value is a hint that saves a database
or upstream round trip, and a lease is only held for its time-to-live. The
in-process implementation serves the embedded shape (one process); Redis serves
any number of replicas.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class CacheError(Exception):
    """The cache backend failed or is unreachable."""


@runtime_checkable
class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``; it expires after ``ttl`` seconds (never if None)."""
        ...

    async def delete(self, key: str) -> bool: ...

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount`` (from 0 if absent) and return the new value.

        ``ttl`` is applied when the counter is created.
        """
        ...

    async def acquire(self, name: str, token: str, ttl: float) -> bool:
        """Take the lease ``name`` for ``ttl`` seconds if nobody holds it."""
        ...

    async def renew(self, name: str, token: str, ttl: float) -> bool:
        """Extend a lease we still hold; False if it expired or another holds it."""
        ...

    async def release(self, name: str, token: str) -> bool:
        """Give up a lease only if ``token`` still holds it."""
        ...

    async def ping(self) -> None:
        """Raise :class:`CacheError` unless the backend answers."""
        ...

    async def close(self) -> None: ...
