# -*- test-case-name: tests.gateway.test_worklist,tests.gateway.test_reports -*-
"""The ILL staff work list: requests with their title, patron, due date and age, filtered and
paged, and what needs action first (overdue loans, items waiting too long for pickup, recent
Problems, failing partners).

Plain functions over a SQLite connection, so ``interlend requests`` and the dashboard give the
same answers. Patrons appear by barcode only, and only as the ``[audit]`` settings allow: in
clear where the audit log keeps patron ids in clear anyway, otherwise as the start of the same
keyed hash the audit log stores (so a row can be matched with ``interlend audit``).
"""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from gateway.audit import default_key_file
from gateway.backends.embedded import operations as ops
from gateway.secrets import KeyFileError, keyed_hash, read_key_file

CLOSED_STATES = ("completed", "cancelled")
"""States after which a request needs nothing more from staff."""

KNOWN_STATES = ("requested", "filled", "shipped", "awaiting_pickup", "checked_out", "returned",
                "checked_in", "completed", "cancelled")
"""Every state the workflows give a request, in the order a request goes through them."""

ROLES = ("borrower", "lender")
ORDERS = ("newest", "oldest", "due")
"""The orders a listing may ask for (``pickup`` is the action list's own)."""
PATRON_HASH_CHARS = 10
"""Hex digits of the keyed patron hash shown (a prefix of the audit row's ``patron_hash``)."""

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
class PatronPolicy:
    """How a patron is shown: in clear, or as the start of the audit log's keyed hash."""

    in_clear: bool = False
    key: bytes | None = None

    def label(self, barcode: str | None, institution: str | None = None) -> str:
        """A patron's barcode as staff may see it. A borrowing library's institutional
        patron is no person: it is always shown."""
        if not barcode:
            return ""
        if self.in_clear or institution:
            return barcode
        if self.key is None:
            return "(hidden)"
        return _hashed_label(self.key, barcode)


@functools.lru_cache(maxsize=4096)
def _hashed_label(key: bytes, barcode: str) -> str:
    return "#" + keyed_hash(key, barcode)[:PATRON_HASH_CHARS]


def patron_policy(conn: sqlite3.Connection, audit_settings: Any,
                  key_file: str = "") -> PatronPolicy:
    """The policy for ``[audit]`` settings: patrons in clear when the audit log keeps patron
    ids (``store_patron_ids``) or whole bodies (``bodies = "full"``) in clear anyway; else
    hashed with the gateway key (``[gateway] key_file``, by default beside the database)."""
    if audit_settings.store_patron_ids or audit_settings.bodies == "full":
        return PatronPolicy(in_clear=True)
    path = Path(key_file) if key_file else default_key_file(conn)
    try:
        key = read_key_file(path) if path is not None else None
    except KeyFileError:        # not ours to read (another user): nobody is shown
        key = None
    return PatronPolicy(key=key)


@dataclass(frozen=True)
class RequestQuery:
    """Which requests to list: every field optional; ``open_only`` leaves out the closed."""

    peer: str | None = None
    role: str | None = None
    state: str | None = None
    overdue: bool = False
    search: str = ""
    open_only: bool = False
    pickup_late_days: int | None = None
    """Only borrowed items still on the hold shelf past their hold's expiry, or this many
    days after they arrived when the hold has none."""
    order: str = "newest"
    """``newest`` (first), ``oldest``, ``due`` (the earliest due date first, undated last) or
    ``pickup`` (the earliest pickup deadline first: with ``pickup_late_days``)."""
    offset: int = 0
    limit: int | None = 100

    def where(self, now_text: str) -> tuple[str, list[Any]]:
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


@dataclass
class Page:
    """One page of a listing, with the number of rows matching over all pages."""

    rows: list[dict[str, Any]]
    total: int
    query: RequestQuery = field(default_factory=RequestQuery)


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _decorate(row: sqlite3.Row, now: datetime, patrons: PatronPolicy) -> dict[str, Any]:
    """A request row with what staff read: title, patron label, due, overdue, age."""
    data = dict(row)
    closed = data["state"] in CLOSED_STATES
    loan_due = _parse(data.pop("loan_due"))
    data["title"] = data["title"] or ""
    data["patron"] = patrons.label(data.pop("patron_barcode"), data.pop("patron_institution"))
    # ``due_at``: the open loan's due date (of our item with the borrowing library, or of a
    # borrowed item with our patron); else the lender's date for a borrowed item not yet out,
    # which is also kept apart (the date the lender wants it back: it caps renewals).
    lender_due = data.pop("due_at")
    data["lender_due_at"] = lender_due if data["role"] == "borrower" else None
    data["due_at"] = ops.iso(loan_due) if loan_due is not None else lender_due
    data["overdue"] = loan_due is not None and loan_due < now
    started = _parse(data["requested_at"] or data["accepted_at"] or data["shipped_at"])
    ended = _parse(data["completed_at"] or data["cancelled_at"]) if closed else None
    data["age_seconds"] = (int(((ended or now) - started).total_seconds())
                           if started is not None else None)
    return data


def request_page(conn: sqlite3.Connection, query: RequestQuery, *, now: datetime,
                 patrons: PatronPolicy) -> Page:
    """The requests matching ``query``, newest first, one page of them, and how many match."""
    now_text = ops.iso(now)
    where, params = query.where(now_text)
    base = _SELECT + where
    total = conn.execute(f"SELECT count(*) FROM ({base})", params).fetchone()[0]
    paging = ""
    page_params: list[Any] = []
    if query.limit is not None:
        paging = " LIMIT ? OFFSET ?"
        page_params = [query.limit, max(0, query.offset)]
    order_params: list[Any] = []
    if query.order == "due":
        order = " ORDER BY COALESCE(loan_due, r.due_at) IS NULL, COALESCE(loan_due, r.due_at), r.id"
    elif query.order == "oldest":
        order = " ORDER BY r.id"
    elif query.order == "pickup" and query.pickup_late_days is not None:
        order = f" ORDER BY {_PICKUP_DEADLINE}, r.id"
        order_params = [f"+{int(query.pickup_late_days)} days"]
    else:
        order = " ORDER BY r.id DESC"
    rows = conn.execute(base + order + paging,
                        params + order_params + page_params).fetchall()
    return Page([_decorate(row, now, patrons) for row in rows], total, query)


def request_detail(conn: sqlite3.Connection, request_row_id: int, *, now: datetime,
                   patrons: PatronPolicy) -> dict[str, Any] | None:
    """One request (by row id) decorated as in the listing."""
    row = conn.execute(_SELECT + " WHERE r.id = ?", (request_row_id,)).fetchone()
    return _decorate(row, now, patrons) if row is not None else None


def states_in_use(conn: sqlite3.Connection) -> list[str]:
    """The states of the requests in the database, in workflow order (for filter choices)."""
    used = {row[0] for row in conn.execute("SELECT DISTINCT state FROM rs_requests")}
    return [s for s in KNOWN_STATES if s in used] + sorted(used - set(KNOWN_STATES))


def peers_in_use(conn: sqlite3.Connection) -> list[str]:
    """The partners that have requests, sorted (for filter choices)."""
    return [row[0] for row in conn.execute("SELECT DISTINCT peer FROM rs_requests ORDER BY peer")]


# -- what needs action first ----------------------------------------------------------------------


@dataclass
class ActionItems:
    """What staff should look at first, as of ``now``."""

    overdue: Page
    pickup_overdue: Page
    problems: list[dict[str, Any]]
    problem_count: int
    failing_partners: list[dict[str, Any]]


def action_items(conn: sqlite3.Connection, *, now: datetime, patrons: PatronPolicy,
                 pickup_days: int, limit: int = 10,
                 window: timedelta = timedelta(days=1)) -> ActionItems:
    """Overdue loans (oldest due first), borrowed items waiting for pickup past their hold's
    expiry (or ``pickup_days`` after arrival), Problems within ``window`` and partners whose
    exchanges failed within it (the last one, or at least half of them)."""
    overdue = request_page(conn, RequestQuery(overdue=True, open_only=True, order="due",
                                              limit=limit), now=now, patrons=patrons)
    late = request_page(conn, RequestQuery(pickup_late_days=pickup_days, order="pickup",
                                           limit=limit), now=now, patrons=patrons)
    for row in late.rows:
        arrived = _parse(row["received_at"] or row["accepted_at"])
        deadline = _parse(row["pickup_expires"]) or (
            arrived + timedelta(days=pickup_days) if arrived is not None else None)
        row["pickup_deadline"] = ops.iso(deadline) if deadline is not None else ""
    since = (now - window).isoformat(timespec="microseconds")
    problem_count = conn.execute("SELECT count(*) FROM audit WHERE time >= ? AND"
                                 " outcome != 'success'", (since,)).fetchone()[0]
    problems = [dict(row) for row in conn.execute(
        "SELECT id, time, protocol, peer, operation, outcome, broker_request_id,"
        " our_request_id, item_barcode FROM audit WHERE time >= ? AND outcome != 'success'"
        " ORDER BY id DESC LIMIT ?", (since, limit))]
    failing = []
    for row in conn.execute(
            "SELECT peer, count(*) AS exchanges, sum(outcome != 'success') AS failures,"
            " max(CASE WHEN outcome = 'success' THEN time END) AS last_success,"
            " max(CASE WHEN outcome != 'success' THEN time END) AS last_failure"
            " FROM audit WHERE time >= ? AND peer IS NOT NULL GROUP BY peer ORDER BY peer",
            (since,)):
        entry = dict(row)
        if entry["failures"] and (entry["last_success"] is None
                                  or entry["last_failure"] > entry["last_success"]
                                  or 2 * entry["failures"] >= entry["exchanges"]):
            failing.append(entry)
    return ActionItems(overdue, late, problems, problem_count, failing)


def exchange_bodies(conn: sqlite3.Connection,
                    audit_ids: list[int]) -> dict[int, tuple[str | None, str | None]]:
    """The stored (redacted as configured) bodies of these audit rows, by row id."""
    if not audit_ids:
        return {}
    found: dict[int, tuple[str | None, str | None]] = {}
    for start in range(0, len(audit_ids), 500):
        chunk = audit_ids[start:start + 500]
        for row in conn.execute(
                "SELECT id, request_body, response_body FROM audit WHERE id IN"
                f" ({', '.join('?' * len(chunk))})", chunk):
            found[row[0]] = (row[1], row[2])
    return found


STEP_COLUMNS = ("requested_at", "accepted_at", "shipped_at", "received_at", "checked_out_at",
                "returned_at", "checked_in_at", "completed_at", "cancelled_at")
CSV_COLUMNS = ("our_request_id", "broker_request_id", "peer", "role", "state", "overdue",
               "title", "patron", "item_barcode", "due_at", "lender_due_at", "age_days",
               *STEP_COLUMNS)
"""The work list as CSV: times ISO 8601 with the configured zone's offset."""


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _not_a_formula(value: Any) -> Any:
    """Text a broker sent (a title, an id) that a spreadsheet would run as a formula, quoted
    so that it is shown as text."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_rows(rows: list[dict[str, Any]], zone: tzinfo) -> list[dict[str, Any]]:
    """Listing rows as :data:`CSV_COLUMNS` for a spreadsheet: times with the zone's offset,
    text that would start a formula quoted."""
    def local(value: str | None) -> str:
        moment = _parse(value)
        return moment.astimezone(zone).isoformat() if moment is not None else ""
    return [{**{key: _not_a_formula(value) for key, value in row.items()},
             "overdue": "yes" if row["overdue"] else "no",
             "age_days": "" if row["age_seconds"] is None
             else f"{row['age_seconds'] / 86400:.1f}",
             "due_at": local(row["due_at"]), "lender_due_at": local(row["lender_due_at"]),
             **{c: local(row[c]) for c in STEP_COLUMNS}}
            for row in rows]
