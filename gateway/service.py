# -*- test-case-name: tests.gateway.test_daemon -*-
"""The daemon: opens the store, starts every listener, reloads on SIGHUP, stops cleanly.

:class:`Gateway` owns the running pieces. It is built from a validated :class:`Config` and an
injected reactor; ``interlend serve`` runs it under the real reactor and wires the signals.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
)
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.server import Site

from gateway import __version__, reports, sdnotify
from gateway.admin import AdminResource
from gateway.audit import AuditBatch, AuditLog
from gateway.catalogue import CatalogueService
from gateway.config import Config, ConfigErrors, load_config
from gateway.http import GatewaySite, NcipResource
from gateway.limits import ConnectionLimitFactory
from gateway.lookups import LockoutPolicy, Lookups
from gateway.metrics import Metrics
from gateway.ncip_handlers import LookupHandlers
from gateway.ncip_service import NcipService
from gateway.store import Store
from gateway.workflows import Workflows
from gateway.z3950_server import Z3950Factory

log = Logger()


@dataclass
class Listener:
    """One listening endpoint and its state, as ``/healthz`` reports it."""

    protocol: str
    endpoint: str
    port: IListeningPort | None = None
    error: str | None = None

    def describe(self) -> dict[str, Any]:
        address = None
        if self.port is not None:
            host = self.port.getHost()
            address = f"{getattr(host, 'host', '')}:{getattr(host, 'port', '')}".strip(":")
        return {"protocol": self.protocol, "endpoint": self.endpoint, "address": address,
                "state": "listening" if self.port is not None else "failed",
                "error": self.error}


@dataclass(frozen=True)
class Overrides:
    """Command-line settings that win over the file for this run, across reloads too."""

    database: str | None = None
    z3950_listen: list[str] | None = None
    ncip_listen: list[str] | None = None
    admin_listen: list[str] | None = None


LISTEN_BACKLOG = 1024
"""Listen backlog for endpoints that do not set one. Twisted's default is 50: a burst of
connections (measured: 200 sequential connects) overflows it and the kernel drops SYNs, so
clients stall for a 1 s retransmission -- with connection caps of 1,000 that is far too small.
(The kernel caps it at net.core.somaxconn; socket-activated listeners take systemd's Backlog=.)"""


def with_backlog(endpoint: str) -> str:
    """``endpoint`` with ``backlog=LISTEN_BACKLOG`` added when it is a listening kind that
    takes one and none is given."""
    kind = endpoint.split(":", 1)[0].strip().lower()
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in endpoint.lower():
        return f"{endpoint}:backlog={LISTEN_BACKLOG}"
    return endpoint


PURGE_INTERVAL = 24 * 3600.0
"""Seconds between audit retention runs inside the daemon."""


class Gateway:
    """The running gateway: store, services and listeners, with start, reload and stop."""

    def __init__(self, config: Config, *, reactor: Any, config_path: Path | None = None,
                 overrides: Overrides = Overrides(),
                 environ: dict[str, str] | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.config_path = config_path
        self.overrides = overrides
        self.environ = dict(os.environ) if environ is None else environ
        self.started_at = time.time()
        self.store = Store(config.gateway.database, reactor,
                           busy_timeout=config.gateway.busy_timeout)
        self.audit = AuditLog(self.store, config.audit, reactor)
        self.metrics = Metrics(self)
        self.catalogue = CatalogueService(self)
        self.ncip = NcipService(self)
        self.lookups = Lookups(self.store, LockoutPolicy(
            limit=config.ncip.auth_failures_before_lockout,
            seconds=config.ncip.lockout_seconds, clock=reactor))
        LookupHandlers(self, self.lookups, self.ncip.handlers).register(self.ncip.handlers)
        Workflows(self).register(self.ncip.handlers)
        self.listeners: list[Listener] = []
        self.factories: dict[str, ConnectionLimitFactory] = {}
        self.ncip_resource: NcipResource | None = None
        self.z3950_factory: Z3950Factory | None = None
        self._watchdog: LoopingCall | None = None
        self._purge: LoopingCall | None = None
        self.state = "new"

    # -- start ------------------------------------------------------------------------------

    @inlineCallbacks
    def start(self) -> Any:
        """Open the store and listen on every endpoint; READY=1 once all listeners are up."""
        self.state = "starting"
        self.store.start()
        yield self.audit.start()
        z3950 = self.config.z3950
        ncip = self.config.ncip
        self.z3950_factory = Z3950Factory(self, audit=AuditBatch(self.audit, self.reactor))
        self.factories["z3950"] = ConnectionLimitFactory(
            self.z3950_factory, max_total=z3950.max_connections,
            max_per_host=z3950.max_connections_per_peer, name="z39.50", clock=self.reactor,
            max_rate_per_host=z3950.max_connection_rate_per_peer,
            refuser=self.z3950_factory.refusal, refusal_slots=z3950.refusal_slots)
        self.ncip_resource = NcipResource(
            self.ncip, path=ncip.path, request_timeout=ncip.request_timeout,
            health=self.health, clock=self.reactor,
            max_requests_per_second=ncip.max_requests_per_second_per_peer)
        site = GatewaySite(self.ncip_resource, max_body_size=ncip.max_body_size,
                           idle_timeout=ncip.idle_timeout, reactor=self.reactor)
        self.factories["ncip"] = ConnectionLimitFactory(
            site, max_total=ncip.max_connections, max_per_host=ncip.max_connections_per_peer,
            name="ncip", clock=self.reactor, max_rate_per_host=ncip.max_connection_rate_per_peer)
        admin = Site(AdminResource(self), timeout=ncip.idle_timeout, reactor=self.reactor)
        admin.noisy = False
        self.factories["admin"] = ConnectionLimitFactory(
            admin, max_total=100, max_per_host=20, name="admin", clock=self.reactor)
        wanted = ([("z3950", e) for e in z3950.listen] + [("ncip", e) for e in ncip.listen]
                  + [("admin", e) for e in self.config.admin.listen])
        yield DeferredList([self._listen(protocol, endpoint) for protocol, endpoint in wanted],
                           consumeErrors=True)
        failed = [listener for listener in self.listeners if listener.port is None]
        if failed:
            yield self._stop_listening()
            yield self.store.stop()
            self.state = "failed"
            raise RuntimeError("; ".join(f"{l.protocol} {l.endpoint}: {l.error}" for l in failed))
        self.state = "running"
        for listener in self.listeners:
            log.info("{protocol} listening on {address} ({endpoint})", **listener.describe())
        log.info("Interlend {version} ready: agency {agency}, {peers} peer(s), database {db}",
                 version=__version__, agency=self.config.gateway.agency_id,
                 peers=len(self.config.peers), db=str(self.config.gateway.database))
        sdnotify.notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving", self.environ)
        self._start_watchdog()
        self._purge = LoopingCall(self.purge_audit)
        self._purge.clock = self.reactor
        self._purge.start(PURGE_INTERVAL, now=True).addErrback(
            lambda f: log.failure("audit retention timer stopped", f))

    def purge_audit(self) -> Deferred[tuple[int, int]]:
        """Apply the audit retention (bodies after N days, rows after M days); log the result."""
        settings = self.config.audit
        now = datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)

        def purge(conn: Any) -> tuple[int, int]:
            return reports.purge_audit(conn, now=now, body_days=settings.body_retention_days,
                                       row_days=settings.row_retention_days)

        def done(counts: tuple[int, int]) -> tuple[int, int]:
            cleared, deleted = counts
            self.metrics.audit_bodies_purged.inc(cleared)
            self.metrics.audit_rows_purged.inc(deleted)
            log.info("audit retention: {cleared} bodies older than {body_days} days cleared, "
                     "{deleted} rows older than {row_days} days deleted", cleared=cleared,
                     deleted=deleted, body_days=settings.body_retention_days,
                     row_days=settings.row_retention_days)
            return counts

        def failed(failure: Any) -> None:
            log.error("audit retention failed: {error}", error=failure.getErrorMessage())

        return self.store.write(purge).addCallbacks(done, failed)

    def _listen(self, protocol: str, endpoint: str) -> Deferred[None]:
        listener = Listener(protocol, endpoint)
        self.listeners.append(listener)
        d = maybeDeferred(lambda: serverFromString(
            self.reactor, with_backlog(endpoint)).listen(self.factories[protocol]))

        def listening(port: IListeningPort) -> None:
            listener.port = port

        def failed(failure: Any) -> None:
            listener.error = failure.getErrorMessage()
            log.error("cannot listen on {endpoint} for {protocol}: {error}",
                      endpoint=endpoint, protocol=protocol, error=listener.error)

        return d.addCallbacks(listening, failed)

    def _start_watchdog(self) -> None:
        interval = sdnotify.watchdog_interval(self.environ)
        if interval:
            self._watchdog = LoopingCall(self._ping_watchdog)
            self._watchdog.clock = self.reactor
            self._watchdog.start(interval, now=True)

    def _ping_watchdog(self) -> None:
        """Ping only while the writer thread is alive: a wedged store should get us restarted."""
        if self.store.running:
            sdnotify.notify("WATCHDOG=1", self.environ)

    # -- reload -----------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the configuration file; apply peers and limits, keep connections open.

        An invalid file keeps the old configuration and logs every error. Listen endpoints and
        the database path need a restart; a change to them is logged and otherwise ignored.
        """
        if self.config_path is None:
            log.info("SIGHUP: no configuration file to reload (running on built-in defaults)")
            return False
        sdnotify.notify("RELOADING=1", self.environ)
        try:
            try:
                new = load_config(self.config_path)
            except ConfigErrors as e:
                for line in e.errors:
                    log.error("reload refused, {source}: {error}", source=e.source, error=line)
                log.error("configuration not reloaded: {count} error(s); keeping the old one",
                          count=len(e.errors))
                return False
            new = new.with_overrides(database=self.overrides.database,
                                     z3950_listen=self.overrides.z3950_listen,
                                     ncip_listen=self.overrides.ncip_listen,
                                     admin_listen=self.overrides.admin_listen)
            old = self.config
            for section, key in (("z3950", "listen"), ("ncip", "listen"), ("ncip", "path"),
                                 ("admin", "listen"), ("gateway", "database")):
                if getattr(getattr(new, section), key) != getattr(getattr(old, section), key):
                    log.warn("{section}.{key} changed: takes effect after a restart",
                             section=section, key=key)
            # Keep what cannot change without a restart; take everything else.
            new = replace(new, gateway=replace(new.gateway, database=old.gateway.database),
                          z3950=replace(new.z3950, listen=old.z3950.listen),
                          ncip=replace(new.ncip, listen=old.ncip.listen, path=old.ncip.path),
                          admin=replace(new.admin, listen=old.admin.listen))
            self.config = new
            self._apply_limits()
            log.info("configuration reloaded from {path}: {peers} peer(s)",
                     path=str(self.config_path), peers=len(new.peers))
            return True
        finally:
            sdnotify.notify("READY=1", self.environ)

    def _apply_limits(self) -> None:
        for name, settings in (("z3950", self.config.z3950), ("ncip", self.config.ncip)):
            factory = self.factories.get(name)
            if factory is not None:
                factory.max_total = settings.max_connections
                factory.max_per_host = settings.max_connections_per_peer
                factory.rate.rate = settings.max_connection_rate_per_peer
                factory.rate.burst = max(1.0, 2 * settings.max_connection_rate_per_peer)
        if "z3950" in self.factories:
            self.factories["z3950"].refusal_slots = self.config.z3950.refusal_slots
        self.audit.settings = self.config.audit
        self.lookups.lockout.limit = self.config.ncip.auth_failures_before_lockout
        self.lookups.lockout.seconds = self.config.ncip.lockout_seconds
        if self.ncip_resource is not None:
            self.ncip_resource.set_timeout(self.config.ncip.request_timeout)
            rate = self.config.ncip.max_requests_per_second_per_peer
            self.ncip_resource.rate.rate, self.ncip_resource.rate.burst = rate, max(1.0, 2 * rate)
        site = self.factories.get("ncip")
        if site is not None:
            site.wrappedFactory.max_body_size = self.config.ncip.max_body_size

    # -- stop -------------------------------------------------------------------------------

    @inlineCallbacks
    def stop(self) -> Any:
        """Stop accepting, let requests in flight finish (bounded), close the store."""
        if self.state in ("stopping", "stopped"):
            return
        self.state = "stopping"
        sdnotify.notify("STOPPING=1", self.environ)
        log.info("stopping: no new connections; waiting up to {grace}s for requests in flight",
                 grace=self.config.gateway.shutdown_grace)
        for timer in (self._watchdog, self._purge):
            if timer is not None and timer.running:
                timer.stop()
        yield self._stop_listening()
        waits = []
        if self.ncip_resource is not None:
            waits.append(self.ncip_resource.wait_idle())
        if self.z3950_factory is not None:
            waits.append(self.z3950_factory.wait_idle())
        if waits:
            done = gatherResults(waits)
            timeout = self.reactor.callLater(self.config.gateway.shutdown_grace, done.cancel)
            try:
                yield done
            except Exception:
                log.warn("shutdown grace period over; closing with requests still in flight")
            if timeout.active():
                timeout.cancel()
        if self.z3950_factory is not None:
            self.z3950_factory.close_all()
        yield self.store.stop()
        self.state = "stopped"
        log.info("stopped")

    def _stop_listening(self) -> Deferred[Any]:
        ports = [listener.port for listener in self.listeners if listener.port is not None]
        return gatherResults([port.stopListening() for port in ports])

    # -- health -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The state of the database and listeners, for ``/healthz``."""
        database = self.store.health()
        listeners = [listener.describe() for listener in self.listeners]
        ok = database["ok"] and self.state == "running" and all(
            entry["state"] == "listening" for entry in listeners)
        return {
            "status": "ok" if ok else "degraded",
            "state": self.state,
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "database": database,
            "listeners": listeners,
            "connections": {name: factory.open_connections
                            for name, factory in self.factories.items()},
            "refused_connections": {name: factory.refused
                                    for name, factory in self.factories.items()},
        }
