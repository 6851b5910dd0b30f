"""Tests for gateway.backends.embedded.demo: deterministic, valid demo records, items, patrons,
loans and holds."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pymarc
import pytest

from gateway.backends.embedded.demo import (
    BRANCHES,
    DEMO_PATRONS,
    demo_record,
    demo_records,
    write_demo,
    write_demo_marc,
)
from gateway.backends.embedded.identifiers import isbn10_check_digit, isbn13_check_digit, isbn_forms
from gateway.backends.embedded.importers import import_marc
from gateway.secrets import verify_secret
from gateway.storage.store import open_database

TODAY = date(2026, 3, 2)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A fresh, migrated database."""
    connection = open_database(tmp_path / "demo.sqlite3")
    yield connection
    connection.close()


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("records", "items", "patrons", "loans", "holds", "records_fts",
                          "record_identifiers")}


def test_demo_marc_is_deterministic(tmp_path: Path) -> None:
    """Two runs write byte-identical files; a record does not depend on how many are written."""
    first, second = tmp_path / "a.mrc", tmp_path / "b.mrc"
    assert write_demo_marc(first, records=150) == 150
    write_demo_marc(second, records=150)
    assert first.read_bytes() == second.read_bytes()
    assert demo_record(42).as_marc() == list(demo_records(1, start=42))[0].as_marc()
    records = list(pymarc.MARCReader(first.read_bytes()))
    assert [r["001"].data for r in records[:2]] == ["demo-000001", "demo-000002"]
    assert len(records) == 150 and all(r.leader[9] == "a" for r in records)


def test_demo_identifiers_have_valid_check_digits() -> None:
    """Every ISBN (13, and 10 for older books) and ISSN has a correct check digit."""
    isbn10s = issns = 0
    for record in demo_records(300):
        assert record["008"].data is not None and len(record["008"].data) == 40
        for value in (f["a"] for f in record.get_fields("020")):
            assert isbn_forms(value), value
            if len(value) == 13:
                assert isbn13_check_digit(value[:12]) == value[12]
            else:
                assert isbn10_check_digit(value[:9]) == value[9]
                isbn10s += 1
        for field in record.get_fields("022"):
            digits = field["a"].replace("-", "")
            total = sum(int(d) * w for d, w in zip(digits[:7], range(8, 1, -1), strict=True))
            check = (11 - total % 11) % 11
            assert digits[7] == ("X" if check == 10 else str(check))
            issns += 1
        if not record.get_fields("022"):
            assert record.get_fields("020") and record.leader[7] == "m"
    assert isbn10s > 20 and issns > 5


@pytest.mark.skipif(shutil.which("yaz-marcdump") is None, reason="yaz-marcdump not installed")
def test_demo_records_pass_yaz_marcdump(tmp_path: Path) -> None:
    """YAZ reads the demo file without a single complaint and finds every record."""
    path = tmp_path / "demo.mrc"
    write_demo_marc(path, records=200)
    check = subprocess.run(["yaz-marcdump", "-n", str(path)], capture_output=True, timeout=60)
    assert check.returncode == 0
    assert check.stdout == b"" and check.stderr == b""
    xml = subprocess.run(["yaz-marcdump", "-o", "marcxml", str(path)], capture_output=True,
                         timeout=60)
    assert xml.returncode == 0 and xml.stderr == b""
    assert xml.stdout.count(b"<record") == 200


def test_write_demo_counts_patrons_loans_and_holds(conn: sqlite3.Connection) -> None:
    """The demo has every record, item, the ten patrons, loans (some overdue) and holds."""
    summary = write_demo(conn, records=300, today=TODAY)
    expected_items = sum(len(r.get_fields("852")) for r in demo_records(300))
    assert (summary.records, summary.items, summary.patrons) == (300, expected_items, 10)
    table = counts(conn)
    assert (table["records"], table["items"], table["patrons"]) == (300, expected_items, 10)
    assert table["loans"] == summary.loans > 10 and table["holds"] == summary.holds > 0
    assert conn.execute("SELECT count(*) FROM items WHERE status = 'on_loan'").fetchone()[0] \
        == summary.loans
    assert conn.execute("SELECT count(*) FROM loans l JOIN items i ON i.id = l.item_id"
                        " WHERE i.status != 'on_loan'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM loans WHERE due_at < ?",
                        (TODAY.isoformat(),)).fetchone()[0] > 0
    locations = {r[0] for r in conn.execute("SELECT DISTINCT location FROM items")}
    assert locations == {code for code, _name in BRANCHES}
    hits = conn.execute("SELECT count(*) FROM records_fts WHERE records_fts MATCH 'river'"
                        ).fetchone()[0]
    assert 5 < hits < 150


def test_demo_patrons(conn: sqlite3.Connection) -> None:
    """DEMO_PATRONS is what the database holds: PINs verify, one blocked, one expired."""
    write_demo(conn, records=5, today=TODAY)
    assert [p.barcode for p in DEMO_PATRONS] == [f"P{n:04d}" for n in range(1, 11)]
    assert sorted(p.status for p in DEMO_PATRONS).count("active") == 8
    assert {p.patron_group for p in DEMO_PATRONS} == {"staff", "undergrad", "postgrad",
                                                      "faculty"}
    for patron in DEMO_PATRONS:
        row = conn.execute("SELECT * FROM patrons WHERE barcode = ?",
                           (patron.barcode,)).fetchone()
        assert (row["username"], row["status"], row["patron_group"]) == (
            patron.username, patron.status, patron.patron_group)
        assert f"{row['given_name']} {row['family_name']}" == patron.name
        assert verify_secret(patron.pin, row["pin_hash"])


def test_write_demo_twice_does_not_duplicate(conn: sqlite3.Connection) -> None:
    """Re-running the demo upserts: the same rows, no extra loans or holds."""
    progress: list[int] = []
    write_demo(conn, records=120, today=TODAY, progress=progress.append)
    before = counts(conn)
    again = write_demo(conn, records=120, today=TODAY)
    assert counts(conn) == before
    assert (again.loans, again.holds) == (0, 0)
    assert progress[-1] == 120


def test_demo_marc_file_imports_like_write_demo(conn: sqlite3.Connection,
                                               tmp_path: Path) -> None:
    """Importing the exported demo file yields the same records and items as write_demo."""
    path = tmp_path / "demo.mrc"
    write_demo_marc(path, records=100)
    lines: list[str] = []
    summary = import_marc(conn, [path], report=lines.append)
    assert lines == [] and summary.records_created == 100
    other = open_database(tmp_path / "other.sqlite3")
    write_demo(other, records=100, today=TODAY)
    for table in ("records", "items", "record_identifiers"):
        assert counts(conn)[table] == counts(other)[table]
    stored = conn.execute("SELECT marc FROM records WHERE local_id = 'demo-000007'").fetchone()
    assert stored[0] == demo_record(7).as_marc()
    other.close()
