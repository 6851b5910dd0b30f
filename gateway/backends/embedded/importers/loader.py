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

:meth:`CatalogueLoader.add` is the bulk way: records are queued and a whole batch is written
with a few ``executemany`` statements (:func:`~gateway.backends.embedded.records.upsert_records` and
:func:`~gateway.backends.embedded.records.upsert_items`) when it is full, each record's ``done``
callback running after the batch committed. The database content is the same as with
:meth:`~CatalogueLoader.store`. Should the bulk write fail, the batch is rolled back and written
again record by record, each inside a SAVEPOINT, so that only the failing record is lost.

A large load is bound by writing the pages it dirties: every record lands on a random page of
the title, author and identifier indexes, and once those outgrow the cache each record costs
several pages written to the WAL at its commit, and again at the next checkpoint. So batches are
of ``DEFAULT_BATCH_SIZE`` records (a page changed by many records of a batch is written once,
and a batch still holds the write lock for only a second or so), and while it is open the
loader raises the connection's page cache to ``CACHE_KIB`` (with the default 2 MiB, index
inserts keep reading pages back) and lets the WAL grow to ``CHECKPOINT_KIB`` before a checkpoint
copies it into the database (with the default 4 MiB, a million-record load checkpoints after
nearly every batch and copies the same index pages over and over). Commits stay as durable as
ever; on leaving, the loader checkpoints what the load wrote, so that the cost of that is not
left to the next writer. It also pauses Python's cyclic garbage collector: a load allocates
millions of small acyclic objects (pymarc fields and subfields) that reference counting frees,
and the collector's passes over them cost about a quarter of the import rate. The young
generations are still collected at every commit.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

import pymarc

from gateway.backends.embedded.records import (
    ITEM_STATUSES,
    ItemData,
    RecordFields,
    extract_fields,
    upsert_item,
    upsert_items,
    upsert_record,
    upsert_records,
)

DEFAULT_BATCH_SIZE = 5000
CACHE_KIB = 262144
CHECKPOINT_KIB = 262144

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


# What :meth:`CatalogueLoader.add` reports for each record once its batch is committed: what
# storing it did, or the exception that made it fail (nothing of it was written).
Done = Callable[["StoredRecord | None", "Exception | None"], None]


@dataclass(frozen=True)
class _Pending:
    record: pymarc.Record | None
    items: tuple[ItemData, ...]
    temporary: bool
    then: AfterStore | None
    fields: RecordFields | None = None
    marc: bytes | None = None
    done: Done | None = None
    skippable: tuple[type[Exception], ...] = ()


def check_record(record: pymarc.Record, items: Iterable[ItemData]) -> None:
    """Raise ValueError for what the backend would refuse only after it had started writing."""
    control = record.get("001")
    if control is None or not (control.data or "").strip():
        raise ValueError("no 001 control number")
    check_record_items(items)


def check_record_items(items: Iterable[ItemData]) -> None:
    """Raise ValueError for an item the backend would refuse only after it had started writing."""
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
        self._queue: list[_Pending | Callable[[], None]] = []  # add()ed records, deferred calls
        self._queued = 0  # records in _queue
        self._gc_was_enabled = False
        self._cache_size: int = -2000
        self._autocheckpoint: int = 1000

    def __enter__(self) -> CatalogueLoader:
        if self._conn.in_transaction:
            raise ValueError("the loader commits its own batches: the connection must not be"
                             " inside a transaction")
        conn = self._conn
        self._cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
        self._autocheckpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA cache_size = {-CACHE_KIB}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_KIB * 1024 // page_size}")
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
            self._restore()

    def _restore(self) -> None:
        """Put the connection's settings back, and checkpoint the WAL the load left."""
        conn = self._conn
        try:
            conn.execute(f"PRAGMA cache_size = {int(self._cache_size)}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {int(self._autocheckpoint)}")
            if not conn.in_transaction:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
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
        if self._queue:
            self.flush()  # records add()ed earlier come first
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

    def add(self, record: pymarc.Record | None, items: Iterable[ItemData] = (), *,
            temporary: bool = False, then: AfterStore | None = None,
            done: Done | None = None, marc: bytes | None = None,
            fields: RecordFields | None = None,
            skippable: tuple[type[Exception], ...] = (ValueError, sqlite3.IntegrityError)
            ) -> None:
        """Queue ``record`` and ``items`` for a bulk write, as :meth:`store` would write them.

        ``done`` runs once the record's batch is committed: with what was stored, or with the
        error (one of ``skippable``) that made the record fail and be left out. Any other error
        rolls the whole batch back and propagates, as it would from :meth:`store`.
        ``marc``, when given, is ``record.as_marc()``; ``fields``, when given, is
        ``extract_fields(record)`` (with both, ``record`` may be None).
        Raises ValueError at once, with nothing queued, for what :func:`check_record` refuses.
        """
        items = tuple(items)
        if fields is None:
            assert record is not None
            check_record(record, items)
            fields = extract_fields(record)
        else:
            check_record_items(items)
        if marc is None:
            assert record is not None
            marc = record.as_marc()
        # The record itself is not kept: its fields and bytes are all a write needs, and
        # pymarc objects held for a whole batch make the cyclic collector's passes long.
        self._queue.append(_Pending(None, items, temporary, then, fields, marc, done,
                                    skippable))
        self._queued += 1
        if self._queued >= self._batch_size:
            self.flush()

    def defer(self, call: Callable[[], None]) -> None:
        """Run ``call`` after the records added before it are written (at once if none are)."""
        if self._queued:
            self._queue.append(call)
        else:
            call()

    def flush(self) -> None:
        """Write and commit the records queued by :meth:`add`, then run their callbacks."""
        if self._batch:  # records of store() come first
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")
            self._batch.clear()
        queue, self._queue, self._queued = self._queue, [], 0
        pending = [entry for entry in queue if isinstance(entry, _Pending)]
        outcomes: dict[int, tuple[StoredRecord | None, Exception | None]] = {}
        if pending:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                try:
                    for index, written in enumerate(self._write_bulk(pending)):
                        outcomes[id(pending[index])] = (written, None)
                except Exception:  # noqa: BLE001 - redone one by one, where it is reported
                    conn.execute("ROLLBACK")
                    conn.execute("BEGIN IMMEDIATE")
                    for one in pending:
                        outcome = outcomes[id(one)] = self._write_alone(one)
                        if outcome[1] is not None and not isinstance(outcome[1], one.skippable):
                            raise outcome[1] from None
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        for entry in queue:
            if not isinstance(entry, _Pending):
                entry()
                continue
            stored, error = outcomes[id(entry)]
            if entry.done is not None:
                entry.done(stored, error)
        del queue, pending, outcomes
        gc.collect(1)

    def commit(self) -> None:
        """Commit the records stored since the last commit (and write those added)."""
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")
        self._batch.clear()
        gc.collect(1)
        if self._queue:
            self.flush()

    def rollback(self) -> None:
        """Undo the records stored since the last commit, and drop those added."""
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._batch.clear()
        self._queue, self._queued = [], 0

    def _write_bulk(self, pending: list[_Pending]) -> list[StoredRecord]:
        """Write ``pending`` in runs without a repeated local id or barcode, in bulk."""
        stored: list[StoredRecord] = []
        start = 0
        while start < len(pending):
            local_ids: set[str] = set()
            barcodes: set[str] = set()
            end = start
            while end < len(pending):
                entry = pending[end]
                assert entry.fields is not None
                codes = {item.barcode for item in entry.items}
                if entry.fields.local_id in local_ids or not barcodes.isdisjoint(codes) \
                        or len(codes) < len(entry.items):
                    break
                local_ids.add(entry.fields.local_id)
                barcodes |= codes
                end += 1
            if end == start:  # a record repeating a barcode of its own: one by one
                stored.append(self._write(pending[start]))
                start += 1
                continue
            stored += self._write_run(pending[start:end])
            start = end
        return stored

    def _write_run(self, run: list[_Pending]) -> list[StoredRecord]:
        conn = self._conn
        records = upsert_records(conn, [(entry.fields, entry.marc, entry.temporary)
                                        for entry in run
                                        if entry.fields is not None and entry.marc is not None])
        item_rows = upsert_items(conn, [(record_id, item) for entry, (record_id, _created)
                                        in zip(run, records, strict=True)
                                        for item in entry.items])
        stored: list[StoredRecord] = []
        position = 0
        for entry, (record_id, created) in zip(run, records, strict=True):
            count = len(entry.items)
            rows = item_rows[position:position + count]
            position += count
            item_ids = tuple([row[0] for row in rows])
            previous = [row[2] for row in rows]  # None for the items just created
            made = previous.count(None)
            moved: tuple[tuple[str, int], ...] = ()
            if made < count:
                moved = tuple([(item.barcode, before)
                               for item, before in zip(entry.items, previous, strict=True)
                               if before is not None and before != record_id])
            if entry.then is not None:
                entry.then(conn, record_id, item_ids)
            stored.append(StoredRecord(record_id, created, item_ids, made, count - made,
                                       moved))
        return stored

    def _write_alone(self, pending: _Pending) -> tuple[StoredRecord | None, Exception | None]:
        conn = self._conn
        conn.execute("SAVEPOINT import_record")
        try:
            stored = self._write(pending)
        except Exception as exc:  # noqa: BLE001 - handed to the record's done callback
            conn.execute("ROLLBACK TO import_record")
            conn.execute("RELEASE import_record")
            return None, exc
        conn.execute("RELEASE import_record")
        return stored, None

    def _write(self, pending: _Pending) -> StoredRecord:
        conn = self._conn
        if pending.record is None:
            assert pending.fields is not None and pending.marc is not None
            record_id, created = upsert_records(
                conn, [(pending.fields, pending.marc, pending.temporary)])[0]
        else:
            record_id, created = upsert_record(conn, pending.record, temporary=pending.temporary,
                                               marc=pending.marc)
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
