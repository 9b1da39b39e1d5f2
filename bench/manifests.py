"""What a manifest costs to accept: artifactapi against distribution 2.8 in the same run.

Both registries run as processes on the filesystem, a fresh one per registry. Into each,
the same small blobs are pushed first; then each manifest below is PUT several times
(a fresh config each time, so every PUT is a new manifest) and the median time of the
PUT is kept:

* ``1000 distinct layers``  an image manifest at artifactapi's default ``max_layers``;
* ``26000 equal layers``    one layer named 26,000 times (3.8 MB): refused by artifactapi
                            (over ``max_layers``), accepted by distribution;
* ``10000 equal children``  an index naming one child 10,000 times (the default
                            ``max_index_entries``);
* ``10000 unknown children`` an index of distinct children none of which exists: refused
                            by both.

Options: ``BENCH_MANIFEST_RUNS`` (5 PUTs per case); ``BENCH_MANIFEST_POSTGRES_DSN`` (an
empty database to measure artifactapi on PostgreSQL too, its metadata on that server).

artifactapi is sent its admin's HTTP Basic credentials on every request (the password
verified once, then remembered by the process); distribution runs with no auth.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import Server, env_int, run_artifactapi
from bench.registry import start_artifactapi, start_distribution

NAME = "docker-local/bench/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYERS = 1000


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


def _request(
    method: str, url: str, body: bytes = b"", content_type: str = "", auth: str | None = None
) -> tuple[int, str]:
    """The status and Location of one request (``auth``: its Authorization header)."""
    request = urllib.request.Request(url, data=body or None, method=method)
    if auth:
        request.add_header("Authorization", auth)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
            return int(response.status), response.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code), ""


def _push_blob(base: str, data: bytes, auth: str | None) -> None:
    """POST then PUT ``?digest=`` with the body: what both registries take."""
    status, location = _request("POST", f"{base}/v2/{NAME}/blobs/uploads/", auth=auth)
    assert status == 202, status
    url = location if location.startswith("http") else base + location
    separator = "&" if "?" in url else "?"
    status, _ = _request("PUT", f"{url}{separator}digest={_digest(data)}", data, LAYER, auth)
    assert status == 201, status


def _image(config: bytes, layers: list[bytes]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(CONFIG, config),
        "layers": [_descriptor(LAYER, layer) for layer in layers],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _index(children: list[dict[str, Any]]) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
    return json.dumps(doc, separators=(",", ":")).encode()


def _cases(base: str, runs: int, auth: str | None) -> dict[str, tuple[float, int]]:
    """Median seconds of each case's PUT and the status it got."""
    layers = [b"layer %d" % i for i in range(LAYERS)]
    configs = [b'{"run": %d}' % i for i in range(runs)]
    for blob in (*layers, *configs):
        _push_blob(base, blob, auth)
    child = _image(configs[0], layers[:1])
    url = f"{base}/v2/{NAME}/manifests/child"
    assert _request("PUT", url, child, OCI_MANIFEST, auth)[0] == 201
    child_descriptor = _descriptor(OCI_MANIFEST, child)

    def unknown(run: int) -> bytes:
        fake = [
            {"mediaType": OCI_MANIFEST, "digest": _digest(b"%d-%d" % (run, i)), "size": 10}
            for i in range(10_000)
        ]
        return _index(fake)

    documents: dict[str, tuple[Callable[[int], bytes], str]] = {
        "1000 distinct layers": (lambda run: _image(configs[run], layers), OCI_MANIFEST),
        "26000 equal layers": (lambda run: _image(configs[run], layers[:1] * 26_000), OCI_MANIFEST),
        "10000 equal children": (
            lambda run: _index([{**child_descriptor, "annotations": {"run": str(run)}}] * 10_000),
            OCI_INDEX,
        ),
        "10000 unknown children": (unknown, OCI_INDEX),
    }
    results = {}
    for case, (make, media_type) in documents.items():
        times, status = [], 0
        for run in range(runs):
            body = make(run)
            started = time.perf_counter()
            url = f"{base}/v2/{NAME}/manifests/{case.replace(' ', '-')}-{run}"
            status, _ = _request("PUT", url, body, media_type, auth)
            times.append(time.perf_counter() - started)
        results[case] = (statistics.median(times), status)
    return results


def _measure(start: Callable[..., Server], runs: int) -> dict[str, tuple[float, int]]:
    with tempfile.TemporaryDirectory(prefix="bench-manifests-") as tmp:
        server = start("fs", Path(tmp), None, "", {})
        try:
            # artifactapi as its admin (HTTP Basic on every request); distribution open.
            return _cases(server.base, runs, server.basic if server.password else None)
        finally:
            server.stop()


def _on_postgres(dsn: str) -> Callable[..., Server]:
    def start(storage: str, directory: Path, *_: Any) -> Server:
        config = {
            "server": {"host": "127.0.0.1", "port": 0, "workers": 1},
            "logging": {"level": "warning"},
            "database": {"url": dsn},
            "storage": {"driver": "filesystem", "root": str(directory / "blobs")},
            "cache": {"url": "memory://"},
            "repositories": [{"name": "docker-local", "format": "oci", "kind": "local"}],
        }
        return run_artifactapi(directory, config)

    return start


def main() -> None:
    runs = env_int("BENCH_MANIFEST_RUNS", 5)
    measured = {"artifactapi": _measure(start_artifactapi, runs)}
    dsn = os.environ.get("BENCH_MANIFEST_POSTGRES_DSN")
    if dsn:
        measured["artifactapi (PostgreSQL)"] = _measure(_on_postgres(dsn), runs)
    theirs = _measure(start_distribution, runs)
    print(f"manifest acceptance, filesystem, median of {runs} PUTs")
    for name, ours in measured.items():
        print(f"{'case':<24} {name:>26} {'distribution':>18} {'ratio':>7}")
        for case, (seconds, status) in ours.items():
            peer, peer_status = theirs[case]
            ratio = peer / seconds if seconds else float("nan")
            print(
                f"{case:<24} {seconds * 1000:>18.1f} ms {status:>4}"
                f" {peer * 1000:>10.1f} ms {peer_status:>4} {ratio:>6.2f}x"
            )


if __name__ == "__main__":
    main()
