# -*- test-case-name: tests.gateway.test_upstream_sru_koha -*-
"""``UpstreamSruCatalogue``: :class:`~gateway.domain.catalogue.ICatalogue` over an SRU server.

A search writes the plan as CQL (:mod:`.cql_writer`) and asks the server for the hit count
only (``maximumRecords=0``); the result set is that query and its count, and a fetch asks for
its pages by ``startRecord``/``maximumRecords`` (``page_size`` at a time). Records come as
MARCXML (or OPAC XML), their holdings read by the library's holdings profile
(:func:`~gateway.backends.upstream.holdings.normalise`): the items become domain item states,
the LMS's own holdings fields are taken out of the MARC record handed on (so a temporary ILL
item, or a staff note, never reaches a broker through them), and a record whose every item is
a temporary ILL item comes back as None, like a record deleted since the search. Sorting is a
new result set with ``sortKeys`` when the configuration names the server's sort index for
every key, otherwise :class:`~gateway.domain.catalogue.UnsupportedSort` (Bib-1 diagnostic).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pymarc
from lxml import etree
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from zope.interface import implementer

from gateway.backends.upstream.holdings import normalise
from gateway.backends.upstream.opac_holdings import marc_from_xml, opac_from_xml
from gateway.backends.upstream.sru.client import SruClient
from gateway.backends.upstream.sru.cql_writer import QueryText, scan_clause, write_cql
from gateway.backends.upstream.sru.reader import (
    ExplainInfo,
    UpstreamGarbage,
    read_explain,
    read_scan,
    read_search,
)
from gateway.backends.upstream.sru.settings import SruSettings
from gateway.domain.catalogue import (
    ICatalogue,
    IndexEntry,
    IResultSet,
    ResultSetUnknown,
    ScanPage,
    SortKey,
    UnsupportedSort,
)
from gateway.domain.holdings import CatalogueRecord
from gateway.domain.query import Plan, ScanPlan

__all__ = ["SruResultSet", "UpstreamSruCatalogue"]


@implementer(IResultSet)
@dataclass(frozen=True)
class SruResultSet:
    """A search on the upstream: the query, its count, and the sort asked for (if any)."""

    query: QueryText
    count: int
    sort_keys: str | None = None
    held_bytes: int = 0


@implementer(ICatalogue)
class UpstreamSruCatalogue:
    """Search, fetch, scan and sort on the library's SRU server (see the module docstring)."""

    def __init__(self, client: SruClient, settings: SruSettings,
                 explicit_indexes: frozenset[str] = frozenset()) -> None:
        self.client = client
        self.settings = settings
        self._explicit = explicit_indexes
        self._indexes: Mapping[str, str] | None = (
            None if settings.index_source == "explain" else settings.indexes)

    def health(self) -> dict[str, Any]:
        """The upstream's state, for ``/healthz``."""
        return self.client.state.health()

    # -- indexes --------------------------------------------------------------------------------

    @inlineCallbacks
    def indexes(self) -> Any:
        """The index map in force: the settings', or (``index_source = "explain"``) the ones
        the server's explain record lists plus the ones the configuration named itself."""
        if self._indexes is None:
            info: ExplainInfo = read_explain((yield self.client.explain()))
            self._indexes = {name: cql for name, cql in self.settings.indexes.items()
                             if name in self._explicit or cql in info.searchable}
        return self._indexes

    def _answer(self, operation: str, data: bytes, reader: Callable[[bytes], Any]) -> Any:
        try:
            return reader(data)
        except UpstreamGarbage as e:
            self.client.state.record(operation, "garbage", 0.0, str(e))
            raise

    # -- search ---------------------------------------------------------------------------------

    def search(self, plan: Plan) -> Deferred[IResultSet]:
        """Count the plan's hits on the upstream; fires with an :class:`SruResultSet`."""
        return Deferred.fromCoroutine(self._search(plan))

    async def _search(self, plan: Plan) -> IResultSet:
        indexes = await self.indexes()
        query = write_cql(plan, indexes, phrase_relation=self.settings.phrase_relation)
        data = await self.client.search_retrieve(str(query), maximum=0)
        outcome = self._answer("searchRetrieve", data, read_search)
        return SruResultSet(query, outcome.count)

    # -- fetch ----------------------------------------------------------------------------------

    def fetch(self, result_set: IResultSet, start: int, count: int,
              build: Callable[[CatalogueRecord], Any] | None = None
              ) -> Deferred[list[Any | None]]:
        """Records ``start`` … ``start + count - 1``, a page of ``page_size`` per request."""
        if not isinstance(result_set, SruResultSet):
            return fail(ResultSetUnknown(type(result_set).__name__))
        last = min(start + count - 1, result_set.count)
        if start < 1 or last < start:
            return succeed([])
        return Deferred.fromCoroutine(self._fetch(result_set, start, last, build))

    async def _fetch(self, result_set: SruResultSet, start: int, last: int,
                     build: Callable[[CatalogueRecord], Any] | None) -> list[Any | None]:
        out: list[Any | None] = []
        position = start
        while position <= last:
            wanted = min(self.settings.page_size, last - position + 1)
            data = await self.client.search_retrieve(
                str(result_set.query), start=position, maximum=wanted,
                schema=self.settings.record_schema, sort_keys=result_set.sort_keys)
            outcome = self._answer("searchRetrieve", data, read_search)
            if not outcome.records:
                break  # the set shrank since the search: the rest are gone
            for offset, element in enumerate(outcome.records[:wanted]):
                record = self._record(element, position + offset)
                out.append(None if record is None else build(record) if build else record)
            position += min(len(outcome.records), wanted)
        out += [None] * (last - start + 1 - len(out))
        return out

    def _record(self, element: etree._Element | None, position: int) -> CatalogueRecord | None:
        """One upstream record with its offered items; None when it cannot be offered."""
        if element is None:
            return None
        try:
            return self._read_record(element, position)
        except Exception:  # a record pymarc cannot read (an unresolved entity, say) is skipped
            return None

    def _read_record(self, element: etree._Element, position: int) -> CatalogueRecord | None:
        profile = self.settings.profile
        local = etree.QName(element).localname if isinstance(element.tag, str) else ""
        if local == "opacRecord":
            opac = opac_from_xml(element)
            holdings = normalise(profile, opac)
            marc = _marc(opac.bibliographic) if opac.bibliographic else None
        elif local == "record":
            marc = marc_from_xml(element)
            if marc is None:
                return None
            holdings = normalise(profile, marc)
        else:
            return None
        if holdings.temporary_record or marc is None:
            return None
        if profile.reads_marc and profile.holdings_tag:
            marc.remove_fields(profile.holdings_tag)
        local_id = _local_id(marc)
        marc.force_utf8 = True
        return CatalogueRecord(id=int(local_id) if local_id.isdigit() else position,
                               local_id=local_id, marc=marc.as_marc(),
                               items=holdings.item_states())

    # -- scan -----------------------------------------------------------------------------------

    def scan(self, plan: ScanPlan, count: int, preferred_position: int, step_size: int
             ) -> Deferred[ScanPage]:
        """Browse the upstream's index; a step size is taken by skipping listed terms."""
        return Deferred.fromCoroutine(self._scan(plan, count, preferred_position, step_size))

    async def _scan(self, plan: ScanPlan, count: int, preferred_position: int,
                    step_size: int) -> ScanPage:
        indexes = await self.indexes()
        clause = scan_clause(plan.index, plan.text, indexes)
        if plan.whole_field:
            clause = clause.replace(" = ", " exact ", 1)
        stride = step_size + 1
        asked = max(1, count * stride)
        position = min(max(preferred_position, 0), count + 1)
        data = await self.client.scan(clause, maximum=asked,
                                      position=(position - 1) * stride + 1 if position else 0)
        terms = self._answer("scan", data, read_scan)
        picked = terms[::stride][:count]
        entries = tuple(IndexEntry(t.value, t.records, t.display if t.display != t.value
                                   else None) for t in picked)
        return ScanPage(entries, position if entries else 0, ended_early=len(entries) < count)

    # -- sort -----------------------------------------------------------------------------------

    def sort(self, result_set: IResultSet, keys: Sequence[SortKey]) -> Deferred[IResultSet]:
        """A new result set ordered by ``keys`` with SRU ``sortKeys`` (1.1/1.2 syntax)."""
        if not isinstance(result_set, SruResultSet):
            return fail(ResultSetUnknown(type(result_set).__name__))
        parts = []
        for key in keys:
            index = self.settings.sort_keys.get(key.field)
            if index is None:
                return fail(UnsupportedSort(
                    f"the upstream SRU server is not configured to sort by {key.field.value}"))
            parts.append(f"{index},,{0 if key.descending else 1}")
        if not parts:
            return succeed(result_set)
        return Deferred.fromCoroutine(self._sort(result_set, " ".join(parts)))

    async def _sort(self, result_set: SruResultSet, sort_keys: str) -> IResultSet:
        # Asked once without records: a server that cannot sort so says now (a diagnostic
        # in the 80s -> UnsupportedSort), not at the first fetch.
        data = await self.client.search_retrieve(str(result_set.query), maximum=0,
                                                 sort_keys=sort_keys)
        outcome = self._answer("searchRetrieve", data, read_search)
        return SruResultSet(result_set.query, outcome.count, sort_keys)

def _marc(data: bytes) -> pymarc.Record | None:
    try:
        return pymarc.Record(data=data, to_unicode=True, force_utf8=True)
    except Exception:  # pymarc raises many exception types for bad records
        return None


def _local_id(record: pymarc.Record) -> str:
    """The LMS's record number: 999 $c (Koha's biblionumber), else 001."""
    for field in record.get_fields("999"):
        value = field.get("c")
        if value:
            return str(value).strip()
    control = record["001"]
    return control.data.strip() if control is not None and control.data else ""

