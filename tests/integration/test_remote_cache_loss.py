"""The scale-out shape without its cache: a redis-server of the test's own, stopped and
started again under a running replica. Redis only holds single-flight leases, so
losing it must cost neither readiness nor a request: leases move to the database
until it is back, and a lease that cannot be given up after a fill leaves the
answer whole."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from app import keys
from app.proxy import singleflight
from app.server import create_app
from tests import shapes
from tests.redis_process import RedisProcess
from tests.services import S3Settings
from tests.upstreams import File, FileTree
from tests.waiting import logged, until

FILE = "dist/big.bin"


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path / "redis")
    yield process
    process.stop()


@pytest.fixture
def tree() -> FileTree:
    return FileTree()


@pytest.fixture
async def upstream(aiohttp_server: Any, tree: FileTree) -> TestServer:
    return await aiohttp_server(tree.app())


@pytest.fixture
async def replica(
    postgres_dsn: str,
    s3_server: S3Settings,
    s3_prefix: str,
    redis_process: RedisProcess,
    upstream: TestServer,
    aiohttp_client: Any,  # last: the replica stops before its schema is dropped
) -> Any:
    """Start a scale-out replica whose cache is ``redis_process`` (running or not)."""

    async def start() -> TestClient:
        mirror = {
            "name": "mirror",
            "format": "generic",
            "kind": "remote",
            "options": {"upstream": str(upstream.make_url("")).rstrip("/"), "retries": 0},
        }
        repositories = [shapes.FILES_REPO, mirror]
        config = shapes.scale_out(
            postgres_dsn, redis_process.url, s3_server, s3_prefix, repositories=repositories
        )
        return await aiohttp_client(create_app(config))

    return start


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")


async def cold_misses(client: TestClient, path: str, data: bytes, count: int = 8) -> list[str]:
    """``count`` concurrent requests for an uncached path: each gets every byte."""

    async def one() -> str:
        response = await client.get(f"/repository/mirror/{path}")
        assert response.status == 200, await response.text()
        assert hashlib.sha256(await response.read()).digest() == hashlib.sha256(data).digest()
        return response.headers["X-Cache"]

    return await asyncio.gather(*(one() for _ in range(count)))


async def leasing_from_redis_again(client: TestClient, tree: FileTree) -> None:
    """Until a miss (each of a new path) finds Redis answering again."""

    async def recovered() -> bool:
        tree.files[name := f"probe-{len(tree.requests)}.bin"] = File(b"probe")
        assert (await client.get(f"/repository/mirror/{name}")).status == 200
        text = await (await client.get("/metrics")).text()
        return metric(text, "artifactapi_cache_degraded") == 0

    await until(recovered, "leasing from Redis again")


async def redis_leases(url: str) -> list[bytes]:
    client = aioredis.Redis.from_url(url)
    try:
        return [key async for key in client.scan_iter(match="artifactapi:lease:*")]
    finally:
        await client.aclose()


async def test_a_replica_without_its_cache_stays_ready_and_serves_then_recovers(
    replica: Any,
    redis_process: RedisProcess,
    tree: FileTree,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(singleflight, "CACHE_RETRY", 0.2)  # look for Redis again soon
    client = await replica()  # nothing listens where its Redis should be
    ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
    body = await ready.json()
    assert body["status"] == "degraded" and body["failing"] == [] and body["degraded"] == ["cache"]
    assert body["checks"]["database"] == "ok" and body["checks"]["storage"] == "ok"
    assert body["checks"]["cache"].startswith("degraded: ")

    data = os.urandom(2 * 1024 * 1024)
    assert (await client.put("/repository/files/a.bin", data=data)).status == 201
    pulled = await client.get("/repository/files/a.bin")
    assert pulled.status == 200 and await pulled.read() == data

    tree.files[FILE] = File(data)
    tree.chunk, tree.delay = 256 * 1024, 0.01  # long enough for the others to wait
    caches = await cold_misses(client, FILE, data)
    assert caches.count("MISS") == 1 and tree.requests[FILE] == 1
    # Across replicas too: both lease in the database now.
    other = await replica()
    tree.files["shared.bin"] = File(data)
    both = await asyncio.gather(
        cold_misses(client, "shared.bin", data, 4), cold_misses(other, "shared.bin", data, 4)
    )
    assert sum(c.count("MISS") for c in both) == 1 and tree.requests["shared.bin"] == 1
    for name in ("a.bin", "b.bin", "c.bin"):  # more misses: still one warning
        tree.files[name] = File(os.urandom(1000))
        assert (await client.get(f"/repository/mirror/{name}")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert metric(metrics, "artifactapi_cache_degraded") == 1
    assert metric(metrics, "artifactapi_cache_errors_total") >= 1
    logged = capsys.readouterr().out
    assert logged.count("cache unavailable") == 2, logged  # once per replica
    assert "Traceback" not in logged

    redis_process.start()  # back: leases are taken in Redis again
    await leasing_from_redis_again(client, tree)
    assert (await (await client.get("/readyz")).json())["checks"]["cache"] == "ok"
    slow = os.urandom(4 * 1024 * 1024)
    tree.files["late.bin"] = File(slow)
    fill = asyncio.ensure_future(cold_misses(client, "late.bin", slow, count=4))

    async def leased_in_redis() -> bool:
        return bool(await redis_leases(redis_process.url)) or fill.done()

    await until(leased_in_redis, "a lease in Redis")
    assert not fill.done(), "the fill ended before its lease was seen"
    assert (await fill).count("MISS") == 1 and tree.requests["late.bin"] == 1
    assert await client.app[keys.METADATA].db.fetchval("SELECT COUNT(*) FROM leases") == 0
    logged = capsys.readouterr().out
    assert "cache is back" in logged and "Traceback" not in logged


async def test_a_lease_lost_with_redis_after_the_fill_leaves_every_answer_whole(
    replica: Any,
    redis_process: RedisProcess,
    tree: FileTree,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis stops while a fill holds its lease: giving the lease up fails for real
    once every byte went out. The clients still get 200 and all of it, the access log
    says 200, and the failure is a warning of its own."""
    caplog.set_level(logging.WARNING)
    redis_process.start()
    client = await replica()
    data = os.urandom(4 * 1024 * 1024)
    tree.files[FILE] = File(data)
    tree.chunk, tree.delay = 256 * 1024, 0.02
    fill = asyncio.ensure_future(cold_misses(client, FILE, data, count=5))

    async def leased() -> bool:
        return bool(await redis_leases(redis_process.url))

    await until(leased, "the fill's lease in Redis")
    redis_process.stop()
    caches = await fill
    assert caches.count("MISS") == 1 and tree.requests[FILE] == 1
    hit = await client.get(f"/repository/mirror/{FILE}")
    assert hit.status == 200 and hit.headers["X-Cache"] == "HIT" and await hit.read() == data
    output = await logged(capsys, f"path=/repository/mirror/{FILE}", count=6)
    requests = [line for line in output.splitlines() if f"path=/repository/mirror/{FILE}" in line]
    assert len(requests) == 6 and all("status=200" in line for line in requests), output
    assert "lease release failed" in output
    assert "Traceback" not in output and "status=500" not in output
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_cache_that_stops_answering_costs_a_bounded_wait_not_a_request(
    replica: Any,
    redis_process: RedisProcess,
    tree: FileTree,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis frozen (connections open, no answers, as across a partition): a miss
    waits for it at most CACHE_TIMEOUT, then leases in the database; the next ones do
    not wait for it at all until it is worth trying again."""
    monkeypatch.setattr(singleflight, "CACHE_TIMEOUT", 0.5)
    monkeypatch.setattr(singleflight, "CACHE_RETRY", 0.2)
    redis_process.start()
    client = await replica()
    data = os.urandom(100_000)
    tree.files["warm.bin"] = File(data)
    assert (await cold_misses(client, "warm.bin", data, 1)) == ["MISS"]  # via Redis
    redis_process.pause()
    loop = asyncio.get_running_loop()
    for name in ("one.bin", "two.bin", "three.bin"):
        tree.files[name] = File(data)
        started = loop.time()
        assert (await cold_misses(client, name, data, 3)).count("MISS") == 1
        assert loop.time() - started < 3.0, name  # far below Redis's own 10 s timeout
    metrics = await (await client.get("/metrics")).text()
    assert metric(metrics, "artifactapi_cache_degraded") == 1
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["degraded"] == ["cache"]
    redis_process.resume()  # the partition heals: the connections cut meanwhile reopen
    await leasing_from_redis_again(client, tree)
    assert (await (await client.get("/readyz")).json())["degraded"] == []
