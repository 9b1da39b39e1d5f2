"""The cache contract: what every cache backend must do (values and leases).

One suite for every backend: a backend's factory file (``test_cache_<backend>.py``)
subclasses :class:`CacheContract` and provides the ``cache`` fixture, and nothing
else.
"""

from __future__ import annotations

import asyncio

import pytest

from app.backends.cache import Cache, CacheError
from tests.waiting import until

TTL = 0.2
# Sleeping PAST_TTL shows that something did not expire; what expires is polled for.
PAST_TTL = 0.35
TTL_BOUND = 5.0


class CacheContract:
    @pytest.fixture
    def cache(self) -> Cache:
        raise NotImplementedError("a backend's factory provides cache")

    async def test_get_set_delete(self, cache: Cache) -> None:
        assert await cache.get("k") is None
        await cache.set("k", b"one")
        assert await cache.get("k") == b"one"
        await cache.set("k", b"two")
        assert await cache.get("k") == b"two"
        assert await cache.get("other") is None
        assert await cache.delete("k") is True
        assert await cache.delete("k") is False
        assert await cache.get("k") is None

    async def test_values_expire_after_their_ttl(self, cache: Cache) -> None:
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

    async def test_incr_counts_from_zero(self, cache: Cache) -> None:
        assert await cache.incr("n") == 1
        assert await cache.incr("n", 5) == 6
        assert await cache.incr("n", -2) == 4
        assert await cache.get("n") == b"4"
        await cache.set("m", b"10")
        assert await cache.incr("m") == 11

    async def test_incr_ttl_applies_when_the_counter_is_created(self, cache: Cache) -> None:
        assert await cache.incr("windowed", ttl=TTL) == 1
        assert await cache.incr("windowed", ttl=TTL) == 2
        assert await cache.incr("kept") == 1
        assert await cache.incr("kept", ttl=TTL) == 2

        async def gone() -> bool:
            return await cache.get("windowed") is None

        await until(gone, "the counter expired", bound=TTL_BOUND)
        assert await cache.incr("windowed", ttl=TTL) == 1
        assert await cache.incr("kept") == 3

    async def test_incr_of_a_non_number_is_a_cache_error(self, cache: Cache) -> None:
        await cache.set("word", b"abc")
        with pytest.raises(CacheError):
            await cache.incr("word")

    async def test_lease_is_exclusive_and_only_its_holder_renews_or_releases(
        self, cache: Cache
    ) -> None:
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

    async def test_lease_expires_after_its_ttl(self, cache: Cache) -> None:
        assert await cache.acquire("job", "A", ttl=TTL) is True
        assert await cache.acquire("job", "B", ttl=10) is False

        async def taken_by_b() -> bool:
            return await cache.acquire("job", "B", ttl=10)

        await until(taken_by_b, "the lease expired and taken", bound=TTL_BOUND)
        assert await cache.renew("job", "A", ttl=10) is False
        assert await cache.release("job", "A") is False
        assert await cache.release("job", "B") is True

    async def test_renew_extends_a_lease(self, cache: Cache) -> None:
        assert await cache.acquire("job", "A", ttl=TTL) is True
        assert await cache.renew("job", "A", ttl=10) is True
        await asyncio.sleep(PAST_TTL)
        assert await cache.acquire("job", "B", ttl=10) is False
        assert await cache.release("job", "A") is True

    async def test_leases_and_values_do_not_share_names(self, cache: Cache) -> None:
        await cache.set("lease:job", b"value")
        assert await cache.acquire("job", "A", ttl=10) is True
        assert await cache.get("lease:job") == b"value"

    async def test_ping(self, cache: Cache) -> None:
        await cache.ping()
