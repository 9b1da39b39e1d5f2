"""SQLite driver (aiosqlite) for the embedded shape.

One connection per process, in WAL mode so several worker processes can share the
file: readers never block, writers queue on SQLite's lock (``busy_timeout``). An
asyncio lock keeps one transaction at a time on the shared connection; statements
outside a transaction take the lock too, so they never run inside another
coroutine's transaction. A transaction hands out its own driver, the only one that
runs statements without the lock while it is open.

A file database has a second, read-only connection for plain ``SELECT``s outside a
transaction: WAL lets it read while the first waits for the other processes' writes,
so a cache hit's lookup never queues behind a fill's transaction or a batch of hit
counts (which can wait out another worker's write lock in SQLite's busy handler).
Each statement is one trip to aiosqlite's thread (``execute_fetchall``), not three
(execute, fetch, close), each waiting for a turn of a busy event loop.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import aiosqlite

from app.backends.metadata.base import Conflict, Dialect, MetadataError, Row

_PLACEHOLDER = re.compile(r"\$(\d+)")
_READ_ONLY = re.compile(r"\s*SELECT\b", re.IGNORECASE)  # in SQLite, a SELECT never writes
BUSY_TIMEOUT_MS = 30_000


def _sql(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


def path_from_url(url: str) -> str:
    """``sqlite:///relative/file.db``, ``sqlite:////abs/file.db`` or ``sqlite://:memory:``."""
    rest = url.removeprefix("sqlite://")
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    return rest[1:] if rest.startswith("/") else rest


@contextmanager
def _translated() -> Iterator[None]:
    """sqlite3's errors as the metadata errors; aiosqlite's ValueError ("Connection
    closed", on a connection closed under a request) and a text sqlite3 cannot encode
    (UnicodeEncodeError is a ValueError) as a failed database rather than a 500."""
    try:
        yield
    except MetadataError:
        raise
    except sqlite3.IntegrityError as exc:
        raise Conflict(str(exc)) from exc
    except (sqlite3.Error, ValueError) as exc:
        raise MetadataError(str(exc)) from exc


class SqliteDriver:
    dialect: Dialect = "sqlite"

    def __init__(
        self,
        path: str,
        connection: aiosqlite.Connection | None = None,
        *,
        in_transaction: bool = False,
        reader: aiosqlite.Connection | None = None,
    ) -> None:
        self.path = path
        self._conn = connection
        self._reader = reader
        self._lock = asyncio.Lock()
        # True only on the driver handed out by transaction(), never on the shared one.
        self._in_transaction = in_transaction

    @classmethod
    async def connect(cls, url: str) -> SqliteDriver:
        path = path_from_url(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = reader = None
        try:
            conn = await _open(path)
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            if path != ":memory:":  # a second connection to :memory: is another database
                reader = await _open(path)
                await reader.execute("PRAGMA query_only = ON")
        except (sqlite3.Error, OSError) as exc:
            for opened in (conn, reader):
                if opened is not None:
                    await opened.close()
            raise MetadataError(f"cannot open SQLite database {path}: {exc}") from exc
        return cls(path, conn, reader=reader)

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise MetadataError("database is closed")
        return self._conn

    async def _run(self, sql: str, args: Sequence[Any]) -> aiosqlite.Cursor:
        with _translated():
            return await self.conn.execute(_sql(sql), args)

    @asynccontextmanager
    async def _statement(self) -> AsyncIterator[None]:
        # Outside a transaction a single statement still takes the lock, so it never
        # lands in the middle of another coroutine's transaction. Fetching rows and
        # closing the cursor step the statement too, so they are translated as well.
        with _translated():
            if self._in_transaction:
                yield
            else:
                async with self._lock:
                    yield

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._statement():
            cursor = await self._run(sql, args)
            count = cursor.rowcount
            await cursor.close()
            return count

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        async with self._statement():
            await self.conn.executemany(_sql(sql), args)

    async def _rows(self, sql: str, args: Sequence[Any]) -> Iterable[sqlite3.Row]:
        if self._reader is not None and _READ_ONLY.match(sql):
            with _translated():
                return await self._reader.execute_fetchall(_sql(sql), args)
        async with self._statement():
            return await self.conn.execute_fetchall(_sql(sql), args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._rows(sql, args)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        for row in await self._rows(sql, args):
            return dict(row)
        return None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))

    async def iterate(self, sql: str, *args: Any, batch: int = 1000) -> AsyncIterator[Row]:
        # A cursor held open across awaits would hold the lock; page with LIMIT/OFFSET
        # instead, which is fine for SQLite's in-process reads.
        offset = 0
        while True:
            rows = await self.fetch(f"{sql} LIMIT {int(batch)} OFFSET {int(offset)}", *args)
            for row in rows:
                yield row
            if len(rows) < batch:
                return
            offset += batch

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteDriver]:
        if self._in_transaction:
            # Nested, as asyncpg does it: a savepoint (SQLite resolves a repeated
            # name to the innermost one).
            await self._run("SAVEPOINT nested", ())
            try:
                yield self
            except BaseException:
                await self._run("ROLLBACK TO nested", ())
                await self._run("RELEASE nested", ())
                raise
            await self._run("RELEASE nested", ())
            return
        async with self._lock:
            tx = SqliteDriver(self.path, self.conn, in_transaction=True)
            try:
                # BEGIN IMMEDIATE takes the write lock now, so two processes cannot
                # both read-then-write and deadlock on the upgrade.
                await tx._run("BEGIN IMMEDIATE", ())
                yield tx
                await tx._run("COMMIT", ())
            except BaseException:
                await self._rollback()
                raise
            finally:
                tx._conn = None  # the transaction's driver is spent

    async def _rollback(self) -> None:
        # aiosqlite runs statements in order on one thread, so this also undoes a
        # BEGIN whose await was cancelled; a transaction SQLite already ended is fine.
        with suppress(sqlite3.OperationalError):
            await self.conn.execute("ROLLBACK")

    @asynccontextmanager
    async def migration_lock(self) -> AsyncIterator[SqliteDriver]:
        # BEGIN IMMEDIATE holds SQLite's write lock across the whole migration, so a
        # second process starting at once waits, then finds everything applied.
        async with self.transaction() as tx:
            yield tx

    async def ping(self) -> None:
        await self.fetchval("SELECT 1")

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


async def _open(path: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = aiosqlite.Row
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn
