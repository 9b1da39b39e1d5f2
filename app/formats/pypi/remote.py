"""PyPI remote repositories: a pull-through cache of a "simple" index, for pip.

    simple/                      → the upstream's project list, passed through (metadata)
    simple/<project>/            → the upstream's page, rewritten: every file is ours
    files/<project>/<filename>   → the file the page linked to, verified against its hash

A file is only ever fetched from the URL an upstream page gave for it (a row in
``remote_links``): a client cannot make us fetch a URL of its choosing. With a
``min_release_age`` of its own, a file whose PEP 700 ``upload-time`` is younger (or
not given) is left off the page and refused (404), here and through every virtual
repository the remote is a member of.
:class:`PypiRemote` answers as data (what virtual repositories call); :func:`serve`
is the HTTP route.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from aiohttp import web

from app.formats.api import (
    ALGORITHMS,
    Cooldown,
    Fetch,
    InvalidDigest,
    Missing,
    NotFound,
    Opened,
    RemoteCore,
    RemoteOptions,
    Repository,
    Upstream,
    cache_headers,
    edge,
    parse_digest,
    read_only,
)
from app.formats.pypi import pages, paths, simple
from app.formats.pypi.merge import Memo


class RemotePypiOptions(RemoteOptions):
    """``upstream`` is the index root: ``<upstream>/simple/<project>/`` is a page
    (``https://pypi.org``)."""


class PypiRemote:
    def __init__(self, core: RemoteCore, upstreams: Mapping[str, Upstream]) -> None:
        self.core, self.upstreams = core, upstreams
        # Pages parsed, by the cached page's digest: a virtual repository merging a
        # warm page, or a cooldown reading upload times, parses each copy once.
        self.pages: Memo[simple.Page] = Memo()
        self._cooldowns: dict[str, Cooldown] = {}  # the configuration never changes

    async def document(self, repo: Repository, project: str) -> pages.ProjectPage | Missing:
        """The files the upstream's page lists for ``project`` (any spelling)."""
        if not simple.valid_project(project):
            raise NotFound(f"no project {project[:200]!r}")
        name = simple.normalize(project)
        upstream = self.upstreams[repo.name]
        doc = await pages.page_document(self.core, repo, upstream, name)
        if isinstance(doc, Missing):
            return doc
        key = (repo.id, name, doc.digest)
        page = self.pages.get(key)
        if page is None:
            page = await pages.parsed(doc, upstream, name)
            self.pages.put(key, page, len(page.files) + 1)
        return pages.ProjectPage(page, doc.how, doc.digest)

    def cooldown(self, repo: Repository) -> Cooldown:
        """The remote's own cooldown (``min_release_age``), names as pip spells them."""
        cooldown = self._cooldowns.get(repo.name)
        if cooldown is None:
            options = repo.narrowed(RemotePypiOptions).options
            cooldown = self._cooldowns[repo.name] = Cooldown.of(options, simple.normalize)
        return cooldown

    async def cooling(self, repo: Repository, project: str, filename: str, now: float) -> bool:
        """Whether the remote's own cooldown hides ``filename`` (or the wheel whose
        ``.metadata`` it is) of ``project`` (normalised): too young, of unknown age, or on
        no page at all."""
        cooldown = self.cooldown(repo)
        if not cooldown.applies(project):
            return False
        found = await self.document(repo, project)
        if isinstance(found, Missing):
            return True
        name = filename.removesuffix(".metadata")
        file = next((f for f in found.page.files if f.filename == name), None)
        return file is None or cooldown.hides(project, simple.published(file.upload_time), now)

    async def file_fetch(self, repo: Repository, path: str) -> Fetch:
        """``files/<project>/<filename>``, from the URL its project page gave."""
        link = await self.core.links.get(repo.id, path)
        if link is None:  # only what an upstream page listed, never a URL a client names
            raise NotFound(f"{path} is on no project page; fetch the page first")
        try:
            expected = parse_digest(link.digest, allowed=tuple(ALGORITHMS)) if link.digest else None
        except InvalidDigest:
            expected = None  # simple.py only records well-formed hashes; old rows aside
        return Fetch(path=path, upstream_path=link.url, kind="artifact", expected=expected)

    async def open(self, repo: Repository, path: str) -> Opened:
        """A file a project page listed (``files/<project>/<filename>``)."""
        project, _, filename = path.removeprefix("files/").partition("/")
        if not simple.valid_project(project) or not simple.safe_filename(filename):
            raise NotFound(f"no file {filename[:200]!r}")
        remembered = await self.core.remembered_hit(repo, path)  # before the link's query
        if remembered is not None:
            return remembered
        fetch = await self.file_fetch(repo, path)
        return await self.core.open(repo, self.upstreams[repo.name], fetch)


async def serve(
    remote: PypiRemote, request: web.Request, repo: Repository, path: str
) -> web.StreamResponse:
    read_only(request, repo)
    where = paths.route(repo, path)
    if isinstance(where, web.Response):
        return where
    as_json = simple.wants_json(request.headers.get("Accept", ""))
    upstream = remote.upstreams[repo.name]
    if isinstance(where, paths.ProjectList):
        return _page(await pages.project_list(remote.core, repo, upstream, as_json))
    if isinstance(where, paths.ProjectPage):
        project = where.project
        cooldown = remote.cooldown(repo)
        if not cooldown.applies(project):
            rendered = await pages.project_page(remote.core, repo, upstream, project, as_json)
            return _page(rendered)
        now = time.time()

        def keep(file: simple.DistFile) -> bool:
            return not cooldown.hides(project, simple.published(file.upload_time), now)

        # Kept for the minute: a file listed then is only older later.
        rendered = await pages.project_page(
            remote.core, repo, upstream, project, as_json, keep, ("cooldown", int(now // 60))
        )
        return _page(rendered)
    return await _file(remote, request, repo, where.project, where.filename)


def _page(rendered: pages.Rendered) -> web.Response:
    headers = {
        **cache_headers(rendered.how),
        "Vary": "Accept",
        "Content-Type": rendered.content_type,
    }
    # aiohttp leaves out a HEAD's body
    return web.Response(body=rendered.body, headers=headers)


async def _file(
    remote: PypiRemote, request: web.Request, repo: Repository, project: str, filename: str
) -> web.StreamResponse:
    if not simple.valid_project(project) or not simple.safe_filename(filename):
        raise NotFound(f"no file {filename[:200]!r}")
    if await remote.cooling(repo, simple.normalize(project), filename, time.time()):
        raise NotFound(f"{filename[:200]} is younger than {repo.name}'s min_release_age")
    path = f"files/{project}/{filename}"
    remembered = await edge.answer_by_cache_path(request, remote.core, repo, path)
    if remembered is not None:
        return remembered
    fetch = await remote.file_fetch(repo, path)
    return await edge.serve(request, remote.core, repo, remote.upstreams[repo.name], fetch)
