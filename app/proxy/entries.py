"""``remote_entries``: one row per path a remote repository has fetched."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from app.backends.metadata.base import Row, SqlDriver
from app.backends.metadata.store import holding

_COLUMNS = (
    "path, status, blob_digest, size, content_type, etag, last_modified, headers,"
    " fetched_at, expires_at"
)


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    status: int  # 200, or 404 for a remembered upstream 404
    blob_digest: str | None
    size: int
    content_type: str
    etag: str | None = None  # the upstream's validators, for revalidation
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # replayed to clients
    fetched_at: float = 0.0
    expires_at: float | None = None  # None: immutable, never revalidated

    def fresh(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


def _entry(row: Row) -> Entry:
    return Entry(**{**row, "headers": json.loads(row["headers"])})


class Entries:
    def __init__(self, db: SqlDriver) -> None:
        self.db = db

    async def get(self, repository_id: int, path: str) -> Entry | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM remote_entries WHERE repository_id = $1 AND path = $2",
            repository_id,
            path,
        )
        return _entry(row) if row else None

    async def put(self, repository_id: int, entry: Entry) -> None:
        """Record what the upstream answered for a path; :class:`BlobsGone` if its
        blob was collected since it was stored (nothing is recorded: a miss again)."""
        now = time.time()
        async with self.db.transaction() as tx:
            if entry.blob_digest is not None:
                await holding(tx, [entry.blob_digest])
            await self._upsert(tx, repository_id, entry, now)

    @staticmethod
    async def _upsert(tx: SqlDriver, repository_id: int, entry: Entry, now: float) -> None:
        await tx.execute(
            "INSERT INTO remote_entries (repository_id, path, status, blob_digest, size,"
            " content_type, etag, last_modified, headers, fetched_at, expires_at,"
            " last_requested_at, request_count)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $10, 1)"
            " ON CONFLICT (repository_id, path) DO UPDATE SET status = excluded.status,"
            " blob_digest = excluded.blob_digest, size = excluded.size,"
            " content_type = excluded.content_type, etag = excluded.etag,"
            " last_modified = excluded.last_modified, headers = excluded.headers,"
            " fetched_at = excluded.fetched_at, expires_at = excluded.expires_at,"
            " last_requested_at = excluded.last_requested_at,"
            " request_count = remote_entries.request_count + 1",
            repository_id,
            entry.path,
            entry.status,
            entry.blob_digest,
            entry.size,
            entry.content_type,
            entry.etag,
            entry.last_modified,
            json.dumps(entry.headers),
            now,
            entry.expires_at,
        )

    async def revalidated(self, repository_id: int, path: str, expires_at: float) -> None:
        """The upstream answered 304: the cached copy is good until ``expires_at``."""
        await self.db.execute(
            "UPDATE remote_entries SET fetched_at = $3, expires_at = $4"
            " WHERE repository_id = $1 AND path = $2",
            repository_id,
            path,
            time.time(),
            expires_at,
        )

    async def requested(self, hits: dict[tuple[int, str], tuple[float, int]]) -> None:
        """Record when entries were last asked for and how often (flushed in batches,
        so a cache hit costs no write)."""
        async with self.db.transaction() as tx:  # one commit for the batch
            await tx.executemany(
                "UPDATE remote_entries SET last_requested_at = $3,"
                " request_count = request_count + $4"
                " WHERE repository_id = $1 AND path = $2",
                [
                    (repository_id, path, at, count)
                    for (repository_id, path), (at, count) in hits.items()
                ],
            )

    # -- eviction (the collector) ---------------------------------------------------

    async def evict_idle(
        self, repository_id: int, cutoff: float, dry_run: bool = False
    ) -> tuple[int, int]:
        """Drop entries nobody asked for since ``cutoff``; return (entries, bytes)."""
        if dry_run:
            row = await self.db.fetchrow(
                "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM remote_entries"
                " WHERE repository_id = $1 AND last_requested_at < $2",
                repository_id,
                cutoff,
            )
            assert row is not None
            return int(row["n"]), int(row["bytes"])
        rows = await self.db.fetch(
            "DELETE FROM remote_entries WHERE repository_id = $1 AND last_requested_at < $2"
            " RETURNING size",
            repository_id,
            cutoff,
        )
        return len(rows), sum(r["size"] for r in rows)

    async def evict_expired_misses(self, now: float) -> int:
        """Remembered upstream 404s past their time: only clutter."""
        return await self.db.execute(
            "DELETE FROM remote_entries WHERE status = 404 AND expires_at < $1", now
        )

    async def evict_beyond(
        self,
        repository_id: int,
        max_bytes: int,
        batch: int = 1000,
        dry_run: bool = False,
        idle_cutoff: float = 0.0,
    ) -> tuple[int, int]:
        """Drop the least recently asked-for entries until the repository holds at most
        ``max_bytes``; return (entries, bytes). A dry run leaves out the entries an
        idle eviction before it (``idle_cutoff``) would already have dropped."""
        if dry_run:
            return await self._would_evict_beyond(repository_id, max_bytes, idle_cutoff)
        total = int(
            await self.db.fetchval(
                "SELECT COALESCE(SUM(size), 0) FROM remote_entries WHERE repository_id = $1",
                repository_id,
            )
        )
        count = freed = 0
        while total - freed > max_bytes:
            rows = await self.db.fetch(
                "SELECT path, size FROM remote_entries WHERE repository_id = $1"
                " ORDER BY last_requested_at, path LIMIT $2",
                repository_id,
                batch,
            )
            if not rows:
                break
            victims = []
            for row in rows:
                if total - freed <= max_bytes:
                    break
                victims.append((repository_id, row["path"]))
                freed += row["size"]
            await self.db.executemany(
                "DELETE FROM remote_entries WHERE repository_id = $1 AND path = $2", victims
            )
            count += len(victims)
        return count, freed

    async def _would_evict_beyond(
        self, repository_id: int, max_bytes: int, idle_cutoff: float
    ) -> tuple[int, int]:
        total = int(
            await self.db.fetchval(
                "SELECT COALESCE(SUM(size), 0) FROM remote_entries"
                " WHERE repository_id = $1 AND last_requested_at >= $2",
                repository_id,
                idle_cutoff,
            )
        )
        count = freed = 0
        rows = self.db.iterate(
            "SELECT size FROM remote_entries WHERE repository_id = $1"
            " AND last_requested_at >= $2 ORDER BY last_requested_at, path",
            repository_id,
            idle_cutoff,
        )
        async for row in rows:
            if total - freed <= max_bytes:
                break
            count, freed = count + 1, freed + row["size"]
        return count, freed


@dataclass(frozen=True, slots=True)
class Link:
    """A file an upstream index page named: its real URL and published checksum."""

    path: str
    url: str
    digest: str | None = None  # "sha256:…" / "sha512:…" / "sha1:…" as the index gave it


class Links:
    def __init__(self, db: SqlDriver) -> None:
        self.db = db

    async def put_many(self, repository_id: int, links: list[Link]) -> None:
        if not links:
            return
        now = time.time()
        await self.db.executemany(
            "INSERT INTO remote_links (repository_id, path, url, digest, updated_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (repository_id, path) DO UPDATE"
            " SET url = excluded.url, digest = excluded.digest, updated_at = excluded.updated_at",
            [(repository_id, link.path, link.url, link.digest, now) for link in links],
        )

    async def get(self, repository_id: int, path: str) -> Link | None:
        row = await self.db.fetchrow(
            "SELECT path, url, digest FROM remote_links WHERE repository_id = $1 AND path = $2",
            repository_id,
            path,
        )
        return Link(row["path"], row["url"], row["digest"]) if row else None
