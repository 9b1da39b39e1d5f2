"""Garbage collection under live traffic, in both shapes (SQLite + filesystem,
PostgreSQL + S3): what goes, what stays, and the races in between."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from app import keys, layout
from app.cas import TAKEOVER_AFTER
from app.config import GcConfig
from app.formats.oci.records import OciRecords
from app.layout import blob_key
from app.middleware import FORMATS
from app.server import create_app
from collector import Collector, Report
from pipelines.sources import once
from tests import s3server, shapes
from tests.contract.storage.test_s3 import unfinished_bytes
from tests.integration.conftest import ConfigFactory
from tests.oci_docs import digest_of, image_index, image_manifest
from tests.processes import serving
from tests.services import S3Settings
from tests.waiting import until

REPOS = [
    {"name": "files", "format": "generic", "kind": "local"},
    {"name": "docker-local", "format": "oci", "kind": "local", "options": {"gc_untagged": True}},
    {"name": "keep", "format": "oci", "kind": "local"},
]
NAME = "docker-local/team/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
async def client(aiohttp_client, make_config: ConfigFactory) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(make_config(repositories=REPOS)))


def collector(app: web.Application, **gc: Any) -> Collector:
    """A collector over the app's backends; ``blob_grace`` 0 makes every unused blob old."""
    config = GcConfig(**{"blob_grace": 0, **gc})
    return Collector(
        config, app[keys.METADATA], app[keys.STORAGE], app[FORMATS], app[keys.REPOSITORIES]
    )


def freed(report: Report, kind: str) -> tuple[int, int]:
    entry = report.freed.get(kind)
    return (entry.objects, entry.bytes) if entry else (0, 0)


async def stored(app: web.Application, digest: str) -> bool:
    return await app[keys.STORAGE].stat(blob_key(digest)) is not None


async def state(app: web.Application, digest: str) -> str | None:
    row = await app[keys.METADATA].get_blob(digest)
    return row.state if row else None


async def put_file(client: TestClient, path: str, data: bytes) -> None:
    response = await client.put(f"/repository/files/{path}", data=data)
    assert response.status in (200, 201), await response.text()


# -- orphaned blobs ---------------------------------------------------------------------


async def test_orphans_go_after_the_grace_and_referenced_blobs_stay(client: TestClient) -> None:
    app = client.app
    kept, dropped = os.urandom(5000), os.urandom(7000)
    await put_file(client, "kept.bin", kept)
    await put_file(client, "dropped.bin", dropped)
    assert (await client.delete("/repository/files/dropped.bin")).status == 204

    dry = await collector(app).run(dry_run=True)
    assert freed(dry, "blobs") == (1, len(dropped)) and dry.error_count == 0
    assert await stored(app, digest_of(dropped))  # a dry run deletes nothing

    young = await collector(app, blob_grace=3600).run()
    assert freed(young, "blobs") == (0, 0)
    assert await state(app, digest_of(dropped)) == "live"

    report = await collector(app).run()
    assert freed(report, "blobs") == (1, len(dropped)) and report.error_count == 0
    assert await state(app, digest_of(dropped)) is None
    assert not await stored(app, digest_of(dropped))
    assert await (await client.get("/repository/files/kept.bin")).read() == kept
    assert freed(await collector(app).run(), "blobs") == (0, 0)  # nothing left to do


async def test_the_grace_keeps_a_blob_whose_reference_is_not_written_yet(
    client: TestClient,
) -> None:
    """The race the grace exists for: the blob row is there, the row that will
    reference it is not yet (an upload between its PATCH and its manifest)."""
    app = client.app
    data = os.urandom(3000)
    blob = await app[keys.CAS].ingest(once(data))
    report = await collector(app, blob_grace=3600).run()
    assert freed(report, "blobs") == (0, 0)
    assert await app[keys.CAS].stat(blob.digest) is not None
    # Without the grace, the same blob would have gone.
    assert freed(await collector(app).run(), "blobs") == (1, len(data))


async def test_an_upload_meeting_a_deletion_waits_then_writes_the_blob_anew(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = client.app
    cas, polls = app[keys.CAS], []
    waiting_for_the_collector = cas._outlast_collection

    async def counted(row: Any) -> Any:
        polls.append(row.digest)
        return await waiting_for_the_collector(row)

    monkeypatch.setattr(cas, "_outlast_collection", counted)
    data = os.urandom(4000)
    await put_file(client, "a.bin", data)
    assert (await client.delete("/repository/files/a.bin")).status == 204
    # The collector's first step: the blob is marked "deleting".
    marked, _ = await app[keys.METADATA].mark_orphans(time.time() + 1, (), "", 10, time.time())
    assert [b.digest for b in marked] == [digest_of(data)]
    # A GET no longer sees it; an upload of the same bytes waits for the deletion.
    assert (await client.get(f"/v2/{NAME}/blobs/{digest_of(data)}")).status == 404
    upload = asyncio.create_task(client.put("/repository/files/b.bin", data=data))

    await until(lambda: len(polls) >= 2, "waiting for the collector", bound=30)
    assert not upload.done()
    report = await collector(app, blob_grace=3600).run()  # finishes the marked blob
    assert freed(report, "blobs") == (1, len(data))
    response = await asyncio.wait_for(upload, 30)
    assert response.status == 201, await response.text()
    assert await state(app, digest_of(data)) == "live"
    assert await stored(app, digest_of(data))
    assert await (await client.get("/repository/files/b.bin")).read() == data


async def test_a_mark_left_by_a_dead_collector_is_taken_back(client: TestClient) -> None:
    app = client.app
    data = os.urandom(2000)
    await put_file(client, "a.bin", data)
    assert (await client.delete("/repository/files/a.bin")).status == 204
    long_ago = time.time() - TAKEOVER_AFTER - 1
    await app[keys.METADATA].mark_orphans(time.time() + 1, (), "", 10, long_ago)
    await asyncio.wait_for(put_file(client, "b.bin", data), 10)
    assert await state(app, digest_of(data)) == "live"
    assert freed(await collector(app).run(), "blobs") == (0, 0)  # referenced again
    assert await (await client.get("/repository/files/b.bin")).read() == data


async def test_leftover_marks_are_finished_by_the_next_run(client: TestClient) -> None:
    app = client.app
    data = os.urandom(1000)
    blob = await app[keys.CAS].ingest(once(data))
    await app[keys.METADATA].mark_orphans(time.time() + 1, (), "", 10, time.time() - 60)
    report = await collector(app, blob_grace=3600).run()
    assert freed(report, "blobs") == (1, len(data))
    assert await state(app, blob.digest) is None and not await stored(app, blob.digest)


# -- OCI: upload sessions and untagged manifests -------------------------------------------


async def _session(client: TestClient, data: bytes) -> str:
    started = await client.post(f"/v2/{NAME}/blobs/uploads/")
    patched = await client.patch(started.headers["Location"], data=data)
    assert patched.status == 202
    return patched.headers["Location"]


async def test_abandoned_uploads_are_reaped_fresh_ones_kept_cancelled_ones_gone_atonce(
    client: TestClient,
) -> None:
    app = client.app
    records = OciRecords(app[keys.METADATA].db)
    storage = app[keys.STORAGE]
    old_data, fresh_data, cancelled_data = os.urandom(3000), os.urandom(4000), os.urandom(5000)
    old, fresh, cancelled = [
        await _session(client, d) for d in (old_data, fresh_data, cancelled_data)
    ]
    old_id, cancelled_id = old.split("/")[-1].split("?")[0], cancelled.split("/")[-1].split("?")[0]
    [old_part] = await records.parts(old_id)
    [cancelled_part] = await records.parts(cancelled_id)

    assert (await client.delete(cancelled)).status == 204
    assert await storage.stat(cancelled_part.storage_key) is None  # gone at once

    await records.db.execute("UPDATE oci_uploads SET updated_at = 0 WHERE id = $1", old_id)
    report = await collector(app, upload_max_age=3600).run()
    assert freed(report, "uploads") == (1, len(old_data))
    assert await storage.stat(old_part.storage_key) is None
    status = await client.get(old)
    assert status.status == 404 and "BLOB_UPLOAD_UNKNOWN" in await status.text()
    separator = "&" if "?" in fresh else "?"
    done = await client.put(f"{fresh}{separator}digest={digest_of(fresh_data)}")
    assert done.status == 201, await done.text()

    # Staged objects whose session is gone (a PATCH that died), and ingests that died
    # in tmp/, go once they are as old as an abandoned upload.
    await storage.put(layout.part_key("f" * 32, 0), once(b"x" * 10))
    await storage.put(layout.temp_key(), once(b"y" * 20))
    report = await collector(app, upload_max_age=0).run()
    assert freed(report, "uploads") == (1, 10)
    assert freed(report, "staging") == (1, 20)


async def _push_image(
    client: TestClient, seed: bytes, ref: str, name: str = NAME, **extra: Any
) -> bytes:
    config, layer = b'{"seed": "' + seed + b'"}', b"layer-" + seed
    for blob in (config, layer):
        response = await client.post(
            f"/v2/{name}/blobs/uploads/?digest={digest_of(blob)}", data=blob
        )
        assert response.status == 201
    manifest = image_manifest(config, [layer], **extra)
    await _put_manifest(client, name, ref or digest_of(manifest), manifest, OCI_MANIFEST)
    return manifest


async def _put_manifest(
    client: TestClient, name: str, ref: str, body: bytes, media_type: str
) -> None:
    response = await client.put(
        f"/v2/{name}/manifests/{ref}", data=body, headers={"Content-Type": media_type}
    )
    assert response.status == 201, await response.text()


async def test_untagged_manifests_go_where_the_repository_opts_in(client: TestClient) -> None:
    app = client.app
    tagged = await _push_image(client, b"tagged", "v1")
    loose = await _push_image(client, b"loose", "")
    child = await _push_image(client, b"child", "")
    index = image_index([child])
    await _put_manifest(client, NAME, digest_of(index), index, OCI_INDEX)
    subject = {"mediaType": OCI_MANIFEST, "digest": digest_of(tagged), "size": len(tagged)}
    referrer = await _push_image(client, b"signature", "", subject=subject)
    elsewhere = await _push_image(client, b"elsewhere", "", name="keep/app")

    report = await collector(app).run()
    # The loose image and the untagged index, then the child the index held.
    assert freed(report, "manifests")[0] == 3
    for gone in (loose, index, child):
        response = await client.get(f"/v2/{NAME}/manifests/{digest_of(gone)}")
        assert response.status == 404
        assert not await stored(app, digest_of(gone))
    assert not await stored(app, digest_of(b"layer-loose"))  # its blobs became orphans
    for kept in (tagged, referrer):
        assert await (await client.get(f"/v2/{NAME}/manifests/{digest_of(kept)}")).read() == kept
    assert await stored(app, digest_of(b"layer-tagged"))
    assert (await client.get(f"/v2/keep/app/manifests/{digest_of(elsewhere)}")).status == 200
    assert await stored(app, digest_of(b"layer-elsewhere"))


# -- one collector at a time, reports, metrics ---------------------------------------------


async def test_two_collectors_started_at_once_one_collects(client: TestClient) -> None:
    app = client.app
    for i in range(20):
        await app[keys.CAS].ingest(once(os.urandom(100 + i)))
    first, second = collector(app), collector(app)
    reports = await asyncio.gather(first.run(), second.run())
    skipped = [r for r in reports if r.skipped]
    ran = [r for r in reports if not r.skipped]
    assert len(skipped) == 1 and len(ran) == 1
    assert freed(ran[0], "blobs")[0] == 20

    # A collection held elsewhere (another replica) is visible, and blocks a new one.
    metadata = app[keys.METADATA]
    assert await metadata.acquire_lease("gc", "replica-b", 60)
    status = await (await client.get("/api/v1/gc")).json()
    assert status["running"] is True and status["holder"] == "replica-b"
    assert (await client.post("/api/v1/gc")).status == 409
    assert (await collector(app).run()).skipped
    await metadata.release_lease("gc", "replica-b")


async def test_api_triggers_a_run_and_shows_its_report_and_metrics(
    aiohttp_client,
    make_config: ConfigFactory,  # type: ignore[no-untyped-def]
) -> None:
    config = make_config(repositories=REPOS, gc={"blob_grace": 0})
    client = await aiohttp_client(create_app(config))
    data = os.urandom(1234)
    await client.app[keys.CAS].ingest(once(data))
    assert (await (await client.get("/api/v1/gc")).json())["last"] is None

    started = await client.post("/api/v1/gc?dry_run=true")
    assert started.status == 202 and (await started.json())["dry_run"] is True
    last = await _last_report(client, dry_run=True)
    assert last["freed"]["blobs"] == {"objects": 1, "bytes": len(data)}
    assert await client.app[keys.CAS].stat(digest_of(data)) is not None

    assert (await client.post("/api/v1/gc")).status == 202
    last = await _last_report(client, dry_run=False)
    assert last["freed"]["blobs"] == {"objects": 1, "bytes": len(data)} and last["error_count"] == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'artifactapi_gc_freed_objects_total{kind="blobs"} 1.0' in metrics
    assert f'artifactapi_gc_freed_bytes_total{{kind="blobs"}} {float(len(data))}' in metrics
    assert 'artifactapi_gc_runs_total{outcome="ok"} 1.0' in metrics


async def _last_report(client: TestClient, dry_run: bool) -> dict[str, Any]:
    for _ in range(200):
        status = await (await client.get("/api/v1/gc")).json()
        last = status["last"]
        if last is not None and last["dry_run"] is dry_run and not status["running"]:
            return dict(last)
        await asyncio.sleep(0.05)
    raise AssertionError("no report")


async def test_the_server_collects_on_its_own_when_enabled(
    aiohttp_client,
    make_config: ConfigFactory,  # type: ignore[no-untyped-def]
) -> None:
    config = make_config(repositories=REPOS, gc={"enabled": True, "interval": 0.2, "blob_grace": 0})
    client = await aiohttp_client(create_app(config))
    blob = await client.app[keys.CAS].ingest(once(os.urandom(500)))
    for _ in range(200):
        if await client.app[keys.METADATA].get_blob(blob.digest) is None:
            break
        await asyncio.sleep(0.05)
    assert await client.app[keys.METADATA].get_blob(blob.digest) is None
    assert not await stored(client.app, blob.digest)


# -- failures ----------------------------------------------------------------------------


async def test_a_storage_outage_is_reported_and_the_next_run_finishes(
    aiohttp_client,  # type: ignore[no-untyped-def]
    postgres_dsn: str,
    redis_server: str,
) -> None:
    """The S3 server stops before a run: every delete fails and is reported, nothing
    live changes, the orphans stay marked; once it is back the next run finishes."""
    server = s3server.start()
    try:
        config = shapes.scale_out(
            postgres_dsn, redis_server, server.settings, "gc-outage", repositories=REPOS
        )
        client = await aiohttp_client(create_app(config))
        app = client.app
        live = os.urandom(3000)
        await put_file(client, "live.bin", live)
        orphans = [await app[keys.CAS].ingest(once(os.urandom(1000 + i))) for i in range(5)]

        server.stop(keep_data=True)
        failed = await collector(app).run()
        assert failed.error_count >= len(orphans) and freed(failed, "blobs") == (0, 0)
        assert {e["kind"] for e in failed.errors} >= {"blobs"}
        for blob in orphans:
            assert await state(app, blob.digest) == "deleting"  # invisible, kept for later
        assert await state(app, digest_of(live)) == "live"

        server.restart()
        report = await collector(app).run()
        assert report.error_count == 0
        assert freed(report, "blobs") == (len(orphans), sum(b.size for b in orphans))
        for blob in orphans:
            assert await state(app, blob.digest) is None and not await stored(app, blob.digest)
        assert await (await client.get("/repository/files/live.bin")).read() == live
    finally:
        server.stop()


async def test_a_replica_killed_mid_patch_leaves_nothing_once_collected(
    aiohttp_client,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    postgres_dsn: str,
    redis_server: str,
    s3_server: S3Settings,
    s3_prefix: str,
) -> None:
    """A replica killed while a PATCH streams into S3 leaves an incomplete multipart
    upload that no row names; the collector aborts it once it is as old as an
    abandoned upload."""
    sections = {
        "database": {"url": postgres_dsn},
        "storage": shapes.s3_storage(s3_server, s3_prefix),
        "cache": {"url": redis_server},
        "repositories": REPOS,
    }
    (tmp_path / "artifactapi.yaml").write_text(yaml.safe_dump(sections))
    with serving(tmp_path) as (process, base):
        password = (tmp_path / "data" / "initial-admin-password").read_text().strip()
        signed_in = {"Authorization": aiohttp.encode_basic_auth("admin", password)}
        async with aiohttp.ClientSession(headers=signed_in) as session:
            started = await session.post(f"{base}/v2/{NAME}/blobs/uploads/")
            location = started.headers["Location"]

            async def body() -> AsyncIterator[bytes]:
                yield os.urandom(6 * 1024 * 1024)  # more than one part
                await asyncio.Event().wait()  # then the client stalls, and the replica dies

            patch = asyncio.create_task(session.patch(f"{base}{location}", data=body()))
            client = await aiohttp_client(create_app(shapes.scale_out(
                postgres_dsn, redis_server, s3_server, s3_prefix, repositories=REPOS
            )))  # fmt: skip
            storage = client.app[keys.STORAGE]
            await until(lambda: _holds_a_part(storage), "holding a part", bound=30)
            process.kill()
            process.wait()
            with suppress(aiohttp.ClientError):
                await patch

    young = await collector(client.app).run()  # uploads are young for a day by default
    assert "incomplete" not in young.freed and await _holds_a_part(storage)
    report = await collector(client.app, upload_max_age=0).run()
    assert report.error_count == 0, report.errors
    assert report.freed["incomplete"].objects == 1
    assert report.freed["incomplete"].bytes >= 5 * 1024 * 1024
    assert await unfinished_bytes(storage.driver) == 0


async def _holds_a_part(storage: Any) -> bool:
    return await unfinished_bytes(storage.driver) >= 5 * 1024 * 1024
