"""The cache contract on the in-process cache, the embedded shape's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.backends.cache import Cache
from app.backends.cache.memory import MemoryCache
from tests.contract.cache_suite import CacheContract


class TestMemory(CacheContract):
    @pytest.fixture
    async def cache(self) -> AsyncIterator[Cache]:
        cache = MemoryCache()
        yield cache
        await cache.close()
