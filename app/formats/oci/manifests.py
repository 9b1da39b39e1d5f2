"""Manifests as pushed: media types, parsing and validation of their JSON.

Validation here is structural only (is this a manifest we understand, with the
fields the spec requires, of one kind only?); whether the blobs and child manifests
it points at exist is checked by the handler against the database.

A document must read the same to every client, or a registry that checked it as one
kind serves another (CVE-2021-41190): so it is UTF-8 with no byte order mark (Python
would guess UTF-16 where Go refuses it), repeats no key, carries no field of another
kind of manifest, and spells the fields we read exactly (Go decodes keys ignoring
case, so ``Layers`` is ``layers`` to a Go client and nothing to us).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from app.formats.api import Digest, InvalidDigest, parse_digest
from app.formats.oci.errors import ManifestInvalid, OciError
from app.formats.oci.records import Reference

# The spec lets registries refuse manifests over 4 MiB; every client stays below it.
MAX_MANIFEST = 4 * 1024 * 1024

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_ARTIFACT = "application/vnd.oci.artifact.manifest.v1+json"  # OCI 1.1 rc only
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SCHEMA1 = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)

IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MEDIA_TYPES = IMAGE_TYPES | INDEX_TYPES | {OCI_ARTIFACT}
# RFC 6838, which the image spec requires of media types; it also keeps control
# characters (NUL, which PostgreSQL text refuses) out of what we store.
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
MEDIA_TYPE = re.compile(rf"^{_NAME}/{_NAME}$")
# Content-Types that say nothing about the manifest: the JSON's mediaType decides.
_GENERIC = frozenset({"", "application/json", "application/octet-stream"})
# Docker's formats require mediaType in the document; OCI's only recommend it.
_STATES_ITS_TYPE = frozenset({DOCKER_MANIFEST, DOCKER_LIST})
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # UTF-32's start so too

# The fields that say what kind of manifest a document is, and which each kind may have
# (schema1's fsLayers and history included: some clients still read them).
_KIND_FIELDS = ("config", "layers", "manifests", "blobs", "fsLayers", "history")
_IMAGE_FIELDS = frozenset({"config", "layers"})
_INDEX_FIELDS = frozenset({"manifests"})
_ARTIFACT_FIELDS = frozenset({"blobs"})
# Every field we read, as the specs spell them (see _spelled_exactly).
_FIELDS = {
    f.lower(): f
    for f in ("schemaVersion", "mediaType", "artifactType", "subject", "annotations", *_KIND_FIELDS)
}
_DESCRIPTOR_FIELDS = {f.lower(): f for f in ("mediaType", "digest", "size", "urls")}
# Keys a descriptor usually has, none a case variant of another: no need to look closer.
_USUAL_DESCRIPTOR_KEYS = frozenset(
    {"mediaType", "digest", "size", "urls", "annotations", "platform", "artifactType", "data"}
)

# How many descriptors a manifest may list, unless its repository says otherwise.
MAX_LAYERS = 1000
MAX_INDEX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class Limits:
    """Descriptors one manifest may list: each costs work to accept (and a row)."""

    layers: int = MAX_LAYERS  # an image manifest's layers, an artifact's blobs
    index_entries: int = MAX_INDEX_ENTRIES  # an index's manifests


class ManifestTooLarge(ManifestInvalid):
    """MANIFEST_INVALID, with the 413 the spec asks for when the size is the reason."""

    status = 413


class PaginationNumberInvalid(OciError):
    """What distribution answers for a bad ``n`` on the tag list and the catalog."""

    code, status = "PAGINATION_NUMBER_INVALID", 400


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    # The manifest's artifactType, else its config's media type: what the
    # referrers API reports for it.
    artifact_type: str | None
    subject: Descriptor | None
    blobs: list[Descriptor] = field(default_factory=list)  # config first, then layers
    manifests: list[Descriptor] = field(default_factory=list)  # an index's children
    config: Descriptor | None = None

    def references(self) -> list[Reference]:
        """Each reference once, however often the manifest repeats a descriptor."""
        refs = [Reference(self.config.digest, "config")] if self.config is not None else []
        layers = dict.fromkeys(d.digest for d in self.blobs if d is not self.config)
        refs += [Reference(digest, "layer") for digest in layers]
        refs += [Reference(digest, "manifest") for digest in self.distinct(self.manifests)]
        if self.subject is not None:
            refs.append(Reference(self.subject.digest, "subject"))
        return refs

    @staticmethod
    def distinct(descriptors: list[Descriptor]) -> list[str]:
        """The digests of ``descriptors``, each once, in order."""
        return list(dict.fromkeys(d.digest for d in descriptors))

    def required_blobs(self) -> list[Descriptor]:
        """Blobs that must be in the image name: all but foreign layers that carry
        ``urls`` (the spec lets those live elsewhere)."""
        return [d for d in self.blobs if not d.urls]


def manifest_digest(raw: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, raw).hexdigest())


def parse(raw: bytes, content_type: str | None, limits: Limits = Limits()) -> ParsedManifest:
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    doc = _load(raw)
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest is not a JSON object")
    _spelled_exactly(doc, _FIELDS, "manifest")
    in_json = doc.get("mediaType")
    if in_json is not None and not isinstance(in_json, str):
        raise ManifestInvalid("mediaType must be a string")
    media_type = in_json if declared in _GENERIC else declared
    if not media_type:
        raise ManifestInvalid("no Content-Type and no mediaType: unknown manifest type")
    if media_type not in MEDIA_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type {media_type[:100]!r}")
    if in_json is not None and in_json != media_type:
        raise ManifestInvalid(
            f"Content-Type {media_type!r} does not match the manifest's mediaType {in_json!r}"
        )
    if in_json is None and media_type in _STATES_ITS_TYPE:
        raise ManifestInvalid(f"a {media_type} document must state its mediaType")
    if media_type == OCI_ARTIFACT:
        _one_kind(doc, media_type, _ARTIFACT_FIELDS)
        return _artifact(doc, limits)
    if doc.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")
    if media_type in INDEX_TYPES:
        _one_kind(doc, media_type, _INDEX_FIELDS)
        return _index(doc, media_type, limits)
    _one_kind(doc, media_type, _IMAGE_FIELDS)
    return _image(doc, media_type, limits)


def _load(raw: bytes) -> Any:
    # json.loads would guess UTF-16 and UTF-32 from the bytes and skip a BOM; Go
    # clients refuse both. JSON text never holds a raw NUL, UTF-16 of ASCII always does.
    if raw.startswith(_BOMS) or b"\x00" in raw:
        raise ManifestInvalid("manifests must be UTF-8 JSON without a byte order mark")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestInvalid("manifests must be UTF-8 JSON without a byte order mark") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):  # RecursionError: deep nesting
        raise ManifestInvalid("manifest is not valid JSON") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers differ on which of a repeated key wins: refuse the question.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        repeated = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise ManifestInvalid(f"manifest repeats the key {repeated[:100]!r}")
    return obj


def _spelled_exactly(obj: dict[str, Any], fields: dict[str, str], where: str) -> None:
    for key in obj:
        spelled = fields.get(key.lower())
        if spelled is not None and key != spelled:
            raise ManifestInvalid(
                f"{where} has {key[:100]!r}: Go clients read it as {spelled!r}, spell it so"
            )


def _one_kind(doc: dict[str, Any], media_type: str, allowed: frozenset[str]) -> None:
    """Refuse a document that is also another kind of manifest (a null field is absent,
    as Go decodes it)."""
    for key in _KIND_FIELDS:
        if key not in allowed and doc.get(key) is not None:
            raise ManifestInvalid(
                f"a {media_type} has no {key!r}: the document is ambiguous",
                detail={"mediaType": media_type, "field": key},
            )


def _image(doc: dict[str, Any], media_type: str, limits: Limits) -> ParsedManifest:
    if "config" not in doc:
        raise ManifestInvalid("an image manifest needs a config")
    config = _descriptor(doc["config"], "config")
    layers = _descriptors(doc, "layers", required=True, limit=(limits.layers, "max_layers"))
    artifact_type = _artifact_type(doc) or _checked_type(config.media_type, "config.mediaType")
    return ParsedManifest(
        media_type, artifact_type, _subject(doc), [config, *layers], config=config
    )


def _index(doc: dict[str, Any], media_type: str, limits: Limits) -> ParsedManifest:
    limit = (limits.index_entries, "max_index_entries")
    children = _descriptors(doc, "manifests", required=True, limit=limit)
    artifact_type = _artifact_type(doc)
    return ParsedManifest(media_type, artifact_type, _subject(doc), manifests=children)


def _artifact(doc: dict[str, Any], limits: Limits) -> ParsedManifest:
    artifact_type = _artifact_type(doc)
    if not artifact_type:
        raise ManifestInvalid("an artifact manifest needs an artifactType")
    blobs = _descriptors(doc, "blobs", required=False, limit=(limits.layers, "max_layers"))
    return ParsedManifest(OCI_ARTIFACT, artifact_type, _subject(doc), blobs)


def _subject(doc: dict[str, Any]) -> Descriptor | None:
    return _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None


def _artifact_type(doc: dict[str, Any]) -> str | None:
    value = _optional_str(doc, "artifactType")
    return _checked_type(value, "artifactType") if value is not None else None


def _checked_type(value: str, where: str) -> str:
    if not MEDIA_TYPE.match(value):
        raise ManifestInvalid(f"{where} {value[:100]!r} is not a media type")
    return value


def _optional_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ManifestInvalid(f"{key} must be a string")
    return value


def _descriptors(
    doc: dict[str, Any], key: str, *, required: bool, limit: tuple[int, str]
) -> list[Descriptor]:
    """The list ``key``, at most ``limit`` long (the count, and the option that sets it):
    checked before any entry is, so an oversized list costs no more than its parse."""
    items = doc.get(key)
    if items is None and not required:
        return []
    if not isinstance(items, list):
        raise ManifestInvalid(f"{key} must be a list of descriptors")
    most, option = limit
    if len(items) > most:
        raise ManifestInvalid(
            f"{key} lists {len(items)} descriptors; this repository takes at most {most}"
            f" (its {option} option)",
            detail={"field": key, "count": len(items), "limit": most, "option": option},
        )
    return [_descriptor(item, f"{key}[{i}]") for i, item in enumerate(items)]


# The descriptors nearly every manifest holds, checked in one expression: an index of
# 10,000 children is parsed in a third of the time the full checks take.
_PLAIN_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def _descriptor(item: object, where: str) -> Descriptor:
    if type(item) is dict and item.keys() <= _USUAL_DESCRIPTOR_KEYS and not item.get("urls"):
        media_type, digest, size = item.get("mediaType"), item.get("digest"), item.get("size")
        if (
            type(media_type) is str
            and media_type
            and type(digest) is str
            and _PLAIN_DIGEST.fullmatch(digest)
            and type(size) is int
            and size >= 0
        ):
            return Descriptor(media_type, digest, size)
    return _checked_descriptor(item, where)


def _checked_descriptor(item: object, where: str) -> Descriptor:
    """Every check of a descriptor, each failure named."""
    if not isinstance(item, dict):
        raise ManifestInvalid(f"{where} is not a descriptor object")
    if not item.keys() <= _USUAL_DESCRIPTOR_KEYS:
        _spelled_exactly(item, _DESCRIPTOR_FIELDS, where)
    media_type, digest, size = item.get("mediaType"), item.get("digest"), item.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where}.mediaType is missing")
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{where}.digest is missing")
    try:
        parsed = parse_digest(digest)
    except InvalidDigest as exc:
        raise ManifestInvalid(f"{where}.digest: {exc}") from None
    # bool is an int in Python; JSON true is not a size.
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where}.size must be a non-negative integer")
    urls = item.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ManifestInvalid(f"{where}.urls must be a list of strings")
    return Descriptor(media_type, str(parsed), size, tuple(urls))


def annotations_of(raw: bytes) -> dict[str, str] | None:
    """A stored manifest's annotations (it was validated as JSON when pushed)."""
    value = json.loads(raw).get("annotations")
    return value if isinstance(value, dict) and value else None


def acceptable(accept: str | None) -> bool:
    """May a manifest be served to a client sending this Accept header?

    Lenient, as distribution is: whatever the list says, the stored manifest is
    served (clients that list only some types still parse OCI and Docker v2
    alike, and refusing breaks pulls by digest). The one refusal is a client that
    accepts nothing but schema1, which cannot read any manifest we store.
    """
    if not accept:
        return True
    types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    types.discard("")
    return not types or not types <= SCHEMA1
