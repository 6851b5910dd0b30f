"""The AcceptItem writer path made cheaper: a batch of one job without a SAVEPOINT, and brief
records extracted without the word-index columns they never store."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
import pytest_twisted

from gateway.backends.embedded import operations as ops
from gateway.backends.embedded.records import extract_light_fields
from gateway.storage.store import Store, StoreError, connect
from tests.gateway.test_operations import BRIEFS


def _trace(store_conn: sqlite3.Connection, seen: list[str]) -> None:
    store_conn.set_trace_callback(seen.append)


@pytest_twisted.ensureDeferred
async def test_batch_of_one_commits_without_savepoint(store: Store, tmp_path: Path) -> None:
    """A write alone in its batch runs as BEGIN IMMEDIATE, the job, COMMIT -- no SAVEPOINT --
    and is committed (another connection reads it) when its Deferred fires."""
    seen: list[str] = []
    await store.write(lambda c: _trace(c, seen))
    seen.clear()
    await store.write(lambda c: c.execute("INSERT INTO gateway_meta VALUES ('one', '1')"))
    other = connect(store.path, readonly=True)
    assert other.execute("SELECT value FROM gateway_meta WHERE key = 'one'").fetchone()[0] == "1"
    assert seen == ["BEGIN IMMEDIATE", "INSERT INTO gateway_meta VALUES ('one', '1')", "COMMIT"]
    await store.write(lambda c: c.set_trace_callback(None))


@pytest_twisted.ensureDeferred
async def test_failing_job_alone_rolls_back(store: Store) -> None:
    """A failing job alone in its batch: its changes are rolled back, its Deferred fails with
    its own error, nothing counts as a failed commit, and the next write goes through."""
    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO gateway_meta VALUES ('bad', '1')")
        raise ValueError("refused")

    with pytest.raises(ValueError):
        await store.write(bad)
    assert store.stats.failed_commits == 0
    await store.write(lambda c: c.execute("INSERT INTO gateway_meta VALUES ('good', '1')"))
    keys = await store.read(lambda c: [r[0] for r in c.execute("SELECT key FROM gateway_meta")])
    assert keys == ["good"]


@pytest_twisted.ensureDeferred
async def test_transaction_lost_under_a_job_alone_fails_it(store: Store) -> None:
    """When the transaction ends under a job (SQLite rolls it back on a disk I/O error; here
    the job ends it itself), the job fails with StoreError -- never reported as done -- and
    its changes are gone, as in a batch of many."""
    def lost(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO gateway_meta VALUES ('lost', '1')")
        conn.execute("ROLLBACK")

    with pytest.raises(StoreError):
        await store.write(lost)
    assert store.stats.failed_commits == 1
    def lost_then_raise(conn: sqlite3.Connection) -> None:
        lost(conn)
        raise ValueError("after the rollback")

    with pytest.raises(StoreError):
        await store.write(lost_then_raise)
    await store.write(lambda c: c.execute("INSERT INTO gateway_meta VALUES ('next', '1')"))
    keys = await store.read(lambda c: [r[0] for r in c.execute("SELECT key FROM gateway_meta")])
    assert keys == ["next"]


@pytest.mark.parametrize("brief", BRIEFS)
def test_brief_extraction_without_words_differs_only_in_words(brief: ops.BriefRecord) -> None:
    """``words=False`` extracts every search field and identifier as before; only the
    word-index columns (never stored for a temporary record) are left empty."""
    fields = ops.brief_fields("ill-p-1", brief)
    full = extract_light_fields(fields)
    light = extract_light_fields(fields, words=False)
    assert light.words == () and any(full.words)
    assert dataclasses.replace(full, words=()) == light


def test_brief_record_has_no_word_index_row(tmp_path: Path) -> None:
    """A temporary item's brief record is kept out of the word index; a lendable record
    written by the same code path still gets its row."""
    from gateway.backends.embedded.records import upsert_extracted
    from gateway.storage.store import open_database

    conn = open_database(tmp_path / "db.sqlite3")
    brief = ops.create_brief_record(conn, "ill-p-1", BRIEFS[0])
    assert conn.execute("SELECT count(*) FROM records_fts WHERE rowid = ?",
                        (brief,)).fetchone()[0] == 0
    fields = ops.brief_fields("local-2", BRIEFS[0])
    lendable, _ = upsert_extracted(conn, extract_light_fields(fields), b"x", temporary=False)
    row = conn.execute("SELECT title, author FROM records_fts WHERE rowid = ?",
                       (lendable,)).fetchone()
    assert row is not None and "benchmark" in row[0] and "bench" in row[1]
