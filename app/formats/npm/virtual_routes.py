"""The HTTP face of npm virtual repositories: the read half of the registry API
(writes never get here: the dispatcher sends them to ``deploy_to``).

    <pkg>                         the merged packument (abbreviated by Accept);
                                  ``?write=true`` (npm's read before a deprecate or
                                  unpublish): deploy_to's own packument, with its _rev
    <pkg>/<version|tag>           one version's manifest, from the merged packument
    <pkg>/-/<file>.tgz            the tarball, from the member whose version is listed
    -/package/<pkg>/dist-tags     the merged dist-tags
    -/npm/v1/attestations/<pkg>@<version>   from the local member serving it
    -/v1/search                   the local members' packages (remotes are not searched)
    -/npm/v1/security/advisories/bulk   relayed to the first remote member, without
                                  the names the guard keeps from it
    -/ping, the quick audit       answered here
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.formats.api import (
    MEMBER_HEADERS,
    BadRequest,
    BlobBody,
    ExternalUrl,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    Repository,
    edge,
    read_body,
    relay,
    rendering,
    send_blob,
)
from app.formats.npm import documents, packuments
from app.formats.npm.local_routes import AUDITS, document_response, search_query
from app.formats.npm.merging import Form
from app.formats.npm.names import Target, check_package, check_version, parse_path, unescape_scope
from app.formats.npm.remote import MAX_AUDIT_BODY, SEARCH
from app.formats.npm.virtual import Asked, NpmVirtual, nobody

BULK_AUDIT = "-/npm/v1/security/advisories/bulk"
_TAGS = re.compile(r"^-/package/(?P<package>.+?)/dist-tags$")
_ATTESTATIONS = re.compile(r"^-/npm/v1/attestations/(?P<package>.+)@(?P<version>[^@/]+)$")


@dataclass(frozen=True, slots=True)
class VirtualRoutes:
    virtual: NpmVirtual
    external_url: ExternalUrl


async def serve(
    routes: VirtualRoutes, request: web.Request, repo: Repository, path: str
) -> web.StreamResponse:
    path = unescape_scope(path)
    if request.method not in ("GET", "HEAD") and path not in AUDITS:
        raise MethodNotAllowed(
            f"{request.method} is not supported here", headers={"Allow": "GET, HEAD"}
        )
    if path.startswith("-/"):
        return await _endpoint(routes, request, repo, path)
    target = parse_path(path)
    if target.tarball is not None:
        return await _tarball(routes, request, repo, target)
    if target.version is not None:
        asked = await _asked(routes, request, repo, target.package, "full")
        manifest = packuments.version_document(_document(asked), target.version)
        if manifest is None:
            raise NotFound(f"version not found: {target.version}", headers=asked.headers)
        return document_response(request, rendering(documents.dumps(manifest)), asked.headers)
    if "write" in request.query:
        return await _for_writing(routes, request, repo, target.package)
    abbreviated = packuments.wants_abbreviated(request.headers.get("Accept"))
    asked = await _asked(
        routes, request, repo, target.package, "abbreviated" if abbreviated else "full"
    )
    assert asked.merged is not None
    if not asked.merged.versions:
        raise NotFound(f"{target.package} not found: no version to list", headers=asked.headers)
    content_type = packuments.ABBREVIATED if abbreviated else "application/json"
    packed = asked.merged.packed
    if packed is None or not packuments.accepts_gzip(request.headers.get("Accept-Encoding")):
        return document_response(request, asked.merged.rendering, asked.headers, content_type)
    return document_response(
        request, packed, {**asked.headers, "Content-Encoding": "gzip"}, content_type
    )


async def _endpoint(
    routes: VirtualRoutes, request: web.Request, repo: Repository, path: str
) -> web.StreamResponse:
    if path == "-/ping":
        return web.json_response({})
    if path in AUDITS:
        if request.method != "POST":
            raise MethodNotAllowed(f"{path}: POST only", headers={"Allow": "POST"})
        return await _audit(routes, request, repo, path)
    if match := _TAGS.match(path):
        package = check_package(unescape_scope(match["package"]))
        asked = await _asked(routes, request, repo, package, "abbreviated")
        tags = packuments.dist_tags(_document(asked))
        return document_response(request, rendering(documents.dumps(tags)), asked.headers)
    if match := _ATTESTATIONS.match(path):
        package = check_package(unescape_scope(match["package"]))
        version = check_version(match["version"])
        asked = await _asked(routes, request, repo, package, "abbreviated")
        if asked.merged is None or version not in asked.merged.versions:
            raise NotFound(f"no attestations for {package}@{version}", headers=asked.headers)
        member = asked.served_by(version)
        if not member.local:
            raise NotFound(f"no attestations for {package}@{version}: served by {member.repo.name}")
        found = await routes.virtual.local.attestations(member.repo, package, version)
        return web.json_response({"attestations": found})
    if path == SEARCH:
        return await _search(routes, request, repo)
    raise NotFound(f"{path} not found")


async def _audit(
    routes: VirtualRoutes, request: web.Request, repo: Repository, path: str
) -> web.StreamResponse:
    """npm's bulk audit, relayed to the first remote member with the names the guard
    keeps from it taken out; the older "quick" audit (a whole tree, npm's fallback)
    is answered here with no advisories rather than sent out with the team's names."""
    body = await read_body(request, MAX_AUDIT_BODY)
    if path != BULK_AUDIT:
        return web.json_response({})
    try:
        asked = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the audit's body is not JSON") from None
    if not isinstance(asked, dict):
        raise BadRequest("the bulk audit's body is an object of names to versions")
    question = await routes.virtual.audit_question(repo, asked)
    if question is None:
        return web.json_response({})
    member, kept = question
    upstream = routes.virtual.remote.upstreams[member.repo.name]
    headers = {"Content-Type": "application/json"}
    return await relay(request, upstream, path, body=documents.dumps(kept), headers=headers)


async def _search(routes: VirtualRoutes, request: web.Request, repo: Repository) -> web.Response:
    text, start, size = search_query(request)
    local = routes.virtual.local
    objects: dict[str, Any] = {}
    total = 0
    for member in routes.virtual.of(repo).locals:
        found = await local.search(member.repo, text, 0, min(start, 10**6) + size)
        total += found["total"]
        for hit in found["objects"]:
            objects.setdefault(hit["package"]["name"], hit)  # the first member wins
    page = sorted(objects.values(), key=lambda o: str(o["package"]["name"]))
    page = page[start : start + size]
    body = {"objects": page, "total": max(total, len(objects)), "time": documents.iso(time.time())}
    return web.Response(body=documents.dumps(body), content_type="application/json")


async def _tarball(
    routes: VirtualRoutes, request: web.Request, repo: Repository, target: Target
) -> web.StreamResponse:
    """The tarball from the member whose version the merged packument lists: what a
    listing advertises, a download serves."""
    assert target.tarball is not None
    asked = await _asked(routes, request, repo, target.package, "abbreviated")
    merged = asked.merged
    assert merged is not None
    version = merged.files.get(target.tarball)
    if version is None:
        for held_by, held in merged.hidden.items():
            if target.tarball in held.values():
                raise Forbidden(
                    f"{target.package}/-/{target.tarball} is refused: {held_by} published it"
                    " within min_release_age",
                    headers=asked.headers,
                )
        raise NotFound(f"{target.package}/-/{target.tarball} not found", headers=asked.headers)
    member = asked.served_by(version)
    request[MEMBER_HEADERS] = {**asked.headers, "X-Artifactapi-Served-By": member.repo.name}
    virtual = routes.virtual
    if member.local:
        row = await virtual.local.tarball(member.repo, target.package, target.tarball)
        if row.tarball_digest is None:
            raise NotFound("the tarball is gone")
        body = BlobBody.stored(
            virtual.local.cas, row.tarball_digest, row.size, "application/octet-stream"
        )
        return await send_blob(request, body)
    remote = virtual.remote
    cached = await remote.core.remembered_hit(member.repo, f"{target.package}/-/{target.tarball}")
    if cached is not None:
        return await edge.send_cached(request, cached)
    fetch = await remote.tarball_fetch(member.repo, target)
    return await edge.serve(
        request, remote.core, member.repo, remote.upstreams[member.repo.name], fetch
    )


async def _for_writing(
    routes: VirtualRoutes, request: web.Request, repo: Repository, package: str
) -> web.Response:
    """npm reads ``?write=true`` before it sends a change back with the ``_rev`` it
    read: the change goes to deploy_to, so the document is deploy_to's own."""
    virtual = routes.virtual.of(repo)
    if virtual.deploy_to is None:
        raise MethodNotAllowed(
            f"repository {repo.name} is virtual with no deploy_to: change it in a local repository"
        )
    base = _base(routes, request, repo)
    rendered = await routes.virtual.local.packument(virtual.deploy_to, package, base, "full")
    return document_response(request, rendered, {})


async def _asked(
    routes: VirtualRoutes, request: web.Request, repo: Repository, package: str, form: Form
) -> Asked:
    asked = await routes.virtual.asked(repo, package, form, _base(routes, request, repo))
    if asked.merged is None:
        raise nobody(package, asked)
    return asked


def _document(asked: Asked) -> dict[str, Any]:
    assert asked.merged is not None
    document: dict[str, Any] = json.loads(asked.merged.rendering.body)
    return document


def _base(routes: VirtualRoutes, request: web.Request, repo: Repository) -> str:
    return f"{routes.external_url(request)}/repository/{repo.name}"
