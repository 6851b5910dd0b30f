# -*- test-case-name: tests.gateway.test_store_lazy -*-
"""``Store.write_lazy``: work nobody waits for shares commits, and never delays work someone
waits for, nor a stop. The wait is made very long here, so that each assertion is about what
ends it, not about timing."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import pytest
import pytest_twisted
from twisted.internet import defer

import gateway.storage.store as store_module
from gateway.storage.store import Store


def _insert(key: str) -> Callable[[sqlite3.Connection], str]:
    def work(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO gateway_meta VALUES (?, '1')", (key,))
        return key
    return work


@pytest.fixture
def long_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "LAZY_WAIT", 30.0)


@pytest_twisted.ensureDeferred
async def test_waited_for_work_ends_the_lazy_wait_and_shares_its_commit(
        store: Store, long_wait: None) -> None:
    """A lazy job alone waits (here up to 30 s) for company; a job someone waits for, written
    after it, ends the wait at once, and both commit in one transaction."""
    commits = store.stats.commits
    lazy = store.write_lazy(_insert("lazy"))
    started = time.monotonic()
    assert await store.write(_insert("durable")) == "durable"
    assert time.monotonic() - started < 10
    assert await lazy == "lazy"
    assert store.stats.commits == commits + 1
    rows = await store.read(lambda c: c.execute("SELECT count(*) FROM gateway_meta WHERE key IN "
                                                "('lazy', 'durable')").fetchone()[0])
    assert rows == 2


@pytest_twisted.ensureDeferred
async def test_stop_ends_the_lazy_wait_and_keeps_the_rows(store: Store, long_wait: None,
                                                          ) -> None:
    """Stopping the store during a lazy wait commits the lazy jobs and stops at once."""
    lazy = store.write_lazy(_insert("lazy-at-stop"))
    started = time.monotonic()
    await store.stop()
    assert time.monotonic() - started < 10
    assert await lazy == "lazy-at-stop"
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("SELECT count(*) FROM gateway_meta WHERE key = 'lazy-at-stop'"
                            ).fetchone()[0] == 1
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_lazy_jobs_written_together_share_one_commit(store: Store) -> None:
    """Lazy jobs queued together commit together, each acknowledged after that commit."""
    commits = store.stats.commits
    results = await defer.gatherResults([store.write_lazy(_insert(f"k{n}")) for n in range(50)])
    assert results == [f"k{n}" for n in range(50)]
    assert store.stats.commits - commits < 50
