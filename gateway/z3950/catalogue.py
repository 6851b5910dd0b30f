# -*- test-case-name: tests.gateway.test_catalogue -*-
"""The catalogue service behind the Z39.50 server: Search, Present (fetch), Scan and Sort.

The association calls these methods on the reactor thread. Each checks what it can without the
database first (databases, attributes, syntax, element set), so a bad request fails at once with
its Bib-1 diagnostic (:class:`Bib1Error`), then does all SQL and record building in one
:meth:`Store.read` call on a reader thread, so the reactor never waits on SQLite or pymarc --
except for reads bounded by their shape, which cost less than the hand-off to a thread and run
inline (:meth:`Store.read_now`): a Present of a few small records (:data:`INLINE_RECORDS`) and a
search for one word whose hit count is cached.

The configuration is read from ``gateway.config`` at every call, so a SIGHUP reload (new
databases, a peer's holdings tag or charset) applies to the next request.

A search's result set holds its exact hit count and reads its record ids (ascending id order)
a page at a time, as Present asks for them (:class:`gateway.backends.embedded.search.Hits`); Sort reads them all
and holds them in sort order.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from gateway.backends.embedded.scan import ScanResult, plan_scan, run_scan
from gateway.backends.embedded.search import (
    HELD_IDS,
    Bib1Error,
    Hits,
    WordCounts,
    bounded,
    fold,
    plan_query,
    run_plan,
    use_of,
)
from gateway.config import Config, Peer
from gateway.listeners.limits import LogLimiter, MemoryBudget
from gateway.storage.store import NotNow, ReadInterrupted, Store
from gateway.z3950 import retrieval as render
from protocols.z3950 import oids
from protocols.z3950.codec import (
    Diagnostic,
    ResponseRecord,
    ScanEntry,
    SortKeyInfo,
    SurrogateDiagnostic,
)
from protocols.z3950.pqf import And, AndNot, Attribute, Node, Or, Query, Term

__all__ = ["Bib1Error", "CatalogueService", "ResultSet", "ScanResult"]

log = Logger()

Renderer = Callable[[render.CatalogueRecord, str, render.Presentation], Any]

_RENDERERS: dict[oids.Oid, dict[str, tuple[Renderer, str]]] = {
    oids.USMARC: {"F": (render.marc21, "F"), "B": (render.marc21, "B")},
    oids.XML: {"F": (render.marcxml, "F"), "B": (render.marcxml, "B"),
               "MARCXML": (render.marcxml, "F"), "USMARC": (render.marcxml, "F"),
               "RAW": (render.marcxml, "F"), "OP": (render.opac_xml, "F"),
               "OPAC": (render.opac_xml, "F")},
    oids.OPAC: {"F": (render.opac, "F"), "B": (render.opac, "B"), "OP": (render.opac, "F")},
    oids.SUTRS: {"F": (render.sutrs, "F"), "B": (render.sutrs, "B")},
}
_RENDERERS[oids.APPLICATION_XML] = _RENDERERS[oids.XML]
"""Record syntax → element set name (upper case) → (builder, element set it builds)."""

SORT_FIELDS = {"title": "title", "author": "author", "date": "date", "year": "date",
               "date-of-publication": "date", "local-number": "local"}
SORT_USES = {4: "title", 1: "author", 1003: "author", 1004: "author", 31: "date", 12: "local"}
_ARTICLES = ("the ", "a ", "an ")
MAX_SCAN_TERMS = 1000
INLINE_RECORDS = 10
INLINE_MARC_BYTES = 2048
INLINE_ITEMS = 32
"""A Present of at most INLINE_RECORDS records, on a page read without ``OFFSET``, runs on the
reactor (:meth:`Store.read_now`) when the records hold at most INLINE_MARC_BYTES of MARC and
INLINE_ITEMS items together (rendering cost grows with both; MARCXML, the dearest, builds 2 KB
in about 1.1 ms, OPAC in 0.16 ms): a few primary-key reads and renderings cost less than the
hand-off to a reader thread and back. Larger Presents go to a reader thread."""


class ResultSet:
    """A named result set: its hit count (``count``) and its hits, read as they are needed.

    ``ResultSet(name, ids)`` holds known ids in result order (a sorted set); a search's set is
    built from the :class:`Hits` :func:`run_plan` returns.
    """

    def __init__(self, name: str, record_ids: Sequence[int] = (), *,
                 hits: Hits | None = None) -> None:
        self.name = name
        self.hits = hits if hits is not None else Hits.of(record_ids)

    @property
    def count(self) -> int:
        """The number of hits."""
        return self.hits.count

    def ids(self, conn: sqlite3.Connection, start: int, count: int) -> list[int]:
        """Record ids at positions ``start`` (1-based) … ``start + count - 1`` (reader thread)."""
        return self.hits.page(conn, start, count)

    def __repr__(self) -> str:
        return f"ResultSet({self.name!r}, count={self.count})"


class CatalogueService:
    """Search, fetch, scan and sort over the embedded catalogue for the Z39.50 association."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway
        self._word_counts = WordCounts()
        self.memory = MemoryBudget(gateway.config.z3950.memory_budget)
        """Bytes saved result sets may hold, with the Z39.50 listener's partial PDUs."""
        self._log_limiter = LogLimiter(gateway.reactor)

    def _keep(self, result_set: ResultSet) -> ResultSet:
        """Charge a new result set to the memory budget until it is dropped (Bib-1 31 when
        the budget cannot hold it)."""
        self.memory.limit = self._config.z3950.memory_budget
        size = held_bytes(result_set.hits)
        if not self.memory.take(size):
            raise Bib1Error(31, "memory for result sets is exhausted")
        weakref.finalize(result_set, self.memory.give, size)
        return result_set

    @property
    def _store(self) -> Store:
        return self._gateway.store

    @property
    def _config(self) -> Config:
        return self._gateway.config

    def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Deferred[Any]:
        """Run catalogue work on a catalogue reader thread under ``operation_time_limit``;
        past it (or when the gateway stops) Bib-1 31, resources exhausted."""
        d = self._store.read_budgeted(work, self._config.z3950.operation_time_limit,
                                      self._stopping)
        return d.addErrback(_interrupted)

    def _stopping(self) -> bool:
        return getattr(self._gateway, "state", "running") in ("stopping", "stopped")

    # -- checks ---------------------------------------------------------------------------------

    def _check_databases(self, databases: Sequence[str]) -> None:
        known = {name.lower() for name in self._config.z3950.databases}
        for name in databases:
            if name.lower() not in known:
                raise Bib1Error(109, name)

    def _view(self, peer: Peer | None, charset: str | None = None) -> render.Presentation:
        return render.Presentation(
            agency_id=self._config.gateway.agency_id,
            holdings_tag=peer.holdings_tag if peer is not None else "852",
            charset=charset or (peer.z3950_charset if peer is not None else "utf-8"),
            record_charset=charset)

    # -- Search ---------------------------------------------------------------------------------

    def search(self, query: Query, databases: list[str], *, peer: Peer | None,
               result_sets: Mapping[str, ResultSet], name: str) -> Deferred[ResultSet]:
        """Run a type-1 query; fires with the result set ``name`` or fails with Bib1Error."""
        try:
            if not isinstance(query, Query):
                raise Bib1Error(107, type(query).__name__)
            self._check_databases(databases)
            z = self._config.z3950
            check_terms(query.root, z.max_term_length, z.max_term_words)
            plan = plan_query(query, {k: v.hits.members for k, v in result_sets.items()},
                              max_operators=z.max_query_operators)
        except Bib1Error:
            return fail()
        counts = self._word_counts

        def work(conn: sqlite3.Connection) -> ResultSet:
            return ResultSet(name, hits=run_plan(conn, plan, counts=counts))

        if not bounded(plan):
            return self._read(work).addCallback(self._keep)
        # One word whose count is cached: a few indexed reads, on the reactor; the first
        # search of a word (or of a new catalogue generation) counts on a reader thread.
        return self._store.read_now(lambda conn: ResultSet(
            name, hits=run_plan(conn, plan, counts=counts, bounded_only=True)), work,
            slow=self._read).addCallback(self._keep)

    # -- Present --------------------------------------------------------------------------------

    def fetch(self, result_set: ResultSet, start: int, count: int, *, syntax: oids.Oid | None,
              element_set: str | None, database: str, peer: Peer | None,
              charset: str | None = None
              ) -> Deferred[list[ResponseRecord | SurrogateDiagnostic]]:
        """Build records ``start`` (1-based) … ``start + count - 1`` of a result set.

        No syntax means USMARC (OPAC with element set OP). Syntaxes: USMARC, XML and
        application-XML (MARCXML; OPAC-XML with element set OP), OPAC, SUTRS. ``charset`` (a
        codec the association negotiated) converts MARC and SUTRS records from UTF-8.

        Unknown syntax → 239 (addinfo the OID), unknown element set → 25, start outside the set
        → 13. A record that cannot be built becomes surrogate diagnostic 14 on its own.
        """
        try:
            esn = (element_set or "F").strip().upper() or "F"
            default = oids.OPAC if esn in ("OP", "OPAC") else oids.USMARC
            wanted = tuple(syntax) if syntax is not None else default
            builders = _RENDERERS.get(wanted)
            if builders is None:
                raise Bib1Error(239, oids.oid_to_dotted(wanted))
            if esn not in builders:
                raise Bib1Error(25, element_set)
            if start < 1 or start > result_set.count or count < 0:
                raise Bib1Error(13, str(start))
        except Bib1Error:
            return fail()
        builder, built_esn = builders[esn]
        view = self._view(peer, charset)

        def work(conn: sqlite3.Connection, inline: bool = False
                 ) -> list[ResponseRecord | SurrogateDiagnostic]:
            ids: list[int | None] = list(result_set.ids(conn, start, count))
            # A record deleted since the search leaves its position empty: diagnostic 14.
            ids += [None] * (min(count, result_set.count - start + 1) - len(ids))
            present = [i for i in ids if i is not None]
            if inline and not _small(conn, present):
                raise NotNow("records too large to build on the reactor")
            loaded = render.load_records(conn, present)
            out: list[ResponseRecord | SurrogateDiagnostic] = []
            for record_id in ids:
                record = loaded.get(record_id) if record_id is not None else None
                if record is None:
                    out.append(SurrogateDiagnostic(Diagnostic(14, "record no longer exists"),
                                                   database))
                    continue
                try:
                    out.append(ResponseRecord(wanted, builder(record, built_esn, view), database))
                except Exception as exc:
                    if self._log_limiter.allow("record") is not None:
                        log.warn("cannot build record {local_id}: {error}",
                                 local_id=record.local_id, error=str(exc))
                    out.append(SurrogateDiagnostic(
                        Diagnostic(14, f"record {record.local_id} cannot be built"), database))
            return out

        if count <= INLINE_RECORDS and result_set.hits.page_is_bounded(start, count):
            return self._store.read_now(lambda conn: work(conn, inline=True), work,
                                        slow=self._read)
        return self._read(work)

    # -- Scan -----------------------------------------------------------------------------------

    def scan(self, term: Term, databases: list[str], *, count: int, preferred_position: int,
             step_size: int, peer: Peer | None) -> Deferred[list[ScanEntry]]:
        """Browse the title/author/subject/any word lists (or whole titles/authors for phrases).

        Fires with a :class:`ScanResult` (a list of ScanEntry with ``position_of_term``, the
        1-based position where the scan term is or would be).
        """
        try:
            self._check_databases(databases)
            if count < 0 or count > MAX_SCAN_TERMS:
                raise Bib1Error(234, str(count))
            if count and not 0 <= preferred_position <= count + 1:  # 0: after the term
                raise Bib1Error(233, str(preferred_position))
            if step_size < 0 or step_size > self._config.z3950.max_scan_step:
                raise Bib1Error(206, str(step_size))
            check_terms(term, self._config.z3950.max_term_length, None)
            plan = plan_scan(term)
        except Bib1Error:
            return fail()
        if count == 0:
            return self._read(lambda conn: ScanResult([], position_of_term=1))
        return self._read(
            lambda conn: run_scan(conn, plan, count, preferred_position, step_size))

    # -- Sort -----------------------------------------------------------------------------------

    def sort(self, result_set: ResultSet, keys: list[SortKeyInfo], *,
             name: str) -> Deferred[ResultSet]:
        """Sort by title, author, date (or local number), each ascending or descending.

        Unknown key → 207 (cannot sort according to sequence); relation other than ascending (0)
        or descending (1) → 214. Ties keep the input order; missing values sort last.
        """
        try:
            if not keys:
                raise Bib1Error(207, "no sort keys")
            if result_set.count > self._config.z3950.max_sort_records:
                raise Bib1Error(230, f"at most {self._config.z3950.max_sort_records} records")
            resolved = [(_sort_field(key), _sort_descending(key)) for key in keys]
        except Bib1Error:
            return fail()

        def work(conn: sqlite3.Connection) -> ResultSet:
            ids = result_set.ids(conn, 1, result_set.count)
            values = {row[0]: row[1:] for row in conn.execute(
                "SELECT r.id, r.title, r.author, r.pub_year, r.local_id FROM records r"
                " WHERE r.id IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),))}
            order = list(ids)
            for field, descending in reversed(resolved):
                order.sort(key=lambda rid: _sort_value(values.get(rid), field, descending),
                           reverse=descending)
            return ResultSet(name, tuple(order))

        return self._read(work).addCallback(self._keep)


RESULT_SET_BYTES = 2048
"""What a result set costs besides its ids and statement (objects, dictionary slots)."""
ID_BYTES = 40
"""What one record id held in a list costs (the int object and its slot)."""


def held_bytes(hits: Hits) -> int:
    """The most memory a result set's hits can hold: its window (or all its ids) and the
    statement selecting them."""
    ids = HELD_IDS if hits.streamed else len(hits.ids)
    sql, params = hits.members
    return (RESULT_SET_BYTES + ID_BYTES * ids + len(sql)
            + sum(len(p) for p in params if isinstance(p, str)))


def _interrupted(failure: Any) -> Any:
    """A budgeted read stopped (time limit, or the gateway stopping): Bib-1 31."""
    failure.trap(ReadInterrupted)
    raise Bib1Error(31, str(failure.value))


def check_terms(node: Node, max_length: int, max_words: int | None) -> None:
    """Refuse a query (or scan term) whose terms are longer than ``max_length`` characters
    (Bib-1 11) or hold more than ``max_words`` words (Bib-1 5), before any planning: a term's
    cost in the word index grows with both."""
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, (And, Or, AndNot)):
            pending += (item.left, item.right)
        elif isinstance(item, Term):
            if len(item.value) > max_length:
                raise Bib1Error(11, f"a term is longer than {max_length} characters")
            if max_words is not None and _more_words(item.value, max_words):
                raise Bib1Error(5, f"a term has more than {max_words} words")


_WORD = re.compile(r"[^\W_]+")


def _more_words(text: str, limit: int) -> bool:
    """Whether ``text`` holds more than ``limit`` words (counted up to ``limit + 1`` only)."""
    return next(itertools.islice(_WORD.finditer(text), limit, None), None) is not None


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
    return marc_bytes <= INLINE_MARC_BYTES and items <= INLINE_ITEMS


def _sort_field(key: SortKeyInfo) -> str:
    if key.sort_field is not None:
        text = key.sort_field.strip().lower()
        if text.startswith("1="):
            try:
                return _sort_use(Term("", (Attribute(None, 1, int(text[2:])),)))
            except ValueError:
                raise Bib1Error(207, key.sort_field) from None
        field = SORT_FIELDS.get(text)
        if field is None:
            raise Bib1Error(207, key.sort_field)
        return field
    return _sort_use(Term("", key.attributes))


def _sort_use(term: Term) -> str:
    value = term.attribute(1)
    try:
        use = use_of(term) if value is not None else None
    except Bib1Error:
        use = None
    field = SORT_USES.get(use) if use is not None else None
    if field is None:
        raise Bib1Error(207, str(value))
    return field


def _sort_descending(key: SortKeyInfo) -> bool:
    if key.relation not in (0, 1):
        raise Bib1Error(214, str(key.relation))
    return key.relation == 1


def _sort_value(row: tuple[Any, ...] | None, field: str, descending: bool) -> tuple[int, Any]:
    """A sort key that puts missing values last in either direction."""
    missing = (0, "") if descending else (1, "")
    if row is None:
        return missing
    title, author, year, local_id = row
    if field == "date":
        return missing if year is None else (1 if descending else 0, year)
    text = {"title": title, "author": author, "local": local_id}[field] or ""
    text = render_sort_text(text, strip_articles=field == "title")
    return missing if not text else (1 if descending else 0, text)


def render_sort_text(text: str, *, strip_articles: bool) -> str:
    """Folded text for sorting: lower case, no diacritics, leading article dropped for titles."""
    folded = " ".join(fold(text).split())
    if strip_articles:
        for article in _ARTICLES:
            if folded.startswith(article):
                folded = folded[len(article):]
                break
    return folded.lstrip("\"'([¿¡ ")
