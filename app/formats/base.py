"""The format plugin interface.

A format (generic, oci, pypi, npm, …) lives in its own folder under
``app/formats/`` with its local, remote and virtual behaviour side by side, and
plugs into the service through this one class:

- :meth:`Format.options` validates a repository's ``options`` at start-up;
- :meth:`Format.setup` adds routes of the format's own (``/v2/`` for OCI);
- :meth:`Format.handle` answers ``/repository/<name>/<path>`` for its repositories;
- :meth:`Format.render_error` shapes errors the way the format's clients expect.
"""

from __future__ import annotations

from typing import ClassVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from app.errors import ApiError
from app.repositories import Repository


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Format:
    name: ClassVar[str]
    # The repository kinds this format serves so far.
    kinds: ClassVar[frozenset[str]] = frozenset({"local"})
    # A URL prefix the format owns outright (``/v2/`` for OCI): errors there take its
    # shape even when no route matched.
    path_prefix: ClassVar[str | None] = None

    def options(self, kind: str) -> type[BaseModel]:
        """The pydantic model for a repository's ``options`` of this kind."""
        return NoOptions

    def setup(self, app: web.Application) -> None:
        """Add routes of the format's own; most formats need none."""

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        raise ApiError(f"format {self.name} serves no /repository/ paths")

    def render_error(self, request: web.Request, error: ApiError, request_id: str) -> web.Response:
        body = {"code": error.code, "message": error.message, "request_id": request_id}
        if error.detail is not None:
            body["detail"] = error.detail
        return web.json_response({"error": body}, status=error.status, headers=error.headers)
