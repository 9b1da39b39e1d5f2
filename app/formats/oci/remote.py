"""OCI remote repositories: a pull-through cache of any distribution-API registry.

Manifests by digest and blobs are immutable and verified against their digest while
they stream; manifests by tag and tag lists are metadata, revalidated after the
repository's ``metadata_ttl``. The upstream's token flow (``WWW-Authenticate:
Bearer realm=…``) is handled by :mod:`app.proxy.upstream`. :class:`OciRemote`
answers as data (what virtual repositories call); the route functions below answer
HTTP with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from app.formats.api import (
    BadGateway,
    Cached,
    CacheStatus,
    Dateless,
    Digest,
    Fetch,
    Missing,
    Opened,
    RemoteCore,
    RemoteOptions,
    Upstream,
    edge,
    whole,
)
from app.formats.oci import manifests
from app.formats.oci.context import API_VERSION, Target
from app.formats.oci.errors import BlobUnknown, ManifestUnknown, NameUnknown, OciError

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


class RemoteOciOptions(Dateless, RemoteOptions):
    # Docker Hub keeps official images under library/: "nginx" is "library/nginx".
    library_prefix: bool = False


def _upstream_image(t: Target) -> str:
    options = t.repo.narrowed(RemoteOciOptions).options
    if options.library_prefix and "/" not in t.image:
        return f"library/{t.image}"
    return t.image


def manifest_fetch(t: Target, reference: str | Digest) -> Fetch:
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
    return fetch


def blob_fetch(t: Target, digest: Digest) -> Fetch:
    return Fetch(
        path=f"{t.image}/blobs/{digest}",
        upstream_path=f"v2/{_upstream_image(t)}/blobs/{digest}",
        kind="artifact",
        expected=digest,
        content_type="application/octet-stream",
        headers=(*_HEADERS, ("Docker-Content-Digest", str(digest))),
    )


def tags_fetch(t: Target, limit: int | None = None, last: str = "") -> Fetch:
    query = urlencode({k: v for k, v in (("n", limit), ("last", last)) if v})
    suffix = f"?{query}" if query else ""
    return Fetch(
        path=f"{t.image}/tags/list{suffix}",
        upstream_path=f"v2/{_upstream_image(t)}/tags/list{suffix}",
        kind="metadata",
        content_type="application/json",
        keep_headers=("Link",),
        headers=_HEADERS,
    )


def referrers_fetch(t: Target, subject: Digest) -> Fetch:
    # The list grows as signatures and SBOMs are pushed: metadata, revalidated.
    return Fetch(
        path=f"{t.image}/referrers/{subject}",
        upstream_path=f"v2/{_upstream_image(t)}/referrers/{subject}",
        kind="metadata",
        accept=manifests.OCI_INDEX,
        content_type=manifests.OCI_INDEX,
        headers=_HEADERS,
    )


@dataclass(frozen=True, slots=True)
class Manifest:
    body: bytes  # as the upstream published it
    media_type: str
    how: CacheStatus


@dataclass(frozen=True, slots=True)
class Tags:
    tags: list[str]
    how: CacheStatus


@dataclass(frozen=True, slots=True)
class Referrers:
    descriptors: list[dict[str, Any]]
    how: CacheStatus


class OciRemote:
    def __init__(self, core: RemoteCore, upstreams: Mapping[str, Upstream]) -> None:
        self.core, self.upstreams = core, upstreams

    async def open(self, t: Target, fetch: Fetch) -> Opened:
        """What :func:`manifest_fetch`, :func:`blob_fetch` or :func:`tags_fetch` made."""
        return await self.core.open(t.repo, self.upstreams[t.repo.name], fetch)

    async def manifest(self, t: Target, reference: str | Digest) -> Manifest | Missing:
        """A manifest or index, whole (verified against its digest when named by one)."""
        opened = await self.open(t, manifest_fetch(t, reference))
        if isinstance(opened, Missing):
            return opened
        media_type = (
            opened.entry.content_type if isinstance(opened, Cached) else opened.content_type
        )
        return Manifest(await whole(opened), media_type, opened.how)

    async def document(self, t: Target) -> Tags | Missing:
        """The image's tags, as the upstream lists them (first page)."""
        opened = await self.open(t, tags_fetch(t))
        if isinstance(opened, Missing):
            return opened
        try:
            tags = json.loads(await whole(opened))["tags"] or []
        except (ValueError, KeyError, TypeError) as exc:
            raise BadGateway(f"upstream tags list of {t.image} is unusable: {exc}") from None
        return Tags([str(tag) for tag in tags], opened.how)

    async def referrers(self, t: Target, subject: Digest) -> Referrers | Missing:
        """The descriptors of the manifests whose subject is ``subject``, as the
        upstream lists them (a registry without the referrers API: Missing)."""
        opened = await self.open(t, referrers_fetch(t, subject))
        if isinstance(opened, Missing):
            return opened
        try:
            listed = json.loads(await whole(opened))["manifests"] or []
            found = [d for d in listed if isinstance(d, dict) and isinstance(d["digest"], str)]
        except (ValueError, KeyError, TypeError) as exc:
            raise BadGateway(f"upstream referrers of {t.image} are unusable: {exc}") from None
        return Referrers(found, opened.how)


async def get_manifest(
    pull: OciRemote, request: web.Request, t: Target, reference: str | Digest
) -> web.StreamResponse:
    return await _serve(pull, request, t, manifest_fetch(t, reference), ManifestUnknown)


async def get_blob(
    pull: OciRemote, request: web.Request, t: Target, digest: Digest
) -> web.StreamResponse:
    return await _serve(pull, request, t, blob_fetch(t, digest), BlobUnknown)


async def list_tags(
    pull: OciRemote, request: web.Request, t: Target, limit: int | None, last: str
) -> web.StreamResponse:
    return await _serve(pull, request, t, tags_fetch(t, limit, last), NameUnknown)


async def _serve(
    pull: OciRemote, request: web.Request, t: Target, fetch: Fetch, unknown: type[OciError]
) -> web.StreamResponse:
    opened = await pull.open(t, fetch)
    if isinstance(opened, Missing):  # in the spec's own words
        raise unknown(f"{fetch.path} not found upstream", headers={"X-Cache": opened.how})
    return await edge.respond(request, opened)
