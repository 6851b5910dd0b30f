# -*- test-case-name: tests.gateway.upstream_ncip.test_faults -*-
"""The upstream LMS in ``/metrics``: its state, calls, errors, time-outs, latency, calls in
flight and outbox rows not yet settled, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.backends.upstream.ncip.client import UpstreamHealth


class UpstreamCollector(Collector):
    """Families for one upstream NCIP responder."""

    def __init__(self, health: UpstreamHealth, profile: str,
                 open_rows: Callable[[], int]) -> None:
        self.health = health
        self.profile = profile
        self.open_rows = open_rows

    def describe(self) -> list[Metric]:
        """Read at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The figures now."""
        h, labels = self.health, [self.profile]

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, text, labels=["profile"])
            family.add_metric(labels, value)
            return family

        def counter(name: str, text: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, text, labels=["profile"])
            family.add_metric(labels, value)
            return family

        yield gauge("interlend_upstream_ncip_up",
                    "1 if the LMS's NCIP responder answered the last call, 0 if not.",
                    1.0 if h.state == "up" else 0.0)
        yield counter("interlend_upstream_ncip_calls", "Calls made to the LMS.", h.calls)
        yield counter("interlend_upstream_ncip_errors",
                      "LMS calls without a usable answer (refused, time-out, HTTP 5xx).",
                      h.errors)
        yield counter("interlend_upstream_ncip_timeouts", "LMS calls past the time limit.",
                      h.timeouts)
        yield gauge("interlend_upstream_ncip_in_flight", "LMS calls in flight now.",
                    h.in_flight)
        yield gauge("interlend_upstream_ncip_last_latency_seconds",
                    "Duration of the last LMS call.", h.last_latency_ms / 1000)
        yield gauge("interlend_upstream_ncip_mean_latency_seconds",
                    "Mean duration of LMS calls since start.",
                    h.latency_ms_total / h.calls / 1000 if h.calls else 0.0)
        yield gauge("interlend_upstream_ncip_outbox_open",
                    "Changes sent to the LMS whose outcome is not yet committed here.",
                    self.open_rows())
