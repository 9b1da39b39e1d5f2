"""Failed logins, counted per source address and per user name in the cache backend
(Redis in the scale-out shape, so every replica counts the same ones) over a fixed
window; past either limit a source or a name gets 429 until the window ends.

Counting fails open: with the cache away logins still work (one warning), as a
registry that locks everyone out when Redis restarts would be worse than one that
goes a minute without a limit.
"""

from __future__ import annotations

import hashlib
import time

import structlog

from app.backends.cache import Cache, CacheError
from app.errors import TooManyRequests

log = structlog.get_logger("artifactapi.auth")


class Throttle:
    def __init__(self, cache: Cache, per_source: int, per_user: int, window: float = 60.0) -> None:
        self.cache, self.per_source, self.per_user, self.window = (
            cache,
            per_source,
            per_user,
            window,
        )

    def _keys(self, user: str, source: str | None) -> list[tuple[str, int]]:
        slot = int(time.time() // self.window)
        keys = []
        if user:  # a token or a malformed header claims no name
            # A name is hashed: any bytes a client sends, at a bounded length.
            name = hashlib.sha256(user.encode("utf-8", "surrogateescape")).hexdigest()[:32]
            keys.append((f"auth:failed:user:{name}:{slot}", self.per_user))
        if source:
            keys.append((f"auth:failed:source:{source}:{slot}", self.per_source))
        return keys

    async def check(self, user: str, source: str | None) -> None:
        """:class:`TooManyRequests` if ``user`` or ``source`` failed too often lately."""
        try:
            for key, limit in self._keys(user, source):
                count = await self.cache.get(key)
                if count is not None and int(count) >= limit:
                    retry = int(self.window - time.time() % self.window) + 1
                    raise TooManyRequests(
                        "too many failed logins; try again later",
                        headers={"Retry-After": str(retry)},
                    )
        except CacheError as exc:
            log.warning("cannot count failed logins", error=repr(exc))

    async def failed(self, user: str, source: str | None) -> None:
        try:
            for key, _ in self._keys(user, source):
                await self.cache.incr(key, ttl=self.window * 2)
        except CacheError as exc:
            log.warning("cannot count failed logins", error=repr(exc))
