# -*- test-case-name: tests.gateway.test_workflows -*-
"""Circulation changes on the embedded system: temporary items, holds, loans, fees, requests.

Every function runs inside the caller's transaction (the store writer's job for one NCIP
request), so a workflow's steps, its request tracking and its audit row commit together or not
at all. Domain terms only.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from gateway.backends.embedded import queries
from gateway.backends.embedded.records import (
    ItemData,
    MarcField,
    PatronData,
    delete_record,
    extract_light_fields,
    insert_item,
    iso2709,
    upsert_extracted,
    upsert_patron,
)
from gateway.domain.model import (
    Item,
    ItemNotCheckedOut,
    Loan,
    NotTemporaryItem,
    Patron,
    UnknownItem,
)

RS_STEPS = ("requested", "accepted", "shipped", "received", "checked_out", "returned",
            "checked_in", "completed", "cancelled")


def iso(moment: datetime) -> str:
    """A timestamp as stored: UTC ISO 8601, seconds."""
    if moment.tzinfo is timezone.utc:  # a request's "now": stamped on several rows, cached
        return _iso_utc(moment)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=256)
def _iso_utc(moment: datetime) -> str:
    # only for tzinfo=timezone.utc: equal means the same instant (no fold, no local zone)
    return moment.isoformat(timespec="seconds")


@dataclass(frozen=True)
class BriefRecord:
    """The bibliographic data a broker sends with a borrowed item."""

    title: str
    author: str = ""
    publisher: str = ""
    date: str = ""
    isbn: str = ""


BRIEF_LEADER = "     nam a22     7a 4500"


def brief_fields(local_id: str, brief: BriefRecord) -> list[MarcField]:
    """The MARC21 fields of a temporary item's brief record (001, 020, 100, 245, 264)."""
    fields: list[MarcField] = [("001", local_id, (), "")]
    if brief.isbn:
        fields.append(("020", None, (("a", brief.isbn),), "  "))
    if brief.author:
        fields.append(("100", None, (("a", brief.author),), "1 "))
    fields.append(("245", None, (("a", brief.title or "[no title]"),), "00"))
    imprint = tuple((code, value) for code, value in (("b", brief.publisher), ("c", brief.date))
                    if value)
    if imprint:
        fields.append(("264", None, imprint, " 1"))
    return fields


def create_brief_record(conn: sqlite3.Connection, local_id: str, brief: BriefRecord) -> int:
    """A minimal MARC21 record for a temporary item; hidden from searches (temporary=1).
    Written straight to ISO 2709 (no pymarc objects: one per AcceptItem, in the writer)."""
    fields = brief_fields(local_id, brief)
    record_id, _ = upsert_extracted(conn, extract_light_fields(fields),
                                    iso2709(BRIEF_LEADER, fields), temporary=True)
    return record_id


def barcode_in_use(conn: sqlite3.Connection, barcode: str) -> bool:
    """True if any item (temporary or not) has this barcode."""
    return conn.execute("SELECT 1 FROM items WHERE barcode = ?", (barcode,)).fetchone() is not None


def create_temporary_item(conn: sqlite3.Connection, *, barcode: str, record_id: int,
                          peer: str, location: str, call_number: str = "") -> int:
    """A temporary item for a borrowed book, owned by the lending peer. The caller has made
    sure the barcode is free (see :func:`barcode_in_use`); one in use raises IntegrityError."""
    return insert_item(conn, record_id, ItemData(
        barcode=barcode, location=location, call_number=call_number, status="on_hold_shelf",
        temporary=True, owning_peer=peer, loan_policy="interlibrary-loan"))


def place_hold(conn: sqlite3.Connection, *, patron_id: int, record_id: int,
               item_id: int | None, pickup_location: str, now: datetime,
               pickup_expires: datetime | None = None) -> int:
    """An active hold for a patron on a record (and item)."""
    cursor = conn.execute(
        "INSERT INTO holds (patron_id, record_id, item_id, pickup_location, status, placed_at,"
        " pickup_expires, updated_at) VALUES (?, ?, ?, ?, 'active', ?, ?, ?)",
        (patron_id, record_id, item_id, pickup_location, iso(now),
         iso(pickup_expires) if pickup_expires else None, iso(now)))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def set_hold_status(conn: sqlite3.Connection, hold_id: int, status: str, now: datetime) -> None:
    """Fulfil, cancel or expire a hold."""
    conn.execute("UPDATE holds SET status = ?, updated_at = ? WHERE id = ?",
                 (status, iso(now), hold_id))


def check_out(conn: sqlite3.Connection, *, item_id: int, patron_id: int, due_at: datetime,
              now: datetime) -> Loan:
    """A loan of an item to a patron; its active holds for that patron are fulfilled."""
    conn.execute("INSERT INTO loans (item_id, patron_id, checked_out_at, due_at)"
                 " VALUES (?, ?, ?, ?)", (item_id, patron_id, iso(now), iso(due_at)))
    conn.execute("UPDATE items SET status = 'on_loan', updated_at = ? WHERE id = ?",
                 (iso(now), item_id))
    conn.execute("UPDATE holds SET status = 'fulfilled', updated_at = ? WHERE item_id = ?"
                 " AND patron_id = ? AND status = 'active'", (iso(now), item_id, patron_id))
    loan = queries.open_loan(conn, item_id)
    assert loan is not None
    return loan


def check_in(conn: sqlite3.Connection, *, item_id: int, now: datetime,
             status: str = "available") -> Loan:
    """End an item's open loan; the item becomes ``status`` (in transit when going home)."""
    loan = queries.open_loan(conn, item_id)
    if loan is None:
        raise ItemNotCheckedOut(element="ItemIdentifierValue")
    conn.execute("UPDATE loans SET returned_at = ? WHERE id = ?", (iso(now), loan.id))
    conn.execute("UPDATE items SET status = ?, updated_at = ? WHERE id = ?",
                 (status, iso(now), item_id))
    return loan


def renew(conn: sqlite3.Connection, loan: Loan, due_at: datetime) -> Loan:
    """Move a loan's due date; counts as a renewal."""
    conn.execute("UPDATE loans SET due_at = ?, renewals = renewals + 1 WHERE id = ?",
                 (iso(due_at), loan.id))
    renewed = queries.open_loan(conn, loan.item_id)
    assert renewed is not None
    return renewed


def delete_temporary_item(conn: sqlite3.Connection, barcode: str, now: datetime) -> int:
    """Remove a temporary item, its holds, and its brief record when no other item uses it.

    Refuses a real (non-temporary) item; an open loan is ended first.
    """
    item = queries.item_by_barcode(conn, barcode)
    if item is None:
        raise UnknownItem(element="ItemIdentifierValue", value=barcode)
    if not item.temporary:
        raise NotTemporaryItem(element="ItemIdentifierValue", value=barcode)
    conn.execute("UPDATE loans SET returned_at = ? WHERE item_id = ? AND returned_at IS NULL",
                 (iso(now), item.id))
    conn.execute("UPDATE rs_requests SET item_id = NULL WHERE item_id = ?", (item.id,))
    conn.execute("DELETE FROM holds WHERE item_id = ?", (item.id,))
    conn.execute("DELETE FROM loans WHERE item_id = ?", (item.id,))
    conn.execute("DELETE FROM items WHERE id = ?", (item.id,))
    others = conn.execute("SELECT 1 FROM items WHERE record_id = ? LIMIT 1",
                          (item.record_id,)).fetchone()
    temporary = conn.execute("SELECT temporary FROM records WHERE id = ?",
                             (item.record_id,)).fetchone()
    if others is None and temporary is not None and temporary[0]:
        conn.execute("DELETE FROM holds WHERE record_id = ?", (item.record_id,))
        delete_record(conn, item.record_id)
    return item.id


def ensure_institutional_patron(conn: sqlite3.Connection, *, barcode: str, peer: str,
                                agency: str) -> Patron:
    """The borrowing library's patron record, created on first use."""
    patron = queries.find_patron(conn, barcode, kinds=("barcode",))
    if patron is not None:
        return patron
    upsert_patron(conn, PatronData(barcode=barcode, given_name="", family_name=agency,
                                   status="active", patron_group="interlibrary-loan",
                                   institutional_peer=peer))
    created = queries.find_patron(conn, barcode, kinds=("barcode",))
    assert created is not None
    return created


def add_fee(conn: sqlite3.Connection, *, patron_id: int, peer: str, amount: str, currency: str,
            fee_type: str, item_id: int | None, now: datetime) -> int:
    """Record a fee against a patron (no payment processing)."""
    cursor = conn.execute(
        "INSERT INTO fees (patron_id, peer, amount, currency, fee_type, item_id, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (patron_id, peer, amount, currency, fee_type, item_id, iso(now)))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


# -- resource-sharing request tracking ---------------------------------------------------------


def find_rs_request(conn: sqlite3.Connection, *, peer: str, role: str,
                    broker_request_id: str | None = None, our_request_id: str | None = None,
                    item_id: int | None = None) -> sqlite3.Row | None:
    """The tracked request matching one of the identifiers given (most specific first)."""
    if our_request_id:
        row = conn.execute("SELECT * FROM rs_requests WHERE our_request_id = ? AND peer = ?",
                           (our_request_id, peer)).fetchone()
        if row is not None:
            return row
    if broker_request_id:
        row = conn.execute("SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND"
                           " broker_request_id = ?", (peer, role, broker_request_id)).fetchone()
        if row is not None:
            return row
    if item_id is not None:
        return conn.execute(
            "SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND item_id = ? AND"
            " completed_at IS NULL AND cancelled_at IS NULL ORDER BY id DESC LIMIT 1",
            (peer, role, item_id)).fetchone()
    return None


def find_volume(conn: sqlite3.Connection, *, peer: str, role: str, broker_request_id: str,
                broker_item_id: str | None) -> sqlite3.Row | None:
    """The tracked request for one volume: the broker's RequestId and ItemId together (one
    RequestId names one volume per ItemId)."""
    return conn.execute(
        "SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND broker_request_id = ? AND"
        " COALESCE(broker_item_id, '') = ?",
        (peer, role, broker_request_id, broker_item_id or "")).fetchone()


def item_named(conn: sqlite3.Connection, *, peer: str, value: str,
               by_request: bool = False) -> Item | None:
    """The item a broker names: by the ItemId it gave us with a temporary item (whatever
    barcode we chose), by our barcode, or by its own request id (Tipasa's "ILL Request Id";
    only when that request holds one item). ``by_request`` tries the request id first.
    Whether the peer may act on it is the caller's question."""
    def alias() -> Item | None:
        row = conn.execute("SELECT item_id FROM rs_requests WHERE peer = ? AND"
                           " broker_item_id = ? AND item_id IS NOT NULL ORDER BY id DESC"
                           " LIMIT 1", (peer, value)).fetchone()
        return queries.item_by_id(conn, row[0]) if row is not None else None

    def request() -> Item | None:
        rows = conn.execute("SELECT DISTINCT item_id FROM rs_requests WHERE peer = ? AND"
                            " broker_request_id = ? AND item_id IS NOT NULL LIMIT 2",
                            (peer, value)).fetchall()
        return queries.item_by_id(conn, rows[0][0]) if len(rows) == 1 else None

    def barcode() -> Item | None:
        return queries.item_by_barcode(conn, value)

    for find in (request, alias, barcode) if by_request else (alias, barcode, request):
        found = find()
        if found is not None:
            return found
    return None


def next_request_number(conn: sqlite3.Connection) -> int:
    """The number the next tracked request will get (safe: one writer at a time)."""
    return conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM rs_requests").fetchone()[0]


def create_rs_request(conn: sqlite3.Connection, *, peer: str, role: str,
                      broker_request_id: str | None, our_request_id: str, state: str,
                      step: str, now: datetime, item_id: int | None = None,
                      item_barcode: str | None = None, patron_id: int | None = None,
                      also_stamped: Sequence[str] = (), **columns: object) -> int:
    """Start tracking a resource-sharing request at its first step.

    ``also_stamped``: later steps already reached (stamped ``now`` too) and ``columns``
    (``due_at``, ``renewable``): as :func:`advance_rs_request` would set them, in the one
    INSERT (e.g. a borrowed item accepted and received at once).
    """
    steps = (step, *also_stamped)
    for name in steps:
        _check_step(name)
    _check_rs_columns(columns)
    stamps = {f"{name}_at": iso(now) for name in steps}
    values = {"peer": peer, "role": role, "broker_request_id": broker_request_id,
              "our_request_id": our_request_id, "item_id": item_id,
              "item_barcode": item_barcode, "patron_id": patron_id, "state": state,
              "requested_at": iso(now), **stamps, **columns}
    cursor = conn.execute(
        f"INSERT INTO rs_requests ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
        tuple(values.values()))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


_RS_COLUMNS = frozenset({"item_id", "item_barcode", "patron_id", "due_at", "renewable",
                         "broker_item_id", "end_reason"})


def _check_step(step: str) -> None:
    if step not in RS_STEPS:
        raise ValueError(step)


def _check_rs_columns(columns: dict[str, object]) -> None:
    extra = [name for name in columns if name not in _RS_COLUMNS]
    if extra:
        raise ValueError(f"unknown columns {extra}")


def advance_rs_request(conn: sqlite3.Connection, request_id: int, *, state: str, step: str,
                       now: datetime, **columns: object) -> None:
    """Move a tracked request to ``state``, stamping ``step`` (kept if already stamped)."""
    _check_step(step)
    _check_rs_columns(columns)
    assignments = "".join(f", {name} = ?" for name in columns)
    conn.execute(
        f"UPDATE rs_requests SET state = ?, {step}_at = COALESCE({step}_at, ?){assignments}"
        " WHERE id = ?", (state, iso(now), *columns.values(), request_id))


def latest_rs_request(conn: sqlite3.Connection, *, peer: str, role: str,
                      item_id: int | None = None,
                      item_barcode: str | None = None) -> sqlite3.Row | None:
    """The peer's most recent tracked request for an item (by row id or barcode), any state."""
    if item_id is not None:
        return conn.execute("SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND"
                            " item_id = ? ORDER BY id DESC LIMIT 1",
                            (peer, role, item_id)).fetchone()
    if item_barcode:
        return conn.execute("SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND"
                            " item_barcode = ? ORDER BY id DESC LIMIT 1",
                            (peer, role, item_barcode)).fetchone()
    return None


def last_returned_loan_patron(conn: sqlite3.Connection, item_id: int) -> int | None:
    """The patron of the item's most recent loan, if that loan has ended."""
    row = conn.execute("SELECT patron_id, returned_at FROM loans WHERE item_id = ?"
                       " ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()
    return row["patron_id"] if row is not None and row["returned_at"] is not None else None
