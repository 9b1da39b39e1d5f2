"""OCI remote repositories: a pull-through cache of any distribution-API registry.

Manifests by digest and blobs are immutable and verified against their digest while
they stream; manifests by tag and tag lists are metadata, revalidated after the
repository's ``metadata_ttl``. The upstream's token flow (``WWW-Authenticate:
Bearer realm=…``) is handled by :mod:`app.proxy.upstream`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from app import keys
from app.errors import NotFound
from app.formats.oci import manifests
from app.formats.oci.context import API_VERSION, Target
from app.formats.oci.errors import BlobUnknown, ManifestUnknown, NameUnknown, OciError
from app.proxy.engine import Fetch
from app.proxy.options import RemoteOptions
from pipelines import Digest

# What we take from the upstream: every modern manifest type, multi-platform first.
ACCEPT = ", ".join(
    [
        manifests.OCI_INDEX,
        manifests.DOCKER_LIST,
        manifests.OCI_MANIFEST,
        manifests.DOCKER_MANIFEST,
    ]
)
_HEADERS = tuple(API_VERSION.items())


class RemoteOciOptions(RemoteOptions):
    # Docker Hub keeps official images under library/: "nginx" is "library/nginx".
    library_prefix: bool = False


def _upstream_image(t: Target) -> str:
    options = t.repo.narrowed(RemoteOciOptions).options
    if options.library_prefix and "/" not in t.image:
        return f"library/{t.image}"
    return t.image


async def get_manifest(
    request: web.Request, t: Target, reference: str | Digest
) -> web.StreamResponse:
    path = f"{_upstream_image(t)}/manifests/{reference}"
    if isinstance(reference, Digest):
        fetch = Fetch(
            path=f"{t.image}/manifests/{reference}",
            upstream_path=f"v2/{path}",
            kind="artifact",
            expected=reference,
            accept=ACCEPT,
            headers=(*_HEADERS, ("Docker-Content-Digest", str(reference))),
        )
    else:
        fetch = Fetch(
            path=f"{t.image}/manifests/{reference}",
            upstream_path=f"v2/{path}",
            kind="metadata",
            accept=ACCEPT,
            keep_headers=("Docker-Content-Digest",),
            headers=_HEADERS,
        )
    return await _serve(request, t, fetch, ManifestUnknown)


async def get_blob(request: web.Request, t: Target, digest: Digest) -> web.StreamResponse:
    fetch = Fetch(
        path=f"{t.image}/blobs/{digest}",
        upstream_path=f"v2/{_upstream_image(t)}/blobs/{digest}",
        kind="artifact",
        expected=digest,
        content_type="application/octet-stream",
        headers=(*_HEADERS, ("Docker-Content-Digest", str(digest))),
    )
    return await _serve(request, t, fetch, BlobUnknown)


async def list_tags(
    request: web.Request, t: Target, limit: int | None, last: str
) -> web.StreamResponse:
    query = urlencode({k: v for k, v in (("n", limit), ("last", last)) if v})
    suffix = f"?{query}" if query else ""
    fetch = Fetch(
        path=f"{t.image}/tags/list{suffix}",
        upstream_path=f"v2/{_upstream_image(t)}/tags/list{suffix}",
        kind="metadata",
        content_type="application/json",
        keep_headers=("Link",),
        headers=_HEADERS,
    )
    return await _serve(request, t, fetch, NameUnknown)


async def _serve(
    request: web.Request, t: Target, fetch: Fetch, unknown: type[OciError]
) -> web.StreamResponse:
    engine, upstream = request.app[keys.PROXY], request.app[keys.UPSTREAMS][t.repo.name]
    try:
        return await engine.serve(request, t.repo, upstream, fetch)
    except NotFound as exc:  # in the spec's own words
        raise unknown(f"{fetch.path} not found upstream", headers=exc.headers) from None
