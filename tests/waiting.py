"""Waiting for something to happen in a test: the condition polled, within a bound,
instead of a sleep long enough on a quiet machine and too short on a busy one."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

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
