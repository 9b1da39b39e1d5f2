"""The distribution spec's error codes, each an :class:`ApiError` with its status."""

from __future__ import annotations

from aiohttp import web

from app.formats.api import ApiError


class OciError(ApiError):
    pass


class BlobUnknown(OciError):
    code, status = "BLOB_UNKNOWN", 404


class BlobUploadInvalid(OciError):
    code, status = "BLOB_UPLOAD_INVALID", 400


class BlobUploadUnknown(OciError):
    code, status = "BLOB_UPLOAD_UNKNOWN", 404


class DigestInvalid(OciError):
    code, status = "DIGEST_INVALID", 400


class ManifestBlobUnknown(OciError):
    code, status = "MANIFEST_BLOB_UNKNOWN", 400


class ManifestInvalid(OciError):
    code, status = "MANIFEST_INVALID", 400


class ManifestUnknown(OciError):
    code, status = "MANIFEST_UNKNOWN", 404


class TagInvalid(ManifestInvalid):
    """A tag outside the spec's expression, pushed. The spec has no code of its own
    for it (TAG_INVALID is a schema1 leftover clients need not know)."""


class NameInvalid(OciError):
    code, status = "NAME_INVALID", 400


class NameUnknown(OciError):
    code, status = "NAME_UNKNOWN", 404


class SizeInvalid(OciError):
    code, status = "SIZE_INVALID", 400


class Unsupported(OciError):
    code, status = "UNSUPPORTED", 405


class Denied(OciError):
    code, status = "DENIED", 403


class RangeInvalid(OciError):
    """A chunk that does not start where the session ends."""

    code, status = "BLOB_UPLOAD_INVALID", 416


# Generic errors raised by shared code, as the spec names them.
_SPEC_CODES = {
    "NOT_FOUND": "NAME_UNKNOWN",
    "CONTENT_MISSING": "BLOB_UNKNOWN",
    "METHOD_NOT_ALLOWED": "UNSUPPORTED",
    "PAYLOAD_TOO_LARGE": "SIZE_INVALID",
    "DIGEST_MISMATCH": "DIGEST_INVALID",
    "BAD_REQUEST": "UNSUPPORTED",
    "RANGE_NOT_SATISFIABLE": "BLOB_UPLOAD_INVALID",
    # distribution's own codes for a server's failures (its errcode package)
    "INTERNAL_ERROR": "UNKNOWN",
}


def render(error: ApiError, request_id: str) -> web.Response:
    """``{"errors": [{"code", "message", "detail"}]}`` as the spec has it."""
    code = error.code if isinstance(error, OciError) else _SPEC_CODES.get(error.code, error.code)
    body = {"code": code, "message": error.message, "detail": error.detail}
    headers = {"Docker-Distribution-API-Version": "registry/2.0", **error.headers}
    if request_id:
        headers["X-Request-ID"] = request_id
    return web.json_response({"errors": [body]}, status=error.status, headers=headers)
