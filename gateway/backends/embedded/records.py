# -*- test-case-name: tests.gateway.test_importers,tests.gateway.test_import_bulk -*-
"""The embedded circulation system: bibliographic records, items, patrons, in the gateway's SQLite.

The functions here take a ``sqlite3.Connection`` inside a transaction the caller owns (the store's
writer thread, or an importer's own transaction), so that a whole import or a whole NCIP request
commits or rolls back as one. They speak domain terms only: records, items, patrons.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pymarc

from gateway.backends.embedded.identifiers import (
    isbn_forms,
    normalise_issn,
    normalise_lccn,
    normalise_oclc,
)
from gateway.backends.embedded.indexing import WORD_COLUMNS, complete_titles, index_words
from gateway.secrets import hash_secret

ITEM_STATUSES = ("available", "on_loan", "on_hold_shelf", "in_transit", "missing", "withdrawn")
PATRON_STATUSES = ("active", "blocked", "expired")

_TRAILING_PUNCTUATION = re.compile(r"[\s/:;,.=]+$")


_now_cache: list[Any] = [None, ""]


def now_iso() -> str:
    """The current time as stored in the database: UTC, ISO 8601, seconds precision."""
    now = datetime.now(timezone.utc)
    second = now.replace(microsecond=0)
    if _now_cache[0] != second:  # formatting costs more than the clock: once per second
        _now_cache[:] = [second, second.isoformat(timespec="seconds")]
    return _now_cache[1]


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
    words: tuple[str, ...]  # the folded words of each word-index column (see .indexing)


# A field as the extractors read it: (tag, data, subfields, ...). ``data`` is the content of a
# control field and None for a data field; ``subfields`` is a sequence of (code, value) pairs
# (empty for a control field); anything after those three is ignored. :func:`light_fields`
# turns a pymarc record into these; the demo generator builds them directly.
LightField = tuple[Any, ...]

_AUTHOR_MAIN_TAGS = frozenset(("100", "110", "111"))
_AUTHOR_ADDED_TAGS = frozenset(("700", "710"))
_SUBJECT_TAGS = frozenset(("600", "610", "611", "630", "650", "651", "655"))
_PUBLICATION_TAGS = frozenset(("264", "260"))
_IDENTIFIER_TAGS = frozenset(("010", "020", "022", "035"))
_EXTRACTED_TAGS = (_AUTHOR_MAIN_TAGS | _AUTHOR_ADDED_TAGS | _SUBJECT_TAGS | _PUBLICATION_TAGS
                   | _IDENTIFIER_TAGS | {"001", "008", "245"})


# A field to write as ISO 2709: (tag, data, subfields, indicators), a LightField that also
# carries its two indicator characters ("" for a control field).
MarcField = tuple[str, "str | None", Sequence[tuple[str, str]], str]


def iso2709(leader: str, fields: Sequence[MarcField]) -> bytes:
    """The record as ISO 2709 (UTF-8), byte for byte what pymarc's ``as_marc`` writes for a
    ``pymarc.Record(leader=leader)`` holding these fields -- without building pymarc objects
    (writing temporary records and demo catalogues is a hot path)."""
    bodies = [data + "\x1e" if data is not None else
              ind + "".join(["\x1f" + code + value for code, value in pairs]) + "\x1e"
              for _tag, data, pairs, ind in fields]
    directory = []
    offset = 0
    for (tag, *_rest), body in zip(fields, bodies, strict=True):
        length = len(body) if body.isascii() else len(body.encode())
        directory.append(f"{tag}{length:04d}{offset:05d}")
        offset += length
    head = "".join(directory) + "\x1e"
    base = 24 + len(head)
    # pymarc.Record() puts "22" and "4500" in the leader, as_marc the length and base address
    leader = leader[0:9] + "a22" + leader[12:20] + "4500"
    return (f"{base + offset + 1:05d}{leader[5:12]}{base:05d}{leader[17:]}{head}"
            + "".join(bodies) + "\x1d").encode()


def light_fields(record: pymarc.Record) -> list[LightField]:
    """The fields of ``record`` as (tag, data, subfields) tuples, in record order."""
    return [(f.tag, f.data, ()) if f.is_control_field() else (f.tag, None, f.subfields)
            for f in record.fields]


def _joined(pairs: Sequence[tuple[str, str]], codes: str) -> str | None:
    """The values of the subfields with a code in ``codes``, joined and cleaned; None if blank."""
    text = " ".join([v for c, v in pairs if c in codes])
    return _clean(text) if text.strip() else None


def extract_fields(record: pymarc.Record) -> RecordFields:
    """Extract title, author, subjects, publisher, year and identifiers from a MARC record.

    Raises ValueError when the record has no 001 control number (no stable local id).
    """
    return extract_light_fields(light_fields(record))


def extract_light_fields(fields: Iterable[LightField], *, words: bool = True) -> RecordFields:
    """:func:`extract_fields` for a record given as :data:`LightField` tuples. ``words=False``
    leaves the word-index columns out (empty): a temporary record never gets word-index rows
    (see :func:`upsert_extracted`), and folding its words was half of its extraction."""
    if not isinstance(fields, list):
        fields = list(fields)
    control = f008 = None
    seen_001 = seen_008 = False
    titles: list[str] = []
    authors: list[str] = []
    added_authors: list[str] = []
    subjects: list[str] = []
    publishers: list[str] = []
    dates: list[str] = []
    isbns: list[tuple[str, str]] = []
    issns: list[tuple[str, str]] = []
    oclcs: list[tuple[str, str]] = []
    lccns: list[tuple[str, str]] = []
    extracted = _EXTRACTED_TAGS
    for entry in fields:  # indexed, not unpacked: an entry may carry more (demo indicators)
        tag = entry[0]
        if tag not in extracted:
            continue
        data, pairs = entry[1], entry[2]
        if tag == "001":
            if not seen_001:
                seen_001, control = True, data
            continue
        if tag == "008":
            if not seen_008:
                seen_008, f008 = True, data
            continue
        if data is not None:
            continue  # a control field under a data field's tag
        if tag == "245":
            if (text := _joined(pairs, "abnp")) is not None:
                titles.append(text)
        elif tag in _SUBJECT_TAGS:
            subjects.append(" -- ".join(
                [_clean(v) for c, v in pairs if c in "abcdvxyz" and v.strip()]))
        elif tag in _PUBLICATION_TAGS:
            if (text := _joined(pairs, "b")) is not None:
                publishers.append(text)
            if (text := _joined(pairs, "c")) is not None:
                dates.append(text)
        elif tag in _AUTHOR_MAIN_TAGS:
            if (text := _joined(pairs, "abcdq")) is not None:
                authors.append(text)
        elif tag in _AUTHOR_ADDED_TAGS:
            if (text := _joined(pairs, "abcd")) is not None:
                added_authors.append(text)
        elif tag == "020":
            for c, value in pairs:
                if c == "a" or c == "z":
                    isbns += [("isbn", form) for form in isbn_forms(value)]
        elif tag == "022":
            for c, value in pairs:
                if c == "a" and (issn := normalise_issn(value)):
                    issns.append(("issn", issn))
        elif tag == "010":
            for c, value in pairs:
                if c == "a" and (lccn := normalise_lccn(value)):
                    lccns.append(("lccn", lccn))
        elif tag == "035":
            for c, value in pairs:
                if c == "a" and "(OCoLC)" in value and (oclc := normalise_oclc(value)):
                    oclcs.append(("oclc", oclc))
    local_id = control.strip() if control else ""
    if not local_id:
        raise ValueError("no 001 control number")
    authors = authors or added_authors
    year = _year(dates[0] if dates else "") or _year_from_008_data(f008)
    identifiers = [("local", local_id), *isbns, *issns, *oclcs, *lccns]
    if f008 and len(f008) >= 38 and f008[35:38].strip():
        identifiers.append(("language", f008[35:38].strip().lower()))
    identifiers += [("title", title) for title in complete_titles(fields)]
    return RecordFields(
        local_id=local_id,
        title=titles[0] if titles else "",
        author=authors[0] if authors else "",
        subjects=tuple(s for s in subjects if s),
        publisher=publishers[0] if publishers else "",
        pub_year=year,
        identifiers=tuple(dict.fromkeys(identifiers)),
        words=index_words(fields) if words else (),
    )


_YEAR = re.compile(r"(1[0-9]{3}|20[0-9]{2})")


def _year(text: str) -> int | None:
    match = _YEAR.search(text)
    return int(match.group(1)) if match else None


def _year_from_008(record: pymarc.Record) -> int | None:
    f008 = record.get("008")
    return _year_from_008_data(f008.data if f008 is not None else None)


def _year_from_008_data(data: str | None) -> int | None:
    if not data or len(data) < 11:
        return None
    return _year(data[7:11])


def upsert_record(conn: sqlite3.Connection, record: pymarc.Record, *,
                  temporary: bool = False, marc: bytes | None = None) -> tuple[int, bool]:
    """Insert a record, or update the one with the same local id; return ``(id, created)``.

    The search fields, identifier index and word index (lendable records only) are rewritten
    with it. ``marc``, when
    given, must be ``record.as_marc()`` (an importer that read those very bytes passes them).
    """
    return upsert_extracted(conn, extract_light_fields(light_fields(record), words=not temporary),
                            record.as_marc() if marc is None else marc, temporary=temporary)


def upsert_extracted(conn: sqlite3.Connection, fields: RecordFields, marc: bytes, *,
                     temporary: bool = False) -> tuple[int, bool]:
    """:func:`upsert_record` for a record already written as ``marc`` (ISO 2709) with its
    search ``fields`` already extracted from it."""
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
    if not temporary:  # a borrowed item's record is never searched: kept out of the word index
        conn.execute(_INSERT_WORDS, (record_id, *fields.words))
    return record_id, created


_INSERT_WORDS = (f"INSERT INTO records_fts (rowid, {', '.join(WORD_COLUMNS)})"
                 f" VALUES (?{', ?' * len(WORD_COLUMNS)})")


# -- bulk writes ------------------------------------------------------------------------------
#
# A bulk load writes a batch of records (then their items) with a few executemany statements
# instead of several statements per record. The database ends up exactly as with upsert_record
# and upsert_item called one by one in the same order: new rows get the ids SQLite would have
# given them (one more than the largest, in order), updates keep their ids and creation times.

_IN_CHUNK = 500  # host parameters per IN (...) lookup


def _lookup(conn: sqlite3.Connection, sql: str, keys: Sequence[object]) -> list[tuple]:
    """Rows of ``sql`` (with one ``{}`` for the IN list) for ``keys``, in chunks."""
    rows: list[tuple] = []
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start:start + _IN_CHUNK]
        rows += conn.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
    return rows


def _next_id(conn: sqlite3.Connection, table: str) -> int:
    """The id SQLite gives the next row inserted into ``table`` without one."""
    largest = conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0]  # noqa: S608
    return (largest or 0) + 1


def upsert_records(conn: sqlite3.Connection,
                   batch: Sequence[tuple[RecordFields, bytes, bool]]) -> list[tuple[int, bool]]:
    """:func:`upsert_record` for each ``(fields, marc, temporary)`` of ``batch``, in bulk.

    Returns ``(id, created)`` for each, in order. The same local id may come more than once:
    the later one updates the earlier, as it would one by one.
    """
    results: list[tuple[int, bool]] = []
    start = 0
    while start < len(batch):
        seen: set[str] = set()
        end = start
        while end < len(batch) and batch[end][0].local_id not in seen:
            seen.add(batch[end][0].local_id)
            end += 1
        results += _upsert_distinct_records(conn, batch[start:end])
        start = end
    return results


def _upsert_distinct_records(conn: sqlite3.Connection,
                             batch: Sequence[tuple[RecordFields, bytes, bool]]
                             ) -> list[tuple[int, bool]]:
    existing = dict(_lookup(conn, "SELECT local_id, id FROM records WHERE local_id IN ({})",
                            [fields.local_id for fields, _marc, _temporary in batch]))
    now = now_iso()
    next_id = _next_id(conn, "records") if len(existing) < len(batch) else 0
    inserts, updates, identifiers, words, results = [], [], [], [], []
    for fields, marc, temporary in batch:
        subjects = "\n".join(fields.subjects)
        record_id = existing.get(fields.local_id)
        if record_id is None:
            record_id, next_id = next_id, next_id + 1
            inserts.append((record_id, marc, fields.title, fields.author, subjects,
                            fields.publisher, fields.pub_year, int(temporary), now,
                            fields.local_id, now))
            results.append((record_id, True))
        else:
            updates.append((marc, fields.title, fields.author, subjects, fields.publisher,
                            fields.pub_year, int(temporary), now, record_id))
            results.append((record_id, False))
        identifiers += [(kind, value, record_id) for kind, value in fields.identifiers]
        words.append((record_id, *fields.words))
    if inserts:
        conn.executemany(
            "INSERT INTO records (id, marc, title, author, subjects, publisher, pub_year,"
            " temporary, updated_at, local_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", inserts)
    if updates:
        conn.executemany(
            "UPDATE records SET marc = ?, title = ?, author = ?, subjects = ?, publisher = ?,"
            " pub_year = ?, temporary = ?, updated_at = ? WHERE id = ?", updates)
        updated = [(row[-1],) for row in updates]
        conn.executemany("DELETE FROM record_identifiers WHERE record_id = ?", updated)
        conn.executemany("DELETE FROM records_fts WHERE rowid = ?", updated)
    # In the table's key order: each B-tree page the batch touches is visited once, in turn,
    # not once per record landing on it (ISBNs and titles fall all over the table).
    identifiers.sort()
    conn.executemany(
        "INSERT OR IGNORE INTO record_identifiers (kind, value, record_id) VALUES (?, ?, ?)",
        identifiers)
    conn.executemany(_INSERT_WORDS, words)
    return results


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
    row = conn.execute("SELECT id, status FROM items WHERE barcode = ?",
                       (item.barcode,)).fetchone()
    if row is None:
        return insert_item(conn, record_id, item), True
    if item.status not in ITEM_STATUSES:
        raise ValueError(f"unknown item status {item.status!r}")
    now = now_iso()
    on_loan = conn.execute("SELECT 1 FROM loans WHERE item_id = ? AND returned_at IS NULL",
                           (row["id"],)).fetchone()
    status = "on_loan" if on_loan else item.status
    conn.execute(
        "UPDATE items SET record_id = ?, location = ?, shelving_location = ?, call_number = ?,"
        " copy_number = ?, status = ?, loan_policy = ?, updated_at = ? WHERE id = ?",
        (record_id, item.location, item.shelving_location, item.call_number, item.copy_number,
         status, item.loan_policy, now, row["id"]))
    return row["id"], False


def insert_item(conn: sqlite3.Connection, record_id: int, item: ItemData) -> int:
    """Insert a new item; return its id. For a caller that knows the barcode is free (the
    UNIQUE constraint refuses one in use with ``sqlite3.IntegrityError``)."""
    if item.status not in ITEM_STATUSES:
        raise ValueError(f"unknown item status {item.status!r}")
    now = now_iso()
    item_id = conn.execute(
        "INSERT INTO items (barcode, record_id, location, shelving_location, call_number,"
        " copy_number, status, temporary, owning_peer, loan_policy, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (item.barcode, record_id, item.location, item.shelving_location, item.call_number,
         item.copy_number, item.status, int(item.temporary), item.owning_peer,
         item.loan_policy, now, now)).lastrowid
    assert item_id is not None
    return item_id


def upsert_items(conn: sqlite3.Connection, batch: Sequence[tuple[int, ItemData]]
                 ) -> list[tuple[int, bool, int | None]]:
    """:func:`upsert_item` for each ``(record id, item)`` of ``batch``, in bulk.

    Returns ``(item id, created, previous record id)`` for each, in order; the previous record
    id is None for a new item. A barcode may come more than once (the later one wins).
    """
    for _record_id, item in batch:
        if item.status not in ITEM_STATUSES:
            raise ValueError(f"unknown item status {item.status!r}")
    results: list[tuple[int, bool, int | None]] = []
    start = 0
    while start < len(batch):
        seen: set[str] = set()
        end = start
        while end < len(batch) and batch[end][1].barcode not in seen:
            seen.add(batch[end][1].barcode)
            end += 1
        results += _upsert_distinct_items(conn, batch[start:end])
        start = end
    return results


def _upsert_distinct_items(conn: sqlite3.Connection, batch: Sequence[tuple[int, ItemData]]
                           ) -> list[tuple[int, bool, int | None]]:
    existing = {barcode: (item_id, record_id) for barcode, item_id, record_id in _lookup(
        conn, "SELECT barcode, id, record_id FROM items WHERE barcode IN ({})",
        [item.barcode for _record_id, item in batch])}
    on_loan: set[int] = set()
    if existing:
        on_loan = {row[0] for row in _lookup(
            conn, "SELECT item_id FROM loans WHERE returned_at IS NULL AND item_id IN ({})",
            [item_id for item_id, _record_id in existing.values()])}
    now = now_iso()
    next_id = _next_id(conn, "items") if len(existing) < len(batch) else 0
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    results: list[tuple[int, bool, int | None]] = []
    for record_id, item in batch:
        found = existing.get(item.barcode)
        if found is None:
            item_id, next_id = next_id, next_id + 1
            inserts.append((item_id, item.barcode, record_id, item.location,
                            item.shelving_location, item.call_number, item.copy_number,
                            item.status, int(item.temporary), item.owning_peer, item.loan_policy,
                            now, now))
            results.append((item_id, True, None))
        else:
            item_id, previous = found
            status = "on_loan" if item_id in on_loan else item.status
            updates.append((record_id, item.location, item.shelving_location, item.call_number,
                            item.copy_number, status, item.loan_policy, now, item_id))
            results.append((item_id, False, previous))
    if inserts:
        conn.executemany(
            "INSERT INTO items (id, barcode, record_id, location, shelving_location, call_number,"
            " copy_number, status, temporary, owning_peer, loan_policy, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", inserts)
    if updates:
        conn.executemany(
            "UPDATE items SET record_id = ?, location = ?, shelving_location = ?,"
            " call_number = ?, copy_number = ?, status = ?, loan_policy = ?, updated_at = ?"
            " WHERE id = ?", updates)
    return results


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
