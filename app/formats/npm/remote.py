"""npm remote repositories: a pull-through cache of an npm registry.

Packuments are metadata: cached raw by :mod:`app.formats.npm.cache` (the full and
abbreviated forms apart) and rewritten on the way out so their tarball URLs point
at this repository. Tarballs are artifacts, served through the engine: only those
a packument listed (a client never makes us fetch a URL of its choosing), verified
against the checksum the packument published.
"""

from __future__ import annotations

import hashlib
import json

from aiohttp import web

from app import keys
from app.errors import MethodNotAllowed, NotFound
from app.formats.npm import packuments
from app.formats.npm.cache import packument
from app.formats.npm.names import Target, parse_path
from app.http import etag_matches
from app.proxy.engine import Fetch
from app.proxy.entries import Links
from app.proxy.options import RemoteOptions
from app.repositories import Repository
from pipelines import parse_digest


class RemoteNpmOptions(RemoteOptions):
    """``upstream`` is the registry's root, e.g. https://registry.npmjs.org."""


async def serve(request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(
            f"{repo.name} is a remote repository: only GET and HEAD",
            headers={"Allow": "GET, HEAD"},
        )
    target = parse_path(path)
    if target.tarball is not None:
        return await _tarball(request, repo, target)
    return await _packument(request, repo, target)


async def _packument(request: web.Request, repo: Repository, target: Target) -> web.Response:
    abbreviated = packuments.wants_abbreviated(request.headers.get("Accept"))
    cached = await packument(request, repo, target, abbreviated)
    document = packuments.parse(cached.body, target.package)
    base = f"{request.url.origin()}/repository/{repo.name}"
    body = json.dumps(packuments.rewrite(document, target, base), separators=(",", ":")).encode()
    etag = hashlib.sha256(body).hexdigest()[:32]
    headers = {
        "ETag": f'"{etag}"',
        "X-Cache": cached.how,
        # The rewritten URLs depend on the Host the client used.
        "Vary": "Accept, Host",
    }
    if cached.how == "STALE":
        headers["Warning"] = '110 - "Response is Stale"'
    if etag_matches(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": cached.content_type})


async def _tarball(request: web.Request, repo: Repository, target: Target) -> web.StreamResponse:
    path = f"{target.package}/-/{target.tarball}"
    remembered = await request.app[keys.PROXY].serve_remembered(request, repo, path)
    if remembered is not None:
        return remembered
    link = await Links(request.app[keys.METADATA].db).get(repo.id, path)
    if link is None:
        # Only URLs an upstream packument named are ever fetched.
        raise NotFound(f"{path} not found: no packument lists it")
    fetch = Fetch(
        path=path,
        upstream_path=link.url,
        kind="artifact",
        expected=parse_digest(link.digest, allowed=("sha512", "sha1")) if link.digest else None,
        content_type="application/octet-stream",
    )
    upstream = request.app[keys.UPSTREAMS][repo.name]
    return await request.app[keys.PROXY].serve(request, repo, upstream, fetch)
