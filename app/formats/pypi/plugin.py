"""The pypi format's plugin (remote repositories first)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from app.formats.base import Format
from app.formats.pypi import remote
from app.repositories import Repository


class PypiFormat(Format):
    name = "pypi"
    kinds = frozenset({"remote"})

    def options(self, kind: str) -> type[BaseModel]:
        return remote.RemotePypiOptions

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        return await remote.serve(request, repo, path)
