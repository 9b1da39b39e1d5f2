"""The SQL driver interface under the metadata store and the formats' records.

Queries are written once (the core's in :mod:`app.backends.metadata.store`, a
format's in its own records module) in the SQL both PostgreSQL and SQLite
understand, with ``$1``-style placeholders, and the few dialect helpers below where
they differ. A driver runs them on its database; the SQLite driver rewrites ``$n``
to ``?n``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, runtime_checkable

Row = Mapping[str, Any]
Dialect = Literal["sqlite", "postgres"]


def one_of(dialect: Dialect, placeholder: str) -> str:
    """``IN`` the list of strings passed at ``placeholder`` (as :func:`as_list` makes it),
    with one parameter however long the list: an array on PostgreSQL, a JSON array on
    SQLite (either would refuse tens of thousands of parameters). A set to join, not
    ``= ANY``, which PostgreSQL may read as a filter over every row it scans."""
    if dialect == "postgres":
        return f"IN (SELECT unnest({placeholder}::text[]))"
    return f"IN (SELECT value FROM json_each({placeholder}))"


def as_list(dialect: Dialect, values: list[str]) -> object:
    """The parameter :func:`one_of` takes for ``values``."""
    return values if dialect == "postgres" else json.dumps(values)


LockMode = Literal["SHARE", "NO KEY UPDATE", "UPDATE"]


def row_lock(dialect: Dialect, order: str, mode: LockMode) -> str:
    """The tail of a ``SELECT`` that locks the rows it finds, in ``order`` (so that
    writers lock in one order and do not deadlock), on PostgreSQL; nothing on
    SQLite, whose one write transaction at a time holds every row already.

    Every statement that locks more than one row of a table takes them this way
    (an ``UPDATE`` of several rows through ``WHERE key IN (SELECT … FOR NO KEY
    UPDATE)``): an ``UPDATE`` alone locks in whatever order its plan visits them."""
    return f" ORDER BY {order} FOR {mode}" if dialect == "postgres" else ""


def bytewise(dialect: Dialect) -> str:
    """The collation that orders computed text by bytes, as ``{{text_bytewise}}``
    columns are in the migrations."""
    return 'COLLATE "C"' if dialect == "postgres" else "COLLATE BINARY"


class MetadataError(Exception):
    """The database failed or is unreachable."""


class Conflict(MetadataError):
    """A constraint (unique, foreign key, not null) rejected the write."""


@runtime_checkable
class SqlDriver(Protocol):
    dialect: Dialect

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement and return the number of rows it changed."""
        ...

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each argument tuple, in one round trip where possible."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    def transaction(self) -> AbstractAsyncContextManager[SqlDriver]:
        """A driver bound to one connection inside one transaction."""
        ...

    def iterate(self, sql: str, *args: Any, batch: int = 1000) -> AsyncIterator[Row]:
        """Stream a large result in batches without loading it all."""
        ...

    def migration_lock(self) -> AbstractAsyncContextManager[SqlDriver]:
        """A driver on one connection holding a lock that serialises migrations
        across every process and replica (PostgreSQL advisory lock; SQLite's
        write lock)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
