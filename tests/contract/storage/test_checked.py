"""The storage contract through :class:`CheckedStorage` (the wrapper every driver the
service opens sits in), and what it adds: operations tallied for the metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.backends.storage import CheckedStorage, ObjectNotFound, StorageError, open_storage
from app.backends.storage.filesystem import FilesystemStorage
from app.config import FilesystemStorageConfig
from app.metrics import Metrics, StorageTallies
from tests.contract.storage.suite import StorageContract, chunked, read
from tests.contract.storage.test_filesystem import FilesystemHarness


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[FilesystemStorage]:
    store = await FilesystemStorage(tmp_path / "root").open()
    yield store
    await store.close()


class TestChecked(StorageContract):
    @pytest.fixture
    def harness(self, driver: FilesystemStorage) -> FilesystemHarness:
        return FilesystemHarness(driver, CheckedStorage(driver, StorageTallies()))


def counted(tallies: StorageTallies, operation: str) -> tuple[int, int, int]:
    tally = tallies.tallies[operation]
    return tally.count, tally.failed, tally.bytes


async def test_operations_are_tallied_with_their_bytes(driver: FilesystemStorage) -> None:
    tallies = StorageTallies()
    storage = CheckedStorage(driver, tallies)
    assert await storage.put("a/b", chunked(b"12345")) == 5
    assert await read(storage, "a/b", 1) == b"2345"
    assert await read(storage, "a/b", 0, 2) == b"12"
    assert await storage.stat("a/b") is not None and await storage.stat("a/c") is None
    await storage.copy("a/b", "a/c")
    with pytest.raises(ObjectNotFound):
        await read(storage, "missing")
    assert [i.key async for i in storage.list_stale("a/", timedelta(hours=1))] == []
    assert await storage.delete_many(["a/b", "a/c"]) == {}
    assert counted(tallies, "put") == (1, 0, 5)
    assert counted(tallies, "get") == (3, 0, 6)  # a missing object is no failure
    assert counted(tallies, "stat") == (2, 0, 0)
    assert counted(tallies, "copy") == (1, 0, 0)
    assert counted(tallies, "list_stale")[:2] == (1, 0)
    assert counted(tallies, "delete_many")[:2] == (1, 0)
    storage.local_path("a/b")  # the sendfile path does no I/O: not tallied
    assert "local_path" not in tallies.tallies


async def test_backend_failures_are_tallied(tmp_path: Path) -> None:
    tallies = StorageTallies()
    driver = await FilesystemStorage(tmp_path / "root").open()
    storage = CheckedStorage(driver, tallies)
    await storage.put("k", chunked(b"x"))
    (tmp_path / "root" / ".incoming").rmdir()  # nowhere left to write a temp file
    with pytest.raises(StorageError):
        await storage.put("k", chunked(b"y"))
    with pytest.raises(StorageError):
        await storage.ping()
    assert counted(tallies, "put")[:2] == (2, 1)
    assert counted(tallies, "ping")[:2] == (1, 1)


async def test_the_service_storage_is_checked_and_its_tallies_are_scraped(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    storage = await open_storage(FilesystemStorageConfig(root=tmp_path / "s"), metrics.storage)
    try:
        assert isinstance(storage, CheckedStorage)
        await storage.put("blobs/x", chunked(b"abc"))
        assert await read(storage, "blobs/x") == b"abc"
    finally:
        await storage.close()
    text = metrics.render().decode()
    assert 'artifactapi_storage_operations_total{operation="put"} 1.0' in text
    assert 'artifactapi_storage_bytes_total{operation="get"} 3.0' in text
    assert 'artifactapi_storage_errors_total{operation="get"} 0.0' in text
    assert 'artifactapi_storage_operation_duration_seconds_count{operation="put"} 1.0' in text
