"""The HTTP face of npm local repositories: the registry API the npm CLI speaks, each
request parsed here and answered by one call to :class:`~.local.NpmLocal`.

Paths under a repository (the scope's slash may come escaped, ``@scope%2fname``)::

    <pkg>                          GET packument (?write=true too), PUT publish/deprecate
    <pkg>/<version|tag>            GET one version's manifest
    <pkg>/-/<file>.tgz             GET a tarball
    <pkg>/-rev/<rev>               PUT the packument minus versions, DELETE all of it
    <pkg>/-/<file>.tgz/-rev/<rev>  DELETE one version's tarball (the unpublish's last step)
    -/package/<pkg>/dist-tags[/<tag>]        GET, PUT, DELETE dist-tags
    -/npm/v1/attestations/<pkg>@<version>    GET provenance bundles
    -/v1/search?text=&size=&from=             npm search, over package names
    -/stage[/package/<pkg>|/<id>[/approve|/tarball]]   staged publishing (npm stage)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.formats.api import (
    PRINCIPAL,
    Action,
    Auth,
    BadRequest,
    BlobBody,
    ExternalUrl,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Principal,
    Rendering,
    Repository,
    etag_matches,
    read_body,
    request_body,
    send_blob,
)
from app.formats.npm import documents, packuments
from app.formats.npm.local import Form, NpmLocal
from app.formats.npm.names import check_package, check_tarball, check_version, unescape_scope
from app.formats.npm.remote import MAX_QUERY, SEARCH
from app.formats.npm.rows import StagedRow

_REV = re.compile(r"^(?P<package>.+?)/-rev/(?P<rev>[0-9A-Za-z-]{1,80})$")
_TARBALL_REV = re.compile(r"^(?P<package>.+?)/-/(?P<file>[^/]+)/-rev/(?P<rev>[0-9A-Za-z-]{1,80})$")
_TAGS = re.compile(r"^-/package/(?P<package>.+?)/dist-tags(?:/(?P<tag>[^/]+))?$")
_ATTESTATIONS = re.compile(r"^-/npm/v1/attestations/(?P<package>.+)@(?P<version>[^@/]+)$")
_STAGE = re.compile(r"^-/stage/(?P<id>[0-9a-fA-F-]{36})(?:/(?P<what>approve|tarball))?$")
_STAGE_PACKAGE = "-/stage/package/"
MAX_SMALL_BODY = 64 * 1024 * 1024  # a packument sent back to unpublish: metadata only
AUDITS = ("-/npm/v1/security/advisories/bulk", "-/npm/v1/security/audits/quick")


@dataclass(frozen=True, slots=True)
class LocalRoutes:
    local: NpmLocal
    auth: Auth
    external_url: ExternalUrl
    challenge: Callable[[web.Request, Repository], str]  # the format's WWW-Authenticate


def is_stage_path(path: str) -> bool:
    """``-/stage``, a staged publish, its tarball or approval (npm stage …)."""
    path = unescape_scope(path)
    return path == "-/stage" or path.startswith(_STAGE_PACKAGE) or bool(_STAGE.match(path))


def action(request: web.Request, path: str) -> Action | None:
    """What a request to a local repository needs, where its method does not say:
    dist-tag removal and rejecting a staged publish are writes, not deletes."""
    path = unescape_scope(path)
    if request.method == "DELETE" and (_TAGS.match(path) or _STAGE.match(path)):
        return "write"
    if request.method == "POST" and path in AUDITS:
        return "read"
    return None


async def serve(
    routes: LocalRoutes, request: web.Request, repo: Repository, path: str
) -> web.StreamResponse:
    path = unescape_scope(path)
    if path.startswith("-/"):
        return await _endpoint(routes, request, repo, path)
    method = request.method
    if match := _TARBALL_REV.match(path):
        _only(request, "DELETE")
        package = check_package(match["package"])
        tarball = check_tarball(match["file"])
        await routes.local.unpublish(repo, package, match["rev"], tarball)
        return _ok(package)
    if match := _REV.match(path):
        package = check_package(match["package"])
        if method == "DELETE":
            await routes.local.unpublish(repo, package, match["rev"])
            return _ok(package)
        _only(request, "PUT", "DELETE")
        document = await _json_body(request)
        if not isinstance(document, dict):
            raise BadRequest("the body must be the packument")
        await routes.local.revise(
            repo, package, match["rev"], document, lambda: _may_delete(routes, request, repo)
        )
        return _ok(package)
    package, sep, tail = path.partition("/-/")
    if sep:
        _only(request, "GET", "HEAD")
        return await _tarball(routes, request, repo, check_package(package), check_tarball(tail))
    parts = path.split("/")
    depth = 2 if path.startswith("@") else 1
    package = check_package("/".join(parts[:depth]))
    if len(parts) == depth + 1:
        _only(request, "GET", "HEAD")
        manifest = await routes.local.version(
            repo, package, check_version(parts[-1]), _base(routes, request, repo)
        )
        return _json(request, manifest)
    if len(parts) != depth:
        raise NotFound(f"{path} not found")
    if method == "PUT":
        return await _publish(routes, request, repo, package, stage=False)
    _only(request, "GET", "HEAD", "PUT")
    return await _packument(routes, request, repo, package)


async def _packument(
    routes: LocalRoutes, request: web.Request, repo: Repository, package: str
) -> web.Response:
    """The packument: abbreviated when asked for (not for ``?write=true``, the read of a
    read-modify-write), gzipped when accepted, 304 for the ETag the client holds."""
    abbreviated = packuments.wants_abbreviated(request.headers.get("Accept")) and (
        "write" not in request.query
    )
    form: Form = "abbreviated" if abbreviated else "full"
    gzipped = packuments.accepts_gzip(request.headers.get("Accept-Encoding"))
    base = _base(routes, request, repo)
    rendered = await routes.local.packument(repo, package, base, form, gzipped)
    content_type = packuments.ABBREVIATED if abbreviated else "application/json"
    return document_response(
        request, rendered, {"Content-Encoding": "gzip"} if gzipped else {}, content_type
    )


def search_query(request: web.Request) -> tuple[str, int, int]:
    """``npm search``'s text, ``from`` and ``size``, bounded before a query."""
    query = request.query
    size, start = query.get("size", "20"), query.get("from", "0")
    if not (size.isdigit() and start.isdigit()) or not 1 <= int(size) <= 250:
        raise BadRequest("size (1 to 250) and from must be whole numbers")
    text = query.get("text", "")
    if len(text) > MAX_QUERY:
        raise BadRequest(f"search text longer than {MAX_QUERY} characters")
    return text, int(start), int(size)


def document_response(
    request: web.Request,
    rendered: Rendering,
    extra: dict[str, str],
    content_type: str = "application/json",
) -> web.Response:
    """A packument (or another rendered document) as npm is answered: revalidated every
    time (``no-cache``), 304 for the ETag it holds; ``extra``: its encoding, what a virtual
    says of its members."""
    headers = {
        "ETag": f'"{rendered.etag}"',
        "Cache-Control": "no-cache",
        "Vary": "Accept, Accept-Encoding, Host",
        **extra,
    }
    if etag_matches(request.headers.get("If-None-Match"), rendered.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=rendered.body, headers={**headers, "Content-Type": content_type})


async def _endpoint(
    routes: LocalRoutes, request: web.Request, repo: Repository, path: str
) -> web.StreamResponse:
    local = routes.local
    if path == "-/ping":
        return web.json_response({})
    if path in AUDITS:
        _only(request, "POST")
        return web.json_response({})  # nothing published here has advisories
    if path == SEARCH:
        _only(request, "GET", "HEAD")
        text, start, size = search_query(request)
        return _json(request, await local.search(repo, text, min(start, 10**6), size))
    if match := _TAGS.match(path):
        package = _package(match["package"])
        tag = match["tag"]
        if tag is None:
            _only(request, "GET", "HEAD")
            return _json(request, await local.tags(repo, package))
        if request.method == "PUT":
            return _json(
                request, await local.set_tag(repo, package, tag, await _json_body(request))
            )
        _only(request, "PUT", "DELETE")
        return _json(request, await local.remove_tag(repo, package, tag))
    if match := _ATTESTATIONS.match(path):
        _only(request, "GET", "HEAD")
        package = _package(match["package"])
        found = await local.attestations(repo, package, check_version(match["version"]))
        return _json(request, {"attestations": found})
    if path.startswith(_STAGE_PACKAGE):
        _only(request, "POST")
        package = _package(path.removeprefix(_STAGE_PACKAGE))
        return await _publish(routes, request, repo, package, stage=True)
    if path == "-/stage":
        _only(request, "GET", "HEAD")
        return await _stage_list(routes, request, repo)
    if match := _STAGE.match(path):
        stage_id, what = match["id"].lower(), match["what"]
        if what == "approve":
            _only(request, "POST")
            return _json(request, _stage_item(await local.approve(repo, stage_id)))
        if what == "tarball":
            _only(request, "GET", "HEAD")
            staged = await local.staged(repo, stage_id)
            return await _send_tarball(
                routes, request, staged.version.tarball_digest, staged.version.size
            )
        if request.method == "DELETE":
            await local.reject(repo, stage_id)
            return _ok(stage_id)
        _only(request, "GET", "HEAD", "DELETE")
        return _json(request, _stage_item(await local.staged(repo, stage_id)))
    raise NotFound(f"{path} not found")


async def _publish(
    routes: LocalRoutes, request: web.Request, repo: Repository, package: str, stage: bool
) -> web.Response:
    limit = routes.local.max_body
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    principal: Principal | None = request.get(PRINCIPAL)
    actor = principal.name if principal is not None else ""
    done = await routes.local.put(repo, package, request_body(request), actor, stage)
    body: dict[str, Any] = {"ok": True, "id": package}
    if done.stage_id is not None:
        body["stageId"] = done.stage_id
    return web.json_response(body, status=201 if done.version else 200)


async def _stage_list(routes: LocalRoutes, request: web.Request, repo: Repository) -> web.Response:
    query = request.query
    page, per_page = query.get("page", "0"), query.get("perPage", "100")
    if not (page.isdigit() and per_page.isdigit()) or not 1 <= int(per_page) <= 1000:
        raise BadRequest("page and perPage (1 to 1000) must be whole numbers")
    package = query.get("package")
    if package is not None:
        check_package(package)
    size = int(per_page)
    rows, total = await routes.local.staged_list(repo, package, min(int(page), 10**6), size)
    return _json(request, {"items": [_stage_item(r) for r in rows], "total": total})


def _stage_item(staged: StagedRow) -> dict[str, Any]:
    """A staged version as ``npm stage list|view`` prints it."""
    version = staged.version
    return {
        "id": version.stage_id,
        "packageName": staged.package,
        "version": version.version,
        "tag": version.stage_tag or "latest",
        "createdAt": documents.iso(version.published_at),
        "actor": version.staged_by or "",
        "actorType": "user",
        "shasum": version.shasum,
        "integrity": version.integrity,
        "state": version.state,
    }


async def _tarball(
    routes: LocalRoutes, request: web.Request, repo: Repository, package: str, filename: str
) -> web.StreamResponse:
    row = await routes.local.tarball(repo, package, filename)
    return await _send_tarball(routes, request, row.tarball_digest, row.size)


async def _send_tarball(
    routes: LocalRoutes, request: web.Request, digest: str | None, size: int
) -> web.StreamResponse:
    if digest is None:
        raise NotFound("the tarball is gone")
    body = BlobBody.stored(routes.local.cas, digest, size, "application/octet-stream")
    return await send_blob(request, body)


async def _may_delete(routes: LocalRoutes, request: web.Request, repo: Repository) -> None:
    """A PUT that removes versions is an unpublish: it takes ``delete``."""
    principal: Principal = request[PRINCIPAL]
    await routes.auth.authorise(
        principal,
        repo.name,
        "delete",
        lambda: routes.challenge(request, repo),
        repo.anonymous_read,
    )


async def _json_body(request: web.Request) -> Any:
    raw = await read_body(request, MAX_SMALL_BODY)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON") from None


def _package(text: str) -> str:
    """A package named inside an endpoint's path, where npm escapes the scope's slash."""
    return check_package(unescape_scope(text))


def _base(routes: LocalRoutes, request: web.Request, repo: Repository) -> str:
    return f"{routes.external_url(request)}/repository/{repo.name}"


def _only(request: web.Request, *methods: str) -> None:
    if request.method not in methods:
        allow = ", ".join(methods)
        raise MethodNotAllowed(f"{request.method} is not supported here", headers={"Allow": allow})


def _ok(name: str) -> web.Response:
    return web.json_response({"ok": True, "id": name})


def _json(request: web.Request, document: object) -> web.Response:
    return web.Response(body=documents.dumps(document), content_type="application/json")
