"""A wheel's ``.dist-info/METADATA``, read out of the stored blob for PEP 658.

The wheel is never loaded: the zip's end record and central directory are read
from the end of the blob with ranged reads (the directory at most
:data:`MAX_DIRECTORY` bytes), then the one member's local header and its
compressed bytes, which stream through a decompressor told never to produce more
than :data:`MAX_METADATA` bytes. A zip bomb costs that much memory and no more; a
file that is no zip, or a zip without the METADATA of the wheel's own name and
version, is :class:`BadWheel`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

MAX_METADATA = 4 * 1024 * 1024  # uncompressed
MAX_DIRECTORY = 16 * 1024 * 1024  # a wheel of a hundred thousand files has ~10 MB

_END = struct.Struct("<4s4H2LH")  # end of central directory
_END_SIG = b"PK\x05\x06"
_LOCATOR = struct.Struct("<4sLQL")  # zip64 end of central directory locator
_LOCATOR_SIG = b"PK\x06\x07"
_END64 = struct.Struct("<4sQ2H2L4Q")
_END64_SIG = b"PK\x06\x06"
_ENTRY = struct.Struct("<4s4B4H3L5H2L")  # central directory file header
_ENTRY_SIG = b"PK\x01\x02"
_LOCAL = struct.Struct("<4s2B4H3L2H")  # local file header
_LOCAL_SIG = b"PK\x03\x04"
_MAX_COMMENT = 0xFFFF
_STORED, _DEFLATED = 0, 8
_FULL32 = 0xFFFFFFFF

Reader = Callable[[int, int], AsyncIterator[bytes]]  # (offset, length) -> chunks


class BadWheel(ValueError):
    """The upload is not a wheel whose METADATA can be read."""


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    method: int
    flags: int
    crc: int
    compressed: int
    size: int
    offset: int


async def wheel_metadata(read: Reader, size: int, project: str, version: Version) -> bytes:
    """The METADATA of ``<project>-<version>.dist-info`` in the wheel of ``size``
    bytes that ``read`` reads (the project normalised)."""
    directory = await _directory(read, size)
    member = _metadata_member(_members(directory), project, version)
    return await _extract(read, size, member)


async def _whole(read: Reader, offset: int, length: int) -> bytes:
    chunks = [chunk async for chunk in read(offset, length)]
    data = b"".join(chunks)
    if len(data) != length:
        raise BadWheel("the wheel is shorter than its zip directory says")
    return data


async def _directory(read: Reader, size: int) -> bytes:
    if size < _END.size:
        raise BadWheel("not a zip file")
    tail_length = min(size, _END.size + _MAX_COMMENT + _LOCATOR.size)
    tail = await _whole(read, size - tail_length, tail_length)
    at = tail.rfind(_END_SIG)
    if at < 0 or len(tail) - at < _END.size:
        raise BadWheel("not a zip file (no end of central directory)")
    _, disk, _, _, entries, length, offset, _ = _END.unpack_from(tail, at)
    if disk != 0:
        raise BadWheel("a zip split over several disks")
    if (offset == _FULL32 or length == _FULL32 or entries == 0xFFFF) and at >= _LOCATOR.size:
        length, offset = await _zip64(read, tail, at)
    if length > MAX_DIRECTORY:
        raise BadWheel(f"zip directory over {MAX_DIRECTORY} bytes")
    if offset + length > size:
        raise BadWheel("zip directory outside the file")
    return await _whole(read, offset, length)


async def _zip64(read: Reader, tail: bytes, at: int) -> tuple[int, int]:
    signature, _, record, _ = _LOCATOR.unpack_from(tail, at - _LOCATOR.size)
    if signature != _LOCATOR_SIG:
        raise BadWheel("zip64 end record missing")
    end = await _whole(read, record, _END64.size)
    fields = _END64.unpack(end)
    if fields[0] != _END64_SIG:
        raise BadWheel("zip64 end record missing")
    return fields[8], fields[9]


def _members(directory: bytes) -> list[_Member]:
    members, at = [], 0
    while at + _ENTRY.size <= len(directory):
        fields = _ENTRY.unpack_from(directory, at)
        if fields[0] != _ENTRY_SIG:
            raise BadWheel("corrupt zip directory")
        flags, method, crc, compressed, size = (
            fields[5],
            fields[6],
            fields[9],
            fields[10],
            fields[11],
        )
        name_length, extra_length, comment_length = fields[12], fields[13], fields[14]
        offset = fields[18]
        start = at + _ENTRY.size
        raw_name = directory[start : start + name_length]
        extra = directory[start + name_length : start + name_length + extra_length]
        if _FULL32 in (compressed, size, offset):
            size, compressed, offset = _zip64_sizes(extra, size, compressed, offset)
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        members.append(_Member(name, method, flags, crc, compressed, size, offset))
        at = start + name_length + extra_length + comment_length
    return members


def _zip64_sizes(extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    """The zip64 extra field's values for those the entry left at 0xFFFFFFFF."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, at)
        if kind == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, at + 4))
            if size == _FULL32 and values:
                size = values.pop(0)
            if compressed == _FULL32 and values:
                compressed = values.pop(0)
            if offset == _FULL32 and values:
                offset = values.pop(0)
            break
        at += 4 + length
    return size, compressed, offset


def _metadata_member(members: list[_Member], project: str, version: Version) -> _Member:
    for member in members:
        folder, _, leaf = member.name.partition("/")
        if leaf != "METADATA" or not folder.endswith(".dist-info"):
            continue
        name, _, text = folder.removesuffix(".dist-info").rpartition("-")
        try:
            if canonicalize_name(name) == project and Version(text) == version:
                return member
        except InvalidVersion:
            continue
    raise BadWheel(f"the wheel has no {project}-{version}.dist-info/METADATA")


async def _extract(read: Reader, size: int, member: _Member) -> bytes:
    if member.flags & 0x1:
        raise BadWheel("METADATA is encrypted")
    if member.size > MAX_METADATA:
        raise BadWheel(f"METADATA over {MAX_METADATA} bytes")
    if member.method not in (_STORED, _DEFLATED):
        raise BadWheel(f"METADATA compressed with zip method {member.method}")
    header = (
        await _whole(read, member.offset, _LOCAL.size)
        if member.offset + _LOCAL.size <= size
        else b""
    )
    if len(header) != _LOCAL.size or header[:4] != _LOCAL_SIG:
        raise BadWheel("corrupt zip member header")
    fields = _LOCAL.unpack(header)
    start = member.offset + _LOCAL.size + fields[10] + fields[11]
    if start + member.compressed > size:
        raise BadWheel("zip member outside the file")
    data = await _inflated(read(start, member.compressed), member.method)
    if len(data) != member.size or zlib.crc32(data) != member.crc:
        raise BadWheel("METADATA does not match its zip directory entry (size or CRC)")
    return data


async def _inflated(chunks: AsyncIterator[bytes], method: int) -> bytes:
    """The member's bytes, never more than MAX_METADATA of them (a bomb stops here)."""
    out = bytearray()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if method == _DEFLATED else None
    try:
        async for chunk in chunks:
            pending = chunk
            while pending:
                if inflater is None:
                    piece, pending = pending, b""
                else:
                    piece = inflater.decompress(pending, MAX_METADATA + 1 - len(out))
                    pending = inflater.unconsumed_tail
                out += piece
                if len(out) > MAX_METADATA:
                    raise BadWheel(f"METADATA over {MAX_METADATA} bytes")
                if inflater is not None and inflater.eof:
                    pending = b""
    except zlib.error as exc:
        raise BadWheel(f"METADATA is not valid deflate data: {exc}") from None
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    return bytes(out)
