"""Generic remote repositories: any HTTP file tree, cached by path.

A path is immutable once fetched unless it matches one of the repository's
``metadata_paths`` (or names a folder), which are revalidated after ``metadata_ttl``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from urllib.parse import quote

from aiohttp import web

from app import keys
from app.formats.generic.paths import file_path, folder_path
from app.proxy.engine import Fetch, read_only
from app.proxy.options import RemoteOptions
from app.repositories import Repository

# RFC 3986 sub-delims and ':' '@' stay as they are in a path segment.
_SAFE = "/~!$&'()*+,;=:@"


class RemoteGenericOptions(RemoteOptions):
    # Glob patterns (fnmatch, against the whole path) of files that change upstream,
    # e.g. "**/index.yaml" or "*.json"; every other file is cached for good.
    metadata_paths: tuple[str, ...] = ()


async def serve(request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
    read_only(request, repo)
    options = repo.narrowed(RemoteGenericOptions).options
    engine = request.app[keys.PROXY]
    if not path or path.endswith("/"):
        clean, kind = folder_path(path), "metadata"
    else:
        clean = file_path(path)
        remembered = await engine.serve_remembered(request, repo, clean)
        if remembered is not None:
            return remembered
        matches = any(fnmatchcase(clean, pattern) for pattern in options.metadata_paths)
        kind = "metadata" if matches else "artifact"
    fetch = Fetch(path=clean, upstream_path=quote(clean, safe=_SAFE), kind=kind)  # type: ignore[arg-type]
    upstream = request.app[keys.UPSTREAMS][repo.name]
    return await engine.serve(request, repo, upstream, fetch)
