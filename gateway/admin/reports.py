# -*- test-case-name: tests.gateway.test_reports -*-
"""What staff read: request histories, partner statistics, ReShare's statistics.

Functions over a store connection (a reader's in the daemon, the CLI's own otherwise) that read
through :mod:`gateway.storage` and shape the answer, so the same answers reach the command line,
the admin endpoints and the dashboard.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from gateway.storage import audit_log, request_reports
from gateway.storage.audit_log import AUDIT_COLUMNS as AUDIT_COLUMNS
from gateway.storage.audit_log import AuditFilter as AuditFilter
from gateway.storage.audit_log import audit_rows as audit_rows
from gateway.storage.request_reports import REQUEST_STEPS as REQUEST_STEPS
from gateway.storage.request_reports import requests as requests
from gateway.storage.store import Connection
from gateway.storage.timestamps import iso as stored_time


def request_history(conn: Connection, identifier: str) -> dict[str, Any] | None:
    """One request (by our id, the broker's id, or row id) with every exchange about it."""
    request = request_reports.find_request(conn, identifier)
    if request is None:
        return None
    peer, broker_id = request["peer"], request["broker_request_id"]
    clauses = ["broker_request_id = ?", "our_request_id = ?"]
    params: list[Any] = [broker_id, request["our_request_id"]]
    if request["item_barcode"]:
        # Exchanges naming only the item (check-in, delete) belong to this request while it
        # was the item's request: from its first exchange (or its request time) up to the
        # first exchange of another request for the same item. Items are lent many times.
        first = audit_log.first_exchange_id(conn, peer, broker_id, request["our_request_id"])
        item_clause = "(item_barcode = ? AND (broker_request_id IS NULL OR broker_request_id = ?)"
        params += [request["item_barcode"], broker_id]
        if first is not None:
            item_clause += " AND id >= ?"
            params.append(first)
        else:
            item_clause += " AND time >= ?"
            params.append(request["requested_at"] or "")
        following = audit_log.next_request_about_item(
            conn, peer, request["item_barcode"], first or 0, request["requested_at"] or "",
            broker_id)
        if following is not None:
            item_clause += " AND id < ?"
            params.append(following)
        clauses.append(item_clause + ")")
    exchanges = audit_log.exchanges_about(conn, peer, clauses, params)
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


def partner_stats(conn: Connection, *, now: datetime, since: str | None = None,
                  peer: str | None = None, cost_per_request: float = 0.0) -> dict[str, Any]:
    """Per partner: lent and borrowed, active, balance, fill rate, turnaround, overdue, saving.

    "Lent" counts lender requests we shipped, "borrowed" borrower requests whose item arrived,
    both within the period; active and overdue counts are as of ``now``.
    """
    rows = request_reports.requests_with_loan_due(conn, peer)
    start = since or ""
    now_text = stored_time(now)
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


def rs_statistics(conn: Connection, *, now: datetime) -> dict[str, Any]:
    """The figures ReShare's load balancer reads from ``/rs/statistics``."""
    counts = request_reports.request_counts(conn)
    return {"asAt": stored_time(now), "requestsByState": dict(sorted(counts.by_state.items())),
            "requestsByTag": {"ACTIVE_LOAN": counts.active_loans,
                              "ACTIVE_BORROW": counts.active_borrows}}


def now_utc() -> datetime:
    """The current time, UTC (the CLI's clock; the daemon uses its reactor's)."""
    return datetime.now(timezone.utc)
