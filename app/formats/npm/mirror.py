"""Per replica, the version rows of the packages it renders, brought up to date by
reading only the rows changed since the serial it holds them at.

A packument is rendered again after every change to its package; reading 5,000 version
rows back for one new version costs more than rendering them. Every write to a version
row stamps it ``changed`` with the package serial it took (under the package row's
lock, so serials commit in order): holding the rows as of serial S, the rows with
``changed > S`` are all that can differ. A row read twice is only replaced, and the
only rows ever deleted are staged ones, which no packument shows; so a mirror a step
behind (a write committed between its reads) is made whole by the next. What the
mirror holds is only ever used after the serial has been read from the database, as
everything cached in process must be.

Each version's rendered fragments (:func:`documents.full` joins them) are kept beside
its row until the row changes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

from app.formats.npm.records import NpmRecords
from app.formats.npm.rows import PackageRows, VersionRow

MAX_VERSIONS = 50_000  # rows held per process, across packages: ~1 kB each and its fragments


@dataclass
class _Held:
    rows: PackageRows
    versions: dict[str, VersionRow]
    fragments: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)


class PackageMirror:
    def __init__(self, records: NpmRecords, max_versions: int = MAX_VERSIONS) -> None:
        self.records, self.max_versions = records, max_versions
        self._held: OrderedDict[tuple[int, str], _Held] = OrderedDict()
        self._count = 0

    async def current(
        self, repository_id: int, name: str
    ) -> tuple[PackageRows, dict[str, dict[tuple[str, str], str]]] | None:
        """The package's rows as of (at least) its serial now, and the fragments kept
        for its versions; None if there is no such package."""
        key = (repository_id, name)
        held = self._held.get(key)
        since = held.rows.serial if held is not None else -1
        fresh = await self.records.load(repository_id, name, since=since)
        if fresh is None:
            self._drop(key)
            return None
        if held is not None and (held.rows.id != fresh.id or fresh.serial < held.rows.serial):
            # Another package by that name, or a database put back to an older state.
            self._drop(key)
            return await self.current(repository_id, name)
        if held is None:
            held = _Held(fresh, {})
        versions = dict(held.versions)  # renders of the older serial may still read it
        fragments = dict(held.fragments)
        for row in fresh.versions:
            versions[row.version] = row
            fragments.pop(row.version, None)
        ordered = sorted(versions.values(), key=lambda v: (v.published_at, v.version))
        rows = replace(fresh, versions=ordered)
        self._put(key, _Held(rows, versions, fragments))
        return rows, fragments

    def _put(self, key: tuple[int, str], held: _Held) -> None:
        self._drop(key)
        if len(held.versions) > self.max_versions // 4:
            return  # one package that large would push every other out
        self._held[key] = held
        self._count += len(held.versions)
        while self._count > self.max_versions:
            _, dropped = self._held.popitem(last=False)
            self._count -= len(dropped.versions)

    def _drop(self, key: tuple[int, str]) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            self._count -= len(held.versions)
