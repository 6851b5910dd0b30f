# -*- test-case-name: tests.gateway.test_import_deferred -*-
"""Secondary indexes of the catalogue left out while a bulk load fills an (almost) empty
catalogue, and built again once it is loaded.

Every record lands on a random page of the title and author indexes; built row by row they are
a large share of a million-record load's writes, while ``CREATE INDEX`` afterwards sorts the
rows once. Only indexes no write needs are dropped (the UNIQUE ones and the primary keys that
the importer's upserts look up stay), so a load writes exactly the rows it would have written;
readers meanwhile get the same answers, only by scanning.

The drop and a ``gateway_meta`` row holding the indexes' own ``CREATE`` statements are one
transaction, and so are the rebuild and the row's removal: whatever stops a load (SIGKILL, a
full disk), the next :func:`restore_indexes` - run by every opening of the database
(:func:`gateway.storage.store.migrate`) and at the end of the load - builds them again.
"""

from __future__ import annotations

import json
import sqlite3

DEFERRABLE = ("records_title", "records_author", "records_year", "records_local_nocase")
"""Indexes that no insert or upsert of a load reads (readers use them, and scan without), on
values a load brings in any order. Indexes on the new row's id (``record_identifiers_record``,
``items_record``) or the time (``oai_records_datestamp``) only ever grow at their end, which
costs a load little, while building them again would cost more (record_identifiers_record:
0.6 s of CPU at 100,000 records, against 0.06-0.2 s for each of these)."""

META_KEY = "bulk_load_dropped_indexes"
"""The ``gateway_meta`` row listing the ``CREATE INDEX`` statements of dropped indexes."""


def drop_indexes(conn: sqlite3.Connection) -> list[str]:
    """Drop the :data:`DEFERRABLE` indexes, noting their statements; returns their names.

    Runs its own transaction (the connection must be outside one).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        marks = ",".join("?" * len(DEFERRABLE))
        rows = conn.execute(f"SELECT name, sql FROM sqlite_master WHERE type = 'index'"  # noqa: S608
                            f" AND name IN ({marks}) AND sql IS NOT NULL ORDER BY name",
                            DEFERRABLE).fetchall()
        if rows:
            noted = _noted(conn)
            noted.update({name: sql for name, sql in rows})
            conn.execute("INSERT INTO gateway_meta (key, value) VALUES (?, ?)"
                         " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                         (META_KEY, json.dumps(noted, sort_keys=True)))
            for name, _sql in rows:
                conn.execute(f'DROP INDEX "{name}"')
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [name for name, _sql in rows]


def dropped_indexes(conn: sqlite3.Connection) -> list[str]:
    """Names of the indexes a bulk load dropped and that are not built again yet."""
    return sorted(_noted(conn))


def restore_indexes(conn: sqlite3.Connection) -> list[str]:
    """Build the indexes a bulk load dropped (one transaction); returns their names.

    Cheap (one lookup) when there are none. The connection must be outside a transaction.
    """
    if not _noted(conn):
        return []
    conn.execute("BEGIN IMMEDIATE")
    try:
        noted = _noted(conn)  # again, under the write lock
        present = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        for name, sql in sorted(noted.items()):
            if name not in present:
                conn.execute(sql)
        conn.execute("DELETE FROM gateway_meta WHERE key = ?", (META_KEY,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return sorted(noted)


def _noted(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        row = conn.execute("SELECT value FROM gateway_meta WHERE key = ?",
                           (META_KEY,)).fetchone()
    except sqlite3.OperationalError:  # no gateway_meta yet: nothing was ever dropped
        return {}
    return dict(json.loads(row[0])) if row is not None else {}


__all__ = ["DEFERRABLE", "META_KEY", "drop_indexes", "dropped_indexes", "restore_indexes"]
