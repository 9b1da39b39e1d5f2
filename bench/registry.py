"""Registry throughput: artifactapi against the CNCF distribution registry (docker-registry 2.8).

Both registries run as real processes, each on the filesystem and each on the same
S3 server (``weed mini``), a fresh server and a fresh storage root per case. Per case:

* ``push``         one blob the way docker and skopeo push it: POST, one PATCH carrying
                   the whole body (chunked, 1 MiB writes), PUT ``?digest=`` with no body;
* ``pull``         GET of that blob with curl, the body discarded;
* ``skopeo-push``  ``skopeo copy oci:LAYOUT docker://…`` of a single-layer image;
* ``skopeo-pull``  ``skopeo copy docker://… oci:OUT`` back;
* ``skopeo-pull-anon`` (artifactapi only) the same image pushed (untimed) to a second
                   repository with ``anonymous_read: true`` and pulled from there with no
                   credentials: the anonymous bearer token against the one of a login,
                   parity expected.

Credentials, as real clients send them: artifactapi's bench runs as the ``admin`` its
first start made (bench/harness.py), curl with ``-u admin:PASSWORD`` (HTTP Basic on
every request: the server verifies the password once, argon2, then remembers it), skopeo
with ``--dest-creds``/``--src-creds`` (the docker token flow: a 401 from ``/v2/``, a
``GET /v2/token`` with Basic, then an ES256 bearer JWT on every request). distribution
runs as most deploy it inside a network, with no auth: artifactapi does more work per
request, never less, so the ratios are not flattered by the credentials.

The push and pull client is curl, run from a child process (its CPU is reported, to
show it is not the bottleneck). While an operation runs, the parent samples the
server's RSS every 20 ms and reads its CPU time from ``/proc``.
Registries alternate within each round; the best run counts, RSS is the worst run's
peak growth. Two vCPUs are shared by client, registry, S3 server and kernel, so the
``others`` column (CPU busy elsewhere) matters when reading the figures.

Environment: BENCH_REGISTRY_SIZE_MIB (1024), BENCH_REGISTRY_ROUNDS (2),
BENCH_REGISTRY_STORAGES ("fs,s3"), BENCH_REGISTRY_SERVERS
("artifactapi,artifactapi-redirect,distribution"; "artifactapi-redirect" runs on S3
only and answers downloads with a 307 to a presigned URL, the option distribution
has on by default and this bench turns off), BENCH_REGISTRY_SKOPEO (1; 0 skips the
end-to-end cases).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import (
    RESULTS,
    ChildFailed,
    MiB,
    Server,
    Source,
    best_run,
    child_main,
    env_int,
    free_port,
    is_child,
    machine_busy_seconds,
    measured,
    peak_rss,
    run_artifactapi,
    run_child,
    spawn,
    warm_page_pool,
)
from bench.ingest import s3_server
from tests.s3server import S3Settings

MODULE = "bench.registry"
IMAGE = "docker-local/bench"  # the first segment is the artifactapi repository
PUBLIC_IMAGE = "docker-public/bench"  # in a repository with anonymous_read: true
TAG = "bench"
PART_SIZE = 8 * MiB  # S3 multipart part size, the same for both registries
DISTRIBUTION = "/usr/bin/docker-registry"
READY_TIMEOUT = 30.0
RSS_INTERVAL = 0.02
OPERATIONS = ("push", "pull", "skopeo-push", "skopeo-pull", "skopeo-pull-anon")
STORAGE_NAMES = {"fs": "filesystem", "s3": "s3"}
GOAL_PUSH = {"fs": 3.0, "s3": 2.0}
GOAL_PULL = 1.0
GOAL_ANON_PARITY = 0.9  # a pull with a login against an anonymous one: within noise
GOAL_RSS_MIB = 150
BASELINE = "distribution"


# -- child side: the registry-side client --------------------------------------------


def _absolute(base: str, location: str) -> str:
    return location if location.startswith("http") else base + location


def _push(base: str, path: str, digest: str, auth: list[str]) -> tuple[float, float]:
    """Push the file at ``path``; return the PUT's seconds (the registry's finalisation)
    and curl's CPU.

    The PATCH is chunked, as docker and skopeo send it, with no ``Expect``: curl
    reads the file from the page cache for about 0.3 s of CPU per GiB, half what a
    streaming aiohttp client needs; on two cores the client's CPU is the server's loss.
    """
    status, headers, cpu = _curl(*auth, "-X", "POST", f"{base}/v2/{IMAGE}/blobs/uploads/")
    _expect(status, 202, "POST")
    location = _absolute(base, headers["location"])
    patch = ("-X", "PATCH", "-T", path, "-H", "Transfer-Encoding: chunked", "-H", "Expect:")
    octets = ("-H", "Content-Type: application/octet-stream")
    status, headers, used = _curl(*auth, *patch, *octets, location)
    _expect(status, 202, "PATCH")
    cpu += used
    location = _absolute(base, headers["location"])
    separator = "&" if "?" in location else "?"
    start = time.perf_counter()
    status, _, used = _curl(
        *auth, "-X", "PUT", "-H", "Content-Length: 0",
        f"{location}{separator}digest=sha256:{digest}",
    )  # fmt: skip
    _expect(status, 201, "PUT")
    return time.perf_counter() - start, cpu + used


def _curl(*args: str) -> tuple[int, dict[str, str], float]:
    """Run curl; return the final response's status and headers, and curl's CPU."""
    command = ["curl", "-sS", "-o", "/dev/null", "-D", "-", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"curl {' '.join(args[:2])} failed: {proc.stderr.strip()}")
    status, headers = 0, dict[str, str]()
    for line in proc.stdout.splitlines():
        if line.startswith("HTTP/"):  # a new response (after a 100, say) starts over
            status, headers = int(line.split()[1]), {}
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return status, headers, cpu


def _pull(base: str, digest: str, auth: list[str]) -> tuple[int, float]:
    """GET the blob with curl, the body discarded; return the bytes received and curl's CPU.

    curl, not aiohttp: an aiohttp client reading into Python needs 0.6 to 1.4 s of CPU
    per GiB, enough to cap a pull near 1 GB/s on two cores; curl needs about 0.2 s.
    A redirect to a presigned S3 URL is followed without the credentials (curl sends
    ``-u`` to the first host only), as it should be.
    """
    url = f"{base}/v2/{IMAGE}/blobs/sha256:{digest}"
    command = ["curl", "-sSL", "--fail", *auth, "-o", "/dev/null", "-w", "%{size_download}", url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"curl GET failed: {proc.stderr.strip()}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return int(proc.stdout.strip()), cpu


def _expect(status: int, wanted: int, what: str) -> None:
    if status != wanted:
        raise RuntimeError(f"{what} answered {status}, expected {wanted}")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    size, base, digest, finish = spec["size"], spec["base"], spec["digest"], 0.0
    auth = ["-u", spec["creds"]] if spec["creds"] else []
    if spec["operation"] == "push":
        with measured() as sample:
            finish, curl_cpu = _push(base, spec["path"], digest, auth)
    else:
        with measured() as sample:
            received, curl_cpu = _pull(base, digest, auth)
        if received != size:
            raise RuntimeError(f"GET returned {received} bytes of {size}")
    return {
        "seconds": sample.seconds, "cpu_seconds": sample.cpu_seconds + curl_cpu,
        "digest": digest, "finish_seconds": finish,
        # Busy CPU outside this process and curl during the timed part, the server's included.
        "elsewhere_cpu_seconds": sample.others_cpu_seconds - curl_cpu,
    }  # fmt: skip


# -- the servers ---------------------------------------------------------------------


def _storage_yaml(storage: str, directory: Path, s3: S3Settings | None, prefix: str) -> Any:
    if storage == "fs":
        return {"driver": "filesystem", "root": str(directory / "blobs")}
    assert s3 is not None
    return {
        "driver": "s3", "endpoint": s3.endpoint, "bucket": s3.bucket,
        "access_key": s3.access_key, "secret_key": s3.secret_key,
        "prefix": prefix, "part_size": PART_SIZE,
    }  # fmt: skip


def start_artifactapi(
    storage: str, directory: Path, s3: S3Settings | None, prefix: str, options: dict[str, Any]
) -> Server:
    storage_config = _storage_yaml(storage, directory, s3, prefix)
    if storage == "s3":
        storage_config.update(options)
    config = {
        "server": {"host": "127.0.0.1", "port": 0, "workers": 1},
        "logging": {"level": "warning"},
        "database": {"url": f"sqlite:///{directory / 'meta.db'}"},
        "storage": storage_config,
        "cache": {"url": "memory://"},
        "repositories": [
            {"name": "docker-local", "format": "oci", "kind": "local"},
            {"name": "docker-public", "format": "oci", "kind": "local", "anonymous_read": True},
        ],
    }
    return run_artifactapi(directory, config)


def _distribution_storage(
    storage: str, directory: Path, s3: S3Settings | None, prefix: str
) -> dict[str, Any]:
    common = {"delete": {"enabled": True}, "maintenance": {"uploadpurging": {"enabled": False}}}
    if storage == "fs":
        return {"filesystem": {"rootdirectory": str(directory / "blobs")}, **common}
    assert s3 is not None
    return {
        "s3": {
            "accesskey": s3.access_key, "secretkey": s3.secret_key, "region": "us-east-1",
            "regionendpoint": s3.endpoint, "bucket": s3.bucket, "rootdirectory": f"/{prefix}",
            "secure": False, "v4auth": True, "chunksize": PART_SIZE,
        },
        # Serve blobs through the registry, as artifactapi does, not by a redirect to S3.
        "redirect": {"disable": True},
        **common,
    }  # fmt: skip


def start_distribution(
    storage: str, directory: Path, s3: S3Settings | None, prefix: str, options: dict[str, Any]
) -> Server:
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": _distribution_storage(storage, directory, s3, prefix),
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    path = directory / "registry.yml"
    path.write_text(json.dumps(config))
    # distribution 2.8.2's S3 driver panics at start when AWS_CA_BUNDLE is set.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    process = spawn([DISTRIBUTION, "serve", str(path)], directory, env)
    server = Server("distribution", f"http://127.0.0.1:{port}", process, directory)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if _answers(f"{server.base}/v2/"):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"docker-registry did not start:\n{server.log_tail()}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


Starter = Callable[[str, Path, "S3Settings | None", str, dict[str, Any]], Server]
# label: (starter, storage settings on S3, the storages it runs on)
SERVERS: dict[str, tuple[Starter, dict[str, Any], tuple[str, ...]]] = {
    "artifactapi": (start_artifactapi, {}, ("fs", "s3")),
    # Downloads answered with a 307 to a presigned S3 URL (curl follows it).
    "artifactapi-redirect": (start_artifactapi, {"redirect_downloads": True}, ("s3",)),
    "distribution": (start_distribution, {}, ("fs", "s3")),
}


# -- watching a server ---------------------------------------------------------------


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Watch:
    rss_growth: int = 0
    cpu_seconds: float = 0.0
    machine_cpu_seconds: float = 0.0  # every process's, the server's included


@contextlib.contextmanager
def watched(pid: int) -> Iterator[Watch]:
    """The server's peak RSS above its value at the start, sampled, and its CPU time."""
    watch, stop = Watch(), threading.Event()
    baseline, cpu, machine = _rss(pid), _cpu_seconds(pid), machine_busy_seconds()
    peak = [baseline]

    def sample() -> None:
        while not stop.wait(RSS_INTERVAL):
            with contextlib.suppress(OSError):
                peak[0] = max(peak[0], _rss(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        watch.machine_cpu_seconds = machine_busy_seconds() - machine
        stop.set()
        thread.join()
        with contextlib.suppress(OSError):
            peak[0] = max(peak[0], _rss(pid))
            watch.cpu_seconds = _cpu_seconds(pid) - cpu
        watch.rss_growth = peak[0] - baseline


# -- skopeo --------------------------------------------------------------------------


def build_layout(directory: Path, size: int) -> None:
    """An OCI image layout with one ``size``-byte layer (random bytes: skopeo never
    looks inside a layer it copies between an OCI layout and a registry)."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    source = Source(size, MiB, os.urandom(16))
    layer = _write_blob(blobs, source.blocks())
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer[0]}"]},
            "config": {},
        }
    ).encode()
    config_blob = _write_blob(blobs, iter([config]))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config_blob),
            "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        }
    ).encode()
    manifest_blob = _write_blob(blobs, iter([manifest]))
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **_descriptor("application/vnd.oci.image.manifest.v1+json", manifest_blob),
                "annotations": {"org.opencontainers.image.ref.name": TAG},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(index))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def _write_blob(blobs: Path, chunks: Iterator[bytes]) -> tuple[str, int]:
    temporary = blobs / "incoming"
    digest, size = hashlib.sha256(), 0
    with open(temporary, "wb") as handle:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            handle.write(chunk)
    temporary.rename(blobs / digest.hexdigest())
    return digest.hexdigest(), size


def _descriptor(media_type: str, blob: tuple[str, int]) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": f"sha256:{blob[0]}", "size": blob[1]}


def skopeo_copy(
    source: str, destination: str, src_creds: str | None = None, dest_creds: str | None = None
) -> tuple[float, float]:
    """Run ``skopeo copy``; return its wall time and CPU time (user + system)."""
    creds = [f"--src-creds={src_creds}"] if src_creds else []
    creds += [f"--dest-creds={dest_creds}"] if dest_creds else []
    command = [
        "skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
        "--retry-times=0", *creds, source, destination,
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise ChildFailed(proc.stderr.strip()[-600:] or f"skopeo exit status {proc.returncode}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu


def _docker_ref(server: Server, image: str = IMAGE) -> str:
    return f"docker://{server.base.removeprefix('http://')}/{image}:{TAG}"


def _creds(server: Server) -> str | None:
    """skopeo's and curl's ``user:password`` for artifactapi; None for a peer with no auth."""
    return server.creds if server.password is not None else None


# -- parent side: one case = one fresh server on one storage -------------------------


@dataclass(frozen=True)
class Run:
    mbps: float
    client_cpu_per_gib: float  # the client's (aiohttp, curl or skopeo) CPU seconds per GiB
    server_cpu_per_gib: float  # the registry process's CPU seconds per GiB
    rss_mib: float  # the registry's peak RSS growth during the operation
    finish_seconds: float  # push: the PUT ?digest= alone (the registry's finalisation)
    others_cores: float  # CPUs busy outside registry and client: S3 server, kernel, neighbours

    @classmethod
    def of(
        cls, size: int, seconds: float, client_cpu: float, watch: Watch, *, others_cpu: float,
        finish: float = 0.0,
    ) -> Run:  # fmt: skip
        per_gib = 1024**3 / size
        return cls(
            mbps=size / seconds / 1e6,
            client_cpu_per_gib=client_cpu * per_gib,
            server_cpu_per_gib=watch.cpu_seconds * per_gib,
            rss_mib=watch.rss_growth / MiB,
            finish_seconds=finish,
            others_cores=max(0.0, others_cpu) / seconds,
        )


@dataclass
class Result:
    server: str
    storage: str
    operation: str
    runs: list[Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def best(self) -> Run | None:
        return best_run(self.runs)

    @property
    def peak_rss(self) -> float | None:
        return peak_rss(self.runs)


Results = dict[tuple[str, str, str], Result]


@dataclass
class Case:
    server: Server
    storage: str
    size: int
    scratch: Path
    results: Results
    layout: Path | None
    server_label: str

    def record(self, operation: str, run: Run | None, error: str | None = None) -> None:
        key = (self.server_label, self.storage, operation)
        result = self.results.setdefault(key, Result(*key))
        label = f"{self.server_label:<20} {self.storage:<3} {operation:<16}"
        if run is None:
            result.errors.append(error or "failed")
            print(f"  {label} FAILED: {(error or '').strip().splitlines()[-1:]}", file=sys.stderr)
            return
        result.runs.append(run)
        print(
            f"  {label} {run.mbps:6.0f} MB/s  client {run.client_cpu_per_gib:4.2f} s/GiB"
            f"  server {run.server_cpu_per_gib:4.2f} s/GiB  RSS +{run.rss_mib:.1f} MiB"
            f"  others {run.others_cores:4.2f} cores"
            + (f"  PUT {run.finish_seconds:.2f} s" if operation == "push" else ""),
            file=sys.stderr,
        )


def _client(case: Case, operation: str, digest: str | None) -> str | None:
    spec = {
        "operation": operation, "base": case.server.base, "size": case.size, "digest": digest,
        "creds": _creds(case.server),
    }  # fmt: skip
    if operation == "push":
        # A new file (a new digest) per push, written before the page pool is warmed.
        path = case.scratch / "push.bin"
        source = Source(case.size, MiB, os.urandom(16))
        spec["digest"] = _write_blob(case.scratch, source.blocks())[0]
        os.replace(case.scratch / str(spec["digest"]), path)
        spec["path"] = str(path)
        warm_page_pool(case.size, case.scratch)
    os.sync()
    try:
        with watched(case.server.process.pid) as watch:
            outcome = run_child(MODULE, spec)
    except ChildFailed as exc:
        case.record(operation, None, str(exc))
        return None
    seconds, cpu, finish = outcome["seconds"], outcome["cpu_seconds"], outcome["finish_seconds"]
    # The watch also spans the child's start: others come from the child's timed part.
    others = outcome["elsewhere_cpu_seconds"] - watch.cpu_seconds
    case.record(operation, Run.of(case.size, seconds, cpu, watch, others_cpu=others, finish=finish))
    return str(outcome["digest"])


def _skopeo(
    case: Case, operation: str, source: str, destination: str, src: str | None, dest: str | None
) -> bool:
    warm_page_pool(case.size, case.scratch)
    os.sync()
    time.sleep(0.5)
    try:
        with watched(case.server.process.pid) as watch:
            seconds, cpu = skopeo_copy(source, destination, src, dest)
    except ChildFailed as exc:
        case.record(operation, None, str(exc))
        return False
    others = watch.machine_cpu_seconds - watch.cpu_seconds - cpu
    case.record(operation, Run.of(case.size, seconds, cpu, watch, others_cpu=others))
    return True


def run_case(case: Case) -> None:
    digest = _client(case, "push", None)
    if digest is not None:
        _client(case, "pull", digest)
    if case.layout is None:
        return
    ref, creds, layout = _docker_ref(case.server), _creds(case.server), f"oci:{case.layout}:{TAG}"
    out = case.server.directory / "pulled"
    if _skopeo(case, "skopeo-push", layout, ref, None, creds):
        _skopeo(case, "skopeo-pull", ref, f"oci:{out}:{TAG}", creds, None)
        shutil.rmtree(out, ignore_errors=True)
    if creds is None:
        return  # a peer with no auth: its skopeo-pull is already anonymous
    public = _docker_ref(case.server, PUBLIC_IMAGE)
    try:
        skopeo_copy(layout, public, None, creds)  # untimed: the image to pull anonymously
    except ChildFailed as exc:
        case.record("skopeo-pull-anon", None, str(exc))
        return
    _skopeo(case, "skopeo-pull-anon", public, f"oci:{out}:{TAG}", None, None)
    shutil.rmtree(out, ignore_errors=True)


def _delete_prefix(s3: S3Settings, prefix: str) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
    )
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=s3.bucket, Delete={"Objects": keys})
    finally:
        client.close()


def one_case(
    label: str, storage: str, size: int, scratch: Path, s3: S3Settings | None, state: dict[str, Any]
) -> None:
    starter, options, storages = SERVERS[label]
    if storage not in storages:
        return
    directory = Path(tempfile.mkdtemp(prefix=f"{label}-{storage}-", dir=scratch))
    prefix = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    try:
        server = starter(storage, directory, s3, prefix, options)
    except RuntimeError as exc:
        print(f"  {label} on {storage}: {exc}", file=sys.stderr)
        shutil.rmtree(directory, ignore_errors=True)
        return
    layout = state["layout"] if state["skopeo"].get(label) is None else None
    case = Case(server, storage, size, scratch, state["results"], layout, label)
    try:
        run_case(case)
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
        if storage == "s3" and s3 is not None:
            _delete_prefix(s3, prefix)


def probe_skopeo(label: str, scratch: Path) -> str | None:
    """None when skopeo can push a tiny image to ``label`` on the filesystem, else why not."""
    starter, _, _ = SERVERS[label]
    directory = Path(tempfile.mkdtemp(prefix=f"probe-{label}-", dir=scratch))
    layout = directory / "layout"
    try:
        build_layout(layout, 4096)
        server = starter("fs", directory, None, "probe", {})
        try:
            skopeo_copy(f"oci:{layout}:{TAG}", _docker_ref(server), None, _creds(server))
        finally:
            server.stop()
    except (ChildFailed, RuntimeError) as exc:
        return str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else "failed"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return None


def run_all(
    size: int, rounds: int, storages: list[str], servers: list[str], skopeo: bool
) -> tuple[Results, dict[str, str | None]]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="registry-", dir=RESULTS))
    state: dict[str, Any] = {"results": {}, "layout": None, "skopeo": {}}
    try:
        if skopeo:
            state["skopeo"] = {label: probe_skopeo(label, scratch) for label in servers}
            state["layout"] = scratch / "layout"
            build_layout(state["layout"], size)
        else:
            state["skopeo"] = {label: "BENCH_REGISTRY_SKOPEO=0" for label in servers}
        for label, reason in state["skopeo"].items():
            if reason is not None:
                print(f"skopeo cases for {label} skipped: {reason}", file=sys.stderr)
        with s3_server() if "s3" in storages else contextlib.nullcontext() as s3:
            for number in range(1, rounds + 1):
                print(f"round {number}/{rounds}", file=sys.stderr)
                order = servers if number % 2 else servers[::-1]
                for storage in storages:
                    if storage == "s3" and s3 is None:
                        continue
                    for label in order:
                        one_case(label, storage, size, scratch, s3, state)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return state["results"], state["skopeo"]


# -- report --------------------------------------------------------------------------


def _ratio(results: Results, result: Result) -> float | None:
    peer = results.get((BASELINE, result.storage, result.operation))
    if result.server == BASELINE or result.best is None or peer is None or peer.best is None:
        return None
    return result.best.mbps / peer.best.mbps


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0])
    return f"{'-':>{width}}" if value is None else format(value, spec)


def _order(result: Result) -> tuple[int, int, str]:
    return (
        list(STORAGE_NAMES).index(result.storage),
        OPERATIONS.index(result.operation),
        result.server,
    )


def _finish(result: Result) -> float | None:
    best = result.best
    return best.finish_seconds if best is not None and result.operation == "push" else None


def print_table(results: Results) -> None:
    header = (
        f"{'registry':<20} {'storage':<10} {'operation':<16} | {'MB/s':>5} | "
        f"{'all runs MB/s':<14} | {'ratio':>5} | {'client s/GiB':>12} | "
        f"{'server s/GiB':>12} | {'others':>6} | {'RSS +MiB':>8} | {'PUT s':>5}"
    )
    print(header)
    print("-" * len(header))
    for result in sorted(results.values(), key=_order):
        best = result.best
        runs = " ".join(f"{run.mbps:.0f}" for run in result.runs) or "failed"
        print(
            f"{result.server:<20} {STORAGE_NAMES[result.storage]:<10} {result.operation:<16} | "
            f"{_fmt(best.mbps if best else None, '5.0f')} | {runs:<14} | "
            f"{_fmt(_ratio(results, result), '5.2f')} | "
            f"{_fmt(best.client_cpu_per_gib if best else None, '12.2f')} | "
            f"{_fmt(best.server_cpu_per_gib if best else None, '12.2f')} | "
            f"{_fmt(best.others_cores if best else None, '6.2f')} | "
            f"{_fmt(result.peak_rss, '8.1f')} | {_fmt(_finish(result), '5.2f')}"
        )
    print(
        "MB/s and CPU: the best run; ratio: this registry / distribution; client: the CPU of"
        " the push or pull client (curl) or of skopeo; server: the registry process's CPU;"
        " others: CPUs busy elsewhere (S3 server, kernel writeback, neighbours); RSS: the"
        " registry's peak growth during the operation, worst run; PUT s: the PUT ?digest= alone."
    )


def goal_lines(results: Results, skipped: dict[str, str | None]) -> list[str]:
    lines = []
    for result in sorted(results.values(), key=_order):
        ratio = _ratio(results, result)
        if ratio is None or result.best is None or result.operation not in ("push", "pull"):
            continue
        goal = GOAL_PUSH[result.storage] if result.operation == "push" else GOAL_PULL
        verdict = "met" if ratio >= goal else "MISSED"
        line = (
            f"{result.server} {STORAGE_NAMES[result.storage]} {result.operation}: "
            f"{result.best.mbps:.0f} MB/s = {ratio:.2f} x distribution, goal >= {goal}: {verdict}"
        )
        if result.operation == "push" and result.peak_rss is not None:
            memory = "met" if result.peak_rss < GOAL_RSS_MIB else "MISSED"
            line += f"; peak RSS +{result.peak_rss:.1f} MiB, goal < {GOAL_RSS_MIB} MiB: {memory}"
        lines.append(line)
    for (server, storage, operation), anonymous in sorted(results.items()):
        login = results.get((server, storage, "skopeo-pull"))
        if operation != "skopeo-pull-anon" or anonymous.best is None:
            continue
        where = f"{server} {STORAGE_NAMES[storage]} skopeo pull with a login vs anonymous-readable"
        if login is None or login.best is None:
            lines.append(f"{where}: not measured")
            continue
        ratio = login.best.mbps / anonymous.best.mbps
        verdict = "met" if ratio >= GOAL_ANON_PARITY else "MISSED"
        lines.append(
            f"{where}: {ratio:.2f} x anonymous ({login.best.mbps:.0f} MB/s;"
            f" {anonymous.best.mbps:.0f} MB/s), goal >= {GOAL_ANON_PARITY}: {verdict}"
        )
    for label, reason in skipped.items():
        if reason is not None:
            lines.append(f"{label} skopeo end to end: skipped: {reason}")
    return lines


def write_json(
    results: Results, config: dict[str, Any], lines: list[str], skipped: dict[str, str | None]
) -> Path:
    path = RESULTS / "registry.json"
    rows = [
        {**asdict(result), "ratio": _ratio(results, result), "peak_rss_mib": result.peak_rss}
        for result in sorted(results.values(), key=_order)
    ]
    payload = {"config": config, "results": rows, "goals": lines, "skopeo_skipped": skipped}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def main() -> None:
    size = env_int("BENCH_REGISTRY_SIZE_MIB", 1024) * MiB
    rounds = env_int("BENCH_REGISTRY_ROUNDS", 2)
    storages = os.environ.get("BENCH_REGISTRY_STORAGES", "fs,s3").split(",")
    default = "artifactapi,artifactapi-redirect,distribution"
    servers = os.environ.get("BENCH_REGISTRY_SERVERS", default).split(",")
    skopeo = env_int("BENCH_REGISTRY_SKOPEO", 1) != 0 and shutil.which("skopeo") is not None
    if not Path(DISTRIBUTION).exists():
        servers = [s for s in servers if s != BASELINE]
        print(f"{DISTRIBUTION} not found: no baseline", file=sys.stderr)
    print(
        f"registry: {size // MiB} MiB blob, {rounds} rounds, {storages}, {servers}",
        file=sys.stderr,
    )
    results, skipped = run_all(size, rounds, storages, servers, skopeo)
    print()
    print_table(results)
    lines = goal_lines(results, skipped)
    print()
    print("\n".join(lines))
    config = {"size": size, "rounds": rounds, "storages": storages, "servers": servers,
              "part_size": PART_SIZE, "cpus": os.cpu_count()}  # fmt: skip
    print(f"\nwrote {write_json(results, config, lines, skipped)}")


if __name__ == "__main__":
    if is_child():
        child_main(child)
    else:
        main()
