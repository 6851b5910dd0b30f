# -*- test-case-name: tests.gateway.upstream_ncip.test_faults -*-
"""The outbox: every state-changing call to the LMS, recorded durably before it is made.

A row is written (and committed) before the LMS is called: the broker request it serves (its
replay key, which carries the fingerprint), the upstream service, the upstream RequestId and
the request as sent. The LMS's answer is written as soon as it arrives; the row is marked
``committed`` once the gateway's own unit of work (the change mirrored locally, the broker's
reply, its idempotency record, the audit row) has committed. A broker's retry of the same
request finds the row: ``answered`` means the LMS did it and only our commit was lost (its
answer is used, the LMS is not called again); ``pending`` means the answer itself was lost
(crash or time-out), and the profile says how to settle it.

It is its own SQLite file beside the gateway's database: the row is written by a run of the
unit of work that is then rolled back (:mod:`.unit`), so it cannot be in the database's
transaction. Both files are WAL with ``synchronous=FULL``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY,
    unit            TEXT NOT NULL,        -- the broker request: peer, service, RequestId#digest
    seq             INTEGER NOT NULL,     -- the n-th upstream change of that unit
    service         TEXT NOT NULL,
    upstream_id     TEXT NOT NULL,        -- the RequestId we send upstream
    request         BLOB NOT NULL,        -- the upstream request as sent (no secrets in it)
    state           TEXT NOT NULL CHECK (state IN ('pending', 'answered', 'committed',
                                                     'abandoned')),
    status          INTEGER,
    reply           BLOB,
    created_at      REAL NOT NULL,
    answered_at     REAL,
    committed_at    REAL,
    UNIQUE (unit, seq)
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox(state);
"""


@dataclass(frozen=True)
class OutboxRow:
    """One upstream change."""

    id: int
    unit: str
    seq: int
    service: str
    upstream_id: str
    request: bytes
    state: str
    status: int | None
    reply: bytes | None


class Outbox:
    """The outbox file; safe to use from the store's writer thread and any other thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                     timeout=5.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)

    def _row(self, row: tuple[object, ...] | None) -> OutboxRow | None:
        if row is None:
            return None
        return OutboxRow(*row)  # type: ignore[arg-type]

    _COLUMNS = "id, unit, seq, service, upstream_id, request, state, status, reply"

    def find(self, unit: str, seq: int) -> OutboxRow | None:
        """The row for the n-th change of a unit, if one was recorded."""
        with self._lock:
            return self._row(self._conn.execute(
                f"SELECT {self._COLUMNS} FROM outbox WHERE unit = ? AND seq = ?",
                (unit, seq)).fetchone())

    def record(self, unit: str, seq: int, service: str, upstream_id: str,
               request: bytes, *, replace: bool = False) -> None:
        """A change about to be sent (committed before this returns); ``replace``: in place
        of an abandoned row (an earlier try the LMS refused: nothing was done)."""
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self._lock:
            self._conn.execute(
                f"{verb} INTO outbox (unit, seq, service, upstream_id, request, state,"
                " created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                (unit, seq, service, upstream_id, request, time.time()))

    def answered(self, unit: str, seq: int, status: int, reply: bytes) -> None:
        """The LMS's answer to a recorded change."""
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET state = 'answered', status = ?, reply = ?, answered_at = ?"
                " WHERE unit = ? AND seq = ? AND state = 'pending'",
                (status, reply, time.time(), unit, seq))

    def abandon(self, unit: str, seq: int) -> None:
        """Nothing was done: the LMS refused the change with a Problem, or the call never
        reached it (connection refused). A retry asks afresh."""
        with self._lock:
            self._conn.execute("UPDATE outbox SET state = 'abandoned' WHERE unit = ? AND"
                               " seq = ? AND state IN ('pending', 'answered')", (unit, seq))

    def unknown(self, unit: str, seq: int) -> None:
        """The LMS answered, but not so that we can tell whether it made the change (an
        HTTP 500 page, a malformed body): settled like a lost answer."""
        with self._lock:
            self._conn.execute("UPDATE outbox SET state = 'pending' WHERE unit = ? AND"
                               " seq = ? AND state = 'answered'", (unit, seq))

    def committed(self, unit: str) -> None:
        """The unit's own commit is done: its rows are history."""
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET state = 'committed', committed_at = ?"
                " WHERE unit = ? AND state IN ('pending', 'answered')", (time.time(), unit))

    def open_rows(self) -> list[OutboxRow]:
        """Changes not settled yet (for /healthz and staff)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM outbox WHERE state IN ('pending', 'answered')"
                " ORDER BY id").fetchall()
        return [OutboxRow(*row) for row in rows]

    def count(self, state: str) -> int:
        """How many rows are in ``state`` (``pending``: the LMS's outcome unknown, unsettled;
        ``answered``: known, the broker's retry to commit it)."""
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM outbox WHERE state = ?",
                                     (state,)).fetchone()
        return int(row[0])

    def rows_for(self, unit: str) -> list[OutboxRow]:
        """Every upstream change one broker request caused (the linked upstream leg)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM outbox WHERE unit = ? ORDER BY seq",
                (unit,)).fetchall()
        return [OutboxRow(*row) for row in rows]

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._conn.close()
