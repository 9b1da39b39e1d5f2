"""What formats made of cached documents (a rewritten packument, a rendered project
page), remembered in memory by the document's digest and whatever else the rendering
depends on (the form, the base URL). A digest names one body, so a rendering never
goes stale; it is only forgotten, least recently used first, within a byte budget.

Without it every hit would parse and re-render its document: tens of milliseconds of
event loop for a large packument or project page, on every request.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

RENDERED_BYTES = 64 * 1024 * 1024  # per process
BIG = 1024 * 1024  # a document larger than this is rendered off the event loop


class Renderings:
    def __init__(self, budget: int = RENDERED_BYTES) -> None:
        self.budget = budget
        self.size = 0
        self._kept: OrderedDict[Hashable, bytes] = OrderedDict()

    async def rendered(
        self, key: Hashable, read: Callable[[], Awaitable[bytes]], render: Callable[[bytes], bytes]
    ) -> bytes:
        """The rendering remembered under ``key``, else ``render`` of the document that
        ``read`` returns, remembered. A large document is rendered in a thread: it still
        takes the GIL, but the event loop gets its turns instead of stalling."""
        body = self.get(key)
        if body is None:
            raw = await read()
            body = self.put(
                key, await asyncio.to_thread(render, raw) if len(raw) > BIG else render(raw)
            )
        return body

    def get(self, key: Hashable) -> bytes | None:
        body = self._kept.get(key)
        if body is not None:
            self._kept.move_to_end(key)
        return body

    def put(self, key: Hashable, body: bytes) -> bytes:
        """Remember ``body`` (unless it alone is over a quarter of the budget)."""
        if len(body) > self.budget // 4 or key in self._kept:
            return body
        self._kept[key] = body
        self.size += len(body)
        while self.size > self.budget:
            _, dropped = self._kept.popitem(last=False)
            self.size -= len(dropped)
        return body
