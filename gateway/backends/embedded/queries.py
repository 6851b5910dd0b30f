# -*- test-case-name: tests.gateway.ncip.test_fake_circulation -*-
"""Read queries on the embedded circulation system, returning domain objects.

Each function takes a connection (a reader's, or the writer's inside a transaction) so the same
query serves lookups and the read-then-write steps of a workflow.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime

from gateway.backends.embedded.identifiers import search_forms
from gateway.domain.model import Hold, Item, Loan, Patron
from gateway.storage.timestamps import parse_time

_ITEM_SELECT = """
    SELECT i.id, i.barcode, i.record_id, r.local_id, r.title, r.author, r.publisher, r.pub_year,
           (SELECT value FROM record_identifiers ri
             WHERE ri.record_id = r.id AND ri.kind = 'isbn' ORDER BY length(value) DESC
             LIMIT 1) AS isbn,
           i.location, i.shelving_location, i.call_number, i.copy_number, i.status,
           i.temporary, i.owning_peer, l.due_at, l.patron_id AS loan_patron_id,
           (SELECT count(*) FROM holds h WHERE h.item_id = i.id AND h.status = 'active')
             AS active_holds
      FROM items i
      JOIN records r ON r.id = i.record_id
      LEFT JOIN loans l ON l.item_id = i.id AND l.returned_at IS NULL
"""


def _item(row: sqlite3.Row) -> Item:
    return Item(
        id=row["id"], barcode=row["barcode"], record_id=row["record_id"],
        local_id=row["local_id"], title=row["title"], author=row["author"],
        publisher=row["publisher"], pub_year=row["pub_year"], isbn=row["isbn"],
        location=row["location"], shelving_location=row["shelving_location"],
        call_number=row["call_number"], copy_number=row["copy_number"], status=row["status"],
        temporary=bool(row["temporary"]), owning_peer=row["owning_peer"],
        due_at=parse_time(row["due_at"]), loan_patron_id=row["loan_patron_id"],
        active_holds=row["active_holds"])


def _patron(row: sqlite3.Row) -> Patron:
    return Patron(
        id=row["id"], barcode=row["barcode"], username=row["username"],
        given_name=row["given_name"], family_name=row["family_name"], email=row["email"],
        status=row["status"], patron_group=row["patron_group"],
        expires=date.fromisoformat(row["expires"]) if row["expires"] else None,
        institutional_peer=row["institutional_peer"])


def find_patron(conn: sqlite3.Connection, value: str,
                kinds: tuple[str, ...] = ("barcode", "username")) -> Patron | None:
    """The patron whose barcode or username (in ``kinds`` order) is ``value``."""
    for kind in kinds:
        if kind not in ("barcode", "username"):
            raise ValueError(f"cannot look patrons up by {kind}")
        row = conn.execute(f"SELECT * FROM patrons WHERE {kind} = ?", (value,)).fetchone()
        if row is not None:
            return _patron(row)
    return None


def patron_by_id(conn: sqlite3.Connection, patron_id: int) -> Patron | None:
    """The patron with this row id."""
    row = conn.execute("SELECT * FROM patrons WHERE id = ?", (patron_id,)).fetchone()
    return _patron(row) if row is not None else None


def patron_pin_hash(conn: sqlite3.Connection, patron_id: int) -> str | None:
    """The stored PIN hash (for verification only; never leaves the gateway)."""
    row = conn.execute("SELECT pin_hash FROM patrons WHERE id = ?", (patron_id,)).fetchone()
    return row[0] if row else None


def item_by_barcode(conn: sqlite3.Connection, barcode: str) -> Item | None:
    """The item with this barcode, with its record and circulation state."""
    row = conn.execute(_ITEM_SELECT + " WHERE i.barcode = ?", (barcode,)).fetchone()
    return _item(row) if row is not None else None


def item_by_id(conn: sqlite3.Connection, item_id: int) -> Item | None:
    """The item with this row id."""
    row = conn.execute(_ITEM_SELECT + " WHERE i.id = ?", (item_id,)).fetchone()
    return _item(row) if row is not None else None


def items_of_records(conn: sqlite3.Connection, record_ids: list[int]) -> dict[int, list[Item]]:
    """Every item of each record (temporary items included only for temporary records)."""
    result: dict[int, list[Item]] = {record_id: [] for record_id in record_ids}
    for start in range(0, len(record_ids), 500):
        chunk = record_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(_ITEM_SELECT + f" WHERE i.record_id IN ({marks})"
                                " ORDER BY i.record_id, i.location, i.barcode", chunk):
            result[row["record_id"]].append(_item(row))
    return result


def record_by_identifier(conn: sqlite3.Connection, kind: str, value: str) -> int | None:
    """The id of the library's own (not temporary) record with this identifier, in any of the
    forms it is indexed under (both ISBN forms, normalised ISSN and OCLC numbers)."""
    for form in search_forms(kind, value):
        row = conn.execute(
            "SELECT ri.record_id FROM record_identifiers ri JOIN records r ON r.id = ri.record_id"
            " WHERE ri.kind = ? AND ri.value = ? AND r.temporary = 0 LIMIT 1",
            (kind, form)).fetchone()
        if row is not None:
            return int(row[0])
    return None


def loans_of_patron(conn: sqlite3.Connection, patron_id: int) -> list[Loan]:
    """The patron's open loans, soonest due first."""
    rows = conn.execute(
        "SELECT l.*, i.barcode, r.title FROM loans l JOIN items i ON i.id = l.item_id"
        " JOIN records r ON r.id = i.record_id"
        " WHERE l.patron_id = ? AND l.returned_at IS NULL ORDER BY l.due_at", (patron_id,))
    return [Loan(id=r["id"], item_id=r["item_id"], item_barcode=r["barcode"],
                 patron_id=r["patron_id"], title=r["title"],
                 checked_out_at=datetime.fromisoformat(r["checked_out_at"]),
                 due_at=datetime.fromisoformat(r["due_at"]), renewals=r["renewals"])
            for r in rows]


def open_loan(conn: sqlite3.Connection, item_id: int) -> Loan | None:
    """The open loan of an item, if it is on loan."""
    row = conn.execute(
        "SELECT l.*, i.barcode, r.title FROM loans l JOIN items i ON i.id = l.item_id"
        " JOIN records r ON r.id = i.record_id WHERE l.item_id = ? AND l.returned_at IS NULL",
        (item_id,)).fetchone()
    if row is None:
        return None
    return Loan(id=row["id"], item_id=row["item_id"], item_barcode=row["barcode"],
                patron_id=row["patron_id"], title=row["title"],
                checked_out_at=datetime.fromisoformat(row["checked_out_at"]),
                due_at=datetime.fromisoformat(row["due_at"]), renewals=row["renewals"])


def hold(row: sqlite3.Row) -> Hold:
    """A row of :data:`HOLD_SELECT` as a domain hold."""
    return Hold(id=row["id"], patron_id=row["patron_id"], record_id=row["record_id"],
                item_id=row["item_id"], item_barcode=row["barcode"], title=row["title"],
                pickup_location=row["pickup_location"], status=row["status"],
                placed_at=datetime.fromisoformat(row["placed_at"]),
                pickup_expires=parse_time(row["pickup_expires"]))


HOLD_SELECT = ("SELECT h.*, i.barcode, r.title FROM holds h JOIN records r"
                " ON r.id = h.record_id LEFT JOIN items i ON i.id = h.item_id")


def holds_of_patron(conn: sqlite3.Connection, patron_id: int) -> list[Hold]:
    """The patron's active holds, oldest first."""
    rows = conn.execute(HOLD_SELECT + " WHERE h.patron_id = ? AND h.status = 'active'"
                        " ORDER BY h.placed_at, h.id", (patron_id,))
    return [hold(r) for r in rows]


def active_holds_of_item(conn: sqlite3.Connection, item_id: int) -> list[Hold]:
    """The active holds on an item, oldest first."""
    rows = conn.execute(HOLD_SELECT + " WHERE h.item_id = ? AND h.status = 'active'"
                        " ORDER BY h.placed_at, h.id", (item_id,))
    return [hold(r) for r in rows]
