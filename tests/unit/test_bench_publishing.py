"""The publishing benchmarks' own parts: the packages they send are what clients send, and
the RSS watch sees a server's growth (a real child process, no mocks)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

from packaging.utils import parse_wheel_filename

from bench.harness import MiB
from bench.packages import (
    WHEEL_TAGS,
    big_tarball,
    big_wheel,
    metadata_fields,
    small_tarball,
    small_wheel,
    wheel_name,
)
from bench.rss import RssWatch
from bench.seed import versions, wheel_files


def _record_ok(archive: zipfile.ZipFile) -> None:
    record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
    for line in archive.read(record).decode().splitlines():
        name, digest, size = line.rsplit(",", 2)
        if name == record:
            assert digest == size == ""
            continue
        body = archive.read(name)
        expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")
        assert digest == f"sha256={expected}"
        assert int(size) == len(body)


def test_big_wheel_is_a_wheel_of_its_name_with_the_payload_stored(tmp_path: Path) -> None:
    path = big_wheel(tmp_path, "bench-big", "1.0.3", 3 * MiB + 5)
    project, version, _, _ = parse_wheel_filename(path.name)
    assert (project, str(version)) == ("bench-big", "1.0.3")
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("bench_big/data.bin")
        assert info.file_size == 3 * MiB + 5
        assert info.compress_type == zipfile.ZIP_STORED
        metadata = archive.read("bench_big-1.0.3.dist-info/METADATA").decode()
        assert "Name: bench-big\n" in metadata and "Version: 1.0.3\n" in metadata
        _record_ok(archive)
    # A new nonce each time: nothing can deduplicate one run's bytes into the next.
    (tmp_path / "again").mkdir()
    again = big_wheel(tmp_path / "again", "bench-big", "1.0.3", 3 * MiB + 5)
    assert hashlib.sha256(again.read_bytes()).digest() != hashlib.sha256(path.read_bytes()).digest()


def test_small_wheel_and_the_fields_twine_would_send() -> None:
    for tag in WHEEL_TAGS:
        name = wheel_name("bench-pages", "2.0.1", tag)
        body = small_wheel("bench-pages", "2.0.1", tag)
        assert {str(t) for t in parse_wheel_filename(name)[3]} == {tag}
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            assert f"Tag: {tag}" in archive.read("bench_pages-2.0.1.dist-info/WHEEL").decode()
            _record_ok(archive)
        fields = metadata_fields("bench-pages", "2.0.1", name, body)
        assert fields["sha256_digest"] == hashlib.sha256(body).hexdigest()
        md5 = base64.urlsafe_b64encode(hashlib.md5(body).digest()).decode().rstrip("=")
        assert fields["md5_digest"] == md5
        assert fields["blake2_256_digest"] == hashlib.blake2b(body, digest_size=32).hexdigest()
        assert (fields[":action"], fields["protocol_version"]) == ("file_upload", "1")


def test_big_tarball_is_an_npm_tarball_of_its_version(tmp_path: Path) -> None:
    path = big_tarball(tmp_path, "bench-big", "1.0.2", 2 * MiB)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    with tarfile.open(path, "r:gz") as archive:
        manifest = archive.extractfile("package/package.json")
        assert manifest is not None
        assert json.loads(manifest.read())["version"] == "1.0.2"
        assert archive.getmember("package/data.bin").size == 2 * MiB


def test_publish_body_carries_the_tarball_and_its_checksums() -> None:
    tarball = small_tarball("bench-pages", "3.1.4")
    document = json.loads(tarball.publish_body("http://127.0.0.1:1/repository/npm-local/"))
    attachment = document["_attachments"]["bench-pages-3.1.4.tgz"]
    body = base64.b64decode(attachment["data"])
    assert body == tarball.body and attachment["length"] == len(body)
    dist = document["versions"]["3.1.4"]["dist"]
    assert dist["shasum"] == hashlib.sha1(body).hexdigest()
    assert dist["integrity"] == "sha512-" + base64.b64encode(hashlib.sha512(body).digest()).decode()
    registry = "http://127.0.0.1:1/repository/npm-local"
    assert dist["tarball"] == f"{registry}/bench-pages/-/bench-pages-3.1.4.tgz"
    assert document["dist-tags"] == {"latest": "3.1.4"}


def test_seed_versions_and_files_are_distinct() -> None:
    assert len(set(versions(5000))) == 5000
    files = wheel_files(2000)
    assert len(files) == len(set(files)) == 2000
    assert len(set(wheel_files(7))) == 7


GROWER = """
import sys
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
held = bytearray(48 * 1024 * 1024)  # touched: zero pages of a bytearray are written
for i in range(0, len(held), 4096):
    held[i] = 1
del held
sys.stdout.write("done\\n"); sys.stdout.flush()
sys.stdin.readline()
"""


def test_rss_watch_sees_a_transient_growth_of_a_real_process() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", GROWER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"
        with RssWatch(child.pid) as watch:
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline() == "done\n"
        growth = watch.growth()
        # Freed before the watch ended: only the high-water mark (or a lucky sample) saw it.
        assert 46 * MiB < growth.bytes < 64 * MiB
        child.stdin.write("end\n")
        child.stdin.flush()
    finally:
        child.wait(timeout=10)


def test_rss_watch_of_an_idle_process_sees_no_growth() -> None:
    idle = "import time; print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", idle], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        with RssWatch(child.pid) as watch:
            time.sleep(0.2)
            pass
        assert watch.growth().bytes < 2 * MiB
    finally:
        child.kill()
        child.wait()
