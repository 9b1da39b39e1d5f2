"""Orphaned blobs: found in batches, marked, their objects deleted, their rows dropped.

The order, for each batch of up to ``batch`` blobs in digest order:

1. one conditional UPDATE marks "deleting" the blobs that are still orphans (live,
   untouched since the grace cutoff, referenced by nothing). A writer that touched a
   blob first keeps it; a writer that comes after the mark sees "deleting" and waits;
2. the objects are deleted, but only within ``COLLECTOR_DEADLINE`` of the mark: an
   ingest takes back a mark twice that old, assuming its collector died;
3. the rows of the deleted objects go, with the rows that only name them (links),
   if still marked as this run marked them.

A failure at 2 leaves the row marked; the next run marks it again and finishes it.
So a row never points at a missing object that anyone may read: a "deleting" row
is already invisible to readers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from app.backends.metadata import MetadataStore
from app.backends.metadata.store import BlobRow
from app.backends.storage import BlobStorage
from app.cas import COLLECTOR_DEADLINE, blob_key
from collector.report import Report

Renew = Callable[[], Awaitable[None]]


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

    async def leftovers(self, unlink: tuple[str, ...]) -> None:
        """Finish blobs an earlier run marked but did not delete."""
        after = ""
        while True:
            now = time.time()
            marked = await self.metadata.remark_blobs(after, self.batch, now)
            if not marked:
                return
            await self._delete(marked, now, unlink)
            after = marked[-1].digest
            await self.renew()

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
        await self.metadata.drop_blobs(deleted, unlink)
        self.report.add("blobs", len(deleted), sum(b.size for b in deleted))
