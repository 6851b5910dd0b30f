# -*- test-case-name: tests.protocols.test_sru_request -*-
"""SRU requests (1.1, 1.2, 2.0) from HTTP query parameters, validated into typed values.

The gateway's SRU listener will pass the decoded parameters of a GET query string or a POST
form (L{parameters_from_query} does the decoding, bounded) to L{parse_request} and get back a
L{SearchRetrieveRequest}, L{ScanRequest} or L{ExplainRequest}. Every problem raises
L{SRURequestError}, which also says which version and operation to answer in, so the listener
can always reply with a well-formed diagnostic document (L{protocols.sru.response}).

Version negotiation follows YAZ: C{1.1} stays 1.1, any other C{1.x} is answered as 1.2, C{2.x} as
2.0; a version outside what the server offers is diagnostic 5, answered in the highest one.
Without an C{operation} parameter (SRU 2.0 has none, and lenient 1.x clients forget it) the
operation follows from the parameters, as in YAZ: C{query} means searchRetrieve, C{scanClause}
scan, neither explain.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from urllib.parse import parse_qsl

from .cql import MAX_QUERY_LENGTH, CQLQuery, Modifier, Query, SortKey, parse, parse_scan_clause
from .diagnostics import Diagnostic, SRUError

__all__ = [
    "SUPPORTED_VERSIONS",
    "ExplainRequest",
    "Operation",
    "RecordPacking",
    "RequestLimits",
    "SRURequest",
    "SRURequestError",
    "ScanRequest",
    "SearchRetrieveRequest",
    "negotiate_version",
    "parameters_from_query",
    "parse_request",
]

SUPPORTED_VERSIONS = ("1.1", "1.2", "2.0")


class Operation(Enum):
    """The three SRU operations."""

    SEARCH_RETRIEVE = "searchRetrieve"
    SCAN = "scan"
    EXPLAIN = "explain"


class RecordPacking(Enum):
    """How record data travels: as XML in the response, or escaped as a string.

    SRU 1.x calls this C{recordPacking}; SRU 2.0 calls it C{recordXMLEscaping}.
    """

    XML = "xml"
    STRING = "string"


@dataclass(frozen=True)
class RequestLimits:
    """The server's bounds on a request; defaults apply when a parameter is absent."""

    default_maximum_records: int = 10
    maximum_records: int = 100
    default_maximum_terms: int = 20
    maximum_terms: int = 100
    max_query_length: int = MAX_QUERY_LENGTH
    max_parameters: int = 64
    default_version: str = "1.2"
    versions: tuple[str, ...] = SUPPORTED_VERSIONS


@dataclass(frozen=True)
class SearchRetrieveRequest:
    """A validated searchRetrieve: the parsed CQL and the retrieval parameters.

    C{maximum_records} is already capped by the server's limit; C{sort_keys} merges CQL's
    C{sortBy} with SRU 1.1's C{sortKeys} parameter (which it replaces).
    """

    version: str
    query_text: str
    query: CQLQuery
    start_record: int = 1
    maximum_records: int = 10
    record_schema: str | None = None
    record_packing: RecordPacking = RecordPacking.XML
    result_set_ttl: int | None = None
    sort_keys: tuple[SortKey, ...] = ()
    stylesheet: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    operation = Operation.SEARCH_RETRIEVE


@dataclass(frozen=True)
class ScanRequest:
    """A validated scan: the clause to scan from and the window of terms wanted."""

    version: str
    scan_clause_text: str
    scan_clause: Query
    response_position: int = 1
    maximum_terms: int = 20
    stylesheet: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    operation = Operation.SCAN


@dataclass(frozen=True)
class ExplainRequest:
    """An explain request."""

    version: str
    record_packing: RecordPacking = RecordPacking.XML
    stylesheet: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    operation = Operation.EXPLAIN


SRURequest = SearchRetrieveRequest | ScanRequest | ExplainRequest


class SRURequestError(SRUError):
    """A request that cannot be served, with the version and operation to answer in."""

    def __init__(self, error: SRUError, version: str, operation: Operation) -> None:
        super().__init__(error.diagnostic, error.details, error.message)
        self.version = version
        self.operation = operation


_COMMON = frozenset({"operation", "version", "stylesheet", "extraRequestData"})
_ALLOWED: dict[Operation, frozenset[str]] = {
    Operation.SEARCH_RETRIEVE: _COMMON | {
        "query", "startRecord", "maximumRecords", "recordSchema", "recordPacking",
        "recordXMLEscaping", "resultSetTTL", "sortKeys", "queryType", "httpAccept",
        "renderedBy", "responseType",
    },
    Operation.SCAN: _COMMON | {"scanClause", "responsePosition", "maximumTerms", "httpAccept"},
    Operation.EXPLAIN: _COMMON | {"recordPacking", "recordXMLEscaping", "httpAccept"},
}


def parameters_from_query(query: str | bytes, limits: RequestLimits = RequestLimits()
                          ) -> list[tuple[str, str]]:
    """Decode a URL query string or form body into C{(name, value)} pairs, bounded.

    More than C{limits.max_parameters} pairs is diagnostic 6; bytes are read as UTF-8 with
    invalid sequences replaced (the query itself then fails as an unreadable term).
    """
    text = query.decode("utf-8", "replace") if isinstance(query, bytes) else query
    try:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=limits.max_parameters)
    except ValueError as error:
        raise SRURequestError(SRUError(Diagnostic.UNSUPPORTED_PARAMETER_VALUE,
                                       "too many parameters"),
                              limits.default_version, Operation.EXPLAIN) from error


def negotiate_version(requested: str | None, limits: RequestLimits) -> str:
    """The version to answer in; raise diagnostic 5 for one the server does not offer."""
    if requested is None or requested == "":
        return limits.default_version
    if requested == "1.1":
        chosen = "1.1"
    elif requested.startswith("1."):
        chosen = "1.2"
    elif requested.startswith("2."):
        chosen = "2.0"
    else:
        chosen = ""
    if chosen not in limits.versions:
        raise SRUError(Diagnostic.UNSUPPORTED_VERSION, limits.versions[-1])
    return chosen


def parse_request(
    parameters: Iterable[tuple[str, str]], limits: RequestLimits = RequestLimits()
) -> SRURequest:
    """Validate SRU parameters into a request, or raise L{SRURequestError}.

    @param parameters: C{(name, value)} pairs in the order received (repeats are errors).
    @param limits: defaults and caps for this server.
    """
    values: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    repeated: str | None = None
    for name, value in parameters:
        if name.startswith("x-"):
            extra.append((name, value))
        elif name in values:
            repeated = repeated or name
        else:
            values[name] = value
    operation = _operation(values)
    try:
        version = negotiate_version(values.get("version"), limits)
    except SRUError as error:
        raise SRURequestError(error, limits.versions[-1], operation) from None
    try:
        if repeated is not None:
            raise SRUError(Diagnostic.UNSUPPORTED_PARAMETER_VALUE, f"{repeated} repeated")
        for name in values:
            if name not in _ALLOWED[operation]:
                raise SRUError(Diagnostic.UNSUPPORTED_PARAMETER, name)
        if operation is Operation.SEARCH_RETRIEVE:
            return _search_retrieve(values, version, tuple(extra), limits)
        if operation is Operation.SCAN:
            return _scan(values, version, tuple(extra), limits)
        return ExplainRequest(version, _packing(values, version), _stylesheet(values),
                              tuple(extra))
    except SRUError as error:
        raise SRURequestError(error, version, operation) from None


def _operation(values: dict[str, str]) -> Operation:
    name = values.get("operation")
    if name is None:
        if "query" in values:
            return Operation.SEARCH_RETRIEVE
        if "scanClause" in values:
            return Operation.SCAN
        return Operation.EXPLAIN
    for operation in Operation:
        if operation.value == name:
            return operation
    version = values.get("version") or RequestLimits.default_version
    raise SRURequestError(SRUError(Diagnostic.UNSUPPORTED_OPERATION, name),
                          version if version in SUPPORTED_VERSIONS else "1.2",
                          Operation.SEARCH_RETRIEVE)


def _integer(values: dict[str, str], name: str, default: int, minimum: int) -> int:
    text = values.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.strip().isdigit() or len(text) > 9:
        raise SRUError(Diagnostic.UNSUPPORTED_PARAMETER_VALUE, name)
    number = int(text)
    if number < minimum:
        raise SRUError(Diagnostic.UNSUPPORTED_PARAMETER_VALUE, name)
    return number


def _packing(values: dict[str, str], version: str) -> RecordPacking:
    name = "recordXMLEscaping" if version == "2.0" else "recordPacking"
    text = values.get(name)
    if version == "2.0" and values.get("recordPacking", "packed") != "packed":
        raise SRUError(Diagnostic.UNSUPPORTED_RECORD_PACKING, values["recordPacking"])
    if text is None:
        return RecordPacking.XML
    try:
        return RecordPacking(text.lower())
    except ValueError:
        raise SRUError(Diagnostic.UNSUPPORTED_RECORD_PACKING, text) from None


def _stylesheet(values: dict[str, str]) -> str | None:
    text = values.get("stylesheet")
    if text is not None and any(char in text for char in '<>"\n\r'):
        raise SRUError(Diagnostic.UNSUPPORTED_STYLESHEET, "not a URI")
    return text or None


@functools.lru_cache(maxsize=512)
def _parsed(text: str, max_length: int) -> CQLQuery:
    """The query parsed once per distinct text (brokers repeat theirs): the tree is immutable,
    so it is shared safely; a query that fails is not kept and fails again the same way."""
    return parse(text, max_length=max_length)


def _search_retrieve(values: dict[str, str], version: str, extra: tuple[tuple[str, str], ...],
                     limits: RequestLimits) -> SearchRetrieveRequest:
    query_type = values.get("queryType", "cql")
    if query_type != "cql":
        raise SRUError(Diagnostic.UNSUPPORTED_QUERY_TYPE, query_type)
    text = values.get("query")
    if text is None:
        raise SRUError(Diagnostic.MANDATORY_PARAMETER_NOT_SUPPLIED, "query")
    query = _parsed(text, limits.max_query_length)
    maximum = _integer(values, "maximumRecords", limits.default_maximum_records, 0)
    legacy_keys = _legacy_sort_keys(values.get("sortKeys"))
    if legacy_keys and query.sort_keys:
        raise SRUError(Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "sortKeys with sortBy")
    ttl = values.get("resultSetTTL")
    return SearchRetrieveRequest(
        version=version,
        query_text=text,
        query=query,
        start_record=_integer(values, "startRecord", 1, 1),
        maximum_records=min(maximum, limits.maximum_records),
        record_schema=values.get("recordSchema") or None,
        record_packing=_packing(values, version),
        result_set_ttl=None if ttl is None else _integer(values, "resultSetTTL", 0, 0),
        sort_keys=query.sort_keys or legacy_keys,
        stylesheet=_stylesheet(values),
        extra=extra,
    )


def _legacy_sort_keys(text: str | None) -> tuple[SortKey, ...]:
    """SRU 1.1 C{sortKeys}: space-separated C{path,schema,ascending,caseSensitive,missing}."""
    if not text:
        return ()
    keys = []
    for spec in text.split():
        fields = spec.split(",")
        if len(fields) > 5 or not fields[0]:
            raise SRUError(Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "sortKeys")
        fields += [""] * (5 - len(fields))
        path, schema, ascending, case_sensitive, missing = fields
        if ascending not in ("", "0", "1") or case_sensitive not in ("", "0", "1"):
            raise SRUError(Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "sortKeys")
        modifiers = [Modifier("descending" if ascending == "0" else "ascending")]
        if case_sensitive:
            modifiers.append(Modifier("respectcase" if case_sensitive == "1" else "ignorecase"))
        if schema:
            modifiers.append(Modifier("schema", "=", schema))
        if missing:
            modifiers.append(Modifier("missingvalue", "=", missing))
        keys.append(SortKey(path, tuple(modifiers)))
    return tuple(keys)


def _scan(values: dict[str, str], version: str, extra: tuple[tuple[str, str], ...],
          limits: RequestLimits) -> ScanRequest:
    text = values.get("scanClause")
    if text is None:
        raise SRUError(Diagnostic.MANDATORY_PARAMETER_NOT_SUPPLIED, "scanClause")
    clause = parse_scan_clause(text, max_length=limits.max_query_length)
    maximum = _integer(values, "maximumTerms", limits.default_maximum_terms, 1)
    if maximum > limits.maximum_terms:
        raise SRUError(Diagnostic.TOO_MANY_TERMS_REQUESTED, str(limits.maximum_terms))
    position = _integer(values, "responsePosition", 1, 0)
    if position > maximum + 1:
        raise SRUError(Diagnostic.RESPONSE_POSITION_OUT_OF_RANGE, str(position))
    return ScanRequest(version, text, clause, position, maximum, _stylesheet(values), extra)
