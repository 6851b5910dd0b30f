# -*- test-case-name: tests.gateway.test_importers -*-
"""``interlend import-patrons``: load patrons from a CSV file, all or nothing.

The file is UTF-8 (a byte-order mark is fine), with CRLF or LF line ends, and a header row naming
exactly these columns (in any order)::

    barcode,username,pin,given_name,family_name,email,status,patron_group,expires

``status`` is active, blocked or expired (empty means active); ``expires`` is YYYY-MM-DD or
empty; ``username``, ``pin``, ``email`` may be empty. Patrons are matched by barcode, so a
re-import updates them; an empty PIN keeps the PIN a patron already has. Every row is validated
before anything is written, and every problem is reported with its line and field
(``patrons.csv:7: status: 'gone' is not one of active, blocked, expired``); if there is any, nothing
is imported. Otherwise all rows are written in one transaction. PINs are hashed (scrypt) before
they reach the database and never appear in a message.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from gateway.backends.embedded.records import PATRON_STATUSES, PatronData, upsert_patron
from gateway.secrets import hash_secret

COLUMNS = ("barcode", "username", "pin", "given_name", "family_name", "email", "status",
           "patron_group", "expires")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_HASH_THREADS = 4


class PatronImportError(Exception):
    """The file was not imported; ``errors`` lists every problem found, one line each."""

    def __init__(self, path: Path, errors: list[str]) -> None:
        super().__init__(f"{path}: {len(errors)} error(s), nothing imported")
        self.path = path
        self.errors = errors


@dataclass
class PatronImportSummary:
    """Counts for one successful patron import."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"{self.rows:,} patrons: {self.created:,} created, {self.updated:,} updated;"
                f" {self.seconds:.1f} s")


@dataclass(frozen=True)
class PatronRow:
    """A validated row of the file and the line it starts on."""

    line: int
    patron: PatronData


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _validate(values: dict[str, str], problem: Callable[[str, str], None]) -> PatronData:
    """One row's values as PatronData; ``problem(field, message)`` for each bad field."""
    barcode = values["barcode"].strip()
    if not barcode:
        problem("barcode", "missing")
    elif any(c.isspace() for c in barcode) or _has_control(barcode):
        problem("barcode", f"{barcode!r} contains spaces or control characters")
    username = values["username"].strip()
    if any(c.isspace() for c in username) or _has_control(username):
        problem("username", f"{username!r} contains spaces or control characters")
    pin = values["pin"]
    if _has_control(pin):
        problem("pin", "contains control characters")  # never echo a PIN
    email = values["email"].strip()
    if email and not _EMAIL.fullmatch(email):
        problem("email", f"{email!r} is not an email address")
    status = values["status"].strip().lower() or "active"
    if status not in PATRON_STATUSES:
        problem("status", f"{values['status'].strip()!r} is not one of"
                          f" {', '.join(PATRON_STATUSES)}")
    expires = values["expires"].strip()
    if expires:
        try:
            if not _DATE.fullmatch(expires):
                raise ValueError
            date.fromisoformat(expires)
        except ValueError:
            problem("expires", f"{expires!r} is not a date (YYYY-MM-DD)")
    return PatronData(
        barcode=barcode, username=username or None, pin=pin or None,
        given_name=values["given_name"].strip(), family_name=values["family_name"].strip(),
        email=email, status=status, patron_group=values["patron_group"].strip(),
        expires=expires or None)


def _decode(path: Path, errors: list[str]) -> str | None:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        errors.append(f"{path}: cannot read: {exc.strerror or exc}")
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        errors.append(f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x});"
                      " save the file as UTF-8")
        return None


def _check_header(name: str, header: list[str], errors: list[str]) -> bool:
    names = [h.strip() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    unexpected = [h for h in names if h not in COLUMNS]
    repeated = sorted({h for h in names if names.count(h) > 1})
    if not (missing or unexpected or repeated):
        return True
    details = "; ".join(part for part in (
        f"missing: {', '.join(missing)}" if missing else "",
        f"unexpected: {', '.join(repr(u) for u in unexpected)}" if unexpected else "",
        f"repeated: {', '.join(repeated)}" if repeated else "") if part)
    errors.append(f"{name}:1: header: expected the columns {','.join(COLUMNS)} ({details})")
    return False


def read_patrons(path: Path) -> list[PatronRow]:
    """Parse and validate the whole file; raise PatronImportError listing every problem."""
    path = Path(path)
    errors: list[str] = []
    text = _decode(path, errors)
    if text is None:
        raise PatronImportError(path, errors)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise PatronImportError(path, [f"{path}:1: header: {exc}"]) from None
    if header is None:
        raise PatronImportError(path, [f"{path}:1: empty file: expected the header"
                                       f" {','.join(COLUMNS)}"])
    if not _check_header(str(path), header, errors):
        raise PatronImportError(path, errors)
    names = [h.strip() for h in header]
    rows: list[PatronRow] = []
    barcodes: dict[str, int] = {}
    usernames: dict[str, int] = {}
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(f"{path}:{line}: {exc}")
            break
        row_line, line = line, reader.line_num + 1
        if not any(v.strip() for v in values):
            continue  # blank line
        if len(values) != len(COLUMNS):
            errors.append(f"{path}:{row_line}: expected {len(COLUMNS)} fields,"
                          f" found {len(values)}")
            continue

        def problem(field: str, message: str, at: int = row_line) -> None:
            errors.append(f"{path}:{at}: {field}: {message}")

        patron = _validate(dict(zip(names, values, strict=True)), problem)
        if patron.barcode in barcodes:
            problem("barcode", f"{patron.barcode!r} already on line {barcodes[patron.barcode]}")
        elif patron.barcode:
            barcodes[patron.barcode] = row_line
        if patron.username and patron.username in usernames:
            problem("username",
                    f"{patron.username!r} already on line {usernames[patron.username]}")
        elif patron.username:
            usernames[patron.username] = row_line
        rows.append(PatronRow(row_line, patron))
    if errors:
        raise PatronImportError(path, errors)
    return rows


def _check_database(conn: sqlite3.Connection, path: Path, rows: list[PatronRow]) -> None:
    """A username may not belong to a patron of the database that the file does not mention."""
    in_file = {row.patron.barcode for row in rows}
    errors = []
    for row in rows:
        if not row.patron.username:
            continue
        owner = conn.execute("SELECT barcode FROM patrons WHERE username = ?",
                             (row.patron.username,)).fetchone()
        if owner is not None and owner[0] != row.patron.barcode and owner[0] not in in_file:
            errors.append(f"{path}:{row.line}: username: {row.patron.username!r} belongs"
                          f" to patron {owner[0]} in the database")
    if errors:
        raise PatronImportError(path, errors)


def store_patrons(conn: sqlite3.Connection, patrons: Sequence[PatronData]) -> tuple[int, int]:
    """Upsert ``patrons`` (by barcode) in one transaction; return ``(created, updated)``.

    PINs are hashed first, in parallel and before the write lock is taken: scrypt is slow on
    purpose (about 50 ms a PIN). Usernames that move between these patrons (a swap, say) are
    freed first; an institutional patron keeps its peer (upsert_patron keeps it).
    """
    pins = [patron.pin for patron in patrons if patron.pin]
    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        hashes = iter(list(pool.map(hash_secret, pins)))
    pin_hashes = [next(hashes) if patron.pin else None for patron in patrons]
    created = updated = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "UPDATE patrons SET username = NULL WHERE barcode = ? AND username IS NOT ?",
            [(patron.barcode, patron.username) for patron in patrons])
        for patron, pin_hash in zip(patrons, pin_hashes, strict=True):
            patron_id, was_created = upsert_patron(conn, replace(patron, pin=None))
            if pin_hash is not None:
                conn.execute("UPDATE patrons SET pin_hash = ? WHERE id = ?",
                             (pin_hash, patron_id))
            created += was_created
            updated += not was_created
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return created, updated


def import_patrons(conn: sqlite3.Connection, path: Path, *,
                   report: Callable[[str], None]) -> PatronImportSummary:
    """Import every patron of a CSV file in one transaction, or none.

    Each problem goes to ``report`` as it is found; then PatronImportError (listing them all)
    is raised and the database is unchanged.
    """
    started = time.perf_counter()
    path = Path(path)
    try:
        rows = read_patrons(path)
        _check_database(conn, path, rows)
    except PatronImportError as exc:
        for error in exc.errors:
            report(error)
        raise
    try:
        created, updated = store_patrons(conn, [row.patron for row in rows])
    except sqlite3.IntegrityError as exc:
        error = f"{path}: the database refused the import ({exc}); nothing imported"
        report(error)
        raise PatronImportError(path, [error]) from exc
    return PatronImportSummary(rows=len(rows), created=created, updated=updated,
                               seconds=time.perf_counter() - started)
