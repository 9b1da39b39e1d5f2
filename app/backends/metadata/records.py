"""The base of a format's queries: the driver, its dialect's helpers, and the holds
on blobs every writer of a reference takes first.

A format keeps its tables (its migrations beside it) and the queries over them in a
records module of its own, a subclass of :class:`Records`; the core's tables are the
:class:`MetadataStore`'s.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from app.backends.metadata.base import (
    LockMode,
    SqlDriver,
    as_list,
    bytewise,
    one_of,
    row_lock,
)
from app.backends.metadata.store import holding, share_locked


class Records:
    def __init__(self, db: SqlDriver) -> None:
        self.db = db

    def one_of(self, placeholder: str) -> str:
        """``IN`` the list passed at ``placeholder`` as :meth:`as_list` makes it."""
        return one_of(self.db.dialect, placeholder)

    def as_list(self, values: list[str]) -> object:
        return as_list(self.db.dialect, values)

    def bytewise(self) -> str:
        """The collation ordering computed text by bytes."""
        return bytewise(self.db.dialect)

    def row_lock(self, order: str, mode: LockMode) -> str:
        """The tail of a ``SELECT`` locking its rows in ``order`` (PostgreSQL)."""
        return row_lock(self.db.dialect, order, mode)

    @staticmethod
    async def holding(tx: SqlDriver, digests: Collection[str]) -> None:
        """Inside a transaction about to reference ``digests``: keep the blobs from a
        collector until it commits, or raise ``BlobsGone`` (see ``hold_blobs``)."""
        await holding(tx, digests)

    @staticmethod
    async def share_locked(
        tx: SqlDriver, select: str, args: Sequence[Any], digests: Collection[str]
    ) -> set[str]:
        """Which of ``digests`` ``select`` finds, share-locked until ``tx`` commits: a
        format's own hold on rows it references (an index on its children)."""
        return await share_locked(tx, select, args, digests)
