"""PyPI remote repositories: a pull-through cache of a "simple" index, for pip.

    simple/                      → the upstream's project list, passed through (metadata)
    simple/<project>/            → the upstream's page, rewritten: every file is ours
    files/<project>/<filename>   → the file the page linked to, verified against its hash

A file is only ever fetched from the URL an upstream page gave for it (a row in
``remote_links``): a client cannot make us fetch a URL of its choosing.
"""

from __future__ import annotations

from aiohttp import web

from app import keys
from app.errors import NotFound
from app.formats.pypi import pages, simple
from app.proxy.engine import Fetch, cache_headers, read_only
from app.proxy.entries import Links
from app.proxy.options import RemoteOptions
from app.proxy.upstream import Upstream
from app.repositories import Repository
from pipelines.digest import ALGORITHMS, InvalidDigest, parse_digest


class RemotePypiOptions(RemoteOptions):
    """``upstream`` is the index root: ``<upstream>/simple/<project>/`` is a page
    (``https://pypi.org``)."""


async def serve(request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
    read_only(request, repo)
    parts = path.split("/")
    if parts[0] == "simple":
        if len(parts) == 1:
            return _redirect(repo, "simple/")
        if len(parts) == 2 and parts[1] == "":
            return await _project_list(request, repo)
        if len(parts) == 2 or (len(parts) == 3 and parts[2] == ""):
            return await _project_page(request, repo, parts[1], slash=len(parts) == 3)
    elif parts[0] == "files" and len(parts) == 3:
        return await _file(request, repo, parts[1], parts[2])
    raise NotFound(f"{path} not found")


def _redirect(repo: Repository, path: str) -> web.Response:
    # Returned, not raised: an aiohttp redirect raised would be rendered as an error.
    location = f"/repository/{repo.name}/{path}"
    return web.Response(status=301, headers={"Location": location})


def _upstream(request: web.Request, repo: Repository) -> Upstream:
    return request.app[keys.UPSTREAMS][repo.name]


async def _project_list(request: web.Request, repo: Repository) -> web.StreamResponse:
    as_json = simple.wants_json(request.headers.get("Accept", ""))
    return _page(await pages.project_list(request, repo, _upstream(request, repo), as_json))


async def _project_page(
    request: web.Request, repo: Repository, name: str, slash: bool
) -> web.StreamResponse:
    if not simple.valid_project(name):
        raise NotFound(f"no project {name[:200]!r}")
    project = simple.normalize(name)
    if project != name or not slash:
        return _redirect(repo, f"simple/{project}/")
    as_json = simple.wants_json(request.headers.get("Accept", ""))
    upstream = _upstream(request, repo)
    return _page(await pages.project_page(request, repo, upstream, project, as_json))


def _page(rendered: pages.Rendered) -> web.Response:
    headers = {
        **cache_headers(rendered.how),
        "Vary": "Accept",
        "Content-Type": rendered.content_type,
    }
    # aiohttp leaves out a HEAD's body
    return web.Response(body=rendered.body, headers=headers)


async def _file(
    request: web.Request, repo: Repository, project: str, filename: str
) -> web.StreamResponse:
    if not simple.valid_project(project) or not simple.safe_filename(filename):
        raise NotFound(f"no file {filename[:200]!r}")
    path = f"files/{project}/{filename}"
    remembered = await request.app[keys.PROXY].serve_remembered(request, repo, path)
    if remembered is not None:
        return remembered
    link = await Links(request.app[keys.METADATA].db).get(repo.id, path)
    if link is None:  # only what an upstream page listed, never a URL a client names
        raise NotFound(f"{path} is on no project page; fetch the page first")
    try:
        expected = parse_digest(link.digest, allowed=tuple(ALGORITHMS)) if link.digest else None
    except InvalidDigest:
        expected = None  # simple.py only records well-formed hashes; old rows aside
    fetch = Fetch(path=path, upstream_path=link.url, kind="artifact", expected=expected)
    return await request.app[keys.PROXY].serve(request, repo, _upstream(request, repo), fetch)
