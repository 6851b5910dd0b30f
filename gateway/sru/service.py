# -*- test-case-name: tests.gateway.test_sru_clients,tests.gateway.test_sru_http -*-
"""The SRU service: explain, searchRetrieve and scan over an
:class:`~gateway.domain.catalogue.ICatalogue`, answering every request with an SRU document.

Parameters in (decoded by the listener), bytes out; never fails: whatever goes wrong becomes a
diagnostic in the response (request validation and CQL by :mod:`protocols.sru`, the profile and
plan by :mod:`gateway.sru.query`, catalogue errors through :mod:`gateway.sru.diagnostics`, a
record that cannot be built a surrogate diagnostic in its place). Result sets are kept only
when the client asks (``resultSetTTL``), at most ``sru.max_result_sets`` of them, each for at
most ``sru.max_result_set_ttl`` seconds, and can be searched again with
``cql.resultSetId = "id"``.
"""

from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.config import Config, Peer
from gateway.domain.catalogue import (
    CatalogueError,
    ICatalogue,
    IResultSet,
    ScanPage,
    SortKey,
)
from gateway.domain.holdings import CatalogueRecord
from gateway.domain.query import Plan
from gateway.listeners.limits import LogLimiter
from gateway.sru.diagnostics import sru_error
from gateway.sru.query import PROFILE, plan_cql, plan_scan, sort_keys
from gateway.sru.records import SCHEMAS, Schema, schema_named
from gateway.z3950 import retrieval as render
from protocols.sru import (
    CQLQuery,
    ExplainRequest,
    RequestLimits,
    ResponseRecord,
    ScanRequest,
    ScanTerm,
    SearchRetrieveRequest,
    ServerInfo,
    SRURequestError,
    error_response,
    explain_record,
    explain_response,
    parse_request,
    resolve,
    resolve_clause,
    scan_response,
    search_retrieve_response,
)
from protocols.sru.diagnostics import Diagnostic, SRUError

log = Logger()

_PLANS_KEPT = 512
"""Distinct queries whose plans are kept (least recently used dropped first)."""


@dataclass
class Outcome:
    """What one request came to: the document, and what the audit log and metrics record."""

    body: bytes
    operation: str
    outcome: str = "ok"
    query: str | None = None
    hits: int | None = None


class _KeptSets:
    """Result sets kept for their TTL (oldest dropped first past the cap)."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._sets: OrderedDict[str, tuple[IResultSet, float]] = OrderedDict()
        self._names = itertools.count(1)

    def live(self) -> dict[str, IResultSet]:
        now = self._clock.seconds()
        for name in [n for n, (_, expiry) in self._sets.items() if expiry <= now]:
            del self._sets[name]
        return {name: found for name, (found, _) in self._sets.items()}

    def keep(self, found: IResultSet, ttl: int, cap: int) -> str:
        name = f"{next(self._names)}-{secrets.token_hex(4)}"
        self._sets[name] = (found, self._clock.seconds() + ttl)
        while len(self._sets) > cap:
            self._sets.popitem(last=False)
        return name

    def __len__(self) -> int:
        return len(self._sets)


class SruService:
    """Answers SRU requests over one catalogue; ``config`` is read at every request."""

    def __init__(self, catalogue: ICatalogue, *, config: Callable[[], Config],
                 clock: IReactorTime) -> None:
        self.catalogue = catalogue
        self._config_now = config
        self._clock = clock
        self.result_sets = _KeptSets(clock)
        self._log_limiter = LogLimiter(clock)
        self._plans: OrderedDict[CQLQuery, tuple[Plan, tuple[SortKey, ...]]] = OrderedDict()

    @property
    def _config(self) -> Config:
        return self._config_now()

    def limits(self) -> RequestLimits:
        """The request limits now in force (``[sru]``)."""
        sru = self._config.sru
        return RequestLimits(default_maximum_records=sru.default_maximum_records,
                             maximum_records=sru.maximum_records,
                             maximum_terms=sru.maximum_terms,
                             default_maximum_terms=min(20, sru.maximum_terms))

    def handle(self, parameters: Iterable[tuple[str, str]], *, peer: Peer | None,
               host: str = "localhost", port: int = 0) -> Deferred[Outcome]:
        """Answer one request; fires with an :class:`Outcome`, never fails."""
        try:
            request = parse_request(parameters, self.limits())
        except SRURequestError as error:
            return succeed(Outcome(error_response(error), error.operation.value,
                                   _diagnosed(error)))
        if isinstance(request, ExplainRequest):
            return succeed(self.explain(request, host, port))
        if isinstance(request, ScanRequest):
            return self.scan(request)
        return self.search_retrieve(request, peer)

    # -- explain ----------------------------------------------------------------------------

    def explain(self, request: ExplainRequest, host: str, port: int) -> Outcome:
        """The ZeeRex record of this endpoint, from the very profile searches obey."""
        config = self._config
        server = ServerInfo(host=host, port=port, database=config.sru.database,
                            title=config.gateway.name,
                            description=f"Catalogue of {config.gateway.agency_id}")
        record = explain_record(server, PROFILE, [schema.info for schema in SCHEMAS],
                                self.limits(), request.version)
        return Outcome(explain_response(request, record), "explain")

    # -- searchRetrieve ---------------------------------------------------------------------

    def search_retrieve(self, request: SearchRetrieveRequest, peer: Peer | None
                        ) -> Deferred[Outcome]:
        """Search, sort when asked, fetch the page in the schema asked for."""
        sru = self._config.sru
        try:
            schema = schema_named(request.record_schema)
            if schema is None:
                raise SRUError(Diagnostic.UNKNOWN_SCHEMA_FOR_RETRIEVAL,
                               request.record_schema or "")
            plan, keys = self._plan(request)
        except SRUError as error:
            return succeed(self._search_failed(request, error))
        d = self.catalogue.search(plan)
        if keys:
            def sort(found: IResultSet) -> Deferred[IResultSet] | IResultSet:
                if found.count > sru.max_sort_records:
                    raise SRUError(Diagnostic.TOO_MANY_RECORDS_TO_SORT,
                                   f"at most {sru.max_sort_records}")
                if found.count < 2:
                    return found
                sorted_set: Deferred[IResultSet] = self.catalogue.sort(found, keys)
                return sorted_set
            d.addCallback(sort)
        answered: Deferred[Outcome] = d.addCallback(self._page, request, schema, peer)
        return answered.addErrback(self._search_error, request)

    def _plan(self, request: SearchRetrieveRequest) -> tuple[Plan, list[SortKey]]:
        """The query resolved against the profile and planned, once per distinct query (both
        immutable); a query naming a kept result set is planned every time (sets expire)."""
        query = CQLQuery(request.query.root, request.sort_keys)
        cached = self._plans.get(query)
        if cached is not None:
            self._plans.move_to_end(query)
            return cached[0], list(cached[1])
        resolved = resolve(query, PROFILE)
        plan = plan_cql(resolved.root, self.result_sets.live())
        keys = sort_keys(resolved)
        if "resultsetid" not in request.query_text.lower():
            self._plans[query] = (plan, tuple(keys))
            if len(self._plans) > _PLANS_KEPT:
                self._plans.popitem(last=False)
        return plan, keys

    def _page(self, found: IResultSet, request: SearchRetrieveRequest, schema: Schema,
              peer: Peer | None) -> Deferred[Outcome]:
        sru = self._config.sru
        count = int(found.count)
        set_id = ttl = None
        if request.result_set_ttl:
            ttl = min(request.result_set_ttl, sru.max_result_set_ttl)
            set_id = self.result_sets.keep(found, ttl, sru.max_result_sets)
        wanted = min(request.maximum_records, max(0, count - request.start_record + 1))
        if request.maximum_records and count and request.start_record > count:
            raise SRUError(Diagnostic.FIRST_RECORD_POSITION_OUT_OF_RANGE,
                           str(request.start_record))

        def done(records: list[ResponseRecord]) -> Outcome:
            after = request.start_record + len(records)
            body = search_retrieve_response(
                request, number_of_records=count, records=records, result_set_id=set_id,
                result_set_ttl=ttl, next_record_position=after if after <= count and records
                else None)
            return Outcome(body, "searchRetrieve", "ok", request.query_text, count)

        if wanted == 0:
            return succeed(done([]))
        view = render.Presentation(agency_id=self._config.gateway.agency_id,
                                   holdings_tag=peer.holdings_tag if peer else "852")
        identifier = schema.info.identifier

        def build(record: CatalogueRecord) -> bytes | SRUError:
            try:
                return schema.build(record, view)
            except Exception as exc:  # noqa: BLE001 - one bad record is one surrogate
                if self._log_limiter.allow("record") is not None:
                    log.warn("cannot build SRU record {local_id}: {error}",
                             local_id=record.local_id, error=str(exc))
                return SRUError(Diagnostic.RECORD_NOT_AVAILABLE_IN_SCHEMA, record.local_id)

        def records(built: list[bytes | SRUError | None]) -> list[ResponseRecord]:
            out = []
            for offset, data in enumerate(built):
                position = request.start_record + offset
                if data is None:
                    out.append(ResponseRecord(identifier, position, diagnostic=SRUError(
                        Diagnostic.RECORD_DOES_NOT_EXIST, "deleted since the search")))
                elif isinstance(data, SRUError):
                    out.append(ResponseRecord(identifier, position, diagnostic=data))
                else:
                    out.append(ResponseRecord(identifier, position, data))
            return out

        fetched: Deferred[list[bytes | SRUError | None]] = self.catalogue.fetch(
            found, request.start_record, wanted, build)
        return fetched.addCallback(records).addCallback(done)

    def _search_error(self, failure: Failure, request: SearchRetrieveRequest) -> Outcome:
        error = _as_sru_error(failure)
        return self._search_failed(request, error)

    @staticmethod
    def _search_failed(request: SearchRetrieveRequest, error: SRUError) -> Outcome:
        body = search_retrieve_response(request, diagnostics=[error])
        return Outcome(body, "searchRetrieve", _diagnosed(error), request.query_text)

    # -- scan -------------------------------------------------------------------------------

    def scan(self, request: ScanRequest) -> Deferred[Outcome]:
        """Browse an index from the scan clause's term."""
        try:
            clause = resolve_clause(request.scan_clause, PROFILE)
            plan = plan_scan(clause)
        except SRUError as error:
            return succeed(self._scan_failed(request, error))

        def done(page: ScanPage) -> Outcome:
            terms = [ScanTerm(e.term, e.records, e.display) for e in page.entries]
            return Outcome(scan_response(request.version, terms, stylesheet=request.stylesheet),
                           "scan", "ok", request.scan_clause_text, len(terms))

        d: Deferred[ScanPage] = self.catalogue.scan(plan, request.maximum_terms,
                                                    request.response_position, 0)
        return d.addCallbacks(done, lambda failure: self._scan_failed(
            request, _as_sru_error(failure)))

    @staticmethod
    def _scan_failed(request: ScanRequest, error: SRUError) -> Outcome:
        body = scan_response(request.version, diagnostics=[error], stylesheet=request.stylesheet)
        return Outcome(body, "scan", _diagnosed(error), request.scan_clause_text)


def _as_sru_error(failure: Failure) -> SRUError:
    if failure.check(SRUError):
        error: SRUError = failure.value
        return error
    if failure.check(CatalogueError):
        return sru_error(failure.value)
    log.failure("SRU request failed", failure)
    return SRUError(Diagnostic.GENERAL_SYSTEM_ERROR)


def _diagnosed(error: SRUError) -> str:
    return f"diagnostic {int(error.diagnostic)}"


__all__ = ["Outcome", "SruService"]
