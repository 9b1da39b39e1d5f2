"""In-process cache for the embedded shape (one process; nothing shared)."""

from __future__ import annotations

import time

from app.backends.cache.base import CacheError


class MemoryCache:
    def __init__(self, max_entries: int = 100_000) -> None:
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._max_entries = max_entries

    def _live(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= time.monotonic():
            del self._values[key]
            return None
        return value

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        if len(self._values) >= self._max_entries and key not in self._values:
            self._evict()
        expires = None if ttl is None else time.monotonic() + ttl
        self._values[key] = (bytes(value), expires)

    def _evict(self) -> None:
        now = time.monotonic()
        expired = [k for k, (_, exp) in self._values.items() if exp is not None and exp <= now]
        for key in expired:
            del self._values[key]
        if len(self._values) >= self._max_entries:
            # Dicts keep insertion order: drop the oldest tenth.
            for key in list(self._values)[: max(1, self._max_entries // 10)]:
                del self._values[key]

    async def delete(self, key: str) -> bool:
        return self._live(key) is not None and self._values.pop(key, None) is not None

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        current = self._live(key)
        if current is None:
            value = amount
            await self.set(key, str(value).encode(), ttl)
            return value
        try:
            value = int(current) + amount
        except ValueError:
            raise CacheError(f"{key!r} does not hold an integer") from None
        self._values[key] = (str(value).encode(), self._values[key][1])
        return value

    def _holder(self, name: str) -> str | None:
        lease = self._leases.get(name)
        if lease is None or lease[1] <= time.monotonic():
            self._leases.pop(name, None)
            return None
        return lease[0]

    async def acquire(self, name: str, token: str, ttl: float) -> bool:
        if self._holder(name) is not None:
            return False
        self._leases[name] = (token, time.monotonic() + ttl)
        return True

    async def renew(self, name: str, token: str, ttl: float) -> bool:
        if self._holder(name) != token:
            return False
        self._leases[name] = (token, time.monotonic() + ttl)
        return True

    async def release(self, name: str, token: str) -> bool:
        if self._holder(name) != token:
            return False
        del self._leases[name]
        return True

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._values.clear()
        self._leases.clear()
