# -*- test-case-name: tests.gateway.test_reports,tests.gateway.test_metrics -*-
"""Reading the request tracking (``rs_requests``) for staff: listings, one request, partner
figures, the work list, the metrics.

The work list shows each request with what the circulation side knows of it (the title, the
patron's barcode, the open loan's due date, the hold's pickup expiry) through LEFT JOINs on the
embedded backend's tables: with another backend those rows are absent and the columns empty.
Rows come back as mappings of column name to value, for the generic table, CSV and JSON
writers and the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.storage.store import Connection, DatabaseError, open_read_only

if TYPE_CHECKING:
    import sqlite_utils

REQUEST_STEPS = ("requested_at", "accepted_at", "shipped_at", "received_at", "checked_out_at",
                 "returned_at", "checked_in_at", "completed_at", "cancelled_at")
"""The time columns of a request, in the order a request goes through them."""


def _db(conn: Connection) -> sqlite_utils.Database:
    # imported here: only listings (admin, CLI) read through sqlite_utils, and with click,
    # pluggy and dateutil it costs a serving process (a worker) about 3 MiB it never uses
    import sqlite_utils

    return sqlite_utils.Database(conn, execute_plugins=False)


def requests(conn: Connection, *, peer: str | None = None, role: str | None = None,
             state: str | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
    """Tracked resource-sharing requests, newest first."""
    clauses, params = [], []
    for column, value in (("peer", peer), ("role", role), ("state", state)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return list(_db(conn)["rs_requests"].rows_where(
        " AND ".join(clauses) or None, params, order_by="id DESC", limit=limit))


def find_request(conn: Connection, identifier: str) -> dict[str, Any] | None:
    """The newest request whose our id, broker id or row id is ``identifier``."""
    rows = list(_db(conn)["rs_requests"].rows_where(
        "our_request_id = ? OR broker_request_id = ? OR CAST(id AS TEXT) = ?",
        [identifier] * 3, order_by="id DESC", limit=1))
    return rows[0] if rows else None


def requests_with_loan_due(conn: Connection, peer: str | None = None) -> list[dict[str, Any]]:
    """Every request (of one peer, or all) with the due date of its item's open loan as
    ``loan_due`` (None when the item is not on loan)."""
    where, params = (" WHERE r.peer = ?", [peer]) if peer is not None else ("", [])
    return [dict(row) for row in conn.execute(
        "SELECT r.*, l.due_at AS loan_due FROM rs_requests r LEFT JOIN loans l ON"
        " l.item_id = r.item_id AND l.returned_at IS NULL" + where, params)]


@dataclass(frozen=True)
class RequestCounts:
    """How many requests are in each state, and how many are active loans and borrows."""

    by_state: dict[str, int]
    active_loans: int
    active_borrows: int


def request_counts(conn: Connection) -> RequestCounts:
    """The counts ReShare's load balancer reads from ``/rs/statistics``."""
    states = {row[0]: int(row[1]) for row in conn.execute(
        "SELECT state, count(*) FROM rs_requests GROUP BY state")}
    active_loans = conn.execute(
        "SELECT count(*) FROM rs_requests WHERE role = 'lender' AND shipped_at IS NOT NULL"
        " AND checked_in_at IS NULL AND completed_at IS NULL AND cancelled_at IS NULL"
    ).fetchone()[0]
    active_borrows = conn.execute(
        "SELECT count(*) FROM rs_requests WHERE role = 'borrower' AND checked_in_at IS NULL"
        " AND completed_at IS NULL AND cancelled_at IS NULL").fetchone()[0]
    return RequestCounts(states, int(active_loans), int(active_borrows))


# -- the metrics' figures --------------------------------------------------------------------


def requests_by_role_and_state(conn: Connection) -> list[tuple[str, str, int]]:
    """(role, state, count) for every role and state in use."""
    return [(str(r[0]), str(r[1]), int(r[2])) for r in conn.execute(
        "SELECT role, state, count(*) FROM rs_requests GROUP BY role, state")]


def overdue_by_peer_and_role(conn: Connection, now_text: str) -> list[tuple[str, str, int]]:
    """(peer, role, count) of open requests whose item's loan was due before ``now_text``."""
    return [(str(r[0]), str(r[1]), int(r[2])) for r in conn.execute(
        "SELECT r.peer, r.role, count(*) FROM rs_requests r JOIN loans l"
        " ON l.item_id = r.item_id AND l.returned_at IS NULL"
        " WHERE r.checked_in_at IS NULL AND r.completed_at IS NULL"
        " AND r.cancelled_at IS NULL AND l.due_at < ? GROUP BY r.peer, r.role", (now_text,))]


# -- the work list ---------------------------------------------------------------------------

_LOAN_DUE = ("(SELECT l.due_at FROM loans l WHERE l.item_id = r.item_id AND l.returned_at IS NULL"
             " AND r.state NOT IN ('completed', 'cancelled')"
             " AND (r.patron_id IS NULL OR l.patron_id = r.patron_id))")

_PICKUP_EXPIRES = ("(SELECT MIN(h.pickup_expires) FROM holds h WHERE h.item_id = r.item_id"
                   " AND h.status = 'active' AND r.role = 'borrower')")

_PICKUP_DEADLINE = (f"datetime(COALESCE({_PICKUP_EXPIRES}, datetime(COALESCE(r.received_at,"
                    " r.accepted_at), ?)))")
"""When a borrowed item on the hold shelf should have been picked up (UTC, SQLite's form);
its one parameter is the pickup period as a modifier (``+7 days``)."""

_SELECT = f"""
SELECT r.*, rec.title AS title, p.barcode AS patron_barcode,
       p.institutional_peer AS patron_institution, {_LOAN_DUE} AS loan_due,
       {_PICKUP_EXPIRES} AS pickup_expires
FROM rs_requests r
LEFT JOIN items i ON i.id = r.item_id
LEFT JOIN records rec ON rec.id = i.record_id
LEFT JOIN patrons p ON p.id = r.patron_id
"""


@dataclass(frozen=True)
class WorkListFilter:
    """Which requests a work-list page shows; every field optional (see
    ``gateway.admin.worklist.RequestQuery``, which staff fill in)."""

    peer: str | None = None
    role: str | None = None
    state: str | None = None
    overdue: bool = False
    search: str = ""
    open_only: bool = False
    pickup_late_days: int | None = None
    order: str = "newest"
    offset: int = 0
    limit: int | None = 100

    def where(self, now_text: str) -> tuple[str, list[Any]]:
        """The filter as `` WHERE ...`` (empty when there is none) and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("r.peer", self.peer), ("r.role", self.role),
                              ("r.state", self.state)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.open_only:
            clauses.append("r.state NOT IN ('completed', 'cancelled')")
        if self.overdue:
            clauses.append(f"{_LOAN_DUE} < ?")
            params.append(now_text)
        if self.pickup_late_days is not None:
            clauses.append("r.role = 'borrower' AND r.state = 'awaiting_pickup' AND"
                           f" {_PICKUP_DEADLINE} < datetime(?)")
            params += [f"+{int(self.pickup_late_days)} days", now_text]
        text = self.search.strip()
        if text:
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append(
                "(r.our_request_id LIKE ? ESCAPE '\\' OR r.broker_request_id LIKE ? ESCAPE '\\'"
                " OR r.item_barcode LIKE ? ESCAPE '\\' OR rec.title LIKE ? ESCAPE '\\'"
                " OR p.barcode = ?)")
            params += [like, like, like, like, text]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def order_by(self) -> tuple[str, list[Any]]:
        """The ORDER BY clause for :attr:`order` and its parameters."""
        if self.order == "due":
            return (" ORDER BY COALESCE(loan_due, r.due_at) IS NULL,"
                    " COALESCE(loan_due, r.due_at), r.id"), []
        if self.order == "oldest":
            return " ORDER BY r.id", []
        if self.order == "pickup" and self.pickup_late_days is not None:
            return (f" ORDER BY {_PICKUP_DEADLINE}, r.id",
                    [f"+{int(self.pickup_late_days)} days"])
        return " ORDER BY r.id DESC", []


def work_list(conn: Connection, wanted: WorkListFilter,
              now_text: str) -> tuple[list[dict[str, Any]], int]:
    """One page of the requests ``wanted`` asks for, each with ``title``, ``patron_barcode``,
    ``patron_institution``, ``loan_due`` and ``pickup_expires``; and how many match in all."""
    where, params = wanted.where(now_text)
    base = _SELECT + where
    total = conn.execute(f"SELECT count(*) FROM ({base})", params).fetchone()[0]
    order, order_params = wanted.order_by()
    paging, page_params = "", []
    if wanted.limit is not None:
        paging = " LIMIT ? OFFSET ?"
        page_params = [wanted.limit, max(0, wanted.offset)]
    rows = conn.execute(base + order + paging, params + order_params + page_params)
    return [dict(row) for row in rows], int(total)


def work_list_entry(conn: Connection, request_row_id: int) -> dict[str, Any] | None:
    """One request (by row id) with the columns of :func:`work_list`."""
    row = conn.execute(_SELECT + " WHERE r.id = ?", (request_row_id,)).fetchone()
    return dict(row) if row is not None else None


def states_in_use(conn: Connection) -> set[str]:
    """The states of the requests in the database."""
    return {row[0] for row in conn.execute("SELECT DISTINCT state FROM rs_requests")}


def peers_in_use(conn: Connection) -> list[str]:
    """The partners that have requests, sorted."""
    return [row[0] for row in conn.execute("SELECT DISTINCT peer FROM rs_requests ORDER BY peer")]


# -- what the command line checks its arguments against ---------------------------------------


def recorded_peers(database: Path) -> list[str]:
    """Peers named in the audit log or in requests (a peer removed from the configuration
    still has its history), read without scanning the audit table (index skip-scan); nothing
    when the database cannot be read."""
    try:
        conn = open_read_only(database)
        try:
            audit = conn.execute(
                "WITH RECURSIVE p(peer) AS (SELECT MIN(peer) FROM audit UNION ALL "
                "SELECT (SELECT MIN(peer) FROM audit WHERE peer > p.peer) FROM p "
                "WHERE p.peer IS NOT NULL) SELECT peer FROM p WHERE peer IS NOT NULL").fetchall()
            tracked = conn.execute("SELECT DISTINCT peer FROM rs_requests").fetchall()
        finally:
            conn.close()
    except DatabaseError:
        return []
    return [row[0] for row in audit + tracked if row[0]]


def recorded_states(database: Path) -> list[str]:
    """The states of the requests in a database file; nothing when it cannot be read."""
    try:
        conn = open_read_only(database)
        try:
            return [row[0] for row in conn.execute("SELECT DISTINCT state FROM rs_requests")]
        finally:
            conn.close()
    except DatabaseError:
        return []
