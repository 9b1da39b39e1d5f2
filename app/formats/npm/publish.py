"""What an ``npm publish`` body holds, read as it streams and checked before a row is
written.

The body goes through :class:`~.scanner.BodyScanner`: the tarball's base64 streams
into the CAS (sha512 and sha1 computed on the way), a provenance bundle (JSON text, a
few kB) likewise, and the rest of the document is parsed once the body has ended.
Then everything the client claimed is checked against what arrived: one version, named
the same in the URL, the document and the attachment's file name; ``dist.integrity``
and ``shasum`` against the decoded bytes; a gzip tarball; the attachments' ``length``.
A refused body leaves at most an unreferenced blob, which the collector takes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from app.formats.api import BadRequest, Blob, ContentStore, once
from app.formats.npm import documents
from app.formats.npm.names import SEMVER, check_version
from app.formats.npm.rows import NewAttachment, NewVersion
from app.formats.npm.scanner import BodyScanner, base64_decoded, json_text

MAX_DOCUMENT = 16 * 1024 * 1024  # the packument part of a body: metadata, no data
MAX_BUNDLE = 1024 * 1024  # a provenance bundle is a few kB
MAX_ATTACHMENTS = 2  # the tarball, and its provenance bundle
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class PutBody:
    """A ``PUT /<package>`` body: its document, and each attachment as a stored blob."""

    document: dict[str, Any]
    blobs: dict[str, Blob] = field(default_factory=dict)
    texts: dict[str, bytes] = field(default_factory=dict)  # small attachments, decoded


def _attachment_kind(package: str, name: str) -> str:
    """ "tarball" or "bundle" for a file name a publish of ``package`` may attach."""
    unscoped = package.rpartition("/")[2]
    for prefix in (f"{package}-", f"{unscoped}-"):
        if name.startswith(prefix):
            if name.endswith(".tgz"):
                return "tarball"
            if name.endswith(".sigstore"):
                return "bundle"
    raise BadRequest(f"unexpected attachment {name[:300]!r}: a publish of {package} attaches"
                     f" {package}-<version>.tgz (and its .sigstore)")  # fmt: skip


async def _gzipped(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks, once the first two bytes have shown a gzip stream."""
    head = b""
    async for chunk in chunks:
        if len(head) < 2:
            head += chunk[: 2 - len(head)]
            if len(head) == 2 and head != GZIP_MAGIC:
                raise BadRequest("the tarball is not gzip-compressed")
        yield chunk
    if head != GZIP_MAGIC:
        raise BadRequest("the tarball is not gzip-compressed")


async def read(
    body: AsyncIterable[bytes], package: str, cas: ContentStore, max_size: int
) -> PutBody:
    scanner = BodyScanner(body, MAX_DOCUMENT, max_body=max_size)
    blobs: dict[str, Blob] = {}
    texts: dict[str, bytes] = {}
    async for attachment in scanner.attachments():
        name = attachment.name
        if name in blobs:
            raise BadRequest(f"attachment {name!r} is sent twice")
        if len(blobs) == MAX_ATTACHMENTS:
            raise BadRequest(f"a publish attaches at most {MAX_ATTACHMENTS} files")
        if _attachment_kind(package, name) == "tarball":
            data = _gzipped(base64_decoded(attachment.raw))
            blobs[name] = await cas.ingest(data, max_size=max_size, algorithms=("sha512", "sha1"))
        else:
            texts[name] = await json_text(attachment.raw, MAX_BUNDLE)
            blobs[name] = await cas.ingest(once(texts[name]), max_size=MAX_BUNDLE)
    try:
        document = json.loads(scanner.document)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not a JSON document") from None
    if not isinstance(document, dict):
        raise BadRequest("the body is not a JSON object")
    return PutBody(document, blobs, texts)


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def _sri_sha512(integrity: str) -> str | None:
    """The sha512 hex digest of a Subresource Integrity string, if it has one."""
    for option in integrity.split():
        algorithm, _, encoded = option.partition("-")
        if algorithm == "sha512":
            try:
                return base64.b64decode(encoded.partition("?")[0], validate=True).hex()
            except (binascii.Error, ValueError):
                raise BadRequest("dist.integrity: its sha512 is not base64") from None
    return None


def _check_dist(dist: dict[str, Any], blob: Blob, declared: dict[str, Any]) -> tuple[str, str]:
    """The version's integrity and shasum, once each matches the bytes received."""
    sha512 = blob.digests["sha512"].partition(":")[2]
    sha1 = blob.digests["sha1"].partition(":")[2]
    integrity, shasum = dist.get("integrity"), dist.get("shasum")
    if integrity is None and shasum is None:
        raise BadRequest("dist.integrity or dist.shasum is required")
    if integrity is not None:
        if not isinstance(integrity, str) or _sri_sha512(integrity) is None:
            raise BadRequest("dist.integrity must hold a sha512 digest")
        if _sri_sha512(integrity) != sha512:
            raise BadRequest("dist.integrity does not match the tarball received")
    if shasum is not None and (not isinstance(shasum, str) or shasum.lower() != sha1):
        raise BadRequest("dist.shasum does not match the tarball received")
    length = declared.get("length")
    if length is not None and length != blob.size:
        raise BadRequest(f"the tarball's length is {length} but {blob.size} bytes were sent")
    return f"sha512-{base64.b64encode(bytes.fromhex(sha512)).decode()}", sha1


def _predicate_type(bundle: bytes) -> str | None:
    """The in-toto predicate type a sigstore bundle signs (its DSSE payload)."""
    try:
        parsed = json.loads(bundle)
        payload = base64.b64decode(parsed["dsseEnvelope"]["payload"], validate=True)
        kind = json.loads(payload)["predicateType"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return kind if isinstance(kind, str) and len(kind) < 500 else None


def new_version(put: PutBody, package: str, publisher: str) -> NewVersion:
    """The version a publish body adds, once everything it claims is checked;
    ``_npmUser`` (who published it, as ``npm view`` shows) is ``publisher``."""
    document = put.document
    if document.get("name") != package or document.get("_id", package) != package:
        raise BadRequest(f"the document names another package than {package}")
    versions = _object(document.get("versions"), "versions")
    if len(versions) != 1:
        raise BadRequest(f"a publish carries exactly one version, not {len(versions)}")
    ((version, manifest),) = versions.items()
    if len(version) > 256 or not SEMVER.match(version):
        raise BadRequest(f"invalid version {version[:256]!r}: not semver")
    manifest = _object(manifest, f"versions[{version!r}]")
    if manifest.get("version") != version or manifest.get("name", package) != package:
        raise BadRequest(f"versions[{version!r}] names another version or package")
    attachments = _object(document.get("_attachments"), "_attachments")
    if set(attachments) != set(put.blobs):
        raise BadRequest("every attachment needs its data as a string")
    unscoped = package.rpartition("/")[2]
    names = {f"{package}-{version}.tgz", f"{unscoped}-{version}.tgz"}
    tarballs = [n for n in put.blobs if n.endswith(".tgz")]
    if len(tarballs) != 1 or tarballs[0] not in names:
        raise BadRequest(f"a publish of {package}@{version} attaches {package}-{version}.tgz")
    bundles = [n for n in put.blobs if n.endswith(".sigstore")]
    if any(n not in (f"{package}-{version}.sigstore", f"{unscoped}-{version}.sigstore")
           for n in bundles):  # fmt: skip
        raise BadRequest(f"the provenance bundle must be {package}-{version}.sigstore")
    tarball = put.blobs[tarballs[0]]
    declared = _object(attachments[tarballs[0]], f"_attachments[{tarballs[0]!r}]")
    integrity, shasum = _check_dist(_object(manifest.get("dist"), "dist"), tarball, declared)
    extra = []
    for name in bundles:
        blob, text = put.blobs[name], put.texts[name]
        info = _object(attachments[name], f"_attachments[{name!r}]")
        if info.get("length") not in (None, len(text), len(text.decode())):
            raise BadRequest(f"{name}: its length does not match the data sent")
        content_type = info.get("content_type")
        if not isinstance(content_type, str) or len(content_type) > 200:
            content_type = "application/json"
        kept = NewAttachment(name, blob.digest, blob.size, content_type, _predicate_type(text))
        extra.append(kept)
    tags = _object(document.get("dist-tags", {}), "dist-tags")
    for tag, tagged in tags.items():
        check_version(tag)
        if tagged != version or SEMVER.match(tag):
            raise BadRequest(f"dist-tag {tag[:200]!r} must name {version} and not be a version")
    dropped = ("deprecated", "_attachments", "dist")
    kept_manifest = {k: v for k, v in manifest.items() if k not in dropped}
    kept_manifest["_id"] = f"{package}@{version}"
    kept_manifest["_npmUser"] = {"name": publisher}
    dist = {k: v for k, v in manifest["dist"].items() if k not in ("tarball", "attestations")}
    dist |= {"integrity": integrity, "shasum": shasum}
    return NewVersion(
        version=version,
        manifest=documents.text(kept_manifest),
        corgi=documents.text(documents.corgi(kept_manifest)),
        dist=documents.text(dist),
        tarball_digest=tarball.digest,
        size=tarball.size,
        integrity=integrity,
        shasum=shasum,
        tags=tuple(sorted(tags)),
        attachments=tuple(extra),
    )
