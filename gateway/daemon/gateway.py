# -*- test-case-name: tests.gateway.test_daemon -*-
"""The daemon: opens the store, starts every listener, reloads on SIGHUP, stops cleanly.

:class:`Gateway` is the composition root: it builds the running pieces from a validated
:class:`Config` and an injected reactor, selects the backend ``[backend] kind`` names
(:mod:`gateway.backends.registry`), and hands each piece what it needs, typed. ``interlend
serve`` runs it under the real reactor and wires the signals.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import Request
from twisted.web.server import Site

from gateway import __version__
from gateway.admin.http import AdminResource
from gateway.admin.metrics import LiveFigures, MemoryFigures, Metrics
from gateway.audit import AuditBatch, AuditLog
from gateway.backends.registry import BackendContext, backend_for
from gateway.config import Config, ConfigErrors, admin_problems, load_config
from gateway.daemon import reloading, sdnotify
from gateway.domain.lookups import LockoutPolicy, Lookups
from gateway.listeners.limits import ConnectionLimitFactory
from gateway.listeners.ncip_http import GatewaySite, NcipResource
from gateway.listeners.oai_http import oai_factory
from gateway.listeners.sru_http import SruResource
from gateway.listeners.z3950 import Z3950Factory
from gateway.ncip.lookups import LookupHandlers
from gateway.ncip.service import NcipService
from gateway.ncip.workflows import Workflows
from gateway.sru.service import SruService
from gateway.storage import meta, retention
from gateway.storage.pin_failures import StorePinFailures
from gateway.storage.store import Connection, Store
from gateway.workers import reuseport
from gateway.workers.pool import WorkerFigures, WorkerPool
from gateway.workers.sharing import shared_cap, shared_rate
from gateway.z3950.catalogue import CatalogueService

log = Logger()


class StartupFailed(Exception):
    """Start-up could not complete; the reasons have already been logged, one line each."""


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
            name, number = getattr(host, "host", None), getattr(host, "port", None)
            if name is None:  # a Unix socket
                address = str(getattr(host, "name", ""))
            else:
                address = f"[{name}]:{number}" if ":" in name else f"{name}:{number}"
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
    sru_listen: list[str] | None = None


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


def _stop_port(port: IListeningPort) -> Deferred[None]:
    """``port.stopListening()`` as a Deferred: it returns None for a port already closed."""
    d: Deferred[None] | None = port.stopListening()
    return d if d is not None else succeed(None)


class AdminSite(Site):
    """The admin listener's site: its GETs (dashboard views, each Prometheus scrape) are
    routine, so they are logged at debug level, not at info."""

    noisy = False

    def log(self, request: Request) -> None:
        log.debug("admin {method} {uri} {code}",
                  method=request.method.decode("latin-1", "replace"),
                  uri=request.uri.decode("latin-1", "replace").split("?", 1)[0],
                  code=request.code)


SHARED = ("z3950", "ncip")
"""The listeners worker processes serve with the primary (``[gateway] workers``)."""

SHAREABLE_KINDS = ("tcp", "tcp6", "unix", "systemd")
"""Endpoint kinds whose listening socket a worker can adopt as it is."""

PROBE_INTERVAL = 0.5
"""Seconds between database probes while the last commit failed (see ``_probe_database``)."""

PURGE_INTERVAL = 24 * 3600.0
"""Seconds between audit retention runs inside the daemon."""


class Gateway:
    """The running gateway: store, services and listeners, with start, reload and stop."""

    def __init__(self, config: Config, *, reactor: Any, config_path: Path | None = None,
                 overrides: Overrides = Overrides(),
                 environ: dict[str, str] | None = None) -> None:
        """``reactor`` provides time, threads and the listening endpoints (the real one, or a
        ``MemoryReactorClock`` in tests). Raises
        :class:`~gateway.backends.registry.BackendUnavailable` when the configured backend
        cannot be loaded."""
        self.config = config
        self.reactor = reactor
        self.config_path = config_path
        self.overrides = overrides
        self.environ = dict(os.environ) if environ is None else environ
        self._listen_environ = environ  # None: the sockets Twisted itself found
        self.started_at = time.time()
        self.store = Store(config.gateway.database, reactor,
                           busy_timeout=config.gateway.busy_timeout,
                           catalogue_readers=config.gateway.catalogue_readers)
        self.audit = AuditLog(self.store, config.audit, reactor,
                              key_file=Path(config.gateway.key_file)
                              if config.gateway.key_file else None)
        self.metrics = Metrics(self.store, self.audit, reactor, live=self.live_figures)
        context = BackendContext(
            config=lambda: self.config, store=self.store, clock=reactor, audit=self.audit,
            metrics=self.metrics, stopping=lambda: self.state in ("stopping", "stopped"))
        self.catalogue_backend, self.catalogue_context = backend_for(
            "catalogue", config.backend, context)
        self.circulation_backend, self.circulation_context = backend_for(
            "circulation", config.backend, context)
        self.catalogue = CatalogueService(
            self.catalogue_backend.catalogue(self.catalogue_context),
            config=lambda: self.config, clock=reactor)
        self.sru = SruService(self.catalogue.catalogue, config=lambda: self.config,
                              clock=reactor)
        self.sru_resource: SruResource | None = None
        self._sru_audit: AuditBatch | None = None
        self.ncip = NcipService(self)
        self.circulation = self.circulation_backend.circulation(self.circulation_context)
        self.lookups = Lookups(self.circulation, StorePinFailures(self.store), LockoutPolicy(
            limit=config.ncip.auth_failures_before_lockout,
            seconds=config.ncip.lockout_seconds, clock=reactor))
        LookupHandlers(self, self.lookups, self.ncip.handlers).register(self.ncip.handlers)
        Workflows(self, self.circulation).register(self.ncip.handlers)
        self.listeners: list[Listener] = []
        self.factories: dict[str, ConnectionLimitFactory] = {}
        self.ncip_resource: NcipResource | None = None
        self.z3950_factory: Z3950Factory | None = None
        self._watchdog: LoopingCall | None = None
        self._purge: LoopingCall | None = None
        self._probe: LoopingCall | None = None
        self.state = "new"
        self.last_reload = reloading.ReloadOutcome()
        self.failed_reloads = 0
        self.workers: WorkerPool | None = None
        self.log_options = ("text", "info")  # the workers log as the primary does

    # -- start ------------------------------------------------------------------------------

    @inlineCallbacks
    def start(self) -> Any:
        """Open the store and listen on every endpoint; READY=1 once all listeners are up."""
        self.state = "starting"
        reloading.forget_staged_config(self.environ)
        self.store.start()
        key = yield self.audit.start()
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
                           idle_timeout=ncip.idle_timeout,
                           request_arrival_timeout=ncip.request_arrival_timeout,
                           reactor=self.reactor)
        self.factories["ncip"] = ConnectionLimitFactory(
            site, max_total=ncip.max_connections, max_per_host=ncip.max_connections_per_peer,
            name="ncip", clock=self.reactor, max_rate_per_host=ncip.max_connection_rate_per_peer)
        admin = AdminSite(AdminResource(config=lambda: self.config, store=self.store,
                                        clock=self.reactor, metrics=self.metrics,
                                        health=self.health),
                          timeout=ncip.idle_timeout, reactor=self.reactor)
        self.factories["admin"] = ConnectionLimitFactory(
            admin, max_total=100, max_per_host=20, name="admin", clock=self.reactor)
        wanted = ([("z3950", e) for e in z3950.listen] + [("ncip", e) for e in ncip.listen]
                  + [("admin", e) for e in self.config.admin.listen])
        if self.config.oai.listen:  # OAI-PMH (issue 19): over a backend that can be harvested
            harvest = getattr(self.catalogue_backend, "harvest", None)
            if harvest is None:
                self.state = "failed"
                yield self.store.stop()
                raise StartupFailed("oai.listen is set but the catalogue backend "
                                    f"{self.catalogue_backend.kind!r} cannot be harvested")
            _, self.factories["oai"] = oai_factory(
                self.config.oai, harvest(self.catalogue_context), key, clock=self.reactor,
                agency_id=self.config.gateway.agency_id, audit=self.audit.record)
            wanted += [("oai", e) for e in self.config.oai.listen]
        if self.config.sru.listen:
            self._make_sru_factory()
            wanted += [("sru", e) for e in self.config.sru.listen]
        self._apply_limits()  # the caps shared out between serving processes
        yield DeferredList([self._listen(protocol, endpoint) for protocol, endpoint in wanted],
                           consumeErrors=True)
        failed = [listener for listener in self.listeners if listener.port is None]
        if failed:
            yield self._stop_listening()
            yield self.store.stop()
            self.state = "failed"
            # each failed listener has had its own line; this one sums up
            raise StartupFailed(f"{len(failed)} of {len(self.listeners)} listener(s) could not "
                                f"be opened; nothing is served")
        self.state = "running"
        self._start_workers()
        for listener in self.listeners:
            log.info("{protocol} listening on {address} ({endpoint})", **listener.describe())
        for line in self.where_to_go():
            log.info("{where}", where=line)
        log.info("Interlend {version} ready: agency {agency}, {peers} peer(s), database {db}",
                 version=__version__, agency=self.config.gateway.agency_id,
                 peers=len(self.config.peers), db=str(self.config.gateway.database))
        sdnotify.notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving", self.environ)
        self._write_reload_status()
        self._start_watchdog()
        self._probe = LoopingCall(self._probe_database)
        self._probe.clock = self.reactor
        self._probe.start(PROBE_INTERVAL, now=False)
        self._purge = LoopingCall(self.purge_audit)
        self._purge.clock = self.reactor
        self._purge.start(PURGE_INTERVAL, now=True).addErrback(
            lambda f: log.failure("audit retention timer stopped", f))

    def _start_workers(self) -> None:
        """With ``[gateway] workers`` above 1, start that many worker processes on the Z39.50
        and NCIP listeners' sockets. The primary keeps the sockets and takes connections on
        them itself only while no worker is ready (at start, or all of them restarting):
        measured, a primary that also accepts costs each exchange more CPU than one that
        leaves them to the workers and writes (``bench/performance_pass.toml``)."""
        count = self.config.gateway.workers
        if count < 2:
            return
        shared = [listener for listener in self.listeners if self._shared(listener)]
        for listener in self.listeners:
            if listener.protocol in SHARED and listener not in shared:
                log.warn("{endpoint} ({protocol}) is served by this process only: workers "
                         "take plain TCP, Unix and systemd sockets", endpoint=listener.endpoint,
                         protocol=listener.protocol)
        ports = [(listener.protocol, listener.port) for listener in shared
                 if listener.port is not None]
        if not ports:
            return
        self.workers = WorkerPool(
            count, reactor=self.reactor, config=lambda: self.config, ports=ports,
            record=self.audit.record_many, metrics=self.metrics,
            forward=self.ncip.handle, healthy=lambda: self.health()["status"] == "ok",
            key=self.audit._key, serving=count, log_options=self.log_options,
            ready_changed=lambda ready: self._accept_shared(ready == 0))
        self.workers.start()
        log.info("{count} worker processes started for Z39.50 and NCIP", count=count)

    @staticmethod
    def _shared(listener: Listener) -> bool:
        """Whether workers serve this listener's socket too: Z39.50 and NCIP on a plain
        socket (a worker adopts the bare socket; TLS and other wrappers stay here)."""
        kind = listener.endpoint.split(":", 1)[0].strip().lower()
        return listener.protocol in SHARED and kind in SHAREABLE_KINDS

    def _accept_shared(self, accept: bool) -> None:
        """Take connections on the listeners the workers serve (True), or leave them to the
        workers (False)."""
        for listener in self.listeners:
            port = listener.port
            if self._shared(listener) and port is not None and self.state == "running" \
                    and not reuseport.in_group(port):  # the pool's, worker by worker
                if accept:
                    port.startReading()  # type: ignore[attr-defined]
                else:
                    port.stopReading()  # type: ignore[attr-defined]

    def _make_sru_factory(self) -> None:
        """The SRU site (``[sru]``): the NCIP listener's transport limits, the SRU service."""
        sru = self.config.sru
        audit = self.audit
        self._sru_audit = AuditBatch(audit, self.reactor)
        self.sru_resource = SruResource(
            self.sru, config=lambda: self.config, clock=self.reactor,
            audit=self._sru_audit,
            keep_bodies=lambda: self.config.audit.bodies != "none" and audit.keep_bodies())
        site = GatewaySite(self.sru_resource, max_body_size=sru.max_body_size,
                           idle_timeout=sru.idle_timeout,
                           request_arrival_timeout=sru.request_arrival_timeout,
                           reactor=self.reactor)
        self.factories["sru"] = ConnectionLimitFactory(
            site, max_total=sru.max_connections, max_per_host=sru.max_connections_per_peer,
            name="sru", clock=self.reactor, max_rate_per_host=sru.max_connection_rate_per_peer)

    def purge_audit(self) -> Deferred[tuple[int, int] | None]:
        """Apply the audit retention (bodies after N days, rows after M days); log the result."""
        settings = self.config.audit
        now = datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)

        def purge(conn: Connection) -> tuple[int, int]:
            return retention.purge_audit(conn, now=now,
                                         body_days=settings.body_retention_days,
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

        def failed(failure: Failure) -> None:
            log.error("audit retention failed: {error}", error=failure.getErrorMessage())

        purged: Deferred[tuple[int, int] | None] = self.store.write(purge).addCallback(done)
        return purged.addErrback(failed)

    def where_to_go(self) -> list[str]:
        """One line per listener saying how to reach it: the NCIP URL with its path, the
        Z39.50 address with a database name, the dashboard URL."""
        lines = []
        for listener in self.listeners:
            if listener.port is None:
                continue
            host = listener.port.getHost()
            address = getattr(host, "host", None)
            port = getattr(host, "port", None)
            if address is None:  # a Unix socket
                where = f"unix:{getattr(host, 'name', '')}"
            else:
                if address in ("0.0.0.0", "::"):
                    address = "127.0.0.1" if address == "0.0.0.0" else "::1"
                where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
            if listener.protocol == "ncip":
                lines.append(f"NCIP: POST to http://{where}{self.config.ncip.path}")
            elif listener.protocol == "oai":
                lines.append(f"OAI-PMH: http://{where}{self.config.oai.path}"
                             f"?verb=Identify")
            elif listener.protocol == "sru":
                lines.append(f"SRU: http://{where}{self.config.sru.path}?version=1.2"
                             f"&operation=explain")
            elif listener.protocol == "z3950":
                lines.append(f"Z39.50: {where}/{self.config.z3950.databases[0]} "
                             f"(e.g. yaz-client {where}/{self.config.z3950.databases[0]})")
            else:
                lines.append(f"dashboard: http://{where}/ (metrics at /metrics, health at "
                             f"/healthz)")
        return lines

    def _listen(self, protocol: str, endpoint: str) -> Deferred[None]:
        listener = Listener(protocol, endpoint)
        self.listeners.append(listener)
        problem = sdnotify.endpoint_problem(endpoint,
                                           sdnotify.inherited_sockets(self._listen_environ))
        if problem is not None:
            listener.error = problem
            log.error("cannot listen on {endpoint} for {protocol}: {error}",
                      endpoint=endpoint, protocol=protocol, error=problem)
            return succeed(None)
        factory = self.factories[protocol]
        grouped = self.config.gateway.workers > 1 and protocol in SHARED  # see reuseport
        d = maybeDeferred(lambda: (grouped and reuseport.listen(
            self.reactor, with_backlog(endpoint), factory)) or serverFromString(
            self.reactor, with_backlog(endpoint)).listen(factory))

        def listening(port: IListeningPort) -> None:
            listener.port = port

        def failed(failure: Failure) -> None:
            listener.error = failure.getErrorMessage()
            log.error("cannot listen on {endpoint} for {protocol}: {error}",
                      endpoint=endpoint, protocol=protocol, error=listener.error)

        return d.addCallbacks(listening, failed)

    def _probe_database(self) -> None:
        """After a failed commit, and while nothing else is being written, try a real (tiny)
        write: health recovers by itself as soon as the database takes writes again, not
        only when the next request happens to write. (An empty transaction would commit on a
        full disk too.)"""
        if self.store.running and self.store.stats.last_error and not self.store.pending:
            moment = str(self.reactor.seconds())
            self.store.write(lambda conn: meta.record_probe(conn, moment)).addErrback(
                lambda _: None)

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
        The outcome is kept for ``/healthz``, counted in the metrics, sent to systemd as the
        unit's status and written for ``interlend reload`` (the unit's ExecReload) to report.
        """
        if self.config_path is None:
            log.info("SIGHUP: no configuration file to reload (running on built-in defaults)")
            return self._reloaded(False, ["no configuration file to reload"], [])
        sdnotify.notify("RELOADING=1", self.environ)
        try:
            new = load_config(self.reload_source())
        except ConfigErrors as e:
            for line in e.errors:
                log.error("reload refused, {source}: {error}", source=e.source, error=line)
            log.error("configuration not reloaded: {count} error(s); keeping the old one",
                      count=len(e.errors))
            return self._reloaded(False, list(e.errors), [])
        new = new.with_overrides(database=self.overrides.database,
                                 z3950_listen=self.overrides.z3950_listen,
                                 ncip_listen=self.overrides.ncip_listen,
                                 sru_listen=self.overrides.sru_listen,
                                 admin_listen=self.overrides.admin_listen)
        old = self.config
        for section, key in (("z3950", "listen"), ("ncip", "listen"), ("ncip", "path"),
                             ("sru", "listen"), ("sru", "path"),
                             ("admin", "listen"), ("gateway", "database"),
                             ("gateway", "workers")):
            if getattr(getattr(new, section), key) != getattr(getattr(old, section), key):
                log.warn("{section}.{key} changed: takes effect after a restart",
                         section=section, key=key)
        if new.oai != old.oai:  # the OAI-PMH provider is built once, at start
            log.warn("oai settings changed: they take effect after a restart")
        new = replace(new, oai=old.oai)
        # Keep what cannot change without a restart; take everything else.
        new = replace(new, gateway=replace(new.gateway, database=old.gateway.database,
                                           workers=old.gateway.workers),
                      z3950=replace(new.z3950, listen=old.z3950.listen),
                      ncip=replace(new.ncip, listen=old.ncip.listen, path=old.ncip.path),
                      admin=replace(new.admin, listen=old.admin.listen),
                      sru=replace(new.sru, listen=old.sru.listen, path=old.sru.path))
        # The admin listeners stay where they are: the password rule applies to them.
        problems = [f"{path}: {message} (listening on {', '.join(new.admin.listen)})"
                    for path, message in admin_problems(new.admin)]
        if problems:
            for line in problems:
                log.error("reload refused, {problem}", problem=line)
            return self._reloaded(False, problems, [])
        changes = reloading.peer_changes(old, new)
        self.config = new
        self._apply_limits()
        if self.workers is not None:
            self.workers.reload(new)
        for line in changes:
            log.info("reload: {change}", change=line)
        log.info("configuration reloaded from {path}: {peers} peer(s), {count} change(s)",
                 path=str(self.reload_source()), peers=len(new.peers), count=len(changes))
        return self._reloaded(True, [], changes)

    def reload_source(self) -> Path | None:
        """The file a reload reads: the copy ``interlend reload -c FILE`` staged (under
        systemd the service reads its start-up configuration from a credential, which systemd
        copies only at start), else the file the daemon started with."""
        return reloading.staged_config(self.environ) or self.config_path

    def _reloaded(self, ok: bool, errors: list[str], changes: list[str]) -> bool:
        """Record a reload's outcome where systemd, ``/healthz`` and ``interlend reload``
        see it."""
        if not ok:
            self.failed_reloads += 1
        self.last_reload = reloading.ReloadOutcome(
            generation=self.last_reload.generation + 1, ok=ok, at=self.reactor.seconds(),
            errors=errors, changes=changes)
        status = ("serving" if ok else
                  f"serving; last reload refused ({len(errors)} error(s), old configuration "
                  f"kept)")
        sdnotify.notify(f"READY=1\nSTATUS={status}", self.environ)
        self._write_reload_status()
        return ok

    def _write_reload_status(self) -> None:
        reloading.write_status(self.environ, self.last_reload)

    def _apply_limits(self) -> None:
        for name, settings in (("z3950", self.config.z3950), ("ncip", self.config.ncip)):
            factory = self.factories.get(name)
            # served by every process: each enforces its share of the caps
            n = self.config.gateway.workers
            if factory is not None:
                factory.max_total = shared_cap(settings.max_connections, n)
                factory.max_per_host = shared_cap(settings.max_connections_per_peer, n)
                factory.rate.rate = shared_rate(settings.max_connection_rate_per_peer, n)
                factory.rate.burst = max(1.0, 2 * factory.rate.rate)
        if "z3950" in self.factories:
            self.factories["z3950"].refusal_slots = self.config.z3950.refusal_slots
        self.audit.settings = self.config.audit
        self.lookups.lockout.limit = self.config.ncip.auth_failures_before_lockout
        self.lookups.lockout.seconds = self.config.ncip.lockout_seconds
        if self.ncip_resource is not None:
            self.ncip_resource.set_timeout(self.config.ncip.request_timeout)
            rate = shared_rate(self.config.ncip.max_requests_per_second_per_peer,
                               self.config.gateway.workers)
            self.ncip_resource.rate.rate, self.ncip_resource.rate.burst = rate, max(1.0, 2 * rate)
        site = self.factories.get("ncip")
        if site is not None:
            ncip_site = cast(GatewaySite, site.wrappedFactory)
            ncip_site.max_body_size = self.config.ncip.max_body_size
            ncip_site.request_arrival_timeout = self.config.ncip.request_arrival_timeout

    # -- stop -------------------------------------------------------------------------------

    @inlineCallbacks
    def stop(self) -> Any:
        """Stop accepting, let requests in flight finish (bounded), close the store."""
        if self.state in ("stopping", "stopped", "failed"):
            return  # a failed start has already closed what it opened
        self.state = "stopping"
        sdnotify.notify("STOPPING=1", self.environ)
        log.info("stopping: no new connections; waiting up to {grace}s for requests in flight",
                 grace=self.config.gateway.shutdown_grace)
        for timer in (self._watchdog, self._purge):
            if timer is not None and timer.running:
                timer.stop()
        yield self._stop_listening()
        workers_done = (self.workers.stop(self.config.gateway.shutdown_grace)
                        if self.workers is not None else succeed(None))
        waits = []
        if self.ncip_resource is not None:
            waits.append(self.ncip_resource.wait_idle())
        if self.sru_resource is not None:
            waits.append(self.sru_resource.wait_idle())
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
        if self._sru_audit is not None:
            self._sru_audit.flush()
        if self._probe is not None and self._probe.running:
            self._probe.stop()
        yield workers_done  # their last audit rows are in the writer's queue now
        yield self.audit.drain()
        yield self.store.stop()
        self.state = "stopped"
        log.info("stopped")

    def _stop_listening(self) -> Deferred[Any]:
        ports = [listener.port for listener in self.listeners if listener.port is not None]
        for listener in self.listeners:
            listener.port = None
        return gatherResults([_stop_port(port) for port in ports])

    # -- health -----------------------------------------------------------------------------

    def live_figures(self) -> LiveFigures:
        """What the listeners and services report right now, for the metrics."""
        ncip_site = self.factories.get("ncip")
        site = cast(GatewaySite, ncip_site.wrappedFactory) if ncip_site is not None else None
        resource = self.ncip_resource
        memory = self.catalogue.memory
        return LiveFigures(
            open_connections=self._open_connections(),
            refused_connections=self._refused_connections(),
            z3950_associations=(len(self.z3950_factory.associations)
                                if self.z3950_factory is not None else 0)
            + (self.workers.figures().associations if self.workers is not None else 0),
            ncip_in_flight=(resource.in_flight if resource is not None else 0)
            + (self.workers.figures().ncip_in_flight if self.workers is not None else 0),
            ncip_rate_limited=resource.rate_limited if resource is not None else 0,
            ncip_bodies_too_large=site.body_too_large if site is not None else 0,
            ncip_arrival_timeouts=site.arrival_timeouts if site is not None else 0,
            failed_reloads=self.failed_reloads,
            memory=MemoryFigures(used=memory.used, limit=memory.limit, refused=memory.refused))

    def health(self) -> dict[str, Any]:
        """The state of the database and listeners, for ``/healthz``."""
        database = self.store.health()
        listeners = [listener.describe() for listener in self.listeners]
        ok = database["ok"] and self.state == "running" and all(
            entry["state"] == "listening" for entry in listeners)
        # The library's own systems behind the backends, where they report a state: a
        # circulation system that is down degrades the gateway (NCIP cannot be served); an
        # upstream catalogue's state is shown, not folded in, so that NCIP (and the /health a
        # load balancer reads) keeps serving while the catalogue is down.
        upstream = self.upstream_health()
        circulation = upstream.get("circulation", {})
        ok = ok and circulation.get("state") != "down"
        return {
            "status": "ok" if ok else "degraded",
            "state": self.state,
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "database": database,
            "listeners": listeners,
            "reload": self.last_reload.describe(),
            "connections": self._open_connections(),
            "refused_connections": self._refused_connections(),
            **({"workers": self.workers.describe()} if self.workers is not None else {}),
            **({"upstream": upstream} if upstream else {}),
        }

    def _open_connections(self) -> dict[str, int]:
        """Open connections by listener, the workers' included."""
        return self._with_workers({name: factory.open_connections
                                   for name, factory in self.factories.items()},
                                  lambda figures: (figures.open, figures.ncip_open))

    def _refused_connections(self) -> dict[str, int]:
        """Refused connections by listener, the workers' included."""
        return self._with_workers({name: factory.refused
                                   for name, factory in self.factories.items()},
                                  lambda figures: (figures.refused, figures.ncip_refused))

    def _with_workers(self, found: dict[str, int],
                      pick: Callable[[WorkerFigures], tuple[int, int]]) -> dict[str, int]:
        """``found`` (a count by listener) plus the workers' own Z39.50 and NCIP counts."""
        if self.workers is not None:
            z3950, ncip = pick(self.workers.figures())
            for name, count in (("z3950", z3950), ("ncip", ncip)):
                if name in found:
                    found[name] += count
        return found

    def upstream_health(self) -> dict[str, dict[str, Any]]:
        """The state of the systems behind the backends (``catalogue``, ``circulation``), from
        those that report one: the catalogue or circulation object's ``health()``, or else the
        backend's (a pool of targets)."""
        found: dict[str, dict[str, Any]] = {}
        for role, served, backend in (
                ("catalogue", self.catalogue.catalogue, self.catalogue_backend),
                ("circulation", self.circulation, self.circulation_backend)):
            report = getattr(served, "health", None) or getattr(backend, "health", None)
            if callable(report):
                found[role] = report()
        return found
