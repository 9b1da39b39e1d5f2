"""Garbage collection at scale: one collection over many orphans among many references.

A fresh PostgreSQL schema is seeded (untimed) with ``BENCH_GC_ORPHANS`` orphan blobs,
each with a small object in a filesystem storage root, and ``BENCH_GC_REFERENCES``
``files`` rows referencing live blobs (``FANOUT`` rows per blob, no objects needed).
One collection then runs in a child process, as ``artifactapi gc`` runs it, so the
peak RSS growth is the collector's own. Afterwards (untimed) the database and the
storage root are checked: every orphan gone, row and object, every referenced blob kept.

Environment: BENCH_GC_POSTGRES_DSN (postgresql://postgres@127.0.0.1:5432/test),
BENCH_GC_ORPHANS (100000), BENCH_GC_REFERENCES (1000000).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from bench.harness import (
    RESULTS,
    ChildFailed,
    MiB,
    child_main,
    env_int,
    is_child,
    measured,
    run_child,
)

MODULE = "bench.gc"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
GOAL_SECONDS = 60.0
GOAL_RSS_MIB = 200
FANOUT = 10  # files rows per live blob
ORPHAN_SIZE = 16
LIVE_SIZE = 1024
AGE = 2 * 86400.0  # seeded blobs are this old: well past any grace period
BLOB_GRACE = 3600.0
UPLOAD_MAX_AGE = 86400.0
REPOSITORIES = [{"name": "files", "format": "generic", "kind": "local"}]
CONNECT_TIMEOUT = 5.0


def _config(dsn: str, root: Path) -> Any:
    from app.config import parse_config

    # env={} so that ARTIFACTAPI_* variables of the shell do not reshape the bench.
    return parse_config(
        {
            "database": {"url": dsn},
            "storage": {"driver": "filesystem", "root": str(root)},
            "gc": {"blob_grace": BLOB_GRACE, "upload_max_age": UPLOAD_MAX_AGE},
            "repositories": REPOSITORIES,
        },
        env={},
    )


def _with_query(dsn: str, **params: str) -> str:
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def orphan_digest(index: int) -> str:
    return "sha256:" + hashlib.sha256(f"gc-orphan-{index}".encode()).hexdigest()


# -- child side: the timed collection -------------------------------------------------


async def _collect(spec: dict[str, Any]) -> dict[str, Any]:
    from app.backends.metadata import open_metadata
    from app.backends.storage import open_storage
    from app.formats import available_formats, migrations, validate_repositories
    from app.repositories import Repositories
    from collector.run import Collector

    # Opened the way collector.standalone.collect_once opens them, outside the timing.
    config = _config(spec["dsn"], Path(spec["root"]))
    formats = available_formats()
    options = validate_repositories(config, formats)
    storage = await open_storage(config.storage)
    metadata = await open_metadata(
        config.database.url, config.database.pool_min, config.database.pool_max
    )
    try:
        await metadata.migrate(migrations(formats.values()))
        repositories = await Repositories.sync(metadata, config.repositories, options)
        collector = Collector(config.gc, metadata, storage, formats, repositories)
        with measured() as sample:
            report = await collector.run()
    finally:
        await metadata.close()
        await storage.close()
    blobs = report.to_dict()["freed"].get("blobs", {"objects": 0, "bytes": 0})
    return {
        "sample": asdict(sample),
        "report_seconds": report.seconds,
        "freed_blobs": blobs["objects"],
        "freed_bytes": blobs["bytes"],
        "error_count": report.error_count,
        "errors": report.errors,
        "skipped": report.skipped,
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    # asyncio, not uvloop: ``artifactapi gc`` (collector.standalone) runs on asyncio.run.
    return asyncio.run(_collect(spec))


# -- parent side: schema, seed, verification, report ------------------------------------


async def _reachable(dsn: str) -> str | None:
    """None if PostgreSQL answers at ``dsn``, else why not."""
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    # OSError covers refused connections and the connect timeout (TimeoutError) alike.
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def _schema(dsn: str, create: bool, name: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    try:
        verb = f'CREATE SCHEMA "{name}"' if create else f'DROP SCHEMA IF EXISTS "{name}" CASCADE'
        await conn.execute(verb)
    finally:
        await conn.close()


def _write_objects(root: Path, orphans: int) -> None:
    """One small object per orphan at its content address, written directly for speed."""
    from app.layout import blob_key

    for prefix in range(256):
        (root / "blobs" / "sha256" / f"{prefix:02x}").mkdir(parents=True, exist_ok=True)
    body = bytes(ORPHAN_SIZE)
    for index in range(orphans):
        with open(root / blob_key(orphan_digest(index)), "wb") as handle:
            handle.write(body)


# Live digests are computed in SQL, twice (blobs, then files), rather than shipped a
# million times over the wire.
_LIVE_DIGEST = "'sha256:' || encode(sha256(convert_to('gc-live-' || {}, 'UTF8')), 'hex')"


async def _insert_rows(
    conn: asyncpg.Connection, repository_id: int, orphans: int, live: int, refs: int, old: float
) -> None:
    async with conn.transaction():
        await conn.copy_records_to_table(
            "blobs",
            records=(
                (orphan_digest(i), ORPHAN_SIZE, old, "live", old, None) for i in range(orphans)
            ),
            columns=["digest", "size", "created_at", "state", "touched_at", "marked_at"],
        )
        await conn.execute(
            "INSERT INTO blobs (digest, size, created_at, state, touched_at)"
            f" SELECT {_LIVE_DIGEST.format('i')}, $2, $3, 'live', $3"
            " FROM generate_series(0, $1 - 1) AS i",
            live,
            LIVE_SIZE,
            old,
        )
        # Row by row, the foreign key checks and index updates of a million files rows
        # take about 30 s; dropped and rebuilt from their own definitions, about 6 s,
        # and the schema ends up as migrated.
        constraints = await conn.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint"
            " WHERE conrelid = 'files'::regclass AND contype IN ('f', 'u')"
        )
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = 'files' AND indexname NOT IN"
            " (SELECT conname FROM pg_constraint WHERE conrelid = 'files'::regclass)"
        )
        for row in constraints:
            await conn.execute(f'ALTER TABLE files DROP CONSTRAINT "{row["conname"]}"')
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        await conn.execute(
            "INSERT INTO files (repository_id, path, blob_digest, size, content_type,"
            " created_at, updated_at)"
            f" SELECT $1, 'dir-' || (i % 1000) || '/file-' || i, {_LIVE_DIGEST.format('(i / $3)')},"
            " $4, 'application/octet-stream', $5, $5"
            " FROM generate_series(0, $2 - 1) AS i",
            repository_id,
            refs,
            FANOUT,
            LIVE_SIZE,
            old,
        )
        for row in indexes:
            await conn.execute(row["indexdef"])
        for row in constraints:
            await conn.execute(
                f'ALTER TABLE files ADD CONSTRAINT "{row["conname"]}" {row["definition"]}'
            )
    # Fresh statistics, as a long-running database would have: without them the
    # planner guesses at the NOT EXISTS anti-joins of the orphan search.
    await conn.execute("ANALYZE blobs")
    await conn.execute("ANALYZE files")


@dataclass
class Seeded:
    orphans: int
    live: int
    references: int
    seconds: float
    repository_id: int


async def _seed(dsn: str, root: Path, orphans: int, references: int) -> Seeded:
    from app.backends.metadata import open_metadata
    from app.formats import available_formats, migrations, validate_repositories
    from app.repositories import Repositories

    start = time.perf_counter()
    live = max(1, -(-references // FANOUT))
    config = _config(dsn, root)
    metadata = await open_metadata(dsn)
    try:
        await metadata.migrate(migrations(available_formats().values()))
        options = validate_repositories(config, available_formats())
        repositories = await Repositories.sync(metadata, config.repositories, options)
        repository_id = repositories.get("files").id
    finally:
        await metadata.close()
    old = time.time() - AGE
    # The objects go to disk while PostgreSQL works on the rows: the two overlap.
    objects = asyncio.create_task(asyncio.to_thread(_write_objects, root, orphans))
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    try:
        await _insert_rows(conn, repository_id, orphans, live, references, old)
    finally:
        await conn.close()
    await objects
    # So that "no objects left" afterwards means the collector deleted them.
    written = await asyncio.to_thread(_objects_left, root)
    if written != orphans:
        raise RuntimeError(f"seeded {written} orphan objects, expected {orphans}")
    return Seeded(orphans, live, references, time.perf_counter() - start, repository_id)


def _objects_left(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root / "blobs"))


async def _verify(dsn: str, root: Path, seeded: Seeded) -> list[str]:
    """What is wrong after the collection; empty if nothing."""
    problems: list[str] = []
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    try:
        blobs = await conn.fetchval("SELECT count(*) FROM blobs")
        kept = await conn.fetchval(
            "SELECT count(*) FROM blobs b WHERE b.state = 'live'"
            " AND EXISTS (SELECT 1 FROM files f WHERE f.blob_digest = b.digest)"
        )
        referenced = await conn.fetchval("SELECT count(DISTINCT blob_digest) FROM files")
        files = await conn.fetchval("SELECT count(*) FROM files")
    finally:
        await conn.close()
    gone = seeded.orphans + seeded.live - blobs
    if gone != seeded.orphans:
        problems.append(f"{gone} blob rows gone, expected {seeded.orphans}")
    if kept != seeded.live or referenced != seeded.live:
        problems.append(
            f"{kept} live referenced blobs kept ({referenced} referenced), expected {seeded.live}"
        )
    if files != seeded.references:
        problems.append(f"{files} files rows, expected {seeded.references}")
    left = await asyncio.to_thread(_objects_left, root)
    if left:
        problems.append(f"{left} orphan objects still on disk")
    return problems


def _goal_line(seeded: Seeded, seconds: float, rss_mib: float) -> str:
    speed = "met" if seconds < GOAL_SECONDS else "MISSED"
    memory = "met" if rss_mib < GOAL_RSS_MIB else "MISSED"
    return (
        f"collection of {seeded.orphans} orphans among {seeded.references} references: "
        f"{seconds:.1f} s (goal < {GOAL_SECONDS:.0f} s: {speed}), "
        f"peak RSS +{rss_mib:.0f} MiB (goal < {GOAL_RSS_MIB} MiB: {memory})"
    )


def print_table(seeded: Seeded, result: dict[str, Any], problems: list[str]) -> None:
    sample = result["sample"]
    rows = [
        ("orphan blobs seeded", f"{seeded.orphans}"),
        ("live blobs / files rows", f"{seeded.live} / {seeded.references}"),
        ("seeding (untimed)", f"{seeded.seconds:.1f} s"),
        ("wall time", f"{sample['seconds']:.1f} s"),
        ("CPU time (collector)", f"{sample['cpu_seconds']:.1f} s"),
        ("CPU elsewhere", f"{sample['others_cpu_seconds']:.1f} s"),
        ("peak RSS growth", f"{sample['rss_growth'] / MiB:.1f} MiB"),
        ("freed blobs", f"{result['freed_blobs']} ({result['freed_bytes']} bytes)"),
        ("errors", f"{result['error_count']}"),
        ("verification", "passed" if not problems else "FAILED: " + "; ".join(problems)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}} | {value}")
    print(
        "CPU elsewhere: CPU the rest of the machine used meanwhile (PostgreSQL mostly);"
        " RSS: the collector process's peak above its start."
    )


def write_json(config: dict[str, Any], payload: dict[str, Any]) -> Path:
    path = RESULTS / "gc.json"
    path.write_text(json.dumps({"config": config, **payload}, indent=2) + "\n")
    return path


async def _prepare(base: str, schema: str, root: Path, orphans: int, refs: int) -> Seeded:
    await _schema(base, True, schema)
    return await _seed(_with_query(base, search_path=schema), root, orphans, refs)


def main() -> None:
    base = os.environ.get("BENCH_GC_POSTGRES_DSN", "").strip() or DEFAULT_DSN
    orphans = env_int("BENCH_GC_ORPHANS", 100_000)
    references = env_int("BENCH_GC_REFERENCES", 1_000_000)
    why = asyncio.run(_reachable(base))
    if why is not None:
        print(f"gc: skipped, PostgreSQL unreachable at {base}: {why}")
        return
    print(f"gc: {orphans} orphans, {references} references on PostgreSQL", file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gc-", dir=RESULTS))
    root = scratch / "root"
    schema = f"bench_gc_{uuid.uuid4().hex[:12]}"
    dsn = _with_query(base, search_path=schema)
    try:
        seeded = asyncio.run(_prepare(base, schema, root, orphans, references))
        print(f"  seeded in {seeded.seconds:.1f} s", file=sys.stderr)
        try:
            result = run_child(MODULE, {"dsn": dsn, "root": str(root)})
        except ChildFailed as exc:
            print(f"gc: the collection FAILED: {str(exc).splitlines()[-1]}")
            return
        problems = asyncio.run(_verify(dsn, root, seeded))
    finally:
        asyncio.run(_schema(base, False, schema))
        shutil.rmtree(scratch, ignore_errors=True)
    sample = result["sample"]
    line = _goal_line(seeded, sample["seconds"], sample["rss_growth"] / MiB)
    print()
    print_table(seeded, result, problems)
    print()
    print(line)
    print(f"verification: {'passed' if not problems else 'FAILED'}")
    config = {
        "orphans": orphans,
        "references": references,
        "fanout": FANOUT,
        "blob_grace": BLOB_GRACE,
        "cpus": os.cpu_count(),
    }
    payload = {
        "seed_seconds": seeded.seconds,
        "result": result,
        "verification": problems,
        "goals": [line],
    }
    print(f"\nwrote {write_json(config, payload)}")


if __name__ == "__main__":
    if is_child():
        child_main(child)
    else:
        main()
