"""Generic remote repositories: any HTTP file tree, cached by path.

A path is immutable once fetched unless it matches one of the repository's
``metadata_paths`` (or names a folder), which are revalidated after ``metadata_ttl``.
:class:`GenericRemote` answers as data (what virtual repositories call); :func:`serve`
is its HTTP route.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from urllib.parse import quote

from aiohttp import web

from app.formats.api import (
    Dateless,
    Document,
    Fetch,
    Missing,
    Opened,
    RemoteCore,
    RemoteOptions,
    Repository,
    Upstream,
    edge,
)
from app.formats.generic.paths import file_path, folder_path

# RFC 3986 sub-delims and ':' '@' stay as they are in a path segment.
_SAFE = "/~!$&'()*+,;=:@"


class RemoteGenericOptions(Dateless, RemoteOptions):
    # Glob patterns (fnmatch, against the whole path) of files that change upstream,
    # e.g. "**/index.yaml" or "*.json"; every other file is cached for good.
    metadata_paths: tuple[str, ...] = ()


class GenericRemote:
    def __init__(self, core: RemoteCore, upstreams: Mapping[str, Upstream]) -> None:
        self.core, self.upstreams = core, upstreams

    def fetch(self, repo: Repository, path: str) -> Fetch:
        """``path`` as the client wrote it, checked (:class:`BadRequest`) and classified."""
        options = repo.narrowed(RemoteGenericOptions).options
        if not path or path.endswith("/"):
            clean, metadata = folder_path(path), True
        else:
            clean = file_path(path)
            metadata = any(fnmatchcase(clean, pattern) for pattern in options.metadata_paths)
        upstream_path = quote(clean, safe=_SAFE)
        return Fetch(clean, upstream_path, "metadata" if metadata else "artifact")

    async def open(self, repo: Repository, path: str) -> Opened:
        """The file (or folder page) at ``path``, as the upstream published it."""
        return await self.core.open(repo, self.upstreams[repo.name], self.fetch(repo, path))

    async def document(self, repo: Repository, path: str) -> Document | Missing:
        """A folder page or a metadata file, whole."""
        return await self.core.document(
            repo, self.upstreams[repo.name], self.fetch(repo, path), _any
        )


async def _any(body: bytes) -> None:
    """A generic file is whatever the upstream says it is."""


async def serve(
    remote: GenericRemote, request: web.Request, repo: Repository, path: str
) -> web.StreamResponse:
    edge.read_only(request, repo)
    core = remote.core
    fetch = remote.fetch(repo, path)
    if path and not path.endswith("/"):  # a file: perhaps remembered
        remembered = await edge.answer_by_cache_path(request, core, repo, fetch.path)
        if remembered is not None:
            return remembered
    return await edge.serve(request, core, repo, remote.upstreams[repo.name], fetch)
