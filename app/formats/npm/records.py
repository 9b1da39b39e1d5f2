"""The tables of npm local repositories and their queries (``migrations/0002_npm_local``).

A package is a row with a ``serial``; its versions, dist-tags and attachments are rows
of their own. Every write takes the package row first (``_bump``: the serial goes up
in the same transaction, which on PostgreSQL also locks the row), so writes to one
package are serialised while readers never wait, and a replica that remembers a
rendering by serial knows it is stale after one cheap query (:meth:`serial`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.formats.api import Records, Row, SqlDriver
from app.formats.npm.names import newest
from app.formats.npm.rows import (
    PUBLISHED,
    STAGED,
    UNPUBLISHED,
    AttachmentRow,
    NewVersion,
    PackageRows,
    StagedRow,
    VersionRow,
)

# Over the blob aliased ``b``: a version's tarball or attachment points at it. An
# unpublished version's tombstone points at nothing, so its blobs are collected.
BLOB_REFERENCES = (
    "EXISTS (SELECT 1 FROM npm_versions v WHERE v.tarball_digest = b.digest)",
    "EXISTS (SELECT 1 FROM npm_attachments a WHERE a.blob_digest = b.digest)",
)


class VersionExists(Exception):
    """name@version has a row already (published, staged or a tombstone)."""


class StaleRevision(Exception):
    """A write named a revision of the package older than its current one."""


HELD_BATCH = 500  # names per query: well under every database's limit of parameters
_FIELDS = tuple(VersionRow.__dataclass_fields__)
_VERSION_COLUMNS = (
    "version, manifest, corgi, dist, tarball_digest, size, integrity, shasum, published_at, deprecated,"
    " state, stage_id, stage_tag, staged_by, changed"
)


def _version(row: Row) -> VersionRow:
    return VersionRow(*(row[k] for k in _FIELDS))


class NpmRecords(Records):
    async def serial(self, repository_id: int, name: str) -> tuple[int, int] | None:
        """The package's id and serial: the one query a cached packument costs."""
        row = await self.db.fetchrow(
            "SELECT id, serial FROM npm_packages WHERE repository_id = $1 AND name = $2",
            repository_id,
            name,
        )
        return (row["id"], row["serial"]) if row else None

    async def load(
        self, repository_id: int, name: str, version: str | None = None, since: int = -1
    ) -> PackageRows | None:
        """The package with its versions (only ``version``, if given; only those changed
        after serial ``since``, if given), tags and attachments. Not one transaction (on SQLite that would take the write lock): a
        write landing in between makes the rows newer than the serial read first, and the
        rendering kept under that serial is replaced on the next request, which reads
        the new serial."""
        row = await self.db.fetchrow(
            "SELECT id, name, serial, created_at, modified_at FROM npm_packages"
            " WHERE repository_id = $1 AND name = $2",
            repository_id,
            name,
        )
        if row is None:
            return None
        pid = row["id"]
        one = " AND version = $2" if version is not None else ""
        args = (pid, version) if version is not None else (pid,)
        versions = await self.db.fetch(
            f"SELECT {_VERSION_COLUMNS} FROM npm_versions WHERE package_id = $1{one}"
            f" AND changed > ${len(args) + 1} ORDER BY published_at, version",
            *args,
            since,
        )
        tags = await self.db.fetch(
            "SELECT tag, version FROM npm_dist_tags WHERE package_id = $1 ORDER BY tag", pid
        )
        attachments = await self.db.fetch(
            "SELECT version, filename, blob_digest, size, content_type, predicate_type"
            f" FROM npm_attachments WHERE package_id = $1{one} ORDER BY version, filename",
            *args,
        )
        return PackageRows(
            id=pid,
            name=row["name"],
            serial=row["serial"],
            created_at=row["created_at"],
            modified_at=row["modified_at"],
            versions=[_version(v) for v in versions],
            tags={t["tag"]: t["version"] for t in tags},
            attachments=[AttachmentRow(**dict(a)) for a in attachments],
        )

    async def tags(self, repository_id: int, name: str) -> dict[str, str] | None:
        """The package's dist-tags (each names a published version: unpublishing a
        version drops its tags); None if there is no such package."""
        rows = await self.db.fetch(
            "SELECT p.id, t.tag, t.version FROM npm_packages p"
            " LEFT JOIN npm_dist_tags t ON t.package_id = p.id"
            " WHERE p.repository_id = $1 AND p.name = $2 ORDER BY t.tag",
            repository_id,
            name,
        )
        if not rows:
            return None
        return {r["tag"]: r["version"] for r in rows if r["tag"] is not None}

    async def packages(self, repository_id: int, after: str, limit: int) -> list[Row]:
        return await self.db.fetch(
            "SELECT p.name, p.created_at, p.modified_at,"
            " (SELECT COUNT(*) FROM npm_versions v WHERE v.package_id = p.id"
            "  AND v.state = 'published') AS versions"
            " FROM npm_packages p WHERE p.repository_id = $1 AND p.name > $2"
            " ORDER BY p.name LIMIT $3",
            repository_id,
            after,
            limit,
        )

    async def search(
        self, repository_id: int, terms: list[str], offset: int, limit: int
    ) -> tuple[list[Row], int]:
        """Packages whose name holds every term, each with its latest version's
        manifest, by name; and how many there are."""
        conditions = "".join(f" AND p.name LIKE ${i + 2} ESCAPE '!'" for i in range(len(terms)))
        patterns = ["%" + re.sub(r"([!%_])", r"!\1", term) + "%" for term in terms]
        found = (
            " FROM npm_packages p JOIN npm_dist_tags t ON t.package_id = p.id"
            " AND t.tag = 'latest' JOIN npm_versions v ON v.package_id = p.id"
            " AND v.version = t.version WHERE p.repository_id = $1" + conditions
        )
        total: int = await self.db.fetchval("SELECT COUNT(*)" + found, repository_id, *patterns)
        n = len(terms) + 2
        rows = await self.db.fetch(
            "SELECT p.name, v.version, v.manifest, v.published_at"
            + found
            + f" ORDER BY p.name LIMIT ${n} OFFSET ${n + 1}",
            repository_id,
            *patterns,
            limit,
            offset,
        )
        return rows, total

    async def held(self, repository_id: int, names: list[str]) -> set[str]:
        """Which of ``names`` are packages here (published, staged or unpublished)."""
        found: set[str] = set()
        for start in range(0, len(names), HELD_BATCH):
            batch = names[start : start + HELD_BATCH]
            marks = ", ".join(f"${i + 2}" for i in range(len(batch)))
            rows = await self.db.fetch(
                f"SELECT name FROM npm_packages WHERE repository_id = $1 AND name IN ({marks})",
                repository_id,
                *batch,
            )
            found.update(r["name"] for r in rows)
        return found

    # -- writes: each takes the package row first -----------------------------------

    @staticmethod
    async def _bump(tx: SqlDriver, package_id: int, expected: int | None = None) -> int:
        """Lock the package and raise its serial; :class:`StaleRevision` if ``expected``
        (the serial a client read) is not the one it had."""
        serial: int = await tx.fetchval(
            "UPDATE npm_packages SET serial = serial + 1, modified_at = $2 WHERE id = $1"
            " RETURNING serial",
            package_id,
            time.time(),
        )
        if expected is not None and serial - 1 != expected:
            raise StaleRevision()
        return serial

    async def publish(
        self,
        repository_id: int,
        name: str,
        new: NewVersion,
        stage: tuple[str, str] | None = None,
    ) -> int:
        """Add a version (published, or staged as ``(stage_id, staged_by)``) and its
        tags; :class:`VersionExists` (nothing written) if the version has a row."""
        now = time.time()
        digests = [new.tarball_digest, *(a.blob_digest for a in new.attachments)]
        async with self.db.transaction() as tx:
            await self.holding(tx, digests)
            await tx.execute(
                "INSERT INTO npm_packages (repository_id, name, serial, created_at, modified_at)"
                " VALUES ($1, $2, 0, $3, $3) ON CONFLICT (repository_id, name) DO NOTHING",
                repository_id,
                name,
                now,
            )
            pid: int = await tx.fetchval(
                "SELECT id FROM npm_packages WHERE repository_id = $1 AND name = $2",
                repository_id,
                name,
            )
            serial = await self._bump(tx, pid)
            state = STAGED if stage else PUBLISHED
            stage_id, staged_by = stage if stage else (None, None)
            stage_tag = ",".join(new.tags) if stage else None
            added = await tx.execute(
                f"INSERT INTO npm_versions ({_VERSION_COLUMNS}, package_id)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, $12, $13, $14, $15)"
                " ON CONFLICT (package_id, version) DO NOTHING",
                new.version, new.manifest, new.corgi, new.dist, new.tarball_digest, new.size,
                new.integrity, new.shasum, now, state, stage_id, stage_tag, staged_by, serial, pid,
            )  # fmt: skip
            if not added:
                raise VersionExists()
            await tx.executemany(
                "INSERT INTO npm_attachments (package_id, version, filename, blob_digest,"
                " size, content_type, predicate_type) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [
                    (pid, new.version, a.filename, a.blob_digest, a.size, a.content_type,
                     a.predicate_type)
                    for a in new.attachments
                ],
            )  # fmt: skip
            if not stage:
                await self._tag(tx, pid, new.tags, new.version)
        return serial

    @staticmethod
    async def _tag(tx: SqlDriver, package_id: int, tags: tuple[str, ...], version: str) -> None:
        """Put ``tags`` on a version just published; ``latest`` too while it has none."""
        has_latest = await tx.fetchval(
            "SELECT 1 FROM npm_dist_tags WHERE package_id = $1 AND tag = 'latest'", package_id
        )
        wanted = set(tags) | (set() if has_latest else {"latest"})
        for tag in sorted(wanted):
            await _set_tag(tx, package_id, tag, version)

    async def approve(self, repository_id: int, stage_id: str) -> StagedRow | None:
        """Publish a staged version; None if there is no such staged version."""

        async def publish(tx: SqlDriver, pid: int, version: VersionRow, serial: int) -> None:
            await tx.execute(
                "UPDATE npm_versions SET state = $3, published_at = $4, changed = $5"
                " WHERE package_id = $1 AND version = $2",
                pid,
                version.version,
                PUBLISHED,
                time.time(),
                serial,
            )
            tags = tuple(t for t in (version.stage_tag or "").split(",") if t)
            await self._tag(tx, pid, tags, version.version)

        return await self._staged_change(repository_id, stage_id, publish)

    async def reject(self, repository_id: int, stage_id: str) -> StagedRow | None:
        """Forget a staged version (and let go of its blobs); None if there is none."""

        async def forget(tx: SqlDriver, pid: int, version: VersionRow, serial: int) -> None:
            # A staged row is in no packument: a replica still holding it shows nothing.
            await tx.execute(
                "DELETE FROM npm_versions WHERE package_id = $1 AND version = $2",
                pid,
                version.version,
            )

        return await self._staged_change(repository_id, stage_id, forget)

    async def _staged_change(
        self,
        repository_id: int,
        stage_id: str,
        change: Callable[[SqlDriver, int, VersionRow, int], Awaitable[None]],
    ) -> StagedRow | None:
        async with self.db.transaction() as tx:
            staged = await self._staged(tx, repository_id, stage_id)
            if staged is None:
                return None
            pid, row = staged
            await change(tx, pid, row.version, await self._bump(tx, pid))
        return row

    async def _staged(
        self, tx: SqlDriver, repository_id: int, stage_id: str
    ) -> tuple[int, StagedRow] | None:
        row = await tx.fetchrow(
            f"SELECT p.id AS package_id, p.name AS package, {_VERSION_COLUMNS}"
            " FROM npm_versions JOIN npm_packages p ON p.id = package_id"
            " WHERE p.repository_id = $1 AND stage_id = $2 AND state = $3",
            repository_id,
            stage_id,
            STAGED,
        )
        return (row["package_id"], StagedRow(row["package"], _version(row))) if row else None

    async def staged(self, repository_id: int, stage_id: str) -> StagedRow | None:
        found = await self._staged(self.db, repository_id, stage_id)
        return found[1] if found else None

    async def staged_list(
        self, repository_id: int, package: str | None, offset: int, limit: int
    ) -> tuple[list[StagedRow], int]:
        """One page of the staged versions (of ``package``, if given) and their total."""
        where = " WHERE p.repository_id = $1 AND v.state = $2"
        args: list[Any] = [repository_id, STAGED]
        if package is not None:
            where += " AND p.name = $3"
            args.append(package)
        join = " FROM npm_versions v JOIN npm_packages p ON p.id = v.package_id"
        total: int = await self.db.fetchval("SELECT COUNT(*)" + join + where, *args)
        n = len(args)
        rows = await self.db.fetch(
            "SELECT p.name AS package, "
            + ", ".join(f"v.{c.strip()}" for c in _VERSION_COLUMNS.split(","))
            + join
            + where
            + f" ORDER BY v.published_at, p.name, v.version LIMIT ${n + 1} OFFSET ${n + 2}",
            *args,
            limit,
            offset,
        )
        return [StagedRow(r["package"], _version(r)) for r in rows], total

    async def unpublish(
        self,
        package_id: int,
        versions: list[str] | None,
        expected: int | None = None,
        tags: dict[str, str] | None = None,
    ) -> list[str]:
        """Tombstone ``versions`` (None: every published one) and drop their tags and
        attachments, the tags of the versions left set to ``tags`` if given (npm's
        read-modify-write sends the packument it wants), ``latest`` moved to the newest
        version left if it went; the versions it removed."""
        async with self.db.transaction() as tx:
            serial = await self._bump(tx, package_id, expected)
            published = await tx.fetch(
                "SELECT version FROM npm_versions WHERE package_id = $1 AND state = $2",
                package_id,
                PUBLISHED,
            )
            live = {r["version"] for r in published}
            gone = sorted(live if versions is None else live & set(versions))
            for version in gone:
                await tx.execute(
                    "UPDATE npm_versions SET state = $3, tarball_digest = NULL, changed = $4"
                    " WHERE package_id = $1 AND version = $2",
                    package_id,
                    version,
                    UNPUBLISHED,
                    serial,
                )
                await tx.execute(
                    "DELETE FROM npm_attachments WHERE package_id = $1 AND version = $2",
                    package_id,
                    version,
                )
                await tx.execute(
                    "DELETE FROM npm_dist_tags WHERE package_id = $1 AND version = $2",
                    package_id,
                    version,
                )
            left = live - set(gone)
            if tags is not None:
                await self._retag(tx, package_id, tags, left)
            # A package keeps a latest while it has versions: npm installs it by that.
            fallback = newest(left)
            if fallback is not None:
                await self._tag(tx, package_id, (), fallback)
        return gone

    @staticmethod
    async def _retag(
        tx: SqlDriver, package_id: int, tags: dict[str, str], versions: set[str]
    ) -> None:
        """The package's tags become ``tags``, those naming a version it has."""
        await tx.execute("DELETE FROM npm_dist_tags WHERE package_id = $1", package_id)
        for tag, version in sorted(tags.items()):
            if version in versions:
                await _set_tag(tx, package_id, tag, version)

    async def deprecate(self, package_id: int, messages: dict[str, str | None]) -> None:
        """Set (or clear, with None) the deprecation message of published versions."""
        async with self.db.transaction() as tx:
            serial = await self._bump(tx, package_id)
            await tx.executemany(
                "UPDATE npm_versions SET deprecated = $3, changed = $4"
                " WHERE package_id = $1 AND version = $2 AND state = 'published'",
                [(package_id, v, m, serial) for v, m in sorted(messages.items())],
            )

    async def set_tag(self, package_id: int, tag: str, version: str) -> bool:
        """Point ``tag`` at a published version; False if there is no such version."""
        async with self.db.transaction() as tx:
            await self._bump(tx, package_id)
            published = await tx.fetchval(
                "SELECT 1 FROM npm_versions WHERE package_id = $1 AND version = $2"
                " AND state = 'published'",
                package_id,
                version,
            )
            if not published:
                return False
            await _set_tag(tx, package_id, tag, version)
        return True

    async def remove_tag(self, package_id: int, tag: str) -> bool:
        async with self.db.transaction() as tx:
            await self._bump(tx, package_id)
            removed = await tx.execute(
                "DELETE FROM npm_dist_tags WHERE package_id = $1 AND tag = $2", package_id, tag
            )
        return removed > 0


async def _set_tag(tx: SqlDriver, package_id: int, tag: str, version: str) -> None:
    await tx.execute(
        "INSERT INTO npm_dist_tags (package_id, tag, version) VALUES ($1, $2, $3)"
        " ON CONFLICT (package_id, tag) DO UPDATE SET version = excluded.version",
        package_id,
        tag,
        version,
    )
