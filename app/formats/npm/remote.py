"""npm remote repositories: a pull-through cache of an npm registry.

Packuments are metadata: cached raw by :mod:`app.formats.npm.cache` (the full and
abbreviated forms apart) and rewritten on the way out so their tarball URLs point
at this repository; one version's document and a package's dist-tags are read from
them. Tarballs are artifacts, served through the engine: only those a packument
listed (a client never makes us fetch a URL of its choosing), verified against the
checksum the packument published.

A cooldown (``min_release_age`` on the remote) holds back versions the upstream
published too recently: they leave the packuments (:mod:`.cooling`, which needs each
version's ``time``, so the full packument is read even for an abbreviated answer),
and their version documents and tarballs are refused.

The registry's own endpoints: ``-/ping`` answers here; searches and audits (``npm
search``, the audit ``npm install`` runs) are relayed to the upstream, never cached.
:class:`NpmRemote` answers as data (what virtual repositories call); :func:`serve` is
the HTTP route.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.formats.api import (
    BadRequest,
    CacheStatus,
    Cooldown,
    Document,
    ExternalUrl,
    Fetch,
    Forbidden,
    MethodNotAllowed,
    Missing,
    NotFound,
    Opened,
    RemoteCore,
    RemoteOptions,
    Rendering,
    Repository,
    Upstream,
    cache_headers,
    edge,
    etag_matches,
    parse_digest,
    read_body,
    read_only,
    relay,
    rendering,
    sized,
)
from app.formats.npm import cooling, packuments
from app.formats.npm.cache import cached_packument, packument
from app.formats.npm.names import Target, check_package, parse_path, unescape_scope


class RemoteNpmOptions(RemoteOptions):
    """``upstream`` is the registry's root, e.g. https://registry.npmjs.org."""


AUDITS = frozenset({"-/npm/v1/security/advisories/bulk", "-/npm/v1/security/audits/quick"})
SEARCH = "-/v1/search"
MAX_AUDIT_BODY = 16 * 1024 * 1024  # a lockfile's worth of names and versions, gzipped
MAX_QUERY = 4096


@dataclass(frozen=True, slots=True)
class Packument:
    """A package's document as the upstream published it (tarball URLs its own)."""

    document: dict[str, Any]
    how: CacheStatus
    digest: str  # of the cached copy


class NpmRemote:
    def __init__(self, core: RemoteCore, upstreams: Mapping[str, Upstream]) -> None:
        self.core, self.upstreams = core, upstreams

    async def document(
        self, repo: Repository, package: str, abbreviated: bool = False
    ) -> Packument | Missing:
        """The packument of ``package`` (:class:`BadRequest` for a name npm refuses)."""
        target = Target(check_package(package))
        upstream = self.upstreams[repo.name]
        doc = await cached_packument(self.core, upstream, repo, target, abbreviated)
        if isinstance(doc, Missing):
            return doc
        parsed = await sized(lambda raw: packuments.parse(raw, target.package), await doc.read())
        return Packument(parsed, doc.how, doc.digest)

    async def tarball_fetch(self, repo: Repository, target: Target) -> Fetch:
        path = f"{target.package}/-/{target.tarball}"
        link = await self.core.links.get(repo.id, path)
        if link is None:
            # Only URLs an upstream packument named are ever fetched.
            raise NotFound(f"{path} not found: no packument lists it")
        return Fetch(
            path=path,
            upstream_path=link.url,
            kind="artifact",
            expected=parse_digest(link.digest, allowed=("sha512", "sha1")) if link.digest else None,
            content_type="application/octet-stream",
        )

    async def open(self, repo: Repository, path: str) -> Opened:
        """A tarball a packument listed (``<package>/-/<file>.tgz``)."""
        target = parse_path(path)
        if target.tarball is None:
            raise NotFound(f"{path} is no tarball")
        cached = f"{target.package}/-/{target.tarball}"
        remembered = await self.core.remembered_hit(repo, cached)  # before the link's query
        if remembered is not None:
            return remembered
        fetch = await self.tarball_fetch(repo, target)
        return await self.core.open(repo, self.upstreams[repo.name], fetch)


@dataclass(frozen=True, slots=True)
class NpmRoutes:
    """What the routes below use, built once when the app starts (NpmFormat.bind)."""

    remote: NpmRemote
    external_url: ExternalUrl  # tarball URLs in a packument point back at this service


async def serve(
    routes: NpmRoutes, request: web.Request, repo: Repository, path: str
) -> web.StreamResponse:
    if path.startswith("-/"):
        return await _endpoint(routes, request, repo, path)
    read_only(request, repo)
    target = parse_path(path)
    if target.tarball is not None:
        return await _tarball(routes, request, repo, target)
    if target.version is not None:
        return await _version(routes, request, repo, target)
    return await _packument(routes, request, repo, target)


async def _endpoint(
    routes: NpmRoutes, request: web.Request, repo: Repository, path: str
) -> web.StreamResponse:
    upstream = routes.remote.upstreams[repo.name]
    if path in AUDITS:
        if request.method != "POST":
            raise MethodNotAllowed(f"{path}: POST only", headers={"Allow": "POST"})
        # npm gzips the body; aiohttp has decoded it by the time it is read here.
        body = await read_body(request, MAX_AUDIT_BODY)
        content_type = request.headers.get("Content-Type", "application/json")
        return await relay(
            request, upstream, path, body=body, headers={"Content-Type": content_type}
        )
    read_only(request, repo)
    if path == "-/ping":
        return web.json_response({}, headers={"X-Cache": "HIT"})
    if path == SEARCH:
        query = request.rel_url.raw_query_string
        if len(query) > MAX_QUERY:
            raise BadRequest(f"search query longer than {MAX_QUERY} characters")
        return await relay(request, upstream, f"{SEARCH}?{query}" if query else SEARCH)
    package, sep, tail = path.removeprefix("-/package/").rpartition("/")
    if path.startswith("-/package/") and sep and tail == "dist-tags":
        target = Target(check_package(unescape_scope(package)))
        cooldown = _cooldown(repo, target)
        cached = await _packument_of(routes, request, repo, target, cooldown is None)
        rendered = await _rendered(routes, request, repo, target, cached, cooldown)
        tags = packuments.dist_tags(json.loads(rendered.body))
        return _json(request, tags, cached.how, "application/json")
    raise NotFound(f"{path} not found")


async def _packument(
    routes: NpmRoutes, request: web.Request, repo: Repository, target: Target
) -> web.Response:
    abbreviated = packuments.wants_abbreviated(request.headers.get("Accept"))
    cooldown = _cooldown(repo, target)
    if cooldown is None:
        cached = await _packument_of(routes, request, repo, target, abbreviated)
        rendered = await _rendered(routes, request, repo, target, cached)
        return _answer(request, rendered, cached.how, cached.content_type)
    cached = await _packument_of(routes, request, repo, target, abbreviated=False)
    rendered = await _rendered(routes, request, repo, target, cached, cooldown, abbreviated)
    content_type = packuments.ABBREVIATED if abbreviated else "application/json"
    return _answer(request, rendered, cached.how, content_type)


async def _version(
    routes: NpmRoutes, request: web.Request, repo: Repository, target: Target
) -> web.Response:
    assert target.version is not None
    cached = await _packument_of(routes, request, repo, target, abbreviated=False)
    cooldown = _cooldown(repo, target)
    rendered = await _rendered(routes, request, repo, target, cached, cooldown)
    rewritten = json.loads(rendered.body)
    manifest = packuments.version_document(rewritten, target.version)
    if manifest is None:
        raise NotFound(f"version not found: {target.version}", headers={"X-Cache": cached.how})
    return _json(request, manifest, cached.how, "application/json")


async def _packument_of(
    routes: NpmRoutes, request: web.Request, repo: Repository, target: Target, abbreviated: bool
) -> Document:
    upstream = routes.remote.upstreams[repo.name]
    return await packument(routes.remote.core, upstream, repo, target, abbreviated)


async def _rendered(
    routes: NpmRoutes,
    request: web.Request,
    repo: Repository,
    target: Target,
    cached: Document,
    cooldown: Cooldown | None = None,
    abbreviated: bool = False,
) -> Rendering:
    """The packument rewritten for this repository's URL: made once per cached copy
    and URL, then remembered (a large packument takes tens of ms to parse and dump).
    Under a cooldown (``cached`` is then the full form), made again each minute."""
    base = f"{routes.external_url(request)}/repository/{repo.name}"
    now = time.time()
    key: tuple[object, ...] = ("npm", cached.digest, base, target.package)

    def render(raw: bytes) -> bytes:
        document = packuments.rewrite(packuments.parse(raw, target.package), target, base)
        if cooldown is not None:
            name = target.package.lower()
            cooling.cooled(document, lambda _version, at: cooldown.hides(name, at, now))
            if abbreviated:
                document = cooling.abbreviated(document)
        return _dumps(document)

    if cooldown is not None:
        key += ("cooldown", int(now // 60), abbreviated)
    return await routes.remote.core.renderings.rendered(key, cached.read, render)


def _cooldown(repo: Repository, target: Target) -> Cooldown | None:
    """The remote's own cooldown, if it holds for ``target``'s package."""
    options = repo.options
    if not isinstance(options, RemoteOptions) or not options.min_release_age:
        return None
    cooldown = Cooldown.of(options, str.lower)  # npm compares names lower case
    return cooldown if cooldown.applies(target.package.lower()) else None


def _dumps(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _json(
    request: web.Request, document: object, how: CacheStatus, content_type: str
) -> web.Response:
    return _answer(request, rendering(_dumps(document)), how, content_type)


def _answer(
    request: web.Request, rendered: Rendering, how: CacheStatus, content_type: str
) -> web.Response:
    """A document made from a cached packument, with its own ETag."""
    headers = {
        "ETag": f'"{rendered.etag}"',
        **cache_headers(how),
        # The rewritten URLs depend on the Host the client used.
        "Vary": "Accept, Host",
    }
    if etag_matches(request.headers.get("If-None-Match"), rendered.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=rendered.body, headers={**headers, "Content-Type": content_type})


async def _tarball(
    routes: NpmRoutes, request: web.Request, repo: Repository, target: Target
) -> web.StreamResponse:
    path = f"{target.package}/-/{target.tarball}"
    remote = routes.remote
    cooldown = _cooldown(repo, target)
    if cooldown is not None:
        cached = await _packument_of(routes, request, repo, target, abbreviated=False)
        rendered = await _rendered(routes, request, repo, target, cached, cooldown)
        if not _lists(json.loads(rendered.body), path):
            raise Forbidden(f"{path} is refused: not listed, or published within min_release_age")
    remembered = await edge.answer_by_cache_path(request, remote.core, repo, path)
    if remembered is not None:
        return remembered
    fetch = await remote.tarball_fetch(repo, target)
    return await edge.serve(request, remote.core, repo, remote.upstreams[repo.name], fetch)


def _lists(document: dict[str, Any], path: str) -> bool:
    """Whether a (rewritten) packument lists the tarball at ``path``."""
    versions = document.get("versions")
    suffix = f"/{path}"
    return isinstance(versions, dict) and any(
        isinstance(m, dict)
        and isinstance(m.get("dist"), dict)
        and str(m["dist"].get("tarball", "")).endswith(suffix)
        for m in versions.values()
    )
