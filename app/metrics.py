"""Prometheus metrics, one registry per application (tests build many apps)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collector.report import Report as CollectionReport

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _Request:
    __slots__ = ("buckets", "bytes_in", "bytes_out", "count", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.bytes_in = 0
        self.bytes_out = 0


class HttpTallies(Collector):
    """Requests by route, method and status, kept as plain numbers and turned into
    metric families when scraped. Every request is counted, so this is the hot path:
    a dict lookup and a few additions, where prometheus_client's labelled children
    cost a lock per counter and about as much as a cache hit's own work."""

    def __init__(self) -> None:
        self.tallies: dict[tuple[str, str, int], _Request] = {}

    def add(
        self, route: str, method: str, status: int, seconds: float, bytes_in: int, bytes_out: int
    ) -> None:
        tally = self.tallies.get((route, method, status))
        if tally is None:
            tally = self.tallies[(route, method, status)] = _Request()
        tally.count += 1
        tally.seconds += seconds
        tally.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        tally.bytes_in += bytes_in
        tally.bytes_out += bytes_out

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "artifactapi_http_requests",
            "HTTP requests by route, method and status.",
            labels=["route", "method", "status"],
        )
        latency = HistogramMetricFamily(
            "artifactapi_http_request_duration_seconds",
            "Time to answer a request, by route and method.",
            labels=["route", "method"],
        )
        received = CounterMetricFamily(
            "artifactapi_http_request_bytes",
            "Request body bytes received, by route.",
            labels=["route"],
        )
        sent = CounterMetricFamily(
            "artifactapi_http_response_bytes",
            "Response body bytes sent, by route.",
            labels=["route"],
        )
        by_route: dict[str, list[int]] = {}
        by_method: dict[tuple[str, str], _Request] = {}
        for (route, method, status), tally in list(self.tallies.items()):
            requests.add_metric([route, method, str(status)], tally.count)
            both = by_route.setdefault(route, [0, 0])
            both[0] += tally.bytes_in
            both[1] += tally.bytes_out
            merged = by_method.setdefault((route, method), _Request())
            merged.seconds += tally.seconds
            merged.buckets = [a + b for a, b in zip(merged.buckets, tally.buckets, strict=True)]
        for (route, method), tally in by_method.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), tally.buckets, strict=True):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            latency.add_metric([route, method], buckets, tally.seconds)
        for route, (bytes_in, bytes_out) in by_route.items():
            received.add_metric([route], bytes_in)
            sent.add_metric([route], bytes_out)
        yield from (requests, latency, received, sent)


class ProxyTallies(Collector):
    """Requests to remote repositories by repository and cache outcome; plain numbers,
    like :class:`HttpTallies`, since every cache hit counts one."""

    def __init__(self) -> None:
        self.tallies: dict[tuple[str, str], int] = {}

    def add(self, repository: str, cache: str) -> None:
        key = (repository, cache)
        self.tallies[key] = self.tallies.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "artifactapi_proxy_requests",
            "Requests to remote repositories, by repository and cache outcome (HIT, MISS, STALE).",
            labels=["repository", "cache"],
        )
        for (repository, cache), count in list(self.tallies.items()):
            family.add_metric([repository, cache], count)
        yield family


class _Operation:
    __slots__ = ("buckets", "bytes", "count", "failed", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.failed = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(STORAGE_BUCKETS) + 1)  # the last one is +Inf
        self.bytes = 0


# Storage calls run from a stat's milliseconds to a many-GiB stream's minutes.
STORAGE_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 60, 300)


class StorageTallies(Collector):
    """Storage operations by name (put, get, stat, ...), as plain numbers like
    :class:`HttpTallies`: every blob served or stored counts one."""

    def __init__(self) -> None:
        self.tallies: dict[str, _Operation] = {}

    def add(self, operation: str, seconds: float, size: int, failed: bool) -> None:
        tally = self.tallies.get(operation)
        if tally is None:
            tally = self.tallies[operation] = _Operation()
        tally.count += 1
        tally.failed += failed
        tally.seconds += seconds
        tally.buckets[bisect_left(STORAGE_BUCKETS, seconds)] += 1
        tally.bytes += size

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "artifactapi_storage_operations",
            "Storage operations, by operation.",
            labels=["operation"],
        )
        failures = CounterMetricFamily(
            "artifactapi_storage_errors",
            "Storage operations the backend failed (a missing object is no failure).",
            labels=["operation"],
        )
        latency = HistogramMetricFamily(
            "artifactapi_storage_operation_duration_seconds",
            "Time a storage operation took; a put or get to the end of its stream.",
            labels=["operation"],
        )
        moved = CounterMetricFamily(
            "artifactapi_storage_bytes",
            "Bytes written (put) and read (get), by operation.",
            labels=["operation"],
        )
        for operation, tally in list(self.tallies.items()):
            calls.add_metric([operation], tally.count)
            failures.add_metric([operation], tally.failed)
            cumulative, buckets = 0, []
            for bound, count in zip((*STORAGE_BUCKETS, float("inf")), tally.buckets, strict=True):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            latency.add_metric([operation], buckets, tally.seconds)
            if operation in ("put", "get"):
                moved.add_metric([operation], tally.bytes)
        yield from (calls, failures, latency, moved)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HttpTallies()
        self.registry.register(self.http)
        self.in_flight = Gauge(
            "artifactapi_http_requests_in_flight",
            "Requests being answered right now (including this scrape).",
            registry=self.registry,
        )
        self.blobs = Gauge(
            "artifactapi_blobs", "Blobs in the content-addressed store.", registry=self.registry
        )
        self.blob_bytes = Gauge(
            "artifactapi_blob_bytes",
            "Bytes in the content-addressed store.",
            registry=self.registry,
        )

        self.proxy = ProxyTallies()
        self.registry.register(self.proxy)
        self.storage = StorageTallies()
        self.registry.register(self.storage)
        self.upstream_bytes = Counter(
            "artifactapi_upstream_bytes_total",
            "Body bytes received from upstreams, by repository.",
            ["repository"],
            registry=self.registry,
        )
        self.upstream_seconds = Histogram(
            "artifactapi_upstream_request_duration_seconds",
            "Time spent on an upstream fetch (to the end of the body), by repository.",
            ["repository"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.cache_errors = Counter(
            "artifactapi_cache_errors",
            "Cache (Redis) calls that failed or timed out; single flight then goes through"
            " the database.",
            registry=self.registry,
        )
        self.cache_degraded = Gauge(
            "artifactapi_cache_degraded",
            "1 while this process cannot reach its cache (leases in the database), else 0.",
            registry=self.registry,
        )
        self.gc_runs = Counter(
            "artifactapi_gc_runs_total",
            "Collections, by outcome (ok, errors, skipped, dry_run).",
            ["outcome"],
            registry=self.registry,
        )
        self.gc_freed_objects = Counter(
            "artifactapi_gc_freed_objects_total",
            "Objects and rows the collector deleted, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.gc_freed_bytes = Counter(
            "artifactapi_gc_freed_bytes_total",
            "Bytes the collector freed, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.gc_errors = Counter(
            "artifactapi_gc_errors_total", "Collection errors.", registry=self.registry
        )
        self.gc_last_seconds = Gauge(
            "artifactapi_gc_last_run_seconds",
            "How long the last collection took.",
            registry=self.registry,
        )

    def record_collection(self, report: CollectionReport) -> None:
        if report.skipped:
            self.gc_runs.labels("skipped").inc()
            return
        if report.dry_run:
            self.gc_runs.labels("dry_run").inc()
            return
        self.gc_runs.labels("errors" if report.error_count else "ok").inc()
        self.gc_errors.inc(report.error_count)
        self.gc_last_seconds.set(report.seconds)
        for kind, freed in report.freed.items():
            self.gc_freed_objects.labels(kind).inc(freed.objects)
            self.gc_freed_bytes.labels(kind).inc(freed.bytes)

    def render(self) -> bytes:
        return generate_latest(self.registry)
