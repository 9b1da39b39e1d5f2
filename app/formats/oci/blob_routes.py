"""``/v2/<name>/blobs/…``: uploads (POST, PATCH, PUT, GET, DELETE) and blobs (GET, HEAD, DELETE)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager

from aiohttp import web

from app.formats.api import BlobBody, request_body, send_blob
from app.formats.oci import access, context, remote, virtual
from app.formats.oci.context import API_VERSION, Target
from app.formats.oci.errors import (
    BlobUnknown,
    DigestInvalid,
    NameInvalid,
    NameUnknown,
    RangeInvalid,
    SizeInvalid,
)
from app.formats.oci.names import blob_digest
from app.formats.oci.records import Upload
from app.formats.oci.services import Oci, Routes
from app.formats.oci.uploads import chunk_range, range_header


def routes() -> Routes:
    return [
        ("POST", "/v2/{name:.+}/blobs/uploads/", start_upload),
        ("GET", "/v2/{name:.+}/blobs/uploads/{upload}", upload_status),
        ("PATCH", "/v2/{name:.+}/blobs/uploads/{upload}", append_chunk),
        ("PUT", "/v2/{name:.+}/blobs/uploads/{upload}", finish_upload),
        ("DELETE", "/v2/{name:.+}/blobs/uploads/{upload}", cancel_upload),
        ("GET", "/v2/{name:.+}/blobs/{digest}", get_blob),
        ("HEAD", "/v2/{name:.+}/blobs/{digest}", get_blob),
        ("DELETE", "/v2/{name:.+}/blobs/{digest}", delete_blob),
    ]


def _session_headers(t: Target, upload_id: str, size: int) -> dict[str, str]:
    return {
        **API_VERSION,
        "Location": f"/v2/{t.name}/blobs/uploads/{upload_id}",
        "Range": range_header(size),
        "Docker-Upload-UUID": upload_id,
    }


@contextmanager
def _refusals_locate(t: Target, upload: Upload) -> Iterator[None]:
    """A chunk refused as out of order (416) says where the session is and where it
    ends, as every other answer about the session does."""
    try:
        yield
    except RangeInvalid as exc:
        exc.headers = {**_session_headers(t, upload.id, upload.size), **exc.headers}
        raise


def _chunk(request: web.Request, upload: Upload) -> tuple[int, int] | None:
    header = request.headers.get("Content-Range")
    return chunk_range(header, upload.size, request.content_length) if header else None


def _blob_created(t: Target, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={
            **API_VERSION,
            "Location": f"/v2/{t.name}/blobs/{digest}",
            "Docker-Content-Digest": digest,
        },
    )


def _body(request: web.Request) -> AsyncIterable[bytes] | None:
    return request_body(request) if request.body_exists else None


async def start_upload(oci: Oci, request: web.Request) -> web.StreamResponse:
    t = oci.target(request)
    uploads = oci.uploads
    mount, source = request.query.get("mount"), request.query.get("from")
    if mount is not None and source is not None:
        digest = str(blob_digest(mount))
        if await _mount(oci, request, t, digest, source):
            return _blob_created(t, digest)
    if "digest" in request.query:  # monolithic: the whole blob in this request
        expected = blob_digest(request.query["digest"])
        body = _body(request) or _empty()
        blob = await uploads.cas.ingest(body, expected, max_size=oci.max_body)
        await uploads.records.link_blob(t.repo.id, t.image, str(expected), blob.digest)
        return _blob_created(t, str(expected))
    upload_id = await uploads.start(t.repo.id, t.image)
    return web.Response(status=202, headers=_session_headers(t, upload_id, 0))


async def _mount(oci: Oci, request: web.Request, t: Target, digest: str, source: str) -> bool:
    """Link a blob another image name holds; False (start a session) when it can't."""
    try:
        source_image = oci.named(source)
    except (NameInvalid, NameUnknown):
        return False
    if not await access.may_read(oci.services, request, source_image):
        return False  # as if it were not there: the client uploads it instead
    records = oci.records
    stored = await records.linked_blob(source_image.repo.id, source_image.image, digest)
    # Claimed, so no collection takes it between the check and the new link.
    blob = await oci.cas.claim(stored) if stored else None
    if blob is None:
        return False
    await records.link_blob(t.repo.id, t.image, digest, blob.digest)
    return True


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


async def upload_status(oci: Oci, request: web.Request) -> web.StreamResponse:
    t = oci.target(request)
    upload = await oci.uploads.get(request.match_info["upload"], t.repo.id, t.image)
    return web.Response(status=204, headers=_session_headers(t, upload.id, upload.size))


async def append_chunk(oci: Oci, request: web.Request) -> web.StreamResponse:
    t = oci.target(request)
    uploads = oci.uploads
    upload = await uploads.get(request.match_info["upload"], t.repo.id, t.image)
    with _refusals_locate(t, upload):
        content_range = _chunk(request, upload)
        size = await uploads.append(upload, request_body(request), content_range, oci.max_body)
    return web.Response(status=202, headers=_session_headers(t, upload.id, size))


async def finish_upload(oci: Oci, request: web.Request) -> web.StreamResponse:
    t = oci.target(request)
    uploads = oci.uploads
    upload = await uploads.get(request.match_info["upload"], t.repo.id, t.image)
    if "digest" not in request.query:
        raise DigestInvalid("PUT needs ?digest=<algorithm>:<hex>")
    expected = blob_digest(request.query["digest"])
    trailing = _body(request)
    if trailing is not None:  # the last chunk, checked as a PATCH's would be
        with _refusals_locate(t, upload):
            content_range = _chunk(request, upload)
        if content_range is not None:
            start, end = content_range
            trailing = _exactly(trailing, end - start + 1)
    await uploads.finish(upload, expected, trailing, oci.max_body)
    return _blob_created(t, str(expected))


async def _exactly(body: AsyncIterable[bytes], length: int) -> AsyncIterator[bytes]:
    """``body`` if it is ``length`` bytes long; raised before its end otherwise, so
    nothing is stored. (A length announced up front was checked before reading.)"""
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > length:
            raise SizeInvalid(f"Content-Range announced {length} bytes; the body has more")
        yield chunk
    if received != length:
        raise SizeInvalid(f"Content-Range announced {length} bytes; the body had {received}")


async def cancel_upload(oci: Oci, request: web.Request) -> web.StreamResponse:
    t = oci.target(request)
    uploads = oci.uploads
    upload = await uploads.get(request.match_info["upload"], t.repo.id, t.image)
    await uploads.cancel(upload)
    return web.Response(status=204, headers=API_VERSION)


async def get_blob(oci: Oci, request: web.Request) -> web.StreamResponse:
    t = oci.lookup(request)
    if t.repo.kind == "remote":
        return await remote.get_blob(
            oci.pull, request, t, blob_digest(request.match_info["digest"])
        )
    if t.repo.kind == "virtual":
        asked = blob_digest(request.match_info["digest"])
        return await virtual.of(oci).serve_blob(request, t, asked)
    digest = str(blob_digest(request.match_info["digest"]))
    cas, records = oci.cas, oci.records
    stored = await records.linked_blob(t.repo.id, t.image, digest)
    if stored is None:  # a manifest's bytes are a blob too, as in distribution
        manifest = await records.get_manifest(t.repo.id, t.image, digest)
        stored = manifest.blob_digest if manifest else None
    blob = await cas.stat(stored) if stored else None
    if stored is None or blob is None:
        raise BlobUnknown(f"blob {digest} unknown to {t.name}", detail={"digest": digest})
    return await send_blob(
        request,
        BlobBody.stored(cas, blob.digest, blob.size, "application/octet-stream", etag=digest),
        headers={**API_VERSION, "Docker-Content-Digest": digest},
    )


async def delete_blob(oci: Oci, request: web.Request) -> web.StreamResponse:
    t = oci.target(request)
    context.deletes_allowed(t)
    digest = str(blob_digest(request.match_info["digest"]))
    if not await oci.records.unlink_blob(t.repo.id, t.image, digest):
        raise BlobUnknown(f"blob {digest} unknown to {t.name}", detail={"digest": digest})
    return web.Response(status=202, headers=API_VERSION)
