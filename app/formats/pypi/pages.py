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

from dataclasses import dataclass

from aiohttp import web

from app import keys
from app.errors import BadGateway
from app.formats.pypi import simple
from app.proxy.engine import Fetch
from app.proxy.entries import Link, Links
from app.proxy.upstream import Upstream
from app.repositories import Repository


@dataclass(frozen=True, slots=True)
class Cached:
    page: simple.Page
    how: str  # HIT, MISS or STALE


async def project_page(
    request: web.Request, repo: Repository, upstream: Upstream, project: str
) -> Cached:
    """The upstream's page for ``project``, parsed; cached under ``simple/<project>/``."""
    key = f"simple/{project}/"
    # Relative links resolve against the page's own URL.
    base = str(upstream.url(key))
    links = Links(request.app[keys.METADATA].db)

    async def accept(body: bytes) -> None:
        # Only the body is known here: JSON is told from HTML by its opening brace.
        kind = simple.JSON_TYPE if body.lstrip()[:1] == b"{" else "text/html"
        page = _parse(body, kind, base, project)
        await links.put_many(repo.id, _links(page, project))

    fetch = Fetch(path=key, upstream_path=key, kind="metadata", accept=simple.UPSTREAM_ACCEPT)
    doc = await request.app[keys.PROXY].document(repo, upstream, fetch, accept)
    return Cached(_parse(doc.body, doc.content_type, base, project), doc.how)


def _parse(body: bytes, content_type: str, base: str, project: str) -> simple.Page:
    try:
        return simple.parse(body, content_type, base, project)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadGateway(f"upstream page for {project} is unreadable: {exc}") from None


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
