"""The generic format's table and queries: files (a path in a repository pointing at
a CAS blob) and the folders their paths imply. Its migrations are in ``migrations/``."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.formats.api import Records, Row, SqlDriver

# Over the blob aliased ``b``: a file points at it (Format.blob_references).
BLOB_REFERENCES = ("EXISTS (SELECT 1 FROM files f WHERE f.blob_digest = b.digest)",)


@dataclass(frozen=True, slots=True)
class FileRow:
    repository_id: int
    path: str
    blob_digest: str
    size: int
    content_type: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class FolderEntry:
    name: str
    folder: bool
    file: FileRow | None = None

    @property
    def key(self) -> str:
        """Where this entry sorts, and the ``after`` token for the next page."""
        return self.name + "/" if self.folder else self.name


def _file(row: Row) -> FileRow:
    return FileRow(
        repository_id=row["repository_id"],
        path=row["path"],
        blob_digest=row["blob_digest"],
        size=row["size"],
        content_type=row["content_type"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def folded(text: str) -> str:
    """How the virtual guard compares paths: NFKC, case-folded (the full-width "Internal"
    is "internal")."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def first_segment(path: str) -> str:
    """``internal/`` of ``internal/x/y.txt``; a top-level file's whole name."""
    first, slash, _ = path.partition("/")
    return first + slash


# The prefix row saying a repository's files from before generic_prefixes were taken in.
_TAKEN_IN = ""
_PAGE = 500  # names per IN (...): far below any driver's limit on parameters


def _upper_bound(prefix: str) -> str:
    """The smallest string greater than every string that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


_FILE_COLUMNS = "repository_id, path, blob_digest, size, content_type, created_at, updated_at"


class FileRecords(Records):
    async def put_file(
        self, repository_id: int, path: str, blob_digest: str, size: int, content_type: str
    ) -> bool:
        """Point ``path`` at a blob, replacing what it pointed at; True if it is new."""
        args = (repository_id, path, blob_digest, size, content_type, time.time())
        async with self.db.transaction() as tx:
            await self.holding(tx, [blob_digest])
            await _add_prefixes(tx, repository_id, [folded(first_segment(path))])
            # Insert-or-nothing, then update: of two concurrent puts of a new path
            # only the one whose insert lands reports it as new (a SELECT first
            # would let both see it absent on PostgreSQL).
            created = await tx.execute(
                f"INSERT INTO files ({_FILE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $6)"
                " ON CONFLICT (repository_id, path) DO NOTHING",
                *args,
            )
            if not created:
                await tx.execute(
                    "UPDATE files SET blob_digest = $3, size = $4, content_type = $5,"
                    " updated_at = $6 WHERE repository_id = $1 AND path = $2",
                    *args,
                )
        return created > 0

    async def held_prefixes(self, repository_id: int, segments: list[str]) -> set[str] | None:
        """Which of ``segments`` (folded first segments) the repository has held a path
        under; None if its files from before generic_prefixes are not taken in yet."""
        held: set[str] = set()
        taken_in = False
        wanted = [_TAKEN_IN, *segments]
        for start in range(0, len(wanted), _PAGE):
            part = wanted[start : start + _PAGE]
            marks = ", ".join(f"${i}" for i in range(2, len(part) + 2))
            rows = await self.db.fetch(
                f"SELECT folded FROM generic_prefixes WHERE repository_id = $1 AND folded IN ({marks})",
                repository_id,
                *part,
            )
            for row in rows:
                if row["folded"] == _TAKEN_IN:
                    taken_in = True
                else:
                    held.add(row["folded"])
        return held if taken_in else None

    async def take_in_prefixes(self, repository_id: int, segments: Iterable[str]) -> None:
        """Record the first segments of files written before generic_prefixes, then the
        row saying so (idempotent: replicas may race to it)."""
        async with self.db.transaction() as tx:
            await _add_prefixes(tx, repository_id, [*{folded(s) for s in segments}, _TAKEN_IN])

    async def get_file(self, repository_id: int, path: str) -> FileRow | None:
        row = await self.db.fetchrow(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE repository_id = $1 AND path = $2",
            repository_id,
            path,
        )
        return _file(row) if row else None

    async def delete_file(self, repository_id: int, path: str) -> bool:
        count = await self.db.execute(
            "DELETE FROM files WHERE repository_id = $1 AND path = $2", repository_id, path
        )
        return count > 0

    async def has_folder(self, repository_id: int, folder: str) -> bool:
        """Whether any file lies below ``folder`` ("" is the root, else ends with '/')."""
        if not folder:
            sql = "SELECT 1 FROM files WHERE repository_id = $1 LIMIT 1"
            args: tuple[Any, ...] = (repository_id,)
        else:
            sql = (
                "SELECT 1 FROM files WHERE repository_id = $1 AND path >= $2 AND path < $3 LIMIT 1"
            )
            args = (repository_id, folder, _upper_bound(folder))
        return await self.db.fetchval(sql, *args) is not None

    async def list_folder(
        self, repository_id: int, folder: str, limit: int = 1000, after: str = ""
    ) -> list[FolderEntry]:
        """The direct children of ``folder``, in byte order, after the entry key ``after``.

        Sub-folders are found by skip-scanning: once ``a/b/`` is seen, the next query
        starts past every path in it, so a folder holding a million files costs one
        row, not a million.
        """
        entries: list[FolderEntry] = []
        # ``after`` is an entry's key: "name" for a file, "name/" for a folder. Past a
        # file the next path is greater than it; past a folder it is at or above the
        # folder's upper bound ("b/" -> "b0", which may itself be a file).
        if after.endswith("/"):
            cursor, inclusive = _upper_bound(folder + after), True
        else:
            cursor, inclusive = folder + after, False
        upper = _upper_bound(folder) if folder else None
        while len(entries) < limit:
            sql = (
                f"SELECT {_FILE_COLUMNS} FROM files WHERE repository_id = $1"
                + (" AND path >= $2" if inclusive else " AND path > $2")
                + (" AND path < $3" if upper else "")
                + " ORDER BY path LIMIT $"
                + ("4" if upper else "3")
            )
            args: list[Any] = [repository_id, cursor]
            if upper:
                args.append(upper)
            batch = limit - len(entries)
            args.append(batch)
            rows = await self.db.fetch(sql, *args)
            if not rows:
                break
            for row in rows:
                rest = row["path"][len(folder) :]
                name, slash, _ = rest.partition("/")
                if slash:
                    entries.append(FolderEntry(name, folder=True))
                    cursor, inclusive = _upper_bound(folder + name + "/"), True
                    break
                entries.append(FolderEntry(name, folder=False, file=_file(row)))
                cursor, inclusive = row["path"], False
            else:
                if len(rows) < batch:
                    break
        return entries[:limit]


async def _add_prefixes(tx: SqlDriver, repository_id: int, segments: list[str]) -> None:
    for segment in segments:
        await tx.execute(
            "INSERT INTO generic_prefixes (repository_id, folded) VALUES ($1, $2)"
            " ON CONFLICT (repository_id, folded) DO NOTHING",
            repository_id,
            segment,
        )
