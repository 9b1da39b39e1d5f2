"""The npm format's plugin (remote repositories first)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from app.errors import ApiError
from app.formats.base import Format
from app.formats.npm import remote
from app.repositories import Repository


class NpmFormat(Format):
    name = "npm"
    kinds = frozenset({"remote"})

    def options(self, kind: str) -> type[BaseModel]:
        return remote.RemoteNpmOptions

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        return await remote.serve(request, repo, path)

    def render_error(self, request: web.Request, error: ApiError, request_id: str) -> web.Response:
        # npm prints "error" from a failed registry response.
        return web.json_response(
            {"error": error.message}, status=error.status, headers=error.headers
        )
