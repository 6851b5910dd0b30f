# -*- test-case-name: tests.gateway.test_upstream_z3950_pqf -*-
"""The ``z3950`` backend: the library's own Z39.50 target as the catalogue.

Registered in ``setup.cfg`` as ``z3950 = gateway.backends.upstream.z3950.backend:backend``;
select it with ``[backend] catalogue = "z3950"`` and configure ``[backend.z3950]``. It has no
circulation (``[backend] circulation`` stays another kind). Upstream calls are counted and
timed in the metrics (``interlend_upstream_calls``, ``interlend_upstream_duration_seconds``)
and the pool's state is on :attr:`Z3950Backend.pools` for ``/healthz``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from twisted.internet.defer import Deferred
from zope.interface import implementer

from gateway.backends.registry import BackendContext, BackendUnavailable, IBackend
from gateway.backends.upstream.z3950.settings import SettingsError, read_settings

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from gateway.backends.upstream.z3950.connection import UpstreamAssociation
    from gateway.backends.upstream.z3950.pool import AssociationPool
    from gateway.backends.upstream.z3950.settings import Z3950Settings
    from gateway.domain.catalogue import ICatalogue
    from gateway.domain.circulation import ICirculation

KIND = "z3950"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def open_association(reactor: IReactorTime, settings: Z3950Settings
                     ) -> Deferred[UpstreamAssociation]:
    """Connect to the target (a client endpoint string) and initialise the association."""
    from twisted.internet.endpoints import clientFromString, connectProtocol

    from gateway.backends.upstream.z3950.connection import UpstreamAssociation
    from gateway.backends.upstream.z3950.initialise import initialise

    host = settings.host.replace(":", r"\:")
    endpoint = clientFromString(
        reactor, f"tcp:host={host}:port={settings.port}:timeout={settings.connect_timeout:g}")
    association = UpstreamAssociation(reactor)
    connecting = connectProtocol(endpoint, association)
    timer = reactor.callLater(settings.connect_timeout + 0.5, connecting.cancel)

    def connected(_: Any) -> Deferred[UpstreamAssociation]:
        if timer.active():
            timer.cancel()
        return initialise(association, settings)

    def failed(failure: Any) -> Any:
        if timer.active():
            timer.cancel()
        return failure

    return connecting.addCallbacks(connected, failed)


@implementer(IBackend)
class Z3950Backend:
    """The upstream Z39.50 catalogue."""

    kind = KIND

    def __init__(self) -> None:
        self.pools: dict[str, AssociationPool] = {}

    def settings_problems(self, table: Mapping[str, Any], path: str) -> list[str]:
        """Every problem of ``[backend.z3950]``, each with its path."""
        try:
            read_settings(table, path)
        except SettingsError as e:
            return e.problems
        return []

    def catalogue(self, context: BackendContext) -> ICatalogue:
        """The upstream catalogue with its pool of associations."""
        from gateway.backends.upstream.z3950.catalogue import UpstreamZ3950Catalogue
        from gateway.backends.upstream.z3950.pool import AssociationPool

        try:
            settings = read_settings(context.settings, context.settings_path or "backend.z3950")
        except SettingsError as e:
            raise BackendUnavailable(KIND, "; ".join(e.problems), path="") from None
        reactor = context.clock
        pool = AssociationPool(reactor, lambda: open_association(reactor, settings),
                               settings.limits)
        self.pools[f"{settings.host}:{settings.port}/{settings.database}"] = pool
        return UpstreamZ3950Catalogue(settings, pool, reactor, observe=_observer(context))

    def circulation(self, context: BackendContext) -> ICirculation:
        """None: the Z39.50 upstream is a catalogue only."""
        raise BackendUnavailable(
            KIND, "the z3950 backend serves only the catalogue; set [backend] circulation",
            path="backend.circulation")

    def health(self) -> dict[str, Any]:
        """Each upstream target's state (for ``/healthz``)."""
        return {target: pool.state() for target, pool in self.pools.items()}


_METRICS: dict[int, tuple[Counter, Histogram]] = {}


def _observer(context: BackendContext) -> Any:
    """Counts and times upstream calls in the gateway's metric registry."""
    registry = context.metrics.registry
    made = _METRICS.get(id(registry))
    if made is None:
        calls = Counter("interlend_upstream_calls", "Calls to the upstream catalogue, by "
                        "backend, operation and outcome.", ["backend", "operation", "outcome"],
                        registry=registry)
        latency = Histogram("interlend_upstream_duration_seconds", "Time an upstream catalogue "
                            "call took.", ["backend", "operation"], buckets=LATENCY_BUCKETS,
                            registry=registry)
        made = _METRICS[id(registry)] = (calls, latency)
    calls, latency = made

    def observe(operation: str, outcome: str, seconds: float) -> None:
        calls.labels(KIND, operation, outcome).inc()
        latency.labels(KIND, operation).observe(seconds)

    return observe


backend = Z3950Backend()
"""The object the ``z3950`` entry point names."""
