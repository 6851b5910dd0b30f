# -*- test-case-name: tests.gateway.test_workers -*-
"""A worker's NCIP listener: the primary's site and limits, the lookups, the forwarding.

The worker's own :class:`~gateway.ncip.service.NcipService` has only the lookup handlers
(:class:`~gateway.ncip.lookups.LookupHandlers`) and answers what
:func:`gateway.workers.ncip_routing.answered_here` lets it; every other request goes over the
channel to the primary as ``ncip`` (id, body, context) and comes back as ``ncip-reply`` (id, reply).
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gateway.backends.registry import BackendContext, backend_for
from gateway.config import Config
from gateway.domain.lookups import LockoutPolicy, Lookups
from gateway.listeners.limits import ConnectionLimitFactory
from gateway.listeners.ncip_http import GatewaySite, NcipRequestContext, NcipResource
from gateway.ncip.lookups import LookupHandlers
from gateway.ncip.service import NcipService
from gateway.storage.pin_failures import StorePinFailures
from gateway.workers.after_replies import AfterReplies
from gateway.workers.ncip_routing import SplitHandler
from gateway.workers.sharing import shared_cap, shared_rate

log = Logger()


class PrimaryGone(Exception):
    """The channel to the primary ended with a forwarded request unanswered."""


class WorkerNcip:
    """The NCIP pieces of one worker (``worker`` is its :class:`~gateway.workers.child.Worker`:
    config, reactor, store, audit, metrics, channel)."""

    def __init__(self, worker: Any, context: BackendContext) -> None:
        self.worker = worker
        config: Config = worker.config
        ncip = config.ncip
        backend, backend_context = backend_for("circulation", config.backend, context)
        circulation = backend.circulation(backend_context)
        self.lookups = Lookups(circulation, StorePinFailures(worker.store), LockoutPolicy(
            limit=ncip.auth_failures_before_lockout, seconds=ncip.lockout_seconds,
            clock=worker.reactor))
        self.service = NcipService(worker)
        self.after_replies = AfterReplies(worker.reactor)
        self.service.audit_after = self.after_replies  # rows built once the reply is out
        LookupHandlers(worker, self.lookups, self.service.handlers).register(
            self.service.handlers)
        self.handler = SplitHandler(self.service, self.forward)
        self.resource = NcipResource(
            self.handler, path=ncip.path, request_timeout=ncip.request_timeout,
            health=self.health, clock=worker.reactor)
        self.site = GatewaySite(self.resource, max_body_size=ncip.max_body_size,
                                idle_timeout=ncip.idle_timeout,
                                request_arrival_timeout=ncip.request_arrival_timeout,
                                reactor=worker.reactor)
        self.limits = ConnectionLimitFactory(self.site, max_total=1, max_per_host=1,
                                             name="ncip", clock=worker.reactor)
        self._ids = itertools.count(1)
        self._waiting: dict[int, Deferred[bytes]] = {}

    def apply_limits(self, config: Config, processes: int) -> None:
        """This process's share of the NCIP caps and rate, and the reloadable settings."""
        ncip = config.ncip
        limits = self.limits
        limits.max_total = shared_cap(ncip.max_connections, processes)
        limits.max_per_host = shared_cap(ncip.max_connections_per_peer, processes)
        limits.rate.rate = shared_rate(ncip.max_connection_rate_per_peer, processes)
        limits.rate.burst = max(1.0, 2 * limits.rate.rate)
        rate = shared_rate(ncip.max_requests_per_second_per_peer, processes)
        self.resource.rate.rate, self.resource.rate.burst = rate, max(1.0, 2 * rate)
        self.resource.set_timeout(ncip.request_timeout)
        self.site.max_body_size = ncip.max_body_size
        self.site.request_arrival_timeout = ncip.request_arrival_timeout
        self.lookups.lockout.limit = ncip.auth_failures_before_lockout
        self.lookups.lockout.seconds = ncip.lockout_seconds

    def forward(self, body: bytes, context: NcipRequestContext) -> Deferred[bytes]:
        """Hand the request to the primary; fires with its reply bytes."""
        request_id = next(self._ids)
        d: Deferred[bytes] = Deferred()
        self._waiting[request_id] = d
        self.worker.channel.send("ncip", (request_id, body, context))
        return d

    def answered(self, request_id: int, reply: bytes) -> None:
        """The primary's reply to a forwarded request."""
        d = self._waiting.pop(request_id, None)
        if d is not None:
            d.callback(reply)

    def primary_gone(self) -> None:
        """Fail every forwarded request still waiting: the listener answers each with a
        Temporary Processing Failure (the primary may or may not have done it; the
        broker's retry with the same key settles which, as after any lost reply)."""
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(PrimaryGone("the primary process is gone"))

    def health(self) -> dict[str, Any]:
        """For the NCIP listener's ``/healthz``: the primary's last word on its health."""
        ok = self.worker.primary_ok and self.worker.state == "running"
        return {"status": "ok" if ok else "degraded"}
