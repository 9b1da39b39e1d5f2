"""Which cache a URL opens, and Redis unreachable (the cache contract covers the rest)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from app.backends.cache import Cache, CacheError, open_cache
from app.backends.cache.memory import MemoryCache
from app.backends.cache.redis import RedisCache


async def test_unreachable_redis_raises_cache_error() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0", namespace=f"test-{uuid4().hex}:")
    try:
        with pytest.raises(CacheError):
            await cache.ping()
        with pytest.raises(CacheError):
            await cache.get("k")
    finally:
        await cache.close()


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", MemoryCache),
        ("redis://127.0.0.1:6379/0", RedisCache),
        ("rediss://cache.example:6380/1", RedisCache),
    ],
)
async def test_open_cache_picks_the_class_by_url(url: str, kind: type) -> None:
    cache = open_cache(url)  # connects lazily: no server needed
    try:
        assert type(cache) is kind
        assert isinstance(cache, Cache)
    finally:
        await cache.close()
