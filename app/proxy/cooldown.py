"""Cooldown for upstream releases: versions an upstream published more recently than
``min_release_age`` are hidden from listings and refused for download.

Why: the npm worms of 2025 (and every hijacked-maintainer release before them) spread
within hours of publishing, and were found and pulled within days. A build that only
takes releases a few days old never meets them. A remote repository or a virtual one
may set it; a name matching ``cooldown_allow`` goes through at once (an urgent fix).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from app.config import Seconds


def _checked(globs: tuple[str, ...]) -> tuple[str, ...]:
    for glob in globs:
        if not glob or len(glob) > 256 or not glob.isprintable():
            raise ValueError(f"{glob[:80]!r}: a name or glob of 1 to 256 printable characters")
    return globs


# Package names or fnmatch globs ("acme-*", "@acme/*"), compared as each format
# normalises names (Patterns).
Globs = Annotated[tuple[str, ...], AfterValidator(_checked)]


class CooldownOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_release_age: Seconds | None = None  # e.g. 3d; None: no cooldown
    cooldown_allow: Globs = ()  # names let through at once


class Dateless(CooldownOptions):
    """The options of a format whose protocol says nothing of when a release was
    published (OCI, generic files): a cooldown, which fails closed on an unknown age,
    would refuse every upstream artifact, a surprise rather than a guard, so setting one
    is a configuration error. Listed before the options it extends."""

    @model_validator(mode="after")
    def _no_cooldown(self) -> Dateless:
        if self.min_release_age is not None:
            raise ValueError("min_release_age: this format publishes no release time to wait on")
        return self


@dataclass(frozen=True, slots=True)
class Patterns:
    """Globs over names as a format normalises them (``Acme_Lib`` and ``acme-lib`` are
    one PyPI name, so ``acme-*`` holds both)."""

    globs: tuple[str, ...]

    @classmethod
    def of(cls, globs: tuple[str, ...], normalise: Callable[[str], str]) -> Patterns:
        # A glob's '*' and '?' survive every format's normalisation (PyPI folds runs of
        # '-_.' and case; npm and OCI lower-case), so the glob is normalised as a name.
        return cls(tuple(normalise(glob) for glob in globs))

    def match(self, key: str) -> str | None:
        """The first glob ``key`` (already normalised) matches, or None."""
        return next((glob for glob in self.globs if fnmatchcase(key, glob)), None)


@dataclass(frozen=True, slots=True)
class Cooldown:
    """One repository's cooldown, its allow list normalised by the format."""

    min_age: float | None
    allow: Patterns

    @classmethod
    def of(cls, options: CooldownOptions, normalise: Callable[[str], str]) -> Cooldown:
        return cls(options.min_release_age, Patterns.of(options.cooldown_allow, normalise))

    def applies(self, key: str) -> bool:
        """Whether releases of ``key`` (normalised) wait at all."""
        return bool(self.min_age) and self.allow.match(key) is None

    def hides(self, key: str, published: float | None, now: float) -> bool:
        """Whether a release of ``key`` published at ``published`` (epoch seconds; None
        when the upstream does not say) is still cooling down. A release of unknown age
        waits: the guard fails closed, and ``cooldown_allow`` lets a name through."""
        if not self.applies(key):
            return False
        assert self.min_age is not None
        return published is None or now - published < self.min_age

    def until(self, published: float) -> float:
        """When a release published at ``published`` is let through."""
        return published + (self.min_age or 0.0)
