"""Plumbing shared by the benchmarks: a synthetic byte source, peak RSS, child processes.

Every measurement runs in a fresh child process (``python -m <module> --child SPEC``),
so one case's allocations, threads and page cache state do not leak into the next
one's peak RSS, and the parent only orchestrates and reports.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"  # gitignored; also holds the scratch directories

BLOCK = MiB
POOL_BLOCKS = 16
POOL_SEED = 20240601
SETTLE_SECONDS = 0.5  # after the sync, before each child starts


def _pool() -> list[bytes]:
    rng = random.Random(POOL_SEED)
    return [rng.randbytes(BLOCK) for _ in range(POOL_BLOCKS)]


class Source:
    """``size`` bytes built from a 16 MiB pool of random blocks, cut into ``piece``-byte reads.

    The first block starts with ``nonce``, so every run has a new digest and the CAS
    never finds the content already stored. Pieces smaller than a block are fresh
    ``bytes`` objects, like the reads of a network stream; a piece of a whole block is
    the pooled block itself (no copy).
    """

    def __init__(self, size: int, piece: int, nonce: bytes) -> None:
        self.size = size
        self.piece = piece
        self._pool = _pool()
        self._head = nonce + self._pool[0][len(nonce) :]

    def blocks(self) -> Iterator[bytes]:
        full, rest = divmod(self.size, BLOCK)
        for index in range(full):
            yield self._head if index == 0 else self._pool[index % POOL_BLOCKS]
        if rest:
            yield (self._head if full == 0 else self._pool[full % POOL_BLOCKS])[:rest]

    def pieces(self) -> Iterator[bytes]:
        step = self.piece
        for block in self.blocks():
            for offset in range(0, len(block), step):
                yield block[offset : offset + step]

    async def stream(self) -> AsyncIterator[bytes]:
        for piece in self.pieces():
            yield piece

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for block in self.blocks():
            digest.update(block)
        return digest.hexdigest()


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


@dataclass
class Sample:
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system time of the whole process, all threads
    # CPU time the rest of the machine used meanwhile: the S3 server, kernel writeback
    # threads, other tenants of a shared machine.
    others_cpu_seconds: float = 0.0
    rss_growth: int = 0  # bytes above the RSS at the start of the measurement


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent in user, system, irq and softirq since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def measured() -> Iterator[Sample]:
    """Time the block and report how far RSS peaked above its value at the start.

    Writing 5 to ``/proc/self/clear_refs`` resets the kernel's high-water mark
    (VmHWM), so the peak belongs to this block alone; where that is refused, the
    process-lifetime ``ru_maxrss`` is used instead (an overestimate).
    """
    sample = Sample()
    baseline = _status_bytes("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    start, cpu, machine = time.perf_counter(), time.process_time(), machine_busy_seconds()
    yield sample
    sample.seconds = time.perf_counter() - start
    sample.cpu_seconds = time.process_time() - cpu
    others = machine_busy_seconds() - machine - sample.cpu_seconds
    sample.others_cpu_seconds = max(0.0, others)
    if reset:
        peak = _status_bytes("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sample.rss_growth = max(0, peak - baseline)


class ChildFailed(RuntimeError):
    pass


def run_child(module: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``module``'s child entry point on ``spec``; its last stdout line is the JSON result.

    Dirty pages are flushed first, so no case pays for the previous one's writeback.
    """
    os.sync()
    time.sleep(SETTLE_SECONDS)
    command = [sys.executable, "-m", module, "--child", json.dumps(spec)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise ChildFailed("\n".join(tail) or f"exit status {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def warm_page_pool(size: int, directory: Path) -> None:
    """Write ``size`` bytes to a file and delete it.

    On this VM, page-cache pages the guest has not touched lately cost about 3 s of
    kernel CPU per GiB to obtain (a DAMON ``pageout`` scheme hands idle memory back
    to the host within seconds), and pages just freed by a deleted file almost
    nothing. Called right before a timed section that writes ``size`` bytes, so that
    every case starts from the same state instead of whichever needs fresh pages
    looking 3 to 5 times slower.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "warm-up"
    block = bytes(MiB)
    with open(path, "wb", buffering=0) as handle:
        for _ in range(size // MiB):
            handle.write(block)
        os.fsync(handle.fileno())
    path.unlink()


def child_main(run: Any) -> None:
    """Entry point of a child: ``run(spec)`` returns a JSON-able dict, printed last."""
    spec = json.loads(sys.argv[2])
    print(json.dumps(run(spec)), flush=True)


def is_child() -> bool:
    return sys.argv[1:2] == ["--child"] and len(sys.argv) == 3


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def env_names(name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A comma list from the environment, each one of ``allowed``; unset: all of them."""
    value = os.environ.get(name, "")
    names = tuple(n.strip() for n in value.split(",") if n.strip()) or allowed
    unknown = set(names) - set(allowed)
    if unknown:
        raise SystemExit(f"{name}: unknown {sorted(unknown)}; choose from {allowed}")
    return names


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec`` (e.g. ``8.2f``), or a dash as wide for none."""
    width = int(spec.split(".")[0])
    return f"{'-':>{width}}" if value is None else format(value, spec)


# -- server processes ----------------------------------------------------------------

READY_TIMEOUT = 60.0


@dataclass
class Server:
    """A server under test, run as a process in ``directory`` (its config and logs)."""

    name: str
    base: str
    process: subprocess.Popen[bytes]
    directory: Path
    # artifactapi's administrator, as its first start made it (None: a peer, no auth).
    user: str | None = None
    password: str | None = None

    @property
    def basic(self) -> str:
        """The ``Authorization`` value curl -u or aiohttp's BasicAuth would send."""
        if self.user is None or self.password is None:
            raise RuntimeError(f"{self.name} has no credentials")
        pair = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return f"Basic {pair}"

    @property
    def creds(self) -> str:
        """``user:password``, as curl -u and skopeo --src-creds/--dest-creds take it."""
        if self.user is None or self.password is None:
            raise RuntimeError(f"{self.name} has no credentials")
        return f"{self.user}:{self.password}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        logs = [p.read_text(errors="replace") for p in sorted(self.directory.glob("*.log"))]
        return "".join(logs)[-1500:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def spawn(
    command: list[str], directory: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in ``directory``, its output in stdout.log and stderr.log there."""
    with open(directory / "stdout.log", "wb") as out, open(directory / "stderr.log", "wb") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, cwd=directory, env=env)


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    return urllib.request.urlopen(request, timeout=timeout)


def answers(url: str) -> bool:
    try:
        with http_get(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(server: Server, url: str) -> Server:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and server.process.poll() is None:
        if answers(url):
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not start:\n{server.log_tail()}")


def json_request(
    url: str, method: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json",
                 **(headers or {})},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every process below it (a server's workers, a node's helpers)."""
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
    return pids


def tree_cpu(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used so far."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


ADMIN = "admin"  # the user artifactapi's first start makes


def run_artifactapi(directory: Path, config: dict[str, Any]) -> Server:
    """``python -m app serve`` with ``config``; returns once it prints where it listens.

    The database must hold no users: the first start then makes ``admin`` with a random
    password and writes it to a file in ``directory``, which becomes the server's
    credentials (``Server.basic``, ``Server.creds``; :func:`api_token` for a token),
    what an operator would read after installing it.
    """
    auth = {"initial_admin_password_file": str(directory / "initial-admin-password")}
    config = {**config, "auth": {**auth, **config.get("auth", {})}}
    path = directory / "artifactapi.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    command = [sys.executable, "-m", "app", "--config", str(path), "serve"]
    process = spawn(command, directory, {**os.environ, "PYTHONPATH": str(REPO)})
    server = Server("artifactapi", "", process, directory)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        for line in (directory / "stdout.log").read_text(errors="replace").splitlines():
            if line.startswith("artifactapi listening on "):
                server.base = line.split()[3]
                _admin_credentials(server, Path(config["auth"]["initial_admin_password_file"]))
                return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"artifactapi did not start:\n{server.log_tail()}")


def _admin_credentials(server: Server, password_file: Path) -> None:
    # The workers have run their startup (which makes the admin) before anyone listens.
    if not password_file.exists():
        server.stop()
        raise RuntimeError(
            f"artifactapi made no admin (the database already had users): {password_file}"
        )
    server.user, server.password = ADMIN, password_file.read_text().strip()


def artifactapi_cli(server: Server, *args: str, stdin: str = "") -> str:
    """``python -m app --config … ARGS`` against the server's database; its stdout."""
    config = server.directory / "artifactapi.yaml"
    command = [sys.executable, "-m", "app", "--config", str(config), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        command, input=stdin, capture_output=True, text=True, cwd=server.directory, env=env,
        check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"artifactapi {' '.join(args[:2])}: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def api_token(server: Server, user: str = ADMIN) -> str:
    """A new API token of ``user`` (``artifactapi token create``), for Bearer headers."""
    return artifactapi_cli(server, "token", "create", "--user", user).strip().splitlines()[-1]


# -- results -------------------------------------------------------------------------


class Measured(Protocol):
    @property
    def mbps(self) -> float: ...

    @property
    def rss_mib(self) -> float: ...


R = TypeVar("R", bound=Measured)


def best_run(runs: Sequence[R]) -> R | None:
    """The fastest run: the machine is shared, and slower runs measure the neighbours."""
    return max(runs, key=lambda run: run.mbps) if runs else None


def peak_rss(runs: Sequence[Measured]) -> float | None:
    """The worst memory growth of any run."""
    return max(run.rss_mib for run in runs) if runs else None


def service_token(server: Server, name: str, repository: str, actions: str = "read") -> str:
    """An API token of a new service account ``name`` granted ``actions`` in
    ``repository`` (what a CI job would hold): no admin short cut in the server's check."""
    artifactapi_cli(server, "user", "create", name, "--service")
    artifactapi_cli(server, "perm", "grant", f"user:{name}", repository, actions)
    return api_token(server, name)


T = TypeVar("T")


def in_scratch(prefix: str, run: Callable[[Path], T]) -> T:
    """``run(folder)`` in a folder of its own under bench/results, removed afterwards
    whatever happens."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=RESULTS))
    try:
        return run(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
