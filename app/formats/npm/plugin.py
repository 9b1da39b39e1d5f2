"""The npm format's plugin: local repositories (publish, unpublish, dist-tags, staged
publishing), remote repositories, virtual repositories over both, and npm's account
endpoints (login, whoami, logout, tokens) on every npm repository's URL."""

from __future__ import annotations

from importlib import resources
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from app.formats.api import (
    Action,
    ApiError,
    Format,
    NoOptions,
    NotFound,
    PackageChange,
    Repository,
    Services,
    VirtualOptions,
)
from app.formats.npm import account_routes, local_routes, remote, virtual_routes
from app.formats.npm.credentials import Accounts
from app.formats.npm.local import NpmLocal
from app.formats.npm.records import BLOB_REFERENCES, NpmRecords
from app.formats.npm.sessions import LoginSessions
from app.formats.npm.virtual import NpmVirtual


class NpmFormat(Format):
    name = "npm"
    kinds = frozenset({"local", "remote", "virtual"})
    blob_references = BLOB_REFERENCES
    migrations = resources.files(__package__) / "migrations"

    def options(self, kind: str) -> type[BaseModel]:
        if kind == "virtual":
            return VirtualOptions
        return remote.RemoteNpmOptions if kind == "remote" else NoOptions

    def bind(self, services: Services) -> None:
        super().bind(services)
        npm_remote = remote.NpmRemote(services.remote, services.upstreams)
        self.routes = remote.NpmRoutes(npm_remote, services.external_url)
        self.local = NpmLocal(
            NpmRecords(services.metadata.db),
            services.cas,
            services.remote.renderings,
            services.max_body_size,
        )
        self.local_routes = local_routes.LocalRoutes(
            self.local, services.auth, services.external_url, self.challenge
        )
        self.virtual = NpmVirtual(
            services.virtuals, self.local, npm_remote, services.remote.renderings
        )
        self.virtual_routes = virtual_routes.VirtualRoutes(self.virtual, services.external_url)
        self.accounts = Accounts(
            services.auth, LoginSessions(services.metadata.db), services.external_url
        )

    def action(self, request: web.Request, repo: Repository, path: str) -> Action | None:
        # Signing in, and a user's own account: the handlers check who is asking.
        if account_routes.is_account_path(path):
            return None
        # A virtual's writes are deploy_to's (the dispatcher sends them there), so they
        # take what the same write to a local repository takes.
        if repo.kind in ("local", "virtual"):
            local_action = local_routes.action(request, path)
            if local_action is not None:
                return local_action
        # npm audit POSTs the dependency tree: a question, not a publish.
        if request.method == "POST" and path.startswith("-/npm/v1/security/"):
            return "read"
        return super().action(request, repo, path)

    def deployed(self, request: web.Request, path: str) -> bool:
        # Staged publishes wait in the repository they were published to.
        return local_routes.is_stage_path(path)

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        if account_routes.is_account_path(path):
            return await account_routes.serve(self.accounts, request, repo, path)
        if repo.kind == "local":
            return await local_routes.serve(self.local_routes, request, repo, path)
        if repo.kind == "virtual":
            return await virtual_routes.serve(self.virtual_routes, request, repo, path)
        return await remote.serve(self.routes, request, repo, path)

    async def packages(self, repo: Repository, after: str, limit: int) -> list[dict[str, Any]]:
        return await self.local.packages(self._local(repo), after, limit)

    async def package(self, repo: Repository, name: str) -> dict[str, Any]:
        return await self.local.package(self._local(repo), name)

    async def change(self, repo: Repository, change: PackageChange) -> dict[str, Any]:
        return await self.local.change(self._local(repo), change)

    async def explain(self, repo: Repository, name: str, version: str | None) -> dict[str, Any]:
        if repo.kind != "virtual":
            raise NotFound(f"repository {repo.name} is not a virtual repository")
        return await self.virtual.explain(repo, name, version)

    def _local(self, repo: Repository) -> Repository:
        if repo.kind != "local":
            raise NotFound(f"repository {repo.name} keeps no packages: it is a {repo.kind}")
        return repo

    def render_error(self, request: web.Request, error: ApiError, request_id: str) -> web.Response:
        # npm prints "error" from a failed registry response.
        return web.json_response(
            {"error": error.message}, status=error.status, headers=error.headers
        )
