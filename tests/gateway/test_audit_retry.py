"""Audit rows survive a busy or locked database: kept in memory (bounded), written again until
the database answers, in order, flushed on stop; a row that is itself at fault is not kept."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from gateway.audit import RETRY_INTERVAL, AuditBatch, AuditEntry, AuditLog
from gateway.storage.store import StoreError, open_database
from tests.log_observers import log_observer


class BusyStore:
    """A store double: fails every write like a locked database while ``busy``."""

    def __init__(self) -> None:
        self.conn = open_database(":memory:")
        self.busy = True
        self.running = True
        self.pending = 0
        self.attempts = 0

    def write(self, work: Any) -> Deferred[Any]:
        self.attempts += 1
        if self.busy:
            return fail(StoreError("database write failed: database is locked"))
        self.conn.execute("BEGIN")
        try:
            result = work(self.conn)
        except Exception as e:  # noqa: BLE001 - handed back like the real writer does
            self.conn.execute("ROLLBACK")
            return fail(e)
        self.conn.execute("COMMIT")
        return succeed(result)

    def operations(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT operation FROM audit ORDER BY id")]


def _log(store: BusyStore, clock: Clock, limit: int = 100000) -> AuditLog:
    settings = SimpleNamespace(bodies="none", store_patron_ids=False, max_pending_rows=limit)
    return AuditLog(store, settings, clock)  # type: ignore[arg-type]


def _entry(operation: str) -> AuditEntry:
    return AuditEntry(protocol="ncip", operation=operation, outcome="success", peer="reshare",
                      time=f"2026-01-01T00:00:00.{len(operation):06d}+00:00")


def _events() -> tuple[list[dict[str, Any]], Any]:
    events: list[dict[str, Any]] = []
    observer = log_observer(events.append)
    globalLogPublisher.addObserver(observer)
    return events, lambda: globalLogPublisher.removeObserver(observer)


def test_rows_kept_while_busy_and_written_in_order_when_it_answers() -> None:
    store, clock = BusyStore(), Clock()
    log = _log(store, clock)
    events, done = _events()
    try:
        log.record(_entry("LookupUser"))
        log.record_many([_entry("init"), _entry("search")])
        log.record(_entry("AcceptItem"))
        assert log.pending == 4 and store.operations() == []
        clock.advance(RETRY_INTERVAL)          # still locked: kept, tried again later
        assert log.pending == 4 and store.attempts == 4
        store.busy = False
        clock.advance(RETRY_INTERVAL)
    finally:
        done()
    assert store.operations() == ["LookupUser", "init", "search", "AcceptItem"]
    assert (log.pending, log.written, log.retried, log.failed, log.dropped) == (0, 4, 4, 0, 0)
    assert clock.getDelayedCalls() == []
    assert not [e for e in events if "not written" in e.get("log_format", "")]


def test_retry_queue_is_bounded() -> None:
    """Past ``max_pending_rows`` the oldest rows are dropped, counted and logged."""
    store, clock = BusyStore(), Clock()
    log = _log(store, clock, limit=3)
    events, done = _events()
    try:
        for n in range(5):
            log.record(_entry("x" * (n + 1)))
    finally:
        done()
    assert (log.pending, log.dropped) == (3, 2)
    assert any("retry queue full" in e.get("log_format", "") for e in events)
    store.busy = False
    clock.advance(RETRY_INTERVAL)
    assert store.operations() == ["xxx", "xxxx", "xxxxx"]


def test_drain_on_stop_writes_kept_rows() -> None:
    """A graceful stop writes what was kept, without waiting for the retry timer."""
    store, clock = BusyStore(), Clock()
    log = _log(store, clock)
    batch = AuditBatch(log, clock)
    batch.record(_entry("search"))
    batch.flush()
    log.record(_entry("LookupUser"))
    store.busy = False
    results: list[Any] = []
    log.drain().addBoth(results.append)
    assert results == [None]
    assert store.operations() == ["search", "LookupUser"] and log.pending == 0
    assert clock.getDelayedCalls() == []


def test_drain_gives_up_on_a_database_that_stays_locked() -> None:
    """Still locked at stop: a bounded number of attempts, then the loss is counted and
    logged (the process is exiting; nothing can keep the rows)."""
    store, clock = BusyStore(), Clock()
    log = _log(store, clock)
    log.record(_entry("LookupUser"))
    events, done = _events()
    results: list[Any] = []
    try:
        log.drain().addBoth(results.append)
    finally:
        done()
    assert results == [None] and log.pending == 0 and log.failed == 1
    assert any("lost at stop" in e.get("log_format", "") for e in events)
    assert clock.getDelayedCalls() == []


def test_a_row_at_fault_is_not_kept() -> None:
    """Only a failed commit is retried: a row the database refuses is counted as failed."""
    store, clock = BusyStore(), Clock()
    store.busy = False
    log = _log(store, clock)
    store.conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON audit "
                       "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    log.record(_entry("LookupUser"))
    assert (log.pending, log.failed) == (0, 1)
    assert store.operations() == []
