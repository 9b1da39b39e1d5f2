"""The index pages of big local packages: a simple page of 2,000 files, a packument of 5,000 versions.

One run, one server at a time (its seeding and timing have the machine), each a real
process with a user (bench/peers.py, bench/publish.py start them; bench/seed.py fills
them):

* PyPI: a project of BENCH_PAGES_FILES (2000) small wheels (a quarter as many versions,
  four platform tags each) in artifactapi's local repository, devpi-server's
  ``bench/dev`` and pypiserver; its simple page (PEP 503 HTML, what all three answer);
* npm: a package of BENCH_PAGES_VERSIONS (5000) versions in artifactapi's local
  repository and Verdaccio; its full packument (``Accept: application/json``) and the
  abbreviated one ``npm install`` asks for.

Once the server is idle again after the seeding (under 5% of a core for a second: what a
burst of publishes leaves behind, writeback or a WAL checkpoint, is not the page's cost),
each page is fetched once and must list every file or version before it is timed, then
for each of BENCH_PAGES_ENCODINGS (``identity,gzip``: no ``Accept-Encoding``, and the
``gzip, deflate`` pip and npm send):

* ``warm``: one client on one keep-alive connection asking again and again for
  BENCH_PAGES_SECONDS (10), each request timed to its last byte (Python's http.client,
  the body read but not parsed): p50 and p99 (the goal: p99 < 10 ms), and req/s;
* ``load``: wrk with BENCH_PAGES_CONNECTIONS (16) connections and two threads: req/s, p99;
* ``after``: BENCH_PAGES_AFTER (10) times, one more file or version published and the
  page fetched right after on a new connection: the first request to see the change
  (it must list it, or it counts as stale), median and worst.

``aiohttp``: bench/floor.py answering artifactapi's own page bytes (as sent, compressed
or not) from memory with the same worker count: the most an aiohttp service can do with
that page on this machine, and the peer where the real peers are far behind.

Requests carry what the real client would: the credentials pip sends for the simple
pages (artifactapi's API token as Basic ``__token__``; devpi and pypiserver read
anonymously and ignore them), npm's Bearer token for the packuments.

Environment: BENCH_PAGES_FILES, BENCH_PAGES_VERSIONS, BENCH_PAGES_SECONDS,
BENCH_PAGES_CONNECTIONS, BENCH_PAGES_AFTER, BENCH_PAGES_ENCODINGS, BENCH_PAGES_WORKERS (2,
artifactapi's ``server.workers``), BENCH_PAGES_SERVERS (``artifactapi,devpi,pypiserver,
verdaccio``). ``python -m bench.pages`` runs it alone.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import os
import shutil
import statistics
import sys
import time
import urllib.parse
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from bench import peers, seed
from bench.harness import RESULTS, Server, env_int, env_names, fmt, in_scratch, tree_cpu, tree_pids
from bench.packages import WHEEL_TAGS, wheel_name
from bench.peers import NpmRegistry, PyPIIndex
from bench.proxy import Result, run_wrk, start_floor
from bench.publish import FAILURES, start_artifactapi

PROJECT = "bench-pages"
PACKAGE = "bench-pages"
GOAL_P99_MS = 10.0
ALL = ("artifactapi", "devpi", "pypiserver", "verdaccio")
PEERS = {"pypi": ("devpi", "pypiserver"), "npm": ("verdaccio",)}
# kind: (variant, its Accept header), the first one also timed after publishes
VARIANTS = {
    "pypi": (("simple", "text/html"),),
    "npm": (
        ("full", "application/json"),
        ("abbreviated", "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8"),
    ),
}
ENCODINGS = {"identity": {}, "gzip": {"Accept-Encoding": "gzip, deflate"}}


@dataclass
class Settings:
    files: int
    versions: int
    seconds: int
    connections: int
    after: int
    workers: int
    encodings: tuple[str, ...]
    servers: tuple[str, ...]


# -- one page -------------------------------------------------------------------------------


def get(server: Server, path: str, headers: dict[str, str]) -> tuple[float, bytes, bytes]:
    """One GET on a new connection: seconds to the last byte, the body as sent, decoded."""
    parts = urllib.parse.urlsplit(server.base)
    start = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{server.name} GET {path}: {response.status} {raw[:200]!r}")
        coding = (response.getheader("Content-Encoding") or "").lower()
    finally:
        connection.close()
    if coding == "gzip":
        return elapsed, raw, gzip.decompress(raw)
    if coding == "deflate":
        return elapsed, raw, zlib.decompress(raw)
    return elapsed, raw, raw


def count_entries(body: bytes, kind: str) -> int:
    if kind == "pypi":
        return body.count(b".whl</a>")
    return len(json.loads(body)["versions"])


@dataclass
class After:
    """The first GETs of a page right after a publish changed it."""

    ms: list[float] = field(default_factory=list)
    stale: int = 0  # answers that did not list the new file or version

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.ms) if self.ms else None

    @property
    def worst_ms(self) -> float | None:
        return max(self.ms) if self.ms else None


@dataclass
class Warm:
    """One client asking again and again on one keep-alive connection, as a build does."""

    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    skipped: str | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def warm_loop(server: Server, path: str, headers: dict[str, str], seconds: float) -> Warm:
    """GETs in sequence for ``seconds``, each timed to its last byte. (wrk's own latency
    figures are not used for this: with one connection and megabyte answers, its p99
    came out above what its request count and run time allow.)"""
    parts = urllib.parse.urlsplit(server.base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    times: list[float] = []
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            began = time.perf_counter()
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            times.append(time.perf_counter() - began)
            if response.status != 200:
                return Warm(skipped=f"GET {path}: {response.status}")
        total = time.perf_counter() - start
    finally:
        connection.close()
    times.sort()

    def at(share: float) -> float:
        return times[min(len(times) - 1, int(len(times) * share))] * 1000

    return Warm(len(times), total, at(0.50), at(0.99), times[-1] * 1000)


@dataclass
class Page:
    kind: str  # "pypi" or "npm"
    variant: str  # "simple", "full", "abbreviated"
    encoding: str  # "identity" or "gzip": what the client said it accepts
    server: str
    entries: int = 0
    bytes: int = 0  # as sent
    warm: Warm | None = None
    load: Result | None = None
    after: After | None = None
    skipped: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.variant} {self.encoding}"


def _time(page: Page, server: Server, path: str, headers: dict[str, str], settings: Settings,
          scratch: Path) -> None:  # fmt: skip
    page.warm = warm_loop(server, path, headers, settings.seconds)
    page.load = run_wrk(server, page.variant, [path], settings.seconds, settings.connections,
                        scratch, headers, server.name)  # fmt: skip
    for name, result in (("warm", page.warm), ("load", page.load)):
        if result.skipped:
            raise RuntimeError(f"{name}: {result.skipped}")
        print(
            f"  {page.label:<25} {server.name:<11} {name} {result.rps:7.0f} req/s"
            f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:8.2f} ms  {page.bytes / 1e6:.2f} MB",
            file=sys.stderr,
        )


def _floor(raw: bytes, page: Page, settings: Settings, scratch: Path) -> Page:
    """bench/floor.py answering ``raw`` from memory: the framework's ceiling for it."""
    floor = Page(page.kind, page.variant, page.encoding, "aiohttp", page.entries, len(raw))
    root = scratch / f"floor-{page.kind}-{page.variant}-{page.encoding}"
    (root / "tree").mkdir(parents=True)
    (root / "tree" / "page.bin").write_bytes(raw)
    try:
        server = start_floor(root, root / "tree", "/page.bin")
    except FAILURES as exc:
        floor.skipped = str(exc)[-300:]
        return floor
    try:
        _time(floor, server, "/page.bin", {}, settings, scratch)
    finally:
        server.stop()
    return floor


def settle(server: Server, limit: float = 60.0) -> float:
    """Wait until the server is idle (under 5% of a core for a second): work a burst of
    publishes leaves behind (writeback, a WAL checkpoint, background batches) is not the
    page's cost. Seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        pids = tree_pids(server.process.pid)
        before = tree_cpu(pids)
        time.sleep(1.0)
        if tree_cpu(pids) - before < 0.05:
            break
    return time.perf_counter() - start


def measure(kind: str, server: Server, path: str, auth: dict[str, str], wanted: int,
            settings: Settings, scratch: Path) -> list[Page]:  # fmt: skip
    waited = settle(server)
    print(f"  {kind} {server.name}: idle after {waited:.0f} s", file=sys.stderr)
    pages = []
    for variant, accept in VARIANTS[kind]:
        for encoding in settings.encodings:
            page = Page(kind, variant, encoding, server.name)
            headers = {"Accept": accept, **ENCODINGS[encoding], **auth}
            _, raw, body = get(server, path, headers)
            page.entries, page.bytes = count_entries(body, kind), len(raw)
            if page.entries < wanted:
                raise RuntimeError(f"{server.name} {path} lists {page.entries} of {wanted}")
            _time(page, server, path, headers, settings, scratch)
            pages.append(page)
            if server.name == "artifactapi":
                pages.append(_floor(raw, page, settings, scratch))
    return pages


def after_publish(page: Page, server: Server, path: str, headers: dict[str, str], count: int,
                  publish: Callable[[int], str]) -> None:  # fmt: skip
    """``publish(n)`` makes the n-th change and says what the page must now contain."""
    page.after = after = After()
    for number in range(count):
        needle = publish(number).encode()
        seconds, _, body = get(server, path, headers)
        after.ms.append(seconds * 1000)
        after.stale += needle not in body
    print(
        f"  {page.label:<25} {server.name:<11} after publish: median {after.median_ms:7.2f} ms"
        f"  worst {after.worst_ms:7.2f} ms  stale {after.stale} of {count}",
        file=sys.stderr,
    )


# -- per server ------------------------------------------------------------------------------


def _after_page(pages: list[Page], kind: str, settings: Settings) -> Page:
    """The page the publishes are timed on: the first variant, as the clients ask (gzip)."""
    encoding = "gzip" if "gzip" in settings.encodings else settings.encodings[0]
    variant = VARIANTS[kind][0][0]
    return next(p for p in pages if (p.variant, p.encoding) == (variant, encoding))


def pypi_pages(index: PyPIIndex, settings: Settings, scratch: Path,
               stack: ExitStack) -> list[Page]:  # fmt: skip
    start = time.perf_counter()
    if index.server.name == "devpi":
        index = seed.seed_devpi(index, PROJECT, settings.files)
        stack.callback(index.server.stop)
    else:
        asyncio.run(seed.upload_wheels(index, PROJECT, seed.wheel_files(settings.files)))
    print(f"  pypi seeded {index.server.name}: {settings.files} files in"
          f" {time.perf_counter() - start:.1f} s", file=sys.stderr)  # fmt: skip
    path, auth = index.page(PROJECT), {"Authorization": index.basic}
    pages = measure("pypi", index.server, path, auth, settings.files, settings, scratch)
    page = _after_page(pages, "pypi", settings)

    def publish(number: int) -> str:
        version = f"9.0.{number}"
        asyncio.run(seed.upload_wheels(index, PROJECT, [(version, WHEEL_TAGS[0])], 1))
        return wheel_name(PROJECT, version)

    headers = {"Accept": VARIANTS["pypi"][0][1], **ENCODINGS[page.encoding], **auth}
    after_publish(page, index.server, path, headers, settings.after, publish)
    return pages


def npm_pages(registry: NpmRegistry, settings: Settings, scratch: Path) -> list[Page]:
    start = time.perf_counter()
    if registry.server.name == "verdaccio":
        seed.seed_verdaccio(registry, PACKAGE, settings.versions)
    else:
        asyncio.run(seed.publish_versions(registry, PACKAGE, seed.versions(settings.versions)))
    print(f"  npm seeded {registry.server.name}: {settings.versions} versions in"
          f" {time.perf_counter() - start:.1f} s", file=sys.stderr)  # fmt: skip
    path, auth = registry.packument(PACKAGE), {"Authorization": f"Bearer {registry.token}"}
    pages = measure("npm", registry.server, path, auth, settings.versions, settings, scratch)
    page = _after_page(pages, "npm", settings)

    def publish(number: int) -> str:
        version = f"9.0.{number}"
        asyncio.run(seed.publish_versions(registry, PACKAGE, [version], 1))
        return json.dumps(version)

    headers = {"Accept": VARIANTS["npm"][0][1], **ENCODINGS[page.encoding], **auth}
    after_publish(page, registry.server, path, headers, settings.after, publish)
    return pages


def _skipped(kind: str, server: str, why: str) -> Page:
    return Page(kind, VARIANTS[kind][0][0], "-", server, skipped=why)


def run_server(name: str, settings: Settings, scratch: Path) -> list[Page]:
    directory = scratch / name
    directory.mkdir()
    with ExitStack() as stack:
        pypi: PyPIIndex | None = None
        npm: NpmRegistry | None = None
        if name == "artifactapi":
            started = start_artifactapi(directory, settings.workers)
            stack.callback(started.server.stop)
            pypi, npm = started.pypi, started.npm
        elif name == "verdaccio":
            npm = peers.start_verdaccio(directory, 64)
            stack.callback(npm.server.stop)
        else:
            pypi = (peers.start_devpi if name == "devpi" else peers.start_pypiserver)(directory)
            stack.callback(pypi.server.stop)
        pages: list[Page] = []
        for kind, target in (("pypi", pypi), ("npm", npm)):
            try:
                if isinstance(target, PyPIIndex):
                    pages += pypi_pages(target, settings, scratch, stack)
                elif isinstance(target, NpmRegistry):
                    pages += npm_pages(target, settings, scratch)
            except (*FAILURES, aiohttp.ClientError, TimeoutError) as exc:
                why = str(exc).strip()[-300:] or type(exc).__name__
                print(f"  {kind} {name}: stopped: {why}", file=sys.stderr)
                pages.append(_skipped(kind, name, why))
        return pages


def run_all(settings: Settings, scratch: Path) -> list[Page]:
    pages: list[Page] = []
    for name in settings.servers:
        print(name, file=sys.stderr)
        try:
            pages += run_server(name, settings, scratch)
        except FAILURES as exc:
            why = str(exc).strip()[-300:] or type(exc).__name__
            print(f"  {name}: skipped: {why}", file=sys.stderr)
            kinds = [k for k, names in PEERS.items() if name in names] or list(VARIANTS)
            pages += [_skipped(kind, name, why) for kind in kinds]
    return pages


# -- report ---------------------------------------------------------------------------------


def print_table(pages: list[Page]) -> None:
    header = (
        f"{'page':<25} {'server':<11} | {'entries':>7} | {'MB':>5} | {'warm p50':>8} |"
        f" {'warm p99':>8} | {'warm r/s':>8} | {'load r/s':>8} | {'load p99':>8} |"
        f" {'after med':>9} | {'after max':>9} | stale"
    )
    print(header)
    print("-" * len(header))
    for page in pages:
        if page.skipped is not None or page.warm is None or page.load is None:
            print(f"{page.label:<25} {page.server:<11} | skipped: {(page.skipped or '')[:100]}")
            continue
        after = page.after
        print(
            f"{page.label:<25} {page.server:<11} | {page.entries:7d} | {page.bytes / 1e6:5.2f} |"
            f" {page.warm.p50_ms:8.2f} | {page.warm.p99_ms:8.2f} | {page.warm.rps:8.0f} |"
            f" {page.load.rps:8.0f} | {page.load.p99_ms:8.2f} |"
            f" {fmt(after.median_ms if after else None, '9.2f')} |"
            f" {fmt(after.worst_ms if after else None, '9.2f')} | {after.stale if after else '-'}"
        )
    print(
        "warm: one connection, each request's latency (ms) and req/s; load:"
        " BENCH_PAGES_CONNECTIONS connections; MB: the body as sent; after: the first GET right"
        " after a publish, on a new connection (stale: answers not listing the change yet);"
        " aiohttp: bare aiohttp answering artifactapi's page bytes from memory (bench/floor.py)."
    )


def _find(pages: list[Page], page: Page, server: str) -> Page | None:
    for other in pages:
        same = (other.kind, other.variant, other.encoding) == (
            page.kind,
            page.variant,
            page.encoding,
        )
        if same and other.server == server and other.warm is not None and other.load is not None:
            return other
    return None


def goal_lines(pages: list[Page], settings: Settings) -> list[str]:
    lines = []
    names = {"simple": f"simple page of {settings.files} files",
             "full": f"packument of {settings.versions} versions",
             "abbreviated": f"abbreviated packument of {settings.versions} versions"}  # fmt: skip
    measured = [p for p in pages if p.server == "artifactapi" and p.warm and p.load]
    for kind in VARIANTS:
        if not any(p.kind == kind for p in measured):
            lines.append(f"{kind} pages of artifactapi: not measured")
    for ours in measured:
        assert ours.warm is not None and ours.load is not None
        what = f"{names[ours.variant]} ({ours.encoding}, {ours.bytes / 1e6:.2f} MB)"
        verdict = "met" if ours.warm.p99_ms < GOAL_P99_MS else "MISSED"
        floor = _find(pages, ours, "aiohttp")
        floor_p99 = f" (bare aiohttp {floor.warm.p99_ms:.2f} ms)" if floor and floor.warm else ""
        lines.append(
            f"{what}, warm: artifactapi p50 {ours.warm.p50_ms:.2f} ms, p99"
            f" {ours.warm.p99_ms:.2f} ms{floor_p99}, goal p99 < {GOAL_P99_MS:g} ms: {verdict}"
        )
        for peer in (_find(pages, ours, p) for p in (*PEERS[ours.kind], "aiohttp")):
            if peer is None or peer.warm is None or peer.load is None or not peer.load.rps:
                continue
            lines.append(
                f"{what}, {settings.connections} connections: artifactapi {ours.load.rps:,.0f}"
                f" req/s = {ours.load.rps / peer.load.rps:.2f} x {peer.server}"
                f" ({peer.load.rps:,.0f} req/s); warm p50 {ours.warm.p50_ms:.2f} ms vs"
                f" {peer.warm.p50_ms:.2f} ms"
            )
    for page in pages:
        if page.after is not None and page.after.ms:
            lines.append(
                f"{names[page.variant]} ({page.encoding}), first GET after a publish:"
                f" {page.server} median {page.after.median_ms:.2f} ms, worst"
                f" {page.after.worst_ms:.2f} ms, stale {page.after.stale} of {len(page.after.ms)}"
            )
    return lines


def write_json(pages: list[Page], settings: Settings, lines: list[str]) -> Path:
    path = RESULTS / "pages.json"
    rows = []
    for page in pages:
        row = asdict(page)
        if page.after is not None:
            row["after"].update(median_ms=page.after.median_ms, worst_ms=page.after.worst_ms)
        rows.append(row)
    payload = {"config": {**asdict(settings), "cpus": os.cpu_count()}, "goals": lines,
               "results": rows}  # fmt: skip
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def main() -> None:
    settings = Settings(
        files=env_int("BENCH_PAGES_FILES", 2000),
        versions=env_int("BENCH_PAGES_VERSIONS", 5000),
        seconds=env_int("BENCH_PAGES_SECONDS", 10),
        connections=env_int("BENCH_PAGES_CONNECTIONS", 16),
        after=env_int("BENCH_PAGES_AFTER", 10),
        workers=env_int("BENCH_PAGES_WORKERS", 2),
        encodings=env_names("BENCH_PAGES_ENCODINGS", tuple(ENCODINGS)),
        servers=env_names("BENCH_PAGES_SERVERS", ALL),
    )
    if shutil.which("wrk") is None:
        print("pages: skipped: wrk not found (apt-get install wrk)")
        return
    for failure in peers.install():
        print(f"peers: {failure}", file=sys.stderr)
    print(f"pages: {asdict(settings)}", file=sys.stderr)
    pages = in_scratch("pages-", lambda scratch: run_all(settings, scratch))
    print()
    print_table(pages)
    lines = goal_lines(pages, settings)
    print()
    print("\n".join(lines))
    print(f"\nwrote {write_json(pages, settings, lines)}")


if __name__ == "__main__":
    main()
