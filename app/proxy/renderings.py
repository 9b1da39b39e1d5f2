"""What formats made of cached documents (a rewritten packument, a rendered project
page), remembered in memory by the document's digest and whatever else the rendering
depends on (the form, the base URL). A digest names one body, so a rendering never
goes stale; it is only forgotten, least recently used first, within a byte budget.

Without it every hit would parse and re-render its document: tens of milliseconds of
event loop for a large packument or project page, on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

RENDERED_BYTES = 64 * 1024 * 1024  # per process
BIG = 1024 * 1024  # a document larger than this is rendered off the event loop


async def sized(work: Callable[[bytes], T], document: bytes) -> T:
    """``work(document)``, in a thread when the document is large: it still takes the
    GIL, but the event loop gets its turns instead of stalling every other request."""
    return await asyncio.to_thread(work, document) if len(document) > BIG else work(document)


@dataclass(frozen=True, slots=True)
class Rendering:
    body: bytes
    etag: str  # of the body, made with it rather than on every request


def rendering(body: bytes) -> Rendering:
    return Rendering(body, hashlib.sha256(body).hexdigest()[:32])


class Renderings:
    def __init__(self, budget: int = RENDERED_BYTES) -> None:
        self.budget = budget
        self.size = 0
        self._kept: OrderedDict[Hashable, Rendering] = OrderedDict()

    async def rendered(
        self, key: Hashable, read: Callable[[], Awaitable[bytes]], render: Callable[[bytes], bytes]
    ) -> Rendering:
        """The rendering remembered under ``key``, else ``render`` of the document that
        ``read`` returns (see :func:`sized`), remembered."""
        kept = self.get(key)
        if kept is None:
            kept = self.put(key, await sized(lambda raw: rendering(render(raw)), await read()))
        return kept

    def get(self, key: Hashable) -> Rendering | None:
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
        return kept

    def put(self, key: Hashable, kept: Rendering) -> Rendering:
        """Remember ``kept`` (unless it alone is over a quarter of the budget)."""
        if len(kept.body) > self.budget // 4 or key in self._kept:
            return kept
        self._kept[key] = kept
        self.size += len(kept.body)
        while self.size > self.budget:
            _, dropped = self._kept.popitem(last=False)
            self.size -= len(dropped.body)
        return kept
