"""The packages the publishing benchmarks send: real wheels and real npm tarballs.

A big one carries one file of random bytes (from :class:`bench.harness.Source`, a new
nonce each time, so nothing can compress or deduplicate it into a better figure) and
is written to disk block by block; a small one is built in memory. Both are what the
clients and servers expect: a wheel is a zip with ``METADATA``, ``WHEEL`` and a
``RECORD`` that hashes every member; a tarball is gzip over ``package/package.json``
and the payload, and its ``dist`` fields (sha1 ``shasum``, sha512 ``integrity``) are
computed the way npm computes them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.harness import MiB, Source

WHEEL_TAGS = ("py3-none-any", "cp311-cp311-manylinux_2_17_x86_64",
              "cp312-cp312-manylinux_2_17_x86_64", "cp313-cp313-manylinux_2_17_x86_64")  # fmt: skip


def _record_hash(digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _metadata(project: str, version: str) -> bytes:
    return (
        f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
        "Summary: a package of the publishing benchmark\nRequires-Python: >=3.9\n\n"
    ).encode()


def wheel_name(project: str, version: str, tag: str = WHEEL_TAGS[0]) -> str:
    return f"{project.replace('-', '_')}-{version}-{tag}.whl"


def _write_wheel(handle: zipfile.ZipFile, project: str, version: str, tag: str,
                 payload: Iterator[bytes]) -> None:  # fmt: skip
    module = project.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    records = []
    digest, size = hashlib.sha256(), 0
    with handle.open(f"{module}/data.bin", "w", force_zip64=True) as member:
        for block in payload:
            member.write(block)
            digest.update(block)
            size += len(block)
    records.append(f"{module}/data.bin,{_record_hash(digest.digest())},{size}")
    wheel = f"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()
    for name, body in (("METADATA", _metadata(project, version)), ("WHEEL", wheel)):
        handle.writestr(f"{info}/{name}", body)
        records.append(f"{info}/{name},{_record_hash(hashlib.sha256(body).digest())},{len(body)}")
    records.append(f"{info}/RECORD,,")
    handle.writestr(f"{info}/RECORD", "\n".join(records) + "\n")


def big_wheel(directory: Path, project: str, version: str, size: int) -> Path:
    """A ``size``-byte payload stored (not deflated) in a wheel, written to ``directory``."""
    path = directory / wheel_name(project, version)
    source = Source(size, MiB, os.urandom(16))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as handle:
        _write_wheel(handle, project, version, WHEEL_TAGS[0], source.blocks())
    return path


def small_wheel(project: str, version: str, tag: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as handle:
        _write_wheel(handle, project, version, tag, iter([os.urandom(64)]))
    return buffer.getvalue()


def metadata_fields(project: str, version: str, name: str, body: bytes | Path) -> dict[str, str]:
    """The form fields twine sends with a wheel (the legacy upload API); a file on disk is
    hashed a MiB at a time."""
    sha256, md5, blake2b = hashlib.sha256(), hashlib.md5(), hashlib.blake2b(digest_size=32)
    with body.open("rb") if isinstance(body, Path) else io.BytesIO(body) as source:
        while block := source.read(MiB):
            for digest in (sha256, md5, blake2b):
                digest.update(block)
    return {
        ":action": "file_upload", "protocol_version": "1", "metadata_version": "2.1",
        "name": project, "version": version, "filetype": "bdist_wheel", "pyversion": "py3",
        "summary": "a package of the publishing benchmark", "requires_python": ">=3.9",
        "sha256_digest": sha256.hexdigest(),
        "md5_digest": base64.urlsafe_b64encode(md5.digest()).decode().rstrip("="),
        "blake2_256_digest": blake2b.hexdigest(),
    }  # fmt: skip


def upload_body_file(wheel: Path, project: str, version: str, out: Path) -> str:
    """The multipart body twine would POST for ``wheel``, written to ``out`` (the wheel
    copied a MiB at a time), so a client that streams a file can replay it; returns its
    Content-Type."""
    boundary = "bench" + os.urandom(12).hex()
    with out.open("wb") as sink, wheel.open("rb") as source:
        for key, value in metadata_fields(project, version, wheel.name, wheel).items():
            sink.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                       f"{value}\r\n".encode())  # fmt: skip
        sink.write(f'--{boundary}\r\nContent-Disposition: form-data; name="content";'
                   f' filename="{wheel.name}"\r\nContent-Type: application/octet-stream'
                   "\r\n\r\n".encode())  # fmt: skip
        while block := source.read(MiB):
            sink.write(block)
        sink.write(f"\r\n--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}"


# -- npm -----------------------------------------------------------------------------------


class _Reader(io.RawIOBase):
    """The blocks of a :class:`Source` as a file object, for ``tarfile.addfile``."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._rest:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._rest = block
        count = min(len(buffer), len(self._rest))
        buffer[:count] = self._rest[:count]
        self._rest = self._rest[count:]
        return count


def _manifest(name: str, version: str) -> bytes:
    return json.dumps({"name": name, "version": version,
                       "description": "a package of the publishing benchmark"}).encode()  # fmt: skip


def _add(archive: tarfile.TarFile, name: str, size: int, body: io.RawIOBase | io.BytesIO) -> None:
    info = tarfile.TarInfo(f"package/{name}")
    info.size, info.mode, info.mtime = size, 0o644, 499162500  # npm's fixed 1985 mtime
    archive.addfile(info, body)


def big_tarball(directory: Path, name: str, version: str, size: int) -> Path:
    """An npm tarball whose payload is ``size`` random bytes (gzip level 1: random bytes
    do not shrink, and npm's level 9 would only cost the bench time)."""
    path = directory / f"{name.replace('/', '-').lstrip('@')}-{version}.tgz"
    manifest = _manifest(name, version)
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        _add(archive, "package.json", len(manifest), io.BytesIO(manifest))
        _add(archive, "data.bin", size, _Reader(Source(size, MiB, os.urandom(16)).blocks()))
    return path


@dataclass(frozen=True)
class Tarball:
    name: str
    version: str
    body: bytes

    @property
    def shasum(self) -> str:
        return hashlib.sha1(self.body).hexdigest()

    @property
    def integrity(self) -> str:
        return "sha512-" + base64.b64encode(hashlib.sha512(self.body).digest()).decode()

    @property
    def filename(self) -> str:
        return f"{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"

    def publish_body(self, registry: str) -> bytes:
        """What ``npm publish`` PUTs: the packument of this one version, the tarball inline."""
        tarball_url = f"{registry.rstrip('/')}/{self.name}/-/{self.filename}"
        version = {
            "name": self.name, "version": self.version,
            "description": "a package of the publishing benchmark",
            "_id": f"{self.name}@{self.version}",
            "dist": {"shasum": self.shasum, "integrity": self.integrity, "tarball": tarball_url},
        }  # fmt: skip
        document = {
            "_id": self.name, "name": self.name, "description": version["description"],
            "dist-tags": {"latest": self.version}, "versions": {self.version: version},
            "access": None,
            "_attachments": {self.filename: {
                "content_type": "application/octet-stream",
                "data": base64.b64encode(self.body).decode(), "length": len(self.body),
            }},
        }  # fmt: skip
        return json.dumps(document).encode()


def publish_body_file(tarball: Path, name: str, version: str, registry: str, out: Path) -> Path:
    """The body ``npm publish`` would PUT for ``tarball``, written to ``out`` as it is made
    (base64 a few MiB at a time), so a client that streams a file can replay it."""
    sha1, sha512 = hashlib.sha1(), hashlib.sha512()
    with tarball.open("rb") as source:
        while block := source.read(MiB):
            sha1.update(block)
            sha512.update(block)
    filename = f"{name.rsplit('/', 1)[-1]}-{version}.tgz"
    integrity = "sha512-" + base64.b64encode(sha512.digest()).decode()
    dist = {"shasum": sha1.hexdigest(), "integrity": integrity,
            "tarball": f"{registry.rstrip('/')}/{name}/-/{filename}"}  # fmt: skip
    manifest = {"name": name, "version": version, "_id": f"{name}@{version}", "dist": dist}
    head = json.dumps({
        "_id": name, "name": name, "dist-tags": {"latest": version},
        "versions": {version: manifest}, "access": None,
    })[:-1]  # fmt: skip
    with out.open("wb") as sink, tarball.open("rb") as source:
        sink.write(f'{head}, "_attachments": {{{json.dumps(filename)}: {{'.encode())
        sink.write(b'"content_type": "application/octet-stream", "data": "')
        while block := source.read(3 * MiB):  # a multiple of 3: no padding mid-stream
            sink.write(base64.b64encode(block))
        sink.write(f'", "length": {tarball.stat().st_size}}}}}}}'.encode())
    return out


def small_tarball(name: str, version: str) -> Tarball:
    buffer = io.BytesIO()
    manifest = _manifest(name, version)
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        _add(archive, "package.json", len(manifest), io.BytesIO(manifest))
        _add(archive, "index.js", 64, io.BytesIO(os.urandom(64)))
    return Tarball(name, version, buffer.getvalue())
