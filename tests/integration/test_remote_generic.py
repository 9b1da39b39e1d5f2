"""Generic remote repositories, and through them the pull-through engine: misses,
hits, single flight, revalidation, negative caching, stale-if-error and upstream
faults, in both shapes, against a fake upstream that counts what it is asked."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from app import keys
from app.config import ConfigError, parse_config
from app.formats import available_formats, validate_repositories
from app.proxy import hot as hot_module
from app.server import create_app
from tests.integration.conftest import ConfigFactory, RemoteFactory
from tests.upstreams import File, FileTree, RawFile, RawUpstream
from tests.waiting import expired, logged, until

Remote = Callable[..., Any]


@pytest.fixture
def tree() -> FileTree:
    return FileTree()


@pytest.fixture
async def upstream(aiohttp_server, tree: FileTree) -> TestServer:  # type: ignore[no-untyped-def]
    return await aiohttp_server(tree.app())


def remote_repo(upstream: TestServer, **options: Any) -> dict[str, Any]:
    return {
        "name": "mirror",
        "format": "generic",
        "kind": "remote",
        "options": {
            "upstream": str(upstream.make_url("")).rstrip("/"),
            "metadata_paths": ["*.json", "**/*.json"],
            "retries": 0,
            **options,
        },
    }


@pytest.fixture
def service(remote_service: RemoteFactory, upstream: TestServer) -> Remote:
    """A service with one generic remote repository over the fake upstream."""
    return functools.partial(
        remote_service, "mirror", "generic", upstream, metadata_paths=["*.json", "**/*.json"]
    )


async def test_a_miss_streams_and_caches_then_hits_serve_from_the_cache(
    service: Remote, tree: FileTree
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    tree.files["dist/tool-1.0.tar.gz"] = File(data, "application/gzip")
    client = await service()
    miss = await client.get("/repository/mirror/dist/tool-1.0.tar.gz")
    assert miss.status == 200 and miss.headers["X-Cache"] == "MISS"
    assert miss.headers["Content-Type"] == "application/gzip"
    assert miss.headers["Content-Length"] == str(len(data))
    assert await miss.read() == data
    for _ in range(3):
        hit = await client.get("/repository/mirror/dist/tool-1.0.tar.gz")
        assert hit.headers["X-Cache"] == "HIT" and await hit.read() == data
    head = await client.head("/repository/mirror/dist/tool-1.0.tar.gz")
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data))
    ranged = await client.get(
        "/repository/mirror/dist/tool-1.0.tar.gz", headers={"Range": "bytes=10-19"}
    )
    assert ranged.status == 206 and await ranged.read() == data[10:20]
    assert tree.requests["dist/tool-1.0.tar.gz"] == 1
    # Stored in the CAS once, by content.
    blob = await client.app[keys.CAS].stat("sha256:" + hashlib.sha256(data).hexdigest())
    assert blob is not None and blob.size == len(data)
    metrics = await (await client.get("/metrics")).text()
    assert metric(metrics, 'artifactapi_proxy_requests_total{cache="HIT",repository="mirror"}') == 5
    assert (
        metric(metrics, 'artifactapi_proxy_requests_total{cache="MISS",repository="mirror"}') == 1
    )
    assert metric(metrics, 'artifactapi_upstream_bytes_total{repository="mirror"}') == len(data)


async def test_small_hits_from_memory_answer_like_any_other(
    service: Remote, tree: FileTree
) -> None:
    """Repeated hits on a small file end up answered from memory before the format
    parses the path; ranges, conditions, HEAD and the other spelling of the path must
    come out exactly as from the file."""
    data = os.urandom(4096)
    tree.files["small/a b.bin"] = File(data, "application/x-thing")
    client = await service()
    path = "/repository/mirror/small/a%20b.bin"
    first = await client.get(path)
    assert first.headers["X-Cache"] == "MISS" and await first.read() == data
    answers = []
    for _ in range(5):  # from the database, then remembered, then by the quick path
        hit = await client.get(path)
        answers.append((hit.status, await hit.read(), hit.headers.copy()))
    for status, body, headers in answers:
        assert status == 200 and body == data
        assert headers["X-Cache"] == "HIT" and headers["Content-Type"] == "application/x-thing"
        assert headers["Content-Length"] == "4096" and headers["Accept-Ranges"] == "bytes"
        assert headers["ETag"] == answers[0][2]["ETag"]
        assert len(headers["X-Request-ID"]) == 32
    assert len({h["X-Request-ID"] for _, _, h in answers}) == 5
    # The later ones took the quick path, on disk and on S3 alike.
    repo_id = client.app[keys.REPOSITORIES].get("mirror").id
    assert client.app[keys.PROXY].remembered.aliased(repo_id) == ["small/a b.bin"]
    ranged = await client.get(path, headers={"Range": "bytes=-10"})
    assert ranged.status == 206 and await ranged.read() == data[-10:]
    assert ranged.headers["Content-Range"] == "bytes 4086-4095/4096"
    etag = answers[0][2]["ETag"]
    assert (await client.get(path, headers={"If-None-Match": etag})).status == 304
    head = await client.head(path)
    assert head.status == 200 and head.headers["Content-Length"] == "4096"
    assert await head.read() == b""
    other = await client.get("/repository/mirror/small/a b.bin")
    assert other.headers["X-Cache"] == "HIT" and await other.read() == data
    assert tree.requests["small/a b.bin"] == 1
    metrics = await (await client.get("/metrics")).text()
    hits = metric(metrics, 'artifactapi_proxy_requests_total{cache="HIT",repository="mirror"}')
    assert hits == 5 + 1 + 1 + 1 + 1  # the 304 and the HEAD count too


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")


async def test_curl_through_a_remote_repository(service: Remote, tree: FileTree) -> None:
    data = os.urandom(200_000)
    tree.files["a b/file.bin"] = File(data)
    client = await service()
    url = str(client.make_url("/repository/mirror/a%20b/file.bin"))
    for expected_cache in ("MISS", "HIT"):
        result = await asyncio.to_thread(
            subprocess.run,
            ["curl", "-sS", "--fail", "-D", "-", "-o", "-", url],
            capture_output=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        head, _, body = result.stdout.partition(b"\r\n\r\n")
        assert f"x-cache: {expected_cache}".lower().encode() in head.lower()
        assert body == data
    assert tree.requests["a b/file.bin"] == 1


async def test_fifty_concurrent_misses_cause_one_upstream_request(
    service: Remote, tree: FileTree
) -> None:
    data = os.urandom(50 * 1024 * 1024)
    tree.files["big.iso"] = File(data)
    tree.chunk, tree.delay = 1024 * 1024, 0.01  # a download that takes a while
    client = await service()

    async def download() -> tuple[str, str]:
        response = await client.get("/repository/mirror/big.iso")
        return response.headers["X-Cache"], hashlib.sha256(await response.read()).hexdigest()

    results = await asyncio.gather(*(download() for _ in range(50)))
    assert {digest for _, digest in results} == {hashlib.sha256(data).hexdigest()}
    assert tree.requests["big.iso"] == 1
    assert [cache for cache, _ in results].count("MISS") == 1


async def test_one_upstream_request_across_two_replicas(
    aiohttp_client,  # type: ignore[no-untyped-def]
    make_config: ConfigFactory,
    upstream: TestServer,
    tree: FileTree,
) -> None:
    data = os.urandom(8 * 1024 * 1024)
    tree.files["shared.bin"] = File(data)
    tree.chunk, tree.delay = 256 * 1024, 0.01
    config = make_config(repositories=[remote_repo(upstream)])
    first = await aiohttp_client(create_app(config))
    second = await aiohttp_client(create_app(config))  # same database, storage and cache

    async def download(client: TestClient) -> bytes:
        response = await client.get("/repository/mirror/shared.bin")
        return hashlib.sha256(await response.read()).digest()

    digests = await asyncio.gather(*(download(c) for c in [first, second] * 10))
    assert set(digests) == {hashlib.sha256(data).digest()}
    assert tree.requests["shared.bin"] == 1


async def test_metadata_is_revalidated_after_its_ttl(service: Remote, tree: FileTree) -> None:
    tree.files["index.json"] = File(b'{"v": 1}', "application/json")
    client = await service(metadata_ttl=0.3)
    assert await (await client.get("/repository/mirror/index.json")).read() == b'{"v": 1}'
    assert (await client.get("/repository/mirror/index.json")).headers["X-Cache"] == "HIT"
    await expired(client, "index.json")
    again = await client.get("/repository/mirror/index.json")  # 304 from the upstream
    assert again.headers["X-Cache"] == "HIT" and await again.read() == b'{"v": 1}'
    assert tree.conditional["index.json"] == 1 and tree.requests["index.json"] == 2
    tree.files["index.json"] = File(b'{"v": 2}', "application/json")
    assert await (await client.get("/repository/mirror/index.json")).read() == b'{"v": 1}'
    await expired(client, "index.json")
    changed = await client.get("/repository/mirror/index.json")
    assert changed.headers["X-Cache"] == "MISS" and await changed.read() == b'{"v": 2}'


async def test_upstream_404s_are_remembered_briefly(service: Remote, tree: FileTree) -> None:
    client = await service(negative_ttl=0.3)
    for _ in range(3):
        missing = await client.get("/repository/mirror/nope.bin")
        assert missing.status == 404 and (await missing.json())["error"]["code"] == "NOT_FOUND"
    assert tree.requests["nope.bin"] == 1
    tree.files["nope.bin"] = File(b"here now")
    await expired(client, "nope.bin")
    assert await (await client.get("/repository/mirror/nope.bin")).read() == b"here now"


async def test_stale_metadata_is_served_when_the_upstream_fails(
    service: Remote, tree: FileTree, upstream: TestServer
) -> None:
    tree.files["index.json"] = File(b'{"v": 1}', "application/json")
    tree.files["never.bin"] = File(b"never fetched")
    client = await service(metadata_ttl=0.1, read_timeout=0.5)
    assert (await client.get("/repository/mirror/index.json")).status == 200
    await expired(client, "index.json")
    for fault in ("500", "timeout"):
        tree.fault, tree.delay = fault, 2.0
        stale = await client.get("/repository/mirror/index.json")
        assert stale.status == 200 and stale.headers["X-Cache"] == "STALE"
        assert stale.headers["Warning"].startswith("110")
        assert await stale.read() == b'{"v": 1}'
    tree.fault = "500"
    failed = await client.get("/repository/mirror/never.bin")
    assert failed.status == 502 and (await failed.json())["error"]["code"] == "BAD_GATEWAY"
    tree.fault = "timeout"
    timed_out = await client.get("/repository/mirror/never.bin")
    assert (
        timed_out.status == 504 and (await timed_out.json())["error"]["code"] == "GATEWAY_TIMEOUT"
    )
    await upstream.close()  # the upstream is gone altogether
    gone = await client.get("/repository/mirror/index.json")
    assert gone.headers["X-Cache"] == "STALE" and await gone.read() == b'{"v": 1}'
    assert (await client.get("/repository/mirror/never.bin")).status == 502


async def test_a_body_cut_by_the_upstream_is_never_cached(service: Remote, tree: FileTree) -> None:
    data = os.urandom(2 * 1024 * 1024)
    tree.files["cut.bin"] = File(data)
    tree.fault = "reset"
    client = await service()
    response = await client.get("/repository/mirror/cut.bin")
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    tree.fault = None
    again = await client.get("/repository/mirror/cut.bin")
    assert again.headers["X-Cache"] == "MISS" and await again.read() == data
    assert tree.requests["cut.bin"] == 2


async def test_a_client_leaving_does_not_stop_the_cache_fill(
    service: Remote, tree: FileTree
) -> None:
    data = os.urandom(6 * 1024 * 1024)
    tree.files["fill.bin"] = File(data)
    tree.chunk, tree.delay = 256 * 1024, 0.01
    client = await service()
    url = client.make_url("/repository/mirror/fill.bin")
    async with aiohttp.ClientSession() as other:
        response = await other.get(url)
        await response.content.readexactly(100_000)
        response.close()  # hang up after the first bytes
    repo_id = client.app[keys.REPOSITORIES].get("mirror").id

    async def filled() -> bool:
        return await client.app[keys.PROXY].entries.get(repo_id, "fill.bin") is not None

    await until(filled, "the fill recorded after its client left")
    hit = await client.get("/repository/mirror/fill.bin")
    assert hit.headers["X-Cache"] == "HIT" and await hit.read() == data
    assert tree.requests["fill.bin"] == 1


@pytest.mark.parametrize(
    ("path", "status"),
    [("../etc/passwd", 400), ("a/../../b", 400), ("a//b", 400), ("x" * 300, 400)],
)
async def test_bad_paths_are_refused_before_the_upstream(
    service: Remote, tree: FileTree, path: str, status: int
) -> None:
    client = await service()
    # encoded=True: sent as written, not normalised by the client
    raw = URL(f"{str(client.make_url('')).rstrip('/')}/repository/mirror/{path}", encoded=True)
    response = await client.session.get(raw)
    assert response.status == status
    assert sum(tree.requests.values()) == 0


async def test_upstream_answers_that_break_the_rules(service: Remote, tree: FileTree) -> None:
    tree.files["huge.json"] = File(b"[" + b"0," * 4000 + b"0]", "application/json")
    client = await service(max_metadata_size=1024)
    too_big = await client.get("/repository/mirror/huge.json")
    assert too_big.status == 502
    assert (await client.get("/repository/mirror/huge.json")).status == 502  # not cached
    tree.fault = "redirect-loop"
    loop = await client.get("/repository/mirror/elsewhere.bin")
    assert loop.status == 502 and "redirect" in (await loop.json())["error"]["message"]
    assert (await client.put("/repository/mirror/x.bin", data=b"x")).status == 405


@pytest.mark.parametrize("url", ["ftp://example.com", "file:///etc", "example.com/x"])
def test_an_upstream_that_is_not_http_is_a_configuration_error(url: str) -> None:
    config = parse_config(
        {
            "repositories": [
                {"name": "m", "format": "generic", "kind": "remote", "options": {"upstream": url}}
            ]
        },
        env={},
    )
    with pytest.raises(ConfigError, match="upstream"):
        validate_repositories(config, available_formats())


async def test_the_collector_evicts_idle_and_least_recently_used_entries(
    service: Remote, tree: FileTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import GcConfig
    from app.middleware import FORMATS
    from collector import Collector

    for name, size in (("a.bin", 100), ("b.bin", 200), ("c.bin", 300), ("d.bin", 50)):
        tree.files[name] = File(os.urandom(size))
    client = await service(cache={"max_bytes": 350, "max_idle": "30d"}, negative_ttl=0)
    app = client.app
    for name in ("a.bin", "b.bin", "c.bin", "d.bin"):
        assert (await client.get(f"/repository/mirror/{name}")).status == 200
    assert (await client.get("/repository/mirror/missing.bin")).status == 404
    hit = await client.get("/repository/mirror/d.bin")  # a hit: remembered in memory
    assert hit.headers["X-Cache"] == "HIT"
    db = app[keys.METADATA].db
    await app[keys.PROXY].hits.flush()
    # d was fetched last but nobody asked for it in 40 days; a, b, c in order, each
    # a minute after the one before (set, not waited for).
    await db.execute("UPDATE remote_entries SET last_requested_at = 1 WHERE path = 'd.bin'")
    for minutes, name in ((3, "a.bin"), (2, "b.bin"), (1, "c.bin")):
        await db.execute(
            "UPDATE remote_entries SET last_requested_at = $1 WHERE path = $2",
            time.time() - 60 * minutes,
            name,
        )
    collector = Collector(
        GcConfig(blob_grace=0), app[keys.METADATA], app[keys.STORAGE], app[FORMATS],
        app[keys.REPOSITORIES],
    )  # fmt: skip
    dry = await collector.run(dry_run=True)
    assert dry.freed["cache"].objects == 3  # d idle; then a and b until 350 bytes remain
    report = await collector.run()
    assert (report.freed["cache"].objects, report.freed["cache"].bytes) == (3, 350)
    assert report.freed["blobs"].objects == 3  # their blobs, referenced by nothing else
    paths = {r["path"] for r in await db.fetch("SELECT path FROM remote_entries")}
    assert paths == {"c.bin"}  # the expired 404 went too
    again = await client.get("/repository/mirror/a.bin")
    assert again.headers["X-Cache"] == "MISS" and await again.read() == tree.files["a.bin"].body
    hit = await client.get("/repository/mirror/c.bin")
    assert hit.headers["X-Cache"] == "HIT" and await hit.read() == tree.files["c.bin"].body
    # What this process remembered of d is checked against its blob (at once here; in
    # service, small bodies held in memory are looked for once a second): fetched again.
    monkeypatch.setattr(hot_module, "HOT_RECHECK", 0.0)
    evicted = await client.get("/repository/mirror/d.bin")
    assert evicted.headers["X-Cache"] == "MISS" and await evicted.read() == tree.files["d.bin"].body


@pytest.fixture
async def raw() -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream()
    await upstream.start()
    yield upstream
    await upstream.close()


async def test_a_body_without_length_cut_by_a_crash_is_served_but_never_cached(
    remote_service: RemoteFactory, raw: RawUpstream
) -> None:
    """No Content-Length, no chunking, no digest: the close is the only end there is,
    and a crash mid-body ends it just so. What came is passed on, nothing is cached."""
    data = os.urandom(8 * 1024 * 1024)
    raw.files["big.iso"] = RawFile(data, "cut", cut_at=3 * 1024 * 1024 + 7)
    client = await remote_service("mirror", "generic", raw.url)
    for _ in range(2):
        response = await client.get("/repository/mirror/big.iso")
        assert response.status == 200 and response.headers["X-Cache"] == "MISS"
        assert await response.read() == data[: 3 * 1024 * 1024 + 7]
    assert raw.requests["big.iso"] == 2
    repo_id = client.app[keys.REPOSITORIES].get("mirror").id
    assert await client.app[keys.PROXY].entries.get(repo_id, "big.iso") is None
    raw.files["big.iso"] = RawFile(data, "length")  # an upstream that says how long
    whole = await client.get("/repository/mirror/big.iso")
    assert whole.headers["X-Cache"] == "MISS" and await whole.read() == data
    hit = await client.get("/repository/mirror/big.iso")
    assert hit.headers["X-Cache"] == "HIT" and await hit.read() == data
    assert raw.requests["big.iso"] == 3


async def test_a_whole_body_without_length_is_not_cached_either(
    remote_service: RemoteFactory, raw: RawUpstream
) -> None:
    """Complete or not cannot be told apart, so neither is cached; everyone asking at
    once is answered in full (nobody is left waiting for a cache that never fills)."""
    data = os.urandom(2 * 1024 * 1024 + 3)
    raw.files["tool.tgz"] = RawFile(data, "close", content_type="application/gzip")
    client = await remote_service("mirror", "generic", raw.url)
    first = await client.get("/repository/mirror/tool.tgz")
    assert first.status == 200 and first.headers["X-Cache"] == "MISS"
    assert first.headers["Content-Type"] == "application/gzip" and await first.read() == data

    async def download() -> tuple[int, str, bytes]:
        response = await client.get("/repository/mirror/tool.tgz")
        return response.status, response.headers["X-Cache"], await response.read()

    answers = await asyncio.gather(*(download() for _ in range(6)))
    assert answers == [(200, "MISS", data)] * 6
    assert raw.requests["tool.tgz"] == 7
    head = await client.head("/repository/mirror/tool.tgz")
    assert head.status == 200 and head.headers["X-Cache"] == "MISS"


async def test_a_fill_that_cannot_be_recorded_after_its_last_byte_is_still_a_whole_answer(
    service: Remote, tree: FileTree, capsys: pytest.CaptureFixture[str]
) -> None:
    """The database goes away while a fill streams: the blob's row and the entry cannot
    be written once every (verified) byte went out. The client keeps its whole 200,
    the access log says 200, the failure is a warning of its own; nothing is cached."""
    data = os.urandom(4 * 1024 * 1024)
    tree.files["late.bin"] = File(data)
    tree.chunk, tree.delay = 256 * 1024, 0.02
    client = await service()
    response = await client.get("/repository/mirror/late.bin")
    assert response.status == 200 and response.headers["X-Cache"] == "MISS"
    first = await response.content.readexactly(256 * 1024)
    await client.app[keys.METADATA].db.close()  # gone before the fill is recorded
    assert first + await response.read() == data
    output = await logged(capsys, "path=/repository/mirror/late.bin")
    [line] = [line for line in output.splitlines() if "path=/repository/mirror/late.bin" in line]
    assert "status=200" in line, output
    assert "fill not recorded" in output and "Traceback" not in output
