"""Prometheus metrics of the service, in a registry of its own."""

from __future__ import annotations

import time
from bisect import bisect_left
from itertools import accumulate

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

REGISTRY = CollectorRegistry(auto_describe=True)
# process_resident_memory_bytes and friends: resident memory includes mapped column pages.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

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


LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)


class RowsScanned:
    """Rows read from one dataset's memory-mapped columns, shared by its generations."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0
        self.created = time.time()

    def inc(self, amount: int = 1) -> None:
        """Add `amount` rows."""
        self.value += amount


class RequestMetrics:
    """The per-request metrics, kept as plain numbers and exported when /metrics is scraped.

    prometheus_client's Counter and Histogram take a lock and run several Python calls per
    update, about 1.2 us for the three updates of one request. Here an update is a few dict
    and list operations. The collector yields the same names, labels, buckets and `_created`
    samples. Updates and scrapes both run on the event loop thread, so no lock is needed.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests: dict[tuple[str, str, int], list[float]] = {}  # [count, created]
        self.latency: dict[str, list[float]] = {}  # bucket counts, +Inf, sum, created
        self.bytes_sent: dict[str, list[float]] = {}  # [bytes, created]
        self.rows_scanned: dict[str, RowsScanned] = {}
        registry.register(self)

    def observe(self, route: str, method: str, status: int, seconds: float, size: int) -> None:
        """Record one completed request."""
        counter = self.requests.get((route, method, status))
        if counter is None:
            counter = self.requests[(route, method, status)] = [0, time.time()]
        counter[0] += 1

        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = [0] * (len(LATENCY_BUCKETS) + 1) + [0.0, time.time()]
        # bisect_left puts a value equal to a bound in that bound's bucket (Prometheus 'le').
        histogram[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        histogram[-2] += seconds

        sent = self.bytes_sent.get(route)
        if sent is None:
            sent = self.bytes_sent[route] = [0, time.time()]
        sent[0] += size

    def scanned(self, dataset: str) -> RowsScanned:
        """Return the rows-scanned counter of `dataset`."""
        counter = self.rows_scanned.get(dataset)
        if counter is None:
            counter = self.rows_scanned[dataset] = RowsScanned()
        return counter

    def describe(self) -> list[Metric]:
        """Return the metric families without samples (for the registry's name check)."""
        return self._families()

    def collect(self) -> list[Metric]:
        """Return the metric families with their current samples."""
        created = getattr(prometheus_metrics, "_use_created", True)
        requests, latency, sent, scanned = self._families()
        for (route, method, status), (count, since) in self.requests.items():
            requests.add_metric([route, method, str(status)], count,
                                created=since if created else None)
        bounds = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        for route, histogram in self.latency.items():
            cumulative = list(accumulate(histogram[:len(bounds)]))
            latency.add_metric([route], list(zip(bounds, cumulative)), histogram[-2])
            if created:
                latency.samples.append(Sample(latency.name + "_created", {"route": route},
                                              histogram[-1]))
        for route, (size, since) in self.bytes_sent.items():
            sent.add_metric([route], size, created=since if created else None)
        for dataset, counter in self.rows_scanned.items():
            scanned.add_metric([dataset], counter.value,
                               created=counter.created if created else None)
        return [requests, latency, sent, scanned]

    @staticmethod
    def _families() -> list[Metric]:
        return [
            CounterMetricFamily("rodata_http_requests_total",
                                "HTTP requests answered, by route and status.",
                                labels=["route", "method", "status"]),
            HistogramMetricFamily("rodata_http_request_duration_seconds",
                                  "Time from request start to the last body byte handed to "
                                  "the server.", labels=["route"]),
            CounterMetricFamily("rodata_http_response_bytes_total",
                                "Response body bytes sent, by route.", labels=["route"]),
            CounterMetricFamily("rodata_rows_scanned_total",
                                "Rows read from the memory-mapped columns to answer requests.",
                                labels=["dataset"]),
        ]


REQUEST_METRICS = RequestMetrics()
