"""The OCI format's own garbage, for the collector: abandoned upload sessions with
their staged objects, and untagged manifests where a repository opts in. What keeps
a blob alive is in :mod:`app.formats.oci.records` (``BLOB_REFERENCES``).
"""

from __future__ import annotations

import time
from datetime import timedelta

from app.formats.api import Repository, Sweep
from app.formats.oci.context import LocalOptions
from app.formats.oci.records import OciRecords

BATCH = 500


async def collect(sweep: Sweep) -> None:
    records = OciRecords(sweep.metadata.db)
    try:
        await _abandoned_uploads(sweep, records)
    except Exception as exc:  # the blob sweep still runs
        sweep.failed("uploads", exc)
    for repo in sweep.repositories:
        if isinstance(repo.options, LocalOptions) and repo.options.gc_untagged:
            try:
                await _untagged_manifests(sweep, records, repo)
            except Exception as exc:
                sweep.failed("manifests", exc)


async def _abandoned_uploads(sweep: Sweep, records: OciRecords) -> None:
    """Sessions idle since the cutoff: the row goes first (no replica can append any
    more), then the staged parts. Staged objects whose session is gone (a PATCH that
    died before recording its part) go once they are as old."""
    after = ""
    while True:
        idle = await records.idle_uploads(sweep.upload_cutoff, after, BATCH)
        for upload_id in idle:
            parts = await records.parts(upload_id)
            if not sweep.dry_run and not await records.delete_upload(upload_id):
                continue  # finished or cancelled meanwhile
            if not sweep.dry_run:
                await sweep.cas.drop(parts)
            sweep.freed("uploads", len(parts), sum(part.size for part in parts))
        if len(idle) < BATCH:
            break
        after = idle[-1]
    async for staged in sweep.cas.staged(_age(sweep.upload_cutoff)):
        if staged.upload is not None and await records.get_upload(staged.upload) is not None:
            continue  # a live session's early part: it goes with the session
        if not sweep.dry_run:
            await sweep.cas.drop([staged])
        sweep.freed("uploads", 1, staged.size)


async def _untagged_manifests(sweep: Sweep, records: OciRecords, repo: Repository) -> None:
    """Unreachable manifests of a repository that opted in (``gc_untagged``)."""
    while True:
        if sweep.dry_run:  # one pass: what a run would delete first
            sizes = await records.unreachable_manifests(repo.id, sweep.grace_cutoff)
        else:
            sizes = await records.delete_unreachable_manifests(repo.id, sweep.grace_cutoff)
        sweep.freed("manifests", len(sizes), sum(sizes))
        if sweep.dry_run or not sizes:
            return


def _age(cutoff: float) -> timedelta:
    return timedelta(seconds=max(0.0, time.time() - cutoff))
