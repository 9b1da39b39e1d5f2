"""The generic format's records (files and the folders their paths make), in both shapes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from app.backends.metadata import BlobsGone, Conflict, MetadataStore, open_metadata
from app.config import Config
from app.formats import migrations
from app.formats.generic import GenericFormat
from app.formats.generic.records import FileRecords, FolderEntry

BLOB = "sha256:" + "a" * 64
OTHER_BLOB = "sha256:" + "b" * 64
MISSING_BLOB = "sha256:" + "0" * 64

# Root of the listing fixture, in byte order: upper case before lower, '.' < '/' < '0',
# multi-byte UTF-8 last. "b" is a file, "b/" a folder and "b0" a file right after it.
TREE = ["z", "é", "b0", "b/y/z", "b/x", "b.txt", "b", "a/deep/er/file", "B"]
ROOT_KEYS = ["B", "a/", "b", "b.txt", "b/", "b0", "z", "é"]


@pytest.fixture
async def metadata(config: Config) -> AsyncIterator[MetadataStore]:
    store = await open_metadata(config.database.url)
    try:
        await store.migrate(migrations([GenericFormat()]))
        yield store
    finally:
        await store.close()


@pytest.fixture
def files(metadata: MetadataStore) -> FileRecords:
    return FileRecords(metadata.db)


async def make_repo(metadata: MetadataStore, name: str = "files") -> int:
    repos = await metadata.sync_repositories([(name, "generic", "local", {})])
    return repos[name].id


@pytest.fixture
async def repo(metadata: MetadataStore) -> int:
    return await make_repo(metadata)


async def put(files: FileRecords, repo: int, path: str, digest: str = BLOB) -> bool:
    await MetadataStore(files.db).add_blob(digest, 3)
    return await files.put_file(repo, path, digest, 3, "text/plain")


async def all_pages(files: FileRecords, repo: int, folder: str, limit: int) -> list[str]:
    keys: list[str] = []
    after = ""
    while page := await files.list_folder(repo, folder, limit=limit, after=after):
        assert len(page) <= limit
        keys += [entry.key for entry in page]
        after = page[-1].key
    return keys


async def test_put_file_creates_then_replaces(
    metadata: MetadataStore, files: FileRecords, repo: int
) -> None:
    assert await put(files, repo, "dir/a.txt") is True
    created = await files.get_file(repo, "dir/a.txt")
    assert created is not None and created.blob_digest == BLOB

    await metadata.add_blob(OTHER_BLOB, 7)
    assert await files.put_file(repo, "dir/a.txt", OTHER_BLOB, 7, "application/json") is False
    replaced = await files.get_file(repo, "dir/a.txt")
    assert replaced is not None
    assert (replaced.blob_digest, replaced.size, replaced.content_type) == (
        OTHER_BLOB,
        7,
        "application/json",
    )
    assert replaced.created_at == created.created_at
    assert replaced.updated_at >= created.updated_at
    assert await files.get_file(repo, "dir") is None
    assert await files.get_file(await make_repo(metadata, "other"), "dir/a.txt") is None


async def test_delete_file(files: FileRecords, repo: int) -> None:
    await put(files, repo, "a.txt")
    assert await files.delete_file(repo, "a.txt") is True
    assert await files.delete_file(repo, "a.txt") is False
    assert await files.get_file(repo, "a.txt") is None


async def test_a_file_needs_a_live_blob_and_a_repository(
    metadata: MetadataStore, files: FileRecords, repo: int
) -> None:
    with pytest.raises(BlobsGone):
        await files.put_file(repo, "new.txt", MISSING_BLOB, 1, "text/plain")
    await put(files, repo, "old.txt")
    with pytest.raises(BlobsGone):
        await files.put_file(repo, "old.txt", MISSING_BLOB, 1, "text/plain")
    with pytest.raises(Conflict):
        await files.put_file(repo + 1000, "x.txt", BLOB, 1, "text/plain")

    # Nothing half-written, and the records still work after the failed transactions.
    assert await files.get_file(repo, "new.txt") is None
    old = await files.get_file(repo, "old.txt")
    assert old is not None and old.blob_digest == BLOB
    assert await put(files, repo, "new.txt") is True


async def test_the_collector_keeps_what_a_file_points_at(
    metadata: MetadataStore, files: FileRecords, repo: int
) -> None:
    await put(files, repo, "kept", BLOB)
    await metadata.add_blob(OTHER_BLOB, 3)
    cutoff = time.time() + 1
    orphans = await metadata.orphaned_blobs(cutoff, GenericFormat.blob_references)
    assert [b.digest for b in orphans] == [OTHER_BLOB]
    await files.delete_file(repo, "kept")
    orphans = await metadata.orphaned_blobs(cutoff, GenericFormat.blob_references)
    assert [b.digest for b in orphans] == [BLOB, OTHER_BLOB]


async def test_list_folder_lists_direct_children_in_byte_order(
    metadata: MetadataStore, files: FileRecords, repo: int
) -> None:
    for path in TREE:
        await put(files, repo, path)

    root = await files.list_folder(repo, "")
    assert [e.key for e in root] == ROOT_KEYS
    for entry in root:
        assert entry.folder == entry.key.endswith("/")
        assert entry.folder or (entry.file is not None and entry.file.path == entry.name)

    assert await files.list_folder(repo, "b/") == [
        FolderEntry("x", folder=False, file=await files.get_file(repo, "b/x")),
        FolderEntry("y", folder=True),
    ]
    assert [e.key for e in await files.list_folder(repo, "a/deep/")] == ["er/"]
    assert await files.list_folder(repo, "nothing/") == []
    assert await files.list_folder(await make_repo(metadata, "empty"), "") == []


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 1000])
async def test_list_folder_pages_return_every_child_once(
    files: FileRecords, repo: int, limit: int
) -> None:
    for path in TREE:
        await put(files, repo, path)
    assert await all_pages(files, repo, "", limit) == ROOT_KEYS
    assert await all_pages(files, repo, "b/", limit) == ["x", "y/"]


async def test_a_crowded_sub_folder_costs_one_entry(
    files: FileRecords, repo: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    await MetadataStore(files.db).add_blob(BLOB, 3)
    async with files.db.transaction() as tx:
        for i in range(300):
            await tx.execute(
                "INSERT INTO files (repository_id, path, blob_digest, size, content_type,"
                " created_at, updated_at) VALUES ($1, $2, $3, 3, 'text/plain', 0, 0)",
                repo,
                f"top/crowded/{i:03}",
                BLOB,
            )
    for path in ["top/a", "top/z"]:
        await put(files, repo, path)

    queries = 0
    fetch = files.db.fetch

    async def counting_fetch(sql: str, *args: object) -> list:
        nonlocal queries
        queries += 1
        return await fetch(sql, *args)

    monkeypatch.setattr(files.db, "fetch", counting_fetch)
    assert [e.key for e in await files.list_folder(repo, "top/")] == ["a", "crowded/", "z"]
    assert queries <= 3  # skips the 300 files instead of reading them
    assert [e.key for e in await files.list_folder(repo, "top/", limit=2)] == ["a", "crowded/"]
    assert await all_pages(files, repo, "top/", 1) == ["a", "crowded/", "z"]
    assert len(await files.list_folder(repo, "top/crowded/")) == 300


async def test_has_folder(files: FileRecords, repo: int) -> None:
    assert await files.has_folder(repo, "") is False
    await put(files, repo, "b/x/y")
    await put(files, repo, "b0")
    assert await files.has_folder(repo, "") is True
    assert await files.has_folder(repo, "b/") is True
    assert await files.has_folder(repo, "b/x/") is True
    assert await files.has_folder(repo, "b/y/") is False
    assert await files.has_folder(repo, "B/") is False
    assert await files.has_folder(repo, "b0/") is False


async def test_concurrent_put_file_calls_all_land(files: FileRecords, repo: int) -> None:
    paths = [f"f{i:02}" for i in range(50)]
    created = await asyncio.gather(*(put(files, repo, p) for p in paths))
    assert created == [True] * 50
    assert [e.name for e in await files.list_folder(repo, "")] == paths


async def test_concurrent_puts_of_one_new_path_create_it_once(
    files: FileRecords, repo: int
) -> None:
    await MetadataStore(files.db).add_blob(BLOB, 3)
    await asyncio.gather(*(files.db.fetchval("SELECT 1") for _ in range(10)))  # warm a pool
    created = await asyncio.gather(
        *(files.put_file(repo, "same", BLOB, 3, "text/plain") for _ in range(10))
    )
    assert sorted(created) == [False] * 9 + [True]
