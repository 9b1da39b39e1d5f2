"""Prometheus metrics, one registry per application (tests build many apps)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from collector.report import Report as CollectionReport

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "artifactapi_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "artifactapi_http_request_duration_seconds",
            "Time to answer a request, by route and method.",
            ["route", "method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "artifactapi_http_request_bytes_total",
            "Request body bytes received, by route.",
            ["route"],
            registry=self.registry,
        )
        self.bytes_out = Counter(
            "artifactapi_http_response_bytes_total",
            "Response body bytes sent, by route.",
            ["route"],
            registry=self.registry,
        )
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

        self.proxy_requests = Counter(
            "artifactapi_proxy_requests_total",
            "Requests to remote repositories, by repository and cache outcome (HIT, MISS, STALE).",
            ["repository", "cache"],
            registry=self.registry,
        )
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
