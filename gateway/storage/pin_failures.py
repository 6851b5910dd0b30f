# -*- test-case-name: tests.gateway.test_ncip_lookups -*-
"""Wrong PINs per patron in the gateway's store (the ``pin_failures`` table): the books of the
PIN lock-out policy (:class:`gateway.domain.lookups.LockoutPolicy`)."""

from __future__ import annotations

import sqlite3

from twisted.internet.defer import Deferred

from gateway.storage.store import Store


def pin_state(conn: sqlite3.Connection, patron_id: int) -> tuple[int, float]:
    """The patron's stored (failures, locked_until)."""
    row = conn.execute("SELECT failures, locked_until FROM pin_failures WHERE patron_id = ?",
                       (patron_id,)).fetchone()
    return (int(row[0]), float(row[1])) if row is not None else (0, 0.0)


def record_pin_failure(conn: sqlite3.Connection, patron_id: int, *, limit: int,
                       lock_until: float) -> None:
    """One more wrong PIN (in the caller's transaction); at the limit, lock."""
    conn.execute("INSERT INTO pin_failures (patron_id, failures, locked_until) "
                 "VALUES (?, 1, 0) ON CONFLICT (patron_id) DO UPDATE SET "
                 "failures = failures + 1", (patron_id,))
    if pin_state(conn, patron_id)[0] >= limit:
        conn.execute("UPDATE pin_failures SET failures = 0, locked_until = ? "
                     "WHERE patron_id = ?", (lock_until, patron_id))


def clear_pin_failures(conn: sqlite3.Connection, patron_id: int) -> None:
    """The right PIN: the count starts again."""
    conn.execute("DELETE FROM pin_failures WHERE patron_id = ?", (patron_id,))


class StorePinFailures:
    """:class:`gateway.domain.books.PinFailureBook` in the gateway's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def state(self, patron_id: int) -> Deferred[tuple[int, float]]:
        """See :meth:`PinFailureBook.state` (one row by key: at once when SQLite can)."""
        read_now = getattr(self.store, "read_now", self.store.read)  # stand-ins: read only
        return read_now(lambda conn: pin_state(conn, patron_id))

    def record_failure(self, patron_id: int, *, limit: int,
                       lock_until: float) -> Deferred[None]:
        """See :meth:`PinFailureBook.record_failure`."""
        return self.store.write(lambda conn: record_pin_failure(
            conn, patron_id, limit=limit, lock_until=lock_until))

    def record_success(self, patron_id: int) -> Deferred[None]:
        """See :meth:`PinFailureBook.record_success`."""
        return self.store.write(lambda conn: clear_pin_failures(conn, patron_id))
