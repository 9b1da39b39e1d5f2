"""Wheels, sdists and upload forms for the PyPI local repository tests, made in memory
(real clients get theirs from ``python -m build``, see test_pypi_clients.py)."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import FormData

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def metadata_text(name: str, version: str, requires_python: str | None = None) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    return ("\n".join(lines) + "\n\n").encode()


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def wheel(
    name: str = "demo_pkg",
    version: str = "1.0",
    *,
    metadata: bytes | None = None,
    without_metadata: bool = False,
    extra: dict[str, bytes] | None = None,
    module: bytes = b"VALUE = 42\n",
) -> bytes:
    """A real, installable pure-Python wheel of ``name`` (as in its filename)."""
    dist_info = f"{name}-{version}.dist-info"
    package = name.lower().replace("-", "_").replace(".", "_")
    files: dict[str, bytes] = {f"{package}/__init__.py": module}
    if not without_metadata:
        files[f"{dist_info}/METADATA"] = (
            metadata if metadata is not None else metadata_text(name, version)
        )
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files.update(extra or {})
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files.items())
    record += f"{dist_info}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            archive.writestr(member, data)
        archive.writestr(f"{dist_info}/RECORD", record)
    return buffer.getvalue()


def sdist(name: str = "demo_pkg", version: str = "1.0") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = metadata_text(name, version)
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def wheel_name(name: str = "demo_pkg", version: str = "1.0") -> str:
    return f"{name}-{version}-py3-none-any.whl"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Upload:
    """The form twine sends for one file; change a field to break it."""

    filename: str
    content: bytes | None
    name: str = "demo-pkg"
    version: str = "1.0"
    fields: dict[str, str | None] = field(default_factory=dict)  # None: left out
    extra: list[tuple[str, str]] = field(default_factory=list)

    def form(self) -> FormData:
        wheel_file = self.filename.endswith(".whl")
        data = self.content or b""
        values: dict[str, str | None] = {
            "name": self.name,
            "version": self.version,
            "metadata_version": "2.1",
            "summary": "a demo",
            "requires_python": ">=3.8",
            "filetype": "bdist_wheel" if wheel_file else "sdist",
            "pyversion": "py3" if wheel_file else "source",
            "sha256_digest": sha256(data),
            "md5_digest": hashlib.md5(data).hexdigest(),
            "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
            ":action": "file_upload",
            "protocol_version": "1",
        }
        values.update(self.fields)
        form = FormData(default_to_multipart=True)
        for key, value in values.items():
            if value is not None:
                form.add_field(key, value)
        for key, value in self.extra:
            form.add_field(key, value)
        if self.content is not None:
            form.add_field(
                "content",
                self.content,
                filename=self.filename,
                content_type="application/octet-stream",
            )
        return form


def upload(
    content: bytes,
    filename: str | None = None,
    name: str = "demo-pkg",
    version: str = "1.0",
    **fields: str | None,
) -> Upload:
    return Upload(filename or wheel_name(), content, name, version, dict(fields))


def classifiers(values: Iterable[str]) -> list[tuple[str, str]]:
    return [("classifiers", value) for value in values]


def multipart(
    fields: dict[str, str], filename: str, content: bytes, boundary: str = "pypi-form"
) -> tuple[bytes, dict[str, str]]:
    """An upload form's bytes and its Content-Type header, made without a running loop
    (the contract's calls are plain data)."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def twine_fields(content: bytes, name: str = "demo-pkg", version: str = "1.0") -> dict[str, str]:
    """The fields twine sends with ``content`` (a wheel), digests and all."""
    return {
        "name": name,
        "version": version,
        "filetype": "bdist_wheel",
        "pyversion": "py3",
        "metadata_version": "2.1",
        "sha256_digest": sha256(content),
        "blake2_256_digest": hashlib.blake2b(content, digest_size=32).hexdigest(),
        ":action": "file_upload",
        "protocol_version": "1",
    }
