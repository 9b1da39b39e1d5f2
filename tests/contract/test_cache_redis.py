"""The cache contract on Redis, the scale-out shape's cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from app.backends.cache import Cache
from app.backends.cache.redis import RedisCache
from tests.contract.cache_suite import CacheContract


class TestRedis(CacheContract):
    @pytest.fixture
    async def cache(self, redis_server: str) -> AsyncIterator[Cache]:
        namespace = f"test-{uuid4().hex}:"
        cache = RedisCache(redis_server, namespace=namespace)
        yield cache
        await cache.close()
        client = aioredis.Redis.from_url(redis_server)
        async for key in client.scan_iter(match=namespace + "*"):
            await client.delete(key)
        await client.aclose()
