# -*- test-case-name: tests.gateway.test_admin -*-
"""Prometheus metrics, every series named ``interlend_...``.

Counters and histograms are updated where exchanges are answered (the NCIP service and the
Z39.50 listener); gauges (connections, associations, the writer's queue and commit latency) are
read from the running pieces when ``/metrics`` is scraped.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import twisted
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway import __version__
from gateway.storage import audit_log, request_reports
from gateway.storage.store import SQLITE_VERSION, Connection, Store
from protocols.z3950.diagnostics import diagnostic_name

if TYPE_CHECKING:
    from gateway.audit import AuditLog
    from gateway.config import Peer
    from gateway.ncip.peers import Credentials

log = Logger()

DATABASE_FIGURES_SECONDS = 10.0
"""How long figures read from the database (requests by state, overdue loans, last exchange
per peer) are reused between scrapes: a scrape every few seconds costs at most one read."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 25.0)


@dataclass(frozen=True)
class MemoryFigures:
    """The Z39.50 memory budget as the catalogue service holds it."""

    used: int
    limit: int
    refused: int


@dataclass(frozen=True)
class LiveFigures:
    """What the running listeners report at scrape time (the composition root gathers it)."""

    open_connections: Mapping[str, int] = field(default_factory=dict)
    refused_connections: Mapping[str, int] = field(default_factory=dict)
    z3950_associations: int = 0
    ncip_in_flight: int = 0
    ncip_rate_limited: int = 0
    ncip_bodies_too_large: int = 0
    ncip_arrival_timeouts: int = 0
    failed_reloads: int = 0
    memory: MemoryFigures | None = None


class _LiveState(Collector):
    """Gauges read at scrape time: the listeners' figures, the writer's, the audit log's."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        """Nothing to describe up front: the series are read at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        live = self.metrics.live()
        yield from _listener_families(live)
        yield from _writer_families(self.metrics.store)
        yield from _audit_families(self.metrics.audit)
        yield from _memory_families(live.memory)


def _listener_families(live: LiveFigures) -> Iterator[Metric]:
    connections = GaugeMetricFamily("interlend_open_connections",
                                    "Open connections per listener.", labels=["listener"])
    for name, count in live.open_connections.items():
        connections.add_metric([name], count)
    refused = CounterMetricFamily("interlend_refused_connections",
                                  "Connections refused by the connection limits.",
                                  labels=["listener"])
    for name, count in live.refused_connections.items():
        refused.add_metric([name], count)
    yield connections
    yield refused
    yield GaugeMetricFamily("interlend_z3950_associations", "Open Z39.50 associations.",
                            value=live.z3950_associations)
    yield GaugeMetricFamily("interlend_ncip_requests_in_flight",
                            "NCIP requests being processed.", value=live.ncip_in_flight)
    yield CounterMetricFamily("interlend_ncip_rate_limited",
                              "NCIP requests refused with 429 by the per-address rate.",
                              value=live.ncip_rate_limited)
    yield CounterMetricFamily("interlend_ncip_bodies_too_large",
                              "NCIP requests refused with 413.",
                              value=live.ncip_bodies_too_large)
    yield CounterMetricFamily("interlend_ncip_arrival_timeouts",
                              "NCIP requests closed with 408: not received within "
                              "ncip.request_arrival_timeout.",
                              value=live.ncip_arrival_timeouts)
    yield CounterMetricFamily("interlend_config_reloads_failed",
                              "Configuration reloads refused (the old one was kept).",
                              value=live.failed_reloads)


def _writer_families(store: Store) -> Iterator[Metric]:
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
    size = GaugeMetricFamily("interlend_database_size_bytes",
                             "Size of the database file and of its write-ahead log.",
                             labels=["file"])
    path = getattr(store, "path", "")
    for label, suffix in (("database", ""), ("wal", "-wal")):
        try:
            size.add_metric([label], os.stat(f"{path}{suffix}").st_size if path else 0)
        except OSError:
            size.add_metric([label], 0)
    yield size


def _audit_families(audit: AuditLog) -> Iterator[Metric]:
    yield CounterMetricFamily("interlend_audit_write_failures",
                              "Audit rows that could not be written.", value=audit.failed)
    yield GaugeMetricFamily("interlend_audit_rows_pending",
                            "Audit rows kept in memory while the database is busy.",
                            value=getattr(audit, "pending", 0))
    yield CounterMetricFamily("interlend_audit_rows_retried",
                              "Audit rows written after the database was busy.",
                              value=getattr(audit, "retried", 0))
    yield CounterMetricFamily("interlend_audit_rows_dropped",
                              "Audit rows dropped because the retry queue was full.",
                              value=getattr(audit, "dropped", 0))
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


def _memory_families(memory: MemoryFigures | None) -> Iterator[Metric]:
    if memory is None:
        return
    yield GaugeMetricFamily("interlend_z3950_memory_budget_used_bytes",
                            "Bytes of z3950.memory_budget held by saved result sets "
                            "and partial PDUs.", value=memory.used)
    yield GaugeMetricFamily("interlend_z3950_memory_budget_bytes",
                            "z3950.memory_budget: what all Z39.50 clients may hold.",
                            value=memory.limit)
    yield CounterMetricFamily("interlend_z3950_memory_budget_refusals",
                              "Result sets or PDUs refused because the budget was "
                              "spent (Bib-1 31 or Close(resources)).",
                              value=memory.refused)


def read_figures(conn: Connection, now: float) -> DatabaseFigures:
    """The figures as of ``now`` (POSIX seconds), read in one go on ``conn``."""
    figures = DatabaseFigures()
    figures.by_state = request_reports.requests_by_role_and_state(conn)
    figures.overdue = request_reports.overdue_by_peer_and_role(
        conn, datetime.fromtimestamp(now, timezone.utc).isoformat())
    figures.last_exchange = audit_log.last_exchange_per_peer(conn)
    return figures


class DatabaseFigures:
    """What the metrics read from the database: requests by state, overdue loans, the last
    exchange per peer. Read on a reader thread before a scrape is answered (at most every
    :data:`DATABASE_FIGURES_SECONDS`), never on the reactor."""

    def __init__(self) -> None:
        self.read_at: float | None = None
        self.by_state: list[tuple[str, str, int]] = []
        self.overdue: list[tuple[str, str, int]] = []
        self.last_exchange: list[tuple[str, float]] = []

    def refresh(self, store: Store, now: float) -> Deferred[None]:
        """Read the figures on a reader thread unless the last read is recent enough."""
        if self.read_at is not None and now - self.read_at < DATABASE_FIGURES_SECONDS:
            return succeed(None)
        def keep(figures: DatabaseFigures) -> None:
            self.by_state, self.overdue = figures.by_state, figures.overdue
            self.last_exchange = figures.last_exchange
            self.read_at = now

        return store.read(lambda conn: read_figures(conn, now)).addCallback(keep)

    def families(self) -> Iterator[Metric]:
        """The figures as metric families (none before the first read)."""
        if self.read_at is None:
            return
        states = GaugeMetricFamily("interlend_rs_requests",
                                   "Resource-sharing requests by role and current state.",
                                   labels=["role", "state"])
        for role, state, count in self.by_state:
            states.add_metric([role, state], count)
        yield states
        overdue = GaugeMetricFamily(
            "interlend_overdue_loans", "Open resource-sharing loans past their due date, by "
            "partner and role (lender: our item at a partner; borrower: a partner's item "
            "with our patron).", labels=["peer", "role"])
        for peer, role, count in self.overdue:
            overdue.add_metric([peer, role], count)
        yield overdue
        last = GaugeMetricFamily("interlend_peer_last_exchange_timestamp_seconds",
                                 "Time of the newest audited exchange with each peer.",
                                 labels=["peer"])
        for peer, seconds in self.last_exchange:
            last.add_metric([peer], seconds)
        yield last


class Metrics:
    """The gateway's metric registry.

    ``live`` gathers the running listeners' figures at scrape time (the composition root
    knows them); the writer's and the audit log's are read from ``store`` and ``audit``.
    """

    def __init__(self, store: Store, audit: AuditLog, clock: IReactorTime, *,
                 live: Callable[[], LiveFigures] = LiveFigures) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock
        self.live = live
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
        self.registry.register(_LiveState(self))
        self.figures = DatabaseFigures()
        self.registry.register(_Figures(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        build = InfoMetricFamily("interlend_build", "Interlend version and runtime.")
        build.add_metric([], {"version": __version__, "python": platform.python_version(),
                              "twisted": twisted.__version__,
                              "sqlite": SQLITE_VERSION})
        self.registry.register(_Fixed([build]))
        self.diagnostics = Counter(
            "interlend_z3950_diagnostics", "Z39.50 diagnostics sent, by Bib-1 code and name.",
            ["code", "name", "peer"], registry=self.registry)
        self.auth_failures = Counter(
            "interlend_ncip_auth_failures", "NCIP requests refused by peer authentication, "
            "by the peer they claimed to be (unknown: no configured peer has that agency id).",
            ["claimed_peer", "reason"], registry=self.registry)
        # label children bound once per label set: labels() validates and locks on every call
        self._counters: dict[tuple[str, str, str, str], Counter] = {}
        self._latencies: dict[tuple[str, str], Histogram] = {}

    def observe(self, protocol: str, service: str, peer: str | None, outcome: str,
                seconds: float | None) -> None:
        """Count one answered exchange and its latency (None: count only, no latency known)."""
        key = (protocol, service, peer or "-", outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(*key)
        counter.inc()
        if protocol == "z3950" and outcome.startswith("diagnostic "):
            code = outcome[len("diagnostic "):]
            name = diagnostic_name(int(code)) if code.isdigit() else "unknown"
            self.diagnostics.labels(code, name, peer or "-").inc()
        if seconds is not None:
            timed = self._latencies.get((protocol, service))
            if timed is None:
                timed = self._latencies[protocol, service] = self.latency.labels(protocol,
                                                                                 service)
            timed.observe(seconds)

    def auth_failure(self, claimed_peer: str | None, reason: str) -> None:
        """Count an NCIP request refused by peer authentication, by the peer it claimed."""
        self.auth_failures.labels(claimed_peer or "unknown", reason).inc()

    def refresh(self) -> Deferred[None]:
        """Read the database figures if they are stale; call before :meth:`render`."""
        if not self.store.running:
            return succeed(None)

        def failed(failure: Failure) -> None:  # the scrape still answers, with the last figures
            log.warn("metrics: database figures not read: {error}",
                     error=failure.getErrorMessage())

        return self.figures.refresh(self.store, self.clock.seconds()).addErrback(failed)

    def render(self) -> bytes:
        """The exposition text for ``/metrics``."""
        return generate_latest(self.registry)


class _Figures(Collector):
    """The database figures as last read (see :meth:`Metrics.refresh`)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        """Nothing to describe up front: the figures are read at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The figures as last read."""
        return self.metrics.figures.families()


class _Fixed(Collector):
    """Families that never change (build info)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        """The families, as given."""
        return iter(self._families)


def claimed_peer(peers: tuple[Peer, ...], creds: Credentials) -> str | None:
    """The peer a request refused by authentication claimed to be: the one its credentials
    identify (its agency id, system id or token), else the one whose agency id it names."""
    from gateway.ncip.peers import PeerError, identify

    try:
        return str(identify(peers, creds).name)
    except PeerError:
        pass
    agency = (creds.from_agency or "").strip().casefold()
    for peer in peers:
        if agency and agency in (a.strip().casefold() for a in peer.ncip_agency_ids):
            return str(peer.name)
    return None
