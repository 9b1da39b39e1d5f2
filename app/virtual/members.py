"""A virtual repository's members: checked when the configuration loads, flattened
once at start-up into the plain repositories a request asks.

A member may itself be virtual (of the same format): its members take its place, in
its order, each repository once (where it first appears). A remote reached through an
inner virtual stays under that virtual's guard and cooldown too (:attr:`Member.via`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from app.config import ConfigError, RepositoryConfig
from app.repositories import Repositories, Repository
from app.virtual.options import VirtualOptions

# A repository's kind and, for a virtual, its options.
Lookup = Callable[[str], tuple[str, VirtualOptions | None]]


def flattened(
    name: str, lookup: Lookup, via: tuple[str, ...] = ()
) -> list[tuple[str, tuple[str, ...]]]:
    """The plain members of virtual ``name`` in order, each with the inner virtuals it
    was reached through; the configuration has no cycles (:func:`check_members`)."""
    options = lookup(name)[1]
    assert options is not None
    found: list[tuple[str, tuple[str, ...]]] = []
    seen: set[str] = set()
    for member in options.members:
        _kind, inner = lookup(member)
        below = flattened(member, lookup, (*via, member)) if inner else [(member, via)]
        for plain, path in below:
            if plain not in seen:
                seen.add(plain)
                found.append((plain, path))
    return found


def check_members(configs: Sequence[RepositoryConfig], options: Mapping[str, BaseModel]) -> None:
    """Unknown members, members of another format, a virtual that includes itself
    (directly or through another) and a ``deploy_to`` that is not a local member are
    configuration errors naming the key."""
    by_name = {c.name: c for c in configs}

    def lookup(name: str) -> tuple[str, VirtualOptions | None]:
        config = by_name[name]
        inner = options[name] if config.kind == "virtual" else None
        return config.kind, inner if isinstance(inner, VirtualOptions) else None

    for i, config in enumerate(configs):
        if config.kind != "virtual":
            continue
        where = f"repositories[{i}].options"
        virtual = lookup(config.name)[1]
        assert virtual is not None
        for j, name in enumerate(virtual.members):
            key = f"{where}.members[{j}]"
            member = by_name.get(name)
            if member is None:
                raise ConfigError(f"{key}: unknown repository {name!r}")
            if member.format != config.format:
                raise ConfigError(
                    f"{key}: {name!r} is a repository of format {member.format}, not {config.format}"
                )
            if name in virtual.members[:j]:
                raise ConfigError(f"{key}: {name!r} is listed twice")
            cycle = _cycle(config.name, name, lookup, [config.name])
            if cycle:
                raise ConfigError(f"{key}: {' -> '.join(cycle)} includes itself")
        target = virtual.deploy_to
        if target is not None:
            locals_ = [m for m, _ in flattened(config.name, lookup) if lookup(m)[0] == "local"]
            if target not in locals_:
                why = "no such repository" if target not in by_name else (
                    f"a {by_name[target].kind} repository" if by_name[target].kind != "local"
                    else "not among its members"
                )  # fmt: skip
                raise ConfigError(f"{where}.deploy_to: {target!r} is not a local member ({why})")


def _cycle(start: str, name: str, lookup: Lookup, path: list[str]) -> list[str] | None:
    if name == start:
        return [*path, name]
    inner = lookup(name)[1]
    if inner is None or name in path:
        return None
    for member in inner.members:
        try:
            found = _cycle(start, member, lookup, [*path, name])
        except KeyError:  # an unknown member: reported where it is listed
            continue
        if found:
            return found
    return None


@dataclass(frozen=True, slots=True)
class Member:
    """A plain (local or remote) repository a virtual asks, and the inner virtuals it
    was reached through (outermost first), whose guards and cooldowns hold for it too."""

    repo: Repository
    via: tuple[Repository[VirtualOptions], ...] = ()

    @property
    def local(self) -> bool:
        return self.repo.kind == "local"


@dataclass(frozen=True, slots=True)
class Members:
    """One virtual repository, flattened."""

    virtual: Repository[VirtualOptions]
    members: tuple[Member, ...]  # in order, each repository once
    deploy_to: Repository | None

    @classmethod
    def of(cls, repositories: Repositories, virtual: Repository) -> Members:
        typed = virtual.narrowed(VirtualOptions)

        def lookup(name: str) -> tuple[str, VirtualOptions | None]:
            repo = repositories.get(name)
            options = repo.options if repo.kind == "virtual" else None
            return repo.kind, options if isinstance(options, VirtualOptions) else None

        members = tuple(
            Member(
                repositories.get(name),
                tuple(repositories.get(v).narrowed(VirtualOptions) for v in via),
            )
            for name, via in flattened(virtual.name, lookup)
        )
        target = typed.options.deploy_to
        return cls(typed, members, repositories.get(target) if target else None)
