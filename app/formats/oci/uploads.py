"""Blob upload sessions that any replica can continue.

A session is a row (``oci_uploads``) and, per ``PATCH``, one part staged in the
content store (``ContentStore.stage``), recorded once it is complete. Nothing
lives in process memory, so ``POST``, ``PATCH`` and ``PUT`` may each land on a
different replica. A ``PATCH`` that fails half-way leaves no part: the session
resumes from the last recorded byte.

Finishing hands the parts and the trailing body to ``ContentStore.commit``, which
streams them through the CAS once, or, for the common push (one ``PATCH`` with the
whole blob, an empty ``PUT``), adopts the single part without reading it again: its
sha256 was computed while it was staged.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterable

from app.formats.api import Blob, ContentStore, Digest, Part, whole_number
from app.formats.oci.errors import BlobUploadInvalid, BlobUploadUnknown, RangeInvalid, SizeInvalid
from app.formats.oci.records import OciRecords, Upload

_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


def range_header(size: int) -> str:
    """The ``Range`` a session reports: bytes received, inclusive ("0-0" when empty)."""
    return f"0-{max(size - 1, 0)}"


def parse_content_range(text: str, size: int) -> tuple[int, int]:
    """The spec's ``<start>-<end>`` (inclusive) of a chunk for a session holding
    ``size`` bytes; ``bytes `` prefixes are tolerated."""
    match = re.match(r"^(?:bytes )?([0-9]+)-([0-9]+)$", text.strip())
    if not match:
        raise BlobUploadInvalid(f"invalid Content-Range {text[:100]!r}")
    start, end = whole_number(match.group(1)), whole_number(match.group(2))
    if start is None or end is None:
        # Longer than any offset can be, so not where the session ends: distribution's
        # 416 with the session's Range, decided before int() meets thousands of digits.
        raise _out_of_order(size)
    if end < start:
        raise BlobUploadInvalid(f"invalid Content-Range {text[:100]!r}")
    return start, end


def chunk_range(text: str, size: int, announced: int | None) -> tuple[int, int]:
    """The ``Content-Range`` of a chunk (a ``PATCH``, or the closing ``PUT``'s body)
    for a session holding ``size`` bytes, checked before any byte is read: it starts
    where the session ends (else 416 with the session's Range) and, when the request
    announces its length, is that long (else SIZE_INVALID, as distribution answers)."""
    start, end = parse_content_range(text, size)
    if start != size:
        raise _out_of_order(size)
    if announced is not None and announced != end - start + 1:
        raise SizeInvalid(
            f"Content-Range {start}-{end} is {end - start + 1} bytes,"
            f" Content-Length says {announced}"
        )
    return start, end


class Uploads:
    def __init__(self, cas: ContentStore, records: OciRecords) -> None:
        self.cas = cas
        self.records = records

    async def start(self, repository_id: int, name: str) -> str:
        upload_id = uuid.uuid4().hex
        await self.records.create_upload(upload_id, repository_id, name)
        return upload_id

    async def get(self, upload_id: str, repository_id: int, name: str) -> Upload:
        upload = None
        if _UPLOAD_ID.match(upload_id):
            upload = await self.records.get_upload(upload_id)
        if upload is None or (upload.repository_id, upload.name) != (repository_id, name):
            raise BlobUploadUnknown(f"upload {upload_id[:64]!r} unknown or finished")
        return upload

    async def append(
        self,
        upload: Upload,
        body: AsyncIterable[bytes],
        content_range: tuple[int, int] | None,
        max_size: int,
    ) -> int:
        """Stage one chunk at the session's end (``content_range`` from
        :func:`chunk_range`); return the session's new size."""
        part = await self.cas.stage(upload.id, upload.size, body, max_size=max_size)
        if content_range is not None and part.size != content_range[1] - content_range[0] + 1:
            await self.cas.drop([part])
            raise SizeInvalid(
                f"Content-Range announced {content_range}, body had {part.size} bytes"
            )
        if part.size == 0:  # nothing to record; the next chunk starts at the same offset
            await self.cas.drop([part])
            return upload.size
        if not await self.records.add_part(upload.id, part):
            await self.cas.drop([part])  # another request appended first
            current = await self.records.get_upload(upload.id)
            raise _out_of_order(current.size if current else 0)
        return upload.size + part.size

    async def finish(
        self,
        upload: Upload,
        expected: Digest,
        trailing: AsyncIterable[bytes] | None,
        max_size: int,
    ) -> Blob:
        parts = await self.records.parts(upload.id)
        blob = await self.cas.commit(parts, trailing, expected, max_size=max_size)
        await self.records.link_blob(upload.repository_id, upload.name, str(expected), blob.digest)
        await self.cancel(upload, parts)
        return blob

    async def cancel(self, upload: Upload, parts: list[Part] | None = None) -> None:
        """Drop the session row first (no replica may append any more), then its parts."""
        if parts is None:
            parts = await self.records.parts(upload.id)
        await self.records.delete_upload(upload.id)
        await self.cas.drop(parts)


def _out_of_order(size: int) -> RangeInvalid:
    return RangeInvalid(
        f"chunk must start at offset {size}",
        headers={"Range": range_header(size)},
    )
