"""The metadata store: the core's tables, queried once for both databases.

Repositories, blobs (their states, the holds writers take on them, the collector's
marks), leases and collection reports. Formats keep their own tables and queries
beside them, on :class:`app.backends.metadata.records.Records`; the collector learns
what their rows keep alive from ``Format.blob_references``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from app.backends.metadata import migrator
from app.backends.metadata.base import Conflict, SqlDriver, as_list, one_of, row_lock


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    id: int
    name: str
    format: str
    kind: str
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BlobRow:
    digest: str
    size: int
    created_at: float
    # "live"; "deleting": a collector has marked it and may delete its object;
    # "missing": its object was lost while something still referenced it (kept for
    # that reference, absent to readers, written anew by the next ingest).
    state: str = "live"
    marked_at: float | None = None


# SQL conditions, over the blob aliased ``b``, true when something the core keeps
# references the blob (the remote cache); formats add their own
# (Format.blob_references).
CORE_BLOB_REFERENCES = ("EXISTS (SELECT 1 FROM remote_entries e WHERE e.blob_digest = b.digest)",)
# Sorts after every digest ("sha256:…", "sha512:…") under any collation.
_LAST_DIGEST = "zzzzzzzz"


class BlobsGone(Conflict):
    """A writer was about to reference blobs that are absent or being collected; it
    wrote nothing. The client pushes them again, or simply retries."""

    def __init__(self, digests: Collection[str]) -> None:
        super().__init__(f"blobs being collected or absent: {', '.join(sorted(digests))}")
        self.digests = frozenset(digests)


async def hold_blobs(tx: SqlDriver, digests: Collection[str]) -> set[str]:
    """Inside a writer's transaction, before it writes a reference to ``digests``:
    keep them from being marked until it commits; return those it must not reference
    (absent, or already marked by a collector).

    This is the writer's half of the collector's safety argument: on PostgreSQL the
    rows are share-locked in digest order (a collector marks with an exclusive lock
    and looks at references again once it holds it; see :meth:`MetadataStore.mark_
    orphans`); SQLite runs one write transaction at a time, so nothing can mark them
    between this check and the commit.
    """
    live = await share_locked(tx, "SELECT digest FROM blobs WHERE state = 'live'", (), digests)
    return set(digests) - live


async def share_locked(
    tx: SqlDriver, select: str, args: Sequence[Any], digests: Collection[str]
) -> set[str]:
    """Which of ``digests`` the ``select`` (``SELECT digest FROM … WHERE …``, its own
    placeholders filled by ``args``) finds, share-locking those rows in digest order on
    PostgreSQL."""
    rows = await tx.fetch(
        f"{select} AND digest {one_of(tx.dialect, f'${len(args) + 1}')}"
        + row_lock(tx.dialect, "digest", "SHARE"),
        *args,
        as_list(tx.dialect, sorted(set(digests))),
    )
    return {r["digest"] for r in rows}


async def holding(tx: SqlDriver, digests: Collection[str]) -> None:
    """:func:`hold_blobs`, raising :class:`BlobsGone` for any it cannot hold."""
    gone = await hold_blobs(tx, digests)
    if gone:
        raise BlobsGone(gone)


class MetadataStore:
    def __init__(self, driver: SqlDriver) -> None:
        self.db = driver

    async def migrate(self, tracks: Sequence[migrator.Track]) -> list[str]:
        """Bring the core's tables and those of ``tracks`` (the formats') up to date;
        return the scripts run."""
        return await migrator.apply(self.db, tracks)

    async def ping(self) -> None:
        await self.db.ping()

    async def close(self) -> None:
        await self.db.close()

    # -- repositories ---------------------------------------------------------

    async def sync_repositories(
        self, repos: Iterable[tuple[str, str, str, dict[str, Any]]]
    ) -> dict[str, RepositoryRow]:
        """Insert or update the configured repositories (name, format, kind, options).

        Repositories dropped from the configuration keep their rows (and files)
        until an operator deletes them; they are simply no longer served.
        """
        now = time.time()
        async with self.db.transaction() as tx:
            for name, fmt, kind, options in repos:
                await tx.execute(
                    "INSERT INTO repositories (name, format, kind, options, created_at, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, $5)"
                    " ON CONFLICT (name) DO UPDATE SET format = excluded.format,"
                    " kind = excluded.kind, options = excluded.options,"
                    " updated_at = excluded.updated_at",
                    name,
                    fmt,
                    kind,
                    json.dumps(options, sort_keys=True),
                    now,
                )
            rows = await tx.fetch("SELECT id, name, format, kind, options FROM repositories")
        return {
            r["name"]: RepositoryRow(
                r["id"], r["name"], r["format"], r["kind"], json.loads(r["options"])
            )
            for r in rows
        }

    # -- blobs ----------------------------------------------------------------

    async def get_blob(self, digest: str) -> BlobRow | None:
        row = await self.db.fetchrow(
            "SELECT digest, size, created_at, state, marked_at FROM blobs WHERE digest = $1",
            digest,
        )
        return BlobRow(**row) if row else None

    async def add_blob(self, digest: str, size: int) -> bool:
        """Record a stored blob, or touch it if already recorded (a "missing" one is
        live again); False only if a collector has marked it meanwhile (the caller
        waits for it and writes again)."""
        now = time.time()
        count = await self.db.execute(
            "INSERT INTO blobs (digest, size, created_at, touched_at, state)"
            " VALUES ($1, $2, $3, $3, 'live')"
            # A "missing" row gets its object back with this write.
            " ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at,"
            " state = 'live', marked_at = NULL WHERE blobs.state IN ('live', 'missing')",
            digest,
            size,
            now,
        )
        return count > 0

    async def touch_blob(self, digest: str) -> BlobRow | None:
        """Note that a writer is about to reference the blob, so no collector marks it
        for a grace period; return its row (state "deleting" if one already has)."""
        await self.db.execute(
            "UPDATE blobs SET touched_at = $2 WHERE digest = $1 AND state = 'live'",
            digest,
            time.time(),
        )
        return await self.get_blob(digest)

    async def lose_blob(self, digest: str) -> None:
        """A live row whose object is gone becomes "missing": absent to readers, written
        again by the next ingest, dropped by the collector once nothing references it."""
        await self.db.execute(
            "UPDATE blobs SET state = 'missing' WHERE digest = $1 AND state = 'live'", digest
        )

    async def reclaim_blob(self, digest: str, marked_at: float) -> bool:
        """Take back a blob whose collector stopped half-way (marked long ago)."""
        count = await self.db.execute(
            "UPDATE blobs SET state = 'live', touched_at = $3, marked_at = NULL"
            " WHERE digest = $1 AND state = 'deleting' AND marked_at = $2",
            digest,
            marked_at,
            time.time(),
        )
        return count > 0

    # -- collection -------------------------------------------------------------

    @staticmethod
    def _orphan_condition(references: Iterable[str]) -> str:
        """Over ``b``, with the grace cutoff as ``$1``: a blob nothing keeps. A "missing"
        row has no object left to delete; once unreferenced its row goes the same way."""
        unreferenced = "".join(f" AND NOT {ref}" for ref in (*CORE_BLOB_REFERENCES, *references))
        return f"b.state IN ('live', 'missing') AND b.touched_at < $1{unreferenced}"

    async def orphaned_blobs(
        self, cutoff: float, references: Iterable[str], after: str = "", limit: int = 1000
    ) -> list[BlobRow]:
        """Live blobs untouched since ``cutoff`` that nothing references, in digest
        order after ``after``: read only (a dry run, or to show what a run would do)."""
        rows = await self.db.fetch(
            "SELECT b.digest, b.size, b.created_at, b.state, b.marked_at FROM blobs b"
            f" WHERE {self._orphan_condition(references)} AND b.digest > $2"
            " ORDER BY b.digest LIMIT $3",
            cutoff,
            after,
            limit,
        )
        return [BlobRow(**r) for r in rows]

    async def mark_orphans(
        self, cutoff: float, references: Iterable[str], after: str, limit: int, now: float
    ) -> tuple[list[BlobRow], str | None]:
        """Mark "deleting" the orphans among the next ``limit`` blobs after ``after``;
        return them and where the next batch starts (None at the end).

        The collector's half of the safety argument (the writer's is
        :func:`hold_blobs`): the orphans are locked first, in digest order as writers
        hold them (so neither side waits on the other in a cycle); the lock waits for
        every writer holding one of them to commit, and the marking update, a new
        statement, judges references by what those writers committed. A writer that
        comes after the lock waits for this transaction and finds the blob marked, so
        it writes no reference.
        """
        upper = await self.db.fetchval(
            "SELECT digest FROM blobs WHERE digest > $1 ORDER BY digest LIMIT 1 OFFSET $2",
            after,
            limit - 1,
        )
        orphan = f"{self._orphan_condition(references)} AND b.digest > $2 AND b.digest <= $3"
        bounds = (cutoff, after, upper if upper is not None else _LAST_DIGEST)
        async with self.db.transaction() as tx:
            locked = await tx.fetch(
                f"SELECT b.digest FROM blobs b WHERE {orphan}"
                + row_lock(tx.dialect, "b.digest", "NO KEY UPDATE"),
                *bounds,
            )
            if not locked:
                return [], upper
            rows = await tx.fetch(
                "UPDATE blobs AS b SET state = 'deleting', marked_at = $4"
                f" WHERE {orphan} AND b.digest {one_of(tx.dialect, '$5')}"
                " RETURNING digest, size, created_at, state, marked_at",
                *bounds,
                now,
                as_list(tx.dialect, [r["digest"] for r in locked]),
            )
        marked = sorted((BlobRow(**r) for r in rows), key=lambda b: b.digest)
        return marked, upper

    async def remark_blobs(self, after: str, limit: int, now: float) -> list[BlobRow]:
        """Mark again, at ``now``, blobs an earlier run left "deleting", so this run may
        finish them within its deadline (an ingest waiting on one sees the new mark)."""
        rows = await self.db.fetch(
            "UPDATE blobs SET marked_at = $3 WHERE state = 'deleting' AND digest IN"
            " (SELECT digest FROM blobs WHERE state = 'deleting' AND digest > $1"
            " ORDER BY digest LIMIT $2)"
            " RETURNING digest, size, created_at, state, marked_at",
            after,
            limit,
            now,
        )
        return sorted((BlobRow(**r) for r in rows), key=lambda b: b.digest)

    async def referenced(self, blobs: Collection[BlobRow], references: Iterable[str]) -> set[str]:
        """Which of ``blobs`` something references now (``references`` as for
        :meth:`mark_orphans`): rows an older version left marked under a late
        reference may be."""
        return await self._referenced(self.db, blobs, references)

    @staticmethod
    async def _referenced(
        db: SqlDriver, blobs: Collection[BlobRow], references: Iterable[str]
    ) -> set[str]:
        if not blobs:
            return set()
        anything = " OR ".join((*CORE_BLOB_REFERENCES, *references))
        rows = await db.fetch(
            f"SELECT b.digest FROM blobs b WHERE b.digest {one_of(db.dialect, '$1')}"
            f" AND ({anything})",
            as_list(db.dialect, [b.digest for b in blobs]),
        )
        return {r["digest"] for r in rows}

    async def unmark_blob(self, blob: BlobRow, state: str) -> bool:
        """Take a marked blob back ("live" with its object, "missing" without), if
        still marked as it was."""
        count = await self.db.execute(
            "UPDATE blobs SET state = $3, marked_at = NULL, touched_at = $4"
            " WHERE digest = $1 AND state = 'deleting' AND marked_at = $2",
            blob.digest,
            blob.marked_at,
            state,
            time.time(),
        )
        return count > 0

    async def drop_blobs(
        self, blobs: Iterable[BlobRow], unlink: Iterable[str] = ()
    ) -> list[BlobRow]:
        """Delete the rows of blobs whose objects are gone, if still marked as they
        were; ``unlink`` statements first remove rows that only name the blob (``$1``).

        Return the blobs whose rows had to stay because something references them
        after all (their objects are gone): they are kept as "missing", never as
        a failure of the whole batch.
        """
        rows = list(blobs)
        statements = tuple(unlink)
        if not rows:
            return []
        try:
            await self._drop(rows, statements)
        except Conflict:
            pass
        else:
            return []
        kept = []
        for blob in rows:  # one at a time, to find the referenced ones
            try:
                await self._drop([blob], statements)
            except Conflict:
                await self.unmark_blob(blob, "missing")
                kept.append(blob)
        return kept

    async def _drop(self, rows: list[BlobRow], unlink: tuple[str, ...]) -> None:
        async with self.db.transaction() as tx:
            for statement in unlink:
                await tx.executemany(statement, [(blob.digest,) for blob in rows])
            await tx.executemany(
                "DELETE FROM blobs WHERE digest = $1 AND state = 'deleting' AND marked_at = $2",
                [(blob.digest, blob.marked_at) for blob in rows],
            )

    # -- leases and reports -------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` unless another holder has it unexpired."""
        now = time.time()
        count = await self.db.execute(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
            " expires_at = excluded.expires_at"
            " WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
            name,
            holder,
            now + ttl,
            now,
        )
        return count > 0

    async def lease_holder(self, name: str) -> str | None:
        """Who holds ``name`` now, if anyone."""
        value = await self.db.fetchval(
            "SELECT holder FROM leases WHERE name = $1 AND expires_at >= $2", name, time.time()
        )
        return str(value) if value is not None else None

    async def release_lease(self, name: str, holder: str) -> None:
        await self.db.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder)

    async def save_gc_run(
        self, started_at: float, finished_at: float, dry_run: bool, report: dict[str, Any]
    ) -> None:
        await self.db.execute(
            "INSERT INTO gc_runs (started_at, finished_at, dry_run, report) VALUES ($1, $2, $3, $4)",
            started_at,
            finished_at,
            dry_run,
            json.dumps(report),
        )
        await self.db.execute(  # keep the last hundred
            "DELETE FROM gc_runs WHERE id <= (SELECT MAX(id) - 100 FROM gc_runs)"
        )

    async def last_gc_run(self) -> dict[str, Any] | None:
        value = await self.db.fetchval("SELECT report FROM gc_runs ORDER BY id DESC LIMIT 1")
        return json.loads(value) if value is not None else None

    async def blob_totals(self) -> tuple[int, int]:
        row = await self.db.fetchrow(
            "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM blobs"
        )
        assert row is not None
        return int(row["n"]), int(row["bytes"])
