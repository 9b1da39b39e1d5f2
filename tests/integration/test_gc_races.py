"""The collector against writers that reference blobs while it runs, in both shapes.

The safety argument (docs/architecture.md, "A collection"): a reference that commits
either finds its blobs live and holds them until it commits, so the collector's second
look sees it and skips them, or finds them marked and fails cleanly, so the client
pushes them again. The interleavings are held in place by hooks around the real code
(the content store's ingest, the storage's delete, the driver's transaction), never by
timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app import cas as cas_module
from app import keys
from app.backends.metadata.base import SqlDriver
from app.backends.metadata.store import hold_blobs
from app.backends.storage import BlobStorage, StorageError
from app.layout import blob_key
from app.server import create_app
from collector import Report
from pipelines.sources import once
from tests.integration.conftest import ConfigFactory
from tests.integration.test_gc import REPOS, collector, state, stored
from tests.oci_docs import digest_of, image_index, image_manifest
from tests.waiting import until

NAME = "docker-local/team/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
WAIT = 30.0  # bound on every wait for a hooked step; none is reached when all is well


@pytest.fixture
async def client(aiohttp_client, make_config: ConfigFactory) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(make_config(repositories=REPOS)))


class PausedDelete:
    """The app's storage, but each ``delete_many`` runs ``after`` once its objects are
    gone and before the collector goes on to drop their rows."""

    def __init__(self, inner: BlobStorage, after: Callable[[], Awaitable[None]]) -> None:
        self.inner = inner
        self.after = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def delete_many(self, keys: Sequence[str]) -> dict[str, StorageError]:
        failed = await self.inner.delete_many(keys)
        await self.after()
        return failed


async def upload(client: TestClient, data: bytes, name: str = NAME) -> int:
    response = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest_of(data)}", data=data)
    return response.status


async def put_manifest(client: TestClient, ref: str, body: bytes, name: str = NAME) -> Any:
    return await client.put(
        f"/v2/{name}/manifests/{ref}", data=body, headers={"Content-Type": OCI_MANIFEST}
    )


async def pulls_back(client: TestClient, ref: str, manifest: bytes, blobs: list[bytes]) -> None:
    """The manifest and every blob it names come back whole, byte for byte."""
    response = await client.get(f"/v2/{NAME}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
    assert response.status == 200 and await response.read() == manifest
    for data in blobs:
        response = await client.get(f"/v2/{NAME}/blobs/{digest_of(data)}")
        assert response.status == 200, (digest_of(data), await response.text())
        assert await response.read() == data


async def test_a_reference_after_the_mark_fails_cleanly_and_nothing_wedges(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest PUT claims its blobs, a collection marks them and deletes their
    objects, and only then does the PUT write its row: it must be refused (the client
    pushes again), the collection must finish without an error, and the next push and
    pull must work."""
    app = client.app
    config, layer = b'{"late": 1}', os.urandom(3000)
    manifest = image_manifest(config, [layer])
    for data in (config, layer):
        assert await upload(client, data) == 201

    cas = app[keys.CAS]
    real_ingest = cas.ingest
    claimed, proceed = asyncio.Event(), asyncio.Event()

    async def ingest_after_the_collection(stream: Any, expected: Any = None, **kw: Any) -> Any:
        if str(expected) == digest_of(manifest) and not proceed.is_set():
            claimed.set()  # the PUT has checked and claimed config and layer
            await asyncio.wait_for(proceed.wait(), WAIT)
        return await real_ingest(stream, expected, **kw)

    monkeypatch.setattr(cas, "ingest", ingest_after_the_collection)
    push = asyncio.create_task(put_manifest(client, "v1", manifest))
    await asyncio.wait_for(claimed.wait(), WAIT)

    async def let_the_push_commit() -> None:
        proceed.set()
        await asyncio.wait_for(asyncio.shield(push), WAIT)

    sweep = collector(app)
    sweep.storage = PausedDelete(app[keys.STORAGE], let_the_push_commit)  # type: ignore[assignment]
    report = await sweep.run()
    answer = await push

    assert report.error_count == 0, report.errors
    assert answer.status == 400, await answer.text()
    assert "MANIFEST_BLOB_UNKNOWN" in await answer.text()
    assert await state(app, digest_of(layer)) is None  # collected: nothing referenced it
    assert (await client.get(f"/v2/{NAME}/manifests/v1")).status == 404

    # The client pushes again, and everything comes back; later runs keep it and work.
    for data in (config, layer):
        assert await upload(client, data) == 201
    assert (await put_manifest(client, "v1", manifest)).status == 201
    again = await collector(app).run()
    assert again.error_count == 0, again.errors
    await pulls_back(client, "v1", manifest, [config, layer])
    orphan = os.urandom(500)  # and the collector still collects
    await cas.ingest(once(orphan))
    assert (await collector(app).run()).freed["blobs"].objects == 1
    assert await state(app, digest_of(orphan)) is None


async def test_a_claim_that_outlasts_a_collection_needs_the_link_not_just_the_blob(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest PUT finds its blobs marked and waits the collection out; meanwhile
    the collection drops their rows and this image name's links, and the same bytes
    are pushed to another image name, so live rows are back but not linked here. The
    PUT must be refused (the client pushes the blobs again), not accepted naming
    blobs this image name no longer holds (a pull would answer BLOB_UNKNOWN, and the
    next collection would delete them under the manifest)."""
    app = client.app
    config, layer = b'{"outlasted": 1}', os.urandom(2500)
    first, second = (
        image_manifest(config, [layer]),
        image_manifest(config, [layer], annotations={"n": "2"}),
    )
    for data in (config, layer):
        assert await upload(client, data) == 201
    assert (await put_manifest(client, "v1", first)).status == 201
    assert (await client.delete(f"/v2/{NAME}/manifests/{digest_of(first)}")).status == 202

    cas = app[keys.CAS]
    real_claim = cas.claim
    waiting, proceed = asyncio.Event(), asyncio.Event()

    async def claim_after_the_collection(digest: str) -> Any:
        waiting.set()  # the PUT found a blob marked: it waits for the collector
        await asyncio.wait_for(proceed.wait(), WAIT)
        return await real_claim(digest)

    monkeypatch.setattr(cas, "claim", claim_after_the_collection)
    pushes: list[asyncio.Task[Any]] = []

    async def push_while_marked() -> None:
        if pushes:
            return
        pushes.append(asyncio.create_task(put_manifest(client, "v2", second)))
        await asyncio.wait_for(waiting.wait(), WAIT)

    sweep = collector(app)
    sweep.storage = PausedDelete(app[keys.STORAGE], push_while_marked)  # type: ignore[assignment]
    report = await sweep.run()
    assert report.error_count == 0, report.errors
    for data in (config, layer):
        assert await state(app, digest_of(data)) is None
        assert await upload(client, data, "docker-local/other/app") == 201
    proceed.set()
    answer = await asyncio.wait_for(pushes[0], WAIT)

    assert answer.status == 400, await answer.text()
    assert "MANIFEST_BLOB_UNKNOWN" in await answer.text()
    for data in (config, layer):  # the client pushes them again, and all is kept
        assert await upload(client, data) == 201
    assert (await put_manifest(client, "v2", second)).status == 201
    assert (await collector(app).run()).error_count == 0
    await pulls_back(client, "v2", second, [config, layer])


async def _waiting_on_a_lock(app: web.Application) -> None:
    """Until some session of this database waits on a row lock (PostgreSQL: the
    collector queued behind the writer); SQLite runs one write transaction at a
    time, so there the collector simply runs after the writer."""
    db = app[keys.METADATA].db
    if db.dialect != "postgres":
        return

    async def waiting() -> bool:
        return bool(
            await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        )

    await until(waiting, "waiting for the writer's lock", bound=WAIT)


async def test_a_reference_held_before_the_mark_is_seen_and_its_blobs_kept(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest's transaction holds its blobs, then a collection starts: it waits
    for that transaction and, seeing the references it committed, keeps the blobs."""
    app = client.app
    config, layer = b'{"held": 1}', os.urandom(4000)
    manifest = image_manifest(config, [layer])
    for data in (config, layer):
        assert await upload(client, data) == 201

    db: SqlDriver = app[keys.METADATA].db
    real_transaction = db.transaction
    held, commit = asyncio.Event(), asyncio.Event()

    @asynccontextmanager
    async def paused_before_commit() -> AsyncIterator[SqlDriver]:
        first = not held.is_set()
        async with real_transaction() as tx:
            yield tx
            if first:  # the PUT's own transaction: references written, not committed
                held.set()
                await asyncio.wait_for(commit.wait(), WAIT)

    monkeypatch.setattr(db, "transaction", paused_before_commit)
    push = asyncio.create_task(put_manifest(client, "v1", manifest))
    await asyncio.wait_for(held.wait(), WAIT)
    monkeypatch.setattr(db, "transaction", real_transaction)

    run = asyncio.create_task(collector(app).run())
    await _waiting_on_a_lock(app)
    commit.set()
    report: Report = await asyncio.wait_for(run, WAIT)
    answer = await push

    assert answer.status == 201, await answer.text()
    assert report.error_count == 0, report.errors
    for data in (config, layer):
        assert await state(app, digest_of(data)) == "live"
        assert await stored(app, digest_of(data))
    await pulls_back(client, "v1", manifest, [config, layer])


async def test_a_collection_locks_in_the_order_writers_hold(client: TestClient) -> None:
    """A writer holds the lower of two orphans and is about to hold the higher (as a
    hold of both does, row after row, in digest order); a collection starts between.
    It must queue behind the writer on the lower, not lock the higher first (stored
    first, so its plan may visit it first) and wait on the lower: PostgreSQL would
    find the cycle and fail one side with "deadlock detected"."""
    app = client.app
    low, high = sorted((os.urandom(700), os.urandom(700)), key=digest_of)
    cas = app[keys.CAS]
    for data in (high, low):  # the higher first, so it is first in the table too
        await cas.ingest(once(data))
    db: SqlDriver = app[keys.METADATA].db
    run: asyncio.Task[Report] | None = None
    async with db.transaction() as tx:
        assert await hold_blobs(tx, [digest_of(low)]) == set()
        run = asyncio.create_task(collector(app).run())
        await _waiting_on_a_lock(app)
        assert await hold_blobs(tx, [digest_of(high)]) == set()
    report = await asyncio.wait_for(run, WAIT)
    assert report.error_count == 0, report.errors
    assert report.freed["blobs"].objects == 2  # the writer referenced neither


async def test_a_row_left_marked_under_a_reference_is_taken_back(client: TestClient) -> None:
    """What an older version could leave: blobs marked "deleting" that a manifest
    references, one with its object, one without. The next run must neither fail nor
    delete the first; the second becomes "missing" (absent to readers) until pushed
    again, which heals it."""
    app = client.app
    config, layer = b'{"wedged": 1}', os.urandom(2000)
    manifest = image_manifest(config, [layer])
    for data in (config, layer):
        assert await upload(client, data) == 201
    assert (await put_manifest(client, "v1", manifest)).status == 201
    db = app[keys.METADATA].db
    for data in (config, layer):
        await db.execute(
            "UPDATE blobs SET state = 'deleting', marked_at = 1 WHERE digest = $1", digest_of(data)
        )
    await app[keys.STORAGE].delete(blob_key(digest_of(layer)))  # lost before the fix

    report = await collector(app).run()
    assert report.error_count == 2  # both reported, neither fatal
    assert await state(app, digest_of(config)) == "live" and await stored(app, digest_of(config))
    assert await state(app, digest_of(layer)) == "missing"
    missing = await client.head(f"/v2/{NAME}/blobs/{digest_of(layer)}")
    assert missing.status == 404  # so docker pushes it again
    assert await upload(client, layer) == 201
    assert await state(app, digest_of(layer)) == "live"
    await pulls_back(client, "v1", manifest, [config, layer])
    assert (await collector(app).run()).error_count == 0


async def test_push_delete_repush_while_collecting_with_no_grace_loses_nothing(
    client: TestClient,
) -> None:
    """Hundreds of pushes, deletes and re-pushes of images sharing layers, by three
    clients at once, while collections run back to back with ``blob_grace: 0``. A
    push that meets a collection is refused cleanly and pushed again, as clients do
    (asking first which blobs the registry has); every accepted push pulls back whole
    at once and at the end, and no collection reports an error.

    With no grace a push is promised safety, not progress: on one event loop a
    collector that starts again at once can fall into step with the last client,
    taking its config each time between upload and manifest (seen once in 40 runs).
    A random pause of a few milliseconds between collections breaks the step and
    leaves them running most of the time."""
    app = client.app
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    layers = [os.urandom(1500 + i) for i in range(4)]
    stop = asyncio.Event()
    reports: list[Report] = []

    async def collect_continuously() -> None:
        while not stop.is_set():
            reports.append(await collector(app).run())
            await asyncio.sleep(rng.random() * 0.005)

    async def push(tag: str, config: bytes, parts: list[bytes]) -> bytes:
        manifest = image_manifest(config, parts)
        answers: list[str] = []
        for _ in range(200):
            for data in (config, *parts):
                head = await client.head(f"/v2/{NAME}/blobs/{digest_of(data)}")
                if head.status != 200:
                    assert await upload(client, data) in (201, 503)
            answer = await put_manifest(client, tag, manifest)
            if answer.status == 201:
                await pulls_back(client, tag, manifest, [config, *parts])
                return manifest
            body = await answer.text()
            answers.append(f"{answer.status} {body[:120]}")
            assert answer.status == 503 or "MANIFEST_BLOB_UNKNOWN" in body, body
        raise AssertionError(f"{tag} not pushed in 200 attempts (seed {seed}): {answers[-3:]}")

    async def client_loop(tag: str) -> tuple[str, bytes | None]:
        config = b'{"image": "%s"}' % tag.encode()
        last: bytes | None = None
        for _ in range(40):
            parts = rng.sample(layers, 2)
            last = await push(tag, config, parts)
            if rng.random() < 0.5:
                deleted = await client.delete(f"/v2/{NAME}/manifests/{digest_of(last)}")
                assert deleted.status == 202
                last = await push(tag, config, parts)  # re-push of the same layers
        return tag, last

    collecting = asyncio.create_task(collect_continuously())
    try:
        pushed = await asyncio.gather(*(client_loop(f"t{i}") for i in range(3)))
    finally:
        stop.set()
        await collecting

    assert len(reports) > 1
    assert [r.errors for r in reports if r.error_count] == []
    final = await collector(app).run()
    assert final.error_count == 0, final.errors
    for tag, manifest in pushed:
        assert manifest is not None
        parsed = json.loads(manifest)
        blobs = [d["digest"] for d in (parsed["config"], *parsed["layers"])]
        by_digest = {digest_of(d): d for d in (*layers, b'{"image": "%s"}' % tag.encode())}
        await pulls_back(client, tag, manifest, [by_digest[d] for d in blobs])


async def test_an_index_naming_a_child_collected_meanwhile_is_refused(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Untagged manifests go where the repository opts in: an index whose PUT found its
    untagged child, but whose row comes after a collection deleted that child, must be
    refused, not stored pointing at nothing."""
    app = client.app
    config, layer = b'{"child": 1}', os.urandom(1000)
    child = image_manifest(config, [layer])
    for data in (config, layer):
        assert await upload(client, data) == 201
    assert (await put_manifest(client, digest_of(child), child)).status == 201  # untagged
    index = image_index([child])

    cas = app[keys.CAS]
    real_ingest = cas.ingest
    reports: list[Report] = []

    async def collect_first(stream: Any, expected: Any = None, **kw: Any) -> Any:
        if str(expected) == digest_of(index) and not reports:
            reports.append(await collector(app).run())  # after the PUT checked the child
        return await real_ingest(stream, expected, **kw)

    monkeypatch.setattr(cas, "ingest", collect_first)
    answer = await client.put(
        f"/v2/{NAME}/manifests/v1", data=index, headers={"Content-Type": OCI_INDEX}
    )
    assert reports and reports[0].error_count == 0
    assert reports[0].freed["manifests"].objects == 1  # the child went
    assert answer.status == 400 and "MANIFEST_BLOB_UNKNOWN" in await answer.text()
    assert (await client.get(f"/v2/{NAME}/manifests/v1")).status == 404


async def test_an_upload_never_waits_longer_than_its_bound_for_a_collector(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blob a collector keeps marked (its deletes keep failing, each run re-marks it)
    answers an upload of the same bytes with 503 and Retry-After, not a hung request."""
    app = client.app
    data = os.urandom(1200)
    await app[keys.CAS].ingest(once(data))
    monkeypatch.setattr(cas_module, "DELETION_WAIT", 0.3)
    await app[keys.METADATA].mark_orphans(float("inf"), (), "", 10, time.time())
    response = await asyncio.wait_for(
        client.post(f"/v2/{NAME}/blobs/uploads/?digest={digest_of(data)}", data=data), WAIT
    )
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert "being collected" in await response.text()
    assert await state(app, digest_of(data)) == "deleting"


@pytest.mark.parametrize("size", [1000, 300_000], ids=["small", "large"])
async def test_content_whose_object_is_gone_is_a_404_never_a_cut_200(
    client: TestClient, size: int
) -> None:
    """Whatever lost an object under its live row, readers answer 404 in the format's
    shape before any header of a 200 goes out (the large path opens the file or the
    S3 stream first)."""
    app = client.app
    data = os.urandom(size)
    assert await upload(client, data) == 201
    assert (await client.put("/repository/files/gone.bin", data=data)).status == 201
    await app[keys.STORAGE].delete(blob_key(digest_of(data)))

    blob = await client.get(f"/v2/{NAME}/blobs/{digest_of(data)}")
    assert blob.status == 404 and "BLOB_UNKNOWN" in await blob.text()
    ranged = await client.get(f"/v2/{NAME}/blobs/{digest_of(data)}", headers={"Range": "bytes=10-"})
    assert ranged.status == 404
    file = await client.get("/repository/files/gone.bin")
    assert file.status == 404 and "application/json" in file.headers["Content-Type"]
    # The connection carried clean answers: the next request on it is served.
    assert (await client.get("/v2/")).status == 200
