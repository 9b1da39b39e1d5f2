"""The metadata contract: what every database under the metadata store must do.

One suite for every driver: a driver's factory file (``test_metadata_<driver>.py``)
subclasses :class:`MetadataContract`, provides the ``db_url`` fixture and declares
its capabilities, and nothing else. The core's tables are tested here; the formats'
records run on the same drivers in their own tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

import pytest

from app.backends.metadata import (
    BlobsGone,
    Conflict,
    MetadataError,
    MetadataStore,
    Records,
    Track,
    migrator,
    open_metadata,
)
from app.backends.metadata.base import SqlDriver
from app.formats import available_formats, migrations

BLOB = "sha256:" + "a" * 64
OTHER_BLOB = "sha256:" + "b" * 64
MISSING_BLOB = "sha256:" + "0" * 64

# A format's track of the contract's own: the ``held`` table, rows naming a blob.
HELD = Track("held", Path(__file__).parent / "held_track")
HELD_REFERENCES = ("EXISTS (SELECT 1 FROM held h WHERE h.blob_digest = b.digest)",)
# The real formats' tracks, which every driver must run as well.
FORMATS = migrations(available_formats().values())


class Boom(Exception):
    pass


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[MetadataStore]:
    store = await open_metadata(url)
    try:
        yield store
    finally:
        await store.close()


async def make_repo(store: MetadataStore, name: str = "files") -> int:
    repos = await store.sync_repositories([(name, "generic", "hosted", {})])
    return repos[name].id


async def hold(store: MetadataStore, repository_id: int, name: str, digest: str) -> None:
    """What a format's writer does: hold the blob, then reference it."""
    async with store.db.transaction() as tx:
        await Records.holding(tx, [digest])
        await tx.execute(
            "INSERT INTO held (repository_id, name, blob_digest) VALUES ($1, $2, $3)",
            repository_id,
            name,
            digest,
        )


async def insert_blob(db: SqlDriver, digest: str) -> None:
    await db.execute("INSERT INTO blobs (digest, size, created_at) VALUES ($1, 1, 0)", digest)


async def recorded(store: MetadataStore) -> list[tuple[str, int]]:
    rows = await store.db.fetch("SELECT track, version FROM schema_versions")
    return sorted((r["track"], r["version"]) for r in rows)


def shipped(tracks: list[Track], dialect: migrator.Dialect = "sqlite") -> list[str]:
    """The labels of every script of the core and ``tracks``, in the order they run."""
    order = [migrator.CORE, *tracks]
    return [s.label for t in order for s in migrator.load(t, dialect)]


def write_track(folder: Path, **scripts: str) -> Track:
    folder.mkdir(exist_ok=True)
    for name, text in scripts.items():
        (folder / f"{name}.sql").write_text(text)
    return Track("extra", folder)


class MetadataContract:
    # Whether the database's text holds NUL (SQLite's does, PostgreSQL's cannot).
    holds_nul: ClassVar[bool]

    @pytest.fixture
    def db_url(self) -> str:
        raise NotImplementedError("a driver's factory provides db_url")

    @pytest.fixture
    async def store(self, db_url: str) -> AsyncIterator[MetadataStore]:
        async with opened(db_url) as store:
            await store.migrate([HELD])
            yield store

    # -- migrations ------------------------------------------------------------

    async def test_migrate_applies_every_script_then_is_a_no_op(self, db_url: str) -> None:
        everything = shipped(FORMATS)
        assert everything[:1] == ["core/0001_initial"]
        async with opened(db_url) as store:
            assert await store.migrate(FORMATS) == everything
            assert await store.migrate(FORMATS) == []
        async with opened(db_url) as store:
            assert await store.migrate(FORMATS) == []
            assert len(await recorded(store)) == len(everything)
            assert {t for t, _ in await recorded(store)} == {"core", *(t.name for t in FORMATS)}

    async def test_replicas_migrating_at_once_apply_the_schema_once(self, db_url: str) -> None:
        async with opened(db_url) as first, opened(db_url) as second:
            results = await asyncio.gather(first.migrate(FORMATS), second.migrate(FORMATS))
            assert sorted(results) == [[], shipped(FORMATS)]
            assert len(await recorded(first)) == len(shipped(FORMATS))
            assert await make_repo(second) == await make_repo(first)

    async def test_a_script_added_to_a_track_later_runs_alone(
        self, db_url: str, tmp_path: Path
    ) -> None:
        first = "CREATE TABLE extra_a (id {{id}}, name {{text_bytewise}} NOT NULL);"
        track = write_track(tmp_path / "extra", **{"0001_a": first})
        async with opened(db_url) as store:
            assert await store.migrate([track]) == [*shipped([]), "extra/0001_a"]
            second = "ALTER TABLE extra_a ADD COLUMN size BIGINT;\n"
            second += "INSERT INTO extra_a (name, size) VALUES ('x', 1);"
            write_track(tmp_path / "extra", **{"0002_b": second})
            assert await store.migrate([track]) == ["extra/0002_b"]
            assert await store.db.fetchval("SELECT size FROM extra_a WHERE name = 'x'") == 1
            assert ("extra", 2) in await recorded(store)

    async def test_a_failing_script_leaves_nothing_and_stops_the_track(
        self, db_url: str, tmp_path: Path
    ) -> None:
        track = write_track(
            tmp_path / "extra",
            **{
                "0001_a": "CREATE TABLE extra_a (name TEXT);",
                "0002_b": "CREATE TABLE extra_b (name TEXT);\nINSERT INTO nowhere VALUES (1);",
                "0003_c": "CREATE TABLE extra_c (name TEXT);",
            },
        )
        async with opened(db_url) as store:
            with pytest.raises(MetadataError):
                await store.migrate([track])
            # 0002 is undone whole and 0003 never ran. (What ran before may be kept or
            # undone with it: each script commits alone on PostgreSQL, inside the
            # migration's one write transaction on SQLite; either is run once.)
            for table in ("extra_b", "extra_c"):
                with pytest.raises(MetadataError):
                    await store.db.fetch(f"SELECT * FROM {table}")
            write_track(tmp_path / "extra", **{"0002_b": "CREATE TABLE extra_b (name TEXT);"})
            applied = await store.migrate([track])
            assert applied[-2:] == ["extra/0002_b", "extra/0003_c"]
            assert await store.migrate([track]) == []
            assert len(await recorded(store)) == len(shipped([track]))
            await store.db.execute("INSERT INTO extra_a (name) VALUES ('a')")

    # -- repositories and blobs ------------------------------------------------

    async def test_sync_repositories_inserts_then_updates_keeping_ids(
        self, store: MetadataStore
    ) -> None:
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

    async def test_blobs_are_recorded_once(self, store: MetadataStore) -> None:
        assert await store.blob_totals() == (0, 0)
        assert await store.add_blob(BLOB, 10) is True
        assert await store.add_blob(BLOB, 10) is True  # recorded already: touched
        assert await store.add_blob(OTHER_BLOB, 5) is True

        blob = await store.get_blob(BLOB)
        assert blob is not None and (blob.digest, blob.size) == (BLOB, 10)
        assert await store.get_blob(MISSING_BLOB) is None
        assert await store.blob_totals() == (2, 15)

    async def test_blob_lifecycle_marks_only_untouched_unreferenced_blobs(
        self, store: MetadataStore
    ) -> None:
        """The collector's conditional mark, against touches and a format's references."""
        repo = await make_repo(store)
        old, kept, referenced = BLOB, OTHER_BLOB, "sha256:" + "c" * 64
        for digest in (old, kept, referenced):
            await store.add_blob(digest, 4)
        await hold(store, repo, "f", referenced)
        cutoff = time.time() + 1  # everything so far is "old"
        orphans = await store.orphaned_blobs(cutoff, HELD_REFERENCES)
        assert [b.digest for b in orphans] == [old, kept]
        assert len(await store.orphaned_blobs(cutoff, ())) == 3  # a format's rows, unknown
        touched = await store.touch_blob(kept)
        assert touched is not None and touched.state == "live"
        await store.db.execute(
            "UPDATE blobs SET touched_at = $2 WHERE digest = $1", kept, cutoff + 5
        )

        marked, upper = await store.mark_orphans(cutoff, HELD_REFERENCES, "", 1000, now=123.0)
        assert [(b.digest, b.state, b.marked_at) for b in marked] == [(old, "deleting", 123.0)]
        assert upper is None  # fewer than a batch: the end
        # A marked blob is no writer's: touching or adding reports it, changes nothing.
        row = await store.touch_blob(old)
        assert row is not None and row.state == "deleting"
        assert await store.add_blob(old, 4) is False
        assert await store.orphaned_blobs(cutoff, HELD_REFERENCES) == []  # marked: no candidate

        [again] = await store.remark_blobs("", 10, now=456.0)
        assert again.marked_at == 456.0
        await store.drop_blobs([marked[0]])  # marked as another run left it: kept
        assert await store.get_blob(old) is not None
        await store.drop_blobs([again])
        assert await store.get_blob(old) is None
        assert await store.get_blob(referenced) is not None

    async def test_a_marked_blob_referenced_after_all_is_taken_back(
        self, store: MetadataStore
    ) -> None:
        repo = await make_repo(store)
        await store.add_blob(BLOB, 1)
        [marked], _ = await store.mark_orphans(time.time() + 1, HELD_REFERENCES, "", 10, now=1.0)
        # A reference an older version let in under the mark: found, never dropped.
        await store.db.execute(
            "INSERT INTO held (repository_id, name, blob_digest) VALUES ($1, 'late', $2)",
            repo,
            BLOB,
        )
        assert await store.referenced([marked], HELD_REFERENCES) == {BLOB}
        assert await store.drop_blobs([marked], ()) == [marked]  # kept, as missing
        row = await store.get_blob(BLOB)
        assert row is not None and row.state == "missing"
        assert await store.add_blob(BLOB, 1) is True  # written again: live
        row = await store.get_blob(BLOB)
        assert row is not None and row.state == "live"

    async def test_dropping_a_blob_runs_the_statements_that_unlink_it(
        self, store: MetadataStore
    ) -> None:
        repo = await make_repo(store)
        await store.add_blob(BLOB, 1)
        await hold(store, repo, "named", BLOB)
        [marked], _ = await store.mark_orphans(time.time() + 1, (), "", 10, now=1.0)
        unlink = ("DELETE FROM held WHERE blob_digest = $1",)
        assert await store.drop_blobs([marked], unlink) == []
        assert await store.get_blob(BLOB) is None
        assert await store.db.fetchval("SELECT COUNT(*) FROM held") == 0

    async def test_holds_refuse_absent_and_marked_blobs(self, store: MetadataStore) -> None:
        repo = await make_repo(store)
        await store.add_blob(BLOB, 1)
        await store.add_blob(OTHER_BLOB, 1)
        await store.db.execute(  # as a collector marks it
            "UPDATE blobs SET state = 'deleting', marked_at = 1 WHERE digest = $1", OTHER_BLOB
        )
        with pytest.raises(BlobsGone) as gone:
            await hold(store, repo, "x", OTHER_BLOB)
        assert gone.value.digests == {OTHER_BLOB}
        with pytest.raises(BlobsGone) as gone:
            await hold(store, repo, "y", MISSING_BLOB)
        assert gone.value.digests == {MISSING_BLOB}
        async with store.db.transaction() as tx:
            found = await Records.share_locked(
                tx,
                "SELECT digest FROM blobs WHERE size = $1",
                (1,),
                [OTHER_BLOB, MISSING_BLOB, BLOB],
            )
        assert found == {BLOB, OTHER_BLOB}
        await hold(store, repo, "z", BLOB)
        assert await store.db.fetchval("SELECT COUNT(*) FROM held") == 1  # only z

    async def test_mark_orphans_pages_by_digest(self, store: MetadataStore) -> None:
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

    async def test_a_takeover_reclaims_only_the_mark_it_saw(self, store: MetadataStore) -> None:
        await store.add_blob(BLOB, 1)
        await store.mark_orphans(time.time() + 1, (), "", 10, now=10.0)
        assert await store.reclaim_blob(BLOB, 9.0) is False
        assert await store.reclaim_blob(BLOB, 10.0) is True
        row = await store.get_blob(BLOB)
        assert row is not None and (row.state, row.marked_at) == ("live", None)

    async def test_a_lost_blob_is_missing_until_written_again(self, store: MetadataStore) -> None:
        await store.add_blob(BLOB, 1)
        await store.lose_blob(BLOB)
        row = await store.get_blob(BLOB)
        assert row is not None and row.state == "missing"
        assert await store.add_blob(BLOB, 1) is True
        row = await store.get_blob(BLOB)
        assert row is not None and row.state == "live"

    async def test_leases_have_one_holder_until_they_expire(self, store: MetadataStore) -> None:
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

    async def test_gc_reports_keep_the_last_hundred(self, store: MetadataStore) -> None:
        assert await store.last_gc_run() is None
        for i in range(103):
            await store.save_gc_run(i, i + 1, False, {"run": i})
        assert await store.last_gc_run() == {"run": 102}
        assert await store.db.fetchval("SELECT COUNT(*) FROM gc_runs") == 100

    async def test_constraint_violations_raise_conflict(self, store: MetadataStore) -> None:
        repo = await make_repo(store)
        await store.add_blob(BLOB, 1)
        with pytest.raises(Conflict):  # the blob is absent
            await store.db.execute(
                "INSERT INTO held (repository_id, name, blob_digest) VALUES ($1, 'a', $2)",
                repo,
                MISSING_BLOB,
            )
        with pytest.raises(Conflict):  # the repository is absent
            await hold(store, repo + 1000, "b", BLOB)
        await hold(store, repo, "c", BLOB)
        with pytest.raises(Conflict):  # unique
            await hold(store, repo, "c", BLOB)
        with pytest.raises(Conflict):
            await insert_blob(store.db, BLOB)
        # Nothing half-written, and the store still works after the failed transactions.
        assert await store.db.fetchval("SELECT COUNT(*) FROM held") == 1
        await hold(store, repo, "d", BLOB)

    async def test_database_errors_are_metadata_errors(
        self, db_url: str, store: MetadataStore
    ) -> None:
        with pytest.raises(MetadataError) as raised:
            await store.db.fetch("SELECT nothing FROM nowhere")
        assert not isinstance(raised.value, Conflict)

        async with opened(db_url) as closed:
            pass
        with pytest.raises(MetadataError):
            await closed.ping()

    # -- the driver --------------------------------------------------------------

    async def test_one_of_takes_a_long_list_as_one_parameter(self, store: MetadataStore) -> None:
        digests = [f"sha256:{i:064x}" for i in range(20_000)]
        for digest in digests[::5000]:
            await store.add_blob(digest, 1)
        records = Records(store.db)
        rows = await store.db.fetch(
            f"SELECT digest FROM blobs WHERE digest {records.one_of('$1')} ORDER BY digest",
            records.as_list(digests),
        )
        assert [r["digest"] for r in rows] == digests[::5000]

    async def test_bytewise_orders_computed_text_by_bytes(self, store: MetadataStore) -> None:
        for name in ["b", "B", "é", "a/x", "a0"]:
            await make_repo(store, name)
        records = Records(store.db)
        rows = await store.db.fetch(
            f"SELECT (name || '') {records.bytewise()} AS n FROM repositories ORDER BY n"
        )
        assert [r["n"] for r in rows] == ["B", "a/x", "a0", "b", "é"]

    async def test_executemany_runs_each_row_and_joins_transactions(
        self, store: MetadataStore
    ) -> None:
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

    async def test_transaction_rolls_back_on_exception(self, store: MetadataStore) -> None:
        with pytest.raises(Boom):
            async with store.db.transaction() as tx:
                await insert_blob(tx, BLOB)
                assert await tx.fetchval("SELECT COUNT(*) FROM blobs") == 1
                raise Boom
        assert await store.get_blob(BLOB) is None

        async with store.db.transaction() as tx:
            await insert_blob(tx, BLOB)
        assert await store.get_blob(BLOB) is not None

    async def test_nested_transaction_rolls_back_alone(self, store: MetadataStore) -> None:
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

    async def test_cancelled_transaction_rolls_back(self, store: MetadataStore) -> None:
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

    async def test_statements_stay_out_of_other_coroutines_transactions(
        self, store: MetadataStore
    ) -> None:
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

    async def test_concurrent_writers_all_land(self, store: MetadataStore) -> None:
        repo = await make_repo(store)
        await store.add_blob(BLOB, 3)
        await asyncio.gather(*(store.db.fetchval("SELECT 1") for _ in range(10)))  # warm a pool
        names = [f"f{i:02}" for i in range(50)]
        await asyncio.gather(*(hold(store, repo, n, BLOB) for n in names))
        rows = await store.db.fetch("SELECT name FROM held ORDER BY name")
        assert [r["name"] for r in rows] == names

    async def test_iterate_streams_every_row_in_order(self, store: MetadataStore) -> None:
        inserted = await store.db.execute(
            "INSERT INTO blobs (digest, size, created_at)"
            " WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)"
            " SELECT 'd' || i, i, 0 FROM n"
        )
        assert inserted == 2500
        assert await store.db.fetchval("SELECT COUNT(*) FROM blobs") == 2500

        sizes = [r["size"] async for r in store.db.iterate("SELECT size FROM blobs ORDER BY size")]
        assert sizes == list(range(1, 2501))
        above = store.db.iterate(
            "SELECT size FROM blobs WHERE size > $1 ORDER BY size", 2000, batch=7
        )
        assert [r["size"] async for r in above] == list(range(2001, 2501))

        assert await store.db.execute("DELETE FROM blobs WHERE size <= $1", 100) == 100
        assert await store.db.execute("UPDATE blobs SET size = 0 WHERE size < 0") == 0
        assert await store.db.fetchval("SELECT size FROM blobs WHERE digest = $1", "none") is None

    async def test_text_no_database_holds_is_a_metadata_error(self, store: MetadataStore) -> None:
        # The middleware refuses such text first; a driver that meets it all the same
        # fails as a database, never with an error nothing translates.
        with pytest.raises(MetadataError):  # a lone surrogate encodes in none
            await store.db.fetchval("SELECT $1", "\ud800")
        if self.holds_nul:
            assert await store.db.fetchval("SELECT $1", "a\x00b") == "a\x00b"
        else:
            with pytest.raises(MetadataError):
                await store.db.fetchval("SELECT $1", "a\x00b")
