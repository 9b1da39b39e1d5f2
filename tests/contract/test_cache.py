"""One cache contract, run unchanged on the in-process cache and on Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from app.backends.cache import Cache, CacheError, open_cache
from app.backends.cache.memory import MemoryCache
from app.backends.cache.redis import RedisCache
from tests.waiting import until

TTL = 0.2
# Sleeping PAST_TTL shows that something did not expire; what expires is polled for.
PAST_TTL = 0.35
TTL_BOUND = 5.0


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        cache: Cache = MemoryCache()
        yield cache
        await cache.close()
        return
    url = request.getfixturevalue("redis_server")
    namespace = f"test-{uuid4().hex}:"
    cache = RedisCache(url, namespace=namespace)
    yield cache
    await cache.close()
    client = aioredis.Redis.from_url(url)
    async for key in client.scan_iter(match=namespace + "*"):
        await client.delete(key)
    await client.aclose()


async def test_get_set_delete(cache: Cache) -> None:
    assert await cache.get("k") is None
    await cache.set("k", b"one")
    assert await cache.get("k") == b"one"
    await cache.set("k", b"two")
    assert await cache.get("k") == b"two"
    assert await cache.get("other") is None
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.get("k") is None


async def test_values_expire_after_their_ttl(cache: Cache) -> None:
    await cache.set("short", b"v", ttl=TTL)
    await cache.set("forever", b"v")
    await cache.set("reset", b"v", ttl=TTL)
    await cache.set("reset", b"w")  # a set without ttl drops the old expiry
    assert await cache.get("short") == b"v"

    async def gone() -> bool:
        return await cache.get("short") is None

    await until(gone, "the value expired", bound=TTL_BOUND)
    assert await cache.delete("short") is False
    assert await cache.get("forever") == b"v"
    assert await cache.get("reset") == b"w"


async def test_incr_counts_from_zero(cache: Cache) -> None:
    assert await cache.incr("n") == 1
    assert await cache.incr("n", 5) == 6
    assert await cache.incr("n", -2) == 4
    assert await cache.get("n") == b"4"
    await cache.set("m", b"10")
    assert await cache.incr("m") == 11


async def test_incr_ttl_applies_when_the_counter_is_created(cache: Cache) -> None:
    assert await cache.incr("windowed", ttl=TTL) == 1
    assert await cache.incr("windowed", ttl=TTL) == 2
    assert await cache.incr("kept") == 1
    assert await cache.incr("kept", ttl=TTL) == 2

    async def gone() -> bool:
        return await cache.get("windowed") is None

    await until(gone, "the counter expired", bound=TTL_BOUND)
    assert await cache.incr("windowed", ttl=TTL) == 1
    assert await cache.incr("kept") == 3


async def test_incr_of_a_non_number_is_a_cache_error(cache: Cache) -> None:
    await cache.set("word", b"abc")
    with pytest.raises(CacheError):
        await cache.incr("word")


async def test_lease_is_exclusive_and_only_its_holder_renews_or_releases(cache: Cache) -> None:
    assert await cache.acquire("job", "A", ttl=10) is True
    assert await cache.acquire("job", "B", ttl=10) is False
    assert await cache.acquire("job", "A", ttl=10) is False
    assert await cache.acquire("other-job", "B", ttl=10) is True

    assert await cache.renew("job", "B", ttl=10) is False
    assert await cache.renew("job", "A", ttl=10) is True
    assert await cache.release("job", "B") is False
    assert await cache.acquire("job", "B", ttl=10) is False

    assert await cache.release("job", "A") is True
    assert await cache.release("job", "A") is False
    assert await cache.renew("job", "A", ttl=10) is False
    assert await cache.acquire("job", "B", ttl=10) is True


async def test_lease_expires_after_its_ttl(cache: Cache) -> None:
    assert await cache.acquire("job", "A", ttl=TTL) is True
    assert await cache.acquire("job", "B", ttl=10) is False

    async def taken_by_b() -> bool:
        return await cache.acquire("job", "B", ttl=10)

    await until(taken_by_b, "the lease expired and taken", bound=TTL_BOUND)
    assert await cache.renew("job", "A", ttl=10) is False
    assert await cache.release("job", "A") is False
    assert await cache.release("job", "B") is True


async def test_renew_extends_a_lease(cache: Cache) -> None:
    assert await cache.acquire("job", "A", ttl=TTL) is True
    assert await cache.renew("job", "A", ttl=10) is True
    await asyncio.sleep(PAST_TTL)
    assert await cache.acquire("job", "B", ttl=10) is False
    assert await cache.release("job", "A") is True


async def test_leases_and_values_do_not_share_names(cache: Cache) -> None:
    await cache.set("lease:job", b"value")
    assert await cache.acquire("job", "A", ttl=10) is True
    assert await cache.get("lease:job") == b"value"


async def test_ping(cache: Cache) -> None:
    await cache.ping()


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
