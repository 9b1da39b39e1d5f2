"""Virtual repositories: a merged page over a local and a remote member, against the
remote member's own page.

Two artifactapi processes (the embedded shape, BENCH_VIRTUAL_WORKERS workers each):

* ``upstream``: local PyPI and npm repositories holding a project of BENCH_VIRTUAL_FILES
  (2000) small wheels and a package of BENCH_VIRTUAL_VERSIONS (3000) versions: what a
  public index serves (PEP 691 JSON with upload times, packuments with ``time``);
* ``front``: for each format a local repository holding as many again (other versions),
  a remote repository caching ``upstream``'s, and a virtual one over both
  (``members: [local, remote]``, ``deploy_to: local``, the project on its ``allow``
  list so that both members answer for it and the page is their union of 4,000
  entries; without it the guard would keep the remote out, a cheaper page).

Each page must list every entry of its members before it is timed (the merged one
both members' files or versions), then, with the clients' ``Accept-Encoding: gzip``:

* ``warm``: one client on one keep-alive connection for BENCH_VIRTUAL_SECONDS (10), each
  request timed to its last byte: p50, p99 (goal: the merged page's p99 < 15 ms) and
  req/s (goal: the merged page's >= 0.5 x the remote member's alone);
* ``load``: wrk, BENCH_VIRTUAL_CONNECTIONS (16) connections: req/s and p99;
* ``after`` (merged pages only): BENCH_VIRTUAL_AFTER (10) times, one file or version
  published through the virtual (it lands in ``deploy_to``), then the merged page on a
  new connection: the first request to see it, median and worst; stale if it does not.

``python -m bench.virtual`` runs it alone.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import seed
from bench.harness import RESULTS, Server, api_token, env_int, in_scratch, run_artifactapi
from bench.packages import WHEEL_TAGS, wheel_name
from bench.pages import Page, Warm, after_publish, get, settle, warm_loop
from bench.peers import NpmRegistry, PyPIIndex
from bench.proxy import run_wrk
from bench.publish import NPM_REPO, PYPI_REPO, start_artifactapi

NAME = "bench-virtual"
GOAL_P99_MS = 15.0
GOAL_RATIO = 0.5
GZIP = {"Accept-Encoding": "gzip, deflate"}
ACCEPT = {
    "pypi": "application/vnd.pypi.simple.v1+json",  # what pip and uv ask first
    "npm": "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8",
}


@dataclass
class Settings:
    files: int
    versions: int
    seconds: int
    connections: int
    after: int
    workers: int


def _later(version: str) -> str:
    """The same shape of version, fifty majors up: the front's own releases."""
    major, rest = version.split(".", 1)
    return f"{int(major) + 50}.{rest}"


def entries(body: bytes, kind: str) -> int:
    document = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
    return len(document["files"] if kind == "pypi" else document["versions"])


def start_front(directory: Path, workers: int, upstream: Server, token: str) -> Server:
    repositories = []
    for fmt, local in (("pypi", PYPI_REPO), ("npm", NPM_REPO)):
        origin = f"{upstream.base}/repository/{local}"
        credentials = (
            {"username": "__token__", "password": token} if fmt == "pypi" else {"token": token}
        )
        repositories += [
            {"name": f"{fmt}-local", "format": fmt, "kind": "local"},
            {"name": f"{fmt}-remote", "format": fmt, "kind": "remote",
             "options": {"upstream": origin, "metadata_ttl": "1h", **credentials}},
            {"name": f"{fmt}-virtual", "format": fmt, "kind": "virtual",
             "options": {"members": [f"{fmt}-local", f"{fmt}-remote"],
                         "deploy_to": f"{fmt}-local", "allow": [NAME]}},
        ]  # fmt: skip
    config = {
        "server": {"host": "127.0.0.1", "port": 0, "workers": workers},
        "logging": {"level": "warning"},
        "database": {"url": f"sqlite:///{directory / 'meta.db'}"},
        "storage": {"driver": "filesystem", "root": str(directory / "blobs")},
        "cache": {"url": "memory://"},
        "repositories": repositories,
    }
    return run_artifactapi(directory, config)


def _time(page: Page, server: Server, path: str, headers: dict[str, str], settings: Settings,
          scratch: Path) -> None:  # fmt: skip
    page.warm = warm_loop(server, path, headers, settings.seconds)
    page.load = run_wrk(server, f"{page.kind}-{page.variant}", [path], settings.seconds,
                        settings.connections, scratch, headers, page.server)  # fmt: skip
    for name, result in (("warm", page.warm), ("load", page.load)):
        if result.skipped:
            raise RuntimeError(f"{page.server} {name}: {result.skipped}")
        print(
            f"  {page.kind:<5} {page.server:<8} {name} {result.rps:7.0f} req/s"
            f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:8.2f} ms  {page.bytes / 1e6:.2f} MB",
            file=sys.stderr,
        )


def measure(kind: str, front: Server, token: str, settings: Settings, scratch: Path,
            publish: Callable[[int], str]) -> list[Page]:  # fmt: skip
    auth = (
        {"Authorization": PyPIIndex(front, "", "", "__token__", token).basic}
        if kind == "pypi" else {"Authorization": f"Bearer {token}"}
    )  # fmt: skip
    headers = {"Accept": ACCEPT[kind], **GZIP, **auth}
    wanted = settings.files if kind == "pypi" else settings.versions
    pages = []
    for member, members in (("remote", 1), ("virtual", 2)):
        path = (
            f"/repository/{kind}-{member}/simple/{NAME}/" if kind == "pypi"
            else f"/repository/{kind}-{member}/{NAME}"
        )  # fmt: skip
        variant = "simple" if kind == "pypi" else "abbreviated"
        page = Page(kind, variant, "gzip", member)
        _, raw, body = get(front, path, headers)
        page.entries, page.bytes = entries(body, kind), len(raw)
        if page.entries < members * wanted:
            raise RuntimeError(f"{path} lists {page.entries} of {members * wanted}")
        settle(front)
        _time(page, front, path, headers, settings, scratch)
        if member == "virtual":
            after_publish(page, front, path, headers, settings.after, publish)
        pages.append(page)
    return pages


def run_all(settings: Settings, scratch: Path) -> list[Page]:
    pages: list[Page] = []
    with ExitStack() as stack:
        (scratch / "upstream").mkdir()
        started = start_artifactapi(scratch / "upstream", settings.workers)
        stack.callback(started.server.stop)
        assert started.pypi is not None and started.npm is not None
        front_dir = scratch / "front"
        front_dir.mkdir()
        front = start_front(front_dir, settings.workers, started.server, started.npm.token)
        stack.callback(front.stop)
        token = api_token(front)
        base = f"{front.base}/repository"
        local = PyPIIndex(front, f"{base}/pypi-local/", "/repository/pypi-local/simple/",
                          "__token__", token)  # fmt: skip
        virtual = PyPIIndex(front, f"{base}/pypi-virtual/", "", "__token__", token)
        npm_local = NpmRegistry(front, f"{base}/npm-local/", token)
        npm_virtual = NpmRegistry(front, f"{base}/npm-virtual/", token)
        files = seed.wheel_files(settings.files)
        numbers = seed.versions(settings.versions)
        start = time.perf_counter()
        asyncio.run(seed.upload_wheels(started.pypi, NAME, files))
        asyncio.run(seed.upload_wheels(local, NAME, [(_later(v), t) for v, t in files]))
        asyncio.run(seed.publish_versions(started.npm, NAME, numbers))
        asyncio.run(seed.publish_versions(npm_local, NAME, [_later(v) for v in numbers]))
        print(f"  seeded in {time.perf_counter() - start:.0f} s", file=sys.stderr)

        def publish_wheel(number: int) -> str:
            version = f"99.0.{number}"
            asyncio.run(seed.upload_wheels(virtual, NAME, [(version, WHEEL_TAGS[0])], 1))
            return wheel_name(NAME, version)

        def publish_version(number: int) -> str:
            version = f"99.0.{number}"
            asyncio.run(seed.publish_versions(npm_virtual, NAME, [version], 1))
            return json.dumps(version)

        pages += measure("pypi", front, token, settings, scratch, publish_wheel)
        pages += measure("npm", front, token, settings, scratch, publish_version)
    return pages


def goal_lines(pages: list[Page], settings: Settings) -> list[str]:
    lines = []
    what = {"pypi": f"PyPI simple page (JSON) of {settings.files} + {settings.files} files",
            "npm": f"abbreviated packument of {settings.versions} + {settings.versions}"
                   " versions"}  # fmt: skip
    for kind in ("pypi", "npm"):
        merged = next((p for p in pages if p.kind == kind and p.server == "virtual"), None)
        alone = next((p for p in pages if p.kind == kind and p.server == "remote"), None)
        if merged is None or alone is None or merged.warm is None or alone.warm is None:
            lines.append(f"{what[kind]}: not measured")
            continue
        assert merged.load is not None and alone.load is not None
        p99 = "met" if merged.warm.p99_ms < GOAL_P99_MS else "MISSED"
        ratio = merged.warm.rps / alone.warm.rps if alone.warm.rps else 0.0
        load_ratio = merged.load.rps / alone.load.rps if alone.load.rps else 0.0
        lines.append(
            f"{what[kind]}, merged, warm: p50 {merged.warm.p50_ms:.2f} ms, p99"
            f" {merged.warm.p99_ms:.2f} ms (the remote alone {alone.warm.p99_ms:.2f} ms), goal"
            f" p99 < {GOAL_P99_MS:g} ms: {p99}"
        )
        lines.append(
            f"{what[kind]}, merged vs the remote member alone: warm {merged.warm.rps:,.0f} vs"
            f" {alone.warm.rps:,.0f} req/s = {ratio:.2f} x, goal >= {GOAL_RATIO}:"
            f" {'met' if ratio >= GOAL_RATIO else 'MISSED'}; {settings.connections}"
            f" connections {merged.load.rps:,.0f} vs {alone.load.rps:,.0f} req/s ="
            f" {load_ratio:.2f} x"
        )
        if merged.after is not None and merged.after.ms:
            lines.append(
                f"{what[kind]}, first GET after a publish through the virtual: median"
                f" {merged.after.median_ms:.2f} ms, worst {merged.after.worst_ms:.2f} ms,"
                f" stale {merged.after.stale} of {len(merged.after.ms)}"
            )
    return lines


def print_table(pages: list[Page]) -> None:
    header = (f"{'page':<6} {'from':<8} | {'entries':>7} | {'MB':>5} | {'warm p50':>8} |"
              f" {'warm p99':>8} | {'warm r/s':>8} | {'load r/s':>8} | {'load p99':>8}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for page in pages:
        warm, load = page.warm or Warm(), page.load
        print(
            f"{page.kind:<6} {page.server:<8} | {page.entries:7d} | {page.bytes / 1e6:5.2f} |"
            f" {warm.p50_ms:8.2f} | {warm.p99_ms:8.2f} | {warm.rps:8.0f} |"
            f" {load.rps if load else 0:8.0f} | {load.p99_ms if load else 0:8.2f}"
        )


def main() -> None:
    settings = Settings(
        files=env_int("BENCH_VIRTUAL_FILES", 2000),
        versions=env_int("BENCH_VIRTUAL_VERSIONS", 3000),
        seconds=env_int("BENCH_VIRTUAL_SECONDS", 10),
        connections=env_int("BENCH_VIRTUAL_CONNECTIONS", 16),
        after=env_int("BENCH_VIRTUAL_AFTER", 10),
        workers=env_int("BENCH_VIRTUAL_WORKERS", 2),
    )
    if shutil.which("wrk") is None:
        print("virtual: skipped: wrk not found (apt-get install wrk)")
        return
    print(f"virtual: {asdict(settings)}", file=sys.stderr)
    pages = in_scratch("virtual-", lambda scratch: run_all(settings, scratch))
    print()
    print_table(pages)
    lines = goal_lines(pages, settings)
    print()
    print("\n".join(lines))
    path = RESULTS / "virtual.json"
    payload = {"config": {**asdict(settings), "cpus": os.cpu_count()}, "goals": lines,
               "results": [asdict(p) for p in pages]}  # fmt: skip
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
