"""The OCI/Docker registry format: the distribution API under ``/v2/``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import ClassVar

from aiohttp import web
from pydantic import BaseModel

from app.formats.api import ApiError, Format, Services, Sweep
from app.formats.oci import blob_routes, collection, errors, manifest_routes, records, remote
from app.formats.oci.context import API_VERSION, LocalOptions
from app.formats.oci.services import Handler, Oci


async def api_root(request: web.Request) -> web.Response:
    """``GET /v2/``: the registry speaks the distribution API (no auth yet)."""
    return web.json_response({}, headers=API_VERSION)


class OciFormat(Format):
    name = "oci"
    kinds = frozenset({"local", "remote"})
    path_prefix: ClassVar[str | None] = "/v2/"
    blob_references = records.BLOB_REFERENCES
    blob_names = records.BLOB_NAMES
    migrations = resources.files(__package__) / "migrations"

    def options(self, kind: str) -> type[BaseModel]:
        return remote.RemoteOciOptions if kind == "remote" else LocalOptions

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/v2/", api_root)
        for method, path, handler in [*manifest_routes.routes(), *blob_routes.routes()]:
            app.router.add_route(method, path, self._bound(handler))

    def bind(self, services: Services) -> None:
        super().bind(services)
        self.oci = Oci.of(services)

    def _bound(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The route aiohttp calls: ``handler`` with the services bound at start-up."""

        async def route(request: web.Request) -> web.StreamResponse:
            return await handler(self.oci, request)

        return route

    async def collect(self, sweep: Sweep) -> None:
        await collection.collect(sweep)

    def render_error(self, request: web.Request, error: ApiError, request_id: str) -> web.Response:
        return errors.render(error, request_id)
