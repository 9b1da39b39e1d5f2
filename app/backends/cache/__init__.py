"""Cache: in-process for one process, Redis for many replicas."""

from __future__ import annotations

from app.backends.cache.base import Cache, CacheError


def open_cache(url: str) -> Cache:
    if url.startswith("memory://"):
        from app.backends.cache.memory import MemoryCache

        return MemoryCache()
    from app.backends.cache.redis import RedisCache

    return RedisCache(url)


__all__ = ["Cache", "CacheError", "open_cache"]
