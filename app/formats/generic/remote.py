"""Generic remote repositories: any HTTP file tree, cached by path.

A path is immutable once fetched unless it matches one of the repository's
``metadata_paths`` (or names a folder), which are revalidated after ``metadata_ttl``.
:class:`GenericRemote` answers as data (what virtual repositories call); :func:`serve`
is its HTTP route.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from urllib.parse import quote

from aiohttp import web

from app import keys
from app.formats.generic.paths import file_path, folder_path
from app.proxy import edge
from app.proxy.core import Opened, RemoteCore
from app.proxy.options import RemoteOptions
from app.proxy.results import Document, Fetch, Missing
from app.proxy.upstream import Upstream
from app.repositories import Repository

# RFC 3986 sub-delims and ':' '@' stay as they are in a path segment.
_SAFE = "/~!$&'()*+,;=:@"


class RemoteGenericOptions(RemoteOptions):
    # Glob patterns (fnmatch, against the whole path) of files that change upstream,
    # e.g. "**/index.yaml" or "*.json"; every other file is cached for good.
    metadata_paths: tuple[str, ...] = ()


class GenericRemote:
    def __init__(self, core: RemoteCore, upstreams: dict[str, Upstream]) -> None:
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


async def serve(request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
    edge.read_only(request, repo)
    core = request.app[keys.PROXY]
    remote = GenericRemote(core, request.app[keys.UPSTREAMS])
    fetch = remote.fetch(repo, path)
    if path and not path.endswith("/"):  # a file: perhaps remembered
        remembered = await edge.answer_by_cache_path(request, core, repo, fetch.path)
        if remembered is not None:
            return remembered
    return await edge.serve(request, core, repo, remote.upstreams[repo.name], fetch)
