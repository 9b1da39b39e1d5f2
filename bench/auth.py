"""What authentication costs (issue 12): the OCI token endpoint's issuance rate, and one
bearer check per request.

artifactapi runs as a real process (``server.workers``: BENCH_AUTH_WORKERS, SQLite +
filesystem, ``cache: {url: memory://}``) with two OCI repositories holding the same
small image: ``docker-local`` (private) and ``docker-public`` (``anonymous_read: true``).

* ``token warm``  wrk, BENCH_AUTH_CONNECTIONS connections for BENCH_AUTH_SECONDS, sends
  ``GET /v2/token?service=artifactapi&scope=repository:docker-local/bench:pull`` with the
  admin's ``Authorization: Basic`` in every request, as docker and skopeo ask: each
  worker verifies the password once (argon2id) and then answers from its memory of
  verified credentials, so this is the rate of signing an ES256 JWT and its grant check.
  A first wrk run of BENCH_AUTH_WARMUP seconds comes before it (``token first``): its
  connections all arrive before any worker remembers the password, and its p99 shows
  what that first burst costs.
* ``token cold``  BENCH_AUTH_USERS users, each with its own password (made untimed, in
  process, against the server's database), each asks for one token once (aiohttp, a
  Basic header from ``aiohttp.encode_basic_auth``), BENCH_AUTH_CONCURRENCY at a time:
  every request pays one argon2id verification (about 50 ms of CPU by design), what
  the first ``docker login`` of that many people at once costs. Tokens/s and the median latency.
* ``bearer``  wrk on ``GET /v2/docker-local/bench/tags/list`` with ``Authorization:
  Bearer <JWT>`` (the token from ``/v2/token``, pull scope) against ``GET
  /v2/docker-public/bench/tags/list`` with no credentials, the same image, the same wrk
  settings, twice each in the order bearer, anonymous, anonymous, bearer, the best run
  of each counted: the ratio of the rates, their difference per request (wall µs), and
  that of the server's CPU per request (µs; both workers' processes). The server checks
  a JWT once per worker, then finds it in its memory of verified headers.
* ``in-process``  :meth:`Auth.authenticate` timed over BENCH_AUTH_CALLS calls with one
  bearer header (what every request after the first pays: a sha256 of the header and a
  dict look-up), and :meth:`Bearer.verify` of the same JWT (the first request's ES256
  signature check), on a scratch SQLite database.

Goals: the bearer check keeps >= 0.9 x the anonymous rate (issue 12's goal for the
authenticated 4 KiB hit, applied to the OCI path too); >= 1000 tokens/s with remembered
credentials is this bench's own proposal (a CI fleet's logins, not a measured need).

Environment: BENCH_AUTH_SECONDS (10), BENCH_AUTH_CONNECTIONS (32), BENCH_AUTH_USERS (32),
BENCH_AUTH_CONCURRENCY (8), BENCH_AUTH_WORKERS (2), BENCH_AUTH_CALLS (20000),
BENCH_AUTH_WARMUP (2).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import RESULTS, Server, env_int, in_scratch, run_artifactapi
from bench.proxy import Result, run_wrk

PRIVATE = "docker-local/bench"
PUBLIC = "docker-public/bench"
SERVICE = "artifactapi"
GOAL_WARM_TOKENS = 1000.0  # tokens/s with remembered credentials, on this 2-core machine
GOAL_BEARER_ANONYMOUS = 0.9  # tags/list with a bearer JWT against an anonymous one
USER_PASSWORD = "bench-password-{index}"


@dataclass
class Settings:
    seconds: int
    connections: int
    users: int
    concurrency: int
    workers: int
    calls: int
    warmup: int


@dataclass
class Cold:
    users: int
    seconds: float
    median_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.users / self.seconds if self.seconds else 0.0


def start(directory: Path, workers: int) -> Server:
    config = {
        "server": {"host": "127.0.0.1", "port": 0, "workers": workers},
        "logging": {"level": "warning", "access": False},
        "database": {"url": f"sqlite:///{directory / 'meta.db'}"},
        "storage": {"driver": "filesystem", "root": str(directory / "blobs")},
        "cache": {"url": "memory://"},
        "auth": {"token_ttl": "1h"},  # no token expires in the middle of a run
        "repositories": [
            {"name": "docker-local", "format": "oci", "kind": "local"},
            {"name": "docker-public", "format": "oci", "kind": "local", "anonymous_read": True},
        ],
    }
    return run_artifactapi(directory, config)


def _request(
    method: str, url: str, authorization: str | None, body: bytes = b"", content_type: str = ""
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": authorization} if authorization else {}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, dict(response.headers), response.read()


def push_image(server: Server, name: str) -> None:
    """A one-layer image tagged ``bench``, pushed with the admin's Basic credentials."""
    blobs = [b'{"architecture":"amd64","os":"linux"}', os.urandom(4096)]
    for blob in blobs:
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        _, headers, _ = _request("POST", f"{server.base}/v2/{name}/blobs/uploads/", server.basic)
        location = headers["Location"]
        url = location if location.startswith("http") else server.base + location
        separator = "&" if "?" in url else "?"
        put = f"{url}{separator}digest={digest}"
        _request("PUT", put, server.basic, blob, "application/octet-stream")
    config, layer = blobs

    def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        }
    ).encode()
    url = f"{server.base}/v2/{name}/manifests/bench"
    _request("PUT", url, server.basic, manifest, "application/vnd.oci.image.manifest.v1+json")


def token_url(server: Server, name: str) -> str:
    query = urllib.parse.urlencode({"service": SERVICE, "scope": f"repository:{name}:pull"})
    return f"{server.base}/v2/token?{query}"


def bearer_for(server: Server, name: str) -> str:
    _, _, body = _request("GET", token_url(server, name), server.basic)
    return str(json.loads(body)["token"])


# -- token issuance, cold ------------------------------------------------------------


async def _make_users(server: Server, count: int) -> None:
    """``count`` users with passwords, straight into the server's database (argon2id
    hashes, as ``artifactapi user create`` makes them), granted pull on docker-local."""
    from app.auth.manage import create_principal
    from app.auth.records import AuthRecords
    from app.backends.metadata import open_metadata

    metadata = await open_metadata(f"sqlite:///{server.directory / 'meta.db'}", 1, 2)
    try:
        records = AuthRecords(metadata.db)
        for index in range(count):
            name = f"user{index}"
            await create_principal(records, name, USER_PASSWORD.format(index=index), False, "user")
            await records.grant(f"user:{name}", "docker-local", ["read"])
    finally:
        await metadata.close()


async def _cold_tokens(server: Server, users: int, concurrency: int) -> Cold:
    gate = asyncio.Semaphore(concurrency)
    url = token_url(server, PRIVATE)
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(index: int) -> None:
            password = USER_PASSWORD.format(index=index)
            basic = {"Authorization": aiohttp.encode_basic_auth(f"user{index}", password)}
            async with gate:
                began = time.perf_counter()
                async with session.get(url, headers=basic) as response:
                    body = await response.json()
                    if response.status != 200 or body["token"] == "":
                        raise RuntimeError(f"user{index}: token answered {response.status}")
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(users)))
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Cold(users, elapsed, statistics.median(ordered) * 1000, p99 * 1000)


# -- in process ----------------------------------------------------------------------


async def _in_process(directory: Path, calls: int) -> dict[str, float]:
    """µs per call of Auth.authenticate (remembered) and Bearer.verify (the ES256 check)."""
    from app.auth.manage import create_principal
    from app.auth.records import AuthRecords
    from app.auth.service import Auth
    from app.backends.metadata import open_metadata
    from app.config import AuthConfig
    from app.formats import available_formats, migrations

    metadata = await open_metadata(f"sqlite:///{directory / 'in-process.db'}", 1, 2)
    try:
        await metadata.migrate(migrations(available_formats().values()))
        records = AuthRecords(metadata.db)
        await create_principal(records, "admin", "unused-password", True, "user")
        auth = Auth(records, AuthConfig())
        access = [{"type": "repository", "name": PRIVATE, "actions": ["pull"]}]
        signed, _ = await auth.bearer.issue("admin", access)
        header = f"Bearer {signed}"
        await auth.authenticate(header)  # the first: verified, then remembered
        began = time.perf_counter()
        for _ in range(calls):
            await auth.authenticate(header)
        remembered = (time.perf_counter() - began) / calls
        rounds = max(1, calls // 20)
        began = time.perf_counter()
        for _ in range(rounds):
            await auth.bearer.verify(signed)
        verify = (time.perf_counter() - began) / rounds
    finally:
        await metadata.close()
    return {"authenticate_remembered_us": remembered * 1e6, "bearer_verify_us": verify * 1e6}


# -- the run -------------------------------------------------------------------------


def _wrk(server: Server, label: str, path: str, settings: Settings, scratch: Path,
         authorization: str | None, seconds: int | None = None) -> Result:  # fmt: skip
    headers = {"Authorization": authorization} if authorization else None
    duration = seconds or settings.seconds
    result = run_wrk(server, label, [path], duration, settings.connections, scratch, headers, label)
    if result.skipped:
        print(f"  {label:<16} FAILED: {result.skipped}", file=sys.stderr)
    else:
        print(
            f"  {label:<16} {result.rps:9.0f} req/s  p50 {result.p50_ms:6.2f} ms"
            f"  p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
            f"  cores: server {result.server_cores:4.2f} wrk {result.wrk_cores:4.2f}"
            f" others {result.others_cores:4.2f}",
            file=sys.stderr,
        )
    return result


def run(settings: Settings, scratch: Path) -> dict[str, Any]:
    server = start(scratch, settings.workers)
    try:
        push_image(server, PRIVATE)
        push_image(server, PUBLIC)
        # The first token makes the signing key, which moves auth_version: every worker
        # then forgets what it verified. A one-time event, kept out of the figures.
        bearer = bearer_for(server, PRIVATE)
        time.sleep(1.0)  # > POLL: each worker has looked and forgotten by now
        path = token_url(server, PRIVATE)[len(server.base) :]
        first = _wrk(server, "token-first", path, settings, scratch, server.basic, settings.warmup)
        warm = _wrk(server, "token-warm", path, settings, scratch, server.basic)
        # Bearer, anonymous, anonymous, bearer; the best of each: a neighbour's burst
        # on this shared machine lands on one side less often.
        sides = {"tags-bearer": (f"/v2/{PRIVATE}/tags/list", f"Bearer {bearer}"),
                 "tags-anonymous": (f"/v2/{PUBLIC}/tags/list", None)}  # fmt: skip
        runs: dict[str, list[Result]] = {label: [] for label in sides}
        for label in ("tags-bearer", "tags-anonymous", "tags-anonymous", "tags-bearer"):
            path, authorization = sides[label]
            runs[label].append(_wrk(server, label, path, settings, scratch, authorization))
        with_bearer, anonymous = (max(runs[k], key=lambda r: r.rps) for k in sides)
        asyncio.run(_make_users(server, settings.users))
        cold = asyncio.run(_cold_tokens(server, settings.users, settings.concurrency))
        print(
            f"  token-cold       {cold.rate:9.1f} tokens/s ({cold.users} users, one argon2id"
            f" each)  median {cold.median_ms:.1f} ms  p99 {cold.p99_ms:.1f} ms",
            file=sys.stderr,
        )
    finally:
        server.stop()
    timed = asyncio.run(_in_process(scratch, settings.calls))
    return {"first": first, "warm": warm, "bearer": with_bearer, "anonymous": anonymous,
            "cold": cold, "in_process": timed}  # fmt: skip


def _cpu_us(result: Result) -> float:
    return result.server_cores / result.rps * 1e6 if result.rps else 0.0


def goal_lines(measured: dict[str, Any]) -> list[str]:
    first: Result = measured["first"]
    warm: Result = measured["warm"]
    bearer: Result = measured["bearer"]
    anonymous: Result = measured["anonymous"]
    cold: Cold = measured["cold"]
    timed: dict[str, float] = measured["in_process"]
    lines = []
    if warm.skipped or not warm.rps:
        lines.append("token issuance, remembered credentials: not measured")
    else:
        verdict = "met" if warm.rps >= GOAL_WARM_TOKENS else "MISSED"
        lines.append(
            f"token issuance, remembered credentials: {warm.rps:,.0f} tokens/s (p99"
            f" {warm.p99_ms:.2f} ms, {warm.errors} errors), goal >= {GOAL_WARM_TOKENS:g}: {verdict}"
        )
    if not first.skipped and first.rps:
        lines.append(
            f"token issuance, the first {first.seconds:.0f} s (no goal): {first.rps:,.0f}"
            f" tokens/s, p99 {first.p99_ms:.0f} ms: every connection that arrives before a"
            " worker has verified the password waits for that one argon2id check"
        )
    lines.append(
        f"token issuance, first login of each user (no goal): {cold.rate:.1f} tokens/s,"
        f" median {cold.median_ms:.1f} ms ({cold.users} users, {cold.users} argon2id checks)"
    )
    if bearer.skipped or anonymous.skipped or not bearer.rps or not anonymous.rps:
        lines.append("bearer check per request: not measured")
    else:
        wall = (1 / bearer.rps - 1 / anonymous.rps) * 1e6
        cpu = _cpu_us(bearer) - _cpu_us(anonymous)
        ratio = bearer.rps / anonymous.rps
        verdict = "met" if ratio >= GOAL_BEARER_ANONYMOUS else "MISSED"
        lines.append(
            f"bearer check per request (tags/list): {ratio:.2f} x anonymous ({bearer.rps:,.0f}"
            f" req/s; {anonymous.rps:,.0f} req/s), goal >= {GOAL_BEARER_ANONYMOUS}: {verdict};"
            f" {wall:+.1f} µs of wall time and {cpu:+.1f} µs of server CPU per request"
            f" ({_cpu_us(bearer):.0f} µs; {_cpu_us(anonymous):.0f} µs)"
        )
    lines.append(
        f"in process (no goal): Auth.authenticate of a remembered bearer header"
        f" {timed['authenticate_remembered_us']:.2f} µs; Bearer.verify (ES256, a header's"
        f" first request in a worker) {timed['bearer_verify_us']:.0f} µs"
    )
    return lines


def main() -> None:
    settings = Settings(
        seconds=env_int("BENCH_AUTH_SECONDS", 10),
        connections=env_int("BENCH_AUTH_CONNECTIONS", 32),
        users=env_int("BENCH_AUTH_USERS", 32),
        concurrency=env_int("BENCH_AUTH_CONCURRENCY", 8),
        workers=env_int("BENCH_AUTH_WORKERS", 2),
        calls=env_int("BENCH_AUTH_CALLS", 20000),
        warmup=env_int("BENCH_AUTH_WARMUP", 2),
    )
    if shutil.which("wrk") is None:
        print("auth: skipped: wrk not found (apt-get install wrk)")
        return
    print(f"auth: {asdict(settings)}", file=sys.stderr)
    measured = in_scratch("auth-", lambda scratch: run(settings, scratch))
    lines = goal_lines(measured)
    print("\n".join(lines))
    payload = {
        "config": {**asdict(settings), "cpus": os.cpu_count()},
        "goals": lines,
        **{k: asdict(measured[k]) for k in ("first", "warm", "bearer", "anonymous", "cold")},
        "in_process": measured["in_process"],
    }
    path = RESULTS / "auth.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
