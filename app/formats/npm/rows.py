"""The shapes of npm local repositories' rows (:mod:`.records` reads and writes them):
a package, its versions, attachments and staged versions, and what a publish adds."""

from __future__ import annotations

from dataclasses import dataclass, field

PUBLISHED, STAGED, UNPUBLISHED = "published", "staged", "unpublished"


@dataclass(frozen=True, slots=True)
class NewAttachment:
    filename: str
    blob_digest: str
    size: int
    content_type: str
    predicate_type: str | None = None


@dataclass(frozen=True, slots=True)
class NewVersion:
    version: str
    manifest: str  # JSON text, without dist
    corgi: str  # the abbreviated form's JSON text, without dist
    dist: str  # dist's JSON text, without the tarball URL
    tarball_digest: str
    size: int
    integrity: str
    shasum: str
    tags: tuple[str, ...]  # dist-tags the publish puts on it
    attachments: tuple[NewAttachment, ...] = ()


@dataclass(slots=True)  # not frozen: a frozen __init__ is five times slower, 5,000 rows a load
class VersionRow:
    version: str
    manifest: str
    corgi: str
    dist: str
    tarball_digest: str | None
    size: int
    integrity: str
    shasum: str
    published_at: float
    deprecated: str | None
    state: str
    stage_id: str | None
    stage_tag: str | None
    staged_by: str | None
    changed: int  # the package serial of the write that last changed it


@dataclass(frozen=True, slots=True)
class AttachmentRow:
    version: str
    filename: str
    blob_digest: str
    size: int
    content_type: str
    predicate_type: str | None


@dataclass(frozen=True, slots=True)
class PackageRows:
    id: int
    name: str
    serial: int
    created_at: float
    modified_at: float
    versions: list[VersionRow] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    attachments: list[AttachmentRow] = field(default_factory=list)

    def published(self) -> list[VersionRow]:
        return [v for v in self.versions if v.state == PUBLISHED]


@dataclass(frozen=True, slots=True)
class StagedRow:
    package: str
    version: VersionRow
