"""Repositories: what the configuration declares, with the ids the database gave them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.backends.metadata import MetadataStore
from app.config import RepositoryConfig
from app.errors import NotFound


@dataclass(frozen=True, slots=True)
class Repository:
    id: int
    name: str
    format: str
    kind: str  # local | remote | virtual
    options: Any  # the format's validated options model


class Repositories:
    """The configured repositories by name.

    Built once at start-up from the (identical on every replica) configuration,
    so holding it in memory is not per-request state.
    """

    def __init__(self, repositories: dict[str, Repository]) -> None:
        self._by_name = repositories

    @classmethod
    async def sync(
        cls,
        metadata: MetadataStore,
        configured: tuple[RepositoryConfig, ...],
        options: dict[str, Any],
    ) -> Repositories:
        rows = await metadata.sync_repositories(
            (r.name, r.format, r.kind, r.options) for r in configured
        )
        return cls(
            {
                r.name: Repository(rows[r.name].id, r.name, r.format, r.kind, options[r.name])
                for r in configured
            }
        )

    def get(self, name: str, format: str | None = None) -> Repository:
        repo = self._by_name.get(name)
        if repo is None or (format is not None and repo.format != format):
            raise NotFound(f"repository {name!r} not found")
        return repo

    def __iter__(self) -> Iterator[Repository]:
        return iter(self._by_name.values())
