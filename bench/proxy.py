"""Remote repositories: cached-hit throughput and cold-miss latency, against nginx and peers.

One run, every server a real process on this machine, one shared upstream:

* the upstream is nginx serving a scratch tree from disk: generic files, a PyPI "simple"
  page with its wheels, an npm packument with its tarballs; the same nginx, serving the
  same 4 KiB file and the same big file from disk, is the ceiling;
* artifactapi (``python -m app serve``, ``server.workers: 2``, SQLite + filesystem,
  ``cache: {url: memory://}``) with three remotes of that upstream: generic, pypi, npm,
  each ``anonymous_read: true`` (a public cache: wrk, like the peers' clients, sends no
  credentials), and a fourth, ``files-auth``, the generic remote again without it;
* devpi-server with a mirror index of the same simple page (the peer for PyPI files);
* Verdaccio with an uplink to the same npm registry root (the peer for npm tarballs).

Every cache is warmed first (each file fetched once, and checked to be a hit after), then
wrk runs for BENCH_PROXY_SECONDS per case with BENCH_PROXY_CONNECTIONS connections and
two threads. Small cases cycle through BENCH_PROXY_FILES distinct 4 KiB files (a wrk Lua
script, each thread walking the list), not one hot path, so a per-path cache in front of
the files would not flatter anyone. The big case is one BENCH_PROXY_BIG_MIB file; MB/s
counts every byte wrk read, including responses still in flight at the end.

The authenticated path (issue 12): with small-generic, the same 4 KiB hits through
``files-auth`` with ``Authorization: Bearer <API token>`` in every request (a service
account granted read there, its token made with ``artifactapi token create``), right
after the anonymous run on ``files``, same files, same wrk settings: the row
``artifactapi+token``, and its ratio to the anonymous row (goal >= 0.9). The server
checks the token once per worker (sha256 digest, one database look) and then answers
from its per-process memory of verified credentials; what each request still pays is
that look-up and the grant check.

Everything runs BENCH_PROXY_ROUNDS times, each round from a fresh tree and fresh servers;
the best run of each case counts (the machine may be shared), every run is in the JSON.

Cold miss: BENCH_PROXY_COLD fresh 4 KiB files, each fetched once directly from the
upstream and once through the generic remote (a new connection for each GET, as a
client's first request would be); the added latency is the difference of the medians.

Two vCPUs are shared by wrk, the server and the kernel: the ``server``, ``wrk`` and
``others`` columns are the cores each kept busy during the run (others: the kernel's
loopback work and any neighbour on the machine; a high figure there means a noisy run).

Tools (none is a project requirement; a missing one prints a skip line):

    apt-get install wrk nginx-light

devpi-server and Verdaccio 6.8.0 are the pinned peers bench/peers.py installs (into
.venv-bench and bench/peers/verdaccio) before the run, as for the publishing benchmarks.

Environment: BENCH_PROXY_SECONDS (10), BENCH_PROXY_CONNECTIONS (64), BENCH_PROXY_FILES
(64), BENCH_PROXY_BIG_MIB (256), BENCH_PROXY_COLD (20), BENCH_PROXY_ROUNDS (2),
BENCH_PROXY_CASES (every case: ``small-generic,small-pypi,small-npm,big,cold``; a comma
list runs only those, e.g. ``small-generic`` for the 4 KiB hit against nginx alone),
BENCH_PROXY_WORKERS (2: artifactapi's ``server.workers``; 1 shows what the second worker
costs in tail latency on a machine whose cores wrk shares),
BENCH_PROXY_DEVPI (a directory holding devpi-init and devpi-server; default
.venv-bench/bin, then /tmp/devpi-venv/bin, then PATH), BENCH_PROXY_VERDACCIO (the verdaccio
script; default bench/peers/verdaccio's, then /tmp/verdaccio/node_modules/.bin/verdaccio,
then PATH).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import peers
from bench.harness import (
    REPO,
    RESULTS,
    MiB,
    Server,
    Source,
    env_int,
    fmt,
    free_port,
    http_get,
    json_request,
    machine_busy_seconds,
    run_artifactapi,
    service_token,
    spawn,
    tree_cpu,
    tree_pids,
    wait_ready,
)

SMALL = 4096
PYPI_PROJECT = "benchpkg"
NPM_PACKAGE = "bench-npm-pkg"
WRK_THREADS = 2
GOAL_SMALL_NGINX = 0.40
GOAL_SMALL_P99_MS = 12.0  # at BENCH_PROXY_CONNECTIONS: the tail, not only the mean
GOAL_PEER = 5.0
GOAL_BIG_NGINX = 0.80
GOAL_COLD_MS = 5.0
GOAL_TOKEN_ANONYMOUS = 0.9  # the 4 KiB hit with a Bearer token against the anonymous one
TOKEN_SERVER = "artifactapi+token"
CASES = ("small-generic", "small-pypi", "small-npm", "big")
WORKERS = int(os.environ.get("BENCH_PROXY_WORKERS", "2"))
ALL_CASES = (*CASES, "cold")
DEVPI_DIRS = (str(peers.VENV / "bin"), "/tmp/devpi-venv/bin")
VERDACCIO_SCRIPTS = (str(peers.VERDACCIO), "/tmp/verdaccio/node_modules/.bin/verdaccio")


# -- the upstream tree -----------------------------------------------------------------


@dataclass
class Tree:
    root: Path
    small: list[str] = field(default_factory=list)  # generic/small/…, relative to root
    cold: list[str] = field(default_factory=list)
    big: str = "generic/big.bin"
    wheels: list[str] = field(default_factory=list)  # file names
    tarballs: list[str] = field(default_factory=list)  # file names


def _random(size: int) -> bytes:
    return os.urandom(size)


def build_tree(root: Path, port: int, files: int, cold: int, big: int) -> Tree:
    """Random bodies, so no layer can compress or deduplicate them into a better figure."""
    tree = Tree(root)
    for folder in ("generic/small", "generic/cold", "pypi/packages", "pypi/simple", "npm"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(files):
        tree.small.append(f"generic/small/f{index:03d}.bin")
        (root / tree.small[-1]).write_bytes(_random(SMALL))
    for index in range(cold):
        tree.cold.append(f"generic/cold/c{index:03d}.bin")
        (root / tree.cold[-1]).write_bytes(_random(SMALL))
    with open(root / tree.big, "wb") as handle:
        for block in Source(big, MiB, os.urandom(16)).blocks():
            handle.write(block)
    links = []
    for index in range(files):
        name = f"{PYPI_PROJECT}-1.0.{index}-py3-none-any.whl"
        body = _random(SMALL)
        (root / "pypi/packages" / name).write_bytes(body)
        tree.wheels.append(name)
        digest = hashlib.sha256(body).hexdigest()
        links.append(f'<a href="../../packages/{name}#sha256={digest}">{name}</a><br/>')
    page = root / "pypi/simple" / PYPI_PROJECT
    page.mkdir()
    (page / "index.html").write_text(
        "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n"
    )
    (root / "pypi/simple/index.html").write_text(
        f'<html><body><a href="{PYPI_PROJECT}/">{PYPI_PROJECT}</a></body></html>\n'
    )
    tarballs = root / "npm" / NPM_PACKAGE / "-"
    tarballs.mkdir(parents=True)
    versions = {}
    for index in range(files):
        version = f"1.0.{index}"
        name = f"{NPM_PACKAGE}-{version}.tgz"
        body = _random(SMALL)
        (tarballs / name).write_bytes(body)
        tree.tarballs.append(name)
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(body).digest()).decode()
        versions[version] = {
            "name": NPM_PACKAGE, "version": version,
            "dist": {
                "tarball": f"http://127.0.0.1:{port}/npm/{NPM_PACKAGE}/-/{name}",
                "shasum": hashlib.sha1(body).hexdigest(), "integrity": integrity,
            },
        }  # fmt: skip
    packument = {
        "name": NPM_PACKAGE,
        "dist-tags": {"latest": f"1.0.{files - 1}"},
        "versions": versions,
        "time": {v: "2024-01-01T00:00:00.000Z" for v in versions},
    }
    # A file and a folder cannot share the name: nginx maps /npm/<pkg> to <pkg>.json.
    (root / "npm" / f"{NPM_PACKAGE}.json").write_text(json.dumps(packument))
    return tree


# -- processes -------------------------------------------------------------------------


NGINX_CONF = """
{user}
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ text/html html; application/json json; }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {root};
        location ~ ^/npm/([^/]+)$ {{ try_files /npm/$1.json =404; }}
    }}
}}
"""


def start_nginx(directory: Path, root: Path, port: int) -> Server:
    """nginx as most would deploy it for static files: sendfile, no access log, one worker
    per core, keep-alive unlimited (as aiohttp's is)."""
    conf = directory / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the scratch tree
    workers = os.cpu_count() or 2
    conf.write_text(
        NGINX_CONF.format(user=user, workers=workers, dir=directory, port=port, root=root)
    )
    command = ["nginx", "-p", str(directory), "-c", str(conf), "-g", "daemon off;"]
    server = Server("nginx", f"http://127.0.0.1:{port}", spawn(command, directory), directory)
    return wait_ready(server, f"{server.base}/generic/small/f000.bin")


def start_artifactapi(directory: Path, upstream: str) -> Server:
    config = {
        "server": {"host": "127.0.0.1", "port": 0, "workers": WORKERS},
        "logging": {"level": "warning"},
        "database": {"url": f"sqlite:///{directory / 'meta.db'}"},
        "storage": {"driver": "filesystem", "root": str(directory / "blobs")},
        "cache": {"url": "memory://"},
        "repositories": [
            {"name": "files", "format": "generic", "kind": "remote", "anonymous_read": True,
             "options": {"upstream": f"{upstream}/generic"}},
            {"name": "pypi", "format": "pypi", "kind": "remote", "anonymous_read": True,
             "options": {"upstream": f"{upstream}/pypi"}},
            {"name": "npm", "format": "npm", "kind": "remote", "anonymous_read": True,
             "options": {"upstream": f"{upstream}/npm"}},
            {"name": "files-auth", "format": "generic", "kind": "remote",
             "options": {"upstream": f"{upstream}/generic"}},
        ],
    }  # fmt: skip
    return run_artifactapi(directory, config)


def start_floor(directory: Path, root: Path, first: str) -> Server:
    """bench/floor.py: bare aiohttp with artifactapi's worker count, the framework's ceiling."""
    port = free_port()
    command = [sys.executable, "-m", "bench.floor", str(root), str(port), str(WORKERS)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = Server(
        "aiohttp", f"http://127.0.0.1:{port}", spawn(command, directory, env), directory
    )
    return wait_ready(server, f"{server.base}{first}")


def _devpi_dir() -> Path | None:
    configured = os.environ.get("BENCH_PROXY_DEVPI", "")
    for candidate in ([configured] if configured else []) + list(DEVPI_DIRS):
        if (Path(candidate) / "devpi-server").exists():
            return Path(candidate)
    found = shutil.which("devpi-server")
    return Path(found).parent if found else None


def start_devpi(directory: Path, upstream: str) -> Server:
    """devpi-server with its defaults (waitress, 50 threads) but request logging at
    WARNING: a log line per hit would cost it throughput users can turn off too."""
    bindir = _devpi_dir()
    if bindir is None:
        raise RuntimeError("devpi-server not found (BENCH_PROXY_DEVPI)")
    serverdir = directory / "server"
    init = [str(bindir / "devpi-init"), "--serverdir", str(serverdir), "--no-root-pypi",
            "--root-passwd", "bench"]  # fmt: skip
    proc = subprocess.run(init, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"devpi-init failed: {proc.stderr.strip()[-500:]}")
    logger = directory / "logger.json"
    logger.write_text(json.dumps({"version": 1, "root": {"level": "WARNING"}}))
    port = free_port()
    command = [str(bindir / "devpi-server"), "--serverdir", str(serverdir), "--host",
               "127.0.0.1", "--port", str(port), "--logger-cfg", str(logger)]  # fmt: skip
    server = Server("devpi", f"http://127.0.0.1:{port}", spawn(command, directory), directory)
    wait_ready(server, f"{server.base}/+api")
    # A mirror index of the fake upstream, through devpi's REST API (no devpi-client).
    login = json_request(f"{server.base}/+login", "POST", {"user": "root", "password": "bench"})
    token = base64.b64encode(f"root:{login['result']['password']}".encode()).decode()
    mirror = {"type": "mirror", "mirror_url": f"{upstream}/pypi/simple/"}
    json_request(f"{server.base}/root/fake", "PUT", mirror, {"X-Devpi-Auth": token})
    return server


def _verdaccio_script() -> str | None:
    configured = os.environ.get("BENCH_PROXY_VERDACCIO", "")
    for candidate in ([configured] if configured else []) + list(VERDACCIO_SCRIPTS):
        if Path(candidate).exists():
            return candidate
    return shutil.which("verdaccio")


def start_verdaccio(directory: Path, upstream: str) -> Server:
    script = _verdaccio_script()
    if script is None or shutil.which("node") is None:
        raise RuntimeError("verdaccio not found (BENCH_PROXY_VERDACCIO)")
    port = free_port()
    config = {
        "storage": str(directory / "storage"),
        "uplinks": {"fake": {"url": f"{upstream}/npm/", "cache": True}},
        "packages": {"**": {"access": "$all", "publish": "$all", "proxy": "fake"}},
        # Request logging off, as for devpi: the peer at its best.
        "log": {"type": "stdout", "format": "pretty", "level": "error"},
        "web": {"enable": False},
    }
    path = directory / "config.yaml"
    path.write_text(json.dumps(config))
    command = [script, "--config", str(path), "--listen", f"127.0.0.1:{port}"]
    server = Server("verdaccio", f"http://127.0.0.1:{port}", spawn(command, directory), directory)
    return wait_ready(server, f"{server.base}/-/ping")


# -- measuring -------------------------------------------------------------------------


WRK_SCRIPT = """
local paths = {%s}
local headers = {%s}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1], headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%%d,"bytes":%%d,"duration_us":%%d,"errors":%%d,"status":%%d,'
    .. '"timeout":%%d,"p50_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect + e.read + e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Result:
    case: str  # "small-generic", "small-pypi", "small-npm", "big"
    server: str
    url_paths: int
    requests: int = 0
    mbytes: float = 0.0  # MB read (1e6)
    seconds: float = 0.0
    errors: int = 0  # socket errors, non-2xx/3xx and timeouts
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    server_cores: float = 0.0
    wrk_cores: float = 0.0
    # CPUs busy outside server and wrk: the kernel's softirq work on loopback, and
    # whatever else shares the machine (a test suite running next door shows here).
    others_cores: float = 0.0
    skipped: str | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mbps(self) -> float:
        return self.mbytes / self.seconds if self.seconds else 0.0


def run_wrk(
    server: Server, case: str, paths: list[str], seconds: int, connections: int, scratch: Path,
    headers: dict[str, str] | None = None, label: str | None = None,
) -> Result:  # fmt: skip
    result = Result(case, label or server.name, len(paths))
    script = scratch / f"wrk-{result.server}-{case}.lua"
    lua_headers = ", ".join(
        f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()
    )
    script.write_text(WRK_SCRIPT % (", ".join(json.dumps(p) for p in paths), lua_headers))
    command = [
        "wrk", f"-t{min(WRK_THREADS, connections)}", f"-c{connections}", f"-d{seconds}s",
        "--timeout", "60s", "-s", str(script), server.base,
    ]  # fmt: skip
    pids = tree_pids(server.process.pid)
    cpu, machine = tree_cpu(pids), machine_busy_seconds()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = tree_cpu(pids) - cpu
    busy = machine_busy_seconds() - machine
    wrk_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        result.skipped = f"wrk failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
        return result
    data = json.loads(line.removeprefix("BENCH_JSON "))
    result.requests, result.seconds = data["requests"], data["duration_us"] / 1e6
    result.mbytes = data["bytes"] / 1e6
    result.errors = data["errors"] + data["status"] + data["timeout"]
    result.p50_ms, result.p99_ms = data["p50_us"] / 1000, data["p99_us"] / 1000
    result.server_cores = used / wall
    result.wrk_cores = wrk_cpu / wall
    result.others_cores = max(0.0, busy - used - wrk_cpu) / wall
    return result


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], int]:
    with http_get(url, headers) as response:
        size = len(response.read())
        return response.status, {k.lower(): v for k, v in response.headers.items()}, size


def warm(
    server: Server, paths: list[str], size: int, hit_header: bool,
    auth: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """GET each path twice: the first fills the cache, the second must be a hit of the
    right size (X-Cache: HIT where the server says so)."""
    for path in paths:
        fetch(server.base + path, auth)
    for path in paths:
        status, headers, got = fetch(server.base + path, auth)
        if status != 200 or got != size:
            raise RuntimeError(f"{server.name} {path}: {status}, {got} bytes of {size}")
        if hit_header and headers.get("x-cache") != "HIT":
            raise RuntimeError(f"{server.name} {path}: X-Cache {headers.get('x-cache')}")


def _timed_get(base: str, path: str) -> tuple[float, str]:
    """One GET on a new connection; seconds to the last byte, and X-Cache."""
    parts = urllib.parse.urlsplit(base)
    start = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200 or len(body) != SMALL:
            raise RuntimeError(f"GET {path}: {response.status}, {len(body)} bytes")
        return elapsed, response.getheader("X-Cache", "")
    finally:
        connection.close()


@dataclass
class Cold:
    files: int
    upstream_ms: float
    miss_ms: float
    # The same path again right after its miss: the fill's own bookkeeping (CAS write,
    # database commit) may still be running, so this is not the steady hit latency.
    again_ms: float

    @property
    def added_ms(self) -> float:
        return self.miss_ms - self.upstream_ms


def cold_miss(upstream: Server, artifactapi: Server, tree: Tree) -> Cold:
    direct, miss, hit = [], [], []
    for path in tree.cold:
        name = path.removeprefix("generic/")
        direct.append(_timed_get(upstream.base, f"/{path}")[0])
        seconds, how = _timed_get(artifactapi.base, f"/repository/files/{name}")
        if how != "MISS":
            raise RuntimeError(f"cold GET {name}: X-Cache {how!r}, expected MISS")
        miss.append(seconds)
        hit.append(_timed_get(artifactapi.base, f"/repository/files/{name}")[0])
    return Cold(
        files=len(tree.cold),
        upstream_ms=statistics.median(direct) * 1000,
        miss_ms=statistics.median(miss) * 1000,
        again_ms=statistics.median(hit) * 1000,
    )


def devpi_paths(devpi: Server) -> list[str]:
    """The mirror's file URLs, from its own simple page (devpi names files by hash)."""
    page_url = f"{devpi.base}/root/fake/+simple/{PYPI_PROJECT}/"
    with http_get(page_url, {"Accept": "text/html"}) as response:
        html = response.read().decode()
    hrefs = re.findall(r'href="([^"]+)"', html)
    paths = []
    for href in hrefs:
        absolute = urllib.parse.urljoin(page_url, href.split("#")[0])
        paths.append(urllib.parse.urlsplit(absolute).path)
    return sorted(p for p in paths if p.endswith(".whl"))


# -- the run ---------------------------------------------------------------------------


# What a server that will not start or answer raises here (URLError is an OSError).
FAILURES = (RuntimeError, OSError, KeyError, ValueError, http.client.HTTPException)


@contextlib.contextmanager
def running(label: str, starter: Any, *args: Any) -> Iterator[Server | str]:
    """The started server, or why it could not start (a skip, not a failure)."""
    try:
        server = starter(*args)
    except FAILURES as exc:
        yield f"{label}: {str(exc).strip()[-400:] or type(exc).__name__}"
        return
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Settings:
    seconds: int
    connections: int
    files: int
    big: int
    cold: int
    rounds: int
    cases: frozenset[str] = frozenset(ALL_CASES)

    def runs(self, case: str) -> bool:
        return case in self.cases


def _skip(case: str, server: str, why: str) -> Result:
    print(f"  {server:<12} {case:<14} skipped: {why}", file=sys.stderr)
    return Result(case, server, 0, skipped=why)


def _bench(
    server: Server, case: str, paths: list[str], settings: Settings, scratch: Path,
    headers: dict[str, str] | None = None, label: str | None = None,
) -> Result:  # fmt: skip
    result = run_wrk(
        server, case, paths, settings.seconds, settings.connections, scratch, headers, label
    )
    name = result.server
    if result.skipped:
        print(f"  {name:<12} {case:<14} FAILED: {result.skipped}", file=sys.stderr)
    else:
        print(
            f"  {name:<12} {case:<14} {result.rps:9.0f} req/s {result.mbps:8.1f} MB/s"
            f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms"
            f"  errors {result.errors}  cores: server {result.server_cores:4.2f}"
            f" wrk {result.wrk_cores:4.2f} others {result.others_cores:4.2f}",
            file=sys.stderr,
        )
    return result


def run_round(settings: Settings) -> tuple[list[Result], Cold | None, list[str]]:
    results: list[Result] = []
    notes: list[str] = []
    cold: Cold | None = None
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        return results, None, ["wrk or nginx not found: apt-get install wrk nginx-light"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="proxy-", dir=RESULTS))
    try:
        port = free_port()
        tree = build_tree(scratch / "tree", port, settings.files, settings.cold, settings.big)
        (scratch / "nginx").mkdir()
        upstream = start_nginx(scratch / "nginx", scratch / "tree", port)
        try:
            small = [f"/{p}" for p in tree.small]
            # nginx is the /nginx column of every small case, so it runs with any of them.
            if settings.cases & {"small-generic", "small-pypi", "small-npm"}:
                results.append(_bench(upstream, "small-generic", small, settings, scratch))
            if settings.runs("small-generic"):
                (scratch / "aiohttp").mkdir()
                floor = (scratch / "aiohttp", scratch / "tree", small[0])
                with running("aiohttp", start_floor, *floor) as server:
                    if isinstance(server, str):
                        notes.append(server)
                    else:
                        results.append(_bench(server, "small-generic", small, settings, scratch))
            if settings.runs("big"):
                results.append(_bench(upstream, "big", [f"/{tree.big}"], settings, scratch))
            # A server that misbehaves mid-case costs its own figures, never the run's.
            try:
                cold = _artifactapi_cases(upstream, tree, settings, scratch, results, notes)
            except FAILURES as exc:
                notes.append(f"artifactapi cases stopped: {str(exc).strip()[-300:]}")
            try:
                if settings.runs("small-pypi"):
                    _devpi_case(upstream, settings, scratch, results, notes)
            except FAILURES as exc:
                notes.append(f"devpi case stopped: {str(exc).strip()[-300:]}")
            try:
                if settings.runs("small-npm"):
                    _verdaccio_case(upstream, tree, settings, scratch, results, notes)
            except FAILURES as exc:
                notes.append(f"verdaccio case stopped: {str(exc).strip()[-300:]}")
        finally:
            upstream.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results, cold, notes


def run_all(settings: Settings) -> tuple[list[Result], Cold | None, list[str], list[Result]]:
    """Every round from scratch; the best run of each case counts (the machine is shared,
    and a neighbour's burst should not decide a ratio), and so does the round whose cold
    misses added least. Every run is kept for the JSON."""
    every: list[Result] = []
    colds: list[Cold] = []
    notes: list[str] = []
    for number in range(1, settings.rounds + 1):
        print(f"round {number}/{settings.rounds}", file=sys.stderr)
        results, cold, notes = run_round(settings)
        every.extend(results)
        colds.extend([cold] if cold is not None else [])
    best: dict[tuple[str, str], Result] = {}
    for result in every:
        key = (result.case, result.server)
        current = best.get(key)
        if current is None or current.skipped is not None or _better(result, current):
            best[key] = result
    cold = min(colds, key=lambda c: c.added_ms) if colds else None
    return list(best.values()), cold, notes, every


def _better(result: Result, current: Result) -> bool:
    if result.skipped is not None:
        return False
    return result.mbps > current.mbps if result.case == "big" else result.rps > current.rps


def _artifactapi_cases(
    upstream: Server, tree: Tree, settings: Settings, scratch: Path, results: list[Result],
    notes: list[str],
) -> Cold | None:  # fmt: skip
    directory = scratch / "artifactapi"
    directory.mkdir()
    with running("artifactapi", start_artifactapi, directory, upstream.base) as server:
        if isinstance(server, str):
            notes.append(server)
            for case in CASES:
                if settings.runs(case):
                    results.append(_skip(case, "artifactapi", server))
            return None
        cold = None
        if settings.runs("cold"):  # first, while nothing else has touched the remote
            cold = cold_miss(upstream, server, tree)
            print(
                f"  artifactapi  cold miss      upstream {cold.upstream_ms:.2f} ms, through"
                f" artifactapi {cold.miss_ms:.2f} ms (+{cold.added_ms:.2f}),"
                f" again {cold.again_ms:.2f} ms",
                file=sys.stderr,
            )
        if settings.runs("small-generic"):
            generic = [f"/repository/files/{p.removeprefix('generic/')}" for p in tree.small]
            warm(server, generic, SMALL, True)
            results.append(_bench(server, "small-generic", generic, settings, scratch))
            results.append(_token_case(server, tree, settings, scratch))
        if settings.runs("small-pypi"):
            fetch(f"{server.base}/repository/pypi/simple/{PYPI_PROJECT}/")
            wheels = [f"/repository/pypi/files/{PYPI_PROJECT}/{name}" for name in tree.wheels]
            warm(server, wheels, SMALL, True)
            results.append(_bench(server, "small-pypi", wheels, settings, scratch))
        if settings.runs("small-npm"):
            fetch(f"{server.base}/repository/npm/{NPM_PACKAGE}")
            tarballs = [f"/repository/npm/{NPM_PACKAGE}/-/{name}" for name in tree.tarballs]
            warm(server, tarballs, SMALL, True)
            results.append(_bench(server, "small-npm", tarballs, settings, scratch))
        if settings.runs("big"):
            big = f"/repository/files/{tree.big.removeprefix('generic/')}"
            warm(server, [big], settings.big, True)
            results.append(_bench(server, "big", [big], settings, scratch))
        return cold


def _token_case(server: Server, tree: Tree, settings: Settings, scratch: Path) -> Result:
    """The 4 KiB hits of ``files-auth`` with a service account's API token as Bearer."""
    try:
        token = service_token(server, "bench-reader", "files-auth")
        bearer = {"Authorization": f"Bearer {token}"}
        paths = [f"/repository/files-auth/{p.removeprefix('generic/')}" for p in tree.small]
        warm(server, paths, SMALL, True, bearer)
        _refused_anonymously(f"{server.base}{paths[0]}")
    except FAILURES as exc:
        return _skip("small-generic", TOKEN_SERVER, str(exc).strip()[-300:])
    return _bench(server, "small-generic", paths, settings, scratch, bearer, TOKEN_SERVER)


def _refused_anonymously(url: str) -> None:
    """So that the token row measures a check that happens: no credentials, a 401."""
    try:
        fetch(url)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return
        raise RuntimeError(f"GET {url} with no credentials: {exc.code}, expected 401") from None
    raise RuntimeError(f"GET {url} with no credentials answered: the remote is not private")


def _devpi_case(
    upstream: Server, settings: Settings, scratch: Path, results: list[Result], notes: list[str]
) -> None:
    directory = scratch / "devpi"
    directory.mkdir()
    with running("devpi", start_devpi, directory, upstream.base) as server:
        if isinstance(server, str):
            notes.append(server)
            results.append(_skip("small-pypi", "devpi", server))
            return
        paths = devpi_paths(server)
        if len(paths) != settings.files:
            why = f"devpi page lists {len(paths)} wheels of {settings.files}"
            results.append(_skip("small-pypi", "devpi", why))
            return
        warm(server, paths, SMALL, False)
        results.append(_bench(server, "small-pypi", paths, settings, scratch))


def _verdaccio_case(
    upstream: Server, tree: Tree, settings: Settings, scratch: Path, results: list[Result],
    notes: list[str],
) -> None:  # fmt: skip
    directory = scratch / "verdaccio"
    directory.mkdir()
    with running("verdaccio", start_verdaccio, directory, upstream.base) as server:
        if isinstance(server, str):
            notes.append(server)
            results.append(_skip("small-npm", "verdaccio", server))
            return
        fetch(f"{server.base}/{NPM_PACKAGE}")  # the packument first, as npm does
        paths = [f"/{NPM_PACKAGE}/-/{name}" for name in tree.tarballs]
        warm(server, paths, SMALL, False)
        results.append(_bench(server, "small-npm", paths, settings, scratch))


# -- report ----------------------------------------------------------------------------

PEERS = {"small-generic": "nginx", "small-pypi": "devpi", "small-npm": "verdaccio", "big": "nginx"}


def _find(results: list[Result], case: str, server: str) -> Result | None:
    for result in results:
        if result.case == case and result.server == server and result.skipped is None:
            return result
    return None


def _ratio(a: Result | None, b: Result | None, big: bool) -> float | None:
    if a is None or b is None:
        return None
    top, bottom = (a.mbps, b.mbps) if big else (a.rps, b.rps)
    return top / bottom if bottom else None


def print_table(results: list[Result]) -> None:
    header = (
        f"{'case':<14} {'server':<12} | {'req/s':>8} | {'MB/s':>7} | {'/nginx':>6} | "
        f"{'/peer':>6} | {'p50 ms':>7} | {'p99 ms':>8} | {'errors':>6} | {'server':>6} | "
        f"{'wrk':>4} | {'others':>6}"
    )
    print(header)
    print("-" * len(header))
    for case in CASES:
        nginx = _find(results, "small-generic" if case != "big" else "big", "nginx")
        for result in (r for r in results if r.case == case):
            if result.skipped is not None:
                print(f"{case:<14} {result.server:<12} | skipped: {result.skipped[:80]}")
                continue
            big = case == "big"
            # /peer only where the peer is not nginx (that ratio is the /nginx column).
            mine = result.server == "artifactapi" and PEERS[case] != "nginx"
            to_peer = _ratio(result, _find(results, case, PEERS[case]), big) if mine else None
            to_nginx = _ratio(result, nginx, big) if result.server != "nginx" else None
            print(
                f"{case:<14} {result.server:<12} | {result.rps:8.0f} | {result.mbps:7.1f} | "
                f"{fmt(to_nginx, '6.2f')} | {fmt(to_peer, '6.2f')} | "
                f"{result.p50_ms:7.2f} | {result.p99_ms:8.2f} | {result.errors:6d} | "
                f"{result.server_cores:6.2f} | {result.wrk_cores:4.2f} | {result.others_cores:6.2f}"
            )
    print(
        "small cases: 4 KiB files, wrk cycling through distinct paths; big: one file, MB/s."
        " /nginx: against nginx serving the same size from disk (req/s; MB/s for big);"
        " aiohttp: bare aiohttp answering from memory (bench/floor.py), the framework's ceiling;"
        f" {TOKEN_SERVER}: the same hits from a private remote, an API token as Bearer in every"
        " request (artifactapi's other rows are anonymous reads of public remotes);"
        " /peer: artifactapi against devpi-server (pypi) or Verdaccio (npm); server, wrk, others:"
        " CPU cores busy in the server's processes, in wrk, and elsewhere (kernel, neighbours)"
        " during the run."
    )


def goal_lines(results: list[Result], cold: Cold | None, settings: Settings) -> list[str]:
    lines = []

    def goal(
        label: str, ours: Result | None, theirs: Result | None, big: bool, wanted: float
    ) -> None:
        ratio = _ratio(ours, theirs, big)
        if ours is None or theirs is None or ratio is None:
            lines.append(f"{label}: not measured")
            return
        verdict = "met" if ratio >= wanted else "MISSED"
        lines.append(
            f"{label}: {ratio:.2f} x {theirs.server} ({_figures(ours, big)};"
            f" {_figures(theirs, big)}), goal >= {wanted}: {verdict}"
        )

    mine = {case: _find(results, case, "artifactapi") for case in CASES}
    nginx_small = _find(results, "small-generic", "nginx")
    nginx_big = _find(results, "big", "nginx")
    devpi = _find(results, "small-pypi", "devpi")
    verdaccio = _find(results, "small-npm", "verdaccio")
    goal("small generic hits vs nginx", mine["small-generic"], nginx_small, False, GOAL_SMALL_NGINX)
    generic = mine["small-generic"]
    if generic is None:
        lines.append("small generic hits p99: not measured")
    else:
        verdict = "met" if generic.p99_ms < GOAL_SMALL_P99_MS else "MISSED"
        nginx_p99 = f" (nginx {nginx_small.p99_ms:.2f} ms)" if nginx_small else ""
        lines.append(
            f"small generic hits p99: {generic.p99_ms:.2f} ms{nginx_p99},"
            f" goal < {GOAL_SMALL_P99_MS:g} ms: {verdict}"
        )
    token = _find(results, "small-generic", TOKEN_SERVER)
    goal(
        "small generic hits with a Bearer API token vs anonymous", token, generic, False,
        GOAL_TOKEN_ANONYMOUS,
    )  # fmt: skip
    floor = _find(results, "small-generic", "aiohttp")
    kept, reachable = _ratio(generic, floor, False), _ratio(floor, nginx_small, False)
    if generic is not None and floor is not None and kept and reachable:
        lines.append(
            f"small generic hits vs bare aiohttp (no goal): {kept:.2f} x aiohttp"
            f" ({_figures(floor, False)}), which is itself {reachable:.2f} x nginx: the most"
            " an aiohttp service reaches here"
        )
    goal("pypi wheel hits vs devpi-server", mine["small-pypi"], devpi, False, GOAL_PEER)
    goal("npm tarball hits vs Verdaccio", mine["small-npm"], verdaccio, False, GOAL_PEER)
    goal(f"{settings.big // MiB} MiB hits vs nginx", mine["big"], nginx_big, True, GOAL_BIG_NGINX)
    for case in ("small-pypi", "small-npm"):
        ratio = _ratio(mine[case], nginx_small, False)
        ours = mine[case]
        if ratio is not None and ours is not None:
            lines.append(
                f"{case} hits vs nginx (no goal): {ratio:.2f} x nginx ({_figures(ours, False)})"
            )
    if cold is None:
        lines.append("cold miss: not measured")
    else:
        verdict = "met" if cold.added_ms < GOAL_COLD_MS else "MISSED"
        lines.append(
            f"cold miss (median of {cold.files}): upstream {cold.upstream_ms:.2f} ms, through"
            f" artifactapi {cold.miss_ms:.2f} ms: +{cold.added_ms:.2f} ms,"
            f" goal < {GOAL_COLD_MS} ms: {verdict}"
        )
    return lines


def _figures(result: Result, big: bool) -> str:
    rate = f"{result.mbps:,.0f} MB/s" if big else f"{result.rps:,.0f} req/s"
    return f"{result.server} {rate}, p99 {result.p99_ms:.2f} ms"


def write_json(
    results: list[Result], cold: Cold | None, config: dict[str, Any], lines: list[str],
    notes: list[str], every: list[Result],
) -> Path:  # fmt: skip
    path = RESULTS / "proxy.json"
    rows = [{**asdict(r), "rps": r.rps, "mbps": r.mbps} for r in results]
    runs = [{**asdict(r), "rps": r.rps, "mbps": r.mbps} for r in every]
    payload = {
        "config": config, "results": rows, "goals": lines, "skipped": notes, "runs": runs,
        "cold_miss": None if cold is None else {**asdict(cold), "added_ms": cold.added_ms},
    }  # fmt: skip
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def _cases(value: str) -> frozenset[str]:
    names = frozenset(n.strip() for n in value.split(",") if n.strip()) or frozenset(ALL_CASES)
    unknown = names - set(ALL_CASES)
    if unknown:
        raise SystemExit(f"BENCH_PROXY_CASES: unknown {sorted(unknown)}; cases are {ALL_CASES}")
    return names


def main() -> None:
    settings = Settings(
        seconds=env_int("BENCH_PROXY_SECONDS", 10),
        connections=env_int("BENCH_PROXY_CONNECTIONS", 64),
        files=env_int("BENCH_PROXY_FILES", 64),
        big=env_int("BENCH_PROXY_BIG_MIB", 256) * MiB,
        cold=env_int("BENCH_PROXY_COLD", 20),
        rounds=env_int("BENCH_PROXY_ROUNDS", 2),
        cases=_cases(os.environ.get("BENCH_PROXY_CASES", "")),
    )
    for failure in peers.install():
        print(f"peers: {failure}", file=sys.stderr)
    print(
        f"proxy: {settings.seconds} s per case, {settings.connections} connections,"
        f" {settings.files} x 4 KiB files, {settings.big // MiB} MiB big file,"
        f" {settings.rounds} rounds, cases {','.join(c for c in ALL_CASES if settings.runs(c))}",
        file=sys.stderr,
    )
    results, cold, notes, every = run_all(settings)
    for note in notes:
        print(f"skipped: {note}", file=sys.stderr)
    print()
    print_table(results)
    lines = goal_lines(results, cold, settings)
    print()
    print("\n".join(lines + [f"skipped: {note}" for note in notes]))
    config = {**asdict(settings), "wrk_threads": WRK_THREADS, "cpus": os.cpu_count()}
    config["cases"] = [c for c in ALL_CASES if settings.runs(c)]
    print(f"\nwrote {write_json(results, cold, config, lines, notes, every)}")


if __name__ == "__main__":
    main()
