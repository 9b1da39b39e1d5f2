"""``/v2/<name>/manifests/…``, tag lists, the catalog and the referrers API."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from app.formats.api import (
    PRINCIPAL,
    Blob,
    BlobBeingCollected,
    BlobBody,
    BlobsGone,
    Digest,
    once,
    send_blob,
    whole_number,
)
from app.formats.oci import context, manifests, remote, virtual
from app.formats.oci.context import API_VERSION, LocalOptions, Target
from app.formats.oci.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
)
from app.formats.oci.manifests import ManifestTooLarge, PaginationNumberInvalid
from app.formats.oci.names import blob_digest, lookup_reference, parse_reference, parse_tag
from app.formats.oci.records import Manifest
from app.formats.oci.referrers import local_referrers, referrers_answer
from app.formats.oci.services import Oci, Routes

# A page when the client names no ``n`` (or a larger one): Link says how to go on.
PAGE = 1000
# Tags one push by digest may set with ``?tag=`` (the spec asks for at least 10).
MAX_QUERY_TAGS = 100


class TooManyTags(ManifestInvalid):
    """MANIFEST_INVALID, with the 414 the spec allows for too many ``?tag=``."""

    status = 414


def routes() -> Routes:
    # /v2/_catalog has no further segment, so no /v2/{name:.+}/… route can take it.
    return [
        ("GET", "/v2/_catalog", catalog),
        ("PUT", "/v2/{name:.+}/manifests/{reference}", put_manifest),
        ("GET", "/v2/{name:.+}/manifests/{reference}", get_manifest),
        ("HEAD", "/v2/{name:.+}/manifests/{reference}", get_manifest),
        ("DELETE", "/v2/{name:.+}/manifests/{reference}", delete_manifest),
        ("GET", "/v2/{name:.+}/tags/list", list_tags),
        ("GET", "/v2/{name:.+}/referrers/{digest}", referrers),
    ]


async def _read_capped(request: web.Request) -> bytes:
    if (request.content_length or 0) > manifests.MAX_MANIFEST:
        raise ManifestTooLarge(f"manifests are limited to {manifests.MAX_MANIFEST} bytes")
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > manifests.MAX_MANIFEST:  # chunked bodies announce no length
            raise ManifestTooLarge(f"manifests are limited to {manifests.MAX_MANIFEST} bytes")
    return bytes(body)


async def put_manifest(oci: Oci, request: web.Request) -> web.StreamResponse:
    t = oci.target(request)
    reference = parse_reference(request.match_info["reference"])
    tags = _tags(request, reference)
    raw = await _read_capped(request)
    options = t.repo.narrowed(LocalOptions).options
    parsed = manifests.parse(raw, request.headers.get("Content-Type"), options.limits())
    digest = manifests.manifest_digest(raw)
    if isinstance(reference, Digest):
        if manifests.manifest_digest(raw, reference.algorithm) != reference:
            raise DigestInvalid(
                f"manifest bytes do not match {reference}", detail={"digest": str(reference)}
            )
        digest = reference  # clients address it as they pushed it (sha256 or sha512)
    await _store(oci, request, t, parsed, raw, str(digest), tags)
    headers = CIMultiDict(
        {
            **API_VERSION,
            "Location": f"/v2/{t.name}/manifests/{digest}",
            "Docker-Content-Digest": str(digest),
        }
    )
    if parsed.subject is not None:
        headers["OCI-Subject"] = parsed.subject.digest  # the client needs no tag fallback
    if isinstance(reference, Digest):
        for tag in tags:  # a header each; RFC 9110 reads them as one folded list
            headers.add("OCI-Tag", tag)
    return web.Response(status=201, headers=headers)


def _tags(request: web.Request, reference: str | Digest) -> list[str]:
    """The tags a push points at its manifest, each checked before anything is read.

    By tag, the one in the path. By digest, those of ``?tag=a&tag=b`` (distribution-spec
    main: several tags in one push, each echoed in an ``OCI-Tag`` header). The spec
    defines ``?tag=`` for pushes by digest only: on a push by tag it is ignored, as by
    a registry without the feature, and the answer's lack of ``OCI-Tag`` says so."""
    if isinstance(reference, str):
        return [reference]
    asked = request.query.getall("tag", [])
    if len(asked) > MAX_QUERY_TAGS:
        raise TooManyTags(f"at most {MAX_QUERY_TAGS} tags per push, not {len(asked)}")
    return list(dict.fromkeys(parse_tag(tag) for tag in asked))


# A manifest's own bytes collected between their ingest and its row (only with a
# grace shorter than a push) are stored again this often before the client is told.
_STORE_ATTEMPTS = 3


async def _store(
    oci: Oci,
    request: web.Request,
    t: Target,
    parsed: manifests.ParsedManifest,
    raw: bytes,
    digest: str,
    tags: list[str],
) -> None:
    """The manifest's bytes into the CAS, then its row with references, holding
    what it references so no collector deletes it meanwhile (see records.put_manifest)."""
    blobs = await _check_references(oci, request, t, parsed)
    children = [child.digest for child in parsed.manifests]
    for _ in range(_STORE_ATTEMPTS):
        blob = await oci.cas.ingest(once(raw), manifests.manifest_digest(raw))
        record = Manifest(
            digest=digest,
            blob_digest=blob.digest,
            media_type=parsed.media_type,
            artifact_type=parsed.artifact_type,
            subject=parsed.subject.digest if parsed.subject else None,
            size=len(raw),
        )
        try:
            await oci.records.put_manifest(
                t.repo.id, t.image, record, parsed.references(), tags, blobs, children
            )
            return
        except BlobsGone as exc:
            others = exc.digests - {blob.digest}
            if others:  # a layer, config or child collected since it was checked
                gone = min(others)
                raise ManifestBlobUnknown(
                    f"{gone} was collected before the manifest was stored; push it again",
                    detail={"digest": gone},
                ) from exc
    raise BlobBeingCollected(str(manifests.manifest_digest(raw)))


async def _check_references(
    oci: Oci, request: web.Request, t: Target, parsed: manifests.ParsedManifest
) -> set[str]:
    """Blobs must be in this image name, and so must an index's children, each with
    the size its descriptor claims (a wrong size would fail every pull instead).
    The subject need not exist: the spec lets referrers be pushed first.

    A few statements whatever the manifest's length: each distinct digest is looked
    up (and claimed) once, in one set, and every descriptor checked against the answer.
    Return the CAS digests of the blobs, for the manifest's row to hold."""
    required = parsed.required_blobs()
    claimed = await _claim_blobs(oci, request, t, parsed.distinct(required))
    for blob in required:
        if blob.digest not in claimed:
            raise ManifestBlobUnknown(
                f"blob {blob.digest} unknown to {t.name}", detail={"digest": blob.digest}
            )
        _check_size(blob, claimed[blob.digest].size)
    cas_digests = {found.digest for found in claimed.values()}
    if not parsed.manifests:
        return cas_digests
    children = parsed.distinct(parsed.manifests)
    held = await oci.records.touch_manifests(t.repo.id, t.image, children)
    for child in parsed.manifests:
        if child.digest not in held:
            raise ManifestBlobUnknown(
                f"manifest {child.digest} unknown to {t.name}", detail={"digest": child.digest}
            )
        _check_size(child, held[child.digest])
    return cas_digests


async def _claim_blobs(
    oci: Oci, request: web.Request, t: Target, digests: list[str]
) -> dict[str, Blob]:
    """The blobs among ``digests`` this image name holds, each claimed: safe from
    collection for a grace period (``put_manifest`` then holds them until its
    references are written)."""
    if not digests:
        return {}
    linked = await oci.records.claim_linked_blobs(t.repo.id, t.image, digests)
    claimed = {
        d: Blob(blob.blob_digest, blob.size) for d, blob in linked.items() if blob.state == "live"
    }
    for digest, blob in linked.items():
        if blob.state != "live":  # a collector is at it: wait it out, as an ingest does
            found = await oci.cas.claim(blob.blob_digest)
            if found is not None:
                claimed[digest] = found
    return claimed


def _check_size(descriptor: manifests.Descriptor, stored_size: int) -> None:
    if descriptor.size != stored_size:
        raise ManifestInvalid(
            f"descriptor of {descriptor.digest} says {descriptor.size} bytes,"
            f" the registry holds {stored_size}",
            detail={
                "digest": descriptor.digest,
                "size": descriptor.size,
                "stored_size": stored_size,
            },
        )


async def _resolve(oci: Oci, request: web.Request, t: Target) -> Manifest:
    reference = lookup_reference(request.match_info["reference"])
    records = oci.records
    digest = str(reference)
    if isinstance(reference, str):
        resolved = await records.resolve_tag(t.repo.id, t.image, reference)
        if resolved is None:
            raise ManifestUnknown(f"tag {reference} unknown to {t.name}", detail={"tag": reference})
        digest = resolved
    found = await records.get_manifest(t.repo.id, t.image, digest)
    if found is None:
        raise ManifestUnknown(f"manifest {digest} unknown to {t.name}", detail={"digest": digest})
    return found


async def get_manifest(oci: Oci, request: web.Request) -> web.StreamResponse:
    t = oci.lookup(request)
    if t.repo.kind == "remote":
        return await remote.get_manifest(
            oci.pull, request, t, lookup_reference(request.match_info["reference"])
        )
    if t.repo.kind == "virtual":
        reference = lookup_reference(request.match_info["reference"])
        return await virtual.of(oci).serve_manifest(request, t, reference)
    found = await _resolve(oci, request, t)
    if not manifests.acceptable(request.headers.get("Accept")):
        raise ManifestUnknown(
            f"manifest is {found.media_type}; the client accepts only schema1",
            detail={"digest": found.digest},
        )
    cas = oci.cas
    return await send_blob(
        request,
        # Never redirected: clients expect a manifest's own media type and digest here.
        BlobBody.stored(
            cas, found.blob_digest, found.size, found.media_type, etag=found.digest, redirect=False
        ),
        headers={**API_VERSION, "Docker-Content-Digest": found.digest},
    )


async def delete_manifest(oci: Oci, request: web.Request) -> web.StreamResponse:
    t = oci.target(request)
    context.deletes_allowed(t)
    reference = lookup_reference(request.match_info["reference"])
    records = oci.records
    if isinstance(reference, str):  # OCI 1.1: a tag alone may be deleted
        deleted = await records.delete_tag(t.repo.id, t.image, reference)
    else:  # the manifest, and every tag on it
        deleted = await records.delete_manifest(t.repo.id, t.image, str(reference))
    if not deleted:
        raise ManifestUnknown(
            f"{reference} unknown to {t.name}", detail={"reference": str(reference)}
        )
    return web.Response(status=202, headers=API_VERSION)


def _page(request: web.Request) -> tuple[int, str]:
    # A NUL in ``last`` never gets here: the middleware refuses it for every handler.
    text, last = request.query.get("n"), request.query.get("last", "")
    if text is None:
        return PAGE, last
    n = whole_number(text)
    if n is None:
        raise PaginationNumberInvalid(f"n must be a non-negative integer, not {text[:20]!r}")
    return min(n, PAGE), last


def _paged(
    body: dict[str, object], key: str, items: list[str], limit: int, path: str
) -> web.Response:
    """Answer one page; ``items`` holds up to limit + 1 so we know whether more remain."""
    headers = dict(API_VERSION)
    if len(items) > limit:
        items = items[:limit]
        headers["Link"] = f'<{path}?n={limit}&last={quote(items[-1], safe="/")}>; rel="next"'
    return web.json_response({**body, key: items}, headers=headers)


async def list_tags(oci: Oci, request: web.Request) -> web.StreamResponse:
    t = oci.lookup(request)
    limit, last = _page(request)
    if t.repo.kind == "virtual":
        tags = await virtual.of(oci).tags(request, t, limit + 1, last) if limit else []
        return _paged({"name": t.name}, "tags", tags, limit, f"/v2/{t.name}/tags/list")
    if t.repo.kind == "remote":
        asked = request.query.get("n")
        return await remote.list_tags(
            oci.pull, request, t, limit if asked is not None else None, last
        )
    records = oci.records
    if not await records.has_name(t.repo.id, t.image):
        raise NameUnknown(f"{t.name} holds no manifests", detail={"name": t.name})
    tags = await records.tags(t.repo.id, t.image, limit + 1, last) if limit else []
    return _paged({"name": t.name}, "tags", tags, limit, f"/v2/{t.name}/tags/list")


async def catalog(oci: Oci, request: web.Request) -> web.StreamResponse:
    limit, last = _page(request)
    who, auth = request[PRINCIPAL], oci.services.auth
    ids = [
        r.id
        for r in oci.repositories
        if r.format == "oci" and await auth.may(who, r.name, "read", r.anonymous_read)
    ]
    names = await oci.records.names(ids, limit + 1, last) if limit else []
    return _paged({}, "repositories", names, limit, "/v2/_catalog")


async def referrers(oci: Oci, request: web.Request) -> web.StreamResponse:
    artifact_type = request.query.get("artifactType")
    t = oci.lookup(request)
    if t.repo.kind == "virtual":
        subject = blob_digest(request.match_info["digest"])
        listed = await virtual.of(oci).referrers(request, t, subject, artifact_type)
        return referrers_answer(listed, artifact_type)
    t = oci.target(request)
    subject_text = str(blob_digest(request.match_info["digest"]))
    listed = await local_referrers(oci, t, subject_text, artifact_type)
    return referrers_answer(listed, artifact_type)
