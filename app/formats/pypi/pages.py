"""The upstream's project pages, through the remote core's cache for documents.

Why not :meth:`RemoteCore.open`: a miss streams the upstream's bytes as they come,
and a project page must be rewritten first (every file URL made one of ours).
:meth:`RemoteCore.document` keeps the core's rules (fresh for ``metadata_ttl``,
revalidation, 404 remembered for ``negative_ttl``, single flight, size cap,
stale-if-error) and hands back the whole page. A newly fetched page is parsed before
it is cached: an unreadable one never replaces a good copy, and the files it lists
are recorded (``remote_links``) then, once per fetch.

:func:`page_document` and :func:`list_document` are the cached documents;
:func:`project_page` and :func:`project_list` render them for our clients.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

from app.formats.api import (
    BadGateway,
    CacheStatus,
    Document,
    Fetch,
    Link,
    Missing,
    NotFound,
    RemoteCore,
    Repository,
    Upstream,
    sized,
)
from app.formats.pypi import merge, simple


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str
    how: CacheStatus


@dataclass(frozen=True, slots=True)
class ProjectPage:
    """A project's files as the upstream's page lists them (URLs still the upstream's)."""

    page: simple.Page
    how: CacheStatus
    digest: str  # of the cached page


def _page_base(upstream: Upstream, project: str) -> str:
    # Relative links resolve against the page's own URL.
    return str(upstream.url(f"simple/{project}/"))


async def page_document(
    core: RemoteCore, repo: Repository, upstream: Upstream, project: str
) -> Document | Missing:
    """The upstream's page for ``project`` (a normalised name), cached under
    ``simple/<project>/``; a new one is checked and its files recorded."""
    key = f"simple/{project}/"
    base = _page_base(upstream, project)

    async def accept(body: bytes) -> None:
        page = await sized(lambda raw: _parse(raw, _kind(raw), base, project, True), body)
        await core.links.put_many(repo.id, _links(page, project))

    fetch = Fetch(path=key, upstream_path=key, kind="metadata", accept=simple.UPSTREAM_ACCEPT)
    return await core.document(repo, upstream, fetch, accept)


async def parsed(doc: Document, upstream: Upstream, project: str) -> simple.Page:
    """A cached page (:func:`page_document`) read and parsed."""
    base = _page_base(upstream, project)
    return await sized(lambda raw: _parse(raw, doc.content_type, base, project), await doc.read())


async def list_document(
    core: RemoteCore, repo: Repository, upstream: Upstream
) -> Document | Missing:
    """The upstream's root page, cached under ``simple/``; a new one is checked."""

    async def accept(body: bytes) -> None:
        await sized(lambda raw: _projects(raw, _kind(raw), True), body)  # pypi.org's is 40 MB

    fetch = Fetch(
        path="simple/", upstream_path="simple/", kind="metadata", accept=simple.UPSTREAM_ACCEPT
    )
    return await core.document(repo, upstream, fetch, accept)


async def project_page(
    core: RemoteCore,
    repo: Repository,
    upstream: Upstream,
    project: str,
    as_json: bool,
    keep: Callable[[simple.DistFile], bool] | None = None,
    tag: Hashable = None,
) -> Rendered:
    """The upstream's page for ``project``, rendered for our clients in the form they
    asked for; only the files ``keep`` keeps (a cooldown), remembered under ``tag``
    too (what ``keep`` depends on)."""
    doc = _found(await page_document(core, repo, upstream, project))
    base = _page_base(upstream, project)

    def render(body: bytes) -> bytes:
        page = _parse(body, doc.content_type, base, project)
        if keep is not None:
            files = [file for file in page.files if keep(file)]
            versions = page.versions
            if versions is not None:  # a version whose every file is hidden is hidden too
                named = {merge.file_version(file.filename) for file in files}
                versions = tuple(v for v in versions if merge.normalised_version(v) in named)
            page = replace(page, files=files, versions=versions)
        return simple.render_json(page, project) if as_json else simple.render_html(page, project)

    remembered = ("pypi-page", doc.digest, project, as_json, tag)
    return await _rendered(core, remembered, doc, render, as_json)


async def project_list(
    core: RemoteCore, repo: Repository, upstream: Upstream, as_json: bool
) -> Rendered:
    """The upstream's root page, its project names read and rendered with links
    relative to this repository."""
    doc = _found(await list_document(core, repo, upstream))

    def render(body: bytes) -> bytes:
        names = _projects(body, doc.content_type)
        return simple.render_projects_json(names) if as_json else simple.render_projects_html(names)

    return await _rendered(core, ("pypi-list", doc.digest, as_json), doc, render, as_json)


async def list_names(doc: Document) -> list[str]:
    """The project names a cached list (:func:`list_document`) has."""
    return await sized(lambda raw: _projects(raw, doc.content_type), await doc.read())


def _found(doc: Document | Missing) -> Document:
    if isinstance(doc, Missing):
        raise NotFound(f"{doc.path} not found upstream", headers={"X-Cache": doc.how})
    return doc


async def _rendered(
    core: RemoteCore,
    key: tuple[Hashable, ...],
    doc: Document,
    render: Callable[[bytes], bytes],
    as_json: bool,
) -> Rendered:
    kept = await core.renderings.rendered(key, doc.read, render)
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
