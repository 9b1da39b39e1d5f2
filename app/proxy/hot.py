"""Remembered hits: the fresh entries this process answered lately, so the next hit on
one needs no database query, and for a small blob no read either.

A hint, safe to lose, and never trusted for long: a local file is looked for on every
hit, except that a small blob's bytes are kept with its entry (within ``HOT_BODIES``)
and its blob looked for only every ``HOT_RECHECK`` seconds (a file on disk, a row for
a blob in object storage), so a collected blob's bytes may still answer that long; they
are the right bytes. A request path a format has mapped to an entry is remembered too
(:meth:`RememberedEntries.alias`), so the next plain request for it skips the format.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs
from multidict import CIMultiDict

from app.cas import Blob, ContentStore
from app.http import SMALL_BODY, blob_headers, read_small
from app.proxy.entries import Entry

HOT_ENTRIES = 10_000
HOT_BODIES = 32 * 1024 * 1024  # bytes of small blobs a process keeps in memory
HOT_RECHECK = 1.0  # seconds a remembered small blob is trusted before it is looked for


@dataclass(slots=True)
class Remembered:
    """A fresh entry this process answered lately, with its blob as last seen."""

    entry: Entry
    blob: Blob
    path: Path | None  # None: the blob is in object storage, and ``body`` stands for it
    checked: float  # time.monotonic() when the blob was last seen
    body: bytes | None = None  # the whole blob, when it is small
    headers: CIMultiDict[str] | None = None  # a plain HIT's, made once


class RememberedEntries:
    def __init__(self, cas: ContentStore) -> None:
        self.cas = cas
        self._entries: OrderedDict[str, Remembered] = OrderedDict()
        self._bytes = 0
        # (repository id, request path as the client wrote it) → key of an entry.
        self._aliases: OrderedDict[tuple[int, str], str] = OrderedDict()

    def get(self, key: str) -> Remembered | None:
        return self._entries.get(key)

    def remember(
        self, key: str, entry: Entry, blob: Blob, path: Path | None, body: bytes | None = None
    ) -> None:
        """Remember a fresh entry: its local file, or (a small blob in object storage) its
        bytes, which then stand for it."""
        self.forget(key)
        hot = Remembered(entry, blob, path, time.monotonic())
        if body is not None:
            self._keep(hot, body)
        if hot.path is None and hot.body is None:
            return  # nothing to answer from without the database
        self._entries[key] = hot
        while len(self._entries) > HOT_ENTRIES:
            self.forget(next(iter(self._entries)))

    def forget(self, key: str) -> None:
        hot = self._entries.pop(key, None)
        if hot is not None and hot.body is not None:
            self._bytes -= len(hot.body)

    def alias(self, repository_id: int, requested: str, key: str) -> None:
        """``requested``, as the client wrote it, is the entry ``key``: a format said so."""
        self._aliases[(repository_id, requested)] = key
        self._aliases.move_to_end((repository_id, requested))
        while len(self._aliases) > HOT_ENTRIES:
            self._aliases.popitem(last=False)

    def aliased(self, repository_id: int) -> list[str]:
        return [requested for (rid, requested) in self._aliases if rid == repository_id]

    def for_plain_request(
        self, repository_id: int, requested: str, headers: Mapping[str, str]
    ) -> Remembered | None:
        """The entry a plain request (no Range nor conditions) for an aliased path may be
        answered with from memory, as it is; None for anything else."""
        key = self._aliases.get((repository_id, requested))
        if key is None:
            return None
        hot = self._entries.get(key)
        if hot is None or hot.headers is None:
            return None
        # istr names: a case-insensitive lookup without folding the name each time.
        if hdrs.RANGE in headers or hdrs.IF_NONE_MATCH in headers or hdrs.IF_RANGE in headers:
            return None
        return hot if self.still_good(key, hot) else None

    def still_good(self, key: str, hot: Remembered) -> bool:
        """Whether a remembered entry may answer now: fresh, and its blob still stored
        (as far as can be told without the database: see :meth:`still_stored`)."""
        if not hot.entry.fresh(time.time()):
            self.forget(key)
            return False
        now = time.monotonic()
        if hot.path is None:
            if now - hot.checked > HOT_RECHECK:
                return False
        elif hot.body is None or now - hot.checked > HOT_RECHECK:
            # One stat of a cached dentry: cheaper than the thread hop that would avoid it.
            if not hot.path.is_file():
                self.forget(key)
                return False
            hot.checked = now
            if hot.body is None and 0 < hot.blob.size <= SMALL_BODY:
                body = read_small(hot.path, 0, hot.blob.size)
                if body is None:  # gone since the stat
                    self.forget(key)
                    return False
                self._keep(hot, body)
        self._entries.move_to_end(key)
        return True

    async def still_stored(self, key: str, hot: Remembered) -> bool:
        """:meth:`still_good`, with the database asked where it must be (a blob in object
        storage whose look is due)."""
        if self.still_good(key, hot):
            return True
        if hot.path is not None or self._entries.get(key) is not hot:
            return False
        if await self.cas.stat(hot.blob.digest) is None:
            self.forget(key)
            return False
        hot.checked = time.monotonic()
        self._entries.move_to_end(key)
        return True

    def _keep(self, hot: Remembered, body: bytes) -> None:
        if len(body) != hot.blob.size or self._bytes + len(body) > HOT_BODIES:
            return
        hot.body = body
        self._bytes += len(body)
        extra = {**hot.entry.headers, "X-Cache": "HIT"}
        # A CIMultiDict, which a response takes as it is faster than a dict it converts.
        hot.headers = CIMultiDict(blob_headers(hot.blob.digest, hot.entry.content_type, extra))
