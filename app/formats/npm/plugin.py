"""The npm format's plugin: remote repositories, and npm's account endpoints (login,
whoami, logout, tokens) on every npm repository's URL."""

from __future__ import annotations

from importlib import resources

from aiohttp import web
from pydantic import BaseModel

from app.formats.api import Action, ApiError, Format, Repository, Services
from app.formats.npm import account_routes, remote
from app.formats.npm.credentials import Accounts
from app.formats.npm.sessions import LoginSessions


class NpmFormat(Format):
    name = "npm"
    kinds = frozenset({"remote"})
    migrations = resources.files(__package__) / "migrations"

    def options(self, kind: str) -> type[BaseModel]:
        return remote.RemoteNpmOptions

    def bind(self, services: Services) -> None:
        super().bind(services)
        self.routes = remote.NpmRoutes(
            remote.NpmRemote(services.remote, services.upstreams), services.external_url
        )
        self.accounts = Accounts(
            services.auth, LoginSessions(services.metadata.db), services.external_url
        )

    def action(self, request: web.Request, repo: Repository, path: str) -> Action | None:
        # Signing in, and a user's own account: the handlers check who is asking.
        if account_routes.is_account_path(path):
            return None
        # npm audit POSTs the dependency tree: a question, not a publish.
        if request.method == "POST" and path.startswith("-/npm/v1/security/"):
            return "read"
        return super().action(request, repo, path)

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        if account_routes.is_account_path(path):
            return await account_routes.serve(self.accounts, request, repo, path)
        return await remote.serve(self.routes, request, repo, path)

    def render_error(self, request: web.Request, error: ApiError, request_id: str) -> web.Response:
        # npm prints "error" from a failed registry response.
        return web.json_response(
            {"error": error.message}, status=error.status, headers=error.headers
        )
