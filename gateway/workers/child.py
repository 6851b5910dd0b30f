# -*- test-case-name: tests.gateway.test_workers -*-
"""A worker process: serves Z39.50 and NCIP on listening sockets inherited from the primary.

Started by the primary (:mod:`gateway.workers.pool`) as ``python -m gateway.workers.child``
with the listening descriptors it shares and the control channel on its stdin/stdout
(:mod:`gateway.workers.channel`); its log lines go to stderr, the primary's own. It reads the
database with its own reader connections (WAL: readers never wait for the writer) and writes
nothing: audit rows and metric observations are shipped to the primary in batches, which
writes them through its one writer (a Z39.50 or lookup audit row is written as soon as the
batch reaches the writer, as in a single process: it is not on the reply's path). NCIP requests
that change state are forwarded to the primary (:mod:`gateway.workers.ncip_routing`).

It stops, draining its associations (operations in flight answered, then Close), when the
primary says so, on SIGTERM/SIGINT, or when the channel ends (the primary is gone; the kernel
also sends SIGTERM then, by ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import stdio
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from gateway.audit import AuditEntry, AuditLog
from gateway.backends.registry import BackendContext, backend_for
from gateway.config import Config
from gateway.listeners.limits import ConnectionLimitFactory
from gateway.listeners.z3950 import Z3950Factory
from gateway.processes import die_with_parent
from gateway.storage.store import Store
from gateway.workers.channel import Channel
from gateway.workers.ncip_listener import WorkerNcip
from gateway.workers.sharing import shared_cap, shared_rate
from gateway.z3950.catalogue import CatalogueService

if TYPE_CHECKING:
    from gateway.admin.metrics import Metrics

log = Logger()

FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "unix": socket.AF_UNIX}

SHIP_DELAY = 0.01
"""Seconds a worker gathers audit rows and observations before it ships them as one message."""

SHIP_ROWS = 256
"""Rows after which they are shipped at once."""

FIGURES_INTERVAL = 1.0
"""Seconds between two reports of the worker's open connections to the primary."""

Observation = tuple[str, tuple[Any, ...]]
"""A metrics call to repeat in the primary: the method's name and its arguments."""


class Shipper:
    """Gathers audit rows and metric observations; ships them to the primary in batches.

    The listener's audit sink (``record``) and the metrics' ``observe`` both land here.
    """

    def __init__(self, channel: Channel, clock: Any, log: AuditLog) -> None:
        self.channel = channel
        self.clock = clock
        self.log = log  # the listener reads ``audit.log.keep_bodies`` (free-space floor)
        self.rows: list[AuditEntry] = []
        self.observations: list[Observation] = []
        self._call: IDelayedCall | None = None

    def record(self, entry: AuditEntry) -> None:
        """Stamp the row now (unless it has a time) and ship it with the next batch."""
        self.rows.append(entry if entry.time else replace(entry, time=self.log.now()))
        self._soon()

    def observe(self, observation: Observation) -> None:
        self.observations.append(observation)
        self._soon()

    def _soon(self) -> None:
        if len(self.rows) + len(self.observations) >= SHIP_ROWS:
            self.flush()
        elif self._call is None:
            self._call = self.clock.callLater(SHIP_DELAY, self.flush)

    def flush(self) -> None:
        """Ship everything gathered now."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        if self.rows or self.observations:
            rows, self.rows = self.rows, []
            observations, self.observations = self.observations, []
            self.channel.send("rows", (rows, observations))


class ShippedMetrics:
    """The worker's metrics: exchanges are counted by the primary, from the observations
    shipped to it (``/metrics`` is the primary's). It has the two calls the listeners and the
    NCIP service make of :class:`gateway.admin.metrics.Metrics`, without a registry of its
    own: a worker does not import prometheus_client (about 2 MiB per process)."""

    shipper: Shipper | None = None

    def observe(self, protocol: str, service: str, peer: str | None, outcome: str,
                seconds: float | None) -> None:
        if self.shipper is not None:
            self.shipper.observe(("observe", (protocol, service, peer, outcome, seconds)))

    def auth_failure(self, claimed_peer: str | None, reason: str) -> None:
        if self.shipper is not None:
            self.shipper.observe(("auth_failure", (claimed_peer, reason)))


class ShippedAuditLog(AuditLog):
    """The worker's audit log: rows are built here (bodies redacted, patron ids hashed with
    the primary's key) and shipped to the primary's writer."""

    shipper: Shipper | None = None

    def record(self, entry: AuditEntry) -> Deferred[None]:
        if self.shipper is not None:
            self.shipper.record(entry)
        return succeed(None)

    def record_soon(self, entry: AuditEntry) -> None:
        """Lookup rows too go to the primary: the shipper gathers them already."""
        self.record(entry)

    def record_many(self, entries: Sequence[AuditEntry]) -> Deferred[None]:
        for entry in entries:
            self.record(entry)
        return succeed(None)


class Worker:
    """One worker's running pieces: reader-only store, catalogue, Z39.50 listeners."""

    def __init__(self, config: Config, *, reactor: Any, channel: Channel,
                 listen: Sequence[tuple[str, int, str]], serving: int,
                 key: bytes | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.channel = channel
        self.listen = list(listen)
        self.serving = serving
        self.state = "new"
        gateway = config.gateway
        self.store = Store(gateway.database, reactor, busy_timeout=gateway.busy_timeout,
                           catalogue_readers=gateway.catalogue_readers)
        audit = self.audit_log = ShippedAuditLog(self.store, config.audit, reactor)
        if key is not None:
            audit._key = key
        self.shipper = Shipper(channel, reactor, audit)
        audit.shipper = self.shipper
        self.audit = audit
        self.metrics = ShippedMetrics()
        self.metrics.shipper = self.shipper
        self.primary_ok = True
        context = BackendContext(
            config=lambda: self.config, store=self.store, clock=reactor, audit=audit,
            metrics=cast("Metrics", self.metrics),
            stopping=lambda: self.state in ("stopping", "stopped"))
        backend, backend_context = backend_for("catalogue", config.backend, context)
        self.catalogue = CatalogueService(backend.catalogue(backend_context),
                                          config=lambda: self.config, clock=reactor)
        self.z3950_factory = Z3950Factory(self, audit=self.shipper)
        self.ncip: WorkerNcip | None = None
        if any(protocol == "ncip" for protocol, _, _ in self.listen):
            self.ncip = WorkerNcip(self, context)
        z3950 = config.z3950
        self.limits = ConnectionLimitFactory(
            self.z3950_factory, max_total=1, max_per_host=1, name="z39.50", clock=reactor,
            refuser=self.z3950_factory.refusal, refusal_slots=z3950.refusal_slots)
        self._apply_limits()
        self.ports: list[IListeningPort] = []
        self._figures = LoopingCall(self._report)
        self._figures.clock = reactor
        self._stopped: Deferred[None] | None = None

    def start(self) -> None:
        """Open the readers and take connections on the inherited sockets."""
        self.state = "starting"
        self.store.start_readers()
        for protocol, fd, family in self.listen:
            factory = (self.limits if protocol == "z3950"
                       else self.ncip.limits if protocol == "ncip" and self.ncip else None)
            if factory is None:
                continue
            self.ports.append(self.reactor.adoptStreamPort(fd, FAMILIES[family], factory))
            os.close(fd)  # adoptStreamPort took its own copy
        self.state = "running"
        self._figures.start(FIGURES_INTERVAL, now=True)
        self.channel.send("ready", {"pid": os.getpid()})
        log.info("worker {pid} serving on {count} inherited socket(s)",
                 pid=os.getpid(), count=len(self.ports))

    def reconfigure(self, config: Config) -> None:
        """A reload reached the primary: take its configuration (limits, peers, audit)."""
        self.config = config
        self._apply_limits()
        log.info("worker {pid}: configuration reloaded", pid=os.getpid())

    def _apply_limits(self) -> None:
        """Connection caps are shared out between the serving processes (never more admitted
        in all than the configuration allows)."""
        z3950, n, limits = self.config.z3950, self.serving, self.limits
        limits.max_total = shared_cap(z3950.max_connections, n)
        limits.max_per_host = shared_cap(z3950.max_connections_per_peer, n)
        limits.rate.rate = shared_rate(z3950.max_connection_rate_per_peer, n)
        limits.rate.burst = max(1.0, 2 * limits.rate.rate)
        limits.refusal_slots = self.config.z3950.refusal_slots
        self.audit_log.settings = self.config.audit
        if self.ncip is not None:
            self.ncip.apply_limits(self.config, n)

    def _report(self) -> None:
        ncip = self.ncip
        self.channel.send("figures", {
            "open": self.limits.open_connections, "refused": self.limits.refused,
            "associations": len(self.z3950_factory.associations),
            "ncip_open": ncip.limits.open_connections if ncip else 0,
            "ncip_refused": ncip.limits.refused if ncip else 0,
            "ncip_in_flight": ncip.resource.in_flight if ncip else 0})

    @inlineCallbacks
    def stop(self) -> Any:
        """Stop taking connections, let operations in flight finish (bounded by
        ``shutdown_grace``), close every association, ship the last rows."""
        if self.state in ("stopping", "stopped"):
            return
        self.state = "stopping"
        if self._figures.running:
            self._figures.stop()
        ports, self.ports = self.ports, []
        for port in ports:
            yield port.stopListening()
        waits = [self.z3950_factory.wait_idle()]
        if self.ncip is not None:
            waits.append(self.ncip.resource.wait_idle())
        done = gatherResults(waits)
        timeout = self.reactor.callLater(self.config.gateway.shutdown_grace, done.cancel)
        try:
            yield done
        except Exception:  # noqa: BLE001 - the grace period is over
            log.warn("worker {pid}: grace period over; closing with operations in flight",
                     pid=os.getpid())
        if timeout.active():
            timeout.cancel()
        self.z3950_factory.close_all()
        # the Close PDUs leave on the reactor's next writes: wait until every association's
        # connection is gone (bounded), or the process could end with them still buffered
        for _ in range(200):
            if not self.z3950_factory.associations:
                break
            yield deferLater(self.reactor, 0.01, lambda: None)
        self._report()
        if self.ncip is not None:
            self.ncip.after_replies.flush()  # the last lookups' audit rows
        self.shipper.flush()
        self.channel.send("stopped", {"pid": os.getpid()})
        lost: Deferred[None] | None = getattr(self.channel, "lost", None)
        if self.channel.transport is not None:
            self.channel.transport.loseConnection()  # written out before the process ends
        if lost is not None and not lost.called:
            flushed = self.reactor.callLater(5.0, lost.callback, None)
            yield lost
            if flushed.active():
                flushed.cancel()
        yield self.store.stop()
        self.state = "stopped"


class _ChannelEnd(Channel):
    """The worker's end: the primary gone (EOF) stops the worker."""

    lost: Deferred[None]

    def connectionLost(self, reason: Any = None) -> None:
        if not self.lost.called:
            self.lost.callback(None)


def _stop_reactor(reactor: Any) -> None:
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass  # already stopping


def run(argv: Sequence[str] | None = None) -> int:
    """The worker's main: wait for the configuration, serve, stop when told."""
    parser = argparse.ArgumentParser(prog="interlend-worker")
    parser.add_argument("--listen", action="append", default=[],
                        help="PROTOCOL:FD:FAMILY of an inherited listening socket")
    parser.add_argument("--serving", type=int, default=2,
                        help="processes serving the listeners in all (caps are shared out)")
    parser.add_argument("--log-format", default="text")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    die_with_parent(signal.SIGTERM)
    from twisted.internet import reactor

    from gateway.daemon.logs import start_logging

    start_logging(sys.stderr, log_format=args.log_format, level=args.log_level)
    sys.setswitchinterval(0.001)
    listen = []
    for spec in args.listen:
        protocol, fd, family = spec.split(":")
        listen.append((protocol, int(fd), family))
    worker: list[Worker] = []
    key: list[bytes] = []

    def handle(kind: str, payload: Any) -> None:
        if kind == "key":
            key[:] = [payload]
        elif kind == "config":
            if worker:
                worker[0].reconfigure(payload)
            else:
                worker.append(Worker(payload, reactor=reactor, channel=channel, listen=listen,
                                     serving=args.serving, key=key[0] if key else None))
                worker[0].start()
        elif kind == "ncip-reply" and worker and worker[0].ncip is not None:
            worker[0].ncip.answered(*payload)
        elif kind == "health" and worker:
            worker[0].primary_ok = bool(payload)
        elif kind == "stop":
            _stop_reactor(reactor)

    channel = _ChannelEnd(handle)
    channel.lost = Deferred()

    def gone(_: object) -> None:
        if worker and worker[0].ncip is not None:
            worker[0].ncip.primary_gone()
        _stop_reactor(reactor)

    channel.lost.addCallback(gone)
    stdio.StandardIO(channel)

    def stopping() -> Deferred[None]:
        if not worker:
            return succeed(None)
        d: Deferred[None] = worker[0].stop()
        return d

    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.run()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
