"""Metrics.observe: the request counter and latency histogram, by label set.

The label children are bound once per label set and reused: counts and latencies must land in
the same series, per label set, as ``labels(...)`` on every call would put them.
"""

from __future__ import annotations

from types import SimpleNamespace

from gateway.metrics import Metrics
from gateway.store import WriterStats


def _metrics() -> Metrics:
    gateway = SimpleNamespace(factories={}, store=SimpleNamespace(pending=0, stats=WriterStats()),
                              audit=SimpleNamespace(failed=0))
    return Metrics(gateway)


def test_observe_counts_per_label_set_and_times_per_service() -> None:
    """Repeated label sets add up in one series; another peer, outcome or service is its own;
    no latency (None) counts without a histogram observation; a missing peer is "-"."""
    m = _metrics()
    m.observe("z3950", "search", "reshare", "success", 0.002)
    m.observe("z3950", "search", "reshare", "success", 0.3)
    m.observe("z3950", "search", None, "success", 0.004)
    m.observe("z3950", "search", "reshare", "diagnostic 114", 0.001)
    m.observe("z3950", "close", None, "protocolError", None)
    m.observe("ncip", "LookupUser", "reshare", "success", 0.01)

    def count(protocol: str, service: str, peer: str, outcome: str) -> float | None:
        return m.registry.get_sample_value("interlend_requests_total", {
            "protocol": protocol, "service": service, "peer": peer, "outcome": outcome})

    def timed(protocol: str, service: str, suffix: str, **extra: str) -> float | None:
        return m.registry.get_sample_value(
            f"interlend_request_duration_seconds_{suffix}",
            {"protocol": protocol, "service": service, **extra})

    assert count("z3950", "search", "reshare", "success") == 2
    assert count("z3950", "search", "-", "success") == 1
    assert count("z3950", "search", "reshare", "diagnostic 114") == 1
    assert count("z3950", "close", "-", "protocolError") == 1
    assert count("ncip", "LookupUser", "reshare", "success") == 1
    assert timed("z3950", "search", "count") == 4
    assert abs(timed("z3950", "search", "sum") - 0.307) < 1e-9
    assert timed("z3950", "search", "bucket", le="0.0025") == 2
    assert timed("z3950", "close", "count") is None
    assert timed("ncip", "LookupUser", "count") == 1
    assert b'interlend_requests_total{outcome="success",peer="reshare",protocol="z3950",' \
           b'service="search"} 2.0' in m.render()
