"""``/api/v1/repositories/<name>/packages``: a local repository's packages, versions and
files as its format keeps them (:meth:`Format.packages`, :meth:`Format.package`), and
yank, unyank and delete (:meth:`Format.change`); ``/api/v1/repositories/<name>/explain``:
which member of a virtual repository serves a name (:meth:`Format.explain`).

Not administrators only: reading takes ``read`` on the repository, yanking ``write``
and deleting ``delete``, as the format's own endpoints would. npm's scoped names hold a
slash, so a package is ``[@scope/]name``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal
from urllib.parse import quote, urlencode

from aiohttp import web

from app import admin_inputs as inputs
from app import keys
from app.auth.audit import TARGET
from app.auth.permissions import Action
from app.authorising import authorised
from app.errors import BadRequest
from app.formats.base import Format, PackageChange
from app.inputs import whole_number
from app.middleware import FORMATS
from app.repositories import Repository

PAGE = 1000
MAX_PAGE = 10000
MAX_REASON = 1000
MAX_NAME = 1024  # longer than any format's names or paths: refused before a query
MAX_VERSION = 256

_BASE = "/api/v1/repositories/{repository}/packages"
_PACKAGE = _BASE + "/{package:(?:@[^/]+/)?[^/@][^/]*}"
_VERSION = _PACKAGE + "/versions/{version}"
_FILE = _VERSION + "/files/{file}"

Operation = Literal["yank", "unyank", "delete"]


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/repositories/{repository}/explain", explain)
    app.router.add_get(_BASE, list_packages)
    app.router.add_get(_PACKAGE, get_package)
    app.router.add_delete(_PACKAGE, partial(change, "delete"))
    app.router.add_delete(_VERSION, partial(change, "delete"))
    app.router.add_delete(_FILE, partial(change, "delete"))
    for operation in ("yank", "unyank"):
        app.router.add_post(_VERSION + f"/{operation}", partial(change, operation))
        app.router.add_post(_FILE + f"/{operation}", partial(change, operation))


async def list_packages(request: web.Request) -> web.Response:
    repo, fmt = await _allowed(request, "read")
    limit = whole_number(request.query.get("limit", str(PAGE)))
    if limit is None or not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be a whole number between 1 and {MAX_PAGE}")
    after = inputs.text(dict(request.query), "after", "") or ""
    packages = await fmt.packages(repo, after, limit)
    body: dict[str, Any] = {"repository": repo.name, "packages": packages}
    headers = {}
    if len(packages) == limit:
        body["next"] = last = packages[-1]["name"]
        query = urlencode({"limit": limit, "after": last})
        headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return web.json_response(body, headers=headers)


async def get_package(request: web.Request) -> web.Response:
    repo, fmt = await _allowed(request, "read")
    return web.json_response(await fmt.package(repo, request.match_info["package"]))


async def explain(request: web.Request) -> web.Response:
    repo, fmt = await _allowed(request, "read")
    query = dict(request.query)
    name = inputs.text(query, "name", None)
    if not name:
        raise BadRequest("name: the package, project, image or path to explain is required")
    if len(name) > MAX_NAME:
        raise BadRequest(f"name: at most {MAX_NAME} characters")
    version = inputs.text(query, "version", None)
    if version is not None and len(version) > MAX_VERSION:
        raise BadRequest(f"version: at most {MAX_VERSION} characters")
    return web.json_response(await fmt.explain(repo, name, version or None))


async def change(operation: Operation, request: web.Request) -> web.Response:
    match = request.match_info
    reason = None
    if operation == "yank" and request.can_read_body:
        body = await inputs.body(request, {"reason"})
        reason = inputs.text(body, "reason", None)
        if reason is not None and len(reason) > MAX_REASON:
            raise BadRequest(f"reason: at most {MAX_REASON} characters")
    asked = PackageChange(
        operation, match["package"], match.get("version"), match.get("file"), reason
    )
    named = (match["repository"], asked.package, asked.version, asked.file)
    request[TARGET] = f"{operation} " + "/".join(quote(p, safe="@/") for p in named if p)
    repo, fmt = await _allowed(request, asked.action)
    result = await fmt.change(repo, asked)
    return web.json_response(result) if result else web.Response(status=204)


async def _allowed(request: web.Request, action: Action) -> tuple[Repository, Format]:
    """The repository and its format, once the caller may ``action`` in it."""
    app = request.app
    repo = app[keys.REPOSITORIES].get(request.match_info["repository"])
    fmt = app[FORMATS][repo.format]
    await authorised(request, repo, action, fmt)
    return repo, fmt
