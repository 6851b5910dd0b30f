# -*- test-case-name: tests.gateway.test_catalogue,tests.gateway.test_z3950_server -*-
"""The Z39.50 catalogue service: Search, Present (fetch), Scan and Sort over an
:class:`~gateway.domain.catalogue.ICatalogue`.

The association calls these methods on the reactor thread. Each checks what Z39.50 asks
without the catalogue first (databases, Bib-1 attributes read into a plan by
:mod:`gateway.z3950.query`, record syntax, element set), so a bad request fails at once with its
Bib-1 diagnostic (:class:`Bib1Error`); then the catalogue runs the plan, and its domain errors
become diagnostics through the one table in :mod:`gateway.z3950.diagnostics`. Records are
rendered (:mod:`gateway.z3950.retrieval`) where the catalogue reads them, off the reactor for
the embedded one.

The configuration is read at every call, so a SIGHUP reload (new databases, a peer's holdings
tag or charset) applies to the next request. Saved result sets are charged to one memory
budget (``z3950.memory_budget``), shared with the listener's partial PDUs.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.config import Config, Peer
from gateway.domain.catalogue import CatalogueError, ICatalogue, IResultSet, ScanPage
from gateway.domain.holdings import CatalogueRecord
from gateway.listeners.limits import LogLimiter, MemoryBudget
from gateway.z3950 import retrieval as render
from gateway.z3950.diagnostics import Bib1Error, bib1_error
from gateway.z3950.query import check_terms, plan_query, plan_scan, sort_keys
from protocols.z3950 import oids
from protocols.z3950.codec import (
    Diagnostic,
    ResponseRecord,
    ScanEntry,
    SortKeyInfo,
    SurrogateDiagnostic,
)
from protocols.z3950.diagnostics import Bib1
from protocols.z3950.pqf import Query, Term

__all__ = ["Bib1Error", "CatalogueService", "ResultSet", "ScanResult"]

log = Logger()

Renderer = Callable[[CatalogueRecord, str, render.Presentation], Any]

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

MAX_SCAN_TERMS = 1000

Fetched = ResponseRecord | SurrogateDiagnostic


class ResultSet:
    """A named Z39.50 result set: the catalogue's result set (``found``) under its name."""

    def __init__(self, name: str, found: IResultSet) -> None:
        self.name = name
        self.found = found

    @property
    def count(self) -> int:
        """The number of hits."""
        count: int = self.found.count
        return count

    def __repr__(self) -> str:
        return f"ResultSet({self.name!r}, count={self.count})"


class ScanResult(list[ScanEntry]):
    """Scan entries in term order, with the 1-based position the scan term has (or would have)
    and whether the term list ended before the entries asked for."""

    def __init__(self, entries: list[ScanEntry], *, position_of_term: int,
                 ended_early: bool = False) -> None:
        super().__init__(entries)
        self.position_of_term = position_of_term
        self.ended_early = ended_early

    @classmethod
    def of(cls, page: ScanPage) -> ScanResult:
        """The catalogue's scan page as Z39.50 scan entries."""
        return cls([ScanEntry(e.term, e.records, e.display) for e in page.entries],
                   position_of_term=page.position_of_term, ended_early=page.ended_early)


class CatalogueService:
    """Search, fetch, scan and sort for the Z39.50 association, over one catalogue.

    ``config`` returns the current configuration (it changes on reload); ``clock`` paces the
    log lines a client can cause.
    """

    def __init__(self, catalogue: ICatalogue, *, config: Callable[[], Config],
                 clock: IReactorTime) -> None:
        self.catalogue = catalogue
        self._config_now = config
        self.memory = MemoryBudget(config().z3950.memory_budget)
        """Bytes saved result sets may hold, with the Z39.50 listener's partial PDUs."""
        self._log_limiter = LogLimiter(clock)

    @property
    def _config(self) -> Config:
        return self._config_now()

    def _keep(self, result_set: ResultSet) -> ResultSet:
        """Charge a new result set to the memory budget until it is dropped (Bib-1 31 when
        the budget cannot hold it)."""
        self.memory.limit = self._config.z3950.memory_budget
        size = int(result_set.found.held_bytes)
        if not self.memory.take(size):
            raise Bib1Error(Bib1.RESOURCES_EXHAUSTED, "memory for result sets is exhausted")
        weakref.finalize(result_set, self.memory.give, size)
        return result_set

    @staticmethod
    def _check_databases(databases: Sequence[str], served: Sequence[str]) -> None:
        known = {name.lower() for name in served}
        for name in databases:
            if name.lower() not in known:
                raise Bib1Error(Bib1.DATABASE_UNAVAILABLE, name)

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
                raise Bib1Error(Bib1.QUERY_TYPE_UNSUPPORTED, type(query).__name__)
            z = self._config.z3950
            self._check_databases(databases, z.databases)
            check_terms(query.root, z.max_term_length, z.max_term_words)
            plan = plan_query(query, {k: v.found for k, v in result_sets.items()},
                              max_operators=z.max_query_operators)
        except Bib1Error:
            return fail()
        return self.catalogue.search(plan).addCallbacks(
            lambda found: self._keep(ResultSet(name, found)), _diagnosed)

    # -- Present --------------------------------------------------------------------------------

    def fetch(self, result_set: ResultSet, start: int, count: int, *, syntax: oids.Oid | None,
              element_set: str | None, database: str, peer: Peer | None,
              charset: str | None = None) -> Deferred[list[Fetched]]:
        """Build records ``start`` (1-based) … ``start + count - 1`` of a result set.

        No syntax means USMARC (OPAC with element set OP). Syntaxes: USMARC, XML and
        application-XML (MARCXML; OPAC-XML with element set OP), OPAC, SUTRS. ``charset`` (a
        codec the association negotiated) converts MARC and SUTRS records from UTF-8.

        Unknown syntax → 239 (addinfo the OID), unknown element set → 25, start outside the set
        → 13. A record that cannot be built, or that was deleted since the search, becomes
        surrogate diagnostic 14 on its own.
        """
        try:
            esn = (element_set or "F").strip().upper() or "F"
            default = oids.OPAC if esn in ("OP", "OPAC") else oids.USMARC
            wanted = tuple(syntax) if syntax is not None else default
            builders = _RENDERERS.get(wanted)
            if builders is None:
                raise Bib1Error(Bib1.RECORD_SYNTAX_UNSUPPORTED, oids.oid_to_dotted(wanted))
            if esn not in builders:
                raise Bib1Error(Bib1.ELEMENT_SET_NAME_INVALID, element_set)
            if start < 1 or start > result_set.count or count < 0:
                raise Bib1Error(Bib1.PRESENT_OUT_OF_RANGE, str(start))
        except Bib1Error:
            return fail()
        builder, built_esn = builders[esn]
        view = self._view(peer, charset)

        def build(record: CatalogueRecord) -> Fetched:
            try:
                return ResponseRecord(wanted, builder(record, built_esn, view), database)
            except Exception as exc:
                if self._log_limiter.allow("record") is not None:
                    log.warn("cannot build record {local_id}: {error}",
                             local_id=record.local_id, error=str(exc))
                return SurrogateDiagnostic(Diagnostic(
                    Bib1.PRESENT_FAILED, f"record {record.local_id} cannot be built"), database)

        def gone(records: list[Fetched | None]) -> list[Fetched]:
            return [record if record is not None else SurrogateDiagnostic(
                Diagnostic(Bib1.PRESENT_FAILED, "record no longer exists"), database)
                for record in records]

        return self.catalogue.fetch(result_set.found, start, count, build).addCallbacks(
            gone, _diagnosed)

    # -- Scan -----------------------------------------------------------------------------------

    def scan(self, term: Term, databases: list[str], *, count: int, preferred_position: int,
             step_size: int, peer: Peer | None) -> Deferred[ScanResult]:
        """Browse the title/author/subject/any word lists (or whole titles/authors for phrases).

        Fires with a :class:`ScanResult` (a list of ScanEntry with ``position_of_term``, the
        1-based position where the scan term is or would be).
        """
        try:
            z = self._config.z3950
            self._check_databases(databases, z.databases)
            if count < 0 or count > MAX_SCAN_TERMS:
                raise Bib1Error(Bib1.TOO_MANY_INDEX_TERMS, str(count))
            if count and not 0 <= preferred_position <= count + 1:  # 0: after the term
                raise Bib1Error(Bib1.SCAN_POSITION_UNSUPPORTED, str(preferred_position))
            if step_size < 0 or step_size > z.max_scan_step:
                raise Bib1Error(Bib1.SCAN_STEP_SIZE_UNSUPPORTED, str(step_size))
            check_terms(term, z.max_term_length, None)
            plan = plan_scan(term)
        except Bib1Error:
            return fail()
        return self.catalogue.scan(plan, count, preferred_position, step_size).addCallbacks(
            ScanResult.of, _diagnosed)

    # -- Sort -----------------------------------------------------------------------------------

    def sort(self, result_set: ResultSet, keys: list[SortKeyInfo], *,
             name: str) -> Deferred[ResultSet]:
        """Sort by title, author, date (or local number), each ascending or descending.

        No key or an unknown one → 207 (cannot sort according to sequence); relation other
        than ascending (0) or descending (1) → 214; more than ``max_sort_records`` hits → 230.
        Ties keep the input order; missing values sort last.
        """
        try:
            if not keys:
                raise Bib1Error(Bib1.CANNOT_SORT, "no sort keys")
            limit = self._config.z3950.max_sort_records
            if result_set.count > limit:
                raise Bib1Error(Bib1.SORT_TOO_MANY_INPUT_RESULTS, f"at most {limit} records")
            resolved = sort_keys(keys)
        except Bib1Error:
            return fail()
        return self.catalogue.sort(result_set.found, resolved).addCallbacks(
            lambda found: self._keep(ResultSet(name, found)), _diagnosed)


def _diagnosed(failure: Failure) -> Failure:
    """The catalogue's domain errors as Bib-1 diagnostics (one table:
    :data:`gateway.z3950.diagnostics.CATALOGUE_DIAGNOSTICS`); anything else passes on."""
    if failure.check(CatalogueError):
        raise bib1_error(failure.value)
    return failure
