"""The pypi format's plugin (remote repositories first)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from app.formats.api import Format, Repository, Services
from app.formats.pypi import remote


class PypiFormat(Format):
    name = "pypi"
    kinds = frozenset({"remote"})

    def options(self, kind: str) -> type[BaseModel]:
        return remote.RemotePypiOptions

    def bind(self, services: Services) -> None:
        super().bind(services)
        self.remote = remote.PypiRemote(services.remote, services.upstreams)

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        return await remote.serve(self.remote, request, repo, path)
