"""The index pages of big local packages: a simple page of 2,000 files, a packument of 5,000 versions.

One run, every server a real process on this machine with a user (bench/peers.py,
bench/publish.py start them):

* PyPI: a project of BENCH_PAGES_FILES (2000) small wheels (BENCH_PAGES_FILES / 4
  versions, four platform tags each) uploaded through the legacy upload API twine uses
  (the same multipart POST, with the same digests and credentials) to artifactapi's
  local repository, devpi-server's ``bench/dev`` and pypiserver; then its simple page
  (PEP 503 HTML, what every server answers);
* npm: a package of BENCH_PAGES_VERSIONS (5000) versions published one ``PUT`` each as
  ``npm publish`` sends it (the packument of the version, the tarball inline) to
  artifactapi's local repository and Verdaccio (one at a time for Verdaccio: concurrent
  publishes lose versions there); then its full packument (``Accept: application/json``)
  and the abbreviated one npm install asks for.

Each page is checked to list every file or version before it is timed. ``warm``: wrk
with one connection for BENCH_PAGES_SECONDS (10) after a first GET, each request's own
latency (p50, p99: the goal's figures, < 10 ms); ``load``: wrk with BENCH_PAGES_CONNECTIONS
(16) connections and two threads, req/s and its p99. ``after publish``: BENCH_PAGES_AFTER
(10) times, one more file or version published and the page fetched right after on a new
connection (the first request to see the change, which must list it), median and worst.

``aiohttp``: bench/floor.py answering artifactapi's own page bytes from memory with the
same worker count, the most an aiohttp service can do with that page here.

Requests carry what the real client would send: pip's Basic credentials for the simple
pages (devpi and pypiserver read anonymously and ignore them), npm's Bearer token for
the packuments; no ``Accept-Encoding`` (wrk does not decompress, and nobody compresses
for it: the figures are the pages' own bytes).

Environment: BENCH_PAGES_FILES, BENCH_PAGES_VERSIONS, BENCH_PAGES_SECONDS,
BENCH_PAGES_CONNECTIONS, BENCH_PAGES_AFTER, BENCH_PAGES_WORKERS (2, artifactapi's
``server.workers``), BENCH_PAGES_SERVERS (``artifactapi,devpi,pypiserver,verdaccio``).
``python -m bench.pages`` runs it alone.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from bench import peers, seed
from bench.harness import RESULTS, Server, env_int, http_get
from bench.packages import WHEEL_TAGS, wheel_name
from bench.peers import NpmRegistry, PyPIIndex
from bench.proxy import Result, run_wrk, start_floor
from bench.publish import FAILURES, start_artifactapi

PROJECT = "bench-pages"
PACKAGE = "bench-pages"
GOAL_P99_MS = 10.0
ALL = ("artifactapi", "devpi", "pypiserver", "verdaccio")
HTML = {"Accept": "text/html"}
FULL = {"Accept": "application/json"}
ABBREVIATED = {"Accept": "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8"}


@dataclass
class Settings:
    files: int
    versions: int
    seconds: int
    connections: int
    after: int
    workers: int
    servers: tuple[str, ...]


# -- what a page must hold --------------------------------------------------------------------


def fetch(server: Server, path: str, headers: dict[str, str]) -> bytes:
    with http_get(f"{server.base}{path}", headers) as response:
        body: bytes = response.read()
        return body


def count_entries(body: bytes, kind: str) -> int:
    if kind == "pypi":
        return body.count(b".whl</a>")
    document = json.loads(body)
    return len(document["versions"])


@dataclass
class After:
    """The first GET of a page right after a publish changed it."""

    ms: list[float] = field(default_factory=list)
    stale: int = 0  # answers that did not list the new file or version yet

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.ms) if self.ms else None

    @property
    def worst_ms(self) -> float | None:
        return max(self.ms) if self.ms else None


def timed_get(server: Server, path: str, headers: dict[str, str]) -> tuple[float, bytes]:
    """One GET on a new connection: seconds to the last byte, and the body."""
    parts = urllib.parse.urlsplit(server.base)
    start = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status}")
        return elapsed, body
    finally:
        connection.close()


# -- one page, measured --------------------------------------------------------------------


@dataclass
class Page:
    kind: str  # "pypi" or "npm"
    variant: str  # "simple", "full", "abbreviated"
    server: str
    entries: int = 0
    bytes: int = 0
    warm: Result | None = None
    load: Result | None = None
    after: After | None = None
    skipped: str | None = None


def measure_page(page: Page, server: Server, path: str, headers: dict[str, str],
                 settings: Settings, scratch: Path, wanted: int) -> bytes:  # fmt: skip
    body = fetch(server, path, headers)
    page.entries, page.bytes = count_entries(body, page.kind), len(body)
    if page.entries < wanted:
        raise RuntimeError(f"{server.name} {path} lists {page.entries} of {wanted}")
    label = f"{server.name}"
    page.warm = run_wrk(server, page.variant, [path], settings.seconds, 1, scratch, headers, label)
    page.load = run_wrk(
        server, page.variant, [path], settings.seconds, settings.connections, scratch, headers,
        label,
    )  # fmt: skip
    for name, result in (("warm", page.warm), ("load", page.load)):
        if result.skipped:
            raise RuntimeError(f"{name}: {result.skipped}")
        print(
            f"  {page.kind:<4} {page.variant:<11} {server.name:<11} {name} {result.rps:8.0f} req/s"
            f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
            f"  {page.bytes / 1e6:.2f} MB",
            file=sys.stderr,
        )
    return body


def after_publish(server: Server, path: str, headers: dict[str, str], count: int,
                  publish: Callable[[int], str]) -> After:  # fmt: skip
    """``publish(n)`` makes the n-th change and says what the page must now contain."""
    after = After()
    for number in range(count):
        needle = publish(number).encode()
        seconds, body = timed_get(server, path, headers)
        after.ms.append(seconds * 1000)
        after.stale += needle not in body
    median, worst = after.median_ms or 0.0, after.worst_ms or 0.0
    print(
        f"       after publish {server.name:<11} median {median:7.2f} ms  worst {worst:7.2f} ms"
        f"  stale {after.stale} of {count}",
        file=sys.stderr,
    )
    return after


def _floor_page(body: bytes, settings: Settings, scratch: Path, label: str,
                variant: str) -> Page:  # fmt: skip
    """bench/floor.py answering ``body`` from memory: the framework's ceiling for it."""
    page = Page(label, variant, "aiohttp", bytes=len(body))
    root = scratch / f"floor-{label}-{variant}"
    (root / "tree").mkdir(parents=True)
    (root / "tree" / "page.bin").write_bytes(body)
    try:
        server = start_floor(root, root / "tree", "/page.bin")
    except FAILURES as exc:
        page.skipped = str(exc)[-300:]
        return page
    try:
        page.warm = run_wrk(server, variant, ["/page.bin"], settings.seconds, 1, scratch)
        page.load = run_wrk(
            server, variant, ["/page.bin"], settings.seconds, settings.connections, scratch
        )
    finally:
        server.stop()
    return page


# -- the run ---------------------------------------------------------------------------------


def _wheel_publisher(index: PyPIIndex) -> Callable[[int], str]:
    def publish(number: int) -> str:
        version = f"9.0.{number}"
        asyncio.run(seed.upload_wheels(index, PROJECT, [(version, WHEEL_TAGS[0])], 1))
        return wheel_name(PROJECT, version)

    return publish


def _version_publisher(registry: NpmRegistry) -> Callable[[int], str]:
    def publish(number: int) -> str:
        version = f"9.0.{number}"
        asyncio.run(seed.publish_versions(registry, PACKAGE, [version], 1))
        return json.dumps(version)

    return publish


def _seed_pypi(index: PyPIIndex, files: int) -> PyPIIndex:
    if index.server.name == "devpi":
        return seed.seed_devpi(index, PROJECT, files)
    asyncio.run(seed.upload_wheels(index, PROJECT, seed.wheel_files(files)))
    return index


def _seed_npm(registry: NpmRegistry, versions: int) -> None:
    if registry.server.name == "verdaccio":
        seed.seed_verdaccio(registry, PACKAGE, versions)
    else:
        asyncio.run(seed.publish_versions(registry, PACKAGE, seed.versions(versions)))


def pypi_pages(index: PyPIIndex, settings: Settings, scratch: Path, floor: bool,
               stack: ExitStack) -> list[Page]:  # fmt: skip
    pages: list[Page] = []
    start = time.perf_counter()
    seeded = _seed_pypi(index, settings.files)
    if seeded is not index:
        stack.callback(seeded.server.stop)
        index = seeded
    seconds = time.perf_counter() - start
    print(f"  pypi seeded {index.server.name}: {settings.files} files in {seconds:.1f} s",
          file=sys.stderr)  # fmt: skip
    path = index.page(PROJECT)
    headers = {**HTML, "Authorization": index.basic}
    page = Page("pypi", "simple", index.server.name)
    pages.append(page)
    body = measure_page(page, index.server, path, headers, settings, scratch, settings.files)
    if floor:
        pages.append(_floor_page(body, settings, scratch, "pypi", "simple"))
    page.after = after_publish(index.server, path, headers, settings.after, _wheel_publisher(index))
    return pages


def npm_pages(registry: NpmRegistry, settings: Settings, scratch: Path, floor: bool) -> list[Page]:
    pages: list[Page] = []
    start = time.perf_counter()
    _seed_npm(registry, settings.versions)
    seconds = time.perf_counter() - start
    print(f"  npm seeded {registry.server.name}: {settings.versions} versions in {seconds:.1f} s",
          file=sys.stderr)  # fmt: skip
    path = registry.packument(PACKAGE)
    bearer = {"Authorization": f"Bearer {registry.token}"}
    full = Page("npm", "full", registry.server.name)
    for variant, accept in (("full", FULL), ("abbreviated", ABBREVIATED)):
        page = full if variant == "full" else Page("npm", variant, registry.server.name)
        pages.append(page)
        headers = {**accept, **bearer}
        body = measure_page(page, registry.server, path, headers, settings, scratch,
                            settings.versions)  # fmt: skip
        if floor:
            pages.append(_floor_page(body, settings, scratch, "npm", variant))
    publisher = _version_publisher(registry)
    full.after = after_publish(registry.server, path, {**FULL, **bearer}, settings.after, publisher)
    return pages


def run_server(name: str, settings: Settings, scratch: Path) -> list[Page]:
    """One server at a time, started fresh: its seeding and measuring have the machine."""
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
        pages = []
        floor = name == "artifactapi"
        for kind, target in (("pypi", pypi), ("npm", npm)):
            if target is None:
                continue
            try:
                if isinstance(target, PyPIIndex):
                    pages += pypi_pages(target, settings, scratch, floor, stack)
                else:
                    pages += npm_pages(target, settings, scratch, floor)
            except (TimeoutError, *FAILURES, aiohttp.ClientError) as exc:
                why = str(exc).strip()[-300:] or type(exc).__name__
                print(f"  {kind} {name}: stopped: {why}", file=sys.stderr)
                pages.append(Page(kind, "simple" if kind == "pypi" else "full", name, skipped=why))
        return pages


def run_all(settings: Settings, scratch: Path) -> list[Page]:
    pages: list[Page] = []
    for name in settings.servers:
        print(f"{name}", file=sys.stderr)
        try:
            pages += run_server(name, settings, scratch)
        except FAILURES as exc:
            why = str(exc).strip()[-300:] or type(exc).__name__
            print(f"  {name}: skipped: {why}", file=sys.stderr)
            kinds = {"verdaccio": ("npm",), "artifactapi": ("pypi", "npm")}.get(name, ("pypi",))
            for kind in kinds:
                pages.append(Page(kind, "simple" if kind == "pypi" else "full", name, skipped=why))
    return pages


# -- report --------------------------------------------------------------------------------

PEERS = {"pypi": ("devpi", "pypiserver"), "npm": ("verdaccio",)}


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0])
    return f"{'-':>{width}}" if value is None else format(value, spec)


def print_table(pages: list[Page]) -> None:
    header = (
        f"{'page':<16} {'server':<11} | {'entries':>7} | {'MB':>5} | {'warm p50':>8} |"
        f" {'warm p99':>8} | {'warm r/s':>8} | {'load r/s':>8} | {'load p99':>8} |"
        f" {'after med':>9} | {'after max':>9} | stale"
    )
    print(header)
    print("-" * len(header))
    for page in pages:
        label = f"{page.kind} {page.variant}"
        if page.skipped is not None or page.warm is None or page.load is None:
            print(f"{label:<16} {page.server:<11} | skipped: {(page.skipped or '')[:100]}")
            continue
        after = page.after
        print(
            f"{label:<16} {page.server:<11} | {page.entries:7d} | {page.bytes / 1e6:5.2f} |"
            f" {page.warm.p50_ms:8.2f} | {page.warm.p99_ms:8.2f} | {page.warm.rps:8.0f} |"
            f" {page.load.rps:8.0f} | {page.load.p99_ms:8.2f} |"
            f" {_fmt(after.median_ms if after else None, '9.2f')} |"
            f" {_fmt(after.worst_ms if after else None, '9.2f')} |"
            f" {after.stale if after else '-'}"
        )
    print(
        "warm: one connection, each request's latency in ms and req/s; load: BENCH_PAGES_CONNECTIONS"
        " connections; after: the first GET right after a publish, on a new connection (stale:"
        " answers that did not list the change yet); aiohttp: bare aiohttp answering artifactapi's"
        " page bytes from memory (bench/floor.py)."
    )


def _page(pages: list[Page], kind: str, variant: str, server: str) -> Page | None:
    for page in pages:
        if (page.kind, page.variant, page.server) == (kind, variant, server) and page.warm:
            return page
    return None


def goal_lines(pages: list[Page], settings: Settings) -> list[str]:
    lines = []
    what = {"simple": f"simple page of {settings.files} files",
            "full": f"packument of {settings.versions} versions",
            "abbreviated": f"abbreviated packument of {settings.versions} versions"}  # fmt: skip
    for kind, variant in (("pypi", "simple"), ("npm", "full"), ("npm", "abbreviated")):
        label = what[variant]
        ours = _page(pages, kind, variant, "artifactapi")
        if ours is None or ours.warm is None or ours.load is None:
            lines.append(f"{label}: not measured")
            continue
        verdict = "met" if ours.warm.p99_ms < GOAL_P99_MS else "MISSED"
        lines.append(
            f"{label}, warm: artifactapi p50 {ours.warm.p50_ms:.2f} ms, p99"
            f" {ours.warm.p99_ms:.2f} ms, goal p99 < {GOAL_P99_MS:g} ms: {verdict}"
        )
        for peer in (_page(pages, kind, variant, p) for p in (*PEERS[kind], "aiohttp")):
            if peer is None or peer.warm is None or peer.load is None or not peer.load.rps:
                continue
            lines.append(
                f"{label}, under load ({settings.connections} connections): artifactapi"
                f" {ours.load.rps:,.0f} req/s = {ours.load.rps / peer.load.rps:.2f} x {peer.server}"
                f" ({peer.load.rps:,.0f} req/s); warm p99 {ours.warm.p99_ms:.2f} ms vs"
                f" {peer.warm.p99_ms:.2f} ms"
            )
        for page in (_page(pages, kind, variant, s) for s in ("artifactapi", *PEERS[kind])):
            if page is not None and page.after is not None and page.after.ms:
                lines.append(
                    f"{label}, first GET after a publish: {page.server} median"
                    f" {page.after.median_ms:.2f} ms, worst {page.after.worst_ms:.2f} ms,"
                    f" stale {page.after.stale} of {len(page.after.ms)}"
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


def _servers(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip()) or ALL
    unknown = set(names) - set(ALL)
    if unknown:
        raise SystemExit(f"BENCH_PAGES_SERVERS: unknown {sorted(unknown)}; servers are {ALL}")
    return names


def main() -> None:
    settings = Settings(
        files=env_int("BENCH_PAGES_FILES", 2000),
        versions=env_int("BENCH_PAGES_VERSIONS", 5000),
        seconds=env_int("BENCH_PAGES_SECONDS", 10),
        connections=env_int("BENCH_PAGES_CONNECTIONS", 16),
        after=env_int("BENCH_PAGES_AFTER", 10),
        workers=env_int("BENCH_PAGES_WORKERS", 2),
        servers=_servers(os.environ.get("BENCH_PAGES_SERVERS", "")),
    )
    if shutil.which("wrk") is None:
        print("pages: skipped: wrk not found (apt-get install wrk)")
        return
    for failure in peers.install():
        print(f"peers: {failure}", file=sys.stderr)
    print(f"pages: {asdict(settings)}", file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="pages-", dir=RESULTS))
    try:
        pages = run_all(settings, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print_table(pages)
    lines = goal_lines(pages, settings)
    print()
    print("\n".join(lines))
    print(f"\nwrote {write_json(pages, settings, lines)}")


if __name__ == "__main__":
    main()
