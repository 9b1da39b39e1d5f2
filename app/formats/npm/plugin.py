"""The npm format's plugin (remote repositories first)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from app.formats.api import Action, ApiError, Format, Repository, Services
from app.formats.npm import remote


class NpmFormat(Format):
    name = "npm"
    kinds = frozenset({"remote"})

    def options(self, kind: str) -> type[BaseModel]:
        return remote.RemoteNpmOptions

    def bind(self, services: Services) -> None:
        super().bind(services)
        self.routes = remote.NpmRoutes(
            remote.NpmRemote(services.remote, services.upstreams), services.external_url
        )

    def action(self, request: web.Request, repo: Repository, path: str) -> Action | None:
        # npm audit POSTs the dependency tree: a question, not a publish.
        if request.method == "POST" and path.startswith("-/npm/v1/security/"):
            return "read"
        return super().action(request, repo, path)

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        return await remote.serve(self.routes, request, repo, path)

    def render_error(self, request: web.Request, error: ApiError, request_id: str) -> web.Response:
        # npm prints "error" from a failed registry response.
        return web.json_response(
            {"error": error.message}, status=error.status, headers=error.headers
        )
