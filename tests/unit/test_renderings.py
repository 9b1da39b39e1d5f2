"""The memo of rendered documents: keyed, bounded, made once."""

import asyncio

from app.proxy.renderings import Renderings, rendering


def test_least_recently_used_go_first_within_the_budget() -> None:
    memo = Renderings(budget=100)
    memo.put("a", rendering(b"a" * 20))
    memo.put("b", rendering(b"b" * 20))
    kept = memo.get("a")
    assert kept is not None and kept.body == b"a" * 20  # a is now the most recent
    memo.put("c", rendering(b"c" * 20))
    memo.put("d", rendering(b"d" * 20))
    memo.put("e", rendering(b"e" * 20))  # 100 bytes: all fit
    assert memo.size == 100
    memo.put("f", rendering(b"f" * 20))  # b, the least recently used, goes
    assert memo.get("b") is None and memo.get("a") is not None and memo.size == 100
    huge = rendering(b"x" * 26)
    assert memo.put("huge", huge) is huge  # over a quarter: handed back, not kept
    assert memo.get("huge") is None and memo.size == 100


def test_a_rendering_is_made_once_and_big_documents_off_the_loop() -> None:
    memo = Renderings()
    reads: list[int] = []
    threads: list[bool] = []

    async def read() -> bytes:
        reads.append(1)
        return b"x" * (2 * 1024 * 1024)

    def render(raw: bytes) -> bytes:
        threads.append(_off_loop())
        return raw[:3].upper()

    async def both() -> tuple[bytes, bytes]:
        first = await memo.rendered(("k", 1), read, render)
        second = await memo.rendered(("k", 1), read, render)
        assert first.etag == second.etag == rendering(b"XXX").etag
        return first.body, second.body

    assert asyncio.run(both()) == (b"XXX", b"XXX")
    assert reads == [1] and threads == [True]  # read and rendered once, in a thread


def _off_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False
