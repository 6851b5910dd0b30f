# -*- test-case-name: tests.gateway.test_upstream_z3950_koha -*-
"""The library's own Z39.50 target as our catalogue (``[backend] catalogue = "z3950"``).

A search is written as PQF with the profile's attribute map (:mod:`.pqf_writer`) and run as a
named result set on a pooled association; the handle remembers the association and the query,
so Present goes to the association that holds the set, or runs the query again on another
(when that one is busy or gone, or the target dropped the set). Records are fetched in USMARC
or MARCXML, their holdings read with the LMS profile (Koha 952 …), the LMS's temporary ILL
items removed from the record and its items, and a record made only of those is never offered
(it reads as gone). Everything the upstream does wrong (down, slow, closing, garbage) is
:class:`CatalogueUnavailable`; its diagnostics become the domain errors they mean.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pymarc
from lxml import etree
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from zope.interface import implementer

from gateway.backends.upstream.holdings import is_temporary_item, normalise
from gateway.backends.upstream.marc_holdings import marc_items
from gateway.backends.upstream.opac_holdings import marc_from_xml
from gateway.backends.upstream.z3950.connection import (
    UpstreamAssociation,
    UpstreamClosed,
    UpstreamError,
)
from gateway.backends.upstream.z3950.pqf_writer import PlanWriter, uses_for
from gateway.domain.catalogue import (
    CatalogueError,
    CatalogueUnavailable,
    ICatalogue,
    IndexEntry,
    IResultSet,
    MalformedTerm,
    ResourcesExhausted,
    ResultSetUnknown,
    ScanPage,
    SortKey,
    UnsupportedCombination,
    UnsupportedIndex,
    UnsupportedSort,
    UnsupportedTruncation,
)
from gateway.domain.holdings import CatalogueRecord
from protocols.z3950 import fastber_origin, oids
from protocols.z3950.client import (
    Diagnostic,
    PresentResponseInfo,
    ScanResponseInfo,
    SearchResponseInfo,
    SortResponseInfo,
    present_request,
    scan_request,
    search_request,
    sort_request,
)
from protocols.z3950.external import DecodedExternal
from protocols.z3950.pdus import ScanEntry, SortKeyInfo
from protocols.z3950.pqf import Attribute, Node, Query
from protocols.z3950.records import OpacRecord, opac_from_asn1

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from gateway.backends.upstream.z3950.pool import AssociationPool
    from gateway.backends.upstream.z3950.settings import Z3950Settings
    from gateway.domain.query import Plan, ScanPlan

T = TypeVar("T")
SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)

UPSTREAM_DIAGNOSTICS: dict[int, type[CatalogueError]] = {
    114: UnsupportedIndex,
    **dict.fromkeys((113, 115, 116, 117, 118, 119, 121, 122, 123, 126), UnsupportedCombination),
    120: UnsupportedTruncation,
    **dict.fromkeys((108, 125), MalformedTerm),
    30: ResultSetUnknown,
    **dict.fromkeys((237, 207, 208, 211), UnsupportedSort),
    **dict.fromkeys((31, 32, 33, 34, 35), ResourcesExhausted),
}
"""The upstream's Bib-1 diagnostic → the domain error it means; others: unavailable."""


def domain_error(diagnostics: Sequence[Diagnostic], what: str) -> CatalogueError:
    """The domain error for the upstream's diagnostics (the first one decides)."""
    if not diagnostics:
        return CatalogueUnavailable(f"the upstream {what} failed without a diagnostic")
    first = diagnostics[0]
    detail = f"upstream diagnostic {first.condition}" + (
        f": {first.addinfo!s}" if first.addinfo else "")
    error = UPSTREAM_DIAGNOSTICS.get(first.condition, CatalogueUnavailable)
    if first.condition == 114 and first.addinfo:
        return UnsupportedIndex(str(first.addinfo))
    return error(detail)


@implementer(IResultSet)
class UpstreamResultSet:
    """An upstream result set: its name there, the association holding it, and its query."""

    held_bytes = 512

    def __init__(self, name: str, count: int, query: Node,
                 association: UpstreamAssociation | None) -> None:
        self.name = name
        self.count = count
        self.query = query
        self.association = association


@implementer(ICatalogue)
class UpstreamZ3950Catalogue:
    """A catalogue served by an upstream Z39.50 target through a pool of associations."""

    def __init__(self, settings: Z3950Settings, pool: AssociationPool, clock: IReactorTime,
                 observe: Callable[[str, str, float], None] = lambda op, outcome, s: None
                 ) -> None:
        self.settings = settings
        self.pool = pool
        self.clock = clock
        self.observe = observe
        self.writer = PlanWriter(uses_for(settings.profile.name, settings.uses), self._set_query)

    # -- ICatalogue ------------------------------------------------------------------------

    def search(self, plan: Plan) -> Deferred[IResultSet]:
        """Run the plan upstream as a named result set."""
        try:
            query = self.writer.query(plan)
        except CatalogueError as e:
            return fail(e)

        @inlineCallbacks
        def run(association: UpstreamAssociation
                ) -> Generator[Deferred[Any], Any, IResultSet]:
            found = UpstreamResultSet("", 0, query.root, association)
            yield self._hold(association, found)
            return found

        return self._call("search", run)

    def fetch(self, result_set: IResultSet, start: int, count: int,
              build: Callable[[CatalogueRecord], Any] | None = None
              ) -> Deferred[list[Any | None]]:
        """Present the records from the association holding the set (or a fresh search)."""
        if not isinstance(result_set, UpstreamResultSet):
            return fail(ResultSetUnknown("not an upstream result set"))
        last = min(result_set.count, start + count - 1)
        if start < 1 or last < start:
            return succeed([])

        @inlineCallbacks
        def run(association: UpstreamAssociation) -> Generator[Deferred[Any], Any, list[Any]]:
            yield self._hold(association, result_set)
            records: list[Any] = []
            position = start
            retried = False
            while position <= last:
                want = min(self.settings.present_chunk, last - position + 1)
                answer = yield association.request(_present(
                    result_set_id=result_set.name, start=position, count=want,
                    preferred_record_syntax=self.settings.syntax_oid,
                    element_set_name=self.settings.element_set),
                    self.settings.request_timeout)
                if not isinstance(answer, PresentResponseInfo):
                    raise UpstreamError(f"a {type(answer).__name__} answered a Present")
                if answer.diagnostics and not answer.records:
                    error = domain_error(answer.diagnostics, "present")
                    if isinstance(error, ResultSetUnknown) and not retried:
                        retried = True
                        association.result_sets.pop(result_set.name, None)
                        yield self._hold(association, result_set)
                        continue
                    raise error
                if not answer.records:
                    raise UpstreamError("the upstream presented no records")
                for item in answer.records:
                    records.append(self._record(item, position, build))
                    position += 1
            return records

        return self._call("present", run, prefer=result_set.association)

    def scan(self, plan: ScanPlan, count: int, preferred_position: int, step_size: int
             ) -> Deferred[ScanPage]:
        """Scan the upstream's index."""
        try:
            term = self.writer.scan_term(plan)
        except CatalogueError as e:
            return fail(e)

        @inlineCallbacks
        def run(association: UpstreamAssociation) -> Generator[Deferred[Any], Any, ScanPage]:
            answer = yield association.request(scan_request(
                term, database_names=(self.settings.database,), number_of_terms=count,
                preferred_position=preferred_position, step_size=step_size or None),
                self.settings.request_timeout)
            if not isinstance(answer, ScanResponseInfo):
                raise UpstreamError(f"a {type(answer).__name__} answered a Scan")
            if answer.scan_status == 6 or (answer.diagnostics and not answer.entries):
                raise domain_error(answer.diagnostics, "scan")
            entries = tuple(IndexEntry(str(e.term), e.occurrences or 0,
                                       str(e.display_term) if e.display_term else None)
                            for e in answer.entries if isinstance(e, ScanEntry))
            return ScanPage(entries, answer.position_of_term or 0,
                            ended_early=len(entries) < count)

        return self._call("scan", run)

    def sort(self, result_set: IResultSet, keys: Sequence[SortKey]) -> Deferred[IResultSet]:
        """Sort upstream into a new named result set on the association holding the input."""
        if not isinstance(result_set, UpstreamResultSet):
            return fail(ResultSetUnknown("not an upstream result set"))
        try:
            sort_keys = [
                SortKeyInfo(attributes=(Attribute(None, 1, self.writer.sort_use(k.field)),),
                            relation=1 if k.descending else 0) for k in keys]
        except CatalogueError as e:
            return fail(e)

        @inlineCallbacks
        def run(association: UpstreamAssociation
                ) -> Generator[Deferred[Any], Any, IResultSet]:
            yield self._hold(association, result_set)
            name = association.claim_set_name(self.settings.result_sets_per_association)
            answer = yield association.request(sort_request(
                input_result_sets=(result_set.name,), sorted_result_set=name, keys=sort_keys),
                self.settings.request_timeout)
            if not isinstance(answer, SortResponseInfo):
                raise UpstreamError(f"a {type(answer).__name__} answered a Sort")
            if answer.sort_status == 2:   # failure
                raise domain_error(answer.diagnostics, "sort")
            result = UpstreamResultSet(name, result_set.count, result_set.query, association)
            association.result_sets[name] = result
            return result

        return self._call("sort", run, prefer=result_set.association)

    # -- inside ----------------------------------------------------------------------------

    def _set_query(self, handle: object) -> Node | None:
        return handle.query if isinstance(handle, UpstreamResultSet) else None

    @inlineCallbacks
    def _hold(self, association: UpstreamAssociation, result_set: UpstreamResultSet
              ) -> Generator[Deferred[Any], Any, None]:
        """Make sure ``association`` holds the set (a new one: search it there; one made
        elsewhere, or replaced since: search its query again)."""
        if association is result_set.association and \
                association.result_sets.get(result_set.name) is result_set:
            return
        name = association.claim_set_name(self.settings.result_sets_per_association)
        answer = yield association.request(_search(
            Query(result_set.query), database_names=(self.settings.database,),
            result_set_name=name, preferred_record_syntax=self.settings.syntax_oid),
            self.settings.request_timeout)
        if not isinstance(answer, SearchResponseInfo):
            raise UpstreamError(f"a {type(answer).__name__} answered a Search")
        if not answer.search_status:
            raise domain_error(answer.diagnostics, "search")
        fresh = not result_set.name
        result_set.name, result_set.association = name, association
        result_set.count = answer.result_count if fresh else min(result_set.count,
                                                                  answer.result_count)
        association.result_sets[name] = result_set

    def _call(self, operation: str,
              run: Callable[[UpstreamAssociation], Deferred[T]],
              prefer: UpstreamAssociation | None = None) -> Deferred[T]:
        """Run ``run`` on a pooled association; upstream failures become domain errors."""
        started = self.clock.seconds()

        @inlineCallbacks
        def call() -> Generator[Deferred[Any], Any, T]:
            for attempt in (1, 2):
                try:
                    association = yield self.pool.acquire(
                        prefer if attempt == 1 else None, wait=self.settings.request_timeout)
                except UpstreamError as e:
                    raise CatalogueUnavailable(str(e)) from e
                reused = association.answered > 1   # more than its Init
                try:
                    result = yield run(association)
                except UpstreamClosed as e:
                    # the target closed an idle association (its own idle timeout, a
                    # restart) before our request reached it: once more on a new one
                    if reused and attempt == 1:
                        continue
                    raise CatalogueUnavailable(str(e)) from e
                except UpstreamError as e:
                    association.abort()
                    raise CatalogueUnavailable(str(e)) from e
                finally:
                    self.pool.release(association)
                return result
            raise AssertionError("unreachable")

        def done(result: Any) -> Any:
            outcome = "ok"
            if not isinstance(result, list | UpstreamResultSet | ScanPage):
                error = getattr(result, "value", result)
                outcome = type(error).__name__
            self.observe(operation, outcome, self.clock.seconds() - started)
            return result

        return call().addBoth(done)

    def _record(self, item: Any, position: int,
                build: Callable[[CatalogueRecord], Any] | None) -> Any:
        """One presented record as a catalogue record (None: a diagnostic, or temporary)."""
        if not isinstance(item, DecodedExternal):
            return None
        profile = self.settings.profile
        opac = self._opac(item)
        record = self._marc(item) if opac is None else self._opac_marc(opac)
        if record is None:
            return None
        holdings = normalise(profile, opac if opac is not None else record)
        if holdings.temporary_record:
            return None
        # the bytes as served when they are UTF-8 ISO 2709 (leader/09 "a"), unless ILL items
        # are cut out; MARCXML and MARC-8 records are written again by pymarc
        served = item.oid is not None and tuple(item.oid) == tuple(oids.USMARC)
        marc = item.data if served and item.data[9:10] == b"a" else None
        if holdings.temporary and profile.reads_marc:
            marc = None
            fields = [f for f in record.get_fields(profile.holdings_tag)
                      if not f.is_control_field()]
            items, _ = marc_items(profile, record)
            for fld, holding in zip(fields, items, strict=False):
                if is_temporary_item(profile, holding):
                    record.remove_field(fld)
        number = _biblionumber(record)
        catalogue_record = CatalogueRecord(
            id=int(number) if number and number.isdigit() else position,
            local_id=number or str(position), marc=marc or record.as_marc(),
            items=holdings.item_states())
        return build(catalogue_record) if build is not None else catalogue_record

    @staticmethod
    def _opac(item: DecodedExternal) -> OpacRecord | None:
        if item.oid is None or tuple(item.oid) != tuple(oids.OPAC) or item.value is None:
            return None
        try:
            return opac_from_asn1(item.value)
        except Exception:  # an OPAC record we cannot read is a record we cannot offer
            return None

    @staticmethod
    def _opac_marc(opac: OpacRecord) -> pymarc.Record | None:
        if not opac.bibliographic or tuple(opac.bib_syntax) != tuple(oids.USMARC):
            return None
        try:
            return pymarc.Record(data=opac.bibliographic, to_unicode=True, force_utf8=True)
        except Exception:  # pymarc raises many kinds for a bad record
            return None

    def _marc(self, item: DecodedExternal) -> pymarc.Record | None:
        if item.oid is not None and tuple(item.oid) == tuple(oids.XML):
            try:
                return marc_from_xml(etree.fromstring(item.data, SAFE_XML))
            except etree.XMLSyntaxError:
                return None
        try:
            return pymarc.Record(data=item.data, to_unicode=True, force_utf8=True)
        except Exception:  # pymarc raises many kinds for a bad record
            return None


def _search(query: Query, **kwargs: Any) -> Any:
    """The SearchRequest as BER bytes from the fast encoder, or as pyasn1 builds it."""
    encoded = fastber_origin.search_request(query, **kwargs)
    return encoded if encoded is not None else search_request(query, **kwargs)


def _present(**kwargs: Any) -> Any:
    """The PresentRequest as BER bytes from the fast encoder, or as pyasn1 builds it."""
    encoded = fastber_origin.present_request(**kwargs)
    return encoded if encoded is not None else present_request(**kwargs)


def _biblionumber(record: pymarc.Record) -> str | None:
    """Koha's biblionumber (999 $c), or the control number (001)."""
    for field in record.get_fields("999"):
        if not field.is_control_field() and field.get("c"):
            return str(field.get("c"))
    for field in record.get_fields("001"):
        if field.data:
            return str(field.data).strip()
    return None
