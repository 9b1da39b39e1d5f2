"""Waiting for something to happen in a test: the condition polled, within a bound,
instead of a sleep long enough on a quiet machine and too short on a busy one."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from app import keys

POLL = 0.01
BOUND = 10.0


async def until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, bound: float = BOUND
) -> None:
    """Return as soon as ``condition()`` holds; fail naming ``what`` after ``bound`` s."""
    deadline = time.monotonic() + bound
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {bound:g}s")
        await asyncio.sleep(POLL)


async def expired(client: TestClient, path: str, repository: str | None = None) -> None:
    """Until the cache entry for ``path`` (in ``repository``, or the app's first remote
    repository) is there and past its time to live: the next request revalidates it."""
    app = client.app
    remotes = [r for r in app[keys.REPOSITORIES] if r.kind == "remote"]
    repo = app[keys.REPOSITORIES].get(repository) if repository else remotes[0]
    entries = app[keys.PROXY].entries

    async def past_ttl() -> bool:
        # Not there yet is waited for too: a fill is recorded once its body is in.
        entry = await entries.get(repo.id, path)
        return entry is not None and not entry.fresh(time.time())

    await until(past_ttl, f"{path} cached and expired")


async def logged(capsys: pytest.CaptureFixture[str], text: str, count: int = 1) -> str:
    """Everything logged (to stdout) until ``text`` has been, ``count`` times: a
    request's access-log line is written once its handler returns, which may be after
    its client has read the last byte."""
    seen: list[str] = []

    def there() -> bool:
        seen.append(capsys.readouterr().out)
        return "".join(seen).count(text) >= count

    await until(there, f"{count} x {text!r} logged")
    return "".join(seen)
