"""Metrics.observe: the request counter and latency histogram, by label set.

The label children are bound once per label set and reused: counts and latencies must land in
the same series, per label set, as ``labels(...)`` on every call would put them.
"""

from __future__ import annotations

import platform
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from twisted.internet.task import Clock

from gateway import __version__
from gateway.admin.metrics import LiveFigures, Metrics
from gateway.storage.store import WriterStats


def _metrics(failed_reloads: int = 0) -> Metrics:
    store = SimpleNamespace(pending=0, stats=WriterStats(), running=False)
    audit = SimpleNamespace(failed=0)
    return Metrics(store, audit, Clock(),  # type: ignore[arg-type]
                   live=lambda: LiveFigures(failed_reloads=failed_reloads))


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


def test_z3950_diagnostics_are_named() -> None:
    """A diagnostic is counted by its code and its Bib-1 name, not only its number."""
    m = _metrics()
    m.observe("z3950", "search", "reshare", "diagnostic 114", 0.001)
    m.observe("z3950", "search", "reshare", "diagnostic 114", 0.001)
    m.observe("z3950", "present", None, "diagnostic 13", 0.001)
    assert m.registry.get_sample_value("interlend_z3950_diagnostics_total", {
        "code": "114", "name": "Unsupported Use attribute", "peer": "reshare"}) == 2
    assert m.registry.get_sample_value("interlend_z3950_diagnostics_total", {
        "code": "13", "name": "Present request out of range", "peer": "-"}) == 1


def test_build_process_reload_and_audit_series() -> None:
    """Build info, the standard process/platform/GC collectors, failed reloads, the audit
    retry queue, failed authentications by the peer they claimed."""
    m = _metrics(failed_reloads=3)
    m.audit.pending, m.audit.retried, m.audit.dropped = 5, 7, 1  # type: ignore[misc]
    m.auth_failure("reshare", "refused")
    m.auth_failure(None, "unknown")
    text = m.render().decode()
    assert f'interlend_build_info{{python="{platform.python_version()}"' in text
    assert f'version="{__version__}"' in text
    for series in ("process_resident_memory_bytes", "process_open_fds", "python_info",
                   "python_gc_collections_total"):
        assert f"\n{series}" in text, series
    value = m.registry.get_sample_value
    assert value("interlend_config_reloads_failed_total") == 3
    assert value("interlend_audit_rows_pending") == 5
    assert value("interlend_audit_rows_retried_total") == 7
    assert value("interlend_audit_rows_dropped_total") == 1
    assert value("interlend_ncip_auth_failures_total",
                 {"claimed_peer": "reshare", "reason": "refused"}) == 1
    assert value("interlend_ncip_auth_failures_total",
                 {"claimed_peer": "unknown", "reason": "unknown"}) == 1


def test_claimed_peer() -> None:
    """A refused request is attributed to the peer its agency id or token names."""
    from gateway.admin.metrics import claimed_peer
    from gateway.config import Peer, PeerAuth
    from gateway.ncip.peers import Credentials

    peers = (Peer(name="reshare", ncip_agency_ids=("RESHARE",),
                  auth=PeerAuth(kind="shared-secret", secret="s")),
             Peer(name="tipasa", ncip_agency_ids=("TIP",), auth=PeerAuth(kind="bearer",
                                                                         token="t")))
    wrong_secret = Credentials(remote_host="127.0.0.1", from_agency="reshare",
                               agency_secret="nope")
    assert claimed_peer(peers, wrong_secret) == "reshare"
    wrong_token = Credentials(remote_host="127.0.0.1", from_agency="TIP", bearer_token="x")
    assert claimed_peer(peers, wrong_token) == "tipasa"
    stranger = Credentials(remote_host="127.0.0.1", from_agency="OTHER")
    assert claimed_peer(peers, stranger) is None


def test_database_figures(tmp_path: Path) -> None:
    """Requests by role and state, overdue loans by peer and role, the newest exchange per
    peer and the database size, as read from a real database."""
    from gateway.admin.metrics import read_figures
    from gateway.storage.store import open_database

    path = tmp_path / "interlend.sqlite3"
    open_database(path).close()
    conn = sqlite3.connect(path)
    rows = [("reshare", "lender", "shipped", 1), ("reshare", "lender", "shipped", 2),
            ("reshare", "borrower", "checked_out", 3), ("tipasa", "lender", "completed", None)]
    for n, (peer, role, state, item) in enumerate(rows):
        conn.execute("INSERT INTO rs_requests (peer, role, our_request_id, item_id, state, "
                     "completed_at) VALUES (?, ?, ?, ?, ?, ?)",
                     (peer, role, f"R{n}", item, state,
                      "2026-01-01T00:00:00+00:00" if state == "completed" else None))
    for item, due in ((1, "2026-01-01T00:00:00+00:00"), (2, "2999-01-01T00:00:00+00:00"),
                      (3, "2026-02-01T00:00:00+00:00")):
        conn.execute("INSERT INTO loans (item_id, patron_id, checked_out_at, due_at) "
                     "VALUES (?, 1, '2025-12-01T00:00:00+00:00', ?)", (item, due))
    for peer, when in (("reshare", "2026-03-01T10:00:00.000000+00:00"),
                       ("reshare", "2026-03-02T10:00:00.000000+00:00"),
                       ("tipasa", "2026-03-01T09:00:00.000000+00:00")):
        conn.execute("INSERT INTO audit (protocol, operation, outcome, peer, time) "
                     "VALUES ('ncip', 'LookupUser', 'success', ?, ?)", (peer, when))
    conn.commit()
    now = datetime(2026, 6, 1, tzinfo=timezone.utc).timestamp()
    figures = read_figures(conn, now)
    conn.close()
    assert sorted(figures.by_state) == [("borrower", "checked_out", 1), ("lender", "completed", 1),
                                        ("lender", "shipped", 2)]
    assert sorted(figures.overdue) == [("reshare", "borrower", 1), ("reshare", "lender", 1)]
    assert dict(figures.last_exchange) == {
        "reshare": datetime(2026, 3, 2, 10, tzinfo=timezone.utc).timestamp(),
        "tipasa": datetime(2026, 3, 1, 9, tzinfo=timezone.utc).timestamp()}
    m = _metrics()
    m.store.path = path  # type: ignore[misc]
    m.figures = figures
    figures.read_at = now
    value = m.registry.get_sample_value
    assert value("interlend_rs_requests", {"role": "lender", "state": "shipped"}) == 2
    assert value("interlend_overdue_loans", {"peer": "reshare", "role": "lender"}) == 1
    assert value("interlend_peer_last_exchange_timestamp_seconds", {"peer": "tipasa"}) == \
        datetime(2026, 3, 1, 9, tzinfo=timezone.utc).timestamp()
    size = value("interlend_database_size_bytes", {"file": "database"})
    assert size == path.stat().st_size and size > 0
