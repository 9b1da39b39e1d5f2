"""The format plugin interface.

A format (generic, oci, pypi, npm, …) lives in its own folder under
``app/formats/`` with its local, remote and virtual behaviour side by side, and
plugs into the service through this one class:

- :meth:`Format.options` validates a repository's ``options`` at start-up;
- :meth:`Format.setup` adds routes of the format's own (``/v2/`` for OCI);
- :meth:`Format.bind` hands it the :class:`Services` once the backends are open: a
  format builds what its handlers use (records, the remote core's per-format face)
  there, once, instead of looking anything up per request;
- :meth:`Format.handle` answers ``/repository/<name>/<path>`` for its repositories,
  once :meth:`Format.action` has said what the request does and the caller may;
- :meth:`Format.challenge` is the ``WWW-Authenticate`` of its 401s;
- :meth:`Format.render_error` shapes errors the way the format's clients expect;
- :meth:`Format.explain` says which member of a virtual repository serves a name;
- :meth:`Format.packages`, :meth:`Format.package` and :meth:`Format.change` are the
  management API's view of a local repository's packages (``/api/v1/repositories/
  <name>/packages``): listing, one package's versions and files, yank and delete;
- :attr:`Format.blob_references`, :attr:`Format.blob_names` and :meth:`Format.collect`
  tell the collector what the format's rows keep alive and what garbage it makes;
- :attr:`Format.migrations` is the folder of the format's own tables' migrations
  (``migrations/NNNN_name.sql`` beside it), applied after the core's at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any, ClassVar, Literal, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from app.auth.permissions import Action
from app.auth.service import Auth
from app.backends.metadata import MetadataStore
from app.backends.storage import BlobStorage
from app.cas import ContentStore
from app.errors import ApiError, NotFound
from app.http import ExternalUrl
from app.proxy.core import RemoteCore
from app.proxy.upstream import Upstream
from app.repositories import Repositories, Repository
from app.virtual import VirtualOptions, Virtuals


@dataclass(frozen=True, slots=True)
class Services:
    """What every format is handed when the app starts (:meth:`Format.bind`)."""

    metadata: MetadataStore  # its ``db`` is what a format's records query
    cas: ContentStore
    repositories: Repositories
    remote: RemoteCore  # the pull-through core every remote repository goes through
    upstreams: Mapping[str, Upstream]  # by remote repository name
    external_url: ExternalUrl  # this service's URL as the client sees it
    max_body_size: int  # server.max_body_size: what one request body may hold
    auth: Auth  # who is asking, and whether they may
    virtuals: Virtuals  # every virtual repository's members, flattened


class Sweep(Protocol):
    """What the collector hands a format's :meth:`Format.collect` for one run."""

    metadata: MetadataStore
    storage: BlobStorage
    cas: ContentStore  # staged parts are dropped through it
    repositories: list[Repository]  # those of the format being asked
    grace_cutoff: float  # epoch seconds: rows untouched since are old enough to go
    upload_cutoff: float  # epoch seconds: upload sessions idle since are abandoned

    @property
    def dry_run(self) -> bool:
        """Count what would go, delete nothing."""

    def freed(self, kind: str, objects: int, size: int) -> None:
        """Count what was (or, in a dry run, would be) deleted."""

    def failed(self, kind: str, error: BaseException) -> None:
        """Record an error; the run goes on with other work."""


@dataclass(frozen=True, slots=True)
class PackageChange:
    """What the management API asks of a local repository's package: a whole package,
    one version of it, or one file of a version (``version`` and ``file`` narrow it)."""

    operation: Literal["yank", "unyank", "delete"]
    package: str
    version: str | None = None
    file: str | None = None
    reason: str | None = None  # why it is yanked (PEP 592), shown to installers

    @property
    def action(self) -> Action:
        """The permission it takes: yanking hides, deleting removes."""
        return "delete" if self.operation == "delete" else "write"


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Format:
    name: ClassVar[str]
    # The repository kinds this format serves so far.
    kinds: ClassVar[frozenset[str]] = frozenset({"local"})
    # A URL prefix the format owns outright (``/v2/`` for OCI): errors there take its
    # shape even when no route matched.
    path_prefix: ClassVar[str | None] = None
    # SQL conditions over the blob aliased ``b``, each true when one of this format's
    # rows references it: the collector keeps such blobs.
    blob_references: ClassVar[tuple[str, ...]] = ()
    # Statements (the blob's digest as ``$1``) deleting rows that only name a blob,
    # run when the collector removes it.
    blob_names: ClassVar[tuple[str, ...]] = ()
    # The format's migrations (``NNNN_name.sql``, numbered on a track of the format's
    # own), e.g. ``resources.files(__package__) / "migrations"``; None if it keeps
    # no tables.
    migrations: ClassVar[Traversable | None] = None

    def options(self, kind: str) -> type[BaseModel]:
        """The pydantic model for a repository's ``options`` of this kind (a virtual
        one's is :class:`VirtualOptions` or a model extending it)."""
        return VirtualOptions if kind == "virtual" else NoOptions

    def setup(self, app: web.Application) -> None:
        """Add routes of the format's own; most formats need none."""

    def bind(self, services: Services) -> None:
        """Take the services once the backends are open, before the first request; a
        format that builds objects of its own from them extends this."""
        self.services = services

    def action(self, request: web.Request, repo: Repository, path: str) -> Action | None:
        """What a request under ``/repository/<name>/`` does, checked before
        :meth:`handle` runs: by its method, unless the format knows better (a POST
        that only searches is a read; an unknown request is a write, never less).
        None for the few requests that are how a client signs in (npm's login): the
        handler checks the credentials they carry itself."""
        method = request.method
        if method in ("GET", "HEAD", "OPTIONS"):
            return "read"
        return "delete" if method == "DELETE" else "write"

    def deployed(self, request: web.Request, path: str) -> bool:
        """Whether a read through a virtual repository asks for what only its
        ``deploy_to`` keeps (npm's staged publishes): the dispatcher sends it there,
        authorised there, as it does every write."""
        return False

    def challenge(self, request: web.Request, repo: Repository | None) -> str:
        """The ``WWW-Authenticate`` a 401 of this format carries."""
        return 'Basic realm="artifactapi"'

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        raise ApiError(f"format {self.name} serves no /repository/ paths")

    # -- the management API's view of local packages (formats that keep packages) ---

    async def packages(self, repo: Repository, after: str, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` packages of a local repository, by name after ``after``:
        JSON objects with at least ``name``."""
        raise NotFound(f"repository {repo.name} keeps no packages")

    async def package(self, repo: Repository, name: str) -> dict[str, Any]:
        """One package (any spelling its format accepts) with its versions and their
        files, as JSON; :class:`NotFound` if there is none."""
        raise NotFound(f"repository {repo.name} keeps no packages")

    async def change(self, repo: Repository, change: PackageChange) -> dict[str, Any]:
        """Yank, unyank or delete (already authorised for ``change.action``); the
        package as :meth:`package` shows it afterwards, or ``{}`` once it is gone. Every
        replica's renderings follow at once."""
        raise NotFound(f"repository {repo.name} keeps no packages")

    async def explain(self, repo: Repository, name: str, version: str | None) -> dict[str, Any]:
        """Which member of virtual ``repo`` serves ``name`` (and ``version``), and why
        each other does not (``app.virtual.explained`` shapes it)."""
        raise NotFound(f"repository {repo.name} is not a virtual repository")

    async def collect(self, sweep: Sweep) -> None:
        """Delete the format's own garbage (sessions, unreachable metadata) before the
        collector looks for orphaned blobs."""

    def render_error(self, request: web.Request, error: ApiError, request_id: str) -> web.Response:
        body = {"code": error.code, "message": error.message, "request_id": request_id}
        if error.detail is not None:
            body["detail"] = error.detail
        return web.json_response({"error": body}, status=error.status, headers=error.headers)
