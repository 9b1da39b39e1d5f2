"""The content-addressed store: the one write path into storage.

Every byte the service keeps goes through here (the keys come from
:mod:`app.layout`): :meth:`ContentStore.ingest` stores a stream as a blob under
``blobs/`` (by way of ``tmp/`` when its digest is not known up front), and a chunked
upload stages its parts under ``uploads/`` (:meth:`~ContentStore.stage`), then turns
them into one blob (:meth:`~ContentStore.commit`) or drops them. Formats keep their
sessions; the bytes are written, hashed and moved here.

A blob is written to storage before its row is added, so a row never points at
a missing object; an object without a row is garbage once older than the
collector's grace period. Every use of a stored blob touches its row, which keeps
the collector off it for the grace period; a blob the collector has marked
"deleting" is waited for and written anew (see ``collector``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from app import layout
from app.backends.metadata import MetadataStore
from app.backends.metadata.store import BlobRow
from app.backends.storage import BlobStorage
from app.errors import Unavailable
from pipelines import Digest, Digests, drain, hashed, limited, teed, verified

# A collector acts on a blob it marked "deleting" only this soon after marking it; an
# ingest that finds a mark older than twice that takes the blob back (the collector
# died). In between, the ingest polls until the collector has finished.
COLLECTOR_DEADLINE = 150.0
TAKEOVER_AFTER = 2 * COLLECTOR_DEADLINE
DELETION_POLL = 0.1
# How long a request waits for a collector deleting the blob it writes or names.
DELETION_WAIT = 30.0


class BlobBeingCollected(Unavailable):
    """A collector is deleting this blob (for longer than a request waits, or it
    marked the blob while this request wrote it): the client should try again."""

    def __init__(self, digest: str) -> None:
        super().__init__(
            f"blob {digest} is being collected; try again", headers={"Retry-After": "1"}
        )


@dataclass(frozen=True, slots=True)
class Blob:
    digest: str  # "sha256:<hex>"
    size: int
    # Other digests computed during ingest ("sha512:…", "md5:…"), by algorithm.
    digests: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Part:
    """A chunk of an upload staged at ``storage_key``, hashed as it was written."""

    offset: int  # where it starts in the upload
    size: int
    storage_key: str
    sha256: str  # hex


@dataclass(frozen=True, slots=True)
class Staged:
    """An object found under ``uploads/``: which upload it was staged for, if any
    can be told from its key."""

    upload: str | None
    storage_key: str
    size: int


class ContentStore:
    def __init__(self, storage: BlobStorage, metadata: MetadataStore) -> None:
        self.storage = storage
        self.metadata = metadata

    async def ingest(
        self,
        stream: AsyncIterable[bytes],
        expected: Digest | None = None,
        *,
        max_size: int | None = None,
        algorithms: tuple[str, ...] = (),
        tap: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> Blob:
        """Store a stream once, by its sha256, and return the blob.

        With ``expected``, a mismatch raises :class:`pipelines.DigestMismatch` and
        nothing becomes visible; with ``max_size``, an oversized stream raises
        :class:`pipelines.TooLarge` likewise. Content already stored is verified
        and dropped, never written twice. ``tap`` sees every verified chunk as it
        goes by; if it fails (its client left), the blob is stored all the same.
        """
        extra = (expected.algorithm,) if expected is not None else ()
        digests = Digests(*extra, *algorithms)
        body: AsyncIterable[bytes] = stream
        if max_size is not None:
            body = limited(body, max_size)
        body = verified(hashed(body, digests), digests, expected)
        if tap is not None:  # a client served while the blob is stored (a cache fill)
            body = teed(body, tap)

        if expected is not None and expected.algorithm == "sha256":
            if await self._present(str(expected)):
                await drain(body)
                return self._blob(digests)
            # The digest is known up front: write straight to the content address.
            # A failed verification aborts the put, so no wrong bytes land there.
            await self.storage.put(layout.blob_key(expected), body)
            return await self._record(digests)

        temp = layout.temp_key()
        await self.storage.put(temp, body)
        try:
            digest = str(digests.digest())
            if await self._present(digest):
                return self._blob(digests)
            await self.storage.move(temp, layout.blob_key(digest))
            return await self._record(digests)
        finally:
            await self.storage.delete(temp)

    async def stage(
        self, upload: str, offset: int, body: AsyncIterable[bytes], *, max_size: int
    ) -> Part:
        """Store ``body`` as the part of ``upload`` starting at ``offset``, hashing it as
        it goes; :class:`pipelines.TooLarge` (nothing stored) if the upload would grow
        past ``max_size``. The part is the caller's until committed or dropped."""
        key = layout.part_key(upload, offset)
        digests = Digests()
        size = await self.storage.put(key, hashed(limited(body, max_size - offset), digests))
        return Part(offset, size, key, digests.hexdigest())

    async def commit(
        self,
        parts: Sequence[Part],
        trailing: AsyncIterable[bytes] | None,
        expected: Digest,
        *,
        max_size: int | None = None,
    ) -> Blob:
        """The blob made of ``parts`` and then ``trailing`` (if any), verified against
        ``expected`` as :meth:`ingest` does. A single part that already hashes to it is
        adopted without being read again (a rename on disk, a server-side copy on S3),
        and is gone afterwards; otherwise everything streams through :meth:`ingest`
        once and the parts stay until dropped."""
        if trailing is None and len(parts) == 1 and expected == Digest("sha256", parts[0].sha256):
            return await self._adopt(parts[0], expected)
        return await self.ingest(self._joined(parts, trailing), expected, max_size=max_size)

    async def _joined(
        self, parts: Sequence[Part], trailing: AsyncIterable[bytes] | None
    ) -> AsyncIterator[bytes]:
        for part in parts:
            async for chunk in self.storage.get(part.storage_key):
                yield chunk
        if trailing is not None:
            async for chunk in trailing:
                yield chunk

    async def _adopt(self, part: Part, digest: Digest) -> Blob:
        if not await self._present(str(digest)):
            await self.storage.move(part.storage_key, layout.blob_key(digest))
            await self._add(str(digest), part.size)
        else:
            await self.storage.delete(part.storage_key)
        return Blob(str(digest), part.size, {"sha256": str(digest)})

    async def drop(self, staged: Iterable[Part | Staged]) -> None:
        """Delete staged objects (absent ones are fine), in as few calls as storage allows."""
        keys = [item.storage_key for item in staged]
        if not keys:
            return
        failed = await self.storage.delete_many(keys)
        if failed:
            raise next(iter(failed.values()))

    async def staged(self, older_than: timedelta) -> AsyncIterator[Staged]:
        """Staged objects last written more than ``older_than`` ago, for a format to
        drop those whose upload it no longer knows."""
        async for info in self.storage.list_stale(layout.UPLOADS, older_than):
            yield Staged(layout.upload_of(info.key), info.key, info.size)

    async def _present(self, digest: str) -> bool:
        """True if the blob is stored, and now safe from collection for a grace period;
        False if it must be written: absent, lost underneath its row (healed by writing
        it again), or deleted by a collector this waited for."""
        row = await self._claimed(digest)
        if row is None:
            return False
        return await self.storage.stat(layout.blob_key(digest)) is not None

    async def claim(self, digest: str) -> Blob | None:
        """The blob, safe from collection for a grace period, before a new reference
        to it is written (a mount, a manifest naming it); None if it is not stored."""
        row = await self._claimed(digest)
        return Blob(row.digest, row.size) if row is not None else None

    async def _claimed(self, digest: str) -> BlobRow | None:
        """The live row, touched; None if there is none (absent, "missing", or deleted
        by the collector this waited for)."""
        row = await self.metadata.touch_blob(digest)
        waited_until = time.monotonic() + DELETION_WAIT
        while row is not None and row.state == "deleting":
            if time.monotonic() > waited_until:
                # A collector that keeps failing to delete it (storage down) re-marks
                # it every run: never hold a request for that long.
                raise BlobBeingCollected(digest)
            row = await self._outlast_collection(row)
        return row if row is not None and row.state == "live" else None

    async def _outlast_collection(self, row: BlobRow) -> BlobRow | None:
        """Wait for the collector that marked ``row`` to finish deleting it; take the
        row back if the mark is older than any collector may act on (it died)."""
        marked_at = row.marked_at or 0.0
        if time.time() - marked_at > TAKEOVER_AFTER:
            await self.metadata.reclaim_blob(row.digest, marked_at)
        else:
            await asyncio.sleep(DELETION_POLL)
        return await self.metadata.touch_blob(row.digest)

    async def _record(self, digests: Digests) -> Blob:
        blob = self._blob(digests)
        await self._add(blob.digest, blob.size)
        return blob

    async def _add(self, digest: str, size: int) -> None:
        if not await self.metadata.add_blob(digest, size):
            # Marked between our check and now: only possible with a grace shorter
            # than this ingest. The client's retry writes it anew.
            raise BlobBeingCollected(digest)
        # Another ingest of the same bytes may have recorded them first, and a
        # collector marked, deleted and dropped them, all after this ingest wrote its
        # object: a row recorded now would point at nothing. Looked for after the row
        # is live, so any later deletion must mark it first (and no reference can be
        # written to it then). Only a grace shorter than an ingest gets here.
        if await self.storage.stat(layout.blob_key(digest)) is None:
            await self.metadata.lose_blob(digest)
            raise BlobBeingCollected(digest)

    @staticmethod
    def _blob(digests: Digests) -> Blob:
        return Blob(
            digest=str(digests.digest()),
            size=digests.size,
            digests={a: str(digests.digest(a)) for a in digests.algorithms},
        )

    async def stat(self, digest: str) -> Blob | None:
        """The blob if stored; one a collector is deleting is already gone."""
        row = await self.metadata.get_blob(digest)
        return Blob(row.digest, row.size) if row and row.state == "live" else None

    def open(self, digest: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.storage.get(layout.blob_key(digest), offset, length)

    def local_path(self, digest: str) -> Path | None:
        return self.storage.local_path(layout.blob_key(digest))

    async def download_url(self, digest: str, content_type: str) -> str | None:
        return await self.storage.download_url(layout.blob_key(digest), content_type)
