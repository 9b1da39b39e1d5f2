"""The legacy upload form twine, uv and poetry POST: read as it streams.

``multipart/form-data`` with metadata fields (``name``, ``version``, ``filetype``,
``sha256_digest``, repeated ``classifiers`` …) and the distribution in ``content``.
The fields are small and bounded (:data:`MAX_FIELD`, :data:`MAX_FIELDS_BYTES`,
:data:`MAX_PARTS`); the file part is handed, chunk by chunk as aiohttp's reader
gives it, to the caller's ``store``, never held. Every client sends the fields
first, so the digests they claim are known before the bytes arrive and are checked
as the file streams (the last chunk held back until they match, so a wrong file
never lands); one claimed after the file is compared afterwards.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import BodyPartReader, MultipartReader, web

from app.formats.api import BadRequest, PayloadTooLarge

MAX_FIELD = 64 * 1024  # bytes of one field
MAX_DESCRIPTION = 512 * 1024  # the long description (a README) may be longer
MAX_FIELDS_BYTES = 1024 * 1024  # of every field together
MAX_PARTS = 1000  # classifiers repeat; a thousand of anything is no real upload
READ = 1024 * 1024

# One line each; the long ones (description, license) may hold line breaks.
_MULTILINE = frozenset({"description", "license", "license_expression"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\r\n]")

Stored = TypeVar("Stored")
# (filename, the fields so far, the file's chunks) -> what was stored
Store = Callable[[str, "Fields", AsyncIterator[bytes]], Awaitable[Stored]]


class Fields:
    """The form's fields, in order, repeated ones kept."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def get(self, name: str) -> str | None:
        for key, value in self.items:
            if key == name:
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.items if key == name]

    def add(self, name: str, value: str) -> None:
        self.items.append((name, value))


@dataclass(frozen=True, slots=True)
class Form(Generic[Stored]):
    fields: Fields
    stored: Stored | None  # None: no ``content`` part


async def read_form(request: web.Request, store: Store[Stored], max_size: int) -> Form[Stored]:
    """The upload form; ``store`` takes the file part when it comes.
    :class:`BadRequest` for a form that is not one, :class:`PayloadTooLarge` for a
    body over ``max_size`` that says so up front."""
    if request.content_length is not None and request.content_length > max_size:
        raise PayloadTooLarge(f"body exceeds the limit of {max_size} bytes")
    if not request.content_type.startswith("multipart/form-data"):
        raise BadRequest("an upload is multipart/form-data")
    with _malformed():
        reader = await request.multipart()
    return await _parts(reader, store)


@contextmanager
def _malformed() -> Iterator[None]:
    """Around aiohttp's reader only, whose word for a malformed body is ValueError."""
    try:
        yield
    except ValueError as exc:
        raise BadRequest(f"malformed multipart body: {str(exc)[:200]}") from None


async def _parts(reader: MultipartReader, store: Store[Stored]) -> Form[Stored]:
    fields, total, count = Fields(), 0, 0
    stored: Stored | None = None
    while True:
        with _malformed():
            part = await reader.next()
        if part is None:
            return Form(fields, stored)
        count += 1
        if count > MAX_PARTS:
            raise BadRequest(f"more than {MAX_PARTS} form fields")
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart bodies are not an upload")
        _plain(part)
        name = part.name or ""
        if name == "content":
            if stored is not None:
                raise BadRequest("one file per upload")
            if not part.filename:
                raise BadRequest("the content field must be a file, with its filename")
            stored = await store(part.filename, fields, _chunks(part))
            continue
        if part.filename:
            continue  # gpg_signature and the like: read, not kept
        value = await _field(part, name)
        total += len(value)
        if total > MAX_FIELDS_BYTES:
            raise BadRequest(f"form fields over {MAX_FIELDS_BYTES} bytes in all")
        fields.add(name, value)


def _plain(part: BodyPartReader) -> None:
    for header in ("Content-Transfer-Encoding", "Content-Encoding"):
        encoding = part.headers.get(header, "").lower()
        if encoding not in ("", "binary", "8bit", "7bit", "identity"):
            raise BadRequest(f"form parts with {header} {encoding[:40]!r} are not supported")


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        with _malformed():
            chunk = await part.read_chunk(READ)
        if not chunk:
            return
        yield chunk


async def _field(part: BodyPartReader, name: str) -> str:
    limit = MAX_DESCRIPTION if name == "description" else MAX_FIELD
    data = bytearray()
    while True:
        with _malformed():
            chunk = await part.read_chunk(min(READ, limit + 1))
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise BadRequest(f"field {name[:100]!r} over {limit} bytes")
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"field {name[:100]!r} is not UTF-8") from None
    if _CONTROL.search(value) or (name not in _MULTILINE and _LINE_BREAK.search(value)):
        raise BadRequest(f"field {name[:100]!r} holds control characters")
    return value
