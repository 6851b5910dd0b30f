"""What staff read after real broker traffic: audit rows, request histories, partner statistics.

One daemon (a real ``interlend serve`` subprocess) receives the broker scenario of
:func:`tests.audit_fixtures.scenario` over HTTP. Every expectation below is worked out from what
the test sent (request ids, barcodes, body sizes, which steps each request went through), never
by calling :mod:`gateway.admin.reports`; the gateway's answers come from the command line
(``interlend requests``, ``interlend stats``) and the admin listener (``/stats``,
``/rs/statistics``). Retention and the sweep are tested on databases the tests prepare, with an
injected clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from gateway.admin import reports
from gateway.audit import AuditEntry, audit_time, insert_entry
from gateway.backends.embedded import operations as ops
from gateway.config import load_config
from gateway.daemon.gateway import PURGE_INTERVAL, Gateway
from gateway.storage import tracking
from gateway.storage.store import open_database
from tests import audit_fixtures as af
from tests.daemon import start_daemon

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A daemon that has answered the whole scenario: (daemon, sent, start, end)."""
    tmp = tmp_path_factory.mktemp("reports")
    af.seed_database(tmp / "interlend.sqlite3")
    daemon = start_daemon(tmp, af.config_text())
    try:
        start = datetime.now(timezone.utc).replace(microsecond=0)
        sent = af.run_scenario(daemon)
        end = datetime.now(timezone.utc)
        yield daemon, sent, start, end
    finally:
        daemon.stop()


def _cli(daemon: Any, *args: str) -> str:
    status, out, err = af.cli(*args, "-c", str(daemon.config_path),
                              "--database", str(daemon.database))
    assert status == 0, err
    return out


def _by_request(sent: list[af.Sent]) -> dict[str, str]:
    """Broker request id → our request id, as the RequestItem replies gave them."""
    return {s.broker_request_id: s.our_request_id for s in sent if s.our_request_id}


# -- audit rows -----------------------------------------------------------------------------------


def test_one_audit_row_per_exchange_with_exact_fields(traffic: Any) -> None:
    """Each exchange has exactly one row, in order, and every field is what the test sent.

    Protocol, peer, service, dialect, broker request id, our request id (RequestItem only),
    item barcode, outcome (a Problem's type for the Problem), request and response sizes in
    bytes as they crossed the wire, a positive duration, the patron as the keyed hash of the
    id the test sent (under the gateway key, in its file beside the database) — and no row
    for anything else.
    """
    daemon, sent, start, end = traffic
    rows = af.query(daemon.database, "SELECT * FROM audit ORDER BY id")
    assert len(rows) == len(sent)
    key = bytes.fromhex(Path(f"{daemon.database}.key").read_text())  # the gateway key file
    for row, exchange in zip(rows, sent):
        expected_hash = (hmac.new(key, exchange.patron.encode(), hashlib.sha256).hexdigest()[:32]
                         if exchange.patron else None)
        assert {k: row[k] for k in ("protocol", "peer", "operation", "dialect",
                                    "broker_request_id", "our_request_id", "item_barcode",
                                    "outcome", "request_size", "response_size", "patron_hash",
                                    "remote")} == {
            "protocol": "ncip", "peer": exchange.peer, "operation": exchange.operation,
            "dialect": "ncip2", "broker_request_id": exchange.broker_request_id,
            "our_request_id": exchange.our_request_id, "item_barcode": exchange.item_barcode,
            "outcome": exchange.outcome, "request_size": len(exchange.body),
            "response_size": len(exchange.reply), "patron_hash": expected_hash,
            "remote": "127.0.0.1"}, exchange.operation
        assert row["duration_us"] > 0
        moment = datetime.fromisoformat(row["time"])
        assert moment.tzinfo is not None and start <= moment <= end
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)


def test_audit_cli_json_matches_the_rows(traffic: Any) -> None:
    """``interlend audit --format json`` lists the same exchanges, oldest first, parseable."""
    daemon, sent, _, _ = traffic
    listed = json.loads(_cli(daemon, "audit", "--format", "json"))
    assert [(r["operation"], r["peer"], r["broker_request_id"], r["item_barcode"],
             r["outcome"]) for r in listed] == [
        (s.operation, s.peer, s.broker_request_id, s.item_barcode, s.outcome) for s in sent]
    assert "request_body" not in listed[0]


# -- request histories ----------------------------------------------------------------------------

HISTORIES = {
    # broker id: (role, peer, final state, steps, operations of its exchanges, item)
    "RS-B-1": ("borrower", "reshare", "completed",
               ["requested", "accepted", "received", "checked_out", "returned", "checked_in",
                "completed"],
               ["AcceptItem", "CheckOutItem", "CheckInItem", "DeleteItem"], "RS-B-1"),
    "RS-L-1": ("lender", "reshare", "completed",
               ["requested", "accepted", "shipped", "returned", "checked_in", "completed"],
               ["RequestItem", "CheckOutItem", "CheckInItem"], "LEND-1"),
    "RS-L-2": ("lender", "reshare", "cancelled", ["requested", "accepted", "cancelled"],
               ["RequestItem", "CancelRequestItem"], "LEND-3"),
    "RS-L-3": ("lender", "reshare", "shipped", ["requested", "accepted", "shipped"],
               ["RequestItem", "CheckOutItem"], "LEND-1"),
    "TIP-1": ("borrower", "tipasa", "awaiting_pickup", ["requested", "accepted", "received"],
              ["AcceptItem"], "TIP-NDOSU-9"),
}


@pytest.mark.parametrize("broker_id", sorted(HISTORIES))
def test_request_history_json(traffic: Any, broker_id: str) -> None:
    """``interlend requests show ID --format json``: the request, its steps, its exchanges.

    Exchanges are exactly the ones about this request — by request id, or by its item while
    the request was live — so RS-L-1 and RS-L-3, which lent the same item one after the
    other, each show only their own.
    """
    daemon, sent, start, end = traffic
    role, peer, state, steps, operations, item = HISTORIES[broker_id]
    history = json.loads(_cli(daemon, "requests", "show", broker_id, "--format", "json"))
    request = history["request"]
    assert (request["role"], request["peer"], request["state"], request["broker_request_id"],
            request["item_barcode"]) == (role, peer, state, broker_id, item)
    assert [name for name, _ in history["steps"]] == steps
    times = [datetime.fromisoformat(when) for _, when in history["steps"]]
    assert times == sorted(times) and start <= times[0] and times[-1] <= end
    mine = [s for s in sent if s.broker_request_id == broker_id
            or (s.item_barcode == item and s.broker_request_id is None
                and s.outcome == "success" and s.operation in operations)]
    assert [e["operation"] for e in history["exchanges"]] == operations
    assert [e["request_size"] for e in history["exchanges"]] == [len(s.body) for s in mine]
    if role == "lender":
        assert request["our_request_id"] == _by_request(sent)[broker_id]
    # The same request found by our id and by the row id.
    again = json.loads(_cli(daemon, "requests", "show", request["our_request_id"],
                            "--format", "json"))
    assert again == history
    by_row = json.loads(_cli(daemon, "requests", "show", str(request["id"]), "--format", "json"))
    assert by_row == history


def test_request_history_text(traffic: Any) -> None:
    """``interlend requests show RS-L-1`` (table form): a heading, one line per step, then
    the exchanges table with time, protocol, operation, outcome and duration."""
    daemon, sent, _, _ = traffic
    ours = _by_request(sent)["RS-L-1"]
    lines = _cli(daemon, "requests", "show", "RS-L-1").splitlines()
    assert re.fullmatch(rf"{ours}\s+lender for reshare\s+broker id RS-L-1\s+item LEND-1\s+"
                        r"state completed", lines[0]), lines[0]
    step_lines = lines[1:lines.index("exchanges:")]
    assert [line.split()[-1] for line in step_lines] == HISTORIES["RS-L-1"][3]
    table = lines[lines.index("exchanges:") + 1:]
    assert table[0].split() == ["time", "protocol", "operation", "outcome", "duration_us"]
    assert [line.split()[2] for line in table[1:]] == HISTORIES["RS-L-1"][4]
    assert all(line.split()[1] == "ncip" and line.split()[3] == "success" for line in table[1:])


def test_requests_listing_and_unknown_request(traffic: Any) -> None:
    """``interlend requests`` lists every tracked request (filters by role and state work);
    ``requests show`` of an unknown id fails with status 1 and says so."""
    daemon, _, _, _ = traffic
    listed = json.loads(_cli(daemon, "requests", "--format", "json"))
    assert sorted(r["broker_request_id"] for r in listed) == sorted(HISTORIES)
    lenders = json.loads(_cli(daemon, "requests", "--role", "lender", "--format", "json"))
    assert sorted(r["broker_request_id"] for r in lenders) == ["RS-L-1", "RS-L-2", "RS-L-3"]
    cancelled = json.loads(_cli(daemon, "requests", "--state", "cancelled", "--format", "json"))
    assert [r["broker_request_id"] for r in cancelled] == ["RS-L-2"]
    status, out, err = af.cli("requests", "show", "NO-SUCH", "-c", str(daemon.config_path),
                              "--database", str(daemon.database))
    assert status == 1 and "NO-SUCH" in err and out == ""


# -- statistics -----------------------------------------------------------------------------------


def _summary(count: int) -> dict[str, Any]:
    """A turnaround summary: everything in the scenario happens within seconds (0.00 h)."""
    return ({"count": count, "median_hours": 0.0, "p90_hours": 0.0} if count
            else {"count": 0, "median_hours": None, "p90_hours": None})


# Worked out from the scenario: ReShare lent on RS-L-1 and RS-L-3 (shipped), RS-L-2 was
# cancelled before shipping (3 lending requests, fill rate 2/3); it borrowed once (RS-B-1,
# completed). RS-L-3 is still out (one active loan). Tipasa borrowed once (TIP-1, awaiting
# pickup: one active borrow). Each borrowing saves the configured document supply cost.
EXPECTED_PARTNERS = [
    {"peer": "reshare", "lent": 2, "borrowed": 1, "active_loans": 1, "active_borrows": 0,
     "net_balance": 1, "lending_borrowing_ratio": 2.0, "lending_requests": 3,
     "fill_rate": 0.667, "cancelled": 1, "overdue": 0, "overdue_loans": 0,
     "overdue_borrows": 0,
     "turnaround": {"request_to_filled": _summary(4), "filled_to_shipped": _summary(2),
                    "shipped_to_received": _summary(0), "loan_length": _summary(2)},
     "estimated_saving": 1 * af.COST},
    {"peer": "tipasa", "lent": 0, "borrowed": 1, "active_loans": 0, "active_borrows": 1,
     "net_balance": -1, "lending_borrowing_ratio": 0.0, "lending_requests": 0,
     "fill_rate": None, "cancelled": 0, "overdue": 0, "overdue_loans": 0,
     "overdue_borrows": 0,
     "turnaround": {"request_to_filled": _summary(1), "filled_to_shipped": _summary(0),
                    "shipped_to_received": _summary(0), "loan_length": _summary(0)},
     "estimated_saving": 1 * af.COST},
]
EXPECTED_TOTALS = {"lent": 2, "borrowed": 2, "active_loans": 1, "active_borrows": 1,
                   "overdue": 0, "estimated_saving": 2 * af.COST, "lending_requests": 3,
                   "net_balance": 0}


def _check_as_at(value: str, start: datetime) -> None:
    moment = datetime.fromisoformat(value)
    assert moment.tzinfo is not None
    assert start <= moment <= datetime.now(timezone.utc) + timedelta(seconds=1)


def test_stats_cli_json_is_exact(traffic: Any) -> None:
    """``interlend stats --format json``: every per-partner figure and the totals, exactly."""
    daemon, _, start, _ = traffic
    stats = json.loads(_cli(daemon, "stats", "--format", "json"))
    _check_as_at(stats.pop("as_at"), start)
    assert stats == {"since": None, "partners": EXPECTED_PARTNERS, "totals": EXPECTED_TOTALS}


def test_stats_cli_filters_and_table(traffic: Any) -> None:
    """``--peer`` keeps one partner; ``--since`` tomorrow counts no requests in the period but
    still reports what is active now; the table form shows each partner and the totals line
    with the currency."""
    daemon, _, _, _ = traffic
    tipasa = json.loads(_cli(daemon, "stats", "--peer", "tipasa", "--format", "json"))
    assert tipasa["partners"] == [EXPECTED_PARTNERS[1]]
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    later = json.loads(_cli(daemon, "stats", "--since", tomorrow, "--format", "json"))
    assert later["since"] == tomorrow
    assert [(p["peer"], p["lent"], p["borrowed"], p["lending_requests"], p["active_loans"],
             p["active_borrows"]) for p in later["partners"]] == [
        ("reshare", 0, 0, 0, 1, 0), ("tipasa", 0, 0, 0, 0, 1)]
    table = _cli(daemon, "stats").splitlines()
    assert table[0].split()[:3] == ["peer", "lent", "borrowed"]
    assert [line.split()[:3] for line in table[1:3]] == [["reshare", "2", "1"],
                                                         ["tipasa", "0", "1"]]
    assert table[-1] == (f"total: lent 2, borrowed 2, net balance 0, estimated saving "
                         f"{2 * af.COST:.2f} {af.CURRENCY}")


def test_admin_stats_endpoint_is_exact(traffic: Any) -> None:
    """``GET /stats`` on the admin listener returns the same figures as the command line;
    ``?peer=`` filters."""
    daemon, _, start, _ = traffic
    stats = af.admin_json(daemon, "/stats")
    _check_as_at(stats.pop("as_at"), start)
    assert stats == {"since": None, "partners": EXPECTED_PARTNERS, "totals": EXPECTED_TOTALS}
    one = af.admin_json(daemon, "/stats?peer=reshare")
    assert one["partners"] == [EXPECTED_PARTNERS[0]]


def test_rs_statistics_endpoint_is_exact(traffic: Any) -> None:
    """``GET /rs/statistics`` has ReShare's shape: asAt, requestsByState and requestsByTag
    with ACTIVE_LOAN (RS-L-3 is out) and ACTIVE_BORROW (TIP-1 is awaiting pickup)."""
    daemon, _, start, _ = traffic
    status, headers, body = af.admin_get(daemon, "/rs/statistics")
    assert status == 200 and headers["content-type"] == "application/json"
    stats = json.loads(body)
    assert set(stats) == {"asAt", "requestsByState", "requestsByTag"}
    _check_as_at(stats["asAt"], start)
    assert stats["requestsByState"] == {"awaiting_pickup": 1, "cancelled": 1, "completed": 2,
                                        "shipped": 1}
    assert stats["requestsByTag"] == {"ACTIVE_LOAN": 1, "ACTIVE_BORROW": 1}


def test_overdue_counts_follow_due_dates(tmp_path: Path) -> None:
    """An open loan past its due date counts as overdue for its partner, on the lending side
    (our item out with them) and on the borrowing side (their item out with our patron)."""
    conn = open_database(tmp_path / "db.sqlite3")
    _overdue_seed(conn)
    now = datetime(2030, 1, 10, tzinfo=timezone.utc)
    stats = reports.partner_stats(conn, now=now)
    [partner] = stats["partners"]
    assert (partner["overdue_loans"], partner["overdue_borrows"], partner["overdue"],
            partner["active_loans"], partner["active_borrows"]) == (1, 1, 2, 1, 1)
    conn.close()


def _overdue_seed(conn: sqlite3.Connection) -> None:
    """Two open loans due 2030-01-05: one lender request (shipped), one borrower request."""
    from gateway.backends.embedded.records import ItemData, PatronData, upsert_item, upsert_patron
    then = datetime(2030, 1, 1, tzinfo=timezone.utc)
    conn.execute("BEGIN IMMEDIATE")
    record = ops.create_brief_record(conn, "r1", ops.BriefRecord(title="T"))
    patron, _ = upsert_patron(conn, PatronData(barcode="P1"))
    for number, (role, temporary) in enumerate((("lender", False), ("borrower", True)), 1):
        item, _ = upsert_item(conn, record, ItemData(barcode=f"I{number}", temporary=temporary))
        ops.check_out(conn, item_id=item, patron_id=patron, now=then,
                      due_at=datetime(2030, 1, 5, tzinfo=timezone.utc))
        tracking.create_rs_request(conn, peer="p", role=role, broker_request_id=f"R{number}",
                              our_request_id=f"X{number}", state="shipped",
                              step="shipped" if role == "lender" else "received", now=then,
                              item_id=item, item_barcode=f"I{number}", patron_id=patron)
    conn.execute("COMMIT")


# -- retention ------------------------------------------------------------------------------------

DAY = 86400.0


def _audit_row(conn: sqlite3.Connection, when: datetime, name: str) -> None:
    insert_entry(conn, AuditEntry(protocol="ncip", operation=name, outcome="success",
                                  request_body="<req/>", response_body="<resp/>",
                                  time=audit_time(when)))


def test_purge_audit_function_clears_bodies_then_rows(tmp_path: Path) -> None:
    """storage.retention.purge_audit: bodies older than N days are cleared (rows kept), rows
    older than M days are deleted, newer rows keep their bodies; stored exactly-once replies
    (verbatim reply bodies, patron ids and all) go with the bodies, after N days. The counts are
    disjoint: a row deleted is not also counted as a body cleared."""
    from gateway.storage.retention import purge_audit

    conn = open_database(tmp_path / "db.sqlite3")
    now = datetime(2030, 6, 1, 12, tzinfo=timezone.utc)
    conn.execute("BEGIN IMMEDIATE")
    for days in (1, 29, 31, 100, 364, 366, 400):
        _audit_row(conn, now - timedelta(days=days), f"d{days}")
    conn.execute("INSERT INTO idempotency (peer, service, key, response, created_at)"
                 " VALUES ('p', 's', 'old', x'00', ?)",
                 (ops.iso(now - timedelta(days=31)),))
    conn.execute("INSERT INTO idempotency (peer, service, key, response, created_at)"
                 " VALUES ('p', 's', 'new', x'00', ?)",
                 (ops.iso(now - timedelta(days=2)),))
    cleared, deleted = purge_audit(conn, now=now, body_days=30, row_days=365)
    conn.execute("COMMIT")
    assert (cleared, deleted) == (3, 2)
    rows = {r[0]: r[1] for r in conn.execute("SELECT operation, request_body FROM audit")}
    assert rows == {"d1": "<req/>", "d29": "<req/>", "d31": None, "d100": None, "d364": None}
    assert [r[0] for r in conn.execute("SELECT key FROM idempotency")] == ["new"]
    conn.close()


class _SyncReactor(Clock):
    """A Clock that also runs ``callFromThread`` at once (the store's writer thread uses it)."""

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


def _sync_store(gateway: Gateway) -> None:
    """Make the gateway's store run each write synchronously through its own commit code."""
    from twisted.internet.defer import Deferred

    from gateway.storage.store import _Job, connect

    conn = connect(gateway.store.path)
    store = gateway.store

    def write(work: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        store.pending += 1
        store._commit_batch(conn, [_Job(work, d)])
        return d

    store.write = write  # type: ignore[method-assign]


def test_gateway_purge_runs_daily_on_the_injected_clock(tmp_path: Path) -> None:
    """Gateway.purge_audit uses its reactor's clock: a row 10 days old keeps its body until
    the clock passes the body retention (5 days here: at once), and the row itself goes once
    the clock passes the row retention (20 days: after 11 more simulated days, one purge per
    day). Each run is logged with its counts and counted in the purge metrics."""
    config_path = tmp_path / "interlend.toml"
    config_path.write_text(af.config_text(body_days=5, row_days=20))
    config = load_config(config_path).with_overrides(database=str(tmp_path / "db.sqlite3"))
    start = datetime(2030, 3, 1, tzinfo=timezone.utc)
    clock = _SyncReactor()
    clock.advance(start.timestamp())
    conn = open_database(tmp_path / "db.sqlite3")
    conn.execute("BEGIN IMMEDIATE")
    _audit_row(conn, start - timedelta(days=10), "old")
    _audit_row(conn, start - timedelta(days=1), "new")
    conn.execute("COMMIT")
    gateway = Gateway(config, reactor=clock, environ={})
    gateway.store.start()
    _sync_store(gateway)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        results: list[Any] = []
        gateway.purge_audit().addCallback(results.append)
        assert results == [(1, 0)]

        def bodies() -> dict[str, Any]:
            return {r[0]: r[1] for r in conn.execute(
                "SELECT operation, request_body FROM audit")}

        assert bodies() == {"old": None, "new": "<req/>"}
        # The daemon's timer: a LoopingCall on the same clock, once a day.
        from twisted.internet.task import LoopingCall
        timer = LoopingCall(gateway.purge_audit)
        timer.clock = clock
        timer.start(PURGE_INTERVAL, now=False)
        clock.pump([DAY] * 10)                   # "old" is 20 days old: not yet past 20
        assert set(bodies()) == {"old", "new"}
        assert bodies()["new"] is None           # "new" is 11 days old: body gone
        clock.advance(1 * DAY)                   # 21 days: the row goes
        assert set(bodies()) == {"new"}
        timer.stop()
    finally:
        globalLogPublisher.removeObserver(events.append)
        gateway.store.stop()
        conn.close()
    purges = [e for e in events if e.get("log_format", "").startswith("audit retention:")]
    assert len(purges) == 12
    assert [(e["cleared"], e["deleted"]) for e in purges if e["cleared"] or e["deleted"]] == [
        (1, 0), (1, 0), (0, 1)]
    assert all(e["body_days"] == 5 and e["row_days"] == 20 for e in purges)
    registry = gateway.metrics.registry
    assert registry.get_sample_value("interlend_audit_bodies_purged_total") == 2
    assert registry.get_sample_value("interlend_audit_rows_purged_total") == 1


def test_gateway_start_schedules_the_purge(tmp_path: Path) -> None:
    """Gateway.start() (listeners on an in-memory reactor) runs the purge at once and then
    every PURGE_INTERVAL seconds of its injected clock."""
    from twisted.internet.testing import MemoryReactorClock

    class Reactor(MemoryReactorClock):
        def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
            f(*args, **kwargs)

    config_path = tmp_path / "interlend.toml"
    config_path.write_text(af.config_text())
    config = load_config(config_path).with_overrides(
        database=str(tmp_path / "db.sqlite3"), z3950_listen=["tcp:0"], ncip_listen=["tcp:0"],
        admin_listen=["tcp:0:interface=127.0.0.1"])
    reactor = Reactor()
    gateway = Gateway(config, reactor=reactor, environ={})
    original_start = gateway.store.start

    def start() -> None:
        original_start()
        _sync_store(gateway)

    gateway.store.start = start  # type: ignore[method-assign]
    runs: list[float] = []
    purge = gateway.purge_audit

    def counted() -> Any:
        runs.append(reactor.seconds())
        return purge()

    gateway.purge_audit = counted  # type: ignore[method-assign]
    done: list[Any] = []
    gateway.start().addBoth(done.append)
    try:
        assert done == [None] and gateway.state == "running"
        assert runs == [0.0]
        reactor.advance(PURGE_INTERVAL - 1)
        assert runs == [0.0]
        reactor.advance(1)
        reactor.advance(PURGE_INTERVAL)
        assert runs == [0.0, PURGE_INTERVAL, 2 * PURGE_INTERVAL]
    finally:
        gateway._purge.stop()  # type: ignore[union-attr]
        gateway.store.stop()


def test_audit_purge_cli(tmp_path: Path) -> None:
    """``interlend audit purge`` applies the configured retention to the database now and
    reports both counts."""
    config_path = tmp_path / "interlend.toml"
    config_path.write_text(af.config_text(body_days=7, row_days=30))
    database = tmp_path / "db.sqlite3"
    conn = open_database(database)
    now = datetime.now(timezone.utc)
    conn.execute("BEGIN IMMEDIATE")
    for days in (1, 8, 9, 31):
        _audit_row(conn, now - timedelta(days=days), f"d{days}")
    conn.execute("COMMIT")
    conn.close()
    status, out, err = af.cli("audit", "purge", "-c", str(config_path), "--database",
                              str(database))
    assert status == 0, err
    assert out.strip() == ("audit retention: 2 bodies cleared (older than 7 days), 1 rows "
                           "deleted (older than 30 days)")
    assert af.query(database, "SELECT operation, request_body FROM audit ORDER BY id") == [
        {"operation": "d1", "request_body": "<req/>"},
        {"operation": "d8", "request_body": None}, {"operation": "d9", "request_body": None}]


# -- sweep ----------------------------------------------------------------------------------------


def _sweep_database(path: Path, now: datetime) -> None:
    """Temporary items in every situation the sweep must tell apart."""
    from gateway.backends.embedded.records import ItemData, PatronData, upsert_item, upsert_patron
    conn = open_database(path)
    conn.execute("BEGIN IMMEDIATE")
    patron, _ = upsert_patron(conn, PatronData(barcode="P1"))
    cases = {
        # barcode: (temporary, request ended days ago or None (still active) or "none")
        "ENDED-40": (True, 40), "ENDED-10": (True, 10), "ACTIVE-50": (True, None),
        "UNTRACKED-OLD": (True, "none"), "REAL-ITEM": (False, "none"),
    }
    for number, (barcode, (temporary, ended)) in enumerate(cases.items(), 1):
        record = ops.create_brief_record(conn, f"r{number}", ops.BriefRecord(title=barcode))
        item, _ = upsert_item(conn, record, ItemData(barcode=barcode, temporary=temporary,
                                                     owning_peer="reshare"))
        age = now - timedelta(days=60)
        conn.execute("UPDATE items SET created_at = ? WHERE id = ?", (ops.iso(age), item))
        if ended == "none":
            continue
        rs = tracking.create_rs_request(conn, peer="reshare", role="borrower",
                                   broker_request_id=f"R{number}", our_request_id=f"B{number}",
                                   state="awaiting_pickup", step="accepted", now=age,
                                   item_id=item, item_barcode=barcode, patron_id=patron)
        if ended is not None:
            tracking.advance_rs_request(conn, rs, state="checked_in", step="checked_in",
                                   now=now - timedelta(days=ended))
    conn.execute("COMMIT")
    conn.close()


def test_sweep_lists_then_removes_orphaned_temporary_items(tmp_path: Path) -> None:
    """``interlend sweep --days 30`` lists temporary items whose request ended more than 30
    days ago and temporary items no request tracks (older than 30 days); not a recently
    ended or active request's item, never a real item. ``--remove`` deletes exactly those
    (with their brief records); a second sweep finds nothing."""
    database = tmp_path / "db.sqlite3"
    config_path = tmp_path / "interlend.toml"
    config_path.write_text(af.config_text())
    _sweep_database(database, datetime.now(timezone.utc))
    args = ("-c", str(config_path), "--database", str(database))
    status, out, err = af.cli("sweep", "--days", "30", *args)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["barcode", "owning_peer", "created_at"]
    assert sorted(line.split()[0] for line in lines[1:-1]) == ["ENDED-40", "UNTRACKED-OLD"]
    assert lines[-1] == "2 orphaned temporary item(s) found (use --remove to delete them)"
    assert len(af.query(database, "SELECT * FROM items")) == 5
    status, out, err = af.cli("sweep", "--days", "30", "--remove", *args)
    assert status == 0 and out.splitlines()[-1] == "2 orphaned temporary item(s) removed"
    assert sorted(r["barcode"] for r in af.query(database, "SELECT barcode FROM items")) == [
        "ACTIVE-50", "ENDED-10", "REAL-ITEM"]
    assert sorted(r["title"] for r in af.query(database, "SELECT title FROM records")) == [
        "ACTIVE-50", "ENDED-10", "REAL-ITEM"]
    status, out, _ = af.cli("sweep", "--days", "5", *args)
    assert out.splitlines()[-1].startswith("1 orphaned")          # ENDED-10 at 5 days
    status, out, _ = af.cli("sweep", "--days", "30", *args)
    assert out.splitlines()[-1].startswith("0 orphaned")


def test_gateway_purge_failure_is_logged_and_the_timer_survives(tmp_path: Path) -> None:
    """When the store cannot run the purge, Gateway.purge_audit logs the error (nothing is
    raised into the daily timer, nothing is counted) and the next day's run still happens."""
    from twisted.internet.defer import fail
    from twisted.internet.task import LoopingCall

    config_path = tmp_path / "interlend.toml"
    config_path.write_text(af.config_text())
    config = load_config(config_path).with_overrides(database=str(tmp_path / "db.sqlite3"))
    clock = Clock()
    gateway = Gateway(config, reactor=clock, environ={})
    attempts: list[float] = []

    def broken(work: Any) -> Any:
        attempts.append(clock.seconds())
        return fail(RuntimeError("database is locked"))

    gateway.store.write = broken  # type: ignore[method-assign]
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        timer = LoopingCall(gateway.purge_audit)
        timer.clock = clock
        timer.start(PURGE_INTERVAL, now=True)
        clock.advance(PURGE_INTERVAL)
        assert timer.running
        timer.stop()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert attempts == [0.0, PURGE_INTERVAL]
    failures = [e for e in events if e.get("log_format", "").startswith("audit retention failed")]
    assert [e["error"] for e in failures] == ["database is locked"] * 2
    assert gateway.metrics.registry.get_sample_value("interlend_audit_rows_purged_total") == 0


# -- the work list: interlend requests and gateway.admin.worklist --------------------------------

WORK_ZONE = "America/New_York"


@pytest.fixture(scope="module")
def worklist_db(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(database, config file, seeded requests, patron-hash key): the work list of
    :mod:`tests.worklist_fixtures`, 60 requests up to 40 days old, as of now."""
    from gateway.audit import load_or_create_key
    from tests import worklist_fixtures as wl

    tmp = tmp_path_factory.mktemp("worklist")
    database = tmp / "interlend.sqlite3"
    conn = open_database(database)
    conn.execute("BEGIN IMMEDIATE")
    key = load_or_create_key(conn)
    conn.execute("COMMIT")
    seeded = wl.seed_worklist(conn, now=datetime.now(timezone.utc))
    conn.close()
    config = tmp / "interlend.toml"
    config.write_text(f'[gateway]\nname = "Work list library"\ntimezone = "{WORK_ZONE}"\n')
    return database, config, seeded, key


def _wl_cli(worklist_db: Any, *args: str) -> str:
    database, config, _, _ = worklist_db
    status, out, err = af.cli(*args, "-c", str(config), "--database", str(database))
    assert status == 0, err
    return out


def _label(key: bytes, barcode: str) -> str:
    """A person's label: the start of the audit log's keyed hash of the barcode."""
    return "#" + hmac.new(key, barcode.encode(), hashlib.sha256).hexdigest()[:10]


def test_requests_table_fits_120_columns(worklist_db: Any) -> None:
    """``interlend requests``: one line per request, newest first, at most 120 characters
    wide, with title (shortened with an ellipsis when long), patron (a person as the start of
    the audit log's keyed hash, a library's institutional patron by barcode), partner (long
    names shortened), state (OVERDUE marked), due date in the configured zone and age."""
    from zoneinfo import ZoneInfo

    _, _, seeded, key = worklist_db
    lines = _wl_cli(worklist_db, "requests", "--limit", "200").splitlines()
    assert lines[0].split() == ["request", "title", "patron", "partner", "role", "state",
                                     "due", "age"]
    assert max(len(line) for line in lines) <= 120
    assert len(lines) == 1 + len(seeded)
    by_id = {s.our_request_id: s for s in seeded}
    assert [line.split()[0] for line in lines[1:]] == sorted(by_id, reverse=True)
    zone = ZoneInfo(WORK_ZONE)
    for line in lines[1:]:
        s = by_id[line.split()[0]]
        patron = s.patron if s.institutional else _label(key, s.patron)
        assert (patron[:13] + "…" if len(patron) > 14 else patron) in line, (line, patron)
        assert (s.peer[:13] + "…" if len(s.peer) > 14 else s.peer) in line
        assert ("OVERDUE" in line) == s.overdue, line
        if s.due is not None and s.state not in ("completed", "cancelled"):
            assert s.due.astimezone(zone).date().isoformat() in line, line
        if s.title == wl_long_title():
            assert "Proceedings of the Interna" in line and "…" in line
        elif s.title:
            assert s.title in line
        assert "PW-" not in line  # no patron barcode in clear


def wl_long_title() -> str:
    from tests import worklist_fixtures as wl

    return wl.LONG_TITLE


def test_requests_limit_says_what_it_left_out(worklist_db: Any) -> None:
    """``--limit`` shows the newest N and says on stderr how many more there are (nothing
    is cut silently); stdout stays the table alone."""
    database, config, seeded, _ = worklist_db
    status, out, err = af.cli("requests", "--limit", "10", "-c", str(config),
                              "--database", str(database))
    assert status == 0 and len(out.splitlines()) == 11
    assert err == f"10 of {len(seeded)} requests shown (newest first); --limit N for more\n"
    status, out, err = af.cli("requests", "--limit", "100", "-c", str(config),
                              "--database", str(database))
    assert status == 0 and err == ""


def test_requests_wide_shows_every_step_time(worklist_db: Any) -> None:
    """``--wide``: ids, item, whole title and every step's time in the configured zone."""
    from zoneinfo import ZoneInfo

    _, _, seeded, _ = worklist_db
    lines = _wl_cli(worklist_db, "requests", "--wide", "--limit", "200").splitlines()
    header = lines[0].split()
    for step in reports.REQUEST_STEPS:
        assert step[:-3] in header
    shipped = next(s for s in seeded if s.state == "shipped")
    [line] = [line for line in lines if line.startswith(shipped.our_request_id + " ")]
    local = shipped.requested.astimezone(ZoneInfo(WORK_ZONE)).strftime("%Y-%m-%d %H:%M")
    assert line.count(local) == 2  # requested and shipped at the same moment
    assert shipped.broker_request_id in line


def test_requests_overdue_lists_exactly_the_overdue(worklist_db: Any) -> None:
    """``--overdue`` lists the open loans past their due date and nothing else; JSON gives
    each one's due date (UTC) and ``overdue: true``."""
    _, _, seeded, _ = worklist_db
    rows = json.loads(_wl_cli(worklist_db, "requests", "--overdue", "--format", "json"))
    expected = {s.our_request_id: s for s in seeded if s.overdue}
    assert expected and {r["our_request_id"] for r in rows} == set(expected)
    for row in rows:
        assert row["overdue"] is True
        assert datetime.fromisoformat(row["due_at"]) == expected[row["our_request_id"]].due
    table = _wl_cli(worklist_db, "requests", "--overdue").splitlines()
    assert len(table) == 1 + len(expected) and all("OVERDUE" in line for line in table[1:])


def test_worklist_filters_search_and_paging(worklist_db: Any) -> None:
    """gateway.admin.worklist: open-only, partner, role, state and overdue filters; search by id,
    title words, item barcode and exact patron barcode (LIKE wildcards are literal); pages
    that add up to the total."""
    from gateway.admin import worklist

    database, _, seeded, key = worklist_db
    now = datetime.now(timezone.utc)
    patrons = worklist.PatronPolicy(key=key)
    conn = open_database(database)
    try:
        def ids(**query: Any) -> list[str]:
            page = worklist.request_page(conn, worklist.RequestQuery(limit=None, **query),
                                         now=now, patrons=patrons)
            assert page.total == len(page.rows)
            return sorted(r["our_request_id"] for r in page.rows)

        def want(check: Any) -> list[str]:
            return sorted(s.our_request_id for s in seeded if check(s))

        assert ids(open_only=True) == want(lambda s: s.state not in ("completed", "cancelled"))
        assert ids(peer="tipasa", role="borrower") == want(
            lambda s: s.peer == "tipasa" and s.role == "borrower")
        assert ids(state="awaiting_pickup") == want(lambda s: s.state == "awaiting_pickup")
        assert ids(overdue=True) == want(lambda s: s.overdue)
        assert ids(search="symposium") == want(lambda s: s.title == wl_long_title())
        assert ids(search="BRK-007") == ["W-007"]
        assert ids(search="TMP-002") == ["W-002"]
        assert ids(search="PW-001") == want(lambda s: s.patron == "PW-001")
        assert ids(search="PW-00") == []          # a patron is found by the whole barcode
        assert ids(search="%") == [] and ids(search="_") == []
        by_due = worklist.request_page(conn, worklist.RequestQuery(order="due", limit=None),
                                       now=now, patrons=patrons).rows
        dated = [r["due_at"] for r in by_due if r["due_at"]]
        assert dated == sorted(dated) and not any(r["due_at"] for r in by_due[len(dated):])
        pages, offset = [], 0
        while True:
            page = worklist.request_page(conn, worklist.RequestQuery(offset=offset, limit=25),
                                         now=now, patrons=patrons)
            assert page.total == len(seeded)
            if not page.rows:
                break
            pages.append([r["our_request_id"] for r in page.rows])
            offset += 25
        assert [len(p) for p in pages] == [25, 25, 10]
        assert sum(pages, []) == sorted((s.our_request_id for s in seeded), reverse=True)
    finally:
        conn.close()


def test_worklist_action_items(worklist_db: Any, tmp_path: Path) -> None:
    """What needs action: every overdue loan (longest overdue first), borrowed items past
    their pickup date, Problems of the last day (older ones left out) and the partners whose
    last exchange failed or half of whose exchanges failed (a partner with one old failure
    and later successes is not failing)."""
    import shutil

    from gateway.admin import worklist

    database, _, seeded, key = worklist_db
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(database, copy)
    now = datetime.now(timezone.utc)
    conn = open_database(copy)
    conn.execute("BEGIN IMMEDIATE")
    for minutes, peer, outcome in ((30 * 60, "reshare", "Unknown Item"),   # a day and more ago
                                   (50, "reshare", "Unknown Item"), (40, "reshare", "success"),
                                   (30, "reshare", "success"),
                                   (20, "tipasa", "success"), (10, "tipasa", "Unknown User"),
                                   (5, "illiad-consortium-east", "Invalid Message Syntax Error"),
                                   (4, "illiad-consortium-east", "success"),
                                   (3, "illiad-consortium-east", "Unknown Item")):
        insert_entry(conn, AuditEntry(protocol="ncip", peer=peer, operation="CheckOutItem",
                                      outcome=outcome,
                                      time=audit_time(now - timedelta(minutes=minutes))))
    conn.execute("COMMIT")
    try:
        actions = worklist.action_items(conn, now=now, patrons=worklist.PatronPolicy(key=key),
                                        pickup_days=7, limit=100)
    finally:
        conn.close()
    overdue = [s for s in seeded if s.overdue]
    assert actions.overdue.total == len(overdue)
    assert [r["our_request_id"] for r in actions.overdue.rows] == [
        s.our_request_id for s in sorted(overdue, key=lambda s: s.due)]
    late = sorted((s for s in seeded if s.pickup_expired), key=lambda s: s.requested)
    assert actions.pickup_overdue.total == len(late)
    assert [r["our_request_id"] for r in actions.pickup_overdue.rows] == [
        s.our_request_id for s in late]
    assert all(r["pickup_deadline"] for r in actions.pickup_overdue.rows)
    assert actions.problem_count == 4
    assert [p["outcome"] for p in actions.problems] == [
        "Unknown Item", "Invalid Message Syntax Error", "Unknown User", "Unknown Item"]
    assert [(p["peer"], p["failures"], p["exchanges"]) for p in actions.failing_partners] == [
        ("illiad-consortium-east", 2, 3), ("tipasa", 1, 2)]


def test_patron_policy_follows_the_audit_settings(worklist_db: Any) -> None:
    """Patrons in clear only where the audit log keeps them in clear anyway
    (``store_patron_ids`` or ``bodies = "full"``); otherwise the start of the keyed hash the
    audit log stores; institutional patrons always in clear; no key yet: hidden."""
    from gateway.admin import worklist
    from gateway.config import AuditSettings

    database, _, _, key = worklist_db
    conn = open_database(database)
    try:
        hashed = worklist.patron_policy(conn, AuditSettings())
        assert hashed.label("PW-001") == _label(key, "PW-001")
        assert hashed.label("INST-X", "x") == "INST-X"
        for settings in (AuditSettings(store_patron_ids=True), AuditSettings(bodies="full")):
            assert worklist.patron_policy(conn, settings).label("PW-001") == "PW-001"
    finally:
        conn.close()
    assert worklist.PatronPolicy().label("PW-001") == "(hidden)"
    assert worklist.PatronPolicy().label(None) == ""


def test_checked_out_borrow_has_its_due_date(tmp_path: Path) -> None:
    """A borrowed item checked out to our patron (a real daemon, ReShare's AcceptItem then
    CheckOutItem) is listed with its loan's due date, with or without a lender's
    DateForReturn (kept apart as ``lender_due_at``); after a renewal, the new date."""
    from tests import workflow_fixtures as wf

    wf.seed_database(tmp_path / "interlend.sqlite3")
    daemon = start_daemon(tmp_path, wf.CONFIG)
    try:
        limit = wf.local_day(10).isoformat()
        for rid, date_for_return in (("DUE-1", None), ("DUE-2", limit)):
            for body in (wf.reshare_accept_item(rid, "P100", barcode=rid,
                                                date_for_return=date_for_return),
                         wf.reshare_check_out(rid, "P100")):
                status, reply = daemon.post(body)
                assert status == 200 and wf.problem(reply) is None, reply
        listed = {r["broker_request_id"]: r for r in json.loads(
            _cli(daemon, "requests", "--format", "json"))}
        loans = {row["barcode"]: row["due_at"] for row in wf.rows(
            daemon.database, "SELECT i.barcode, l.due_at FROM loans l JOIN items i ON"
            " i.id = l.item_id WHERE l.returned_at IS NULL")}
        assert listed["DUE-1"]["state"] == "checked_out"
        assert listed["DUE-1"]["due_at"] == loans["DUE-1"] == wf.stored(
            wf.end_of_day(wf.BORROWED_DAYS))
        assert listed["DUE-1"]["lender_due_at"] is None
        assert listed["DUE-2"]["due_at"] == loans["DUE-2"] == wf.stored(wf.end_of_day(10))
        assert listed["DUE-2"]["lender_due_at"] is not None
        # Two weeks on (the loan moved back as if it had been), the patron renews: the
        # request's due date is the renewed loan's.
        conn = sqlite3.connect(daemon.database)
        with conn:
            conn.execute("UPDATE loans SET due_at = ? WHERE due_at = ?",
                         (wf.stored(wf.end_of_day(3)), loans["DUE-1"]))
        conn.close()
        status, reply = daemon.post(wf.reshare_renew("DUE-1", "P100"))
        assert status == 200 and wf.problem(reply) is None, reply
        renewed = {r["broker_request_id"]: r for r in json.loads(
            _cli(daemon, "requests", "--format", "json"))}
        assert renewed["DUE-1"]["due_at"] == wf.stored(wf.end_of_day(wf.BORROWED_DAYS))
        [line] = [line for line in _cli(daemon, "requests").splitlines()
                  if line.startswith(renewed["DUE-1"]["our_request_id"] + " ")]
        assert wf.local_day(wf.BORROWED_DAYS).isoformat() in line and "checked_out" in line
    finally:
        daemon.stop()


def test_worklist_csv_rows_are_safe_for_spreadsheets() -> None:
    """The CSV export: times in the configured zone with its offset, the overdue flag as
    yes/no, age in days; a title or id a broker sent that a spreadsheet would run as a
    formula (``=``, ``+``, ``-``, ``@``) is quoted as text, other text left as it is."""
    from zoneinfo import ZoneInfo

    from gateway.admin import worklist

    row = {"our_request_id": "B-1", "broker_request_id": "+1-555", "peer": "p",
           "role": "borrower", "state": "checked_out", "overdue": True,
           "title": '=HYPERLINK("http://x.test","click")', "patron": "#0123456789",
           "item_barcode": "@SUM(A1)", "due_at": "2030-01-01T04:59:59+00:00",
           "lender_due_at": None, "age_seconds": 129600,
           **{step: None for step in worklist.STEP_COLUMNS},
           "requested_at": "2029-12-30T12:00:00+00:00"}
    [out] = worklist.csv_rows([row], ZoneInfo("America/New_York"))
    assert out["title"] == "'=HYPERLINK(\"http://x.test\",\"click\")"
    assert out["broker_request_id"] == "'+1-555" and out["item_barcode"] == "'@SUM(A1)"
    assert out["our_request_id"] == "B-1" and out["patron"] == "#0123456789"
    assert out["due_at"] == "2029-12-31T23:59:59-05:00" and out["lender_due_at"] == ""
    assert out["requested_at"] == "2029-12-30T07:00:00-05:00" and out["completed_at"] == ""
    assert out["overdue"] == "yes" and out["age_days"] == "1.5"
