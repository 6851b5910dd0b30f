# -*- test-case-name: tests.gateway.test_embedded -*-
"""The embedded circulation system: bibliographic records, items, patrons, in the gateway's SQLite.

The functions here take a ``sqlite3.Connection`` inside a transaction the caller owns (the store's
writer thread, or an importer's own transaction), so that a whole import or a whole NCIP request
commits or rolls back as one. They speak domain terms only: records, items, patrons.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pymarc

from gateway.identifiers import isbn_forms, normalise_issn, normalise_oclc
from gateway.secrets import hash_secret

ITEM_STATUSES = ("available", "on_loan", "on_hold_shelf", "in_transit", "missing", "withdrawn")
PATRON_STATUSES = ("active", "blocked", "expired")

_TRAILING_PUNCTUATION = re.compile(r"[\s/:;,.=]+$")


def now_iso() -> str:
    """The current time as stored in the database: UTC, ISO 8601, seconds precision."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _clean(text: str) -> str:
    return _TRAILING_PUNCTUATION.sub("", " ".join(text.split()))


@dataclass(frozen=True)
class RecordFields:
    """The search fields extracted from one MARC record."""

    local_id: str
    title: str
    author: str
    subjects: tuple[str, ...]
    publisher: str
    pub_year: int | None
    identifiers: tuple[tuple[str, str], ...]  # (kind, normalised value)
    other_words: str


def _subfields(record: pymarc.Record, tags: tuple[str, ...], codes: str) -> list[str]:
    values = []
    for f in record.get_fields(*tags):
        if f.is_control_field():
            continue
        text = " ".join(v for c, v in _pairs(f) if c in codes)
        if text.strip():
            values.append(_clean(text))
    return values


def _pairs(f: pymarc.Field) -> list[tuple[str, str]]:
    return [(sf.code, sf.value) for sf in f.subfields]


def extract_fields(record: pymarc.Record) -> RecordFields:
    """Extract title, author, subjects, publisher, year and identifiers from a MARC record.

    Raises ValueError when the record has no 001 control number (no stable local id).
    """
    control = record.get("001")
    local_id = control.data.strip() if control is not None and control.data else ""
    if not local_id:
        raise ValueError("no 001 control number")
    titles = _subfields(record, ("245",), "abnp")
    authors = _subfields(record, ("100", "110", "111"), "abcdq") or _subfields(
        record, ("700", "710"), "abcd")
    subjects = tuple(
        " -- ".join(_clean(v) for c, v in _pairs(f) if c in "abcdvxyz" and v.strip())
        for f in record.get_fields("600", "610", "611", "630", "650", "651", "655")
        if not f.is_control_field())
    publishers = _subfields(record, ("264", "260"), "b")
    dates = _subfields(record, ("264", "260"), "c")
    year = _year(dates[0] if dates else "") or _year_from_008(record)
    identifiers: list[tuple[str, str]] = [("local", local_id)]
    for f in record.get_fields("020"):
        for value in f.get_subfields("a", "z"):
            identifiers += [("isbn", form) for form in isbn_forms(value)]
    for f in record.get_fields("022"):
        for value in f.get_subfields("a"):
            issn = normalise_issn(value)
            if issn:
                identifiers.append(("issn", issn))
    for f in record.get_fields("035"):
        for value in f.get_subfields("a"):
            if "(OCoLC)" in value:
                oclc = normalise_oclc(value)
                if oclc:
                    identifiers.append(("oclc", oclc))
    other = _subfields(record, ("246", "250", "490", "500", "505", "520", "830"), "abcdefghnpv")
    return RecordFields(
        local_id=local_id,
        title=titles[0] if titles else "",
        author=authors[0] if authors else "",
        subjects=tuple(s for s in subjects if s),
        publisher=publishers[0] if publishers else "",
        pub_year=year,
        identifiers=tuple(dict.fromkeys(identifiers)),
        other_words=" ".join(other + publishers),
    )


def _year(text: str) -> int | None:
    match = re.search(r"(1[0-9]{3}|20[0-9]{2})", text)
    return int(match.group(1)) if match else None


def _year_from_008(record: pymarc.Record) -> int | None:
    f008 = record.get("008")
    if f008 is None or not f008.data or len(f008.data) < 11:
        return None
    return _year(f008.data[7:11])


def upsert_record(conn: sqlite3.Connection, record: pymarc.Record, *,
                  temporary: bool = False) -> tuple[int, bool]:
    """Insert a record, or update the one with the same local id; return ``(id, created)``.

    The search fields, identifier index and word index are rewritten with it.
    """
    fields = extract_fields(record)
    marc = record.as_marc()
    now = now_iso()
    row = conn.execute("SELECT id FROM records WHERE local_id = ?", (fields.local_id,)).fetchone()
    values = (marc, fields.title, fields.author, "\n".join(fields.subjects), fields.publisher,
              fields.pub_year, int(temporary), now)
    if row is None:
        record_id = conn.execute(
            "INSERT INTO records (marc, title, author, subjects, publisher, pub_year, temporary,"
            " updated_at, local_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, fields.local_id, now)).lastrowid
        created = True
    else:
        record_id = row[0]
        conn.execute(
            "UPDATE records SET marc = ?, title = ?, author = ?, subjects = ?, publisher = ?,"
            " pub_year = ?, temporary = ?, updated_at = ? WHERE id = ?", (*values, record_id))
        conn.execute("DELETE FROM record_identifiers WHERE record_id = ?", (record_id,))
        conn.execute("DELETE FROM records_fts WHERE rowid = ?", (record_id,))
        created = False
    assert record_id is not None
    conn.executemany(
        "INSERT OR IGNORE INTO record_identifiers (kind, value, record_id) VALUES (?, ?, ?)",
        [(kind, value, record_id) for kind, value in fields.identifiers])
    conn.execute(
        "INSERT INTO records_fts (rowid, title, author, subject, anywords) VALUES (?, ?, ?, ?, ?)",
        (record_id, fields.title, fields.author, "\n".join(fields.subjects), fields.other_words))
    return record_id, created


def delete_record(conn: sqlite3.Connection, record_id: int) -> None:
    """Remove a record with its items, holds, identifiers and word index entry."""
    conn.execute("DELETE FROM records_fts WHERE rowid = ?", (record_id,))
    conn.execute("DELETE FROM records WHERE id = ?", (record_id,))


@dataclass(frozen=True)
class ItemData:
    """An item (copy) as an importer or the circulation service describes it."""

    barcode: str
    location: str = ""
    shelving_location: str = ""
    call_number: str = ""
    copy_number: str = ""
    status: str = "available"
    temporary: bool = False
    owning_peer: str | None = None
    loan_policy: str = "standard"


def upsert_item(conn: sqlite3.Connection, record_id: int, item: ItemData) -> tuple[int, bool]:
    """Insert an item or update the one with the same barcode; return ``(id, created)``.

    An item with an open loan stays on loan: an import must not silently end a loan.
    """
    if item.status not in ITEM_STATUSES:
        raise ValueError(f"unknown item status {item.status!r}")
    now = now_iso()
    row = conn.execute("SELECT id, status FROM items WHERE barcode = ?",
                       (item.barcode,)).fetchone()
    if row is None:
        item_id = conn.execute(
            "INSERT INTO items (barcode, record_id, location, shelving_location, call_number,"
            " copy_number, status, temporary, owning_peer, loan_policy, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (item.barcode, record_id, item.location, item.shelving_location, item.call_number,
             item.copy_number, item.status, int(item.temporary), item.owning_peer,
             item.loan_policy, now, now)).lastrowid
        assert item_id is not None
        return item_id, True
    on_loan = conn.execute("SELECT 1 FROM loans WHERE item_id = ? AND returned_at IS NULL",
                           (row["id"],)).fetchone()
    status = "on_loan" if on_loan else item.status
    conn.execute(
        "UPDATE items SET record_id = ?, location = ?, shelving_location = ?, call_number = ?,"
        " copy_number = ?, status = ?, loan_policy = ?, updated_at = ? WHERE id = ?",
        (record_id, item.location, item.shelving_location, item.call_number, item.copy_number,
         status, item.loan_policy, now, row["id"]))
    return row["id"], False


@dataclass(frozen=True)
class PatronData:
    """A patron as the CSV importer reads one. ``pin`` is hashed on the way in, never stored."""

    barcode: str
    username: str | None = None
    pin: str | None = field(default=None, repr=False)
    given_name: str = ""
    family_name: str = ""
    email: str = ""
    status: str = "active"
    patron_group: str = ""
    expires: str | None = None
    institutional_peer: str | None = None


def upsert_patron(conn: sqlite3.Connection, patron: PatronData) -> tuple[int, bool]:
    """Insert a patron or update the one with the same barcode; return ``(id, created)``.

    An empty PIN leaves an existing PIN hash as it is, and an import that does not name the
    peer keeps a patron's institutional link.
    """
    if patron.status not in PATRON_STATUSES:
        raise ValueError(f"unknown patron status {patron.status!r}")
    now = now_iso()
    pin_hash = hash_secret(patron.pin) if patron.pin else None
    row = conn.execute("SELECT id FROM patrons WHERE barcode = ?", (patron.barcode,)).fetchone()
    values = (patron.username or None, patron.given_name, patron.family_name, patron.email,
              patron.status, patron.patron_group, patron.expires, patron.institutional_peer, now)
    if row is None:
        patron_id = conn.execute(
            "INSERT INTO patrons (username, given_name, family_name, email, status, patron_group,"
            " expires, institutional_peer, updated_at, barcode, pin_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, patron.barcode, pin_hash, now)).lastrowid
        assert patron_id is not None
        return patron_id, True
    conn.execute(
        "UPDATE patrons SET username = ?, given_name = ?, family_name = ?, email = ?, status = ?,"
        " patron_group = ?, expires = ?, institutional_peer = COALESCE(?, institutional_peer),"
        " updated_at = ?,"
        " pin_hash = COALESCE(?, pin_hash) WHERE id = ?", (*values, pin_hash, row["id"]))
    return row["id"], False
