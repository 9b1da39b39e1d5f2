"""Names, tags and references, validated with the distribution spec's expressions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.formats.api import Digest, InvalidDigest, parse_digest
from app.formats.oci.errors import DigestInvalid, ManifestUnknown, NameInvalid, TagInvalid

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class ImageName:
    """``<repository>/<image>``: the artifactapi repository is the first component."""

    repository: str
    image: str

    def __str__(self) -> str:
        return f"{self.repository}/{self.image}"


def parse_name(text: str) -> ImageName:
    if len(text) > MAX_NAME or not NAME.match(text):
        raise NameInvalid(f"invalid repository name {text[:300]!r}")
    repository, slash, image = text.partition("/")
    if not slash:
        raise NameInvalid(f"{text!r} names no image: use <repository>/<image>")
    return ImageName(repository, image)


def parse_tag(text: str) -> str:
    if not TAG.match(text):
        raise TagInvalid(f"invalid tag {text[:200]!r}", detail={"tag": text[:200]})
    return text


def parse_reference(text: str) -> str | Digest:
    """A manifest reference to push to: a digest when it has a ':', else a tag."""
    if ":" in text:
        return blob_digest(text)
    return parse_tag(text)


def lookup_reference(text: str) -> str | Digest:
    """A manifest reference to read or delete. One that is neither a tag nor a digest
    names no manifest there could be: unknown (404), as distribution answers, not a
    bad request."""
    try:
        return parse_reference(text)
    except (TagInvalid, DigestInvalid):
        raise ManifestUnknown(
            f"manifest {text[:200]!r} unknown: neither a tag nor a digest",
            detail={"reference": text[:200]},
        ) from None


def blob_digest(text: str) -> Digest:
    try:
        return parse_digest(text)
    except InvalidDigest as exc:
        raise DigestInvalid(str(exc)) from None
