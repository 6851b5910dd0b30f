# -*- test-case-name: tests.gateway.test_operations,tests.gateway.ncip.test_workflow_rules -*-
"""Circulation changes on the embedded system: temporary items, holds, loans, fees.

Every function runs inside the caller's transaction (for the NCIP workflows, one unit of work of
:class:`gateway.backends.embedded.circulation.EmbeddedCirculation`: one job of the store's
writer), so a workflow's changes, its request tracking and its audit row commit together or not
at all. Domain terms only; the gateway's own books (request tracking, exactly-once replies) are
in :mod:`gateway.storage`.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

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
    BriefRecord,
    Hold,
    ItemNotCheckedOut,
    Loan,
    NotTemporaryItem,
    Patron,
    UnknownItem,
)
from gateway.storage.timestamps import iso

__all__ = ["BRIEF_LEADER", "BriefRecord", "add_fee", "barcode_in_use", "brief_fields",
           "check_in", "check_out", "create_brief_record", "create_temporary_item",
           "delete_temporary_item", "ensure_institutional_patron", "holds_placed", "iso",
           "last_returned_loan_patron", "place_hold", "renew", "set_hold_status",
           "set_item_status"]

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
    record_id, _ = upsert_extracted(conn, extract_light_fields(fields, words=False),
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


def holds_placed(conn: sqlite3.Connection, *, patron_id: int, item_id: int | None,
                 placed_at: datetime) -> list[Hold]:
    """A patron's holds (any status) on an item (None: record-level) placed at ``placed_at``,
    in creation order."""
    rows = conn.execute(queries.HOLD_SELECT + " WHERE h.patron_id = ? AND h.placed_at = ?"
                        " AND h.item_id IS ? ORDER BY h.id", (patron_id, iso(placed_at), item_id))
    return [queries.hold(row) for row in rows]


def set_item_status(conn: sqlite3.Connection, item_id: int, status: str, now: datetime) -> None:
    """An item's circulation status (e.g. in transit back to its lender)."""
    conn.execute("UPDATE items SET status = ?, updated_at = ? WHERE id = ?",
                 (status, iso(now), item_id))


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


def last_returned_loan_patron(conn: sqlite3.Connection, item_id: int) -> int | None:
    """The patron of the item's most recent loan, if that loan has ended."""
    row = conn.execute("SELECT patron_id, returned_at FROM loans WHERE item_id = ?"
                       " ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()
    return row["patron_id"] if row is not None and row["returned_at"] is not None else None
