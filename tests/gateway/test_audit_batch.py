"""AuditBatch: Z39.50 audit rows gathered for a moment and written as one writer job.

Runs on a real SQLite database through a synchronous stand-in for the store's writer (it
counts the jobs) and a :class:`twisted.internet.task.Clock`.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from gateway.audit import AuditBatch, AuditEntry, AuditLog, audit_time, audit_time_at
from gateway.storage.store import open_database
from tests.audit_fixtures import SyncStore, as_store, audit_settings
from tests.log_observers import log_observer


@pytest.fixture
def conn(tmp_path: Path) -> Any:
    connection = open_database(tmp_path / "db.sqlite3")
    yield connection
    connection.close()


def _batch(conn: sqlite3.Connection, **options: Any) -> tuple[AuditBatch, SyncStore, Clock]:
    clock = Clock()
    clock.advance(datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc).timestamp())
    store = SyncStore(conn)
    log = AuditLog(as_store(store), audit_settings(), clock)
    return AuditBatch(log, clock, **options), store, clock


def _entry(operation: str, **fields: Any) -> AuditEntry:
    return AuditEntry(protocol="z3950", operation=operation, outcome="success", **fields)


def _rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(
        "SELECT time, operation, peer, duration_us FROM audit ORDER BY id")]


def test_rows_are_written_together_after_the_delay(conn: sqlite3.Connection) -> None:
    """Rows wait for the delay, then go as one job, in order, each with the time it was
    recorded at (or its own) and every field kept."""
    batch, store, clock = _batch(conn, delay=0.01)
    batch.record(_entry("init", peer="reshare", duration_us=7))
    clock.advance(0.004)
    batch.record(_entry("search", time="2031-01-01T00:00:00.000000+00:00"))
    batch.record(_entry("close"))
    assert store.jobs == 0 and _rows(conn) == []
    clock.advance(0.006)
    assert store.jobs == 1
    assert _rows(conn) == [
        ("2031-05-06T07:08:09.000000+00:00", "init", "reshare", 7),
        ("2031-01-01T00:00:00.000000+00:00", "search", None, None),
        ("2031-05-06T07:08:09.004000+00:00", "close", None, None)]
    assert (batch.log.written, batch.log.failed) == (3, 0)
    clock.advance(1)
    assert store.jobs == 1  # nothing more pending, no empty job


def test_flush_writes_at_once_and_cancels_the_timer(conn: sqlite3.Connection) -> None:
    """flush() (graceful stop) hands the rows over now; the timer does not fire again."""
    batch, store, clock = _batch(conn)
    batch.record(_entry("close"))
    batch.flush()
    assert store.jobs == 1 and len(_rows(conn)) == 1
    assert clock.getDelayedCalls() == []
    batch.flush()
    assert store.jobs == 1


def test_a_full_batch_goes_at_once(conn: sqlite3.Connection) -> None:
    """max_rows rows are handed over without waiting for the delay."""
    batch, store, clock = _batch(conn, max_rows=2)
    batch.record(_entry("init"))
    batch.record(_entry("search"))
    assert store.jobs == 1 and len(_rows(conn)) == 2
    assert clock.getDelayedCalls() == []


def test_record_many_failure_is_logged_and_counted() -> None:
    """A batch the store cannot write is logged once and every row counted in ``failed``."""
    class Broken:
        def write(self, work: Any) -> Deferred[Any]:
            return fail(RuntimeError("disk full"))

    log = AuditLog(Broken(), SimpleNamespace(bodies="none"), Clock())  # type: ignore[arg-type]
    events: list[dict[str, Any]] = []
    observer = log_observer(events.append)
    globalLogPublisher.addObserver(observer)
    try:
        results: list[Any] = []
        log.record_many([_entry("init", time="t"), _entry("close", time="t")]).addBoth(
            results.append)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert results == [None]
    assert (log.written, log.failed) == (0, 2)
    [event] = [e for e in events if "not written" in e.get("log_format", "")]
    assert (event["count"], event["error"]) == (2, "disk full")


def test_audit_time_at_is_the_datetime_text() -> None:
    """audit_time_at gives datetime's own text for any timestamp: microseconds rounded half to
    even, a carry into the next second, before 1970, and many per second."""
    rng = random.Random(7)
    stamps = [rng.uniform(-1e9, 4e9) for _ in range(20000)]
    stamps += [1e9 + 0.9999995, 1e9 + 0.0000005, 1.5e9 + 0.9999996, 1e9 + 0.4999995, 0.0,
               -0.0000004, -1.5, 1_900_000_000.123456]
    stamps += [2e9 + k / 1e6 for k in range(0, 1_000_000, 997)]
    for stamp in stamps:
        expected = audit_time(datetime.fromtimestamp(stamp, timezone.utc))
        assert audit_time_at(stamp) == expected, stamp
