"""Circulation operations on the embedded store (``gateway.backends.embedded.operations``)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pymarc
import pytest

from gateway.backends.embedded import operations as ops
from gateway.backends.embedded.circulation import EmbeddedChanges
from gateway.backends.embedded.records import upsert_record
from gateway.domain.lookups import item_named
from gateway.storage import tracking
from gateway.storage.store import open_database
from gateway.storage.tracking import SqlRequestBook

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
DUE = "2030-02-01T23:59:59+00:00"


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return open_database(tmp_path / "db.sqlite3")


def _row(conn: sqlite3.Connection, rs_id: int) -> dict[str, object]:
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM rs_requests WHERE id = ?", (rs_id,)).fetchone())
    del row["id"], row["our_request_id"]
    return row


def test_request_created_at_a_later_step_equals_created_then_advanced(
        conn: sqlite3.Connection) -> None:
    """One INSERT with ``also_stamped`` and columns gives the row that creating the request
    and then advancing it gives (AcceptItem: accepted and received at once)."""
    common = {"peer": "p", "role": "borrower", "broker_request_id": "R1",
              "state": "awaiting_pickup", "step": "accepted", "now": NOW, "item_barcode": "B"}
    two = tracking.create_rs_request(conn, our_request_id="B-1", **common)
    tracking.advance_rs_request(conn, two, state="awaiting_pickup", step="received", now=NOW,
                           due_at=DUE, renewable=0)
    one = tracking.create_rs_request(conn, our_request_id="B-2", also_stamped=("received",),
                                due_at=DUE, renewable=0, **{**common, "broker_request_id": "R2"})
    expected = _row(conn, two)
    expected["broker_request_id"] = "R2"
    assert _row(conn, one) == expected
    assert expected["received_at"] == expected["accepted_at"] and expected["renewable"] == 0


def test_unknown_steps_and_columns_refused(conn: sqlite3.Connection) -> None:
    """A misspelt step or column is a programming error, not a silent no-op."""
    base = {"peer": "p", "role": "borrower", "broker_request_id": "R", "our_request_id": "X",
            "state": "s", "step": "accepted", "now": NOW}
    with pytest.raises(ValueError):
        tracking.create_rs_request(conn, also_stamped=("recieved",), **base)
    with pytest.raises(ValueError):
        tracking.create_rs_request(conn, due=DUE, **base)


def _pymarc_brief(local_id: str, brief: ops.BriefRecord) -> pymarc.Record:
    """The brief record as pymarc objects: what create_brief_record built before it wrote
    ISO 2709 directly (the reference its bytes and search fields are compared with)."""
    record = pymarc.Record(force_utf8=True, leader=ops.BRIEF_LEADER)
    record.add_field(pymarc.Field(tag="001", data=local_id))
    if brief.isbn:
        record.add_field(pymarc.Field(tag="020", indicators=[" ", " "],
                                      subfields=[pymarc.Subfield("a", brief.isbn)]))
    if brief.author:
        record.add_field(pymarc.Field(tag="100", indicators=["1", " "],
                                      subfields=[pymarc.Subfield("a", brief.author)]))
    record.add_field(pymarc.Field(tag="245", indicators=["0", "0"],
                                  subfields=[pymarc.Subfield("a", brief.title or "[no title]")]))
    imprint = [pymarc.Subfield(code, value) for code, value in
               (("b", brief.publisher), ("c", brief.date)) if value]
    if imprint:
        record.add_field(pymarc.Field(tag="264", indicators=[" ", "1"], subfields=imprint))
    return record


BRIEFS = [
    ops.BriefRecord(title="Borrowed for the benchmark", author="Bench, Load"),
    ops.BriefRecord(title=""),
    ops.BriefRecord(title="Œuvres complètes / 全集", author="Müller, Jörg", publisher="Ça Éditions",
                    date="c2019.", isbn="978-0-306-40615-7"),
    ops.BriefRecord(title="Only a date", date="1999"),
    ops.BriefRecord(title="Only a publisher :", publisher="Penguin,", isbn="0306406152"),
]


def _stored(db: sqlite3.Connection, record_id: int) -> tuple[object, ...]:
    """A record's row (without its timestamps), identifiers and word-index row."""
    db.row_factory = None
    row = db.execute("SELECT marc, title, author, subjects, publisher, pub_year, temporary,"
                     " local_id FROM records WHERE id = ?", (record_id,)).fetchone()
    identifiers = db.execute("SELECT kind, value FROM record_identifiers WHERE record_id = ?"
                             " ORDER BY kind, value", (record_id,)).fetchall()
    fts = db.execute("SELECT title, author, subject, anywords FROM records_fts WHERE rowid = ?",
                     (record_id,)).fetchall()
    return row, identifiers, fts


@pytest.mark.parametrize("brief", BRIEFS)
def test_brief_record_is_what_pymarc_wrote(conn: sqlite3.Connection, brief: ops.BriefRecord,
                                           tmp_path: Path) -> None:
    """The directly written brief record: pymarc's bytes, and the same search fields,
    identifiers and word-index row as upsert_record stores for the pymarc record; valid for
    pymarc and yaz-marcdump."""
    reference = _pymarc_brief("ill-p-1", brief)
    stored = _stored(conn, ops.create_brief_record(conn, "ill-p-1", brief))
    other = open_database(tmp_path / "reference.sqlite3")
    expected = _stored(other, upsert_record(other, reference, temporary=True)[0])
    assert stored == expected
    marc = bytes(stored[0][0])
    assert marc == reference.as_marc()
    assert pymarc.Record(data=marc, force_utf8=True).as_marc() == marc
    if shutil.which("yaz-marcdump") is None:
        pytest.skip("yaz-marcdump (Debian package yaz) not installed; the pymarc checks passed")
    path = tmp_path / "brief.mrc"
    path.write_bytes(marc)
    dump = subprocess.run(["yaz-marcdump", "-i", "marc", "-o", "line", str(path)],
                          capture_output=True, text=True, check=True)
    assert "001 ill-p-1" in dump.stdout and not dump.stderr


def test_temporary_item_on_a_barcode_in_use_is_refused(conn: sqlite3.Connection) -> None:
    """create_temporary_item only inserts: a barcode already taken is an error, never an
    update of the existing item."""
    record = ops.create_brief_record(conn, "ill-p-1", ops.BriefRecord(title="T"))
    first = ops.create_temporary_item(conn, barcode="TMP1", record_id=record, peer="p",
                                      location="MAIN")
    assert ops.barcode_in_use(conn, "TMP1")
    with pytest.raises(sqlite3.IntegrityError):
        ops.create_temporary_item(conn, barcode="TMP1", record_id=record, peer="q",
                                  location="ELSEWHERE")
    assert conn.execute("SELECT id, owning_peer, location FROM items WHERE barcode = 'TMP1'"
                        ).fetchone()[:] == (first, "p", "MAIN")


def _temporary(conn: sqlite3.Connection, barcode: str, peer: str, rid: str,
               name: str | None) -> int:
    record = ops.create_brief_record(conn, f"ill-{barcode}", ops.BriefRecord(title="T"))
    item = ops.create_temporary_item(conn, barcode=barcode, record_id=record, peer=peer,
                                     location="MAIN")
    tracking.create_rs_request(conn, peer=peer, role="borrower", broker_request_id=rid,
                          our_request_id=f"B-{barcode}", state="awaiting_pickup",
                          step="accepted", now=NOW, item_id=item, item_barcode=barcode,
                          broker_item_id=name)
    return item


def test_an_item_answers_to_the_brokers_names_for_that_broker_only(
        conn: sqlite3.Connection) -> None:
    """A temporary item is found by our barcode, by the ItemId its peer gave (whatever
    barcode we chose) and, when the request holds one item only, by the peer's request id;
    another peer's names find nothing of it."""
    conn.execute("BEGIN")
    one = _temporary(conn, "R-1", "reshare", "R-1", "VOL-1")
    two = _temporary(conn, "R-1-RS", "reshare", "R-1", "VOL-2")     # same request, volume 2
    solo = _temporary(conn, "TIP-99", "tipasa", "TIP-REQ", "99")

    def found(peer: str, value: str, by_request: bool = False) -> int | None:
        item = item_named(EmbeddedChanges(conn), SqlRequestBook(conn), peer=peer, value=value,
                          by_request=by_request)
        return item.id if item is not None else None

    assert found("reshare", "VOL-1") == one and found("reshare", "VOL-2") == two
    assert found("reshare", "R-1-RS") == two and found("reshare", "R-1") == one   # barcodes
    assert found("reshare", "R-1", by_request=True) == one   # two volumes: not by request...
    assert found("tipasa", "TIP-REQ", by_request=True) == solo   # ...one item: by request
    assert found("tipasa", "99") == solo and found("reshare", "99") is None
    assert found("tipasa", "VOL-1") is None
    assert tracking.find_volume(conn, peer="reshare", role="borrower", broker_request_id="R-1",
                           broker_item_id="VOL-2")["item_id"] == two
    assert tracking.find_volume(conn, peer="reshare", role="borrower", broker_request_id="R-1",
                           broker_item_id="VOL-3") is None
    with pytest.raises(sqlite3.IntegrityError):                # one row per volume
        tracking.create_rs_request(conn, peer="reshare", role="borrower", broker_request_id="R-1",
                              our_request_id="B-X", state="s", step="accepted", now=NOW,
                              broker_item_id="VOL-2")
    conn.execute("ROLLBACK")


def test_an_older_database_keeps_its_requests_and_replies(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A database from before the per-volume requests and fingerprinted replies (migration
    6) is migrated with its tracked requests and stored replies intact; the old unique
    (peer, role, RequestId) rule becomes one row per volume."""
    import gateway.storage.store as store_module
    from gateway.storage.schema import MIGRATIONS, SCHEMA_VERSION

    index = next(n for n, script in enumerate(MIGRATIONS) if "broker_item_id" in script)
    path = tmp_path / "old.sqlite3"
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS[:index])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", index)
    old = open_database(path)
    old.execute("INSERT INTO rs_requests (peer, role, broker_request_id, our_request_id, state)"
                " VALUES ('reshare', 'borrower', 'R-1', 'B-1', 'awaiting_pickup')")
    old.execute("INSERT INTO idempotency (peer, service, key, response, created_at)"
                " VALUES ('reshare', 'AcceptItem', 'R-1', x'00', '2030-01-01T00:00:00+00:00')")
    old.commit()
    old.close()
    monkeypatch.undo()
    conn = open_database(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM rs_requests").fetchone())
    assert (row["broker_request_id"], row["broker_item_id"], row["end_reason"]) == \
        ("R-1", None, None)
    assert dict(conn.execute("SELECT key, request_key FROM idempotency").fetchone()) == \
        {"key": "R-1", "request_key": None}
    conn.execute("BEGIN")
    tracking.create_rs_request(conn, peer="reshare", role="borrower", broker_request_id="R-1",
                          our_request_id="B-2", state="s", step="accepted", now=NOW,
                          broker_item_id="VOL-2")
    with pytest.raises(sqlite3.IntegrityError):
        tracking.create_rs_request(conn, peer="reshare", role="borrower", broker_request_id="R-1",
                              our_request_id="B-3", state="s", step="accepted", now=NOW)
    conn.execute("ROLLBACK")
