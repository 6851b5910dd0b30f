"""Tests for gateway.backends.embedded.importers: MARC files (ISO 2709, MARC-8, MARCXML,
852/952) and patron CSV."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymarc
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.backends.embedded.importers import (
    ImportSummary,
    PatronImportError,
    import_marc,
    import_patrons,
    loader,
)
from gateway.backends.embedded.importers.holdings import extract_items
from gateway.backends.embedded.importers.loader import CatalogueLoader
from gateway.backends.embedded.importers.marcfiles import read_records
from gateway.secrets import verify_secret
from gateway.storage.store import open_database
from tests.marc_fixtures import datafield, iso2709

MARCXML_NS = "http://www.loc.gov/MARC21/slim"


# -- helpers ----------------------------------------------------------------------------------

def book(local_id: str, title: str, *holdings: bytes, tag: str = "852") -> bytes:
    """A small UTF-8 record with a 001, a 245 and holdings fields."""
    fields = [("001", local_id.encode()), ("245", datafield("10", "a", title))]
    fields += [(tag, body) for body in holdings]
    return iso2709(fields)


def item_852(barcode: str, branch: str = "MAIN", copy: str = "1") -> bytes:
    """The body of an 852 describing one item."""
    return datafield("1 ", "a", "XX-Test", "b", branch, "c", "STACKS", "h", "520", "i", "ABC",
                     "t", copy, "p", barcode)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A fresh, migrated database."""
    connection = open_database(tmp_path / "gateway.sqlite3")
    yield connection
    connection.close()


def run_import(conn: sqlite3.Connection, *paths: Path, **kwargs: Any
               ) -> tuple[ImportSummary, list[str]]:
    """import_marc with the report lines collected."""
    lines: list[str] = []
    summary = import_marc(conn, list(paths), report=lines.append, **kwargs)
    return summary, lines


def count(conn: sqlite3.Connection, table: str) -> int:
    """Rows in ``table``."""
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# -- MARC: formats and encodings ----------------------------------------------------------------

def test_iso2709_utf8_records_and_852_items(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """UTF-8 ISO 2709 records are stored with their 852 items; the summary counts them."""
    path = tmp_path / "books.mrc"
    path.write_bytes(book("b1", "Über Flüsse", item_852("1001"), item_852("1002", "EAST", "2"))
                     + book("b2", "Second book", item_852("1003")))
    progress: list[int] = []
    summary, lines = run_import(conn, path, progress=progress.append)
    assert lines == []
    assert (summary.files, summary.records_read, summary.records_created) == (1, 2, 2)
    assert (summary.items_created, summary.items_skipped) == (3, 0)
    assert progress[-1] == 2
    assert "2 records read" in str(summary)
    row = conn.execute("SELECT title, marc FROM records WHERE local_id = 'b1'").fetchone()
    assert row["title"] == "Über Flüsse"
    assert row["marc"][9:10] == b"a"
    item = conn.execute("SELECT * FROM items WHERE barcode = '1002'").fetchone()
    assert (item["location"], item["shelving_location"], item["call_number"],
            item["copy_number"], item["status"]) == ("EAST", "STACKS", "520 ABC", "2",
                                                     "available")
    assert not conn.in_transaction


def test_marc8_record_is_converted_to_utf8(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """A MARC-8 record (leader/09 blank, 0xE2 = combining acute) is stored as UTF-8."""
    path = tmp_path / "marc8.mrc"
    path.write_bytes(iso2709([
        ("001", b"m8-1"),
        ("100", b"1 \x1faBront\xe2e, Charlotte"),
        ("245", b"10\x1faCaf\xe2e society"),
        ("852", b"1 \x1fbMAIN\x1fpM8-0001"),
    ], coding=b" ") + iso2709([("001", b"m8-2"), ("245", b"10\x1faOdd \xfc byte")],
                              coding=b" "))
    summary, lines = run_import(conn, path)
    assert lines == [f"{path}: record 2 (m8-2): MARC-8: Unable to parse character 0xfc in"
                     " g0=66 g1=69 (replaced by a space)"]
    assert summary.records_created == 2 and summary.items_created == 1
    row = conn.execute("SELECT title, author, marc FROM records WHERE local_id = 'm8-1'"
                       ).fetchone()
    assert row["title"] == "Café society"
    assert row["author"] == "Bronté, Charlotte"
    assert row["marc"][9:10] == b"a"
    stored = pymarc.Record(row["marc"])
    assert stored["245"]["a"] == "Café society"
    assert "Café".encode() in row["marc"]


def test_marcxml_with_952_koha_items(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """MARCXML is detected by content (BOM and blank lines first) and 952 items are mapped."""
    path = tmp_path / "koha.xml"
    path.write_bytes(("\ufeff\n" + f"""<?xml version="1.0" encoding="UTF-8"?>
<collection xmlns="{MARCXML_NS}">
  <record>
    <leader>00000nam a2200000   4500</leader>
    <controlfield tag="001">koha-1</controlfield>
    <datafield tag="245" ind1="1" ind2="0"><subfield code="a">Søren's garden</subfield>
    </datafield>
    <datafield tag="952" ind1=" " ind2=" ">
      <subfield code="a">MAIN</subfield><subfield code="b">EAST</subfield>
      <subfield code="c">REF</subfield><subfield code="o">635 SOR</subfield>
      <subfield code="p">K-1</subfield><subfield code="t">1</subfield>
      <subfield code="7">0</subfield>
    </datafield>
    <datafield tag="952" ind1=" " ind2=" ">
      <subfield code="a">WEST</subfield><subfield code="p">K-2</subfield>
      <subfield code="q">2030-01-31</subfield>
    </datafield>
    <datafield tag="952" ind1=" " ind2=" ">
      <subfield code="b">EAST</subfield><subfield code="p">K-3</subfield>
      <subfield code="1">1</subfield><subfield code="7">1</subfield>
    </datafield>
    <datafield tag="952" ind1=" " ind2=" "><subfield code="a">MAIN</subfield></datafield>
  </record>
  <record><leader>00000nam  2200000   4500</leader>
    <controlfield tag="001">koha-2</controlfield>
    <datafield tag="245" ind1="0" ind2="0"><subfield code="a">Plain</subfield></datafield>
  </record>
</collection>
""").encode())
    summary, lines = run_import(conn, path)
    assert (summary.records_created, summary.items_created, summary.items_skipped) == (2, 3, 1)
    assert lines == [f"{path}: record 1 (koha-1): 952 #4: no barcode ($p), item skipped"]
    items = {r["barcode"]: r for r in conn.execute("SELECT * FROM items")}
    assert (items["K-1"]["location"], items["K-1"]["shelving_location"],
            items["K-1"]["call_number"], items["K-1"]["status"],
            items["K-1"]["loan_policy"]) == ("MAIN", "REF", "635 SOR", "available", "standard")
    assert items["K-2"]["status"] == "on_loan"
    assert (items["K-3"]["location"], items["K-3"]["status"],
            items["K-3"]["loan_policy"]) == ("EAST", "missing", "not_for_loan")
    titles = {r["local_id"]: r["title"] for r in conn.execute("SELECT * FROM records")}
    assert titles == {"koha-1": "Søren's garden", "koha-2": "Plain"}
    marc = conn.execute("SELECT marc FROM records WHERE local_id = 'koha-2'").fetchone()[0]
    assert marc[9:10] == b"a"


def test_marcxml_without_namespace_and_bad_leader(conn: sqlite3.Connection,
                                                  tmp_path: Path) -> None:
    """Un-namespaced MARCXML is read too; a record with a short leader is reported."""
    path = tmp_path / "plain.xml"
    path.write_text("""<?xml version="1.0"?><collection>
<record><leader>short</leader><controlfield tag="001">p1</controlfield></record>
<record><leader>00000nam a2200000   4500</leader><controlfield tag="001">p2</controlfield>
<datafield tag="852" ind1=" " ind2=" "><subfield code="b">WEST</subfield>
<subfield code="p">X-1</subfield></datafield></record></collection>""", encoding="utf-8")
    summary, lines = run_import(conn, path)
    assert lines == [f"{path}: record 1: invalid leader: 5 characters, not 24"]
    assert (summary.records_created, summary.items_created) == (1, 1)


def test_852_subfield_mapping() -> None:
    """852: $b → location ($a when no $b), $k$h$i$m → call number ($j when none), $t copy."""
    record = pymarc.Record()
    record.add_field(
        pymarc.Field("852", pymarc.Indicators("0", " "), [
            pymarc.Subfield("a", "INST"), pymarc.Subfield("c", "STACKS"),
            pymarc.Subfield("k", "REF"), pymarc.Subfield("h", "QA76.73"),
            pymarc.Subfield("i", ".P98"), pymarc.Subfield("t", "3"),
            pymarc.Subfield("p", "A1")]),
        pymarc.Field("852", pymarc.Indicators(" ", " "), [
            pymarc.Subfield("b", "WEST"), pymarc.Subfield("j", "LP 123"),
            pymarc.Subfield("p", "A2")]),
        pymarc.Field("852", pymarc.Indicators(" ", " "), [pymarc.Subfield("b", "WEST")]),
        pymarc.Field("852", pymarc.Indicators(" ", " "), [pymarc.Subfield("p", "A1")]),
    )
    holdings = extract_items(record)
    first, second = holdings.items
    assert (first.barcode, first.location, first.shelving_location, first.call_number,
            first.copy_number) == ("A1", "INST", "STACKS", "REF QA76.73 .P98", "3")
    assert (second.location, second.call_number) == ("WEST", "LP 123")
    assert holdings.skipped == ("852 #3: no barcode ($p), item skipped",
                                "852 #4: barcode 'A1' repeated in the record, item skipped")


# -- MARC: re-import, bad records, files --------------------------------------------------------

def test_reimport_updates_records_and_items_without_duplicates(
        conn: sqlite3.Connection, tmp_path: Path) -> None:
    """A second import matches records by 001 and items by barcode: updates, no duplicates."""
    first = tmp_path / "v1.mrc"
    first.write_bytes(book("r1", "Old title", item_852("2001"), item_852("2002"))
                      + book("r2", "Other", item_852("2003")))
    run_import(conn, first)
    before = {t: count(conn, t) for t in ("records", "items", "records_fts",
                                           "record_identifiers")}
    second = tmp_path / "v2.mrc"
    second.write_bytes(book("r1", "New title", item_852("2001", "WEST"), item_852("2002"))
                       + book("r2", "Other", item_852("2003")))
    summary, lines = run_import(conn, second)
    assert lines == []
    assert (summary.records_created, summary.records_updated) == (0, 2)
    assert (summary.items_created, summary.items_updated) == (0, 3)
    after = {t: count(conn, t) for t in before}
    assert after == before
    assert conn.execute("SELECT title FROM records WHERE local_id = 'r1'").fetchone()[0] \
        == "New title"
    assert conn.execute("SELECT location FROM items WHERE barcode = '2001'").fetchone()[0] \
        == "WEST"
    hits = conn.execute("SELECT count(*) FROM records_fts WHERE records_fts MATCH 'new'"
                        ).fetchone()[0]
    assert hits == 1


def test_corrupt_records_between_good_ones(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """Corrupt records are reported with file and number; the good ones around them load."""
    good = [book(f"g{i}", f"Good {i}", item_852(f"G{i}")) for i in range(1, 6)]
    whole = book("cut", "Cut short", item_852("C1"))
    cut_short = whole[:40]  # no terminator: glued to the next record
    not_a_number = b"abcde" + good[0][5:].replace(b"g1", b"x2")
    bad_directory = good[0][:24] + b"245XXXX00000" + good[0][36:]
    path = tmp_path / "mixed.mrc"
    path.write_bytes(good[0] + good[1] + cut_short + good[2] + not_a_number + b"\r\n"
                     + bad_directory + good[3] + good[4][:-9])
    summary, lines = run_import(conn, path)
    assert sorted(r[0] for r in conn.execute("SELECT local_id FROM records")) \
        == ["g1", "g2", "g3", "g4"]
    assert (summary.records_read, summary.records_created, summary.records_skipped) == (8, 4, 4)
    assert lines == [
        f"{path}: record 3: truncated record: the next record starts after 40 bytes, before"
        f" this one's terminator (its leader says {len(whole)} bytes)",
        f"{path}: record 5: invalid leader: record length 'abcde' is not a number",
        f"{path}: record 6: malformed record (ValueError: invalid literal for int() with base"
        " 10: 'XXXX')",
        f"{path}: record 8: the file ends inside this record (no record terminator)",
    ]
    assert count(conn, "items") == 4


def test_pymarc_complaints_become_report_lines(conn: sqlite3.Connection,
                                               tmp_path: Path) -> None:
    """Odd indicators and subfield codes are imported and reported, not printed by pymarc."""
    path = tmp_path / "odd.mrc"
    path.write_bytes(iso2709([("001", b"odd"), ("245", b"1\x1faOne indicator"),
                              ("500", "  \x1féNote".encode())]))
    summary, lines = run_import(conn, path)
    assert summary.records_created == 1
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}: record 1 (odd): The subfield contained a non-ASCII")
    assert lines[1].startswith(f"{path}: record 1 (odd): only 1 indicator found")


def test_wrong_record_length_is_corrected(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """A leader length that is wrong while the directory is intact is fixed, with a note."""
    record = book("len", "Längen", item_852("L1"))
    path = tmp_path / "length.mrc"
    path.write_bytes(b"%05d" % (len(record) - 2) + record[5:])  # counted characters, not bytes
    summary, lines = run_import(conn, path)
    assert summary.records_created == 1 and summary.items_created == 1
    assert lines == [f"{path}: record 1 (len): record length in the leader ({len(record) - 2})"
                     f" corrected to {len(record)}"]


GOOD_FILE = b"".join(book(f"h{i}", f"Hypothesis {i}", item_852(f"H{i}")) for i in range(12))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, len(GOOD_FILE) - 1), st.binary(max_size=3),
                                st.integers(0, 3)), min_size=1, max_size=4))
def test_damaged_files_never_stop_the_reader(tmp_path: Path,
                                             edits: list[tuple[int, bytes, int]]) -> None:
    """Whatever bytes are damaged, reading goes on: each record is read or explained."""
    data = bytearray(GOOD_FILE)
    for position, replacement, removed in edits:
        data[position:position + removed] = replacement
    assume(not bytes(data).lstrip(b"\r\n\t \x00\x1a\xef\xbb\xbf").startswith(b"<"))  # XML
    path = tmp_path / "damaged.mrc"
    path.write_bytes(bytes(data))
    reads = list(read_records(path))
    assert [r.number for r in reads] == list(range(1, len(reads) + 1))
    for read in reads:
        assert (read.record is None) == bool(read.error)
    good = sum(r.record is not None for r in reads)
    assert good >= 12 - 2 * len(edits)


def test_missing_001_and_invalid_leader_reported(conn: sqlite3.Connection,
                                                 tmp_path: Path) -> None:
    """A record without 001, one with leader/09 'x' and bad UTF-8 are skipped and named."""
    no_001 = iso2709([("245", datafield("10", "a", "Anonymous"))])
    bad_coding = book("c1", "Coded")[:9] + b"x" + book("c1", "Coded")[10:]
    bad_utf8 = iso2709([("001", b"u1"), ("245", b"10\x1faBad \xff byte")])
    path = tmp_path / "bad.mrc"
    path.write_bytes(no_001 + bad_coding + bad_utf8 + book("ok", "Fine"))
    summary, lines = run_import(conn, path)
    assert summary.records_created == 1 and summary.records_skipped == 3
    assert lines[0] == f"{path}: record 1: no 001 control number, record skipped"
    assert lines[1].startswith(f"{path}: record 2: invalid leader: character coding")
    assert lines[2].startswith(f"{path}: record 3: UTF-8 decode error")
    assert not summary.ok


def test_missing_file_does_not_stop_the_run(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """Missing, empty and non-MARC files are reported by name; the others still import."""
    good = tmp_path / "good.mrc"
    good.write_bytes(book("f1", "Found"))
    missing = tmp_path / "missing.mrc"
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    csv_file = tmp_path / "patrons.csv"
    csv_file.write_text("barcode,username\nP1,al\n", encoding="utf-8")
    summary, lines = run_import(conn, missing, good, empty, csv_file, tmp_path)
    assert lines == [
        f"{missing}: no such file",
        f"{empty}: no records in the file",
        f"{csv_file}: record 1: not a MARC file: neither MARCXML nor ISO 2709 (no record"
        " terminator anywhere, no valid leader at the start)",
        f"{tmp_path}: is a directory, not a MARC file",
    ]
    assert (summary.files, summary.files_failed, summary.records_created) == (3, 2, 1)
    assert "(2 unreadable)" in str(summary)


def test_marcxml_not_well_formed_keeps_earlier_records(conn: sqlite3.Connection,
                                                       tmp_path: Path) -> None:
    """A broken MARCXML file is read up to the error, which is reported."""
    path = tmp_path / "broken.xml"
    path.write_text(f"""<collection xmlns="{MARCXML_NS}"><record>
<leader>00000nam a2200000   4500</leader><controlfield tag="001">x1</controlfield>
</record><record><leader>00000nam a2200000   4500</leader><controlfield tag="001">x2
""", encoding="utf-8")
    summary, lines = run_import(conn, path)
    assert summary.records_created == 1
    assert len(lines) == 1 and lines[0].startswith(f"{path}: record 2: MARCXML is not well-formed")


def test_batches_commit_and_a_failing_record_is_isolated(
        conn: sqlite3.Connection, tmp_path: Path) -> None:
    """A record that fails half-way is undone alone; its batch-mates still commit."""
    # The item insert fails for B7, after its record was written: in the bulk write of the
    # batch and again when the record is retried alone.
    conn.execute("CREATE TEMP TRIGGER flaky BEFORE INSERT ON items WHEN NEW.barcode = 'B7'"
                 " BEGIN SELECT RAISE(ABORT, 'simulated failure'); END")
    path = tmp_path / "batch.mrc"
    path.write_bytes(b"".join(book(f"n{i}", f"Book {i}", item_852(f"B{i}"))
                              for i in range(1, 26)))
    progress: list[int] = []
    summary, lines = run_import(conn, path, batch_size=4, progress=progress.append)
    assert (summary.records_created, summary.records_skipped) == (24, 1)
    assert lines == [f"{path}: record 7 (n7): simulated failure, record skipped"]
    assert conn.execute("SELECT count(*) FROM records WHERE local_id = 'n7'").fetchone()[0] == 0
    assert count(conn, "records") == 24 and count(conn, "items") == 24
    assert count(conn, "records_fts") == 24
    assert progress[-1] == 25 and not conn.in_transaction


def pragma(conn: sqlite3.Connection, name: str) -> int:
    """The value of ``PRAGMA name``."""
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


@pytest.mark.parametrize("fails", [False, True])
def test_loader_settings_last_only_while_it_is_open(conn: sqlite3.Connection,
                                                    fails: bool) -> None:
    """A bigger page cache and a longer WAL during the load; the caller's settings after it."""
    conn.execute("PRAGMA cache_size = -1234")
    conn.execute("PRAGMA wal_autocheckpoint = 321")
    with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
        with CatalogueLoader(conn):
            assert pragma(conn, "cache_size") == -loader.CACHE_KIB
            assert pragma(conn, "wal_autocheckpoint") == \
                loader.CHECKPOINT_KIB * 1024 // pragma(conn, "page_size")
            if fails:
                raise RuntimeError("interrupted")
    assert (pragma(conn, "cache_size"), pragma(conn, "wal_autocheckpoint")) == (-1234, 321)


def test_loader_checkpoints_what_it_wrote(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """The load's pages are in the database file when it ends, not left in the WAL."""
    path = tmp_path / "books.mrc"
    path.write_bytes(b"".join(book(f"n{i}", f"Book {i}", item_852(f"B{i}"))
                              for i in range(1, 11)))
    run_import(conn, path)
    copy = tmp_path / "copy.sqlite3"  # the database file alone, as if the WAL were lost
    copy.write_bytes((tmp_path / "gateway.sqlite3").read_bytes())
    alone = sqlite3.connect(copy)
    try:
        assert count(alone, "records") == 10 and count(alone, "records_fts") == 10
    finally:
        alone.close()


# -- patrons ----------------------------------------------------------------------------------

HEADER = "barcode,username,pin,given_name,family_name,email,status,patron_group,expires"


def write_csv(path: Path, *rows: str, bom: bool = False, crlf: bool = False) -> Path:
    """A patron CSV with the standard header and ``rows``."""
    text = ("\r\n" if crlf else "\n").join((HEADER, *rows)) + "\n"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def test_patron_csv_with_bom_and_crlf(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """A good file (BOM, CRLF, quoted comma, empty pin/username/expires) imports every row."""
    path = write_csv(tmp_path / "patrons.csv",
                     "U1,ann,4321,Ann,Lee,ann@example.org,active,staff,2030-12-31",
                     'U2,,,"Bob, Jr.",Ray,,blocked,undergrad,',
                     "U3,cy,9999,Cy,Zed,,Expired,postgrad,2020-01-01",
                     bom=True, crlf=True)
    lines: list[str] = []
    summary = import_patrons(conn, path, report=lines.append)
    assert lines == [] and (summary.rows, summary.created, summary.updated) == (3, 3, 0)
    rows = {r["barcode"]: r for r in conn.execute("SELECT * FROM patrons")}
    assert rows["U1"]["username"] == "ann" and rows["U1"]["expires"] == "2030-12-31"
    assert verify_secret("4321", rows["U1"]["pin_hash"])
    assert rows["U2"]["given_name"] == "Bob, Jr." and rows["U2"]["username"] is None
    assert rows["U2"]["pin_hash"] is None and rows["U2"]["status"] == "blocked"
    assert rows["U3"]["status"] == "expired"


def test_bad_patron_rows_are_all_reported_and_nothing_imported(
        conn: sqlite3.Connection, tmp_path: Path) -> None:
    """Every bad row is reported with line and field; not a single patron is written."""
    path = write_csv(tmp_path / "patrons.csv",
                     "P1,al,1111,Al,One,al@example.org,active,staff,",        # line 2: fine
                     "P2,bo,2222,Bo,Two,,gone,staff,",                       # 3: status
                     "P3,cy,3333,Cy,Three,,active,staff,2024-02-30",         # 4: date
                     "P1,di,4444,Di,Four,,active,staff,",                    # 5: dup barcode
                     "P5,al,5555,Ed,Five,,active,staff,",                    # 6: dup username
                     "P6,fi,6666,Fi,Six,not-an-email,active,staff,",         # 7: email
                     ",gu,7777,Gu,Seven,,active,staff,",                     # 8: no barcode
                     "P8,ha,8888,Ha,Eight,,active",                          # 9: short row
                     "",                                                     # 10: blank
                     "P9,ix,9999,Ix,Nine,,active,staff,")                    # 11: fine
    lines: list[str] = []
    with pytest.raises(PatronImportError) as caught:
        import_patrons(conn, path, report=lines.append)
    assert lines == caught.value.errors
    assert lines == [
        f"{path}:3: status: 'gone' is not one of active, blocked, expired",
        f"{path}:4: expires: '2024-02-30' is not a date (YYYY-MM-DD)",
        f"{path}:5: barcode: 'P1' already on line 2",
        f"{path}:6: username: 'al' already on line 2",
        f"{path}:7: email: 'not-an-email' is not an email address",
        f"{path}:8: barcode: missing",
        f"{path}:9: expected 9 fields, found 7",
    ]
    assert "nothing imported" in str(caught.value)
    assert count(conn, "patrons") == 0


def test_wrong_header_and_bad_encoding(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """A wrong header names the missing and unexpected columns; non-UTF-8 names the line."""
    path = tmp_path / "patrons.csv"
    path.write_text("barcode,user,pin,given_name,family_name,email,status,patron_group,expires\n"
                    "P1,a,1,A,B,,active,x,\n", encoding="utf-8")
    lines: list[str] = []
    with pytest.raises(PatronImportError):
        import_patrons(conn, path, report=lines.append)
    assert lines == [f"{path}:1: header: expected the columns {HEADER} (missing: username;"
                     f" unexpected: 'user')"]
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes((HEADER + "\nP1,a,1,Andr\xe9,B,,active,x,\n").encode("latin-1"))
    lines.clear()
    with pytest.raises(PatronImportError):
        import_patrons(conn, latin1, report=lines.append)
    assert lines == [f"{latin1}:2: not UTF-8 (byte 0xe9); save the file as UTF-8"]
    assert count(conn, "patrons") == 0


def test_patron_reimport_updates_by_barcode(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """Re-import updates by barcode; an empty PIN keeps the old one; usernames may swap."""
    path = tmp_path / "patrons.csv"
    write_csv(path, "R1,ann,1111,Ann,Lee,,active,staff,", "R2,bob,2222,Bob,Ray,,active,staff,")
    import_patrons(conn, path, report=print)
    write_csv(path, "R1,bob,,Ann,Lee-Smith,,blocked,staff,", "R2,ann,3333,Bob,Ray,,active,x,")
    summary = import_patrons(conn, path, report=print)
    assert (summary.created, summary.updated) == (0, 2) and count(conn, "patrons") == 2
    r1, r2 = conn.execute("SELECT * FROM patrons ORDER BY barcode").fetchall()
    assert (r1["username"], r1["family_name"], r1["status"]) == ("bob", "Lee-Smith", "blocked")
    assert verify_secret("1111", r1["pin_hash"])
    assert r2["username"] == "ann" and verify_secret("3333", r2["pin_hash"])
    other = write_csv(tmp_path / "other.csv", "R9,ann,,New,Person,,active,staff,")
    lines: list[str] = []
    with pytest.raises(PatronImportError):
        import_patrons(conn, other, report=lines.append)
    assert lines == [f"{other}:2: username: 'ann' belongs to patron R2 in the database"]


def test_pin_is_stored_only_as_scrypt_hash(tmp_path: Path) -> None:
    """The PIN never reaches the database file (nor its WAL): only a salted scrypt hash does."""
    db = tmp_path / "pins.sqlite3"
    conn = open_database(db)
    pin = "7391548260"
    path = write_csv(tmp_path / "patrons.csv", f"S1,sam,{pin},Sam,Sun,,active,staff,")
    import_patrons(conn, path, report=print)
    stored = conn.execute("SELECT pin_hash FROM patrons").fetchone()[0]
    assert stored.startswith("scrypt$") and verify_secret(pin, stored)
    conn.close()
    for file in tmp_path.glob("pins.sqlite3*"):
        assert pin.encode() not in file.read_bytes(), file
