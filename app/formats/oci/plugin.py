"""The OCI/Docker registry format: the distribution API under ``/v2/``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, ClassVar

from aiohttp import web
from pydantic import BaseModel

from app.formats.api import ApiError, Format, Repository, Services, Sweep
from app.formats.oci import (
    access,
    blob_routes,
    collection,
    errors,
    manifest_routes,
    records,
    remote,
    virtual,
)
from app.formats.oci.context import LocalOptions
from app.formats.oci.services import Handler, Oci

PUSH_READS = frozenset({
    ("HEAD", "/v2/{name:.+}/blobs/{digest}"),
    ("GET", "/v2/{name:.+}/blobs/uploads/{upload}"),
})  # fmt: skip


class OciFormat(Format):
    name = "oci"
    kinds = frozenset({"local", "remote", "virtual"})
    path_prefix: ClassVar[str | None] = "/v2/"
    blob_references = records.BLOB_REFERENCES
    blob_names = records.BLOB_NAMES
    migrations = resources.files(__package__) / "migrations"

    def options(self, kind: str) -> type[BaseModel]:
        if kind == "virtual":
            return virtual.VirtualOciOptions
        return remote.RemoteOciOptions if kind == "remote" else LocalOptions

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/v2/", self._plain(access.api_root))
        app.router.add_get("/v2/token", self._plain(access.token))
        app.router.add_post("/v2/token", self._plain(access.token))
        for method, path, handler in [*manifest_routes.routes(), *blob_routes.routes()]:
            app.router.add_route(method, path, self._bound(handler, method, path))

    def bind(self, services: Services) -> None:
        super().bind(services)
        self.oci = Oci.of(services)

    def _bound(
        self, handler: Handler, method: str, path: str
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The route aiohttp calls: the caller authorised for what ``method`` does to
        the image the path names (a route naming none only learns who is asking), then
        ``handler`` with the services bound at start-up."""
        action = access.action_of(method)
        names_image = "{name" in path
        # What a push asks before it writes: whether a blob is there (docker and skopeo
        # skip the upload of one that is) and how far an upload got. Through a virtual
        # that is deploy_to's to answer: a remote's "yes, I have that layer" would skip
        # an upload deploy_to then lacks, and would send the layer's digest upstream.
        push_read = (method, path) in PUSH_READS

        async def route(request: web.Request) -> web.StreamResponse:
            oci = self.oci
            if names_image:
                target = oci.lookup(request)
                if action != "read":
                    target = oci.written_to(request, target)
                elif push_read:
                    target = oci.written_to(request, target, refuse=False)
                await access.authorise(oci.services, request, target, action)
            else:
                await access.principal(oci.services, request)
            return await handler(oci, request)

        return route

    def _plain(
        self, handler: Callable[[Services, web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def route(request: web.Request) -> web.StreamResponse:
            return await handler(self.services, request)

        return route

    def challenge(self, request: web.Request, repo: Repository | None) -> str:
        return access.challenge(self.services, request)

    async def explain(self, repo: Repository, name: str, version: str | None) -> dict[str, Any]:
        if repo.kind != "virtual":
            return await super().explain(repo, name, version)
        return await virtual.of(self.oci).explain(repo, name, version)

    async def collect(self, sweep: Sweep) -> None:
        await collection.collect(sweep)

    def render_error(self, request: web.Request, error: ApiError, request_id: str) -> web.Response:
        return errors.render(error, request_id)
