"""What the collector needs of the OCI format: what keeps a blob alive, and the
format's own garbage (abandoned upload sessions, untagged manifests).

A blob is live while a manifest of some image name references it through that
name's link (config, layers), or while it holds a manifest's own bytes. Links
alone keep nothing alive: a layer pushed but never named by a manifest is garbage
once the grace period has passed since its last use, as in distribution.
"""

from __future__ import annotations

import time
from datetime import timedelta

from app.backends.metadata.base import Row, SqlDriver, as_list, one_of
from app.formats.base import Sweep
from app.formats.oci.records import OciRecords
from app.repositories import Repository

BLOB_REFERENCES = (
    "EXISTS (SELECT 1 FROM oci_manifests m WHERE m.blob_digest = b.digest)",
    "EXISTS (SELECT 1 FROM oci_blob_links l JOIN oci_manifest_refs r"
    " ON r.repository_id = l.repository_id AND r.name = l.name AND r.ref_digest = l.digest"
    " WHERE l.blob_digest = b.digest)",
)
BLOB_NAMES = ("DELETE FROM oci_blob_links WHERE blob_digest = $1",)

BATCH = 500

# An untagged manifest that no index lists as a child and whose subject (if any) is
# gone. Deleting one can free its children and referrers: the sweep repeats.
_UNREACHABLE = (
    "m.repository_id = $1 AND m.touched_at < $2"
    " AND NOT EXISTS (SELECT 1 FROM oci_tags t WHERE t.repository_id = m.repository_id"
    " AND t.name = m.name AND t.digest = m.digest)"
    " AND NOT EXISTS (SELECT 1 FROM oci_manifest_refs r WHERE r.repository_id = m.repository_id"
    " AND r.name = m.name AND r.ref_digest = m.digest AND r.kind = 'manifest')"
    " AND NOT EXISTS (SELECT 1 FROM oci_manifests s WHERE m.subject IS NOT NULL"
    " AND s.repository_id = m.repository_id AND s.name = m.name AND s.digest = m.subject)"
)


async def collect(sweep: Sweep) -> None:
    db = sweep.metadata.db
    try:
        await _abandoned_uploads(sweep, OciRecords(db))
    except Exception as exc:  # the blob sweep still runs
        sweep.failed("uploads", exc)
    for repo in sweep.repositories:
        if getattr(repo.options, "gc_untagged", False):
            try:
                await _untagged_manifests(sweep, db, repo)
            except Exception as exc:
                sweep.failed("manifests", exc)


async def _abandoned_uploads(sweep: Sweep, records: OciRecords) -> None:
    """Sessions idle since the cutoff: the row goes first (no replica can append any
    more), then the staged parts. Staged objects whose session is gone (a PATCH that
    died before recording its part) go once they are as old."""
    after = ""
    while True:
        rows = await records.db.fetch(
            "SELECT id FROM oci_uploads WHERE updated_at < $1 AND id > $2 ORDER BY id LIMIT $3",
            sweep.upload_cutoff,
            after,
            BATCH,
        )
        for row in rows:
            parts = await records.parts(row["id"])
            if not sweep.dry_run and not await records.delete_upload(row["id"]):
                continue  # finished or cancelled meanwhile
            if not sweep.dry_run:
                await sweep.cas.drop(parts)
            sweep.freed("uploads", len(parts), sum(part.size for part in parts))
        if len(rows) < BATCH:
            break
        after = rows[-1]["id"]
    async for staged in sweep.cas.staged(_age(sweep.upload_cutoff)):
        if staged.upload is not None and await records.get_upload(staged.upload) is not None:
            continue  # a live session's early part: it goes with the session
        if not sweep.dry_run:
            await sweep.cas.drop([staged])
        sweep.freed("uploads", 1, staged.size)


async def _untagged_manifests(sweep: Sweep, db: SqlDriver, repo: Repository) -> None:
    """Unreachable manifests of a repository that opted in (``gc_untagged``)."""
    while True:
        if sweep.dry_run:  # one pass: what a run would delete first
            rows = await db.fetch(
                f"SELECT m.digest, m.size FROM oci_manifests m WHERE {_UNREACHABLE}",
                repo.id,
                sweep.grace_cutoff,
            )
        else:
            rows = await _delete_unreachable(db, repo.id, sweep.grace_cutoff)
        sweep.freed("manifests", len(rows), sum(r["size"] for r in rows))
        if sweep.dry_run or not rows:
            return


async def _delete_unreachable(db: SqlDriver, repository_id: int, cutoff: float) -> list[Row]:
    """Lock the unreachable manifests, then delete those a second look still finds
    unreachable: an index that held one as a child (``OciRecords.put_manifest``)
    has committed by then, and this statement sees it. One pushed after the lock
    finds its child gone and is refused."""
    async with db.transaction() as tx:
        lock = " ORDER BY m.digest FOR UPDATE" if tx.dialect == "postgres" else ""
        candidates = await tx.fetch(
            f"SELECT m.digest FROM oci_manifests m WHERE {_UNREACHABLE}{lock}",
            repository_id,
            cutoff,
        )
        if not candidates:
            return []
        return await tx.fetch(
            f"DELETE FROM oci_manifests AS m WHERE m.digest {one_of(tx.dialect, '$3')}"
            f" AND {_UNREACHABLE} RETURNING digest, size",
            repository_id,
            cutoff,
            as_list(tx.dialect, [r["digest"] for r in candidates]),
        )


def _age(cutoff: float) -> timedelta:
    return timedelta(seconds=max(0.0, time.time() - cutoff))
