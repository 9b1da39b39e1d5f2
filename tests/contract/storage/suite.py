"""The storage contract: every test a :class:`BlobStorage` implementation must pass,
written once, as distribution's storage driver test suites are.

Each implementation has a few-line factory file beside this one (``test_filesystem.py``,
``test_s3.py``, ``test_checked.py`` for the wrapper) with a class that subclasses
:class:`StorageContract` and provides one fixture, ``harness``: the storage under test
and what only the implementation knows how to see (its partial writes, whether a
call reached the backend, how another process opens it). Checks only one driver
needs live in its own file. A new driver needs a new factory file, nothing else.

Drivers trust their keys; the :class:`CheckedStorage` around every driver refuses bad
ones, which :meth:`StorageContract.test_invalid_keys_are_refused_before_the_backend`
checks over each driver.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast

import pytest

from app import layout
from app.backends.storage import CheckedStorage
from app.backends.storage.base import BlobStorage, InvalidKey, ObjectInfo, ObjectNotFound
from tests.waiting import until

MiB = 1024 * 1024
# A driver's unit of writing (the S3 factory's part size): sizes straddle it.
PART = 5 * MiB
# Odd sizes, and an empty chunk, so part boundaries never line up with chunk boundaries.
CHUNK_SIZES = (1, 0, 65_537, 1_000_003, 333_333)


class Harness(Protocol):
    """What a factory provides for one test."""

    storage: BlobStorage  # the implementation under test

    async def leftovers(self) -> list[str]:
        """Partial writes the implementation holds (temp files, unfinished uploads)."""

    async def unfinished_bytes(self) -> int:
        """Bytes those partial writes hold."""

    def untouched(self) -> AbstractContextManager[None]:
        """Fail if the block reaches the backend at all."""

    @property
    def reopen(self) -> tuple[str, str]:
        """How another process opens this storage: ``("module:function", argument)``,
        the function an ``async (argument) -> BlobStorage`` (see ``tests.dead_writer``)."""


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

BAD_KEYS = ["../x", "/abs", "a//b", "a/./b", ".hidden", "a\\b", "", "a/../../etc", "a/.incoming"]
BAD_KEYS += ["a\n", "a/b\n", "x" * 1025, "a b", "a/\x00"]


class StorageContract:
    # --- put and get -----------------------------------------------------------------------

    @pytest.mark.parametrize(
        "size", [0, 5, PART, 13 * MiB + 7], ids=["empty", "small", "part", "multi"]
    )
    async def test_put_get_roundtrip(self, harness: Harness, size: int) -> None:
        storage, data = harness.storage, payload(size, seed=size)
        assert await storage.put("blobs/sha256/ab/abcd", chunked(data)) == size
        assert await read(storage, "blobs/sha256/ab/abcd") == data
        info = await storage.stat("blobs/sha256/ab/abcd")
        assert info is not None and info.size == size and info.key == "blobs/sha256/ab/abcd"

    async def test_get_streams_in_bounded_chunks(self, harness: Harness) -> None:
        data = payload(3 * MiB + 5)
        await harness.storage.put("big", chunked(data))
        chunks = [chunk async for chunk in harness.storage.get("big")]
        assert b"".join(chunks) == data
        assert len(chunks) >= 3 and max(map(len, chunks)) <= MiB

    @pytest.mark.parametrize("case", RANGES)
    async def test_get_range(self, harness: Harness, case: str) -> None:
        data = payload(3 * MiB + 11, seed=3)
        await harness.storage.put("ranged", chunked(data))
        offset, length = RANGES[case]
        if offset < 0:
            offset += len(data)
        if case.startswith("offset-"):
            offset += len(data)
        expected = data[offset:] if length is None else data[offset : offset + length]
        got = await read(harness.storage, "ranged", offset, length)
        assert len(got) == len(expected) and got == expected

    async def test_get_range_of_empty_object(self, harness: Harness) -> None:
        await harness.storage.put("empty", chunked(b""))
        assert await read(harness.storage, "empty", 0, 10) == b""
        assert await read(harness.storage, "empty", 5) == b""

    async def test_negative_range_is_rejected(self, harness: Harness) -> None:
        await harness.storage.put("k", chunked(b"abc"))
        with pytest.raises(ValueError):
            await read(harness.storage, "k", -1)
        with pytest.raises(ValueError):
            await read(harness.storage, "k", 0, -1)

    @pytest.mark.parametrize(("offset", "length"), [(0, None), (3, 4), (0, 0), (100, None)])
    async def test_get_missing_raises(
        self, harness: Harness, offset: int, length: int | None
    ) -> None:
        with pytest.raises(ObjectNotFound) as caught:
            await read(harness.storage, "no/such/key", offset, length)
        assert caught.value.key == "no/such/key"

    async def test_abandoned_reads_release_their_resources(self, harness: Harness) -> None:
        storage, data = harness.storage, payload(3 * MiB)
        await storage.put("k", chunked(data))

        async def abandon_reads() -> None:
            for _ in range(30):  # more than the S3 connection pool holds
                # Every implementation's get() is an async generator, which can be closed early.
                reader = cast(AsyncGenerator[bytes, None], storage.get("k"))
                assert len(await reader.__anext__()) > 0
                await reader.aclose()

        # A leaked connection shows up as a hang once the pool is exhausted.
        await asyncio.wait_for(abandon_reads(), 60)
        assert await asyncio.wait_for(read(storage, "k"), 30) == data

    async def test_overwrite_replaces_atomically(self, harness: Harness) -> None:
        storage = harness.storage
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
            return await harness.unfinished_bytes() >= PART

        await until(first_part_stored, "the first part stored")
        assert await read(storage, "k") == old  # readers see the old object, whole
        release.set()
        assert await writer == len(new)
        assert await read(storage, "k") == new
        info = await storage.stat("k")
        assert info is not None and info.size == len(new)

    # --- failed and cancelled writes -------------------------------------------------------

    @pytest.mark.parametrize("size", [PART // 2, 2 * PART + 3], ids=["below-part", "above-part"])
    async def test_failed_put_leaves_nothing(self, harness: Harness, size: int) -> None:
        storage = harness.storage
        with pytest.raises(RuntimeError, match="source broke"):
            await storage.put("k", failing(payload(size), RuntimeError("source broke")))
        assert await storage.stat("k") is None
        with pytest.raises(ObjectNotFound):
            await read(storage, "k")
        assert await harness.leftovers() == []

    async def test_failed_overwrite_keeps_the_old_object(self, harness: Harness) -> None:
        storage = harness.storage
        await storage.put("k", chunked(b"old content"))
        with pytest.raises(RuntimeError):
            await storage.put("k", failing(payload(2 * PART), RuntimeError("broke")))
        assert await read(storage, "k") == b"old content"
        assert await harness.leftovers() == []

    async def test_put_cancelled_while_waiting_for_data_leaves_nothing(
        self, harness: Harness
    ) -> None:
        started = asyncio.Event()

        async def stalls() -> AsyncIterator[bytes]:
            yield payload(PART + 1)
            yield payload(PART + 1, seed=1)
            started.set()
            await asyncio.Event().wait()
            yield b"never"

        writer = asyncio.create_task(harness.storage.put("k", stalls()))
        await started.wait()

        async def both_parts_stored() -> bool:
            return await harness.unfinished_bytes() >= 2 * PART

        await until(both_parts_stored, "both parts stored")  # there is something to clean up
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
        assert await harness.storage.stat("k") is None
        assert await harness.leftovers() == []

    @pytest.mark.parametrize("first", [PART // 2, 3 * PART], ids=["small-first", "large-first"])
    async def test_put_cancelled_mid_write_leaves_nothing(
        self, harness: Harness, first: int
    ) -> None:
        # The cancellation lands on whatever the driver awaits next: a chunk still being
        # written to disk, the creation of the multipart upload, or parts in flight.
        async def cancels_itself() -> AsyncIterator[bytes]:
            yield payload(first)
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            yield payload(3 * PART, seed=1)

        writer = asyncio.create_task(harness.storage.put("k", cancels_itself()))
        with pytest.raises(asyncio.CancelledError):
            await writer
        assert await harness.storage.stat("k") is None
        assert await harness.leftovers() == []

    # --- stat and delete -------------------------------------------------------------------

    async def test_stat_reports_size_and_modified_time(self, harness: Harness) -> None:
        before = datetime.now(UTC)
        await harness.storage.put("a/b", chunked(b"12345"))
        after = datetime.now(UTC)
        info = await harness.storage.stat("a/b")
        assert isinstance(info, ObjectInfo)
        assert (info.key, info.size) == ("a/b", 5)
        assert info.modified.utcoffset() == timedelta(0)
        # S3 keeps whole seconds; allow for truncation and a little clock skew.
        assert before - timedelta(seconds=2) <= info.modified <= after + timedelta(seconds=2)

    async def test_stat_missing_is_none(self, harness: Harness) -> None:
        storage = harness.storage
        assert await storage.stat("missing") is None
        await storage.put("dir/file", chunked(b"x"))
        assert await storage.stat("dir") is None  # a key's parent is not an object
        assert await storage.stat("dir/file/below") is None

    async def test_delete_reports_whether_it_existed(self, harness: Harness) -> None:
        storage = harness.storage
        await storage.put("k", chunked(b"data"))
        assert await storage.delete("k") is True
        assert await storage.stat("k") is None
        with pytest.raises(ObjectNotFound):
            await read(storage, "k")
        assert await storage.delete("k") is False

    async def test_delete_many_deletes_in_batches_and_ignores_absent_keys(
        self, harness: Harness
    ) -> None:
        storage = harness.storage
        keys = [layout.blob_key(f"{i:064x}") for i in range(25)]
        for key in keys[:20]:
            await storage.put(key, chunked(key.encode()))
        await storage.put("kept", chunked(b"kept"))
        assert await storage.delete_many(keys) == {}  # five of them never existed
        for key in keys:
            assert await storage.stat(key) is None
        assert await read(storage, "kept") == b"kept"
        assert await storage.delete_many([]) == {}

    # --- copy and move ---------------------------------------------------------------------

    async def test_copy_keeps_the_source(self, harness: Harness) -> None:
        storage, data = harness.storage, payload(PART + 9)
        await storage.put("src", chunked(data))
        await storage.put("dst/existing", chunked(b"to be replaced"))
        await storage.copy("src", "dst/existing")
        await storage.copy("src", "dst/new")
        assert await read(storage, "src") == data
        assert await read(storage, "dst/existing") == data
        assert await read(storage, "dst/new") == data

    async def test_move_removes_the_source(self, harness: Harness) -> None:
        storage = harness.storage
        await storage.put("uploads/u1", chunked(b"payload"))
        await storage.move("uploads/u1", "blobs/b1")
        assert await read(storage, "blobs/b1") == b"payload"
        assert await storage.stat("uploads/u1") is None

    @pytest.mark.parametrize("operation", ["copy", "move"])
    async def test_copy_or_move_of_missing_key_raises(
        self, harness: Harness, operation: str
    ) -> None:
        with pytest.raises(ObjectNotFound) as caught:
            await getattr(harness.storage, operation)("missing", "dst")
        assert caught.value.key == "missing"
        assert await harness.storage.stat("dst") is None

    # --- list_stale ------------------------------------------------------------------------

    async def test_list_stale_filters_by_prefix(self, harness: Harness) -> None:
        storage = harness.storage
        for key, body in [("up/a", b"1"), ("up/b/c", b"22"), ("upper", b"3"), ("other/x", b"4")]:
            await storage.put(key, chunked(body))
        # Time passes on purpose: "older than zero" must be strictly in the past.
        await asyncio.sleep(0.05)
        stale = [info async for info in storage.list_stale("up/", timedelta(0))]
        assert sorted((info.key, info.size) for info in stale) == [("up/a", 1), ("up/b/c", 2)]
        assert all(info.modified.utcoffset() == timedelta(0) for info in stale)
        assert [info async for info in storage.list_stale("up/", timedelta(hours=1))] == []
        assert [info async for info in storage.list_stale("nothing/", timedelta(0))] == []

    async def test_list_stale_skips_fresh_objects(self, harness: Harness) -> None:
        storage = harness.storage
        await storage.put("up/old", chunked(b"old"))
        # Ages on purpose: S3 truncates LastModified to seconds, so keep the cutoff a safe
        # second from either object.
        await asyncio.sleep(2.6)
        await storage.put("up/fresh", chunked(b"fresh"))
        stale = [info.key async for info in storage.list_stale("up/", timedelta(seconds=1.5))]
        assert stale == ["up/old"]

    # --- keys ------------------------------------------------------------------------------

    async def test_every_key_the_layout_builds_is_accepted(self, harness: Harness) -> None:
        checked = CheckedStorage(harness.storage)
        upload = "0123456789abcdef0123456789abcdef"
        keys = [layout.blob_key("sha256:" + "ab" * 32), layout.part_key(upload, 5)]
        keys.append(layout.temp_key())
        for key in keys:
            await checked.put(key, chunked(key.encode()))
            assert await read(checked, key) == key.encode()
        for prefix in (layout.BLOBS, layout.UPLOADS, layout.TMP):
            found = [info.key async for info in checked.list_stale(prefix, timedelta(0))]
            assert len(found) == 1 and found[0].startswith(prefix)

    @pytest.mark.parametrize("key", BAD_KEYS)
    async def test_invalid_keys_are_refused_before_the_backend(
        self, harness: Harness, key: str
    ) -> None:
        checked = CheckedStorage(harness.storage)
        consumed = False

        async def source() -> AsyncIterator[bytes]:
            nonlocal consumed
            consumed = True
            yield b"x"

        with harness.untouched():
            with pytest.raises(InvalidKey):
                await checked.put(key, source())
            with pytest.raises(InvalidKey):
                await read(checked, key)
            with pytest.raises(InvalidKey):
                await read(checked, key, 0, 0)
            with pytest.raises(InvalidKey):
                await checked.stat(key)
            with pytest.raises(InvalidKey):
                await checked.delete(key)
            with pytest.raises(InvalidKey):
                await checked.delete_many(["ok", key])
            for src, dst in [(key, "ok"), ("ok", key)]:
                with pytest.raises(InvalidKey):
                    await checked.copy(src, dst)
                with pytest.raises(InvalidKey):
                    await checked.move(src, dst)
            with pytest.raises(InvalidKey):
                checked.local_path(key)
            with pytest.raises(InvalidKey):
                await checked.download_url(key, "application/octet-stream")
            with pytest.raises(InvalidKey):
                [info async for info in checked.list_stale(key, timedelta(0))]
        assert not consumed

    async def test_ping(self, harness: Harness) -> None:
        await harness.storage.ping()

    async def test_downloads_are_served_by_us_by_default(self, harness: Harness) -> None:
        await harness.storage.put("a/b", chunked(b"bytes"))
        assert await harness.storage.download_url("a/b", "application/octet-stream") is None

    # --- writes a killed process left ------------------------------------------------------

    async def test_writes_a_killed_process_left_are_reaped_once_old(self, harness: Harness) -> None:
        storage = harness.storage
        await self._killed_mid_put(harness, "uploads/dead/0-part")
        assert await harness.leftovers()
        assert await storage.reap_incomplete(timedelta(hours=1)) == []  # too young
        assert await harness.leftovers()
        [seen] = await storage.reap_incomplete(timedelta(0), dry_run=True)
        assert seen.size >= PART and await harness.leftovers()  # a dry run removes nothing
        [reaped] = await storage.reap_incomplete(timedelta(0))
        assert reaped.size == seen.size
        assert await harness.leftovers() == []
        assert await storage.stat("uploads/dead/0-part") is None
        assert await storage.reap_incomplete(timedelta(0)) == []

    @staticmethod
    async def _killed_mid_put(harness: Harness, key: str) -> None:
        """Start a put in another process, wait until the storage holds part of it, kill it."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.dead_writer", *harness.reopen, key
        )
        try:

            async def begun() -> bool:
                assert process.returncode is None, "the writer died on its own"
                return await harness.unfinished_bytes() >= PART

            await until(begun, "holding the killed writer's first part", bound=30)
        finally:
            process.kill()
            await process.wait()
