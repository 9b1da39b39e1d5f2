"""Ingest throughput: the CAS into the filesystem and S3 drivers, against the limits it cannot beat.

For each piece size (the size of the reads the source hands over), every round runs,
each in its own child process:

* ``sha256``      hashlib.sha256 over the same bytes, nothing else;
* ``fs-write``    a plain write loop + fsync of the same bytes beside the driver's root;
* ``s3-upload``   a plain aiobotocore multipart upload of them (same part size and
                  concurrency as the driver) to the same S3 server;
* ``*-ingest``    ``ContentStore.ingest`` with the digest unknown (temp key, then move)
  and ``*-ingest-expected`` with it given (straight to the content address).

The best of the rounds counts (the machine is shared); peak RSS growth is the worst.
Ingest is compared with the slower of its driver's two limits.

Environment: BENCH_SIZE_MIB (1024), BENCH_PIECES_KIB ("64,1024"), BENCH_ROUNDS (3),
BENCH_DRIVERS ("fs,s3"),
BENCH_LOOP ("uvloop", as served, or "asyncio"), and ARTIFACTAPI_TEST_S3_ENDPOINT,
_ACCESS_KEY, _SECRET_KEY, _BUCKET to use a running S3 server instead of ``weed mini``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import (
    RESULTS,
    ChildFailed,
    MiB,
    Sample,
    Source,
    best_run,
    child_main,
    env_int,
    is_child,
    measured,
    peak_rss,
    run_child,
    warm_page_pool,
)
from tests import s3server
from tests.s3server import S3Settings

MODULE = "bench.ingest"
GOAL_RATIO = 0.85
GOAL_RSS_MIB = 64
LIMIT_CASES = ("sha256", "fs-write", "s3-upload")
INGEST_CASES = ("fs-ingest", "fs-ingest-expected", "s3-ingest", "s3-ingest-expected")
DRIVER_LIMITS = {"fs": ("fs-write", "sha256"), "s3": ("s3-upload", "sha256")}
DRIVER_NAMES = {"fs": "filesystem", "s3": "s3"}


# -- child side: one measurement per process ---------------------------------------


def _s3_config(s3: S3Settings) -> Any:
    from app.config import S3StorageConfig

    # Everything else (part size, concurrency, checksums) at the defaults a deployment gets.
    return S3StorageConfig.model_validate({"driver": "s3", "prefix": "bench", **asdict(s3)})


async def limit_sha256(source: Source, scratch: Path, s3: S3Settings | None) -> Sample:
    with measured() as sample:
        digest = hashlib.sha256()
        for piece in source.pieces():
            digest.update(piece)
        digest.hexdigest()
    return sample


async def limit_fs_write(source: Source, scratch: Path, s3: S3Settings | None) -> Sample:
    path = scratch / f"plain-{os.getpid()}.bin"
    try:
        warm_page_pool(source.size, scratch)
        with measured() as sample:
            await asyncio.to_thread(_write_fsync, path, source)
    finally:
        path.unlink(missing_ok=True)
    return sample


def _write_fsync(path: Path, source: Source) -> None:
    with open(path, "wb") as handle:
        for piece in source.pieces():
            handle.write(piece)
        handle.flush()
        os.fsync(handle.fileno())


def _parts(source: Source, part_size: int) -> Iterator[bytes]:
    pieces: list[bytes] = []
    held = 0
    for piece in source.pieces():
        pieces.append(piece)
        held += len(piece)
        if held >= part_size:
            yield b"".join(pieces)
            pieces, held = [], 0
    if pieces:
        yield b"".join(pieces)


async def _plain_multipart(
    client: Any, ids: dict[str, str], parts: Iterator[bytes], ways: int
) -> None:
    upload_id = (await client.create_multipart_upload(**ids))["UploadId"]

    async def send(number: int, body: bytes) -> dict[str, Any]:
        response = await client.upload_part(**ids, UploadId=upload_id, PartNumber=number, Body=body)
        return {"PartNumber": number, "ETag": response["ETag"]}

    pending: set[asyncio.Task[dict[str, Any]]] = set()
    done_parts: list[dict[str, Any]] = []
    for number, body in enumerate(parts, start=1):
        if len(pending) >= ways:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            done_parts += [task.result() for task in done]
        pending.add(asyncio.ensure_future(send(number, body)))
    done_parts += await asyncio.gather(*pending)
    done_parts.sort(key=lambda part: part["PartNumber"])
    await client.complete_multipart_upload(
        **ids, UploadId=upload_id, MultipartUpload={"Parts": done_parts}
    )


async def limit_s3_upload(source: Source, scratch: Path, s3: S3Settings | None) -> Sample:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    assert s3 is not None
    cfg = _s3_config(s3)
    config = AioConfig(
        # Signed or not as the driver is configured, so both pay the same hashing.
        s3={"addressing_style": "path", "payload_signing_enabled": cfg.sign_payload},
        signature_version="s3v4",
        request_checksum_calculation=cfg.checksums,
        response_checksum_validation=cfg.checksums,
        max_pool_connections=max(10, cfg.concurrency * 2),
    )
    client_cm = AioSession().create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name=cfg.region,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        config=config,
    )
    ids = {"Bucket": s3.bucket, "Key": f"bench/plain-{os.getpid()}-{os.urandom(4).hex()}"}
    async with client_cm as client:
        with measured() as sample:
            parts = _parts(source, int(cfg.part_size))
            await _plain_multipart(client, ids, parts, cfg.concurrency)
        await client.delete_object(**ids)
    return sample


@contextlib.asynccontextmanager
async def _content_store(scratch: Path, driver: str, s3: S3Settings | None) -> AsyncIterator[Any]:
    from app.backends.metadata import open_metadata
    from app.backends.storage import CheckedStorage
    from app.backends.storage.filesystem import FilesystemStorage
    from app.cas import ContentStore

    private = Path(tempfile.mkdtemp(prefix="case-", dir=scratch))
    metadata = await open_metadata(f"sqlite:///{private / 'meta.db'}")
    storage: Any = None
    try:
        await metadata.migrate([])  # the core's tables are all the CAS needs
        if driver == "fs":
            storage = await FilesystemStorage(private / "root").open()
        else:
            from app.backends.storage.s3 import S3Storage

            assert s3 is not None
            storage = await S3Storage(_s3_config(s3)).open()
        yield ContentStore(CheckedStorage(storage), metadata)  # as the service opens it
    finally:
        if storage is not None:
            await storage.close()
        await metadata.close()
        shutil.rmtree(private, ignore_errors=True)


async def _ingest(
    source: Source, scratch: Path, s3: S3Settings | None, driver: str, expect: bool
) -> Sample:
    from app.layout import blob_key
    from pipelines import Digest

    expected = Digest("sha256", source.sha256()) if expect else None
    async with _content_store(scratch, driver, s3) as cas:
        if driver == "fs":
            warm_page_pool(source.size, scratch)
        with measured() as sample:
            blob = await cas.ingest(source.stream(), expected)
        if blob.size != source.size:
            raise AssertionError(f"ingested {blob.size} bytes of {source.size}")
        await cas.storage.delete(blob_key(blob.digest))
    return sample


def _ingest_case(driver: str, expect: bool) -> CaseRun:
    async def run(source: Source, scratch: Path, s3: S3Settings | None) -> Sample:
        return await _ingest(source, scratch, s3, driver, expect)

    return run


CaseRun = Callable[[Source, Path, "S3Settings | None"], Coroutine[Any, Any, Sample]]
CASES: dict[str, CaseRun] = {
    "sha256": limit_sha256,
    "fs-write": limit_fs_write,
    "s3-upload": limit_s3_upload,
    "fs-ingest": _ingest_case("fs", expect=False),
    "fs-ingest-expected": _ingest_case("fs", expect=True),
    "s3-ingest": _ingest_case("s3", expect=False),
    "s3-ingest-expected": _ingest_case("s3", expect=True),
}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    source = Source(spec["size"], spec["piece"], bytes.fromhex(spec["nonce"]))
    s3 = S3Settings(**spec["s3"]) if spec["s3"] else None
    work = CASES[spec["case"]](source, Path(spec["scratch"]), s3)
    if spec["loop"] == "uvloop":
        import uvloop

        sample = uvloop.run(work)
    else:
        sample = asyncio.run(work)
    return asdict(sample)


# -- parent side: orchestration and report ------------------------------------------


@dataclass(frozen=True)
class Run:
    mbps: float
    cpu_per_gib: float  # this process's CPU seconds per GiB moved
    others_cores: float  # mean CPUs busy elsewhere (S3 server, kernel writeback, neighbours)
    rss_mib: float

    @classmethod
    def of(cls, sample: dict[str, Any], size: int) -> Run:
        seconds = sample["seconds"]
        return cls(
            mbps=size / seconds / 1e6,
            cpu_per_gib=sample["cpu_seconds"] * 1024**3 / size,
            others_cores=sample["others_cpu_seconds"] / seconds,
            rss_mib=sample["rss_growth"] / MiB,
        )


@dataclass
class Result:
    case: str
    piece: int
    runs: list[Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def best(self) -> Run | None:
        return best_run(self.runs)

    @property
    def peak_rss(self) -> float | None:
        return peak_rss(self.runs)


@contextlib.contextmanager
def s3_server() -> Iterator[S3Settings | None]:
    """The S3 server named by the environment, else a ``weed mini`` started (and stopped) here."""
    from_env = s3server.settings_from_env()
    if from_env is not None:
        yield from_env
        return
    try:
        server = s3server.start()
    except RuntimeError as exc:
        print(f"S3 cases skipped: {exc}", file=sys.stderr)
        yield None
        return
    try:
        yield server.settings
    finally:
        server.stop()


def _cases(s3: S3Settings | None) -> list[str]:
    # Filesystem cases first: the S3 server keeps working (and writing) for a while
    # after an upload, which would slow down whichever case came next.
    cases = [
        "sha256",
        "fs-write",
        "fs-ingest",
        "fs-ingest-expected",
        "s3-upload",
        "s3-ingest",
        "s3-ingest-expected",
    ]
    wanted = os.environ.get("BENCH_DRIVERS", "fs,s3").split(",")
    return [
        c for c in cases if c == "sha256" or (c.split("-")[0] in wanted and (s3 or c[:3] != "s3-"))
    ]


def _measure(results: dict[tuple[str, int], Result], spec: dict[str, Any]) -> None:
    result = results.setdefault((spec["case"], spec["piece"]), Result(spec["case"], spec["piece"]))
    label = f"{spec['case']:<20} {spec['piece'] // 1024:>5} KiB"
    try:
        run = Run.of(run_child(MODULE, spec), spec["size"])
    except ChildFailed as exc:
        result.errors.append(str(exc))
        print(f"  {label}  FAILED: {str(exc).splitlines()[-1]}", file=sys.stderr)
        return
    result.runs.append(run)
    print(
        f"  {label}  {run.mbps:6.0f} MB/s  cpu {run.cpu_per_gib:4.2f} s/GiB"
        f"  others {run.others_cores:4.2f} cores  RSS +{run.rss_mib:.1f} MiB",
        file=sys.stderr,
    )


def run_all(size: int, pieces: list[int], rounds: int, loop: str) -> dict[tuple[str, int], Result]:
    results: dict[tuple[str, int], Result] = {}
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=RESULTS))
    try:
        with s3_server() as s3:
            for number in range(1, rounds + 1):
                print(f"round {number}/{rounds}", file=sys.stderr)
                for piece in pieces:
                    for case in _cases(s3):
                        spec = {
                            "case": case, "size": size, "piece": piece, "loop": loop,
                            "nonce": os.urandom(16).hex(), "scratch": str(scratch),
                            "s3": asdict(s3) if s3 else None,
                        }  # fmt: skip
                        _measure(results, spec)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _best_mbps(results: dict[tuple[str, int], Result], case: str, piece: int) -> float | None:
    result = results.get((case, piece))
    best = result.best if result else None
    return best.mbps if best else None


def _slower_limit(results: dict[tuple[str, int], Result], driver: str, piece: int) -> float | None:
    limits = [_best_mbps(results, name, piece) for name in DRIVER_LIMITS[driver]]
    return None if None in limits else min(v for v in limits if v is not None)


def _ratio(results: dict[tuple[str, int], Result], result: Result) -> float | None:
    if result.case in LIMIT_CASES or result.best is None:
        return None
    limit = _slower_limit(results, result.case.split("-")[0], result.piece)
    return result.best.mbps / limit if limit else None


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0])
    return f"{'-':>{width}}" if value is None else format(value, spec)


def _order(result: Result) -> tuple[int, int]:
    return result.piece, [*LIMIT_CASES, *INGEST_CASES].index(result.case)


def print_table(results: dict[tuple[str, int], Result]) -> None:
    header = (
        f"{'case':<19} {'reads':>8} | {'MB/s':>5} | {'all runs MB/s':<14} | {'ratio':>5} | "
        f"{'CPU s/GiB':>9} | {'others':>6} | {'RSS +MiB':>8}"
    )
    print(header)
    print("-" * len(header))
    for result in sorted(results.values(), key=_order):
        best = result.best
        runs = " ".join(f"{run.mbps:.0f}" for run in result.runs) or "failed"
        print(
            f"{result.case:<19} {result.piece // 1024:>4} KiB | "
            f"{_fmt(best.mbps if best else None, '5.0f')} | {runs:<14} | "
            f"{_fmt(_ratio(results, result), '5.2f')} | "
            f"{_fmt(best.cpu_per_gib if best else None, '9.2f')} | "
            f"{_fmt(best.others_cores if best else None, '6.2f')} | {_fmt(result.peak_rss, '8.1f')}"
        )
    print(
        "MB/s, CPU and others: the best run; ratio: ingest / the slower of its driver's"
        " limits; others: CPUs busy outside this process (S3 server, kernel writeback,"
        " neighbours); RSS: the worst run's peak growth."
    )


def goal_lines(results: dict[tuple[str, int], Result]) -> list[str]:
    lines = []
    for result in sorted(results.values(), key=_order):
        ratio = _ratio(results, result)
        if ratio is None or result.best is None or result.peak_rss is None:
            continue
        driver = result.case.split("-")[0]
        own_limit, sha_limit = DRIVER_LIMITS[driver]
        own, sha = (
            _best_mbps(results, own_limit, result.piece),
            _best_mbps(results, sha_limit, result.piece),
        )
        variant = "expected digest" if result.case.endswith("expected") else "unknown digest"
        speed = "met" if ratio >= GOAL_RATIO else "MISSED"
        memory = "met" if result.peak_rss < GOAL_RSS_MIB else "MISSED"
        lines.append(
            f"{DRIVER_NAMES[driver]} ({variant}, {result.piece // 1024} KiB reads): "
            f"ingest {result.best.mbps:.0f} MB/s = {ratio:.2f} x slower limit "
            f"({own_limit} {own:.0f} MB/s, sha256 {sha:.0f} MB/s), goal >= {GOAL_RATIO}: {speed}; "
            f"RSS +{result.peak_rss:.1f} MiB, goal < {GOAL_RSS_MIB} MiB: {memory}"
        )
    return lines


def write_json(
    results: dict[tuple[str, int], Result], config: dict[str, Any], lines: list[str]
) -> Path:
    path = RESULTS / "ingest.json"
    rows = [
        {**asdict(result), "ratio": _ratio(results, result), "peak_rss_mib": result.peak_rss}
        for result in sorted(results.values(), key=_order)
    ]
    payload = {"config": config, "results": rows, "goals": lines}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def main() -> None:
    size = env_int("BENCH_SIZE_MIB", 1024) * MiB
    pieces = [int(k) * 1024 for k in os.environ.get("BENCH_PIECES_KIB", "64,1024").split(",")]
    rounds = env_int("BENCH_ROUNDS", 3)
    loop = os.environ.get("BENCH_LOOP", "uvloop")
    print(
        f"ingest: {size // MiB} MiB in reads of {pieces} bytes, {rounds} rounds, {loop}",
        file=sys.stderr,
    )
    results = run_all(size, pieces, rounds, loop)
    print()
    print_table(results)
    lines = goal_lines(results)
    print()
    print("\n".join(lines))
    config = {
        "size": size,
        "pieces": pieces,
        "rounds": rounds,
        "loop": loop,
        "cpus": os.cpu_count(),
    }
    print(f"\nwrote {write_json(results, config, lines)}")


if __name__ == "__main__":
    if is_child():
        child_main(child)
    else:
        main()
