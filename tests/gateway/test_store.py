# -*- test-case-name: tests.gateway.test_store -*-
"""The store: migrations, the writer thread's group commit, and durability across kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import cast

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet import reactor as global_reactor
from twisted.internet.interfaces import IReactorFromThreads

from gateway.storage.schema import SCHEMA_VERSION
from gateway.storage.store import SchemaTooNew, Store, StoreError, connect, migrate, open_database

reactor = cast(IReactorFromThreads, global_reactor)


def test_migrate_creates_current_schema(tmp_path: Path) -> None:
    """A new database is brought to the current version in WAL mode with synchronous=FULL
    (and temporary storage in memory)."""
    conn = open_database(tmp_path / "db.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"records", "items", "patrons", "holds", "loans", "rs_requests", "audit",
            "idempotency", "records_fts"} <= tables


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    """Running the migrations again on an up-to-date database changes nothing."""
    conn = open_database(tmp_path / "db.sqlite3")
    conn.execute("INSERT INTO gateway_meta VALUES ('k', 'v')")
    assert migrate(conn) == SCHEMA_VERSION
    assert conn.execute("SELECT value FROM gateway_meta").fetchone()[0] == "v"


def test_migrate_refuses_newer_schema(tmp_path: Path) -> None:
    """A database from a newer release is refused rather than damaged."""
    conn = connect(tmp_path / "db.sqlite3")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew):
        migrate(conn)


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration that fails half-way leaves the database at the previous version."""
    import gateway.storage.store as store_module

    monkeypatch.setattr(store_module, "MIGRATIONS",
                        ["CREATE TABLE a (x);", "CREATE TABLE b (y); CREATE TABLE a (z);"])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    conn = connect(tmp_path / "db.sqlite3")
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"a"}


@pytest_twisted.ensureDeferred
async def test_group_commit_batches_concurrent_writes(store: Store) -> None:
    """Many writes queued together commit in fewer transactions, each acknowledged after COMMIT."""
    def insert(n: int):
        def work(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO gateway_meta VALUES (?, ?)", (f"k{n}", str(n)))
            return n
        return work

    results = await defer.gatherResults([store.write(insert(n)) for n in range(200)])
    assert results == list(range(200))
    assert store.stats.jobs == 200
    assert store.stats.commits < 200
    count = await store.read(lambda c: c.execute("SELECT count(*) FROM gateway_meta").fetchone()[0])
    assert count == 200


@pytest_twisted.ensureDeferred
async def test_failing_job_rolls_back_alone(store: Store) -> None:
    """A job that raises loses its own changes; the other jobs of its batch still commit."""
    def good(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO gateway_meta VALUES ('good', '1')")

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO gateway_meta VALUES ('bad', '1')")
        raise ValueError("refused")

    outcomes = await defer.DeferredList([store.write(good), store.write(bad), store.write(good)],
                                        consumeErrors=True)
    assert [ok for ok, _ in outcomes] == [True, False, False]
    # Twisted types a DeferredList entry as (bool, result) even where it holds the Failure
    assert outcomes[1][1].check(ValueError)  # type: ignore[attr-defined]
    assert outcomes[2][1].check(  # type: ignore[attr-defined]
        sqlite3.IntegrityError)  # duplicate key, rolled back alone
    keys = await store.read(lambda c: [r[0] for r in c.execute("SELECT key FROM gateway_meta")])
    assert keys == ["good"]


@pytest_twisted.ensureDeferred
async def test_write_after_stop_fails_cleanly(store: Store) -> None:
    """Once stopped, the store refuses work with StoreError instead of hanging."""
    await store.stop()
    with pytest.raises(StoreError):
        await store.write(lambda c: None)


def test_store_refuses_unwritable_database(tmp_path: Path) -> None:
    """A database that cannot be opened for writing is reported at start."""
    target = tmp_path / "dir-not-file"
    target.mkdir()
    with pytest.raises((StoreError, sqlite3.Error)):
        Store(target, reactor).start()


_WRITER = textwrap.dedent("""
    import sys
    from twisted.internet import reactor
    from gateway.storage.store import Store

    store = Store(sys.argv[1], reactor)
    store.start()
    counter = [0]

    def insert(n):
        def work(conn):
            conn.execute("INSERT INTO gateway_meta VALUES (?, ?)", ("k%d" % n, str(n)))
        return work

    def acknowledge(_, n):
        sys.stdout.write("%d\\n" % n)
        sys.stdout.flush()

    def burst():
        for _ in range(8):
            n = counter[0]
            counter[0] += 1
            store.write(insert(n)).addCallback(acknowledge, n)
        reactor.callLater(0.001, burst)

    reactor.callWhenRunning(burst)
    reactor.run()
""")


@pytest.mark.slow
def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    """Every write acknowledged before SIGKILL is in the database afterwards, which is intact."""
    db = tmp_path / "db.sqlite3"
    for trial in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db)],
                                stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[2])
        acknowledged = []
        assert proc.stdout is not None
        for line in proc.stdout:
            acknowledged.append(int(line))
            if len(acknowledged) >= 300 * (trial + 1):
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        acknowledged += [int(x) for x in proc.stdout.read().split()]
        conn = connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {int(r[0][1:]) for r in conn.execute("SELECT key FROM gateway_meta")}
        conn.close()
        missing = set(acknowledged) - stored
        assert not missing, f"trial {trial}: {len(missing)} acknowledged writes lost"
        # the next trial starts where this one's keys end
        db_conn = connect(db)
        db_conn.execute("DELETE FROM gateway_meta")
        db_conn.close()
