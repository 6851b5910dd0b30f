# -*- test-case-name: tests.gateway.test_admin -*-
"""Prometheus metrics, every series named ``interlend_...``.

Counters and histograms are updated where exchanges are answered (the NCIP service and the
Z39.50 listener); gauges (connections, associations, the writer's queue and commit latency) are
read from the running pieces when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 25.0)


class _LiveState(Collector):
    """Gauges read from the gateway at scrape time."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def describe(self) -> list[Any]:
        """Nothing to describe up front: the series are read at scrape time."""
        return []

    def collect(self) -> Iterator[Any]:
        gateway = self.gateway
        connections = GaugeMetricFamily("interlend_open_connections",
                                        "Open connections per listener.", labels=["listener"])
        refused = CounterMetricFamily("interlend_refused_connections",
                                      "Connections refused by the connection limits.",
                                      labels=["listener"])
        for name, factory in gateway.factories.items():
            connections.add_metric([name], factory.open_connections)
            refused.add_metric([name], factory.refused)
        yield connections
        yield refused
        z3950 = getattr(gateway, "z3950_factory", None)
        yield GaugeMetricFamily("interlend_z3950_associations", "Open Z39.50 associations.",
                                value=len(getattr(z3950, "associations", ())))
        resource = getattr(gateway, "ncip_resource", None)
        yield GaugeMetricFamily("interlend_ncip_requests_in_flight",
                                "NCIP requests being processed.",
                                value=getattr(resource, "in_flight", 0))
        store = gateway.store
        yield GaugeMetricFamily("interlend_writer_queue_depth",
                                "Database writes waiting for the writer thread.",
                                value=store.pending)
        yield GaugeMetricFamily("interlend_writer_last_commit_seconds",
                                "Duration of the writer's last commit.",
                                value=store.stats.last_commit_seconds)
        yield CounterMetricFamily("interlend_writer_commits", "Group commits made.",
                                  value=store.stats.commits)
        yield CounterMetricFamily("interlend_writer_jobs",
                                  "Writes committed (jobs / commits = mean group-commit batch).",
                                  value=store.stats.jobs)
        yield CounterMetricFamily("interlend_writer_commit_seconds",
                                  "Time spent committing, in total.",
                                  value=store.stats.commit_seconds_total)
        yield CounterMetricFamily("interlend_writer_failed_commits", "Commits that failed.",
                                  value=store.stats.failed_commits)
        yield CounterMetricFamily("interlend_ncip_rate_limited",
                                  "NCIP requests refused with 429 by the per-address rate.",
                                  value=getattr(resource, "rate_limited", 0))
        site = gateway.factories.get("ncip")
        yield CounterMetricFamily("interlend_ncip_bodies_too_large",
                                  "NCIP requests refused with 413.",
                                  value=getattr(getattr(site, "wrappedFactory", None),
                                                "body_too_large", 0))
        yield CounterMetricFamily("interlend_ncip_arrival_timeouts",
                                  "NCIP requests closed with 408: not received within "
                                  "ncip.request_arrival_timeout.",
                                  value=getattr(getattr(site, "wrappedFactory", None),
                                                "arrival_timeouts", 0))
        yield CounterMetricFamily("interlend_audit_write_failures",
                                  "Audit rows that could not be written.",
                                  value=gateway.audit.failed)
        audit = gateway.audit
        yield CounterMetricFamily("interlend_audit_refused_rows_dropped",
                                  "Rows of refused NCIP requests not stored (per-address bound).",
                                  value=getattr(audit, "refused_dropped", 0))
        yield GaugeMetricFamily("interlend_audit_bodies_suspended",
                                "1 while free disk space is under audit.min_free_disk_mb "
                                "(audit bodies not kept).",
                                value=int(getattr(audit, "bodies_suspended", False)))
        free = getattr(audit, "disk_free_bytes", None)
        if free is not None:
            yield GaugeMetricFamily("interlend_database_disk_free_bytes",
                                    "Free space on the database's file system (last look).",
                                    value=free)


class Metrics:
    """The gateway's metric registry."""

    def __init__(self, gateway: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "interlend_requests", "Exchanges answered, by protocol, service, peer and outcome.",
            ["protocol", "service", "peer", "outcome"], registry=self.registry)
        self.latency = Histogram(
            "interlend_request_duration_seconds", "Time to answer an exchange.",
            ["protocol", "service"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.audit_rows_purged = Counter(
            "interlend_audit_rows_purged", "Audit rows deleted by retention.",
            registry=self.registry)
        self.audit_bodies_purged = Counter(
            "interlend_audit_bodies_purged", "Audit bodies cleared by retention.",
            registry=self.registry)
        self.registry.register(_LiveState(gateway))
        # label children bound once per label set: labels() validates and locks on every call
        self._counters: dict[tuple[str, str, str, str], Any] = {}
        self._latencies: dict[tuple[str, str], Any] = {}

    def observe(self, protocol: str, service: str, peer: str | None, outcome: str,
                seconds: float | None) -> None:
        """Count one answered exchange and its latency (None: count only, no latency known)."""
        key = (protocol, service, peer or "-", outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(*key)
        counter.inc()
        if seconds is not None:
            timed = self._latencies.get((protocol, service))
            if timed is None:
                timed = self._latencies[protocol, service] = self.latency.labels(protocol,
                                                                                 service)
            timed.observe(seconds)

    def render(self) -> bytes:
        """The exposition text for ``/metrics``."""
        return generate_latest(self.registry)
