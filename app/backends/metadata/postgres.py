"""PostgreSQL driver (asyncpg pool) for the scale-out shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from app.backends.metadata.base import Conflict, Dialect, MetadataError, Row

# Any constant works; every replica must use the same one.
MIGRATION_LOCK_ID = 0x61727469  # "arti"


def _translate(exc: Exception) -> MetadataError:
    # Unique, foreign key, not-null and check violations, as SQLite's IntegrityError.
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return Conflict(str(exc))
    return MetadataError(str(exc))


# asyncpg's three roots: what the server said, misuse and closed connections, and its
# own state machine (InternalClientError: "cannot switch to state …" when a query
# meets a connection the server has just terminated, as in a restart). OSError covers
# the socket and command_timeout (TimeoutError).
_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


class PostgresDriver:
    dialect: Dialect = "postgres"

    def __init__(self, pool: asyncpg.Pool | None, conn: asyncpg.Connection | None = None) -> None:
        self._pool = pool
        self._conn = conn  # set on the driver handed out by transaction()

    @classmethod
    async def connect(cls, dsn: str, min_size: int = 1, max_size: int = 10) -> PostgresDriver:
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, command_timeout=60
            )
        except (*_ERRORS, ValueError) as exc:
            raise MetadataError(f"cannot connect to PostgreSQL: {exc}") from exc
        return cls(pool)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._conn is not None:
            yield self._conn
            return
        if self._pool is None:
            raise MetadataError("database is closed")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _ERRORS as exc:
            raise _translate(exc) from exc

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._connection() as conn:
            try:
                status = await conn.execute(sql, *args)
            except _ERRORS as exc:
                raise _translate(exc) from exc
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        async with self._connection() as conn:
            try:
                await conn.executemany(sql, args)
            except _ERRORS as exc:
                raise _translate(exc) from exc

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._connection() as conn:
            try:
                return [dict(r) for r in await conn.fetch(sql, *args)]
            except _ERRORS as exc:
                raise _translate(exc) from exc

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self._connection() as conn:
            try:
                row = await conn.fetchrow(sql, *args)
            except _ERRORS as exc:
                raise _translate(exc) from exc
        return dict(row) if row is not None else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._connection() as conn:
            try:
                return await conn.fetchval(sql, *args)
            except _ERRORS as exc:
                raise _translate(exc) from exc

    async def iterate(self, sql: str, *args: Any, batch: int = 1000) -> AsyncIterator[Row]:
        async with self._connection() as conn:
            try:
                # A server-side cursor needs a transaction; prefetch bounds memory.
                async with conn.transaction():
                    async for row in conn.cursor(sql, *args, prefetch=batch):
                        yield dict(row)
            except _ERRORS as exc:
                raise _translate(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresDriver]:
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    yield PostgresDriver(None, conn)
            except _ERRORS as exc:
                raise _translate(exc) from exc

    @asynccontextmanager
    async def migration_lock(self) -> AsyncIterator[PostgresDriver]:
        async with self._connection() as conn:
            try:
                # Session-level advisory lock: a second replica starting at the same
                # moment waits here, then finds every version already applied.
                await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
                try:
                    yield PostgresDriver(None, conn)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
            except _ERRORS as exc:
                raise _translate(exc) from exc

    async def ping(self) -> None:
        await self.fetchval("SELECT 1")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
