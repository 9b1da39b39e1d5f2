"""Prometheus metrics, one registry per application (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
