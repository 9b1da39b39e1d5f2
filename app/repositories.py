"""Repositories: what the configuration declares, with the ids the database gave them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Generic

from pydantic import BaseModel
from typing_extensions import TypeVar

from app.backends.metadata import MetadataStore
from app.config import RepositoryConfig
from app.errors import NotFound

# A repository's options, as its format validated them; a bare ``Repository`` is one
# whose format is not known yet (the registry, the dispatcher, the collector).
Options = TypeVar("Options", bound=BaseModel, default=BaseModel, covariant=True)
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Repository(Generic[Options]):
    id: int
    name: str
    format: str
    kind: str  # local | remote | virtual
    options: Options
    anonymous_read: bool = False  # reads without credentials (writes always need them)

    def narrowed(self, model: type[Model]) -> Repository[Model]:
        """This repository, its options typed as the ``model`` its format validated
        them with (``Format.options(kind)``); a TypeError if they are another's."""
        options = self.options
        if not isinstance(options, model):
            raise TypeError(
                f"repository {self.name} has {type(options).__name__} options, not {model.__name__}"
            )
        return Repository(self.id, self.name, self.format, self.kind, options, self.anonymous_read)


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
        options: Mapping[str, BaseModel],
    ) -> Repositories:
        rows = await metadata.sync_repositories(
            (r.name, r.format, r.kind, r.options) for r in configured
        )
        return cls(
            {
                r.name: Repository(
                    rows[r.name].id, r.name, r.format, r.kind, options[r.name], r.anonymous_read
                )
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
