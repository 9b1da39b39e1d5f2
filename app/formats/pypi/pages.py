"""The upstream's project pages, through the engine's cache for documents.

Why not :meth:`RemoteEngine.serve`: the engine streams the upstream's bytes straight
to the client, and a project page must be rewritten first (every file URL made one
of ours). :meth:`RemoteEngine.document` keeps the engine's rules (fresh for
``metadata_ttl``, revalidation, 404 remembered for ``negative_ttl``, single flight,
size cap, stale-if-error) and hands back the whole page. A newly fetched page is
parsed before it is cached: an unreadable one never replaces a good copy, and the
files it lists are recorded (``remote_links``) then, once per fetch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

from aiohttp import web

from app import keys
from app.errors import BadGateway
from app.formats.pypi import simple
from app.proxy.engine import Document, Fetch
from app.proxy.entries import Link, Links
from app.proxy.renderings import sized
from app.proxy.upstream import Upstream
from app.repositories import Repository


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str
    how: str  # HIT, MISS or STALE


async def project_page(
    request: web.Request, repo: Repository, upstream: Upstream, project: str, as_json: bool
) -> Rendered:
    """The upstream's page for ``project`` (cached under ``simple/<project>/``),
    rendered for our clients in the form they asked for."""
    key = f"simple/{project}/"
    # Relative links resolve against the page's own URL.
    base = str(upstream.url(key))
    links = Links(request.app[keys.METADATA].db)

    async def accept(body: bytes) -> None:
        page = await sized(lambda raw: _parse(raw, _kind(raw), base, project, True), body)
        await links.put_many(repo.id, _links(page, project))

    fetch = Fetch(path=key, upstream_path=key, kind="metadata", accept=simple.UPSTREAM_ACCEPT)
    doc = await request.app[keys.PROXY].document(repo, upstream, fetch, accept)

    def render(body: bytes) -> bytes:
        page = _parse(body, doc.content_type, base, project)
        return simple.render_json(page, project) if as_json else simple.render_html(page, project)

    remembered = ("pypi-page", doc.digest, project, as_json)
    return await _rendered(request, remembered, doc, render, as_json)


async def project_list(
    request: web.Request, repo: Repository, upstream: Upstream, as_json: bool
) -> Rendered:
    """The upstream's root page (cached under ``simple/``), its project names read and
    rendered with links relative to this repository."""

    async def accept(body: bytes) -> None:
        await sized(lambda raw: _projects(raw, _kind(raw), True), body)  # pypi.org's is 40 MB

    fetch = Fetch(
        path="simple/", upstream_path="simple/", kind="metadata", accept=simple.UPSTREAM_ACCEPT
    )
    doc = await request.app[keys.PROXY].document(repo, upstream, fetch, accept)

    def render(body: bytes) -> bytes:
        names = _projects(body, doc.content_type)
        return simple.render_projects_json(names) if as_json else simple.render_projects_html(names)

    return await _rendered(request, ("pypi-list", doc.digest, as_json), doc, render, as_json)


async def _rendered(
    request: web.Request,
    key: tuple[Hashable, ...],
    doc: Document,
    render: Callable[[bytes], bytes],
    as_json: bool,
) -> Rendered:
    kept = await request.app[keys.PROXY].renderings.rendered(key, doc.read, render)
    return Rendered(kept.body, simple.JSON_TYPE if as_json else "text/html", doc.how)


def _projects(body: bytes, content_type: str, checked: bool = False) -> list[str]:
    """The names a list has; ``checked`` (a newly fetched one): refused unless it is a
    project list at all (a login page is not)."""
    try:
        return simple.parse_projects(body, content_type, checked)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadGateway(f"upstream simple project list is unusable: {exc}") from None


def _kind(body: bytes) -> str:
    # Only the body is known to accept(): JSON is told from HTML by its opening brace.
    return simple.JSON_TYPE if body.lstrip()[:1] == b"{" else "text/html"


def _parse(
    body: bytes, content_type: str, base: str, project: str, checked: bool = False
) -> simple.Page:
    """The page; ``checked`` (a newly fetched one): refused unless it is the simple page
    of ``project`` (a login page, another project's page are not). A cached copy
    passed that check when it was fetched."""
    try:
        page = simple.parse(body, content_type, base, project)
        if checked:
            simple.check_page(page, project)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadGateway(f"upstream simple page for {project} is unusable: {exc}") from None
    return page


def _links(page: simple.Page, project: str) -> list[Link]:
    links = []
    for file in page.files:
        path = f"files/{project}/{file.filename}"
        links.append(Link(path=path, url=file.url, digest=file.digest))
        if file.core_metadata:
            hashes = file.core_metadata if isinstance(file.core_metadata, dict) else {}
            metadata = simple.DistFile(f"{file.filename}.metadata", f"{file.url}.metadata", hashes)
            links.append(Link(path=f"{path}.metadata", url=metadata.url, digest=metadata.digest))
    return links
