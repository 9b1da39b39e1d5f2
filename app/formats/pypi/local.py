"""PyPI local repositories: packages published here with twine, uv or poetry.

    POST ``/`` or ``legacy/``            → an upload (:mod:`publish`), ``write`` needed
    simple/                              → the project list
    simple/<project>/                    → its page (:mod:`index`); other spellings: 301
    files/<project>/<filename>           → the file (ranges, conditional requests)
    files/<project>/<filename>.metadata  → a wheel's METADATA (PEP 658)

Handlers are thin: parse, one call, shape the answer. Errors of an upload are
rendered for twine and uv (:func:`render_upload_error`): PyPI puts the reason in
the status line, which is what twine prints, and the body is that reason in text.
"""

from __future__ import annotations

import re

from aiohttp import web

from app.formats.api import (
    ApiError,
    BlobBody,
    ContentStore,
    MethodNotAllowed,
    NotFound,
    Rendering,
    Repository,
    etag_matches,
    send_blob,
)
from app.formats.pypi import paths, simple
from app.formats.pypi.index import LocalIndex
from app.formats.pypi.publish import LocalPypiOptions, Publisher
from app.formats.pypi.records import PypiRecords

UPLOAD_PATHS = frozenset({"", "legacy", "legacy/"})
_REASON_UNSAFE = re.compile(r"[^\x20-\x7e]")
MAX_REASON = 300


class PypiLocal:
    def __init__(self, cas: ContentStore, records: PypiRecords, index: LocalIndex) -> None:
        self.cas, self.records, self.index = cas, records, index
        self.publisher = Publisher(cas, records)


async def serve(
    local: PypiLocal, request: web.Request, repo: Repository, path: str, max_size: int
) -> web.StreamResponse:
    if request.method == "POST" and path in UPLOAD_PATHS:
        published = await local.publisher.upload(request, repo.narrowed(LocalPypiOptions), max_size)
        said = "OK" if published.created else "OK, the identical file was there already"
        return web.Response(text=said + "\n")
    if request.method not in ("GET", "HEAD"):
        allow = "POST" if path in UPLOAD_PATHS else "GET, HEAD"
        raise MethodNotAllowed(f"{request.method} is not supported here", headers={"Allow": allow})
    where = paths.route(repo, path)
    if isinstance(where, web.Response):
        return where
    as_json = simple.wants_json(request.headers.get("Accept", ""))
    if isinstance(where, paths.ProjectList):
        return page_response(request, await local.index.projects(repo, as_json), as_json)
    if isinstance(where, paths.ProjectPage):
        page = await local.index.page(repo, where.project, as_json)
        if page is None:
            raise NotFound(f"no project {where.project} in {repo.name}")
        return page_response(request, page, as_json)
    return await serve_file(local, request, repo, where.project, where.filename)


def page_response(
    request: web.Request, page: Rendering, as_json: bool, said: dict[str, str] | None = None
) -> web.Response:
    """A simple page (or the project list) as pip and uv are answered, 304 for the ETag
    they hold; ``said``: what a virtual adds about its members."""
    headers = {
        **(said or {}),
        "ETag": f'"{page.etag}"',
        "Vary": "Accept",
        "Cache-Control": "max-age=0, must-revalidate",
        "Content-Type": simple.JSON_TYPE if as_json else "text/html",
    }
    if etag_matches(request.headers.get("If-None-Match"), page.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=page.body, headers=headers)


async def serve_file(
    local: PypiLocal, request: web.Request, repo: Repository, project: str, filename: str
) -> web.StreamResponse:
    """``files/<project>/<filename>`` (``project`` normalised), or its ``.metadata``:
    for this repository's route and for a virtual one whose page lists it."""
    metadata = filename.endswith(".metadata")
    name = filename.removesuffix(".metadata")
    file = await local.records.file(repo.id, name) if simple.safe_filename(name) else None
    if file is None or file.project != project or (metadata and not file.metadata_digest):
        raise NotFound(f"no file {filename[:200]!r} in {repo.name}")
    if metadata:
        assert file.metadata_digest is not None and file.metadata_size is not None
        body = BlobBody.stored(
            local.cas, file.metadata_digest, file.metadata_size, "text/plain; charset=utf-8"
        )
    else:
        body = BlobBody.stored(local.cas, file.blob_digest, file.size, "application/octet-stream")
    return await send_blob(request, body)


def render_upload_error(error: ApiError, request_id: str) -> web.Response:
    """An upload's error as PyPI answers it: the message in the status line (what
    twine prints, and where ``--skip-existing`` looks for ``File already exists``)
    and as the text body (what uv shows)."""
    reason = _REASON_UNSAFE.sub("?", error.message)[:MAX_REASON] or "Error"
    body = f"{error.message}\n(request {request_id})\n"
    return web.Response(
        status=error.status,
        reason=reason,
        text=body,
        headers=error.headers,
    )
