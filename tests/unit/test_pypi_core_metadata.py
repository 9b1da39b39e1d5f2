"""A wheel's METADATA read with ranged reads of its bytes: the zip forms wheels come
in (deflated, stored, zip64), and the ones that must be refused without reading more
than the bounds allow (no zip, a lying directory, a bomb, a corrupt member)."""

from __future__ import annotations

import io
import re
import struct
import zipfile
from collections.abc import AsyncIterator

import pytest
from packaging.version import Version

from app.formats.pypi.core_metadata import MAX_METADATA, BadWheel, wheel_metadata

METADATA = b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n\n"


class Blob:
    """Bytes read as the CAS reads them, counting what was asked for."""

    def __init__(self, data: bytes) -> None:
        self.data, self.read_bytes = data, 0

    async def read(self, offset: int, length: int) -> AsyncIterator[bytes]:
        for at in range(offset, min(offset + length, len(self.data)), 4096):
            chunk = self.data[at : min(at + 4096, offset + length)]
            self.read_bytes += len(chunk)
            yield chunk


def make_zip(
    members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED, zip64: bool = False
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            with archive.open(zipfile.ZipInfo(name), "w", force_zip64=zip64) as member:
                member.write(data)
    return buffer.getvalue()


async def metadata_of(data: bytes, project: str = "demo-pkg", version: str = "1.0") -> bytes:
    return await wheel_metadata(Blob(data).read, len(data), project, Version(version))


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
@pytest.mark.parametrize("zip64", [False, True])
async def test_metadata_is_read_from_every_zip_form(method: int, zip64: bool) -> None:
    members = {
        "demo_pkg/__init__.py": b"x = 1\n" * 1000,
        "demo_pkg-1.0.dist-info/METADATA": METADATA,
        "demo_pkg-1.0.dist-info/RECORD": b"",
    }
    data = make_zip(members, method, zip64)
    if zip64:
        data = _zip64_end(data)
    assert await metadata_of(data) == METADATA


def _zip64_end(data: bytes) -> bytes:
    """Rewrite the end record to send readers to the zip64 one (as a zip of 65,536
    members or 4 GiB does), which zipfile writes only when it must."""
    at = data.rfind(b"PK\x05\x06")
    directory_size, directory_offset = struct.unpack_from("<2L", data, at + 12)
    record = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 3, 3, directory_size, directory_offset
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return data[:at] + record + locator + end


async def test_the_wheels_own_dist_info_is_the_one_read() -> None:
    data = make_zip(
        {
            "vendored/other-2.0.dist-info/METADATA": b"Name: other\n",
            "other-2.0.dist-info/METADATA": b"Name: other\n",
            "Demo.Pkg-1.0.0.dist-info/METADATA": METADATA,
        }
    )
    assert await metadata_of(data) == METADATA  # normalised name, equal version
    with pytest.raises(BadWheel, match=re.escape("no demo-pkg-2.0.dist-info/METADATA")):
        await metadata_of(data, version="2.0")


@pytest.mark.parametrize("data", [b"", b"PK", b"not a zip" * 1000, bytes(100)])
async def test_what_is_no_zip_is_refused(data: bytes) -> None:
    with pytest.raises(BadWheel, match="not a zip"):
        await metadata_of(data)


async def test_a_bomb_is_refused_after_the_bound_and_no_more() -> None:
    bomb = make_zip({"demo_pkg-1.0.dist-info/METADATA": bytes(200 * 1024 * 1024)})
    blob = Blob(bomb)
    with pytest.raises(BadWheel, match="over"):
        await wheel_metadata(blob.read, len(bomb), "demo-pkg", Version("1.0"))
    assert blob.read_bytes < len(bomb)


async def test_a_directory_that_lies_about_the_size_is_no_way_past_the_bound() -> None:
    bomb = make_zip({"demo_pkg-1.0.dist-info/METADATA": bytes(2 * MAX_METADATA)})
    at = bomb.find(b"PK\x01\x02")
    lying = bomb[: at + 24] + struct.pack("<L", 100) + bomb[at + 28 :]  # uncompressed size
    with pytest.raises(BadWheel, match="over"):
        await metadata_of(lying)


async def test_a_corrupt_member_is_refused() -> None:
    data = bytearray(make_zip({"demo_pkg-1.0.dist-info/METADATA": METADATA * 50}))
    start = data.find(b"PK\x03\x04") + 30 + len("demo_pkg-1.0.dist-info/METADATA")
    data[start + 5] ^= 0xFF
    with pytest.raises(BadWheel):
        await metadata_of(bytes(data))


async def test_encrypted_or_unknown_methods_are_refused() -> None:
    data = bytearray(make_zip({"demo_pkg-1.0.dist-info/METADATA": METADATA}))
    at = data.find(b"PK\x01\x02")
    encrypted = data[: at + 8] + struct.pack("<H", 1) + data[at + 10 :]
    with pytest.raises(BadWheel, match="encrypted"):
        await metadata_of(bytes(encrypted))
    bzip2 = data[: at + 10] + struct.pack("<H", 12) + data[at + 12 :]
    with pytest.raises(BadWheel, match="method 12"):
        await metadata_of(bytes(bzip2))


async def test_a_directory_outside_the_file_is_refused() -> None:
    data = make_zip({"demo_pkg-1.0.dist-info/METADATA": METADATA})
    at = data.rfind(b"PK\x05\x06")
    broken = data[: at + 16] + struct.pack("<L", len(data) * 2) + data[at + 20 :]
    with pytest.raises(BadWheel, match="outside"):
        await metadata_of(broken)
