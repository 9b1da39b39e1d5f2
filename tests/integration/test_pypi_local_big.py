"""A PyPI local repository under a real ``artifactapi serve`` process: a 500 MiB wheel
uploaded with twine while the server's RSS is sampled (it must not grow with the
file: the form streams into the CAS, METADATA is read with ranged reads), and a
client that disconnects mid-upload, which leaves nothing visible."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from app.auth.service import basic_credentials
from tests.processes import serving
from tests.pypi_dists import JSON_TYPE, metadata_text, upload, wheel, wheel_name

MiB = 1024 * 1024
BIG = 500 * MiB
RSS_GROWTH = 64 * MiB
REPO = "repository/pypi-local"


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Sampler:
    """The peak RSS of a process, sampled every 20 ms on a thread of its own."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, rss(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def big_wheel(path: Path, size: int) -> None:
    """A real wheel whose one data file holds ``size`` bytes, stored (not deflated), so
    making it costs disk writes, not compression."""
    block = os.urandom(MiB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big_pkg/__init__.py", b"")
        info = zipfile.ZipInfo("big_pkg/data.bin")
        info.compress_type = zipfile.ZIP_STORED
        with archive.open(info, "w", force_zip64=True) as member:
            for _ in range(size // MiB):
                member.write(block)
        archive.writestr("big_pkg-1.0.dist-info/METADATA", metadata_text("big-pkg", "1.0"))
        archive.writestr(
            "big_pkg-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr("big_pkg-1.0.dist-info/RECORD", "")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    config = {
        "database": {"url": f"sqlite:///{tmp_path / 'meta.db'}"},
        "storage": {"driver": "filesystem", "root": str(tmp_path / "blobs")},
        "cache": {"url": "memory://"},
        "server": {"host": "127.0.0.1", "port": 0, "max_body_size": "1GiB"},
        "logging": {"access": False},
        "auth": {"initial_admin_password_file": str(tmp_path / "admin-password")},
        "repositories": [{"name": "pypi-local", "format": "pypi", "kind": "local"}],
    }
    (tmp_path / "artifactapi.yaml").write_text(yaml.safe_dump(config))
    with serving(tmp_path) as (process, url):
        password = (tmp_path / "admin-password").read_text().strip()
        yield process, url, password


async def files(url: str, password: str) -> list[str]:
    auth = {"Authorization": basic_credentials("admin", password)}
    async with (
        aiohttp.ClientSession(headers=auth) as session,
        session.get(f"{url}/{REPO}/simple/big-pkg/", headers={"Accept": JSON_TYPE}) as response,
    ):
        if response.status == 404:
            return []
        document = await response.json(content_type=None)
        return [f["filename"] for f in document["files"]]


async def test_a_500_mib_wheel_uploads_with_flat_memory(
    server: tuple[subprocess.Popen[str], str, str], tmp_path: Path
) -> None:
    process, url, password = server
    # Warm up every code path first: the growth measured is the big file's alone.
    small = upload(wheel("big_pkg", "0.1"), wheel_name("big_pkg", "0.1"), "big-pkg", "0.1")
    auth = {"Authorization": basic_credentials("admin", password)}
    async with aiohttp.ClientSession(headers=auth) as session:
        response = await session.post(f"{url}/{REPO}/", data=small.form())
        assert response.status == 200, await response.text()
    path = tmp_path / "big_pkg-1.0-py3-none-any.whl"
    await asyncio.to_thread(big_wheel, path, BIG)
    twine = [
        str(Path(sys.executable).parent / "twine"), "upload", "--repository-url",
        f"{url}/{REPO}/legacy/", "-u", "admin", "-p", password, "--disable-progress-bar",
        str(path),
    ]  # fmt: skip
    baseline = rss(process.pid)
    started = time.monotonic()
    with Sampler(process.pid) as sampler:
        done = await asyncio.to_thread(
            subprocess.run, twine, capture_output=True, text=True, timeout=600
        )
    assert done.returncode == 0, done.stdout + done.stderr
    growth = sampler.peak - baseline
    print(f"RSS growth {growth / MiB:.1f} MiB")
    assert growth < RSS_GROWTH, (
        f"RSS grew {growth / MiB:.1f} MiB over {time.monotonic() - started:.0f} s"
    )
    assert sorted(await files(url, password)) == sorted([path.name, wheel_name("big_pkg", "0.1")])


async def test_a_client_that_leaves_mid_upload_leaves_nothing(
    server: tuple[subprocess.Popen[str], str, str], tmp_path: Path
) -> None:
    _, url, password = server
    data = wheel("big_pkg", "1.0", extra={"big_pkg/data.bin": os.urandom(8 * MiB)})
    form = upload(data, wheel_name("big_pkg", "1.0"), "big-pkg", "1.0").form()()
    body = await form.as_bytes()
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /{REPO}/ HTTP/1.1\r\nHost: {host}\r\nAuthorization: {basic_credentials('admin', password)}\r\n"
        f"Content-Type: {form.content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    def send_half() -> None:
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head + body[: len(body) // 2])
            time.sleep(0.5)  # the server is streaming it into storage by now

    await asyncio.to_thread(send_half)
    await asyncio.sleep(1.0)
    assert await files(url, password) == []
    digest = hashlib.sha256(data).hexdigest()
    assert not list((tmp_path / "blobs").rglob(digest))  # not at its address
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file() and "tmp" in p.parts]
