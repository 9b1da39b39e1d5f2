"""Redis cache (``redis.asyncio``) shared by every replica.

Leases are ``SET name token NX PX ttl``; renew and release run as Lua scripts so
that only the holder's token can extend or drop a lease.
"""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.backends.cache.base import CacheError

_ERRORS = (RedisError, OSError)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
_INCR = """
local created = redis.call('exists', KEYS[1]) == 0
local v = redis.call('incrby', KEYS[1], ARGV[1])
if created and tonumber(ARGV[2]) > 0 then
  redis.call('pexpire', KEYS[1], ARGV[2])
end
return v
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisCache:
    def __init__(self, url: str, namespace: str = "artifactapi:") -> None:
        self._client = aioredis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._ns = namespace
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._incr = self._client.register_script(_INCR)

    def _key(self, key: str) -> str:
        # Values and leases live apart, as in MemoryCache: a value named "lease:x"
        # must not be lease "x".
        return self._ns + "value:" + key

    def _lease(self, name: str) -> str:
        return self._ns + "lease:" + name

    async def get(self, key: str) -> bytes | None:
        try:
            # Without decode_responses the client returns bytes.
            return cast("bytes | None", await self._client.get(self._key(key)))
        except _ERRORS as exc:
            raise CacheError(str(exc)) from exc

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        try:
            await self._client.set(self._key(key), value, px=None if ttl is None else _ms(ttl))
        except _ERRORS as exc:
            raise CacheError(str(exc)) from exc

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self._client.delete(self._key(key)))
        except _ERRORS as exc:
            raise CacheError(str(exc)) from exc

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        try:
            ttl_ms = 0 if ttl is None else _ms(ttl)
            return int(await self._incr(keys=[self._key(key)], args=[amount, ttl_ms]))
        except _ERRORS as exc:
            raise CacheError(str(exc)) from exc

    async def acquire(self, name: str, token: str, ttl: float) -> bool:
        try:
            return bool(await self._client.set(self._lease(name), token, nx=True, px=_ms(ttl)))
        except _ERRORS as exc:
            raise CacheError(str(exc)) from exc

    async def renew(self, name: str, token: str, ttl: float) -> bool:
        try:
            return bool(await self._renew(keys=[self._lease(name)], args=[token, _ms(ttl)]))
        except _ERRORS as exc:
            raise CacheError(str(exc)) from exc

    async def release(self, name: str, token: str) -> bool:
        try:
            return bool(await self._release(keys=[self._lease(name)], args=[token]))
        except _ERRORS as exc:
            raise CacheError(str(exc)) from exc

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except _ERRORS as exc:
            raise CacheError(f"Redis unreachable: {exc}") from exc

    async def close(self) -> None:
        await self._client.aclose()
