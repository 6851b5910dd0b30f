# -*- test-case-name: tests.gateway.test_audit,tests.gateway.test_daemon -*-
"""The ``gateway_meta`` table and the database's own facts: last start, the health probe, the
legacy key row, the file the database lives in."""

from __future__ import annotations

from pathlib import Path

from gateway.storage.store import Connection

LEGACY_KEY_NAME = "patron_hash_key"
"""The ``gateway_meta`` row where versions before the key file kept the gateway key."""


def database_file(conn: Connection) -> Path | None:
    """The file the connection's main database lives in (None for a database in memory)."""
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main":
            return Path(row[2]) if row[2] else None
    return None


def record_start(conn: Connection, moment: str) -> None:
    """Note the time the daemon started: a real write, so that a database the daemon cannot
    write is refused at start-up."""
    conn.execute("INSERT INTO gateway_meta (key, value) VALUES ('last_start', ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (moment,))


def record_probe(conn: Connection, moment: str) -> None:
    """A tiny real write, to see whether the database takes writes again after a failed
    commit (an empty transaction would commit on a full disk too)."""
    conn.execute("INSERT OR REPLACE INTO gateway_meta (key, value) VALUES ('health_probe', ?)",
                 (moment,))


def legacy_key(conn: Connection) -> bytes | None:
    """The gateway key an older version kept in the database, if it is still there."""
    row = conn.execute("SELECT value FROM gateway_meta WHERE key = ?",
                       (LEGACY_KEY_NAME,)).fetchone()
    return bytes.fromhex(row[0]) if row is not None else None


def forget_legacy_key(conn: Connection) -> None:
    """Remove the key row once the key lives in its own file."""
    conn.execute("DELETE FROM gateway_meta WHERE key = ?", (LEGACY_KEY_NAME,))
