# -*- test-case-name: tests.gateway.test_audit_gather -*-
"""``AuditLog.record_soon``: rows handed over while the writer is busy go in one job, on the
store's real writer thread; none is lost, none is written twice, a stopped store loses none
silently."""

from __future__ import annotations

import sqlite3
import threading
from types import SimpleNamespace
from typing import cast

import pytest_twisted
from twisted.internet import defer, task
from twisted.internet import reactor as global_reactor
from twisted.internet.interfaces import IReactorTime

from gateway.audit import AuditEntry, AuditLog
from gateway.storage.store import Store


def _audit(store: Store) -> AuditLog:
    settings = SimpleNamespace(bodies="none", store_patron_ids=False)
    return AuditLog(store, settings, cast(IReactorTime, global_reactor))  # type: ignore[arg-type]


def _entry(n: int) -> AuditEntry:
    return AuditEntry(protocol="ncip", operation="LookupUser", outcome="success",
                      broker_request_id=f"r{n}", time=f"2026-12-07T00:00:00.{n:06d}+00:00")


async def _settled(store: Store) -> None:
    while store.pending:
        await task.deferLater(global_reactor, 0.01, lambda: None)


def _ids(store: Store) -> list[str]:
    conn = sqlite3.connect(store.path)
    try:
        return [r[0] for r in conn.execute("SELECT broker_request_id FROM audit ORDER BY id")]
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_rows_handed_over_while_the_writer_is_busy_go_in_one_job(store: Store) -> None:
    """While the writer is held, five rows make one job (one executemany); all are written, in
    order, once; a row handed over after the writer took the job goes in a new job."""
    audit = _audit(store)
    release, started = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    held = store.write(hold)
    while not started.is_set():
        await task.deferLater(global_reactor, 0.005, lambda: None)
    jobs_before = store.stats.jobs
    for n in range(5):
        audit.record_soon(_entry(n))
    assert store.pending == 2  # the held job and one job for the five rows
    release.set()
    await held
    await _settled(store)
    assert store.stats.jobs - jobs_before == 2
    audit.record_soon(_entry(5))
    await _settled(store)
    assert _ids(store) == [f"r{n}" for n in range(6)]
    assert audit.written == 6 and audit.failed == 0


@pytest_twisted.ensureDeferred
async def test_a_stopped_store_counts_the_rows_and_gathers_afresh(store: Store) -> None:
    """Rows handed to a store that has stopped are counted as failed (not kept for ever in a
    gathering nobody will write); the next rows start a gathering of their own."""
    audit = _audit(store)
    await store.stop()
    audit.record_soon(_entry(1))
    audit.record_soon(_entry(2))
    assert audit.failed == 2 and audit.written == 0
    assert audit._gathering is None


def test_record_soon_stamps_rows_without_a_time() -> None:
    """A row without a time is stamped with the log's clock, as record() does."""
    written: list[list[tuple[object, ...]]] = []

    class Immediate:
        running = True

        def write(self, work: object) -> defer.Deferred[None]:
            conn = SimpleNamespace(executemany=lambda sql, rows: written.append(list(rows)))
            return defer.succeed(work(conn))  # type: ignore[operator]

    clock = task.Clock()
    clock.advance(1_800_000_000.25)
    audit = AuditLog(Immediate(), SimpleNamespace(bodies="none"), clock)  # type: ignore[arg-type]
    audit.record_soon(AuditEntry(protocol="ncip", operation="LookupUser", outcome="success"))
    audit.record_soon(AuditEntry(protocol="ncip", operation="LookupUser", outcome="success"))
    assert len(written) == 2  # a store that writes at once writes each row alone
    assert written[0][0][15] == "2027-01-15T08:00:00.250000+00:00"
    assert audit.written == 2
