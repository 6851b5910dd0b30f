# -*- test-case-name: tests.gateway.test_reports -*-
"""What staff read: the audit log, request histories, partner statistics, retention and sweeps.

Plain functions over a SQLite connection (a reader's in the daemon, the CLI's own otherwise),
built on sqlite-utils, so the same answers reach the command line, the admin endpoints and the
dashboard.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlite_utils

from gateway.backends.embedded import operations as ops

AUDIT_COLUMNS = ("id", "time", "protocol", "peer", "remote", "operation", "dialect",
                 "broker_request_id", "our_request_id", "item_barcode", "patron_hash", "outcome",
                 "duration_us", "request_size", "response_size", "notes")
REQUEST_STEPS = ("requested_at", "accepted_at", "shipped_at", "received_at", "checked_out_at",
                 "returned_at", "checked_in_at", "completed_at", "cancelled_at")


def _db(conn: sqlite3.Connection) -> sqlite_utils.Database:
    return sqlite_utils.Database(conn, execute_plugins=False)


@dataclass(frozen=True)
class AuditFilter:
    """Filters for ``interlend audit`` (every field optional)."""

    peer: str | None = None
    protocol: str | None = None
    service: str | None = None
    request_id: str | None = None
    item: str | None = None
    outcome: str | None = None
    since: str | None = None
    until: str | None = None
    after_id: int = 0

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = ["id > ?"], [self.after_id]
        for column, value in (("peer", self.peer), ("protocol", self.protocol),
                              ("operation", self.service), ("item_barcode", self.item),
                              ("outcome", self.outcome)):
            if value is not None:
                clauses.append(f"{column} = ? COLLATE NOCASE")
                params.append(value)
        if self.request_id is not None:
            clauses.append("(broker_request_id = ? OR our_request_id = ?)")
            params += [self.request_id, self.request_id]
        if self.since is not None:
            clauses.append("time >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("time < ?")
            params.append(self.until)
        return " AND ".join(clauses), params


def audit_rows(conn: sqlite3.Connection, where: AuditFilter, *, limit: int | None = 100,
               bodies: bool = False, newest_first: bool = True) -> list[dict[str, Any]]:
    """Audit rows matching ``where`` (newest first for listings, oldest first for tailing)."""
    sql, params = where.where()
    columns = AUDIT_COLUMNS + (("request_body", "response_body") if bodies else ())
    rows = list(_db(conn)["audit"].rows_where(
        sql, params, select=", ".join(columns),
        order_by="id DESC" if newest_first else "id", limit=limit))
    return rows


def requests(conn: sqlite3.Connection, *, peer: str | None = None, role: str | None = None,
             state: str | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
    """Tracked resource-sharing requests, newest first."""
    clauses, params = [], []
    for column, value in (("peer", peer), ("role", role), ("state", state)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return list(_db(conn)["rs_requests"].rows_where(
        " AND ".join(clauses) or None, params, order_by="id DESC", limit=limit))


def request_history(conn: sqlite3.Connection, identifier: str) -> dict[str, Any] | None:
    """One request (by our id, the broker's id, or row id) with every exchange about it."""
    db = _db(conn)
    rows = list(db["rs_requests"].rows_where(
        "our_request_id = ? OR broker_request_id = ? OR CAST(id AS TEXT) = ?",
        [identifier] * 3, order_by="id DESC", limit=1))
    if not rows:
        return None
    request = rows[0]
    peer, broker_id = request["peer"], request["broker_request_id"]
    clauses = ["broker_request_id = ?", "our_request_id = ?"]
    params: list[Any] = [broker_id, request["our_request_id"]]
    if request["item_barcode"]:
        # Exchanges naming only the item (check-in, delete) belong to this request while it
        # was the item's request: from its first exchange (or its request time) up to the
        # first exchange of another request for the same item. Items are lent many times.
        first = conn.execute(
            "SELECT MIN(id) FROM audit WHERE peer = ? AND (broker_request_id = ? OR"
            " our_request_id = ?)", (peer, broker_id, request["our_request_id"])).fetchone()[0]
        item_clause = "(item_barcode = ? AND (broker_request_id IS NULL OR broker_request_id = ?)"
        params += [request["item_barcode"], broker_id]
        if first is not None:
            item_clause += " AND id >= ?"
            params.append(first)
        else:
            item_clause += " AND time >= ?"
            params.append(request["requested_at"] or "")
        following = conn.execute(
            "SELECT MIN(id) FROM audit WHERE peer = ? AND item_barcode = ? AND id > ? AND"
            " time >= ? AND broker_request_id IS NOT NULL AND broker_request_id IS NOT ?",
            (peer, request["item_barcode"], first or 0, request["requested_at"] or "",
             broker_id)).fetchone()[0]
        if following is not None:
            item_clause += " AND id < ?"
            params.append(following)
        clauses.append(item_clause + ")")
    exchanges = list(db["audit"].rows_where(
        f"peer = ? AND ({' OR '.join(clauses)})", [peer, *params],
        select=", ".join(AUDIT_COLUMNS), order_by="id"))
    steps = [(step[:-3], request[step]) for step in REQUEST_STEPS if request[step]]
    return {"request": request, "steps": steps, "exchanges": exchanges}


# -- partner statistics -------------------------------------------------------------------------


def _hours(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 3600


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = fraction * (len(ordered) - 1)
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (index - low), 2)


def _summary(values: list[float]) -> dict[str, Any]:
    return {"count": len(values),
            "median_hours": round(statistics.median(values), 2) if values else None,
            "p90_hours": _percentile(values, 0.9)}


TURNAROUNDS = {
    "request_to_filled": ("requested_at", "accepted_at"),
    "filled_to_shipped": ("accepted_at", "shipped_at"),
    "shipped_to_received": ("shipped_at", "received_at"),
    "loan_length": ("checked_out_at", "checked_in_at"),
}


@dataclass
class PartnerStats:
    """One partner's figures over a period."""

    peer: str
    lent: int = 0
    borrowed: int = 0
    lending_requests: int = 0
    active_loans: int = 0
    active_borrows: int = 0
    overdue_loans: int = 0
    overdue_borrows: int = 0
    cancelled: int = 0
    turnaround: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def as_dict(self, cost_per_request: float) -> dict[str, Any]:
        return {
            "peer": self.peer, "lent": self.lent, "borrowed": self.borrowed,
            "active_loans": self.active_loans, "active_borrows": self.active_borrows,
            "net_balance": self.lent - self.borrowed,
            "lending_borrowing_ratio": round(self.lent / self.borrowed, 2)
            if self.borrowed else None,
            "lending_requests": self.lending_requests,
            "fill_rate": round(self.lent / self.lending_requests, 3)
            if self.lending_requests else None,
            "cancelled": self.cancelled,
            "overdue": self.overdue_loans + self.overdue_borrows,
            "overdue_loans": self.overdue_loans, "overdue_borrows": self.overdue_borrows,
            "turnaround": {name: _summary(self.turnaround.get(name, []))
                           for name in TURNAROUNDS},
            "estimated_saving": round(self.borrowed * cost_per_request, 2),
        }


def partner_stats(conn: sqlite3.Connection, *, now: datetime, since: str | None = None,
                  peer: str | None = None, cost_per_request: float = 0.0) -> dict[str, Any]:
    """Per partner: lent and borrowed, active, balance, fill rate, turnaround, overdue, saving.

    "Lent" counts lender requests we shipped, "borrowed" borrower requests whose item arrived,
    both within the period; active and overdue counts are as of ``now``.
    """
    clauses, params = [], []
    if peer is not None:
        clauses.append("r.peer = ?")
        params.append(peer)
    rows = conn.execute(
        "SELECT r.*, l.due_at AS loan_due FROM rs_requests r LEFT JOIN loans l ON"
        " l.item_id = r.item_id AND l.returned_at IS NULL"
        + (" WHERE " + " AND ".join(clauses) if clauses else ""), params).fetchall()
    start = since or ""
    now_text = ops.iso(now)
    partners: dict[str, PartnerStats] = {}
    for row in rows:
        stats = partners.setdefault(row["peer"], PartnerStats(row["peer"]))
        ended = row["checked_in_at"] or row["completed_at"] or row["cancelled_at"]
        in_period = (row["requested_at"] or "") >= start
        if row["role"] == "lender":
            if in_period:
                stats.lending_requests += 1
                stats.lent += bool(row["shipped_at"])
                stats.cancelled += bool(row["cancelled_at"])
            if row["shipped_at"] and not ended:
                stats.active_loans += 1
                stats.overdue_loans += bool(row["loan_due"] and row["loan_due"] < now_text)
        else:
            if in_period:
                stats.borrowed += bool(row["received_at"] or row["accepted_at"])
                stats.cancelled += bool(row["cancelled_at"])
            if not ended:
                stats.active_borrows += 1
                stats.overdue_borrows += bool(row["loan_due"] and row["loan_due"] < now_text)
        if in_period:
            for name, (begin, finish) in TURNAROUNDS.items():
                if name == "loan_length" and row["role"] == "lender":
                    begin = "shipped_at"
                hours = _hours(row[begin], row[finish])
                if hours is not None:
                    stats.turnaround[name].append(hours)
    partner_list = [partners[name].as_dict(cost_per_request) for name in sorted(partners)]
    totals = {key: sum(p[key] for p in partner_list) for key in (
        "lent", "borrowed", "active_loans", "active_borrows", "overdue", "estimated_saving",
        "lending_requests")}
    totals["net_balance"] = totals["lent"] - totals["borrowed"]
    return {"as_at": now_text, "since": since, "partners": partner_list, "totals": totals}


def rs_statistics(conn: sqlite3.Connection, *, now: datetime) -> dict[str, Any]:
    """The figures ReShare's load balancer reads from ``/rs/statistics``."""
    states = Counter({row[0]: row[1] for row in conn.execute(
        "SELECT state, count(*) FROM rs_requests GROUP BY state")})
    active_loan = conn.execute(
        "SELECT count(*) FROM rs_requests WHERE role = 'lender' AND shipped_at IS NOT NULL"
        " AND checked_in_at IS NULL AND completed_at IS NULL AND cancelled_at IS NULL"
    ).fetchone()[0]
    active_borrow = conn.execute(
        "SELECT count(*) FROM rs_requests WHERE role = 'borrower' AND checked_in_at IS NULL"
        " AND completed_at IS NULL AND cancelled_at IS NULL").fetchone()[0]
    return {"asAt": ops.iso(now), "requestsByState": dict(sorted(states.items())),
            "requestsByTag": {"ACTIVE_LOAN": active_loan, "ACTIVE_BORROW": active_borrow}}


# -- retention and sweeps -------------------------------------------------------------------------


def purge_audit(conn: sqlite3.Connection, *, now: datetime, body_days: int,
                row_days: int) -> tuple[int, int]:
    """Clear bodies older than ``body_days`` and delete rows older than ``row_days``.

    Stored exactly-once replies (the ``idempotency`` table) are bodies too: they go after
    ``body_days``.

    Returns (bodies cleared from rows kept, rows deleted). Runs in the caller's transaction.
    """
    body_cutoff = ops.iso(now - timedelta(days=body_days))
    row_cutoff = ops.iso(now - timedelta(days=row_days))
    # Rows first, so that a row deleted is not also counted as a body cleared.
    deleted = conn.execute("DELETE FROM audit WHERE time < ?", (row_cutoff,)).rowcount
    cleared = conn.execute(
        "UPDATE audit SET request_body = NULL, response_body = NULL WHERE time < ? AND"
        " (request_body IS NOT NULL OR response_body IS NOT NULL)", (body_cutoff,)).rowcount
    # Exactly-once replies are verbatim reply bodies (patron ids and all): they go with the
    # bodies. A retry weeks later is not a retry; the request's tracking still refuses it.
    conn.execute("DELETE FROM idempotency WHERE created_at < ?", (body_cutoff,))
    return cleared, deleted


def orphan_items(conn: sqlite3.Connection, *, now: datetime, days: int) -> list[dict[str, Any]]:
    """Temporary items whose request ended more than ``days`` ago, or that no request tracks."""
    cutoff = ops.iso(now - timedelta(days=days))
    rows = conn.execute(
        "SELECT i.barcode, i.owning_peer, i.created_at, r.our_request_id, r.state,"
        " COALESCE(r.completed_at, r.cancelled_at, r.checked_in_at) AS ended_at"
        " FROM items i LEFT JOIN rs_requests r ON r.item_id = i.id"
        " WHERE i.temporary = 1 AND ((r.id IS NULL AND i.created_at < ?) OR"
        " COALESCE(r.completed_at, r.cancelled_at, r.checked_in_at) < ?)"
        " ORDER BY i.created_at", (cutoff, cutoff)).fetchall()
    return [dict(row) for row in rows]


def now_utc() -> datetime:
    """The current time, UTC (the CLI's clock; the daemon uses its reactor's)."""
    return datetime.now(timezone.utc)
