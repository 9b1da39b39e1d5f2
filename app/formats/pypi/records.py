"""The tables of PyPI local repositories and the queries over them (migrations in
``migrations/``).

A project is a row, each uploaded file another pointing at its CAS blob (and a
wheel's at its METADATA's blob); a deleted filename may leave a row that reserves it.
Every change bumps the repository's ``serial`` and gives it to the project changed:
pages are rendered once per (project, serial) on each replica, and one cheap query
for the serial tells any replica whether what it rendered is still the page.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.formats.api import Records, Row, SqlDriver

# Over the blob aliased ``b``: a file or a wheel's METADATA is it (Format.blob_references).
BLOB_REFERENCES = (
    "EXISTS (SELECT 1 FROM pypi_files f WHERE f.blob_digest = b.digest)",
    "EXISTS (SELECT 1 FROM pypi_files f WHERE f.metadata_digest = b.digest)",
)


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str  # normalised
    display_name: str
    serial: int


@dataclass(frozen=True, slots=True)
class NewFile:
    """What an upload records (its blobs already stored)."""

    filename: str
    version: str  # normalised
    filetype: str
    blob_digest: str
    size: int
    requires_python: str | None
    metadata_digest: str | None
    metadata_size: int | None
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FileRow(NewFile):
    """A file as recorded."""

    project: str  # normalised
    yanked_reason: str | None
    uploaded_at: float

    @property
    def yanked(self) -> bool:
        return self.yanked_reason is not None


# Without the form's fields (a description may be 512 KiB): pages and downloads need
# none of them, and a page of 2,000 files must not read a gigabyte.
_FILE_COLUMNS = (
    "p.name AS project, f.filename, f.version, f.filetype, f.blob_digest, f.size,"
    " f.requires_python, f.metadata_digest, f.metadata_size, f.yanked_reason, '{}' AS fields,"
    " f.uploaded_at"
)
_WITH_FIELDS = _FILE_COLUMNS.replace("'{}' AS fields", "f.fields")
_FROM = "FROM pypi_files f JOIN pypi_projects p ON p.id = f.project_id"


def _file(row: Row) -> FileRow:
    values = dict(row)
    values["fields"] = json.loads(values["fields"])
    return FileRow(**values)


@dataclass(frozen=True, slots=True)
class Added:
    file: FileRow | None  # None: the filename is reserved by a deleted file
    created: bool  # False: the filename was there already (``file`` is what it holds)


class PypiRecords(Records):
    async def serial(self, repository_id: int, project: str) -> int | None:
        """The project's serial: the one query a cached page costs."""
        value = await self.db.fetchval(
            "SELECT serial FROM pypi_projects WHERE repository_id = $1 AND name = $2",
            repository_id,
            project,
        )
        return int(value) if value is not None else None

    async def repository_serial(self, repository_id: int) -> int:
        value = await self.db.fetchval(
            "SELECT serial FROM pypi_serials WHERE repository_id = $1", repository_id
        )
        return int(value) if value is not None else 0

    async def project(self, repository_id: int, name: str) -> Project | None:
        row = await self.db.fetchrow(
            "SELECT id, name, display_name, serial FROM pypi_projects"
            " WHERE repository_id = $1 AND name = $2",
            repository_id,
            name,
        )
        return Project(**row) if row else None

    async def projects(
        self, repository_id: int, after: str = "", limit: int | None = None
    ) -> list[Project]:
        sql = (
            "SELECT id, name, display_name, serial FROM pypi_projects"
            " WHERE repository_id = $1 AND name > $2 ORDER BY name"
        )
        args: list[Any] = [repository_id, after]
        if limit is not None:
            sql += " LIMIT $3"
            args.append(limit)
        return [Project(**row) for row in await self.db.fetch(sql, *args)]

    async def files(self, repository_id: int, project: str, fields: bool = False) -> list[FileRow]:
        """The project's files, by filename; with their form ``fields`` if asked."""
        columns = _WITH_FIELDS if fields else _FILE_COLUMNS
        rows = await self.db.fetch(
            f"SELECT {columns} {_FROM} WHERE p.repository_id = $1 AND p.name = $2"
            " ORDER BY f.filename",
            repository_id,
            project,
        )
        return [_file(row) for row in rows]

    async def file(self, repository_id: int, filename: str) -> FileRow | None:
        row = await self.db.fetchrow(
            f"SELECT {_FILE_COLUMNS} {_FROM} WHERE f.repository_id = $1 AND f.filename = $2",
            repository_id,
            filename,
        )
        return _file(row) if row else None

    async def reserved(self, repository_id: int, filename: str) -> bool:
        """Whether a deleted file left ``filename`` reserved."""
        return await _reserved(self.db, repository_id, filename)

    async def add(
        self,
        repository_id: int,
        project: str,
        display_name: str,
        new: NewFile,
        *,
        replace: bool,
        reserved: bool,
    ) -> Added:
        """Record ``new`` under ``project``, unless its filename holds a file already
        (then that file, ``created`` False; with ``replace`` it is replaced by ``new``
        when its bytes differ) or, with ``reserved``, a deleted file reserved it. The
        blobs are held until the rows are in."""
        digests = [new.blob_digest, *([new.metadata_digest] if new.metadata_digest else [])]
        async with self.db.transaction() as tx:
            await self.holding(tx, digests)
            existing = await self._locked_file(tx, repository_id, new.filename)
            if existing is not None and (not replace or existing.blob_digest == new.blob_digest):
                return Added(existing, created=False)
            if existing is None and reserved and await _reserved(tx, repository_id, new.filename):
                return Added(None, created=False)
            serial = await _bump(tx, repository_id)
            project_id = await _project_id(tx, repository_id, project, display_name, serial)
            now = time.time()
            values = (
                repository_id, project_id, new.filename, new.version, new.filetype,
                new.blob_digest, new.size, new.requires_python, new.metadata_digest,
                new.metadata_size, json.dumps(new.fields, sort_keys=True), now,
            )  # fmt: skip
            if existing is not None:
                await tx.execute(
                    "UPDATE pypi_files SET project_id = $2, version = $4, filetype = $5,"
                    " blob_digest = $6, size = $7, requires_python = $8, metadata_digest = $9,"
                    " metadata_size = $10, fields = $11, uploaded_at = $12, yanked_reason = NULL"
                    " WHERE repository_id = $1 AND filename = $3",
                    *values,
                )
            else:
                await tx.execute(
                    "INSERT INTO pypi_files (repository_id, project_id, filename, version,"
                    " filetype, blob_digest, size, requires_python, metadata_digest,"
                    " metadata_size, fields, uploaded_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    *values,
                )
            added = await self._locked_file(tx, repository_id, new.filename)
        assert added is not None
        return Added(added, created=True)

    async def _locked_file(
        self, tx: SqlDriver, repository_id: int, filename: str
    ) -> FileRow | None:
        # The repository's serial row is locked first (by _bump in every writer), so
        # concurrent uploads of one filename queue there rather than race the insert.
        await _bump(tx, repository_id, by=0)
        row = await tx.fetchrow(
            f"SELECT {_FILE_COLUMNS} {_FROM} WHERE f.repository_id = $1 AND f.filename = $2",
            repository_id,
            filename,
        )
        return _file(row) if row else None

    async def yank(
        self,
        repository_id: int,
        project: str,
        version: str | None,
        filename: str | None,
        reason: str | None,
    ) -> int:
        """Yank (``reason`` a string, maybe empty) or unyank (None) files of a project:
        all, a version's, or one; how many matched."""
        where, args = _selected(repository_id, project, version, filename)
        async with self.db.transaction() as tx:
            await _bump(tx, repository_id, by=0)  # writers take turns before they look
            ids = await _ids(tx, where, args)
            if not ids:
                return 0
            serial = await _bump(tx, repository_id)
            await tx.execute(
                f"UPDATE pypi_files SET yanked_reason = $1 WHERE id IN ({_list(ids, 2)})",
                reason,
                *ids,
            )
            await _serial(tx, repository_id, project, serial)
        return len(ids)

    async def delete(
        self,
        repository_id: int,
        project: str,
        version: str | None,
        filename: str | None,
        reserve: bool,
    ) -> int:
        """Delete files of a project (all, a version's, or one), reserving their names
        if ``reserve``; a project left without files goes too. How many matched."""
        where, args = _selected(repository_id, project, version, filename)
        async with self.db.transaction() as tx:
            await _bump(tx, repository_id, by=0)  # writers take turns before they look
            rows = await tx.fetch(f"SELECT f.id, f.filename {_FROM} WHERE {where}", *args)
            if not rows:
                return 0
            serial = await _bump(tx, repository_id)
            ids = [row["id"] for row in rows]
            await tx.execute(f"DELETE FROM pypi_files WHERE id IN ({_list(ids, 1)})", *ids)
            if reserve:
                now = time.time()
                await tx.executemany(
                    "INSERT INTO pypi_deleted_files (repository_id, filename, deleted_at)"
                    " VALUES ($1, $2, $3) ON CONFLICT (repository_id, filename) DO NOTHING",
                    [(repository_id, row["filename"], now) for row in rows],
                )
            await tx.execute(
                "DELETE FROM pypi_projects WHERE repository_id = $1 AND name = $2"
                " AND NOT EXISTS (SELECT 1 FROM pypi_files f WHERE f.project_id = pypi_projects.id)",
                repository_id,
                project,
            )
            await _serial(tx, repository_id, project, serial)
        return len(rows)


async def _reserved(db: SqlDriver, repository_id: int, filename: str) -> bool:
    found = await db.fetchval(
        "SELECT 1 FROM pypi_deleted_files WHERE repository_id = $1 AND filename = $2",
        repository_id,
        filename,
    )
    return found is not None


def _selected(
    repository_id: int, project: str, version: str | None, filename: str | None
) -> tuple[str, list[Any]]:
    where = "p.repository_id = $1 AND p.name = $2"
    args: list[Any] = [repository_id, project]
    if version is not None:
        args.append(version)
        where += f" AND f.version = ${len(args)}"
    if filename is not None:
        args.append(filename)
        where += f" AND f.filename = ${len(args)}"
    return where, args


async def _ids(tx: SqlDriver, where: str, args: Sequence[Any]) -> list[int]:
    rows = await tx.fetch(f"SELECT f.id {_FROM} WHERE {where} ORDER BY f.id", *args)
    return [row["id"] for row in rows]


def _list(ids: Sequence[int], first: int) -> str:
    return ", ".join(f"${first + i}" for i in range(len(ids)))


async def _bump(tx: SqlDriver, repository_id: int, by: int = 1) -> int:
    """The repository's next serial (``by`` 0: the current one), its row locked until
    ``tx`` ends: writers of one repository take turns."""
    value = await tx.fetchval(
        "INSERT INTO pypi_serials (repository_id, serial) VALUES ($1, $2)"
        " ON CONFLICT (repository_id) DO UPDATE SET serial = pypi_serials.serial + $2"
        " RETURNING serial",
        repository_id,
        by,
    )
    return int(value)


async def _project_id(
    tx: SqlDriver, repository_id: int, name: str, display_name: str, serial: int
) -> int:
    await tx.execute(
        "INSERT INTO pypi_projects (repository_id, name, display_name, serial, created_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (repository_id, name) DO NOTHING",
        repository_id,
        name,
        display_name,
        serial,
        time.time(),
    )
    await _serial(tx, repository_id, name, serial)
    value = await tx.fetchval(
        "SELECT id FROM pypi_projects WHERE repository_id = $1 AND name = $2",
        repository_id,
        name,
    )
    return int(value)


async def _serial(tx: SqlDriver, repository_id: int, project: str, serial: int) -> None:
    await tx.execute(
        "UPDATE pypi_projects SET serial = $3 WHERE repository_id = $1 AND name = $2",
        repository_id,
        project,
        serial,
    )
