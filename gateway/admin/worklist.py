# -*- test-case-name: tests.gateway.test_reports,tests.gateway.test_admin -*-
"""The ILL staff work list: requests with their title, patron, due date and age, filtered and
paged, and what needs action first (overdue loans, items waiting too long for pickup, recent
Problems, failing partners).

Functions over a store connection that read through :mod:`gateway.storage`, so ``interlend
requests`` and the dashboard give the same answers. Patrons appear by barcode only, and only as the
``[audit]`` settings allow: in clear where the audit log keeps patron ids in clear anyway,
otherwise as the start of the same keyed hash the audit log stores (so a row can be matched with
``interlend audit``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from gateway.audit import default_key_file
from gateway.config import AuditSettings
from gateway.secrets import KeyFileError, keyed_hash, read_key_file
from gateway.storage import audit_log, request_reports
from gateway.storage.audit_log import exchange_bodies as exchange_bodies
from gateway.storage.request_reports import WorkListFilter
from gateway.storage.request_reports import peers_in_use as peers_in_use
from gateway.storage.store import Connection
from gateway.storage.timestamps import iso as stored_time

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


def patron_policy(conn: Connection, audit_settings: AuditSettings,
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


RequestQuery = WorkListFilter
"""Which requests to list: every field optional; ``open_only`` leaves out the closed;
``pickup_late_days`` keeps only borrowed items still on the hold shelf past their hold's
expiry (or this many days after they arrived when the hold has none); ``order`` is ``newest``
(first), ``oldest``, ``due`` (the earliest due date first, undated last) or ``pickup`` (the
earliest pickup deadline first: with ``pickup_late_days``)."""


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


def _decorate(data: dict[str, Any], now: datetime, patrons: PatronPolicy) -> dict[str, Any]:
    """A request row with what staff read: title, patron label, due, overdue, age."""
    closed = data["state"] in CLOSED_STATES
    loan_due = _parse(data.pop("loan_due"))
    data["title"] = data["title"] or ""
    data["patron"] = patrons.label(data.pop("patron_barcode"), data.pop("patron_institution"))
    # ``due_at``: the open loan's due date (of our item with the borrowing library, or of a
    # borrowed item with our patron); else the lender's date for a borrowed item not yet out,
    # which is also kept apart (the date the lender wants it back: it caps renewals).
    lender_due = data.pop("due_at")
    data["lender_due_at"] = lender_due if data["role"] == "borrower" else None
    data["due_at"] = stored_time(loan_due) if loan_due is not None else lender_due
    data["overdue"] = loan_due is not None and loan_due < now
    started = _parse(data["requested_at"] or data["accepted_at"] or data["shipped_at"])
    ended = _parse(data["completed_at"] or data["cancelled_at"]) if closed else None
    data["age_seconds"] = (int(((ended or now) - started).total_seconds())
                           if started is not None else None)
    return data


def request_page(conn: Connection, query: RequestQuery, *, now: datetime,
                 patrons: PatronPolicy) -> Page:
    """The requests matching ``query``, newest first, one page of them, and how many match."""
    rows, total = request_reports.work_list(conn, query, stored_time(now))
    return Page([_decorate(row, now, patrons) for row in rows], total, query)


def request_detail(conn: Connection, request_row_id: int, *, now: datetime,
                   patrons: PatronPolicy) -> dict[str, Any] | None:
    """One request (by row id) decorated as in the listing."""
    row = request_reports.work_list_entry(conn, request_row_id)
    return _decorate(row, now, patrons) if row is not None else None


def states_in_use(conn: Connection) -> list[str]:
    """The states of the requests in the database, in workflow order (for filter choices)."""
    used = request_reports.states_in_use(conn)
    return [s for s in KNOWN_STATES if s in used] + sorted(used - set(KNOWN_STATES))


# -- what needs action first ----------------------------------------------------------------------


@dataclass
class ActionItems:
    """What staff should look at first, as of ``now``."""

    overdue: Page
    pickup_overdue: Page
    problems: list[dict[str, Any]]
    problem_count: int
    failing_partners: list[dict[str, Any]]


def action_items(conn: Connection, *, now: datetime, patrons: PatronPolicy,
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
        row["pickup_deadline"] = stored_time(deadline) if deadline is not None else ""
    since = (now - window).isoformat(timespec="microseconds")
    problem_count, problems = audit_log.problems_since(conn, since, limit)
    failing = [dataclasses.asdict(partner) for partner in audit_log.partner_outcomes(conn, since)
               if partner.failing()]
    return ActionItems(overdue, late, problems, problem_count, failing)


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
