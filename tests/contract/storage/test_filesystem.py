"""The storage contract on the filesystem driver, and what only it must do."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from app.backends.storage.base import BlobStorage, InvalidKey, ObjectNotFound
from app.backends.storage.filesystem import INCOMING, FilesystemStorage
from tests.contract.storage.suite import StorageContract, chunked, read


async def reopen(root: str) -> BlobStorage:
    return await FilesystemStorage(root).open()


class FilesystemHarness:
    def __init__(self, driver: FilesystemStorage, storage: BlobStorage | None = None) -> None:
        self.driver = driver
        self.storage: BlobStorage = storage if storage is not None else driver

    async def leftovers(self) -> list[str]:
        return sorted(p.name for p in (self.driver.root / INCOMING).iterdir())

    async def unfinished_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.driver.root / INCOMING).iterdir())

    @contextmanager
    def untouched(self) -> Iterator[None]:
        before = sorted(self.driver.root.rglob("*"))
        yield
        assert sorted(self.driver.root.rglob("*")) == before

    @property
    def reopen(self) -> tuple[str, str]:
        return (f"{__name__}:reopen", str(self.driver.root))


@pytest.fixture
async def fs(tmp_path: Path) -> AsyncIterator[FilesystemStorage]:
    store = await FilesystemStorage(tmp_path / "root").open()
    yield store
    await store.close()


class TestFilesystem(StorageContract):
    @pytest.fixture
    def harness(self, fs: FilesystemStorage) -> FilesystemHarness:
        return FilesystemHarness(fs)


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
        assert isinstance((await fs.delete_many([key]))[key], InvalidKey)
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
