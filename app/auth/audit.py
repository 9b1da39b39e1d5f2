"""The audit log: who wrote, deleted or changed who may do what, from where, and what
came of it (the response's status).

A request is recorded once its status is known (the server's ``on_response_prepare``
hook reads :data:`ACTION`, which the authorisation that let it in, or the management
route, put on the request). Rows are kept in memory and written every
:data:`FLUSH_EVERY` seconds and at shutdown, so a write costs the request no round
trip; a failed write is logged, never raised. The collector trims rows older than
``auth.audit_retention``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from app.backends.metadata.records import Records

log = structlog.get_logger("artifactapi.audit")

FLUSH_EVERY = 1.0
KEPT = 100_000  # rows held while the database is away, at most; older ones are dropped
PAGE = 100  # entries an answer holds unless asked for fewer (or up to MAX_PAGE)
MAX_PAGE = 1000

# What the request did, as authorised: read, write, delete, admin, or a management
# change ("admin: token.create"). Only the last three kinds are recorded.
ACTION: web.RequestKey[str] = web.RequestKey("audit_action")
# The managed object a management change names (user:alice), when not its path.
TARGET: web.RequestKey[str] = web.RequestKey("audit_target")

_COLUMNS = "id, at, actor, action, target, source, outcome"


@dataclass(frozen=True, slots=True)
class Entry:
    at: float
    actor: str  # "" for anonymous
    action: str
    target: str
    source: str
    outcome: int


class AuditRecords(Records):
    async def add(self, entries: list[Entry]) -> None:
        async with self.db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO auth_audit (at, actor, action, target, source, outcome)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                [(e.at, e.actor, e.action, e.target, e.source, e.outcome) for e in entries],
            )

    async def entries(
        self,
        actor: str | None = None,
        action: str | None = None,
        since: float | None = None,
        before: int | None = None,
        limit: int = PAGE,
    ) -> list[dict[str, Any]]:
        """Newest first; ``before``: only ids below it (the next page's cursor)."""
        where, args = [], []
        for condition, value in (
            ("actor = ${}", actor), ("action = ${}", action),
            ("at >= ${}", since), ("id < ${}", before),
        ):  # fmt: skip
            if value is not None:
                args.append(value)
                where.append(condition.format(len(args)))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        args.append(limit)
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM auth_audit {clause} ORDER BY id DESC LIMIT ${len(args)}",
            *args,
        )
        return [dict(r) for r in rows]

    async def trim(self, cutoff: float, dry_run: bool = False) -> int:
        """Drop (or, ``dry_run``, count) the rows written before ``cutoff``."""
        if dry_run:
            return int(
                await self.db.fetchval("SELECT COUNT(*) FROM auth_audit WHERE at < $1", cutoff)
            )
        async with self.db.transaction() as tx:
            return await tx.execute("DELETE FROM auth_audit WHERE at < $1", cutoff)


@dataclass(slots=True)
class AuditLog:
    records: AuditRecords
    _pending: list[Entry] = field(default_factory=list)

    def record(
        self, actor: str, action: str, target: str, source: str | None, outcome: int
    ) -> None:
        """Keep one row for the next flush (no I/O)."""
        self._pending.append(Entry(time.time(), actor, action, target, source or "", outcome))
        if len(self._pending) > KEPT:
            del self._pending[: len(self._pending) - KEPT]
            log.warning("audit rows dropped: the database has not taken them", kept=KEPT)

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            await self.records.add(pending)
        except Exception as exc:  # the database is away: keep them for the next flush
            self._pending[:0] = pending
            log.warning("could not write the audit log", rows=len(pending), error=repr(exc))

    async def flush_periodically(self, interval: float = FLUSH_EVERY) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()


_RECORDED = frozenset({"write", "delete", "admin"})


def recorded(action: str) -> bool:
    """Whether a request authorised for ``action`` goes in the log."""
    return action in _RECORDED or action.startswith("admin: ")
