"""What OCI handlers share: a local repository's options, the image a request names (Target)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from app.formats.api import Repository
from app.formats.oci.errors import Unsupported
from app.formats.oci.manifests import MAX_INDEX_ENTRIES, MAX_LAYERS, Limits

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
    # A write through a virtual repository lands in its deploy_to (``repo``), but the
    # client goes on naming the virtual: Locations, scopes and messages say what it said.
    spelled: str | None = None

    @property
    def name(self) -> str:
        """The full name as clients spell it: ``<repository>/<image>``."""
        return self.spelled or f"{self.repo.name}/{self.image}"


def deletes_allowed(t: Target) -> None:
    options = t.repo.narrowed(LocalOptions).options
    if not options.delete:
        raise Unsupported(f"repository {t.repo.name} does not allow deletes")
