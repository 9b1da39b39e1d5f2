"""The remote core on its own, without a server of ours: real SQLite metadata,
filesystem storage and leases, against a fake upstream (an aiohttp server speaking
HTTP). What a format or a virtual repository gets back is plain data: a stored copy,
a fill to read, or missing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from app.backends.cache.memory import MemoryCache
from app.backends.metadata import MetadataStore, open_metadata
from app.backends.storage.filesystem import FilesystemStorage
from app.cas import ContentStore
from app.metrics import Metrics
from app.proxy import fill as fill_module
from app.proxy.core import Opened, RemoteCore
from app.proxy.fill import Fill, FillRejected
from app.proxy.options import RemoteOptions
from app.proxy.results import Cached, Fetch, Missing
from app.proxy.singleflight import CacheLeases, DatabaseLeases, Leases
from app.proxy.upstream import Upstream
from app.repositories import Repository
from pipelines import parse_digest
from tests.upstreams import File, FileTree
from tests.waiting import until


@dataclass
class Side:
    """One engine: a core with its own connection to the shared database."""

    core: RemoteCore
    metadata: MetadataStore


@pytest.fixture
def tree() -> FileTree:
    return FileTree()


@pytest.fixture
async def upstream_server(aiohttp_server: Any, tree: FileTree) -> TestServer:
    server: TestServer = await aiohttp_server(tree.app())
    return server


@pytest.fixture
async def world(
    tmp_path: Path, upstream_server: TestServer
) -> AsyncIterator[Callable[..., Awaitable[tuple[Side, Repository, Upstream]]]]:
    """``world(leases="database"|"cache", **options)``: one more engine over the same
    database file, storage root and memory cache, with one remote repository."""
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    cache = MemoryCache()
    async with AsyncExitStack() as stack:

        async def start(
            leases: str = "database", **options: Any
        ) -> tuple[Side, Repository, Upstream]:
            metadata = await open_metadata(url)
            stack.push_async_callback(metadata.close)
            await metadata.migrate([])  # the core track: remote_entries, leases
            storage = await FilesystemStorage(tmp_path / "blobs").open()
            stack.push_async_callback(storage.close)
            chosen: Leases = (
                DatabaseLeases(metadata) if leases == "database" else CacheLeases(cache)
            )
            core = RemoteCore(ContentStore(storage, metadata), metadata, chosen, Metrics())
            remote = RemoteOptions(
                upstream=str(upstream_server.make_url("")).rstrip("/"), retries=0, **options
            )
            rows = await metadata.sync_repositories([("mirror", "generic", "remote", {})])
            repo = Repository(rows["mirror"].id, "mirror", "generic", "remote", remote)
            upstream = Upstream("mirror", remote)
            stack.push_async_callback(upstream.close)
            return Side(core, metadata), repo, upstream

        yield start


def artifact(path: str, **extra: Any) -> Fetch:
    return Fetch(path=path, upstream_path=path, kind="artifact", **extra)


def metadata(path: str) -> Fetch:
    return Fetch(path=path, upstream_path=path, kind="metadata")


async def body_of(opened: Opened) -> bytes:
    assert not isinstance(opened, Missing), opened
    if isinstance(opened, Cached):
        return await opened.read()
    return b"".join([chunk async for chunk in opened.chunks()])


async def test_concurrent_opens_make_one_upstream_request(world: Any, tree: FileTree) -> None:
    data = os.urandom(2 * 1024 * 1024)
    tree.files["big.bin"] = File(data)
    tree.chunk, tree.delay = 128 * 1024, 0.005  # long enough for the others to wait
    side, repo, upstream = await world()

    async def one() -> tuple[str, bytes]:
        opened = await side.core.open(repo, upstream, artifact("big.bin"))
        return opened.how, await body_of(opened)

    answers = await asyncio.gather(*(one() for _ in range(8)))
    assert tree.requests["big.bin"] == 1
    assert sorted(how for how, _ in answers) == ["HIT"] * 7 + ["MISS"]
    assert all(body == data for _, body in answers)


@pytest.mark.parametrize("leases", ["database", "cache"])
async def test_the_lease_makes_one_upstream_request_across_two_engines(
    world: Any, tree: FileTree, leases: str
) -> None:
    data = os.urandom(1024 * 1024)
    tree.files["shared.bin"] = File(data)
    tree.chunk, tree.delay = 64 * 1024, 0.01
    first, repo, upstream = await world(leases)
    second, _, other_upstream = await world(leases)  # its own connection, flight and upstream

    async def one(side: Side, via: Upstream) -> bytes:
        return await body_of(await side.core.open(repo, via, artifact("shared.bin")))

    bodies = await asyncio.gather(
        *(one(side, via) for side, via in [(first, upstream), (second, other_upstream)] * 3)
    )
    assert tree.requests["shared.bin"] == 1 and set(bodies) == {data}


async def expired(side: Side, repo: Repository, path: str) -> None:
    async def past() -> bool:
        entry = await side.core.entries.get(repo.id, path)
        return entry is not None and not entry.fresh(time.time())

    await until(past, f"{path} expired")


async def test_an_expired_copy_stands_in_when_the_upstream_fails(
    world: Any, tree: FileTree
) -> None:
    tree.files["index.json"] = File(b'{"v": 1}', "application/json")
    side, repo, upstream = await world(metadata_ttl=0.1)
    first = await side.core.open(repo, upstream, metadata("index.json"))
    assert first.how == "MISS" and await body_of(first) == b'{"v": 1}'
    await expired(side, repo, "index.json")
    tree.fault = "500"
    tree.files["index.json"] = File(b'{"v": 2}', "application/json")
    stale = await side.core.open(repo, upstream, metadata("index.json"))
    assert isinstance(stale, Cached) and stale.how == "STALE"
    assert await stale.read() == b'{"v": 1}'
    document = await side.core.document(repo, upstream, metadata("index.json"), _anything)
    assert not isinstance(document, Missing) and document.how == "STALE"
    assert await document.read() == b'{"v": 1}'
    tree.fault = None
    fresh = await side.core.open(repo, upstream, metadata("index.json"))
    assert fresh.how == "MISS" and await body_of(fresh) == b'{"v": 2}'


async def _anything(body: bytes) -> None:
    pass


async def test_an_upstream_404_is_remembered_for_negative_ttl(world: Any, tree: FileTree) -> None:
    side, repo, upstream = await world(negative_ttl=0.3)
    for how in ("MISS", "HIT", "HIT"):
        missing = await side.core.open(repo, upstream, artifact("later.bin"))
        assert missing == Missing("later.bin", how)
    assert tree.requests["later.bin"] == 1
    tree.files["later.bin"] = File(b"here now")
    await expired(side, repo, "later.bin")
    found = await side.core.open(repo, upstream, artifact("later.bin"))
    assert found.how == "MISS" and await body_of(found) == b"here now"
    assert tree.requests["later.bin"] == 2


async def test_a_body_that_fails_its_published_digest_is_never_cached(
    world: Any, tree: FileTree
) -> None:
    data = os.urandom(300_000)
    tree.files["tool.tgz"] = File(data)
    side, repo, upstream = await world()
    wrong = parse_digest("sha256:" + hashlib.sha256(b"something else").hexdigest())
    fetch = artifact("tool.tgz", expected=wrong)
    opened = await side.core.open(repo, upstream, fetch)
    assert isinstance(opened, Fill)
    received = bytearray()
    with pytest.raises(FillRejected):
        async for chunk in opened.chunks():
            received += chunk
    assert len(received) < len(data)  # the last chunk was held back: never all of it
    assert await side.core.entries.get(repo.id, "tool.tgz") is None
    assert await side.core.cas.stat("sha256:" + hashlib.sha256(data).hexdigest()) is None
    right = artifact(
        "tool.tgz", expected=parse_digest("sha256:" + hashlib.sha256(data).hexdigest())
    )
    again = await side.core.open(repo, upstream, right)
    assert again.how == "MISS" and await body_of(again) == data
    assert tree.requests["tool.tgz"] == 2


@pytest.mark.parametrize("how", ["stops reading", "is cancelled"])
async def test_a_reader_leaving_mid_fill_leaves_the_fill_to_the_others(
    world: Any, tree: FileTree, how: str
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    tree.files["fill.bin"] = File(data)
    tree.chunk, tree.delay = 64 * 1024, 0.01
    side, repo, upstream = await world()
    opened = await side.core.open(repo, upstream, artifact("fill.bin"))
    assert isinstance(opened, Fill)
    follower = asyncio.ensure_future(side.core.open(repo, upstream, artifact("fill.bin")))
    chunks = opened.chunks()
    if how == "stops reading":
        await anext(chunks)
        await chunks.aclose()
    else:

        async def reader() -> None:
            async for _ in chunks:
                pass

        reading = asyncio.ensure_future(reader())
        await until(lambda: tree.requests["fill.bin"] == 1, "the fill started")
        await asyncio.sleep(0.05)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
    later = await follower  # waited for the fill, then found it stored
    assert isinstance(later, Cached) and later.how == "HIT"
    assert await later.read() == data
    entry = await side.core.entries.get(repo.id, "fill.bin")
    assert entry is not None and entry.size == len(data)
    assert tree.requests["fill.bin"] == 1


async def test_a_fill_nobody_reads_is_stored_for_a_head(world: Any, tree: FileTree) -> None:
    data = os.urandom(500_000)
    tree.files["head.bin"] = File(data)
    side, repo, upstream = await world()
    opened = await side.core.open(repo, upstream, artifact("head.bin"))
    assert isinstance(opened, Fill)
    opened.leave()
    stored = await opened.stored()
    assert stored is not None and stored.how == "MISS" and stored.blob.size == len(data)
    assert await stored.read() == data


async def test_opens_for_several_repositories_run_together(world: Any, tree: FileTree) -> None:
    """What a virtual repository does: ask each member at once, as data."""
    tree.files["a.bin"] = File(b"a" * 1000)
    side, repo, upstream = await world()
    rows = await side.metadata.sync_repositories([("other", "generic", "remote", {})])
    other = Repository(rows["other"].id, "other", "generic", "remote", upstream.options)
    answers = await asyncio.gather(
        side.core.open(repo, upstream, artifact("a.bin")),
        side.core.open(other, upstream, artifact("a.bin")),
        side.core.open(repo, upstream, artifact("none.bin")),
    )
    assert [answer.how for answer in answers] == ["MISS", "MISS", "MISS"]
    assert isinstance(answers[2], Missing)
    assert [await body_of(a) for a in answers[:2]] == [b"a" * 1000] * 2
    assert tree.requests["a.bin"] == 2  # one per repository: each keeps its own copy


async def test_a_caller_cancelled_before_it_got_its_fill_does_not_hold_the_fill_up(
    world: Any, tree: FileTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp cancels a handler whose client hangs up, perhaps while the upstream's
    headers are on their way: the fill handed to nobody goes on alone, at once (not
    after waiting CLIENT_STALL for a reader that will never come)."""
    monkeypatch.setattr(fill_module, "CLIENT_STALL", 3600.0)
    data = os.urandom(1024 * 1024)
    tree.files["gone.bin"] = File(data)
    tree.chunk, tree.delay, tree.head_delay = 64 * 1024, 0.005, 0.3
    side, repo, upstream = await world()
    opening = asyncio.ensure_future(side.core.open(repo, upstream, artifact("gone.bin")))
    await until(lambda: tree.requests["gone.bin"] == 1, "the upstream asked")
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    later = await asyncio.wait_for(side.core.open(repo, upstream, artifact("gone.bin")), 10)
    assert later.how == "HIT" and await body_of(later) == data
    assert tree.requests["gone.bin"] == 1
