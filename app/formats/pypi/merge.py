"""The merge rules of a virtual PyPI repository, as plain data (no I/O):

1. A project's page is the union of its members' files; per filename, the first member
   in order that has it serves it, with everything the page says of it (hashes,
   requires-python, yanked, core metadata, size, upload-time) as that member says it.
2. A remote member's file still inside a cooldown that holds for it (PEP 700
   ``upload-time`` younger than ``min_release_age``, or no upload-time at all) does
   not exist for the merge: not listed, not served, and a later member's file of
   that name may serve instead.
3. The project list is the union of the members' lists, by normalised name, the
   first member's spelling kept.

A member's files are kept (:class:`Memo`) by what names them for good: a local
member's project serial, a remote member's cached page digest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from app.formats.api import Member
from app.formats.pypi import simple

T = TypeVar("T")
MEMO_ITEMS = 200_000  # files (or names) per process across every kept member listing


class Memo(Generic[T]):
    """Least recently used first out, within a budget of items (files or names)."""

    def __init__(self, budget: int = MEMO_ITEMS) -> None:
        self.budget, self.size = budget, 0
        self._kept: OrderedDict[Hashable, tuple[T, int]] = OrderedDict()

    def get(self, key: Hashable) -> T | None:
        kept = self._kept.get(key)
        if kept is None:
            return None
        self._kept.move_to_end(key)
        return kept[0]

    def put(self, key: Hashable, value: T, items: int) -> T:
        if key in self._kept or items > self.budget // 4:
            return value
        self._kept[key] = (value, items)
        self.size += items
        while self.size > self.budget:
            _, (_, dropped) = self._kept.popitem(last=False)
            self.size -= dropped
        return value


def file_version(filename: str) -> str | None:
    """The (normalised) version a distribution's filename names; None for a name that
    is neither a wheel's nor an sdist's."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def normalised_version(text: str) -> str:
    """A version as filenames name it (``1.0-RC1`` is ``1.0rc1``); else as given."""
    try:
        return str(Version(text))
    except InvalidVersion:
        return text


@dataclass(frozen=True, slots=True)
class Files:
    """One member's files of one project, by filename, each with its version."""

    by_name: dict[str, tuple[simple.DistFile, str | None]]

    @classmethod
    def of(cls, files: Iterable[tuple[simple.DistFile, str | None]]) -> Files:
        return cls({file.filename: (file, version) for file, version in files})

    @classmethod
    def parsed(cls, page: simple.Page) -> Files:
        return cls.of((file, file_version(file.filename)) for file in page.files)


@dataclass(frozen=True, slots=True)
class Winner:
    member: Member
    file: simple.DistFile
    version: str | None


# Whether ``member``'s file (published then, epoch seconds or None) is cooling down.
Cooling = Callable[[Member, float | None], bool]


def winners(served: Sequence[tuple[Member, Files]], cooling: Cooling) -> dict[str, Winner]:
    """Per filename, the member that serves it (rules 1 and 2), in page order: the
    first member's files, then each later member's new ones."""
    won: dict[str, Winner] = {}
    for member, files in served:
        for filename, (file, version) in files.by_name.items():
            if filename in won or cooling(member, simple.published(file.upload_time)):
                continue
            won[filename] = Winner(member, file, version)
    return won


def serving(
    served: Sequence[tuple[Member, Files]], cooling: Cooling, filename: str
) -> Winner | None:
    """The member that serves ``filename``, as :func:`winners` would say, without
    merging the rest (a download asks for one file)."""
    for member, files in served:
        found = files.by_name.get(filename)
        if found is not None and not cooling(member, simple.published(found[0].upload_time)):
            return Winner(member, *found)
    return None


def page(project: str, won: dict[str, Winner]) -> simple.Page:
    """The merged page: the files as their members list them, PEP 700 versions those
    the files name."""
    versions = {w.version for w in won.values() if w.version is not None}
    ordered = sorted(versions, key=version_key)
    return simple.Page(project, [w.file for w in won.values()], versions=tuple(ordered))


def version_key(text: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)


def project_names(lists: Iterable[Iterable[str]]) -> list[str]:
    """Rule 3: the union by normalised name, the first spelling kept, in order."""
    seen: set[str] = set()
    names: list[str] = []
    for listed in lists:
        for name in listed:
            key = simple.normalize(name)
            if key not in seen:
                seen.add(key)
                names.append(name)
    return names
