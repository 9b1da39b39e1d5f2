"""What a format asks the remote core for (:class:`Fetch`) and what it answers: plain
data, no HTTP responses (the edge, :mod:`app.proxy.edge`, makes those).

    Cached     a stored copy: the CAS blob of an entry (HIT, or STALE when the upstream
               failed and the copy is past its time), openable by anyone
    Missing    the upstream said 404/410, now (MISS) or within negative_ttl (HIT)
    Fill       a MISS on its way into the CAS, readable as it arrives (app.proxy.fill)
    Document   a whole metadata document for a format to parse (PyPI pages, packuments)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.cas import Blob, ContentStore
from app.proxy.entries import Entry
from pipelines import Digest

Kind = Literal["artifact", "metadata"]
CacheStatus = Literal["HIT", "MISS", "STALE"]  # the X-Cache an answer carries


@dataclass(frozen=True, slots=True)
class Fetch:
    """What a format makes of a request to a remote repository."""

    path: str  # the cache key: what the client asked for, normalised
    upstream_path: str  # what to ask the upstream for, percent-encoded
    kind: Kind  # artifact: cached forever; metadata: for the repository's metadata_ttl
    expected: Digest | None = None  # the checksum the format publishes for it
    accept: str | None = None  # the Accept header to send upstream
    keep_headers: tuple[str, ...] = ()  # upstream headers to remember and replay
    content_type: str | None = None  # instead of the upstream's
    headers: tuple[tuple[str, str], ...] = ()  # sent with every answer (a format's own)


@dataclass(frozen=True, slots=True)
class Cached:
    """A stored copy of what the upstream published for a path."""

    how: CacheStatus
    entry: Entry
    blob: Blob
    cas: ContentStore = field(repr=False)
    local_path: Path | None = None  # the blob's file, when the storage is a filesystem
    data: bytes | None = None  # the whole blob, when it is small and already in memory

    def open(self, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes (:class:`app.backends.storage.ObjectNotFound` if collected)."""
        if self.data is not None and offset == 0 and length in (None, len(self.data)):
            return _once(self.data)
        return self.cas.open(self.blob.digest, offset, length)

    async def read(self) -> bytes:
        """The whole blob: for documents, never for artifacts of any size."""
        if self.data is not None:
            return self.data
        return b"".join([chunk async for chunk in self.open()])


@dataclass(frozen=True, slots=True)
class Missing:
    """The upstream has nothing at this path (a 404 or 410, remembered for negative_ttl)."""

    path: str
    how: CacheStatus


@dataclass(frozen=True, slots=True)
class Document:
    """A metadata document, whole. Its body is read only if asked for: a format that
    remembers its rendering by ``digest`` (see :mod:`app.proxy.renderings`) need not."""

    digest: str  # the CAS blob: one body, so a rendering of it never goes stale
    content_type: str
    how: CacheStatus
    read: Callable[[], Awaitable[bytes]]  # the body, as the upstream published it


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
