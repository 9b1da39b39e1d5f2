"""The pypi format's plugin: local repositories (published with twine, uv, poetry),
remote ones (a pull-through cache of an index) and virtual ones (one index over
members of both, :mod:`virtual`)."""

from __future__ import annotations

from importlib import resources
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from app.formats.api import (
    ApiError,
    Format,
    NotFound,
    PackageChange,
    Repository,
    Services,
    VirtualOptions,
)
from app.formats.pypi import local, remote, virtual
from app.formats.pypi.index import LocalIndex
from app.formats.pypi.manage import Packages
from app.formats.pypi.publish import LocalPypiOptions
from app.formats.pypi.records import BLOB_REFERENCES, PypiRecords


class PypiFormat(Format):
    name = "pypi"
    kinds = frozenset({"local", "remote", "virtual"})
    blob_references = BLOB_REFERENCES
    migrations = resources.files(__package__) / "migrations"

    def options(self, kind: str) -> type[BaseModel]:
        if kind == "virtual":
            return VirtualOptions
        return remote.RemotePypiOptions if kind == "remote" else LocalPypiOptions

    def bind(self, services: Services) -> None:
        super().bind(services)
        self.remote = remote.PypiRemote(services.remote, services.upstreams)
        records = PypiRecords(services.metadata.db)
        index = LocalIndex(records, services.remote.renderings)
        self.local = local.PypiLocal(services.cas, records, index)
        self.manager = Packages(records)
        self.virtual = virtual.PypiVirtual(
            services.virtuals, self.local, self.remote, services.remote.renderings
        )

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        if repo.kind == "remote":
            return await remote.serve(self.remote, request, repo, path)
        if repo.kind == "virtual":  # reads only: writes were re-targeted to deploy_to
            return await virtual.serve(self.virtual, request, repo, path)
        return await local.serve(self.local, request, repo, path, self.services.max_body_size)

    def render_error(self, request: web.Request, error: ApiError, request_id: str) -> web.Response:
        if self._upload(request):
            return local.render_upload_error(error, request_id)
        return super().render_error(request, error, request_id)

    def _upload(self, request: web.Request) -> bool:
        """Whether ``request`` is an upload to a local repository, or through a virtual
        one (its errors, the 405 without ``deploy_to`` too, are answered for twine and
        uv)."""
        match = request.match_info
        if request.method != "POST" or match.get("path", "") not in local.UPLOAD_PATHS:
            return False
        try:
            repo = self.services.repositories.get(match.get("repository", ""))
        except NotFound:
            return False
        return repo.kind in ("local", "virtual")

    async def explain(self, repo: Repository, name: str, version: str | None) -> dict[str, Any]:
        if repo.kind != "virtual":
            return await super().explain(repo, name, version)
        return await self.virtual.explain(repo, name, version)

    async def packages(self, repo: Repository, after: str, limit: int) -> list[dict[str, Any]]:
        _local(repo)
        return await self.manager.packages(repo, after, limit)

    async def package(self, repo: Repository, name: str) -> dict[str, Any]:
        _local(repo)
        return await self.manager.package(repo, name)

    async def change(self, repo: Repository, change: PackageChange) -> dict[str, Any]:
        _local(repo)
        return await self.manager.change(repo.narrowed(LocalPypiOptions), change)


def _local(repo: Repository) -> None:
    if repo.kind != "local":  # a remote keeps a cache, not packages of its own
        raise NotFound(f"repository {repo.name} keeps no packages")
