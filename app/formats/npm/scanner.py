"""A publish body, split as it streams: the attachments' data strings out, the rest kept.

``npm publish`` sends one JSON document: the packument of the new version and, under
``_attachments.<file>.data``, the tarball as one base64 string (700 MB of it for a
500 MiB tarball). A JSON parser hands over whole string values, so the scanner here
walks the body itself: it tracks only where it is (the container stack and the keys of
the first three levels), copies everything but those data strings into a bounded
document for ``json`` to parse afterwards, and hands each data string on as it arrives,
raw, for a decoder stage to turn into bytes (:func:`base64_decoded` for a tarball,
:func:`json_text` for a small JSON-text attachment such as a provenance bundle).

Nothing here checks that the JSON is well formed: the kept document is parsed whole
once the body has ended, and a body that is not JSON fails there. The scanner only has
to find the data strings of a well-formed body and stay bounded on any other.
Each stage is a plain async generator over chunks, testable alone.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

import pybase64

from app.formats.api import BadRequest, PayloadTooLarge

# What changes where the scanner is: a string, or a container's punctuation.
_STRUCTURE = re.compile(rb'["{}\[\]:,]')
_ESCAPE = re.compile(rb"\\(u[0-9A-Fa-f]{4}|[\"\\/bfnrt])")
_SIMPLE = {b'"': b'"', b"\\": b"\\", b"/": b"/", b"b": b"\b", b"f": b"\f", b"n": b"\n"}
_SIMPLE |= {b"r": b"\r", b"t": b"\t"}
_DATA_PATH = ("_attachments", None, "data")  # None: any attachment's name


class Truncated(BadRequest):
    def __init__(self) -> None:
        super().__init__("the body ended inside the JSON document")


@dataclass
class _Frame:
    container: int  # ord("{") or ord("[")
    key: str | None = None  # the key whose value comes next (objects)
    expect_key: bool = True


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str  # the key under _attachments
    raw: AsyncIterator[bytes]  # the data string's JSON text, quotes stripped, escapes kept


class BodyScanner:
    """One body (at most ``max_body`` bytes, if given): iterate :meth:`attachments` (each
    one's ``raw`` to the end before the next), then :attr:`document` is the rest of the
    JSON, every data string ``""``."""

    def __init__(
        self, body: AsyncIterable[bytes], max_document: int, max_body: int | None = None
    ) -> None:
        self._chunks = aiter(body)
        self._max_body = max_body
        self._read = 0
        self._buf = b""
        self._pos = 0
        self._doc = bytearray()
        self._max_document = max_document
        self._ended = False

    @property
    def document(self) -> bytes:
        assert self._ended, "read the attachments first"
        return bytes(self._doc)

    def _keep(self, data: bytes) -> None:
        self._doc += data
        if len(self._doc) > self._max_document:
            raise PayloadTooLarge(
                f"the publish document (all but the attachments' data) exceeds"
                f" {self._max_document} bytes"
            )

    async def _more(self) -> bool:
        """Read on; False at the end of the body. Unread bytes stay in the buffer."""
        async for chunk in self._chunks:
            self._read += len(chunk)
            if self._max_body is not None and self._read > self._max_body:
                raise PayloadTooLarge(f"body exceeds the limit of {self._max_body} bytes")
            if chunk:
                self._buf = self._buf[self._pos :] + chunk
                self._pos = 0
                return True
        return False

    async def attachments(self) -> AsyncIterator[Attachment]:
        stack: list[_Frame] = []
        while True:
            match = _STRUCTURE.search(self._buf, self._pos)
            if match is None:
                self._keep(self._buf[self._pos :])
                self._pos = len(self._buf)
                if not await self._more():
                    break
                continue
            at = match.start()
            self._keep(self._buf[self._pos : at])
            char = self._buf[at]
            self._pos = at + 1
            top = stack[-1] if stack else None
            if char == 0x22:  # '"'
                if top is not None and top.container == 0x7B and top.expect_key:
                    top.key = json.loads(await self._string())
                elif self._at_data(stack):
                    name = stack[1].key
                    assert name is not None
                    raw = self._data()
                    yield Attachment(name, raw)
                    async for _ in raw:  # a consumer that stopped early: skip the rest
                        pass
                    self._keep(b'""')
                else:
                    await self._string()
            elif char in (0x7B, 0x5B):  # '{' '['
                self._keep(bytes((char,)))
                stack.append(_Frame(char))
            elif char in (0x7D, 0x5D):  # '}' ']'
                self._keep(bytes((char,)))
                if stack:
                    stack.pop()
            else:
                self._keep(bytes((char,)))
                if top is not None and top.container == 0x7B:
                    top.expect_key = char == 0x2C  # ',' then a key, ':' then a value
        self._ended = True

    @staticmethod
    def _at_data(stack: list[_Frame]) -> bool:
        if len(stack) != 3 or any(f.container != 0x7B for f in stack):
            return False
        return all(want is None or f.key == want for f, want in zip(stack, _DATA_PATH, strict=True))

    async def _string(self) -> bytes:
        """A string whose opening quote was read, kept; its JSON text, quotes included."""
        start = len(self._doc)
        self._keep(b'"')
        async for piece in self._pieces():
            self._keep(piece)
        self._keep(b'"')
        return bytes(self._doc[start:])

    def _data(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        """The text of a string (opening quote read) up to its closing quote, in pieces
        as they arrive; an escape is never split between pieces."""
        while True:
            # Two memchr-fast finds: a regex scans a 700 MB string ten times slower.
            buf, pos = self._buf, self._pos
            quote = buf.find(b'"', pos)
            backslash = buf.find(b"\\", pos, None if quote < 0 else quote)
            at = backslash if backslash >= 0 else quote
            if at < 0:
                if pos < len(buf):
                    yield buf[pos:]
                    self._pos = len(buf)
                if not await self._more():
                    raise Truncated()
                continue
            if at == quote:
                if at > self._pos:
                    yield self._buf[self._pos : at]
                self._pos = at + 1
                return
            # A backslash: its escape (up to "\\uXXXX") goes out whole with what precedes.
            offset = at - self._pos
            while len(self._buf) < self._pos + offset + 6 and await self._more():
                pass
            at = self._pos + offset
            end = at + (6 if self._buf[at + 1 : at + 2] == b"u" else 2)
            if end > len(self._buf):
                raise Truncated()
            yield self._buf[self._pos : end]
            self._pos = end


def _unescaped(text: bytes) -> bytes:
    def one(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code[:1] == b"u":
            point = int(code[1:], 16)
            if point > 0x7F:
                raise BadRequest("attachment data: not base64 (a non-ASCII escape)")
            return bytes((point,))
        return _SIMPLE[code]

    return _ESCAPE.sub(one, text)


async def base64_decoded(raw: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The bytes a base64 data string encodes, decoded strictly four characters at a
    time as its text streams in; :class:`BadRequest` for anything that is not base64."""
    carry = b""
    padded = False
    async for piece in raw:
        if b"\\" in piece:
            if _ESCAPE.sub(b"", piece).count(b"\\"):
                raise BadRequest("attachment data: an invalid JSON escape")
            piece = _unescaped(piece)
        text = carry + piece if carry else piece
        whole = len(text) - len(text) % 4
        carry = text[whole:]
        if not whole:
            continue
        if padded:
            raise BadRequest("attachment data: not base64 (data after the padding)")
        try:
            # pybase64's SIMD decoder: 16 GB/s here where binascii's does 0.3 GB/s, the
            # most a publish body cost; as strict (alphabet, padding only at the end).
            decoded = pybase64.b64decode(text[:whole], validate=True)
        except binascii.Error as exc:
            raise BadRequest(f"attachment data: not base64 ({exc})") from None
        padded = text[whole - 1] == 0x3D  # '='
        if decoded:
            yield decoded
    if carry:
        raise BadRequest("attachment data: not base64 (its length is no multiple of 4)")


async def json_text(raw: AsyncIterable[bytes], limit: int) -> bytes:
    """A small string attachment (a provenance bundle: JSON text, not base64), decoded
    from its JSON escapes to UTF-8; :class:`PayloadTooLarge` past ``limit`` bytes."""
    text = bytearray(b'"')
    async for piece in raw:
        text += piece
        if len(text) > limit:
            raise PayloadTooLarge(f"an attachment other than the tarball exceeds {limit} bytes")
    text += b'"'
    try:
        value: str = json.loads(bytes(text))
        return value.encode()
    except (ValueError, UnicodeEncodeError) as exc:
        raise BadRequest(f"attachment data: not a JSON string ({exc})") from None
