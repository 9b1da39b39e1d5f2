"""The pypi format's plugin (remote repositories first)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from app.errors import NotFound
from app.formats.base import Format
from app.proxy.options import RemoteOptions
from app.repositories import Repository


class PypiFormat(Format):
    name = "pypi"
    kinds = frozenset({"remote"})

    def options(self, kind: str) -> type[BaseModel]:
        return RemoteOptions

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        raise NotFound(f"{path} not found")
