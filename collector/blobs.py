"""Orphaned blobs: found in batches, marked, their objects deleted, their rows dropped.

The order, for each batch of up to ``batch`` blobs in digest order:

1. the orphans (live, untouched since the grace cutoff, referenced by nothing) are
   locked, then marked "deleting" by a second look that sees every reference a
   writer committed while it held one of them (see ``MetadataStore.mark_orphans``
   and ``hold_blobs``). A writer after the mark finds the blob marked and writes
   no reference: the client is told to push it again;
2. the objects are deleted, but only within ``COLLECTOR_DEADLINE`` of the mark: an
   ingest takes back a mark twice that old, assuming its collector died;
3. the rows of the deleted objects go, with the rows that only name them (links),
   if still marked as this run marked them. A row something references after all
   is kept as "missing" (its object is gone; the next ingest writes it again) and
   reported; the batch and the run go on.

A failure at 2 leaves the row marked; the next run marks it again, looks once more
for references (a marked blob that is referenced is taken back, not deleted: rows
an older version left under a late reference), and finishes it. So a row never
points at a missing object that anyone may read: a "deleting" or "missing" row is
invisible to readers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from app.backends.metadata import MetadataStore
from app.backends.metadata.store import BlobRow
from app.backends.storage import BlobStorage
from app.cas import COLLECTOR_DEADLINE
from app.layout import blob_key
from collector.report import Report

Renew = Callable[[], Awaitable[None]]


class ReferencedWhileMarked(RuntimeError):
    """Reported, not raised: a blob marked for deletion turned out to be referenced."""

    def __init__(self, digest: str, present: bool) -> None:
        what = "kept live" if present else "its object is gone; kept as missing until pushed again"
        super().__init__(f"{digest} is referenced although it was marked: {what}")


class BlobSweep:
    def __init__(
        self,
        metadata: MetadataStore,
        storage: BlobStorage,
        report: Report,
        renew: Renew,
        batch: int,
    ) -> None:
        self.metadata = metadata
        self.storage = storage
        self.report = report
        self.renew = renew
        self.batch = batch

    async def leftovers(self, references: tuple[str, ...], unlink: tuple[str, ...]) -> None:
        """Finish blobs an earlier run marked but did not delete."""
        after = ""
        while True:
            now = time.time()
            marked = await self.metadata.remark_blobs(after, self.batch, now)
            if not marked:
                return
            after = marked[-1].digest
            referenced = await self.metadata.referenced(marked, references)
            for blob in (b for b in marked if b.digest in referenced):
                await self._take_back(blob)
            await self._delete([b for b in marked if b.digest not in referenced], now, unlink)
            await self.renew()

    async def _take_back(self, blob: BlobRow) -> None:
        """A marked blob something references: live again if its object is still
        there, else "missing" until an ingest writes it again."""
        present = await self.storage.stat(blob_key(blob.digest)) is not None
        await self.metadata.unmark_blob(blob, "live" if present else "missing")
        self.report.error("blobs", ReferencedWhileMarked(blob.digest, present))

    async def orphans(
        self, cutoff: float, references: tuple[str, ...], unlink: tuple[str, ...]
    ) -> None:
        after = ""
        while True:
            now = time.time()
            marked, upper = await self.metadata.mark_orphans(
                cutoff, references, after, self.batch, now
            )
            await self._delete(marked, now, unlink)
            if upper is None:
                return
            after = upper
            await self.renew()

    async def count_orphans(self, cutoff: float, references: tuple[str, ...]) -> None:
        """The dry run: what :meth:`orphans` would delete, touching nothing."""
        after = ""
        while True:
            rows = await self.metadata.orphaned_blobs(cutoff, references, after, self.batch)
            self.report.add("blobs", len(rows), sum(r.size for r in rows))
            if len(rows) < self.batch:
                return
            after = rows[-1].digest

    async def _delete(
        self, marked: list[BlobRow], marked_at: float, unlink: tuple[str, ...]
    ) -> None:
        if not marked:
            return
        if time.time() - marked_at > COLLECTOR_DEADLINE:
            return  # too late to be sure no ingest took them back: the next run re-marks
        failed = await self.storage.delete_many([blob_key(b.digest) for b in marked])
        for error in failed.values():
            self.report.error("blobs", error)
        deleted = [b for b in marked if blob_key(b.digest) not in failed]
        kept = await self.metadata.drop_blobs(deleted, unlink)
        for blob in kept:
            self.report.error("blobs", ReferencedWhileMarked(blob.digest, present=False))
        dropped = [b for b in deleted if b not in kept]
        self.report.add("blobs", len(dropped), sum(b.size for b in dropped))
