"""One contract, every driver: each test runs against the filesystem and the S3 driver.

Driver-specific checks (symlinks, multipart uploads, unreachable endpoints) follow
the shared ones and say which driver they are for.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from app.backends.storage.base import (
    BlobStorage,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
)
from app.backends.storage.filesystem import INCOMING, FilesystemStorage
from app.backends.storage.s3 import S3Storage
from app.config import S3StorageConfig
from tests.services import S3Settings
from tests.shapes import s3_storage
from tests.waiting import until

MiB = 1024 * 1024
PART = 5 * MiB
# Odd sizes, and an empty chunk, so part boundaries never line up with chunk boundaries.
CHUNK_SIZES = (1, 0, 65_537, 1_000_003, 333_333)


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def chunked(data: bytes, sizes: tuple[int, ...] = CHUNK_SIZES) -> AsyncIterator[bytes]:
    position, index = 0, 0
    while position < len(data):
        size = sizes[index % len(sizes)]
        yield data[position : position + size]
        position, index = position + size, index + 1


async def failing(data: bytes, error: Exception) -> AsyncIterator[bytes]:
    async for chunk in chunked(data):
        yield chunk
    raise error


async def read(storage: BlobStorage, key: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.get(key, offset, length)])


def s3_config(s3: S3Settings, prefix: str, **overrides: Any) -> S3StorageConfig:
    return S3StorageConfig(**s3_storage(s3, prefix, **({"part_size": PART} | overrides)))


@pytest.fixture(params=["filesystem", "s3"])
def storage(request: pytest.FixtureRequest) -> BlobStorage:
    # Looked up lazily so that filesystem runs never start an S3 server.
    store: BlobStorage = request.getfixturevalue("fs" if request.param == "filesystem" else "s3")
    return store


async def leftovers(storage: BlobStorage) -> list[str]:
    """Partial writes the driver left behind: temp files, or unfinished multipart uploads."""
    if isinstance(storage, FilesystemStorage):
        return sorted(p.name for p in (storage.root / INCOMING).iterdir())
    assert isinstance(storage, S3Storage)
    response = await storage._client.list_multipart_uploads(
        Bucket=storage.bucket, Prefix=storage.config.prefix + "/"
    )
    return sorted(upload["Key"] for upload in response.get("Uploads", []))


async def unfinished_bytes(storage: BlobStorage) -> int:
    """Bytes of partial writes the backend holds: in temp files, or in uploaded parts."""
    if isinstance(storage, FilesystemStorage):
        return sum(p.stat().st_size for p in (storage.root / INCOMING).iterdir())
    assert isinstance(storage, S3Storage)
    client, bucket = storage._client, storage.bucket
    response = await client.list_multipart_uploads(
        Bucket=bucket, Prefix=storage.config.prefix + "/"
    )
    total = 0
    for upload in response.get("Uploads", []):
        ids = {"Bucket": bucket, "Key": upload["Key"], "UploadId": upload["UploadId"]}
        total += sum(part["Size"] for part in (await client.list_parts(**ids)).get("Parts", []))
    return total


@pytest.fixture
async def fs(tmp_path: Path) -> AsyncIterator[FilesystemStorage]:
    store = await FilesystemStorage(tmp_path / "root").open()
    yield store
    await store.close()


@pytest.fixture
async def s3(s3_server: S3Settings, s3_prefix: str) -> AsyncIterator[S3Storage]:
    store = await S3Storage(s3_config(s3_server, s3_prefix)).open()
    yield store
    await store.close()


# --- put and get ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 5, PART, 13 * MiB + 7], ids=["empty", "small", "part", "multi"]
)
async def test_put_get_roundtrip(storage: BlobStorage, size: int) -> None:
    data = payload(size, seed=size)
    assert await storage.put("blobs/sha256/ab/abcd", chunked(data)) == size
    assert await read(storage, "blobs/sha256/ab/abcd") == data
    info = await storage.stat("blobs/sha256/ab/abcd")
    assert info is not None and info.size == size and info.key == "blobs/sha256/ab/abcd"


async def test_get_streams_in_bounded_chunks(storage: BlobStorage) -> None:
    data = payload(3 * MiB + 5)
    await storage.put("big", chunked(data))
    chunks = [chunk async for chunk in storage.get("big")]
    assert b"".join(chunks) == data
    assert len(chunks) >= 3 and max(map(len, chunks)) <= MiB


RANGES = {
    "start": (0, 10),
    "middle": (1_234_567, 1_500_000),
    "across-chunks": (MiB - 3, MiB + 6),
    "tail": (-7, None),
    "tail-clamped": (-7, 100),
    "from-offset-to-end": (2 * MiB + 1, None),
    "length-zero": (100, 0),
    "length-zero-at-start": (0, 0),
    "offset-at-end": (0, None),  # offset replaced by len(data) below
    "offset-past-end": (10, 5),  # offset replaced by len(data) + 10 below
}


@pytest.mark.parametrize("case", RANGES)
async def test_get_range(storage: BlobStorage, case: str) -> None:
    data = payload(3 * MiB + 11, seed=3)
    await storage.put("ranged", chunked(data))
    offset, length = RANGES[case]
    if offset < 0:
        offset += len(data)
    if case.startswith("offset-"):
        offset += len(data)
    expected = data[offset:] if length is None else data[offset : offset + length]
    got = await read(storage, "ranged", offset, length)
    assert len(got) == len(expected) and got == expected


async def test_get_range_of_empty_object(storage: BlobStorage) -> None:
    await storage.put("empty", chunked(b""))
    assert await read(storage, "empty", 0, 10) == b""
    assert await read(storage, "empty", 5) == b""


async def test_negative_range_is_rejected(storage: BlobStorage) -> None:
    await storage.put("k", chunked(b"abc"))
    with pytest.raises(ValueError):
        await read(storage, "k", -1)
    with pytest.raises(ValueError):
        await read(storage, "k", 0, -1)


@pytest.mark.parametrize(("offset", "length"), [(0, None), (3, 4), (0, 0), (100, None)])
async def test_get_missing_raises(storage: BlobStorage, offset: int, length: int | None) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        await read(storage, "no/such/key", offset, length)
    assert caught.value.key == "no/such/key"


async def test_abandoned_reads_release_their_resources(storage: BlobStorage) -> None:
    data = payload(3 * MiB)
    await storage.put("k", chunked(data))

    async def abandon_reads() -> None:
        for _ in range(30):  # more than the S3 connection pool holds
            # Both drivers implement get() as an async generator, which can be closed early.
            reader = cast(AsyncGenerator[bytes, None], storage.get("k"))
            assert len(await reader.__anext__()) > 0
            await reader.aclose()

    # A leaked connection shows up as a hang once the pool is exhausted.
    await asyncio.wait_for(abandon_reads(), 60)
    assert await asyncio.wait_for(read(storage, "k"), 30) == data


async def test_overwrite_replaces_atomically(storage: BlobStorage) -> None:
    old, new = b"o" * (PART + 3), b"n" * (PART + 5)
    await storage.put("k", chunked(old))
    halfway, release = asyncio.Event(), asyncio.Event()

    async def slow_new() -> AsyncIterator[bytes]:
        yield new[: PART + 1]
        halfway.set()
        await release.wait()
        yield new[PART + 1 :]

    writer = asyncio.create_task(storage.put("k", slow_new()))
    await halfway.wait()

    async def first_part_stored() -> bool:
        return await unfinished_bytes(storage) >= PART

    await until(first_part_stored, "the first part stored")
    assert await read(storage, "k") == old  # readers see the old object, whole
    release.set()
    assert await writer == len(new)
    assert await read(storage, "k") == new
    info = await storage.stat("k")
    assert info is not None and info.size == len(new)


# --- failed and cancelled writes -----------------------------------------------------------


@pytest.mark.parametrize("size", [PART // 2, 2 * PART + 3], ids=["below-part", "above-part"])
async def test_failed_put_leaves_nothing(storage: BlobStorage, size: int) -> None:
    with pytest.raises(RuntimeError, match="source broke"):
        await storage.put("k", failing(payload(size), RuntimeError("source broke")))
    assert await storage.stat("k") is None
    with pytest.raises(ObjectNotFound):
        await read(storage, "k")
    assert await leftovers(storage) == []


async def test_failed_overwrite_keeps_the_old_object(storage: BlobStorage) -> None:
    await storage.put("k", chunked(b"old content"))
    with pytest.raises(RuntimeError):
        await storage.put("k", failing(payload(2 * PART), RuntimeError("broke")))
    assert await read(storage, "k") == b"old content"
    assert await leftovers(storage) == []


async def test_put_cancelled_while_waiting_for_data_leaves_nothing(storage: BlobStorage) -> None:
    started = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield payload(PART + 1)
        yield payload(PART + 1, seed=1)
        started.set()
        await asyncio.Event().wait()
        yield b"never"

    writer = asyncio.create_task(storage.put("k", stalls()))
    await started.wait()

    async def both_parts_stored() -> bool:
        return await unfinished_bytes(storage) >= 2 * PART

    await until(both_parts_stored, "both parts stored")  # there is something to clean up
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert await storage.stat("k") is None
    assert await leftovers(storage) == []


@pytest.mark.parametrize("first", [PART // 2, 3 * PART], ids=["small-first", "large-first"])
async def test_put_cancelled_mid_write_leaves_nothing(storage: BlobStorage, first: int) -> None:
    # The cancellation lands on whatever the driver awaits next: a chunk still being
    # written to disk, the creation of the multipart upload, or parts in flight.
    async def cancels_itself() -> AsyncIterator[bytes]:
        yield payload(first)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        yield payload(3 * PART, seed=1)

    writer = asyncio.create_task(storage.put("k", cancels_itself()))
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert await storage.stat("k") is None
    assert await leftovers(storage) == []


# --- stat and delete -----------------------------------------------------------------------


async def test_stat_reports_size_and_modified_time(storage: BlobStorage) -> None:
    before = datetime.now(UTC)
    await storage.put("a/b", chunked(b"12345"))
    after = datetime.now(UTC)
    info = await storage.stat("a/b")
    assert isinstance(info, ObjectInfo)
    assert (info.key, info.size) == ("a/b", 5)
    assert info.modified.utcoffset() == timedelta(0)
    # S3 keeps whole seconds; allow for truncation and a little clock skew.
    assert before - timedelta(seconds=2) <= info.modified <= after + timedelta(seconds=2)


async def test_stat_missing_is_none(storage: BlobStorage) -> None:
    assert await storage.stat("missing") is None
    await storage.put("dir/file", chunked(b"x"))
    assert await storage.stat("dir") is None  # a key's parent is not an object
    assert await storage.stat("dir/file/below") is None


async def test_delete_reports_whether_it_existed(storage: BlobStorage) -> None:
    await storage.put("k", chunked(b"data"))
    assert await storage.delete("k") is True
    assert await storage.stat("k") is None
    with pytest.raises(ObjectNotFound):
        await read(storage, "k")
    assert await storage.delete("k") is False


# --- copy and move -------------------------------------------------------------------------


async def test_copy_keeps_the_source(storage: BlobStorage) -> None:
    data = payload(PART + 9)
    await storage.put("src", chunked(data))
    await storage.put("dst/existing", chunked(b"to be replaced"))
    await storage.copy("src", "dst/existing")
    await storage.copy("src", "dst/new")
    assert await read(storage, "src") == data
    assert await read(storage, "dst/existing") == data
    assert await read(storage, "dst/new") == data


async def test_move_removes_the_source(storage: BlobStorage) -> None:
    await storage.put("uploads/u1", chunked(b"payload"))
    await storage.move("uploads/u1", "blobs/b1")
    assert await read(storage, "blobs/b1") == b"payload"
    assert await storage.stat("uploads/u1") is None


@pytest.mark.parametrize("operation", ["copy", "move"])
async def test_copy_or_move_of_missing_key_raises(storage: BlobStorage, operation: str) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        await getattr(storage, operation)("missing", "dst")
    assert caught.value.key == "missing"
    assert await storage.stat("dst") is None


# --- list_stale ----------------------------------------------------------------------------


async def test_list_stale_filters_by_prefix(storage: BlobStorage) -> None:
    for key, body in [("up/a", b"1"), ("up/b/c", b"22"), ("upper", b"3"), ("other/x", b"4")]:
        await storage.put(key, chunked(body))
    # Time passes on purpose: "older than zero" must be strictly in the past.
    await asyncio.sleep(0.05)
    stale = [info async for info in storage.list_stale("up/", timedelta(0))]
    assert sorted((info.key, info.size) for info in stale) == [("up/a", 1), ("up/b/c", 2)]
    assert all(info.modified.utcoffset() == timedelta(0) for info in stale)
    assert [info async for info in storage.list_stale("up/", timedelta(hours=1))] == []
    assert [info async for info in storage.list_stale("nothing/", timedelta(0))] == []


async def test_list_stale_skips_fresh_objects(storage: BlobStorage) -> None:
    await storage.put("up/old", chunked(b"old"))
    # Ages on purpose: S3 truncates LastModified to seconds, so keep the cutoff a safe
    # second from either object.
    await asyncio.sleep(2.6)
    await storage.put("up/fresh", chunked(b"fresh"))
    stale = [info.key async for info in storage.list_stale("up/", timedelta(seconds=1.5))]
    assert stale == ["up/old"]


# --- keys ----------------------------------------------------------------------------------

BAD_KEYS = ["../x", "/abs", "a//b", "a/./b", ".hidden", "a\\b", "", "a/../../etc", "a/.incoming"]


@contextmanager
def untouched(storage: BlobStorage) -> Iterator[None]:
    """Fail if the block reaches the backend at all."""
    if isinstance(storage, S3Storage):
        client, storage._client = storage._client, _Unreachable()
        try:
            yield
        finally:
            storage._client = client
        return
    assert isinstance(storage, FilesystemStorage)
    before = sorted(storage.root.rglob("*"))
    yield
    assert sorted(storage.root.rglob("*")) == before


class _Unreachable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"S3 client used: {name}")


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_invalid_keys_are_refused_before_storage(storage: BlobStorage, key: str) -> None:
    consumed = False

    async def source() -> AsyncIterator[bytes]:
        nonlocal consumed
        consumed = True
        yield b"x"

    with untouched(storage):
        with pytest.raises(InvalidKey):
            await storage.put(key, source())
        with pytest.raises(InvalidKey):
            await read(storage, key)
        with pytest.raises(InvalidKey):
            await read(storage, key, 0, 0)
        with pytest.raises(InvalidKey):
            await storage.stat(key)
        with pytest.raises(InvalidKey):
            await storage.delete(key)
        for src, dst in [(key, "ok"), ("ok", key)]:
            with pytest.raises(InvalidKey):
                await storage.copy(src, dst)
            with pytest.raises(InvalidKey):
                await storage.move(src, dst)
        with pytest.raises(InvalidKey):
            storage.local_path(key)
        with pytest.raises(InvalidKey):
            [info async for info in storage.list_stale(key, timedelta(0))]
    assert not consumed


async def test_ping(storage: BlobStorage) -> None:
    await storage.ping()


# --- filesystem only -----------------------------------------------------------------------


async def test_filesystem_refuses_symlinks_out_of_the_root(
    fs: FilesystemStorage, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (fs.root / "evil").symlink_to(outside)
    (fs.root / "leak").symlink_to(outside / "secret")
    for key in ("evil/secret", "leak"):
        with pytest.raises(InvalidKey):
            await read(fs, key)
        with pytest.raises(InvalidKey):
            await fs.stat(key)
        with pytest.raises(InvalidKey):
            await fs.delete(key)
        with pytest.raises(InvalidKey):
            fs.local_path(key)
    with pytest.raises(InvalidKey):
        await fs.put("evil/new", chunked(b"x"))
    with pytest.raises(InvalidKey):
        [info async for info in fs.list_stale("evil/", timedelta(0))]
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"


async def test_filesystem_local_path_is_the_file(fs: FilesystemStorage) -> None:
    await fs.put("a/b", chunked(b"on disk"))
    path = fs.local_path("a/b")
    assert path is not None and path.is_relative_to(fs.root)
    assert path.read_bytes() == b"on disk"


async def test_filesystem_directories_are_not_objects(fs: FilesystemStorage) -> None:
    await fs.put("dir/file", chunked(b"x"))
    with pytest.raises(ObjectNotFound):
        await read(fs, "dir")
    assert await fs.delete("dir") is False
    with pytest.raises(ObjectNotFound):
        await fs.move("dir", "elsewhere")
    assert await read(fs, "dir/file") == b"x"


# --- writes a killed process left ----------------------------------------------------------


async def _killed_mid_put(storage: BlobStorage, key: str) -> None:
    """Start a put in another process, wait until the driver holds part of it, kill it."""
    if isinstance(storage, FilesystemStorage):
        where = ("filesystem", str(storage.root))
    else:
        assert isinstance(storage, S3Storage)
        where = ("s3", storage.config.model_dump_json())
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.dead_writer", *where, key
    )
    try:

        async def begun() -> bool:
            assert process.returncode is None, "the writer died on its own"
            return await unfinished_bytes(storage) >= PART

        await until(begun, "holding the killed writer's first part", bound=30)
    finally:
        process.kill()
        await process.wait()


async def test_writes_a_killed_process_left_are_reaped_once_old(storage: BlobStorage) -> None:
    await _killed_mid_put(storage, "uploads/dead/0-part")
    assert await leftovers(storage)
    assert await storage.reap_incomplete(timedelta(hours=1)) == []  # too young
    assert await leftovers(storage)
    [seen] = await storage.reap_incomplete(timedelta(0), dry_run=True)
    assert seen.size >= PART and await leftovers(storage)  # a dry run removes nothing
    [reaped] = await storage.reap_incomplete(timedelta(0))
    assert reaped.size == seen.size
    assert await leftovers(storage) == []
    assert await storage.stat("uploads/dead/0-part") is None
    assert await storage.reap_incomplete(timedelta(0)) == []


# --- S3 only -------------------------------------------------------------------------------


class _InFlight:
    """Wraps a client method and records how many calls overlapped at most."""

    def __init__(self, method: Any, delay: float = 0.05) -> None:
        self.method, self.delay, self.now, self.most, self.calls = method, delay, 0, 0, 0
        self.called, self.returned = asyncio.Event(), asyncio.Event()

    async def __call__(self, **kwargs: Any) -> Any:
        self.now, self.calls = self.now + 1, self.calls + 1
        self.most = max(self.most, self.now)
        self.called.set()
        try:
            result = await self.method(**kwargs)
            await asyncio.sleep(self.delay)  # widen the window so overlap is observable
            self.returned.set()
            return result
        finally:
            self.now -= 1


async def test_s3_large_put_uploads_parts_concurrently_but_bounded(
    s3_server: S3Settings, s3_prefix: str
) -> None:
    store = await S3Storage(s3_config(s3_server, s3_prefix, concurrency=2)).open()
    try:
        probe = store._client.upload_part = _InFlight(store._client.upload_part)
        data = payload(4 * PART + 1)
        assert await store.put("multi", chunked(data)) == len(data)
        assert (probe.calls, probe.most) == (5, 2)
        assert await read(store, "multi") == data
        head = await store._client.head_object(Bucket=store.bucket, Key=f"{s3_prefix}/multi")
        assert head["ETag"].strip('"').endswith("-5")  # a multipart object
        await store.put("one-part", chunked(payload(PART)))
        assert probe.calls == 5  # exactly one part's worth is a single PutObject
    finally:
        await store.close()


async def test_s3_put_cancelled_while_creating_the_upload_aborts_it(s3: S3Storage) -> None:
    # The server has created the upload, but its answer has not reached the driver yet.
    probe = s3._client.create_multipart_upload = _InFlight(
        s3._client.create_multipart_upload, delay=0.5
    )
    writer = asyncio.create_task(s3.put("k", chunked(payload(2 * PART))))
    await probe.called.wait()

    async def created() -> bool:
        return await leftovers(s3) == [f"{s3.config.prefix}/k"]

    await until(created, "the upload created on the server")
    assert not probe.returned.is_set()  # still within the probe's delay
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert probe.returned.is_set()  # abort waited for the upload id
    assert await leftovers(s3) == []
    assert await s3.stat("k") is None


async def test_s3_multipart_copy(s3: S3Storage) -> None:
    store = s3
    data = payload(13 * MiB + 1)
    await store.put("src", chunked(data))
    store.max_single_copy = store.copy_part_size = PART
    probe = store._client.upload_part_copy = _InFlight(store._client.upload_part_copy)
    await store.copy("src", "dst")
    assert probe.calls == 3 and probe.most >= 2
    assert await read(store, "dst") == data
    await store.move("dst", "moved")
    assert await read(store, "moved") == data and await store.stat("dst") is None
    assert await leftovers(store) == []


async def test_s3_multipart_with_checksums(s3_server: S3Settings, s3_prefix: str) -> None:
    store = await S3Storage(s3_config(s3_server, s3_prefix, checksums="when_supported")).open()
    try:
        data = payload(2 * PART + 3)
        await store.put("k", chunked(data))
        assert await read(store, "k") == data
        assert await read(store, "k", PART - 1, 3) == data[PART - 1 : PART + 2]
        head = await store._client.head_object(
            Bucket=store.bucket, Key=f"{s3_prefix}/k", ChecksumMode="ENABLED"
        )
        # Only declared at creation does the server keep the parts' checksums.
        assert head["ChecksumCRC32"].endswith("-3")
        await store.put("small", chunked(b"validated on the way back"))
        assert await read(store, "small") == b"validated on the way back"
    finally:
        await store.close()


async def test_s3_ping_unreachable_endpoint_raises(s3_prefix: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    dead = S3Settings(f"http://127.0.0.1:{port}", "key", "secret", "bucket")
    store = await S3Storage(s3_config(dead, s3_prefix)).open()
    try:
        with pytest.raises(StorageError):
            await asyncio.wait_for(store.ping(), 30)
        with pytest.raises(StorageError):
            await store.stat("k")
    finally:
        await store.close()


async def test_s3_create_bucket(s3_server: S3Settings) -> None:
    bucket = f"created-{random.randrange(16**8):08x}"
    config = s3_config(s3_server, "", bucket=bucket, create_bucket=True)
    store = await S3Storage(config).open()
    try:
        await store.ping()
        await store.put("k", chunked(b"in a new bucket"))
        assert await read(store, "k") == b"in a new bucket"
        again = await S3Storage(config).open()  # an existing bucket is fine
        await again.close()
    finally:
        await store.close()


@pytest.mark.parametrize("sign", [False, True])
async def test_s3_payload_signing_is_configurable(
    s3_server: S3Settings, s3_prefix: str, sign: bool
) -> None:
    store = await S3Storage(s3_config(s3_server, s3_prefix, sign_payload=sign)).open()
    sent: list[str] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(request.headers["X-Amz-Content-SHA256"].decode())

    store._client.meta.events.register("before-send.s3.PutObject", capture)
    try:
        await store.put("signed", chunked(b"body"))
        assert await read(store, "signed") == b"body"
    finally:
        await store.close()
    expected = hashlib.sha256(b"body").hexdigest() if sign else "UNSIGNED-PAYLOAD"
    assert sent == [expected]


async def test_delete_many_deletes_in_batches_and_ignores_absent_keys(
    storage: BlobStorage,
) -> None:
    keys = [f"blobs/sha256/{i:02x}/{i:064x}" for i in range(25)]
    for key in keys[:20]:
        await storage.put(key, chunked(key.encode()))
    await storage.put("kept", chunked(b"kept"))
    assert await storage.delete_many(keys) == {}  # five of them never existed
    for key in keys:
        assert await storage.stat(key) is None
    assert await read(storage, "kept") == b"kept"
    with pytest.raises(InvalidKey):
        await storage.delete_many(["../escape"])


async def test_downloads_are_served_by_us_unless_redirects_are_configured(
    storage: BlobStorage,
) -> None:
    await storage.put("a/b", chunked(b"bytes"))
    assert await storage.download_url("a/b", "application/octet-stream") is None
    with pytest.raises(InvalidKey):
        await storage.download_url("../escape", "application/octet-stream")


@pytest.mark.parametrize("public", [False, True], ids=["endpoint", "public-endpoint"])
async def test_s3_redirect_urls_are_presigned_and_fetchable(
    s3_server: S3Settings, s3_prefix: str, public: bool
) -> None:
    # A public endpoint is another name for the same server, as a CDN or DNS alias is.
    alias = s3_server.endpoint.replace("127.0.0.1", "localhost") if public else None
    config = s3_config(s3_server, s3_prefix, redirect_downloads=True, public_endpoint=alias)
    store = await S3Storage(config).open()
    data = payload(2 * MiB + 11)
    try:
        await store.put("blobs/x", chunked(data))
        url = await store.download_url("blobs/x", "text/plain")
        assert url is not None and "X-Amz-Signature=" in url and "X-Amz-Expires=900" in url
        assert url.startswith((alias or s3_server.endpoint) + "/")
        async with aiohttp.ClientSession() as client:
            async with client.get(url) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/plain"
                assert await response.read() == data
            async with client.get(url, headers={"Range": "bytes=5-9"}) as response:
                assert response.status == 206 and await response.read() == data[5:10]
            tampered = url.replace("blobs/x", "blobs/y")  # the signature covers the key
            async with client.get(tampered) as response:
                assert response.status == 403
    finally:
        await store.close()
