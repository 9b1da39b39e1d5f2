"""What every OCI handler needs: the repository and image a request names, and services."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from app import keys
from app.cas import ContentStore
from app.errors import NotFound
from app.formats.oci.errors import NameUnknown, Unsupported
from app.formats.oci.manifests import MAX_INDEX_ENTRIES, MAX_LAYERS, Limits
from app.formats.oci.names import ImageName, parse_name
from app.formats.oci.records import OciRecords
from app.repositories import Repository

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # May blobs and manifests be deleted (DELETE, skopeo delete)?
    delete: bool = True
    # Does the collector delete manifests no tag, index or subject reaches?
    gc_untagged: bool = False
    # Descriptors one manifest may list (layers or artifact blobs; index entries): what a
    # push costs to check grows with them, and no real image comes near.
    max_layers: int = Field(default=MAX_LAYERS, ge=1, le=100_000)
    max_index_entries: int = Field(default=MAX_INDEX_ENTRIES, ge=1, le=100_000)

    def limits(self) -> Limits:
        return Limits(layers=self.max_layers, index_entries=self.max_index_entries)


@dataclass(frozen=True, slots=True)
class Target:
    repo: Repository
    image: str

    @property
    def name(self) -> str:
        """The full name as clients spell it: ``<repository>/<image>``."""
        return f"{self.repo.name}/{self.image}"


def lookup(request: web.Request) -> Target:
    """The repository and image a request names, whatever the repository's kind."""
    name: ImageName = parse_name(request.match_info["name"])
    try:
        repo = request.app[keys.REPOSITORIES].get(name.repository, format="oci")
    except NotFound:
        raise NameUnknown(f"repository {name.repository!r} not known to this registry") from None
    return Target(repo, name.image)


def target(request: web.Request) -> Target:
    """A local repository's image: the only kind that takes pushes and deletes."""
    t = lookup(request)
    if t.repo.kind != "local":
        raise Unsupported(f"repository {t.repo.name} is {t.repo.kind}: it takes no pushes")
    return t


def records(request: web.Request) -> OciRecords:
    return OciRecords(request.app[keys.METADATA].db)


def cas(request: web.Request) -> ContentStore:
    return request.app[keys.CAS]


def max_body(request: web.Request) -> int:
    return int(request.app[keys.CONFIG].server.max_body_size)


def deletes_allowed(t: Target) -> None:
    options = t.repo.narrowed(LocalOptions).options
    if not options.delete:
        raise Unsupported(f"repository {t.repo.name} does not allow deletes")
