# -*- test-case-name: tests.gateway.test_upstream_sru_faults -*-
"""The upstream's calls in the gateway's metrics: counted by operation and outcome, timed.

Registered on the gateway's registry once per process (a second catalogue in the same process,
as tests make, shares the same series).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram

from gateway.backends.upstream.sru.client import UpstreamState

if TYPE_CHECKING:
    from gateway.admin.metrics import Metrics

__all__ = ["observe"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_REGISTERED: dict[int, tuple[Counter, Histogram]] = {}


def _series(metrics: Metrics) -> tuple[Counter, Histogram]:
    key = id(metrics.registry)
    if key not in _REGISTERED:
        calls = Counter("interlend_upstream_calls",
                        "Calls to the upstream catalogue, by kind, operation and outcome.",
                        ["kind", "operation", "outcome"], registry=metrics.registry)
        latency = Histogram("interlend_upstream_call_duration_seconds",
                            "Time the upstream catalogue took to answer a call.",
                            ["kind", "operation"], buckets=_BUCKETS, registry=metrics.registry)
        _REGISTERED[key] = (calls, latency)
    return _REGISTERED[key]


def observe(state: UpstreamState, metrics: Metrics | Any) -> None:
    """Count every call ``state`` records in ``metrics`` (nothing when it has no registry)."""
    if getattr(metrics, "registry", None) is None:
        return
    calls, latency = _series(metrics)

    def record(operation: str, outcome: str, seconds: float) -> None:
        calls.labels("sru", operation, outcome).inc()
        latency.labels("sru", operation).observe(seconds)

    state.observers.append(record)
