# -*- test-case-name: tests.gateway.test_embedded_catalogue,tests.gateway.test_catalogue -*-
"""The embedded catalogue: :class:`~gateway.domain.catalogue.ICatalogue` over the gateway's
SQLite, on the store's catalogue readers.

Every method checks what it can without the database first (:func:`~.search.prepare`,
:func:`~.scan.prepare_scan`), so a plan this catalogue cannot run fails at once, then does its
SQL (and the caller's ``build`` of each record) in one :meth:`Store.read_budgeted` call on a
reader thread, within the time budget (past it, or when the gateway stops,
:class:`~gateway.domain.catalogue.TimeBudgetExceeded`). Reads bounded by their shape cost less
than the hand-off to a thread and run inline (:meth:`Store.read_now`): a search for one word
whose hit count is cached, and a fetch of a few small records (:data:`INLINE_RECORDS`).

Result sets are :class:`~.search.Hits`: the exact count, bounded to the records that existed
when the search ran, ids read a page at a time as they are fetched. Records are read with the
*live* state of their items (open loan and due date, active holds); temporary (borrowed)
records and items are never read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.backends.embedded.indexing import fold
from gateway.backends.embedded.scan import prepare_scan, run_scan
from gateway.backends.embedded.search import Hits, WordCounts, bounded, prepare, run_plan
from gateway.domain.catalogue import (
    CatalogueError,
    ICatalogue,
    IResultSet,
    ResultSetUnknown,
    ScanPage,
    SortField,
    SortKey,
    TimeBudgetExceeded,
)
from gateway.domain.holdings import CatalogueRecord, ItemState
from gateway.domain.query import Plan, ScanPlan
from gateway.storage.store import NotNow, ReadInterrupted, Store

T = TypeVar("T")

INLINE_RECORDS = 10
INLINE_MARC_BYTES = 2048
INLINE_ITEMS = 32
"""A fetch of at most INLINE_RECORDS records, on a page read without ``OFFSET``, runs on the
reactor (:meth:`Store.read_now`) when the records hold at most INLINE_MARC_BYTES of MARC and
INLINE_ITEMS items together (rendering cost grows with both): a few primary-key reads and
renderings cost less than the hand-off to a reader thread and back. Larger fetches go to a
reader thread."""

_ARTICLES = ("the ", "a ", "an ")


@implementer(ICatalogue)
class EmbeddedCatalogue:
    """Search, fetch, scan and sort over the embedded SQLite catalogue.

    ``time_limit`` gives the seconds of SQLite one call may take (read at every call, so a
    reload applies to the next); ``stopping`` says the gateway is stopping (reads then stop).
    """

    def __init__(self, store: Store, *, time_limit: Callable[[], float] = lambda: 10.0,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self._store = store
        self._time_limit = time_limit
        self._stopping = stopping
        self._word_counts = WordCounts()

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """Run catalogue work on a catalogue reader thread within the time budget."""
        d = self._store.read_budgeted(work, self._time_limit(), self._stopping)
        return d.addErrback(_interrupted)

    # -- search ---------------------------------------------------------------------------------

    def search(self, plan: Plan) -> Deferred[IResultSet]:
        """Run a plan; fires with its :class:`Hits` (count and first page read)."""
        try:
            access = prepare(plan)
        except CatalogueError:
            return fail()
        counts = self._word_counts

        def work(conn: sqlite3.Connection) -> IResultSet:
            return run_plan(conn, access, counts=counts)

        def inline(conn: sqlite3.Connection) -> IResultSet:
            return run_plan(conn, access, counts=counts, bounded_only=True)

        if not bounded(access):
            return self._read(work)
        # One word whose count is cached: a few indexed reads, on the reactor; the first
        # search of a word (or of a new catalogue generation) counts on a reader thread.
        return self._store.read_now(inline, work, slow=self._read)

    # -- fetch ----------------------------------------------------------------------------------

    def fetch(self, result_set: IResultSet, start: int, count: int,
              build: Callable[[CatalogueRecord], Any] | None = None
              ) -> Deferred[list[Any | None]]:
        """Records ``start`` (1-based) … ``start + count - 1`` with live holdings, each passed
        through ``build`` on the thread that read it; None for a record deleted since."""
        if not isinstance(result_set, Hits):
            return fail(ResultSetUnknown(type(result_set).__name__))
        hits = result_set

        def work(conn: sqlite3.Connection, inline: bool = False) -> list[Any | None]:
            # One read transaction for the page, the size check and the records: one WAL
            # snapshot (and one shared-memory read lock, a pair of fcntl calls in a worker
            # process) instead of one per statement. Records are built after it ends.
            conn.execute("SAVEPOINT interlend_fetch")
            try:
                ids, loaded = read(conn, inline)
            finally:
                conn.execute("RELEASE interlend_fetch")
            out: list[Any | None] = []
            for record_id in ids:
                record = loaded.get(record_id) if record_id is not None else None
                if record is None or build is None:
                    out.append(record)
                else:
                    out.append(build(record))
            return out

        def read(conn: sqlite3.Connection, inline: bool
                 ) -> tuple[list[int | None], dict[int, CatalogueRecord]]:
            ids: list[int | None] = list(hits.page(conn, start, count))
            # A record deleted since the search leaves its position empty.
            ids += [None] * (min(count, hits.count - start + 1) - len(ids))
            present = [i for i in ids if i is not None]
            if inline and not _small(conn, present):
                raise NotNow("records too large to build on the reactor")
            return ids, load_records(conn, present)

        if count <= INLINE_RECORDS and hits.page_is_bounded(start, count):
            return self._store.read_now(lambda conn: work(conn, inline=True), work,
                                        slow=self._read)
        return self._read(work)

    # -- scan -----------------------------------------------------------------------------------

    def scan(self, plan: ScanPlan, count: int, preferred_position: int,
             step_size: int) -> Deferred[ScanPage]:
        """Browse an index around the plan's term (see :func:`~.scan.run_scan`)."""
        try:
            browse = prepare_scan(plan)
        except CatalogueError:
            return fail()
        if count == 0:
            return succeed(ScanPage((), position_of_term=1))
        return self._read(
            lambda conn: run_scan(conn, browse, count, preferred_position, step_size))

    # -- sort -----------------------------------------------------------------------------------

    def sort(self, result_set: IResultSet, keys: Sequence[SortKey]) -> Deferred[IResultSet]:
        """The hits in ``keys`` order (stable; missing values last), all held."""
        if not isinstance(result_set, Hits):
            return fail(ResultSetUnknown(type(result_set).__name__))
        hits = result_set
        resolved = [(key.field, key.descending) for key in keys]

        def work(conn: sqlite3.Connection) -> IResultSet:
            ids = hits.page(conn, 1, hits.count)
            values = {row[0]: row[1:] for row in conn.execute(
                "SELECT r.id, r.title, r.author, r.pub_year, r.local_id FROM records r"
                " WHERE r.id IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),))}
            order = list(ids)
            for field, descending in reversed(resolved):
                order.sort(key=lambda rid: _sort_value(values.get(rid), field, descending),
                           reverse=descending)
            return Hits.of(order)

        return self._read(work)


def _interrupted(failure: Failure) -> Failure:
    """A budgeted read stopped (time limit, or the gateway stopping)."""
    failure.trap(ReadInterrupted)
    raise TimeBudgetExceeded(str(failure.value))


def load_records(conn: sqlite3.Connection, record_ids: Sequence[int]) -> dict[int, CatalogueRecord]:
    """Read records and their non-temporary items with live loans and holds (temporary: none)."""
    ids = list(dict.fromkeys(record_ids))
    rows: dict[int, tuple[str, bytes]] = {}
    items: dict[int, list[ItemState]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"SELECT id, local_id, marc FROM records WHERE id IN ({marks})"
                                " AND temporary = 0", chunk):
            rows[row[0]] = (row[1], bytes(row[2]))
        for row in conn.execute(
                "SELECT i.record_id, i.barcode, i.location, i.shelving_location, i.call_number,"
                " i.copy_number, i.status, i.loan_policy, l.due_at,"
                " (SELECT count(*) FROM holds h WHERE h.item_id = i.id AND h.status = 'active')"
                " FROM items i LEFT JOIN loans l ON l.item_id = i.id AND l.returned_at IS NULL"
                f" WHERE i.record_id IN ({marks}) AND i.temporary = 0"
                " ORDER BY i.record_id, i.location, i.barcode", chunk):
            items.setdefault(row[0], []).append(ItemState(*row[1:]))
    return {rid: CatalogueRecord(rid, local_id, marc, tuple(items.get(rid, ())))
            for rid, (local_id, marc) in rows.items()}


def _small(conn: sqlite3.Connection, record_ids: list[int]) -> bool:
    """Whether these records are within the inline budget (INLINE_MARC_BYTES, INLINE_ITEMS).

    ``length()`` of a blob reads no content, and the items are counted up to the limit only.
    """
    if not record_ids:
        return True
    marks = ",".join("?" * len(record_ids))
    marc_bytes, items = conn.execute(
        f"SELECT (SELECT coalesce(sum(length(marc)), 0) FROM records WHERE id IN ({marks})),"
        f" (SELECT count(*) FROM (SELECT 1 FROM items WHERE record_id IN ({marks}) LIMIT ?))",
        [*record_ids, *record_ids, INLINE_ITEMS + 1]).fetchone()
    return bool(marc_bytes <= INLINE_MARC_BYTES and items <= INLINE_ITEMS)


def _sort_value(row: tuple[Any, ...] | None, field: SortField, descending: bool
                ) -> tuple[int, Any]:
    """A sort key that puts missing values last in either direction."""
    missing = (0, "") if descending else (1, "")
    if row is None:
        return missing
    title, author, year, local_id = row
    if field is SortField.YEAR:
        return missing if year is None else (1 if descending else 0, year)
    text = {SortField.TITLE: title, SortField.AUTHOR: author,
            SortField.LOCAL_ID: local_id}[field] or ""
    text = sort_text(text, strip_articles=field is SortField.TITLE)
    return missing if not text else (1 if descending else 0, text)


def sort_text(text: str, *, strip_articles: bool) -> str:
    """Folded text for sorting: lower case, no diacritics, leading article dropped for titles."""
    folded = " ".join(fold(text).split())
    if strip_articles:
        for article in _ARTICLES:
            if folded.startswith(article):
                folded = folded[len(article):]
                break
    return folded.lstrip("\"'([¿¡ ")


__all__ = ["INLINE_RECORDS", "EmbeddedCatalogue", "load_records", "sort_text"]
