"""Prometheus metrics of the service, in a registry of its own."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)
# process_resident_memory_bytes and friends: resident memory includes mapped column pages.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

REQUESTS = Counter("rodata_http_requests_total", "HTTP requests answered, by route and status.",
                   ["route", "method", "status"], registry=REGISTRY)
LATENCY = Histogram("rodata_http_request_duration_seconds",
                    "Time from request start to the last body byte handed to the server.",
                    ["route"], registry=REGISTRY,
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                             1.0, 2.5, 5.0, 10.0))
BYTES_SENT = Counter("rodata_http_response_bytes_total", "Response body bytes sent, by route.",
                     ["route"], registry=REGISTRY)
ROWS_SCANNED = Counter("rodata_rows_scanned_total",
                       "Rows read from the memory-mapped columns to answer requests.",
                       ["dataset"], registry=REGISTRY)
GENERATION = Gauge("rodata_generation_info",
                   "1 for the generation each dataset serves now.",
                   ["dataset", "generation"], registry=REGISTRY)
GENERATION_ROWS = Gauge("rodata_generation_rows", "Row count of the generation served now.",
                        ["dataset"], registry=REGISTRY)
GENERATION_SWITCHES = Counter("rodata_generation_switches_total",
                              "Generations loaded, including the first at start.",
                              ["dataset"], registry=REGISTRY)
GENERATION_REJECTED = Counter("rodata_generation_rejected_total",
                              "Published generations that failed to open and were not served.",
                              ["dataset"], registry=REGISTRY)
READY = Gauge("rodata_ready", "1 when /readyz answers 200.", registry=REGISTRY)


class RequestMetrics:
    """Cache of labelled metric children so that the hot path does one dict lookup each."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], object] = {}
        self._latency: dict[str, object] = {}
        self._bytes: dict[str, object] = {}

    def observe(self, route: str, method: str, status: int, seconds: float, size: int) -> None:
        """Record one completed request."""
        key = (route, method, status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = REQUESTS.labels(route, method, str(status))
        counter.inc()

        histogram = self._latency.get(route)
        if histogram is None:
            histogram = self._latency[route] = LATENCY.labels(route)
        histogram.observe(seconds)

        sent = self._bytes.get(route)
        if sent is None:
            sent = self._bytes[route] = BYTES_SENT.labels(route)
        sent.inc(size)
