"""A large load into an almost empty catalogue drops the secondary indexes no write reads and
builds them after it (:mod:`gateway.storage.deferred_indexes`): the database is the same as a
load keeping them (rows, word index, and every index with its definition), the indexes are
really gone while it loads, and whatever interrupts it, the next opening builds them again.
(The SIGKILL of a real import is in ``tests/gateway/test_import_parallel.py``.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.backends.embedded.demo import write_demo_marc
from gateway.backends.embedded.importers import import_marc, marc
from gateway.storage.deferred_indexes import (
    DEFERRABLE,
    META_KEY,
    drop_indexes,
    dropped_indexes,
    restore_indexes,
)
from gateway.storage.store import open_database
from tests.gateway.test_import_bulk import dump, mixed_file, run_import


def indexes(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """Every index of the database with its table and definition."""
    return [tuple(row) for row in conn.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name")]


def plan(conn: sqlite3.Connection, sql: str, *args: object) -> str:
    return " / ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))


def test_deferred_load_writes_what_a_load_keeping_the_indexes_writes(tmp_path: Path) -> None:
    """Every kind of record (updates within the load, moved items, refused records) and a
    second file: same rows, same report, same indexes; the indexes were gone while loading."""
    source = mixed_file(tmp_path / "mixed.mrc")
    demo = tmp_path / "demo.mrc"
    write_demo_marc(demo, records=300)
    kept = open_database(tmp_path / "kept.db")
    deferred = open_database(tmp_path / "deferred.db")
    seen: list[list[str]] = []
    try:
        fresh = indexes(deferred)
        assert set(DEFERRABLE) <= {name for name, _table, _sql in fresh}
        with_indexes = run_import(kept, [source, demo], batch_size=7, defer_indexes=False)
        lines: list[str] = []
        summary = import_marc(deferred, [source, demo], batch_size=7, defer_indexes=True,
                              report=lines.append,
                              progress=lambda _n: seen.append(dropped_indexes(deferred)))
        summary.seconds = 0.0
        assert (summary, lines) == with_indexes
        assert dump(kept) == dump(deferred)
        assert indexes(deferred) == indexes(kept) == fresh
        assert deferred.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert dropped_indexes(deferred) == []
        # while it loaded, the indexes were gone (and noted for whoever opens the database)
        assert seen and seen[0] == sorted(DEFERRABLE)
        # and the readers' plans use them again
        assert "records_title" in plan(deferred, "SELECT id FROM records WHERE title = ?"
                                       " COLLATE NOCASE", "x")
        assert "records_local_nocase" in plan(
            deferred, "SELECT id FROM records WHERE local_id = ? COLLATE NOCASE", "X1")
    finally:
        kept.close()
        deferred.close()


def test_interrupted_load_is_completed_by_the_next_opening(tmp_path: Path) -> None:
    """An exception half-way (the process could as well have died): the committed batches
    stay, searchable by scanning; opening the database builds the indexes again, once."""
    database = tmp_path / "catalogue.db"
    demo = tmp_path / "demo.mrc"
    write_demo_marc(demo, records=120)
    conn = open_database(database)
    fresh = indexes(conn)

    def stop(count: int) -> None:
        if count >= 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_marc(conn, [demo], batch_size=25, defer_indexes=True, report=print,
                    progress=stop)
    assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 100
    assert dropped_indexes(conn) == sorted(DEFERRABLE)
    assert not {name for name, _t, _s in indexes(conn)} & set(DEFERRABLE)
    title = conn.execute("SELECT title FROM records WHERE id = 5").fetchone()[0]
    assert 5 in [row[0] for row in conn.execute(
        "SELECT id FROM records WHERE title = ? COLLATE NOCASE", (title.upper(),))]
    conn.close()

    reopened = open_database(database)  # what the daemon's start and every command do
    try:
        assert indexes(reopened) == fresh
        assert reopened.execute("SELECT count(*) FROM gateway_meta WHERE key = ?",
                                (META_KEY,)).fetchone()[0] == 0
        assert restore_indexes(reopened) == []
        summary = import_marc(reopened, [demo], report=print)  # the re-run completes it
        assert (summary.records_created, summary.records_updated) == (20, 100)
        assert indexes(reopened) == fresh
    finally:
        reopened.close()


def test_drop_and_restore_are_idempotent(tmp_path: Path) -> None:
    """Dropping twice notes every index once; a restore finding some already built (by a
    writer racing it) builds only the others."""
    conn = open_database(tmp_path / "catalogue.db")
    try:
        fresh = indexes(conn)
        assert drop_indexes(conn) == sorted(DEFERRABLE)
        assert drop_indexes(conn) == []
        assert dropped_indexes(conn) == sorted(DEFERRABLE)
        conn.execute("CREATE INDEX records_title ON records(title COLLATE NOCASE)")
        assert restore_indexes(conn) == sorted(DEFERRABLE)
        assert indexes(conn) == fresh
    finally:
        conn.close()


def test_when_the_indexes_are_deferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a large load into an almost empty catalogue (by the files' size): a small file or
    a catalogue already holding a quarter of what the files hold keeps its indexes."""
    small = tmp_path / "small.mrc"
    write_demo_marc(small, records=40)
    conn = open_database(tmp_path / "catalogue.db")
    dropped: list[bool] = []
    original = marc.drop_indexes

    def spy(c: sqlite3.Connection) -> list[str]:
        dropped.append(True)
        return original(c)

    monkeypatch.setattr(marc, "drop_indexes", spy)
    try:
        import_marc(conn, [small], report=print)
        assert dropped == []  # a small file
        size = small.stat().st_size
        monkeypatch.setattr(marc, "DEFER_MIN_BYTES", size)
        monkeypatch.setattr(marc, "DEFER_BYTES_PER_RECORD", size // 41)  # 40 held < 41
        import_marc(conn, [small], report=print)
        assert dropped == [True]
        monkeypatch.setattr(marc, "DEFER_BYTES_PER_RECORD", size // 40)  # 40 held, not < 40
        import_marc(conn, [small], report=print)
        assert dropped == [True]
        assert dropped_indexes(conn) == []
    finally:
        conn.close()
