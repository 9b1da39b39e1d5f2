"""A normal client's latency with slow-header connections open (slowloris).

artifactapi runs as a real process (embedded shape) with ``server.header_timeout``
shortened to ``BENCH_SLOWLORIS_TIMEOUT`` seconds, so that the server closes slow
connections during the measurement. Per round, in this order:

* ``alone``      a client child GETs a 1 KiB generic file over one kept-alive
                 connection, one request after another, for ``BENCH_SLOWLORIS_SECONDS``;
* ``slowloris``  the same, while a holder child keeps ``BENCH_SLOWLORIS_CONNECTIONS``
                 connections open, each having sent a request line and trickling one
                 header byte a second, never finishing its headers; a connection the
                 server closes is opened again at once, as an attacker would.

The client's p50 and p99 latency are compared in the same run, their ratio printed
(the goal: 500 such connections do not slow a normal client, a ratio near 1). The
holder reports how many connections the server closed (the header timeout at work).
The upload and the client's GETs carry the admin's HTTP Basic credentials (bench/harness.py);
the holder sends none: it never gets past its headers.
Rounds alternate the two cases; the lowest p50 and p99 of each case count (the machine
is shared, and slower rounds measure its other tenants).

Environment: BENCH_SLOWLORIS_CONNECTIONS (500), BENCH_SLOWLORIS_SECONDS (15),
BENCH_SLOWLORIS_TIMEOUT (5), BENCH_SLOWLORIS_ROUNDS (3).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.harness import (
    REPO,
    RESULTS,
    ChildFailed,
    child_main,
    env_int,
    is_child,
    run_artifactapi,
    run_child,
)

MODULE = "bench.slowloris"
PATH = "/repository/files/bench.txt"
BODY = b"x" * 1024
GOAL_RATIO = 1.1  # p50 and p99 with slowloris connections over alone
OPEN_CONCURRENCY = 50  # connections the holder opens at once
READY_TIMEOUT = 60.0


# -- the normal client (a child) --------------------------------------------------------


def _client(spec: dict[str, Any]) -> dict[str, Any]:
    """GET ``PATH`` back to back for ``seconds``; every latency, in milliseconds."""
    host, port = spec["host"], spec["port"]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    headers = {"Authorization": spec["authorization"]}
    latencies: list[float] = []
    deadline = time.perf_counter() + spec["seconds"]
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        connection.request("GET", PATH, headers=headers)
        response = connection.getresponse()
        body = response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200 or len(body) != len(BODY):
            raise RuntimeError(f"GET {PATH}: {response.status}, {len(body)} bytes")
    connection.close()
    return {"latencies": latencies}


# -- the slowloris holder (a child) --------------------------------------------------------


class Holder:
    """``count`` connections, each trickling its headers; reopened when closed."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.host, self.port, self.count = host, port, count
        self.open = 0
        self.closed_by_server = 0
        self.failed_opens = 0
        self._all_open = asyncio.Event()

    async def run(self, seconds: float) -> None:
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)
        tasks = [asyncio.create_task(self._one(index, gate)) for index in range(self.count)]
        await asyncio.wait_for(self._all_open.wait(), READY_TIMEOUT)
        print("ready", flush=True)  # the parent measures from here
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, index: int, gate: asyncio.Semaphore) -> None:
        while True:  # a connection the server closes is opened again at once
            async with gate:
                try:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                except OSError:
                    self.failed_opens += 1
                    await asyncio.sleep(0.1)
                    continue
            self.open += 1
            if self.open == self.count:
                self._all_open.set()
            eof: asyncio.Future[bytes] | None = None
            try:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                # Spread the trickles over the second instead of 500 writes at once.
                await asyncio.sleep((index % 100) / 100)
                eof = asyncio.ensure_future(reader.read())
                while not eof.done():
                    writer.write(b"a")
                    await asyncio.wait([eof], timeout=1.0)
            except OSError:
                pass
            finally:
                self.open -= 1
                if eof is not None and eof.done():
                    self.closed_by_server += 1
                    eof.exception()  # a reset instead of a FIN: retrieved, not reported
                elif eof is not None:
                    eof.cancel()  # the run is over
                writer.close()


def _hold(spec: dict[str, Any]) -> dict[str, Any]:
    holder = Holder(spec["host"], spec["port"], spec["connections"])
    asyncio.run(holder.run(spec["seconds"]))
    return {"closed_by_server": holder.closed_by_server, "failed_opens": holder.failed_opens}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    return _client(spec) if spec["role"] == "client" else _hold(spec)


# -- the parent ------------------------------------------------------------------------------


@dataclass
class Latency:
    requests: int
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, latencies: list[float]) -> Latency:
        ordered = sorted(latencies)
        return cls(len(ordered), _percentile(ordered, 0.50), _percentile(ordered, 0.99))


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _upload(host: str, port: int, authorization: str) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request("PUT", PATH, body=BODY, headers={"Authorization": authorization})
    response = connection.getresponse()
    response.read()
    if response.status not in (200, 201):
        raise RuntimeError(f"PUT {PATH}: {response.status}")


def _with_slowloris(
    host: str, port: int, connections: int, seconds: float, authorization: str
) -> tuple[Latency, dict[str, Any]]:
    spec = {"role": "holder", "host": host, "port": port, "connections": connections,
            "seconds": seconds + 5}  # fmt: skip
    command = [sys.executable, "-m", MODULE, "--child", json.dumps(spec)]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=REPO, text=True)
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        if line.strip() != "ready":
            raise ChildFailed(f"the slowloris holder did not get ready: {line!r}")
        client = {"role": "client", "host": host, "port": port, "seconds": seconds,
                  "authorization": authorization}  # fmt: skip
        measured = run_child(MODULE, client)
        out, _ = holder.communicate(timeout=seconds + 60)
        stats: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGTERM)
            holder.wait()
    return Latency.of(measured["latencies"]), stats


def _best(runs: list[Latency]) -> Latency:
    """The lowest p50 and the lowest p99 of any round: slower rounds measure the
    machine's other tenants."""
    return Latency(
        max(run.requests for run in runs),
        min(run.p50_ms for run in runs),
        min(run.p99_ms for run in runs),
    )


def main() -> None:
    connections = env_int("BENCH_SLOWLORIS_CONNECTIONS", 500)
    seconds = env_int("BENCH_SLOWLORIS_SECONDS", 15)
    timeout = env_int("BENCH_SLOWLORIS_TIMEOUT", 5)
    rounds = env_int("BENCH_SLOWLORIS_ROUNDS", 3)
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="slowloris-", dir=RESULTS))
    config = {
        "server": {"port": 0, "header_timeout": f"{timeout}s"},
        "database": {"url": f"sqlite:///{scratch / 'meta.db'}"},
        "storage": {"driver": "filesystem", "root": str(scratch / "blobs")},
        "cache": {"url": "memory://"},
        "logging": {"access": False, "level": "warning"},
        "repositories": [{"name": "files", "format": "generic", "kind": "local"}],
    }
    server = run_artifactapi(scratch, config)
    alone: list[Latency] = []
    loaded: list[Latency] = []
    closed = 0
    try:
        url = urlsplit(server.base)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        _upload(host, port, server.basic)
        for round_number in range(rounds):
            spec = {"role": "client", "host": host, "port": port, "seconds": seconds,
                    "authorization": server.basic}  # fmt: skip
            alone.append(Latency.of(run_child(MODULE, spec)["latencies"]))
            latency, stats = _with_slowloris(host, port, connections, seconds, server.basic)
            loaded.append(latency)
            closed += stats["closed_by_server"]
            print(f"  round {round_number + 1}: alone {alone[-1]}, slowloris {latency}, "
                  f"{stats['closed_by_server']} slow connections closed", file=sys.stderr)  # fmt: skip
    except ChildFailed as exc:
        print(f"slowloris: FAILED: {exc}")
        return
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    best_alone, best_loaded = _best(alone), _best(loaded)
    p50_ratio = best_loaded.p50_ms / best_alone.p50_ms
    p99_ratio = best_loaded.p99_ms / best_alone.p99_ms
    print(f"{'case':<28} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8}")
    print(
        f"{'alone':<28} {best_alone.requests:>8} {best_alone.p50_ms:>8.2f} {best_alone.p99_ms:>8.2f}"
    )
    print(f"{f'{connections} slowloris open':<28} {best_loaded.requests:>8} "
          f"{best_loaded.p50_ms:>8.2f} {best_loaded.p99_ms:>8.2f}")  # fmt: skip
    verdict = "met" if max(p50_ratio, p99_ratio) <= GOAL_RATIO else "missed"
    print(f"ratio with/alone: p50 {p50_ratio:.2f}, p99 {p99_ratio:.2f} "
          f"(goal <= {GOAL_RATIO}: {verdict}); {closed} slow connections closed by the "
          f"{timeout} s header timeout")  # fmt: skip
    payload = {
        "config": {
            "connections": connections,
            "seconds": seconds,
            "header_timeout": timeout,
            "rounds": rounds,
            "cpus": os.cpu_count(),
        },
        "alone": [asdict(run) for run in alone],
        "slowloris": [asdict(run) for run in loaded],
        "p50_ratio": p50_ratio,
        "p99_ratio": p99_ratio,
        "closed_by_server": closed,
    }
    (RESULTS / "slowloris.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    if is_child():
        child_main(child)
    else:
        main()
