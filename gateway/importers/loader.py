# -*- test-case-name: tests.gateway.test_importers,tests.gateway.test_demo -*-
"""Writing bibliographic records and their items in batched transactions.

A bulk load commits every ``batch_size`` records inside ``BEGIN IMMEDIATE`` … ``COMMIT``: one
commit per record would make a million-record load crawl (each commit is an fsync with
``synchronous=FULL``), one commit for the whole load would hold the write lock for minutes.

No batch is ever half-written, and no record either. What can be wrong with a record (no 001, an
unknown item status) is checked before it writes anything. Should a record still fail half-way,
the loader rolls its batch back, writes the rest of the batch again, and retries the record
alone inside a SAVEPOINT, so that only that record is lost. (A SAVEPOINT around every record
would do the same more simply, but costs about a fifth of the import rate.)

While it is open the loader raises the connection's page cache to ``CACHE_KIB`` (with the
default 2 MiB, index inserts of a large load keep reading pages back), and pauses Python's
cyclic garbage collector: a load allocates millions of small acyclic objects (pymarc fields
and subfields) that reference counting frees, and the collector's passes over them cost about
a quarter of the import rate. The young generations are still collected at every commit.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

import pymarc

from gateway.backends.embedded import ITEM_STATUSES, ItemData, upsert_item, upsert_record

DEFAULT_BATCH_SIZE = 1000
CACHE_KIB = 65536

# Extra writes that belong to a record (demo loans, say): (connection, record id, item ids).
# If a later record of the batch fails half-way they run again, after their writes were rolled
# back; anything they do outside the database must tolerate that.
AfterStore = Callable[[sqlite3.Connection, int, tuple[int, ...]], None]


@dataclass(frozen=True)
class StoredRecord:
    """What storing one record did."""

    record_id: int
    created: bool
    item_ids: tuple[int, ...]  # in the order the items were given
    items_created: int
    items_updated: int
    moved: tuple[tuple[str, int], ...]  # (barcode, previous record id) of items re-attached


@dataclass(frozen=True)
class _Pending:
    record: pymarc.Record
    items: tuple[ItemData, ...]
    temporary: bool
    then: AfterStore | None


def check_record(record: pymarc.Record, items: Iterable[ItemData]) -> None:
    """Raise ValueError for what the backend would refuse only after it had started writing."""
    control = record.get("001")
    if control is None or not (control.data or "").strip():
        raise ValueError("no 001 control number")
    for item in items:
        if item.status not in ITEM_STATUSES:
            raise ValueError(f"item {item.barcode!r}: unknown item status {item.status!r}")


class CatalogueLoader:
    """Stores records with their items on ``conn``, committing every ``batch_size`` records.

    Use as a context manager: leaving normally commits the last batch, leaving by an exception
    rolls it back (earlier batches stay committed).
    """

    def __init__(self, conn: sqlite3.Connection, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._conn = conn
        self._batch_size = batch_size
        self._batch: list[_Pending] = []
        self._gc_was_enabled = False
        self._cache_size: int = -2000

    def __enter__(self) -> CatalogueLoader:
        if self._conn.in_transaction:
            raise ValueError("the loader commits its own batches: the connection must not be"
                             " inside a transaction")
        self._cache_size = self._conn.execute("PRAGMA cache_size").fetchone()[0]
        self._conn.execute(f"PRAGMA cache_size = {-CACHE_KIB}")
        self._gc_was_enabled = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self.commit()
            else:
                self.rollback()
        finally:
            self._conn.execute(f"PRAGMA cache_size = {int(self._cache_size)}")
            if self._gc_was_enabled:
                gc.enable()

    def store(self, record: pymarc.Record, items: Iterable[ItemData] = (), *,
              temporary: bool = False, then: AfterStore | None = None) -> StoredRecord:
        """Insert or update ``record`` (by its 001) and ``items`` (by barcode), atomically.

        ``then`` runs in the same transaction, for writes that stand or fall with the record.
        Raises ValueError (or whatever the backend raised) with nothing of the record written.
        """
        pending = _Pending(record, tuple(items), temporary, then)
        check_record(record, pending.items)
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN IMMEDIATE")
        try:
            stored = self._write(pending)
        except Exception:
            stored = self._isolate(pending)
        self._batch.append(pending)
        if len(self._batch) >= self._batch_size:
            self.commit()
        return stored

    def commit(self) -> None:
        """Commit the records stored since the last commit."""
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")
        self._batch.clear()
        gc.collect(1)

    def rollback(self) -> None:
        """Undo the records stored since the last commit."""
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._batch.clear()

    def _write(self, pending: _Pending) -> StoredRecord:
        conn = self._conn
        record_id, created = upsert_record(conn, pending.record, temporary=pending.temporary)
        items_created = items_updated = 0
        moved: list[tuple[str, int]] = []
        item_ids: list[int] = []
        for item in pending.items:
            row = conn.execute("SELECT record_id FROM items WHERE barcode = ?",
                               (item.barcode,)).fetchone()
            if row is not None and row[0] != record_id:
                moved.append((item.barcode, row[0]))
            item_id, item_created = upsert_item(conn, record_id, item)
            item_ids.append(item_id)
            if item_created:
                items_created += 1
            else:
                items_updated += 1
        if pending.then is not None:
            pending.then(conn, record_id, tuple(item_ids))
        return StoredRecord(record_id, created, tuple(item_ids), items_created, items_updated,
                            tuple(moved))

    def _isolate(self, pending: _Pending) -> StoredRecord:
        """``pending`` failed half-way: rewrite its batch without it, then retry it alone."""
        conn = self._conn
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        for earlier in self._batch:
            self._write(earlier)
        conn.execute("SAVEPOINT import_record")
        try:
            stored = self._write(pending)
        except BaseException:
            conn.execute("ROLLBACK TO import_record")
            conn.execute("RELEASE import_record")
            raise
        conn.execute("RELEASE import_record")
        return stored
