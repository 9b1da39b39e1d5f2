"""Uploads into a PyPI local repository, answered as PyPI answers them.

The form (:mod:`uploads`) streams its file into the CAS once the filename has been
checked; the digests the client claims are verified on the way (any mismatch: 400,
nothing recorded). The filename must parse as a wheel or sdist of the project and
version the form names; a wheel's METADATA is read out of the stored blob
(:mod:`core_metadata`) and stored as a blob of its own for PEP 658.

Re-uploads as on PyPI, which is what twine's ``--skip-existing`` and uv's retries
rely on: the same bytes under a filename again is a 200 that changes nothing;
other bytes are a 400 whose message begins ``File already exists`` (unless the
repository allows redeploys); a filename a deleted file used stays taken unless the
repository says otherwise. ``:action`` ``submit`` and ``doc_upload`` are gone (410),
as on PyPI.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.parser import HeaderParser

from aiohttp import web
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict

from app.formats.api import (
    ApiError,
    BadRequest,
    Blob,
    ContentStore,
    Digest,
    Digests,
    InvalidDigest,
    Repository,
    hashed_aside,
    once,
    parse_digest,
    verified,
)
from app.formats.pypi import core_metadata, simple
from app.formats.pypi.records import FileRow, NewFile, PypiRecords
from app.formats.pypi.uploads import Fields, read_form


class LocalPypiOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # May an existing filename be given different bytes (PyPI: never)?
    allow_redeploy: bool = False
    # Does a deleted file's name stay taken (PyPI: always)?
    reserve_deleted: bool = True


class Gone(ApiError):
    status = 410
    code = "GONE"


MAX_FILENAME = 255
# Not kept with the file: how the upload was sent, and what is checked instead.
_TRANSPORT = frozenset(
    {":action", "protocol_version", "sha256_digest", "md5_digest", "blake2_256_digest", "content"}
)


@dataclass(frozen=True, slots=True)
class Distribution:
    """What a filename says: whose, which version, which kind."""

    filename: str
    project: str  # normalised
    version: Version
    filetype: str  # bdist_wheel | sdist


@dataclass(frozen=True, slots=True)
class Received:
    """The file part, stored: its blob and the digests computed on the way."""

    distribution: Distribution
    blob: Blob
    digests: Digests


@dataclass(frozen=True, slots=True)
class Published:
    file: FileRow
    created: bool  # False: the identical file was there already


def distribution(filename: str) -> Distribution:
    """The wheel or sdist ``filename`` names; :class:`BadRequest` unless it is one."""
    if (
        len(filename) > MAX_FILENAME
        or not simple.safe_filename(filename)
        or any(ord(c) < 0x20 or c == "\x7f" for c in filename)
    ):
        raise BadRequest(f"invalid distribution filename {filename[:200]!r}")
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            filetype = "bdist_wheel"
        else:
            name, version = parse_sdist_filename(filename)
            filetype = "sdist"
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise BadRequest(f"invalid distribution filename: {exc}") from None
    if not simple.valid_project(name):
        raise BadRequest(f"invalid distribution filename {filename[:200]!r}")
    return Distribution(filename, str(name), version, filetype)


class Publisher:
    def __init__(self, cas: ContentStore, records: PypiRecords) -> None:
        self.cas, self.records = cas, records

    async def upload(
        self, request: web.Request, repo: Repository[LocalPypiOptions], max_size: int
    ) -> Published:
        async def store(filename: str, fields: Fields, chunks: AsyncIterator[bytes]) -> Received:
            return await self._receive(repo, filename, fields, chunks, max_size)

        form = await read_form(request, store, max_size)
        fields = form.fields
        _check_action(fields)
        if form.stored is None:
            raise BadRequest("no file in the upload: send it as the content field")
        received = form.stored
        dist = received.distribution
        _check_claims(fields, dist, received)
        metadata = await self._core_metadata(received)
        new = NewFile(
            filename=dist.filename,
            version=str(dist.version),
            filetype=dist.filetype,
            blob_digest=received.blob.digest,
            size=received.blob.size,
            requires_python=_requires_python(fields),
            metadata_digest=metadata.digest if metadata else None,
            metadata_size=metadata.size if metadata else None,
            fields=_kept(fields),
        )
        options = repo.options
        added = await self.records.add(
            repo.id,
            dist.project,
            fields.get("name") or dist.project,
            new,
            replace=options.allow_redeploy,
            reserved=options.reserve_deleted,
        )
        if added.file is None:
            raise _reused(dist.filename)
        if not added.created and added.file.blob_digest != new.blob_digest:
            raise _exists(dist.filename)
        return Published(added.file, added.created)

    async def _receive(
        self,
        repo: Repository[LocalPypiOptions],
        filename: str,
        fields: Fields,
        chunks: AsyncIterator[bytes],
        max_size: int,
    ) -> Received:
        """The file part: checked against what is known before a byte is read, then
        stored with every digest claimed so far verified as it streams."""
        _check_action(fields, final=False)
        dist = distribution(filename)
        if fields.get("name") is not None and fields.get("version") is not None:
            _check_form(fields, dist)  # every client sends them first
        claimed = _claimed(fields)
        existing = await self.records.file(repo.id, dist.filename)
        sha256 = claimed.get("sha256")
        # Refused before the body is read, where the answer is known already.
        if existing is not None:
            differs = sha256 is not None and existing.blob_digest != str(sha256)
            if differs and not repo.options.allow_redeploy:
                raise _exists(dist.filename)
        elif repo.options.reserve_deleted and await self.records.reserved(repo.id, dist.filename):
            raise _reused(dist.filename)
        # sha256 is the content store's to compute, once.
        digests = Digests("blake2b_256", *(["md5"] if "md5" in claimed else []), sha256=False)
        stream = hashed_aside(chunks, digests)  # the loop hashes sha256 only
        for algorithm in ("md5", "blake2b_256"):
            if algorithm in claimed:
                stream = verified(stream, digests, claimed[algorithm])
        blob = await self.cas.ingest(stream, sha256, max_size=max_size)
        return Received(dist, blob, digests)

    async def _core_metadata(self, received: Received) -> Blob | None:
        """A wheel's METADATA, checked to name the wheel's project and version, stored
        as a blob of its own; None for an sdist."""
        dist = received.distribution
        if dist.filetype != "bdist_wheel":
            return None
        blob = received.blob
        try:
            data = await core_metadata.wheel_metadata(
                lambda offset, length: self.cas.open(blob.digest, offset, length),
                blob.size,
                dist.project,
                dist.version,
            )
        except core_metadata.BadWheel as exc:
            raise BadRequest(f"invalid wheel {dist.filename}: {exc}") from None
        _check_metadata(data, dist)
        return await self.cas.ingest(once(data))


def _check_action(fields: Fields, final: bool = True) -> None:
    """``:action`` and ``protocol_version``, as far as they have been sent (``final``:
    the whole form is in)."""
    action = fields.get(":action")
    if action in ("submit", "doc_upload"):
        raise Gone(f"{action} is no longer supported: upload the files themselves")
    if action is None and final:
        raise BadRequest("missing :action (file_upload)")
    if action not in (None, "file_upload"):
        raise BadRequest(f"unknown :action {action[:100]!r}")
    version = fields.get("protocol_version")
    if version is None and final:
        raise BadRequest("missing protocol_version (1)")
    if version not in (None, "1"):
        raise BadRequest(f"unknown protocol_version {version[:100]!r}: only 1 is spoken")


def _claimed(fields: Fields) -> dict[str, Digest]:
    """The digests the client sent, by the algorithm our hashes go by."""
    claimed: dict[str, Digest] = {}
    try:
        if (text := fields.get("sha256_digest")) is not None:
            claimed["sha256"] = parse_digest(f"sha256:{text.strip().lower()}", ("sha256",))
        if (text := fields.get("md5_digest")) is not None:
            claimed["md5"] = Digest("md5", _md5_hex(text.strip()))
        if (text := fields.get("blake2_256_digest")) is not None:
            claimed["blake2b_256"] = Digest("blake2b_256", _hex(text, 64, "blake2_256_digest"))
    except InvalidDigest as exc:
        raise BadRequest(f"sha256_digest: {exc}") from None
    return claimed


def _hex(text: str, length: int, field: str) -> str:
    value = text.strip().lower()
    if len(value) != length or any(c not in "0123456789abcdef" for c in value):
        raise BadRequest(f"{field}: expected {length} hex digits")
    return value


def _md5_hex(text: str) -> str:
    """md5_digest as poetry sends it (hex) or as distutils did (urlsafe base64, no
    padding)."""
    if len(text) == 32:
        return _hex(text, 32, "md5_digest")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise BadRequest("md5_digest: expected 32 hex digits or urlsafe base64 of 16 bytes")
    return raw.hex()


def _check_form(fields: Fields, dist: Distribution) -> None:
    """The form names the file's project, version and type."""
    name, version = fields.get("name"), fields.get("version")
    if not name or not version:
        raise BadRequest("the form must name the project (name) and its version (version)")
    if not simple.valid_project(name) or canonicalize_name(name) != dist.project:
        raise BadRequest(f"{dist.filename} is not a file of the project {name[:100]!r}")
    try:
        if Version(version) != dist.version:
            raise BadRequest(f"{dist.filename} is not a file of version {version[:100]!r}")
    except InvalidVersion:
        raise BadRequest(f"invalid version {version[:100]!r}") from None
    filetype = fields.get("filetype")
    if filetype is not None and filetype != dist.filetype:
        raise BadRequest(f"{dist.filename} is not a {filetype[:40]!r}")


def _check_claims(fields: Fields, dist: Distribution, received: Received) -> None:
    """The whole form against the file: what it names, and any digest claimed only
    after the file (those before were verified as it streamed)."""
    _check_form(fields, dist)
    late = _claimed(fields)
    actual = {
        "sha256": received.blob.digest,
        **{a: str(received.digests.digest(a)) for a in received.digests.algorithms},
    }
    for algorithm, digest in late.items():
        if algorithm not in actual:
            raise BadRequest(f"send {algorithm}_digest before the file")
        if actual[algorithm] != str(digest):
            raise BadRequest(f"the file does not match its {algorithm} digest")


def _requires_python(fields: Fields) -> str | None:
    text = (fields.get("requires_python") or "").strip()
    if not text:
        return None
    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        raise BadRequest(f"invalid requires_python {text[:100]!r}") from None
    return text


def _check_metadata(data: bytes, dist: Distribution) -> None:
    """The METADATA names the wheel's own project and version."""
    try:
        headers = HeaderParser().parsestr(data.decode("utf-8"))
        name, version = headers.get("Name"), headers.get("Version")
        if name is None or version is None:
            raise ValueError("no Name or Version")
        if canonicalize_name(name) != dist.project or Version(version) != dist.version:
            raise ValueError(f"it names {name[:100]} {version[:100]}")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"invalid wheel {dist.filename}: METADATA: {exc}") from None


def _kept(fields: Fields) -> dict[str, str | list[str]]:
    kept: dict[str, str | list[str]] = {}
    for key, value in fields.items:
        if key in _TRANSPORT:
            continue
        if key in kept:
            previous = kept[key]
            kept[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            kept[key] = value
    return kept


def _exists(filename: str) -> BadRequest:
    return BadRequest(f"File already exists ({filename}) with other content")


def _reused(filename: str) -> BadRequest:
    return BadRequest(
        f"Filename {filename} was used by a deleted file and stays reserved: upload a new version"
    )
