"""Benchmarks: ``python -m bench`` (``make bench``) runs every module in :data:`MODULES`."""

MODULES = (
    "bench.ingest",
    "bench.registry",
    "bench.manifests",
    "bench.gc",
    "bench.proxy",
    "bench.publish",
    "bench.pages",
    "bench.virtual",
    "bench.auth",
    "bench.slowloris",
)
