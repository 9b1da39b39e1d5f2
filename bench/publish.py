"""Publishing a big package with the real clients: artifactapi against devpi, pypiserver, Verdaccio.

One run, every server a real process on this machine, each with a user (bench/peers.py
makes the peers' users and indexes; artifactapi's is the ``admin`` its first start makes,
as in every benchmark here):

* ``twine upload`` of a BENCH_PUBLISH_MIB (100) MiB wheel, its payload random and stored
  (not deflated), to artifactapi's local PyPI repository, to devpi-server's ``bench/dev``
  index and to pypiserver;
* ``npm publish`` of a tarball of the same size to artifactapi's local npm repository and
  to Verdaccio 6.8 (``max_body_size`` raised for it: its default 10 MB refuses the upload);
* the requests ``twine upload`` and ``npm publish`` make, replayed by curl from a
  file (the body written beforehand), so the server's part is not hidden behind the
  client's own work (npm takes 5 s to pack and base64 100 MiB);
* the same commands against ``sink`` (bench/sink.py: bare aiohttp reading the body
  and keeping nothing), the most any server can show with that client on this machine.

Every run is a new version (a new file, new bytes) and goes to every server in turn, so
a neighbour's burst on this shared machine falls on all of them alike; before each
upload the page cache is handed pages to fill (harness.warm_page_pool). MB/s is the
artifact's size over the client command's wall time (what the person typing it waits
for), the median of BENCH_PUBLISH_RUNS (5) runs; ``net`` subtracts the sink's median, the
client's own time, leaving the server's. RSS growth is the server's process tree's
peak over its RSS before the upload (bench/rss.py), the worst run. After each upload
the server must list the new file or version, or the run counts as failed.

Environment: BENCH_PUBLISH_MIB (100), BENCH_PUBLISH_RUNS (5), BENCH_PUBLISH_SERVERS (every
one: ``artifactapi,devpi,pypiserver,verdaccio,sink``), BENCH_PUBLISH_WORKERS (2:
artifactapi's ``server.workers``). ``python -m bench.publish`` runs it alone.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import peers
from bench.harness import (
    RESULTS,
    MiB,
    Server,
    api_token,
    env_int,
    env_names,
    fmt,
    free_port,
    http_get,
    in_scratch,
    run_artifactapi,
    spawn,
    tree_cpu,
    tree_pids,
    wait_ready,
    warm_page_pool,
)
from bench.packages import big_tarball, big_wheel, publish_body_file, upload_body_file
from bench.peers import NpmRegistry, PyPIIndex
from bench.rss import RssWatch

PROJECT = "bench-big"
PACKAGE = "bench-big"
GOAL_PEER = 2.0
GOAL_RSS_MIB = 64
PYPI_SERVERS = ("artifactapi", "devpi", "pypiserver", "sink")
NPM_SERVERS = ("artifactapi", "verdaccio", "sink")
PYPI_PEERS = ("devpi", "pypiserver")
NPM_PEERS = ("verdaccio",)
CLIENTS = (("twine", PYPI_SERVERS), ("post", PYPI_SERVERS), ("npm", NPM_SERVERS),
           ("put", NPM_SERVERS))  # fmt: skip
REPLAYED = {"post": "twine's upload request replayed by curl",
            "put": "npm's publish request replayed by curl"}  # fmt: skip
ALL = ("artifactapi", "devpi", "pypiserver", "verdaccio", "sink")
PYPI_REPO, NPM_REPO = "pypi-local", "npm-local"
FAILURES = (RuntimeError, OSError, KeyError, ValueError, subprocess.SubprocessError)


# -- artifactapi and the sink, as the clients see them -------------------------------------


@dataclass
class Artifactapi:
    server: Server
    pypi: PyPIIndex | None  # None: this tree's format serves no local repository yet
    npm: NpmRegistry | None


def local_formats() -> list[str]:
    """The formats of this tree that serve local repositories (the others are skipped)."""
    from app.formats import available_formats

    formats = available_formats()
    return [name for name in ("pypi", "npm") if "local" in formats[name].kinds]


def start_artifactapi(directory: Path, workers: int) -> Artifactapi:
    """The embedded shape (SQLite + filesystem, in-process cache), a local repository of
    each format, private: every request carries an API token of the admin."""
    formats = local_formats()
    if not formats:
        raise RuntimeError("neither pypi nor npm serves local repositories in this tree yet")
    names = {"pypi": PYPI_REPO, "npm": NPM_REPO}
    config = {
        "server": {"host": "127.0.0.1", "port": 0, "workers": workers},
        "logging": {"level": "warning"},
        "database": {"url": f"sqlite:///{directory / 'meta.db'}"},
        "storage": {"driver": "filesystem", "root": str(directory / "blobs")},
        "cache": {"url": "memory://"},
        "repositories": [{"name": names[f], "format": f, "kind": "local"} for f in formats],
    }
    server = run_artifactapi(directory, config)
    try:
        token = api_token(server)
    except RuntimeError:
        server.stop()
        raise
    base = f"{server.base}/repository"
    # twine as CI runs it, the token as the password of ``__token__``: the admin's own
    # password would be checked once per worker with argon2id, whose 64 MiB of memory
    # would be the first upload's RSS growth whatever its size.
    pypi = PyPIIndex(server, f"{base}/{PYPI_REPO}/", f"/repository/{PYPI_REPO}/simple/",
                     "__token__", token)  # fmt: skip
    npm = NpmRegistry(server, f"{base}/{NPM_REPO}/", token)
    return Artifactapi(server, pypi if "pypi" in formats else None,
                       npm if "npm" in formats else None)  # fmt: skip


def start_sink(directory: Path) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "bench.sink", str(port)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    server = Server("sink", f"http://127.0.0.1:{port}", spawn(command, directory, env), directory)
    return wait_ready(server, f"{server.base}/-/ping")


# -- one upload -----------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    rss_mib: float
    server_cpu: float  # CPU seconds of the server's processes during the upload
    client_cpu: float


@dataclass
class Row:
    client: str  # "twine", "npm", or "post"/"put": their requests replayed by curl
    server: str
    size: int
    runs: list[Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def seconds(self) -> float | None:
        return statistics.median(r.seconds for r in self.runs) if self.runs else None

    @property
    def mbps(self) -> float | None:
        seconds = self.seconds
        return self.size / seconds / 1e6 if seconds else None

    @property
    def rss_mib(self) -> float | None:
        return max(r.rss_mib for r in self.runs) if self.runs else None


def _timed(server: Server, command: list[str], cwd: Path) -> Run:
    pids = tree_pids(server.process.pid)
    cpu = tree_cpu(pids)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with RssWatch(server.process.pid) as watch:
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{command[0]} exit {proc.returncode}: {(proc.stderr or proc.stdout)[-400:]}"
        )
    client = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Run(seconds, watch.growth().bytes / MiB, tree_cpu(pids) - cpu, client)


def _twine() -> str:
    return str(Path(sys.executable).parent / "twine")


def twine_upload(index: PyPIIndex | Server, wheel: Path, scratch: Path) -> Run:
    if isinstance(index, Server):  # the sink takes anything from anyone
        url, user, password, server = f"{index.base}/", "bench", "bench", index
    else:
        url, user, password, server = index.upload_url, index.user, index.password, index.server
    command = [_twine(), "upload", "--non-interactive", "--disable-progress-bar",
               "--repository-url", url, "-u", user, "-p", password, str(wheel)]  # fmt: skip
    return _timed(server, command, scratch)


def npm_publish(registry: NpmRegistry | Server, tarball: Path, scratch: Path) -> Run:
    if isinstance(registry, Server):
        registry = NpmRegistry(registry, f"{registry.base}/", "bench")
    command = ["npm", "publish", str(tarball), "--registry", registry.registry,
               "--userconfig", str(registry.npmrc(scratch)), "--cache", str(scratch / "npm-cache"),
               "--loglevel", "warn", "--access", "public"]  # fmt: skip
    return _timed(registry.server, command, scratch)


def twine_post(index: PyPIIndex | Server, body: Path, content_type: str, scratch: Path) -> Run:
    """twine's upload request, the body streamed from ``body`` by curl."""
    if isinstance(index, Server):
        url, basic, server = f"{index.base}/", "Basic YmVuY2g6YmVuY2g=", index
    else:
        url, basic, server = index.upload_url, index.basic, index.server
    # --data-binary, not -T: -T appends the file name to a URL ending in "/"
    command = ["curl", "-sS", "--fail-with-body", "-o", "/dev/null", "--data-binary", f"@{body}",
               "-H", f"Content-Type: {content_type}", "-H", f"Authorization: {basic}", url]  # fmt: skip
    return _timed(server, command, scratch)


def npm_put(registry: NpmRegistry | Server, body: Path, scratch: Path) -> Run:
    """npm's publish request, the body streamed from ``body`` by curl."""
    if isinstance(registry, Server):
        registry = NpmRegistry(registry, f"{registry.base}/", "bench")
    command = ["curl", "-sS", "--fail-with-body", "-o", "/dev/null", "-T", str(body),
               "-H", "Content-Type: application/json", "-H", "npm-command: publish",
               "-H", f"Authorization: Bearer {registry.token}",
               f"{registry.registry}{PACKAGE}"]  # fmt: skip
    return _timed(registry.server, command, scratch)


def listed_wheel(index: PyPIIndex, wheel: Path) -> None:
    """The server's simple page names the file just uploaded."""
    url = f"{index.server.base}{index.page(PROJECT)}"
    with http_get(url, {"Accept": "text/html", "Authorization": index.basic}) as response:
        if wheel.name not in response.read().decode():
            raise RuntimeError(f"{index.server.name}: {wheel.name} not on {url} after the upload")


def listed_version(registry: NpmRegistry, version: str) -> None:
    url = f"{registry.server.base}{registry.packument(PACKAGE)}"
    headers = {"Accept": "application/json", "Authorization": f"Bearer {registry.token}"}
    with http_get(url, headers) as response:
        if version not in json.loads(response.read())["versions"]:
            raise RuntimeError(f"{registry.server.name}: {version} not in {url} after publish")


# -- the run ------------------------------------------------------------------------------


@dataclass
class Settings:
    size: int
    runs: int
    workers: int
    servers: tuple[str, ...]


@dataclass
class Targets:
    pypi: dict[str, PyPIIndex | Server] = field(default_factory=dict)
    npm: dict[str, NpmRegistry | Server] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


@contextmanager
def started(settings: Settings, scratch: Path) -> Iterator[Targets]:
    """Every wanted server, started once for all runs; a server that will not start is a
    skip line, not a failed benchmark."""
    targets = Targets()
    starters: dict[str, Callable[[Path], Any]] = {
        "artifactapi": lambda d: start_artifactapi(d, settings.workers),
        "devpi": peers.start_devpi,
        "pypiserver": peers.start_pypiserver,
        "verdaccio": lambda d: peers.start_verdaccio(d, 4 * settings.size // MiB + 64),
        "sink": start_sink,
    }
    with ExitStack() as stack:
        for name in settings.servers:
            directory = scratch / name
            directory.mkdir()
            try:
                started_ = starters[name](directory)
            except FAILURES as exc:
                targets.skipped[name] = str(exc).strip()[-400:] or type(exc).__name__
                print(f"  {name:<12} skipped: {targets.skipped[name]}", file=sys.stderr)
                continue
            if isinstance(started_, Artifactapi):
                stack.callback(started_.server.stop)
                if started_.pypi is not None:
                    targets.pypi[name] = started_.pypi
                if started_.npm is not None:
                    targets.npm[name] = started_.npm
            elif isinstance(started_, PyPIIndex):
                stack.callback(started_.server.stop)
                targets.pypi[name] = started_
            elif isinstance(started_, NpmRegistry):
                stack.callback(started_.server.stop)
                targets.npm[name] = started_
            else:  # the sink: both clients
                stack.callback(started_.stop)
                targets.pypi[name] = targets.npm[name] = started_
        yield targets


def _measure(row: Row, upload: Callable[[], Run], check: Callable[[], None] | None) -> None:
    try:
        run = upload()
        if check is not None:
            check()
    except (*FAILURES, urllib.error.HTTPError) as exc:
        row.errors.append(str(exc).strip()[-400:])
        print(
            f"  {row.client:<6} {row.server:<12} FAILED: {row.errors[-1][-200:]}", file=sys.stderr
        )
        return
    row.runs.append(run)
    print(
        f"  {row.client:<6} {row.server:<12} {row.size / run.seconds / 1e6:7.1f} MB/s"
        f"  {run.seconds:6.2f} s  RSS +{run.rss_mib:6.1f} MiB  server CPU {run.server_cpu:5.2f} s"
        f"  client CPU {run.client_cpu:5.2f} s",
        file=sys.stderr,
    )


def run_all(settings: Settings, scratch: Path) -> tuple[list[Row], dict[str, str]]:
    rows: dict[tuple[str, str], Row] = {}
    with started(settings, scratch) as targets:
        for name in settings.servers:
            if name in targets.skipped:
                for client, names in CLIENTS:
                    if name in names:
                        rows[(client, name)] = Row(client, name, settings.size,
                                                   skipped=targets.skipped[name])  # fmt: skip
        packages = scratch / "packages"
        packages.mkdir()
        for number in range(1, settings.runs + 1):
            print(f"run {number}/{settings.runs}", file=sys.stderr)
            version = f"1.0.{number}"
            wheel = big_wheel(packages, PROJECT, version, settings.size)
            for name, index in targets.pypi.items():
                row = rows.setdefault(("twine", name), Row("twine", name, wheel.stat().st_size))
                warm_page_pool(2 * settings.size, scratch)
                check = None if isinstance(index, Server) else _bind(listed_wheel, index, wheel)
                _measure(row, _bind(twine_upload, index, wheel, scratch), check)
            wheel.unlink()
            replayed = f"0.1.{number}"
            wheel = big_wheel(packages, PROJECT, replayed, settings.size)
            for name, index in targets.pypi.items():
                row = rows.setdefault(("post", name), Row("post", name, wheel.stat().st_size))
                body = packages / "body.bin"
                content_type = upload_body_file(wheel, PROJECT, replayed, body)
                warm_page_pool(2 * settings.size, scratch)
                check = None if isinstance(index, Server) else _bind(listed_wheel, index, wheel)
                _measure(row, _bind(twine_post, index, body, content_type, scratch), check)
                body.unlink()
            wheel.unlink()
            tarball = big_tarball(packages, PACKAGE, version, settings.size)
            for name, registry in targets.npm.items():
                row = rows.setdefault(("npm", name), Row("npm", name, tarball.stat().st_size))
                warm_page_pool(2 * settings.size, scratch)
                check = (
                    None if isinstance(registry, Server)
                    else _bind(listed_version, registry, version)
                )  # fmt: skip
                _measure(row, _bind(npm_publish, registry, tarball, scratch), check)
            tarball.unlink()
            replayed = f"0.1.{number}"  # below the npm runs: npm 11 refuses a version under latest
            tarball = big_tarball(packages, PACKAGE, replayed, settings.size)
            for name, registry in targets.npm.items():
                row = rows.setdefault(("put", name), Row("put", name, tarball.stat().st_size))
                base = registry.base if isinstance(registry, Server) else registry.registry
                body = publish_body_file(tarball, PACKAGE, replayed, base, packages / "body.json")
                warm_page_pool(2 * settings.size, scratch)
                check = (
                    None if isinstance(registry, Server)
                    else _bind(listed_version, registry, replayed)
                )  # fmt: skip
                _measure(row, _bind(npm_put, registry, body, scratch), check)
                body.unlink()
            tarball.unlink()
    order = [(c, s) for c, names in CLIENTS for s in names]
    return [rows[key] for key in order if key in rows], targets.skipped


def _bind(function: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: function(*args)


# -- report ---------------------------------------------------------------------------------


def _find(rows: list[Row], client: str, server: str) -> Row | None:
    for row in rows:
        if row.client == client and row.server == server and row.runs:
            return row
    return None


def _net(row: Row, sink: Row | None) -> float | None:
    """MB/s over the server's own time: the client command's median less the sink's."""
    if sink is None or row is sink or row.seconds is None or sink.seconds is None:
        return None
    extra = row.seconds - sink.seconds
    return row.size / extra / 1e6 if extra > 0 else None


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'client':<6} {'server':<12} | {'MB/s':>6} | {'net MB/s':>8} | {'all runs MB/s':<26} |"
        f" {'s':>6} | {'RSS +MiB':>8} | {'server CPU s':>12} | {'client CPU s':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if row.skipped is not None or not row.runs:
            why = row.skipped or "; ".join(row.errors)[:120]
            print(f"{row.client:<6} {row.server:<12} | skipped: {why}")
            continue
        sink = _find(rows, row.client, "sink")
        every = " ".join(f"{row.size / r.seconds / 1e6:.0f}" for r in row.runs)
        cpu = statistics.median(r.server_cpu for r in row.runs)
        client = statistics.median(r.client_cpu for r in row.runs)
        print(
            f"{row.client:<6} {row.server:<12} | {fmt(row.mbps, '6.1f')} |"
            f" {fmt(_net(row, sink), '8.1f')} | {every:<26} | {fmt(row.seconds, '6.2f')} |"
            f" {fmt(row.rss_mib, '8.1f')} | {cpu:12.2f} | {client:12.2f}"
        )
    print(
        "MB/s: the artifact's size over the client command's median wall time; net: over that"
        " time less the sink's (the client's own), the server's part; RSS: the worst run's peak"
        " growth of the server's process tree; CPU: medians, seconds per upload."
    )


def goal_lines(rows: list[Row]) -> list[str]:
    lines = []
    for client, peers_ in (("twine", PYPI_PEERS), ("post", PYPI_PEERS), ("npm", NPM_PEERS),
                           ("put", NPM_PEERS)):  # fmt: skip
        ours = _find(rows, client, "artifactapi")
        sink = _find(rows, client, "sink")
        measured_peers = [p for p in (_find(rows, client, name) for name in peers_) if p]
        label = REPLAYED.get(client, client)
        what = f"{label} upload of {rows[0].size / MiB:.0f} MiB" if rows else client
        if ours is None or not measured_peers or ours.mbps is None:
            lines.append(f"{what} vs the faster peer: not measured")
        else:
            faster = max(measured_peers, key=lambda r: r.mbps or 0.0)
            assert faster.mbps is not None
            ratio = ours.mbps / faster.mbps
            verdict = "met" if ratio >= GOAL_PEER else "MISSED"
            net_ours, net_peer = _net(ours, sink), _net(faster, sink)
            net = ""
            if net_ours and net_peer:
                net = f"; net of the client's own time: {net_ours / net_peer:.2f} x"
            ceiling = (
                f", sink {sink.mbps:.0f} MB/s (the client's ceiling)" if sink and sink.mbps else ""
            )
            lines.append(
                f"{what} vs the faster peer: {ratio:.2f} x {faster.server} (artifactapi"
                f" {ours.mbps:.0f} MB/s, {faster.server} {faster.mbps:.0f} MB/s{ceiling}),"
                f" goal >= {GOAL_PEER}: {verdict}{net}"
            )
        for row in [ours, *measured_peers]:
            if row is None or row.rss_mib is None:
                continue
            goal = ""
            if row is ours:
                goal = f", goal < {GOAL_RSS_MIB} MiB: {'met' if row.rss_mib < GOAL_RSS_MIB else 'MISSED'}"
            lines.append(f"{what}: {row.server} RSS growth +{row.rss_mib:.1f} MiB{goal}")
    return lines


def write_json(rows: list[Row], config: dict[str, Any], lines: list[str],
               skipped: dict[str, str]) -> Path:  # fmt: skip
    path = RESULTS / "publish.json"
    payload = {
        "config": config, "goals": lines, "skipped": skipped,
        "results": [{**asdict(row), "mbps": row.mbps, "seconds": row.seconds,
                     "rss_mib": row.rss_mib} for row in rows],
    }  # fmt: skip
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def main() -> None:
    settings = Settings(
        size=env_int("BENCH_PUBLISH_MIB", 100) * MiB,
        runs=env_int("BENCH_PUBLISH_RUNS", 5),
        workers=env_int("BENCH_PUBLISH_WORKERS", 2),
        servers=env_names("BENCH_PUBLISH_SERVERS", ALL),
    )
    for failure in peers.install():
        print(f"peers: {failure}", file=sys.stderr)
    print(
        f"publish: {settings.size // MiB} MiB, {settings.runs} runs, servers"
        f" {','.join(settings.servers)}",
        file=sys.stderr,
    )
    rows, skipped = in_scratch("publish-", lambda scratch: run_all(settings, scratch))
    print()
    print_table(rows)
    lines = goal_lines(rows)
    print()
    print("\n".join(lines + [f"skipped: {k}: {v}" for k, v in skipped.items()]))
    config = {**asdict(settings), "cpus": os.cpu_count()}
    print(f"\nwrote {write_json(rows, config, lines, skipped)}")


if __name__ == "__main__":
    main()
