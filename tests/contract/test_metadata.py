"""One metadata contract, run unchanged on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from app.backends.metadata import Conflict, MetadataError, MetadataStore, migrations, open_metadata
from app.backends.metadata.base import SqlDriver
from app.backends.metadata.store import FolderEntry

BLOB = "sha256:" + "a" * 64
OTHER_BLOB = "sha256:" + "b" * 64
MISSING_BLOB = "sha256:" + "0" * 64

# Root of the listing fixture, in byte order: upper case before lower, '.' < '/' < '0',
# multi-byte UTF-8 last. "b" is a file, "b/" a folder and "b0" a file right after it.
TREE = ["z", "é", "b0", "b/y/z", "b/x", "b.txt", "b", "a/deep/er/file", "B"]
ROOT_KEYS = ["B", "a/", "b", "b.txt", "b/", "b0", "z", "é"]


class Boom(Exception):
    pass


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[MetadataStore]:
    store = await open_metadata(url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_dsn")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[MetadataStore]:
    async with opened(db_url) as store:
        await store.migrate()
        yield store


async def make_repo(store: MetadataStore, name: str = "files") -> int:
    repos = await store.sync_repositories([(name, "generic", "hosted", {})])
    return repos[name].id


async def put(store: MetadataStore, repo: int, path: str, digest: str = BLOB) -> bool:
    await store.add_blob(digest, 3)
    return await store.put_file(repo, path, digest, 3, "text/plain")


async def all_pages(store: MetadataStore, repo: int, folder: str, limit: int) -> list[str]:
    keys: list[str] = []
    after = ""
    while page := await store.list_folder(repo, folder, limit=limit, after=after):
        assert len(page) <= limit
        keys += [entry.key for entry in page]
        after = page[-1].key
    return keys


async def insert_blob(db: SqlDriver, digest: str) -> None:
    await db.execute("INSERT INTO blobs (digest, size, created_at) VALUES ($1, 1, 0)", digest)


async def versions(store: MetadataStore) -> list[int]:
    return [r["version"] for r in await store.db.fetch("SELECT version FROM schema_migrations")]


# -- migrations ----------------------------------------------------------------


# Every version shipped, in order; both dialects ship the same ones.
ALL_VERSIONS = [version for version, _ in migrations.load("sqlite")]


def test_both_dialects_ship_the_same_versions() -> None:
    assert ALL_VERSIONS[:1] == [1]
    assert [version for version, _ in migrations.load("postgres")] == ALL_VERSIONS


async def test_migrate_applies_every_version_then_is_a_no_op(db_url: str) -> None:
    async with opened(db_url) as store:
        assert await store.migrate() == ALL_VERSIONS
        assert await store.migrate() == []
    async with opened(db_url) as store:
        assert await store.migrate() == []
        assert sorted(await versions(store)) == ALL_VERSIONS


async def test_replicas_migrating_at_once_apply_the_schema_once(db_url: str) -> None:
    async with opened(db_url) as first, opened(db_url) as second:
        results = await asyncio.gather(first.migrate(), second.migrate())
        assert sorted(results) == [[], ALL_VERSIONS]
        assert sorted(await versions(first)) == ALL_VERSIONS
        assert await make_repo(second) == await make_repo(first)


# -- repositories and blobs ----------------------------------------------------


async def test_sync_repositories_inserts_then_updates_keeping_ids(store: MetadataStore) -> None:
    first = await store.sync_repositories(
        [
            ("pypi", "pypi", "proxy", {"upstream": "https://pypi.org"}),
            ("raw", "generic", "hosted", {}),
        ]
    )
    assert first["pypi"].options == {"upstream": "https://pypi.org"}
    assert first["pypi"].id != first["raw"].id

    second = await store.sync_repositories([("pypi", "npm", "hosted", {"n": 1})])
    assert second["pypi"].id == first["pypi"].id
    assert (second["pypi"].format, second["pypi"].kind, second["pypi"].options) == (
        "npm",
        "hosted",
        {"n": 1},
    )
    assert second["raw"] == first["raw"]  # dropped from the configuration, row kept


async def test_blobs_are_recorded_once(store: MetadataStore) -> None:
    assert await store.blob_totals() == (0, 0)
    assert await store.add_blob(BLOB, 10) is True
    assert await store.add_blob(BLOB, 10) is True  # recorded already: touched
    assert await store.add_blob(OTHER_BLOB, 5) is True

    blob = await store.get_blob(BLOB)
    assert blob is not None and (blob.digest, blob.size) == (BLOB, 10)
    assert await store.get_blob(MISSING_BLOB) is None
    assert await store.blob_totals() == (2, 15)


async def test_blob_lifecycle_marks_only_untouched_unreferenced_blobs(
    store: MetadataStore,
) -> None:
    """The collector's conditional mark, against touches and references."""
    repo = await make_repo(store)
    old, kept, referenced = BLOB, OTHER_BLOB, "sha256:" + "c" * 64
    for digest in (old, kept, referenced):
        await store.add_blob(digest, 4)
    await store.put_file(repo, "f", referenced, 4, "text/plain")
    cutoff = time.time() + 1  # everything so far is "old"
    orphans = await store.orphaned_blobs(cutoff, ())
    assert [b.digest for b in orphans] == [old, kept]
    touched = await store.touch_blob(kept)
    assert touched is not None and touched.state == "live"
    await store.db.execute("UPDATE blobs SET touched_at = $2 WHERE digest = $1", kept, cutoff + 5)

    marked, upper = await store.mark_orphans(cutoff, (), "", 1000, now=123.0)
    assert [(b.digest, b.state, b.marked_at) for b in marked] == [(old, "deleting", 123.0)]
    assert upper is None  # fewer than a batch: the end
    # A marked blob is no writer's: touching or adding reports it, changes nothing.
    row = await store.touch_blob(old)
    assert row is not None and row.state == "deleting"
    assert await store.add_blob(old, 4) is False
    assert await store.orphaned_blobs(cutoff, ()) == []  # marked ones are not candidates

    [again] = await store.remark_blobs("", 10, now=456.0)
    assert again.marked_at == 456.0
    await store.drop_blobs([marked[0]])  # marked as another run left it: kept
    assert await store.get_blob(old) is not None
    await store.drop_blobs([again])
    assert await store.get_blob(old) is None
    assert await store.get_blob(referenced) is not None


async def test_mark_orphans_pages_by_digest(store: MetadataStore) -> None:
    digests = [f"sha256:{i:064x}" for i in range(7)]
    for digest in digests:
        await store.add_blob(digest, 1)
    cutoff = time.time() + 1
    seen, after = [], ""
    while True:
        marked, upper = await store.mark_orphans(cutoff, (), after, 3, now=1.0)
        seen += [b.digest for b in marked]
        if upper is None:
            break
        assert len(marked) == 3 and upper == marked[-1].digest
        after = upper
    assert seen == digests


async def test_a_takeover_reclaims_only_the_mark_it_saw(store: MetadataStore) -> None:
    await store.add_blob(BLOB, 1)
    await store.mark_orphans(time.time() + 1, (), "", 10, now=10.0)
    assert await store.reclaim_blob(BLOB, 9.0) is False
    assert await store.reclaim_blob(BLOB, 10.0) is True
    row = await store.get_blob(BLOB)
    assert row is not None and (row.state, row.marked_at) == ("live", None)


async def test_executemany_runs_each_row_and_joins_transactions(store: MetadataStore) -> None:
    digests = [f"sha256:{i:064x}" for i in range(5)]
    await store.db.executemany(
        "INSERT INTO blobs (digest, size, created_at, touched_at) VALUES ($1, $2, 0, 0)",
        [(d, i) for i, d in enumerate(digests)],
    )
    assert await store.blob_totals() == (5, 10)
    with pytest.raises(Boom):
        async with store.db.transaction() as tx:
            await tx.executemany("DELETE FROM blobs WHERE digest = $1", [(d,) for d in digests])
            raise Boom
    assert await store.blob_totals() == (5, 10)  # rolled back with the transaction
    with pytest.raises(Conflict):
        await store.db.executemany(
            "INSERT INTO blobs (digest, size, created_at) VALUES ($1, 1, 0)", [(digests[0],)]
        )


async def test_leases_have_one_holder_until_they_expire(store: MetadataStore) -> None:
    assert await store.acquire_lease("gc", "a", ttl=60) is True
    assert await store.acquire_lease("gc", "b", ttl=60) is False
    assert await store.acquire_lease("gc", "a", ttl=60) is True  # renewal
    assert await store.lease_holder("gc") == "a"
    await store.release_lease("gc", "b")  # not b's to release
    assert await store.lease_holder("gc") == "a"
    await store.release_lease("gc", "a")
    assert await store.lease_holder("gc") is None
    assert await store.acquire_lease("gc", "b", ttl=-1) is True  # already expired
    assert await store.lease_holder("gc") is None
    assert await store.acquire_lease("gc", "a", ttl=60) is True


async def test_gc_reports_keep_the_last_hundred(store: MetadataStore) -> None:
    assert await store.last_gc_run() is None
    for i in range(103):
        await store.save_gc_run(i, i + 1, False, {"run": i})
    assert await store.last_gc_run() == {"run": 102}
    assert await store.db.fetchval("SELECT COUNT(*) FROM gc_runs") == 100


# -- files ---------------------------------------------------------------------


async def test_put_file_creates_then_replaces(store: MetadataStore) -> None:
    repo = await make_repo(store)
    assert await put(store, repo, "dir/a.txt") is True
    created = await store.get_file(repo, "dir/a.txt")
    assert created is not None and created.blob_digest == BLOB

    await store.add_blob(OTHER_BLOB, 7)
    assert await store.put_file(repo, "dir/a.txt", OTHER_BLOB, 7, "application/json") is False
    replaced = await store.get_file(repo, "dir/a.txt")
    assert replaced is not None
    assert (replaced.blob_digest, replaced.size, replaced.content_type) == (
        OTHER_BLOB,
        7,
        "application/json",
    )
    assert replaced.created_at == created.created_at
    assert replaced.updated_at >= created.updated_at
    assert await store.get_file(repo, "dir") is None
    assert await store.get_file(await make_repo(store, "other"), "dir/a.txt") is None


async def test_delete_file(store: MetadataStore) -> None:
    repo = await make_repo(store)
    await put(store, repo, "a.txt")
    assert await store.delete_file(repo, "a.txt") is True
    assert await store.delete_file(repo, "a.txt") is False
    assert await store.get_file(repo, "a.txt") is None


async def test_constraint_violations_raise_conflict(store: MetadataStore) -> None:
    repo = await make_repo(store)
    with pytest.raises(Conflict):
        await store.put_file(repo, "new.txt", MISSING_BLOB, 1, "text/plain")
    await put(store, repo, "old.txt")
    with pytest.raises(Conflict):
        await store.put_file(repo, "old.txt", MISSING_BLOB, 1, "text/plain")
    with pytest.raises(Conflict):
        await store.put_file(repo + 1000, "x.txt", BLOB, 1, "text/plain")
    with pytest.raises(Conflict):
        await insert_blob(store.db, BLOB)

    # Nothing half-written, and the store still works after the failed transactions.
    assert await store.get_file(repo, "new.txt") is None
    old = await store.get_file(repo, "old.txt")
    assert old is not None and old.blob_digest == BLOB
    assert await put(store, repo, "new.txt") is True


async def test_database_errors_are_metadata_errors(db_url: str, store: MetadataStore) -> None:
    with pytest.raises(MetadataError) as raised:
        await store.db.fetch("SELECT nothing FROM nowhere")
    assert not isinstance(raised.value, Conflict)

    async with opened(db_url) as closed:
        pass
    with pytest.raises(MetadataError):
        await closed.ping()


# -- listing -------------------------------------------------------------------


async def test_list_folder_lists_direct_children_in_byte_order(store: MetadataStore) -> None:
    repo = await make_repo(store)
    for path in TREE:
        await put(store, repo, path)

    root = await store.list_folder(repo, "")
    assert [e.key for e in root] == ROOT_KEYS
    for entry in root:
        assert entry.folder == entry.key.endswith("/")
        assert entry.folder or (entry.file is not None and entry.file.path == entry.name)

    assert await store.list_folder(repo, "b/") == [
        FolderEntry("x", folder=False, file=await store.get_file(repo, "b/x")),
        FolderEntry("y", folder=True),
    ]
    assert [e.key for e in await store.list_folder(repo, "a/deep/")] == ["er/"]
    assert await store.list_folder(repo, "nothing/") == []
    assert await store.list_folder(await make_repo(store, "empty"), "") == []


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 1000])
async def test_list_folder_pages_return_every_child_once(store: MetadataStore, limit: int) -> None:
    repo = await make_repo(store)
    for path in TREE:
        await put(store, repo, path)
    assert await all_pages(store, repo, "", limit) == ROOT_KEYS
    assert await all_pages(store, repo, "b/", limit) == ["x", "y/"]


async def test_a_crowded_sub_folder_costs_one_entry(
    store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = await make_repo(store)
    await store.add_blob(BLOB, 3)
    async with store.db.transaction() as tx:
        for i in range(300):
            await tx.execute(
                "INSERT INTO files (repository_id, path, blob_digest, size, content_type,"
                " created_at, updated_at) VALUES ($1, $2, $3, 3, 'text/plain', 0, 0)",
                repo,
                f"top/crowded/{i:03}",
                BLOB,
            )
    for path in ["top/a", "top/z"]:
        await put(store, repo, path)

    queries = 0
    fetch = store.db.fetch

    async def counting_fetch(sql: str, *args: object) -> list:
        nonlocal queries
        queries += 1
        return await fetch(sql, *args)

    monkeypatch.setattr(store.db, "fetch", counting_fetch)
    assert [e.key for e in await store.list_folder(repo, "top/")] == ["a", "crowded/", "z"]
    assert queries <= 3  # skips the 300 files instead of reading them
    assert [e.key for e in await store.list_folder(repo, "top/", limit=2)] == ["a", "crowded/"]
    assert await all_pages(store, repo, "top/", 1) == ["a", "crowded/", "z"]
    assert len(await store.list_folder(repo, "top/crowded/")) == 300


async def test_has_folder(store: MetadataStore) -> None:
    repo = await make_repo(store)
    assert await store.has_folder(repo, "") is False
    await put(store, repo, "b/x/y")
    await put(store, repo, "b0")
    assert await store.has_folder(repo, "") is True
    assert await store.has_folder(repo, "b/") is True
    assert await store.has_folder(repo, "b/x/") is True
    assert await store.has_folder(repo, "b/y/") is False
    assert await store.has_folder(repo, "B/") is False
    assert await store.has_folder(repo, "b0/") is False


# -- the driver ----------------------------------------------------------------


async def test_transaction_rolls_back_on_exception(store: MetadataStore) -> None:
    with pytest.raises(Boom):
        async with store.db.transaction() as tx:
            await insert_blob(tx, BLOB)
            assert await tx.fetchval("SELECT COUNT(*) FROM blobs") == 1
            raise Boom
    assert await store.get_blob(BLOB) is None

    async with store.db.transaction() as tx:
        await insert_blob(tx, BLOB)
    assert await store.get_blob(BLOB) is not None


async def test_nested_transaction_rolls_back_alone(store: MetadataStore) -> None:
    async with asyncio.timeout(5), store.db.transaction() as tx:
        await insert_blob(tx, BLOB)
        with pytest.raises(Boom):
            async with tx.transaction() as inner:
                await insert_blob(inner, OTHER_BLOB)
                raise Boom
        async with tx.transaction() as inner:
            await insert_blob(inner, MISSING_BLOB)
    assert await store.blob_totals() == (2, 2)
    assert await store.get_blob(OTHER_BLOB) is None


async def test_cancelled_transaction_rolls_back(store: MetadataStore) -> None:
    inside = asyncio.Event()

    async def stuck() -> None:
        async with store.db.transaction() as tx:
            await insert_blob(tx, BLOB)
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.get_blob(BLOB) is None
    assert await store.add_blob(BLOB, 1) is True


async def test_statements_stay_out_of_other_coroutines_transactions(store: MetadataStore) -> None:
    inside = asyncio.Event()

    async def doomed() -> None:
        async with store.db.transaction() as tx:
            await insert_blob(tx, BLOB)
            inside.set()
            # Held open a while on purpose, for the other statement to run meanwhile.
            await asyncio.sleep(0.05)
            raise Boom

    task = asyncio.create_task(doomed())
    await inside.wait()
    assert await store.add_blob(OTHER_BLOB, 1) is True
    with pytest.raises(Boom):
        await task
    assert await store.get_blob(BLOB) is None
    assert await store.get_blob(OTHER_BLOB) is not None


async def test_concurrent_put_file_calls_all_land(store: MetadataStore) -> None:
    repo = await make_repo(store)
    paths = [f"f{i:02}" for i in range(50)]
    created = await asyncio.gather(*(put(store, repo, p) for p in paths))
    assert created == [True] * 50
    assert [e.name for e in await store.list_folder(repo, "")] == paths


async def test_concurrent_puts_of_one_new_path_create_it_once(store: MetadataStore) -> None:
    repo = await make_repo(store)
    await store.add_blob(BLOB, 3)
    await asyncio.gather(*(store.db.fetchval("SELECT 1") for _ in range(10)))  # warm a pool
    created = await asyncio.gather(
        *(store.put_file(repo, "same", BLOB, 3, "text/plain") for _ in range(10))
    )
    assert sorted(created) == [False] * 9 + [True]


async def test_iterate_streams_every_row_in_order(store: MetadataStore) -> None:
    inserted = await store.db.execute(
        "INSERT INTO blobs (digest, size, created_at)"
        " WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)"
        " SELECT 'd' || i, i, 0 FROM n"
    )
    assert inserted == 2500
    assert await store.db.fetchval("SELECT COUNT(*) FROM blobs") == 2500

    sizes = [r["size"] async for r in store.db.iterate("SELECT size FROM blobs ORDER BY size")]
    assert sizes == list(range(1, 2501))
    above = store.db.iterate("SELECT size FROM blobs WHERE size > $1 ORDER BY size", 2000, batch=7)
    assert [r["size"] async for r in above] == list(range(2001, 2501))

    assert await store.db.execute("DELETE FROM blobs WHERE size <= $1", 100) == 100
    assert await store.db.execute("UPDATE blobs SET size = 0 WHERE size < 0") == 0
    assert await store.db.fetchval("SELECT size FROM blobs WHERE digest = $1", "none") is None


async def test_text_no_database_holds_is_a_metadata_error(store: MetadataStore) -> None:
    # The middleware refuses such text first; a driver that meets it all the same
    # fails as a database, never with an error nothing translates.
    with pytest.raises(MetadataError):  # a lone surrogate encodes in neither
        await store.db.fetchval("SELECT $1", "\ud800")
    try:  # NUL: SQLite holds it, PostgreSQL's text cannot
        assert await store.db.fetchval("SELECT $1", "a\x00b") == "a\x00b"
    except MetadataError:
        assert store.db.dialect == "postgres"


async def test_a_connection_closed_underneath_is_a_metadata_error(sqlite_url: str) -> None:
    async with opened(sqlite_url) as store:
        await store.db.conn.close()  # type: ignore[attr-defined]  # aiosqlite's own connection
        with pytest.raises(MetadataError):
            await store.db.fetchval("SELECT 1")
