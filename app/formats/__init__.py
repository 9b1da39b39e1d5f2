"""The registry of format plugins, and validation of each repository against its format."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ValidationError

from app.auth.records import TRACK as AUTH_TRACK
from app.backends.metadata import Track
from app.config import Config, ConfigError
from app.formats.base import Format
from app.formats.generic import GenericFormat
from app.formats.npm import NpmFormat
from app.formats.oci import OciFormat
from app.formats.pypi import PypiFormat
from app.virtual import check_members


def available_formats() -> dict[str, Format]:
    formats: list[Format] = [GenericFormat(), OciFormat(), PypiFormat(), NpmFormat()]
    return {f.name: f for f in formats}


def migrations(formats: Iterable[Format]) -> list[Track]:
    """The tracks after the core's, for ``MetadataStore.migrate``: the auth tables',
    then each format's."""
    return [AUTH_TRACK, *(Track(f.name, f.migrations) for f in formats if f.migrations)]


def validate_repositories(config: Config, formats: dict[str, Format]) -> dict[str, BaseModel]:
    """Check every repository's format, kind and options; return options by name.

    Raises :class:`ConfigError` naming the offending key, as config loading does.
    """
    options: dict[str, BaseModel] = {}
    for index, repo in enumerate(config.repositories):
        where = f"repositories[{index}]"
        fmt = formats.get(repo.format)
        if fmt is None:
            known = ", ".join(sorted(formats))
            raise ConfigError(f"{where}.format: unknown format {repo.format!r} (known: {known})")
        if repo.kind not in fmt.kinds:
            kinds = ", ".join(sorted(fmt.kinds))
            raise ConfigError(
                f"{where}.kind: format {repo.format} does not support {repo.kind!r} yet"
                f" (supported: {kinds})"
            )
        try:
            options[repo.name] = fmt.options(repo.kind).model_validate(repo.options)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{where}.options.{key}: {first['msg']}") from None
    check_members(config.repositories, options)
    return options


__all__ = ["Format", "available_formats", "migrations", "validate_repositories"]
