"""The service as users run it: a real process, its CLI, workers and shutdown."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import yaml

from app.cli import main
from tests.processes import log_of, serving
from tests.waiting import until

CONFIG = {
    "server": {"host": "127.0.0.1", "port": 0, "shutdown_grace": 20},
    "database": {"url": "sqlite:///data/meta.db"},
    "storage": {"driver": "filesystem", "root": "data"},
    "repositories": [{"name": "files", "format": "generic", "kind": "local"}],
}


def write_config(directory: Path, **sections: object) -> Path:
    path = directory / "artifactapi.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **sections}))
    return path


@asynccontextmanager
async def session(directory: Path) -> AsyncIterator[aiohttp.ClientSession]:
    """A client signed in as the admin the server in ``directory`` made at its first start."""
    # A fresh connection per request, so a multi-worker server spreads them.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, headers=admin(directory)) as client:
        yield client


def admin(directory: Path) -> dict[str, str]:
    password = (directory / "data" / "initial-admin-password").read_text().strip()
    return {"Authorization": aiohttp.encode_basic_auth("admin", password)}


def children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


async def wait_in_flight(client: aiohttp.ClientSession, base: str, count: int) -> None:
    gauge = f"artifactapi_http_requests_in_flight {count}.0"

    async def seen() -> bool:
        return gauge in await (await client.get(f"{base}/metrics")).text()

    await until(seen, f"{count} requests in flight")


async def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    write_config(tmp_path)
    with serving(tmp_path) as (process, base):
        async with session(tmp_path) as client:
            assert (await client.get(f"{base}/healthz")).status == 200
            data = os.urandom(100_000)
            assert (await client.put(f"{base}/repository/files/a/b.bin", data=data)).status == 201
            assert await (await client.get(f"{base}/repository/files/a/b.bin")).read() == data
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert (tmp_path / "data" / "meta.db").exists()


async def test_in_flight_upload_finishes_during_graceful_shutdown(tmp_path: Path) -> None:
    write_config(tmp_path)
    with serving(tmp_path) as (process, base):
        release = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield b"first half "
            await release.wait()
            yield b"second half"

        async with session(tmp_path) as client:
            upload = asyncio.create_task(
                client.put(f"{base}/repository/files/slow.txt", data=slow_body())
            )
            await wait_in_flight(client, base, 2)  # the upload and the scrape itself
            process.send_signal(signal.SIGTERM)
            # A second passes on purpose: the server keeps serving the upload meanwhile.
            for _ in range(10):
                await asyncio.sleep(0.1)
                assert process.poll() is None
            release.set()
            response = await upload
            assert response.status == 201
        assert process.wait(timeout=30) == 0
    # The finished upload was committed before the process exited.
    with serving(tmp_path) as (_, base):
        async with session(tmp_path) as client:
            body = await (await client.get(f"{base}/repository/files/slow.txt")).read()
    assert body == b"first half second half"


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_downloads_are_exact_and_survive_clients_that_leave(
    tmp_path: Path, loop: str
) -> None:
    """Blob bodies go out by sendfile under either loop: whole, ranged, kept alive."""
    public = [{"name": "files", "format": "generic", "kind": "local", "anonymous_read": True}]
    server = {**CONFIG["server"], "loop": loop}  # type: ignore[dict-item]
    write_config(tmp_path, server=server, repositories=public)
    data = os.urandom(24 * 2**20 + 123)
    with serving(tmp_path) as (process, base):
        url = f"{base}/repository/files/big.bin"
        async with aiohttp.ClientSession(headers=admin(tmp_path)) as client:  # one kept alive
            assert (await client.put(url, data=data)).status == 201
            ranged = await client.get(url, headers={"Range": "bytes=1000-2999999"})
            assert ranged.status == 206
            assert await ranged.read() == data[1000:3000000]
            whole = await (await client.get(url)).read()
            assert hashlib.sha256(whole).digest() == hashlib.sha256(data).digest()
            tail = await client.get(url, headers={"Range": "bytes=-10"})
            assert await tail.read() == data[-10:]
            metrics = await (await client.get(f"{base}/metrics")).text()
        sent = sum(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("artifactapi_http_response_bytes_total{")
        )
        assert sent >= len(data) + 2999000 + 10  # bodies sent by sendfile are counted
        for _ in range(3):  # clients that hang up after the first bytes
            reader, writer = await asyncio.open_connection(*base.removeprefix("http://").split(":"))
            writer.write(b"GET /repository/files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readexactly(12)).startswith(b"HTTP/1.1 200")
            writer.close()
        # A stored file shorter than its record: the body is cut and the connection
        # closed, never padded or followed by another response on the same socket.
        [stored] = [p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]
        os.truncate(stored, 1000)
        async with session(tmp_path) as client:
            response = await client.get(url)
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
            assert (await client.get(f"{base}/healthz")).status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "Traceback" not in log_of(tmp_path)


async def test_workers_share_one_port_and_one_store(tmp_path: Path) -> None:
    write_config(tmp_path)
    with serving(tmp_path, "--workers", "2") as (process, base):
        assert len(children(process.pid)) == 2
        blobs = {f"f{i}.bin": os.urandom(50_000 + i) for i in range(12)}
        async with session(tmp_path) as client:
            await asyncio.gather(
                *(client.put(f"{base}/repository/files/{k}", data=v) for k, v in blobs.items())
            )
            for name, data in blobs.items():  # each on a new connection, any worker
                got = await (await client.get(f"{base}/repository/files/{name}")).read()
                assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
            listing = await (await client.get(f"{base}/repository/files/")).json()
        assert sorted(c["name"] for c in listing["children"]) == sorted(blobs)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_config(tmp_path)
    assert main(["config", "check", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("repositories:\n  - {name: files, format: generic, kind: mirror}\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "repositories[0].kind" in capsys.readouterr().err
    memberless = tmp_path / "memberless.yaml"
    memberless.write_text("repositories:\n  - {name: files, format: generic, kind: virtual}\n")
    assert main(["config", "check", str(memberless)]) == 2
    assert "repositories[0].options.members: Field required" in capsys.readouterr().err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("repositories:\n  - {name: x, format: floppy}\n")
    assert main(["config", "check", str(unknown)]) == 2
    assert "repositories[0].format: unknown format 'floppy'" in capsys.readouterr().err
    options = tmp_path / "options.yaml"
    options.write_text("repositories:\n  - {name: x, format: generic, options: {colour: red}}\n")
    assert main(["config", "check", str(options)]) == 2
    assert "repositories[0].options.colour" in capsys.readouterr().err


def test_invalid_config_stops_start_up_with_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, server={"port": "not-a-port"})
    result = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(config), "serve"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "server.port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            {"database": {"url": "postgresql://nobody@127.0.0.1:1/none"}},
            "cannot connect to PostgreSQL",
        ),
        (
            {"storage": {"driver": "filesystem", "root": "/proc/artifactapi"}},
            "cannot create storage root",
        ),
        (
            {"storage": {"driver": "s3", "bucket": "nowhere", "endpoint": "http://127.0.0.1:1"}},
            "S3 unreachable",
        ),
    ],
)
def test_unreachable_backend_at_start_is_a_clear_error(
    tmp_path: Path, section: dict[str, object], expected: str
) -> None:
    config = write_config(tmp_path, **section)
    result = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(config), "serve"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot start" in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr


async def test_an_unreachable_cache_at_start_is_a_warning_not_an_exit(tmp_path: Path) -> None:
    """The cache is optional: the replica starts and is ready, leases in the database."""
    write_config(tmp_path, cache={"url": "redis://127.0.0.1:1/0"})
    with serving(tmp_path) as (_, base):
        async with session(tmp_path) as client:
            ready = await client.get(f"{base}/readyz")
            assert ready.status == 200 and (await ready.json())["degraded"] == ["cache"]
            put = await client.put(f"{base}/repository/files/x.bin", data=b"x")
            assert put.status == 201
    logged = log_of(tmp_path)
    assert "cache unavailable" in logged and "Traceback" not in logged


def test_migrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, database={"url": f"sqlite:///{tmp_path / 'm.db'}"})
    assert main(["--config", str(config), "migrate"]) == 0
    out = capsys.readouterr().out
    assert "applied migrations: core/0001_initial, core/0002_gc" in out
    assert "generic/0001_files" in out and "oci/0002_gc" in out
    assert main(["--config", str(config), "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


async def test_pushes_split_across_worker_processes(tmp_path: Path) -> None:
    """The embedded shape with two workers: each step on a new connection, any worker."""
    repos = [{"name": "docker-local", "format": "oci", "kind": "local"}]
    write_config(tmp_path, repositories=repos)
    name = "docker-local/team/app"
    with serving(tmp_path, "--workers", "2") as (_, base):
        async with session(tmp_path) as client:
            pushed = {}
            for index in range(8):
                data = os.urandom(200_000 + index)
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                started = await client.post(f"{base}/v2/{name}/blobs/uploads/")
                location = base + started.headers["Location"]
                half = len(data) // 2
                for start, piece in ((0, data[:half]), (half, data[half:])):
                    end = start + len(piece) - 1
                    response = await client.patch(
                        location, data=piece, headers={"Content-Range": f"{start}-{end}"}
                    )
                    assert response.status == 202, await response.text()
                done = await client.put(f"{location}?digest={digest}")
                assert done.status == 201, await done.text()
                pushed[digest] = data
            for digest, data in pushed.items():
                response = await client.get(f"{base}/v2/{name}/blobs/{digest}")
                assert await response.read() == data


async def test_gc_command_reports_then_collects(tmp_path: Path) -> None:
    """``artifactapi gc --dry-run`` counts and deletes nothing; ``gc`` deletes;
    ``python -m collector`` is the same command."""
    write_config(tmp_path, gc={"blob_grace": 0})
    with serving(tmp_path) as (process, base):
        async with session(tmp_path) as client:
            data = os.urandom(4321)
            assert (await client.put(f"{base}/repository/files/a.bin", data=data)).status == 201
            assert (await client.delete(f"{base}/repository/files/a.bin")).status == 204
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    config = str(tmp_path / "artifactapi.yaml")
    blobs = [p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1

    dry = await _cli(tmp_path, "--config", config, "gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "blobs      would delete 1 objects, 4321 bytes" in dry.stdout
    assert blobs[0].exists()

    real = await _cli(tmp_path, "--config", config, "gc")
    assert real.returncode == 0, real.stderr
    assert "blobs      deleted 1 objects, 4321 bytes" in real.stdout
    assert "collection finished" in real.stderr  # logs go to stderr, the report to stdout
    assert not blobs[0].exists()

    again = await _cli(tmp_path, "--config", config, "--dry-run", module="collector")
    assert again.returncode == 0, again.stderr
    assert "nothing to delete" in again.stdout


async def _cli(cwd: Path, *args: str, module: str = "app") -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", module, *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip


async def test_json_access_log_lines_reach_the_log_by_shutdown(tmp_path: Path) -> None:
    write_config(tmp_path, logging={"format": "json", "level": "info"})
    with serving(tmp_path) as (process, base):
        async with session(tmp_path) as client:
            ids = []
            for path in ("/healthz", "/repository/files/nope.bin", "/repository/files/a%20b"):
                response = await client.get(f"{base}{path}")
                ids.append((path, response.status, response.headers["X-Request-ID"]))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    lines = [json.loads(line) for line in log_of(tmp_path).splitlines() if line.startswith("{")]
    requests = {line["request_id"]: line for line in lines if line.get("event") == "request"}
    for path, status, request_id in ids:
        line = requests[request_id]
        assert (line["method"], line["status"], line["level"]) == ("GET", status, "info")
        assert line["path"] == path.replace("%20", " ")
        assert line["timestamp"].endswith("Z") and line["ms"] >= 0
