"""Store.read_now: small indexed reads on the reactor thread when SQLite answers at once, and
on a reader thread otherwise -- the reactor never waits on a lock."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import pytest_twisted

from gateway.storage.store import NotNow, Store


def _count(conn: sqlite3.Connection) -> tuple[int, str]:
    return (conn.execute("SELECT count(*) FROM gateway_meta").fetchone()[0],
            threading.current_thread().name)


@pytest_twisted.ensureDeferred
async def test_read_now_runs_inline_and_sees_commits(store: Store) -> None:
    """An uncontended read runs on the calling thread (the Deferred has fired on return) and
    sees what the writer committed, like a read on a reader thread."""
    await store.write(lambda c: c.execute("INSERT INTO gateway_meta VALUES ('k1', 'v')"))
    d = store.read_now(_count)
    fired: list[object] = []

    def seen(result: tuple[int, str]) -> tuple[int, str]:
        fired.append(result)
        return result

    d.addCallback(seen)
    assert fired, "read_now should answer at once"
    count, thread = await d
    assert thread == threading.current_thread().name
    assert (count, thread) != await store.read(_count)  # the pool reads on another thread
    assert count == (await store.read(_count))[0]
    await store.write(lambda c: c.execute("INSERT INTO gateway_meta VALUES ('k2', 'v')"))
    assert (await store.read_now(_count))[0] == count + 1


@pytest_twisted.ensureDeferred
async def test_read_now_errors_are_the_works(store: Store) -> None:
    """An exception from the work fails the Deferred once; it is not run again elsewhere."""
    calls: list[str] = []

    def work(conn: sqlite3.Connection) -> None:
        calls.append(threading.current_thread().name)
        raise LookupError("no such patron")

    with pytest.raises(LookupError):
        await store.read_now(work)
    assert calls == [threading.current_thread().name]


@pytest_twisted.ensureDeferred
async def test_read_now_when_sqlite_is_busy_goes_to_a_reader_thread(store: Store) -> None:
    """The inline connection never waits on a lock (busy timeout 0): SQLITE_BUSY -- or any
    SQLite error -- on the reactor thread sends the read to a reader thread, whose answer
    (or error) is the result."""
    await store.read_now(_count)
    assert store._inline is not None
    assert store._inline.execute("PRAGMA busy_timeout").fetchone()[0] == 0
    here = threading.current_thread().name
    calls: list[str] = []

    def work(conn: sqlite3.Connection) -> tuple[int, str]:
        calls.append(threading.current_thread().name)
        if threading.current_thread().name == here:
            raise sqlite3.OperationalError("database is locked")
        return _count(conn)

    count, thread = await store.read_now(work)
    assert calls[0] == here and thread != here and len(calls) == 2
    assert count == (await store.read(_count))[0]


@pytest_twisted.ensureDeferred
async def test_read_now_not_now_runs_the_fallback_on_a_reader_thread(store: Store) -> None:
    """A work that raises NotNow (it would not stay bounded) hands the read to a reader
    thread, which runs the fallback (or the work itself when there is none)."""
    here = threading.current_thread().name
    calls: list[str] = []

    def bounded(conn: sqlite3.Connection) -> tuple[int, str]:
        calls.append("bounded@" + threading.current_thread().name)
        raise NotNow("count not cached")

    def fallback(conn: sqlite3.Connection) -> tuple[int, str]:
        calls.append("fallback")
        return _count(conn)

    count, thread = await store.read_now(bounded, fallback)
    assert calls == [f"bounded@{here}", "fallback"] and thread != here

    def once(conn: sqlite3.Connection) -> tuple[int, str]:
        if threading.current_thread().name == here:
            raise NotNow("not on the reactor")
        return _count(conn)

    assert (await store.read_now(once))[1] != here
