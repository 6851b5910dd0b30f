"""SRU request parameters validated into typed requests, and the diagnostics for the rest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.sru.cql import Modifier, Relation, SearchClause, SortKey
from protocols.sru.diagnostics import Diagnostic
from protocols.sru.request import (
    ExplainRequest,
    Operation,
    RecordPacking,
    RequestLimits,
    ScanRequest,
    SearchRetrieveRequest,
    SRURequestError,
    parameters_from_query,
    parse_request,
)

LIMITS = RequestLimits(default_maximum_records=10, maximum_records=50, maximum_terms=30)


def request_of(query: str, limits: RequestLimits = LIMITS) -> object:
    return parse_request(parameters_from_query(query, limits), limits)


def error_of(query: str, limits: RequestLimits = LIMITS) -> SRURequestError:
    with pytest.raises(SRURequestError) as caught:
        request_of(query, limits)
    return caught.value


def test_search_retrieve_1_2() -> None:
    """A typical broker searchRetrieve, decoded from a URL query string."""
    request = request_of("operation=searchRetrieve&version=1.2&query=dc.title%3D%22frog%22"
                         "&startRecord=3&maximumRecords=5&recordSchema=marcxml"
                         "&recordPacking=string&resultSetTTL=300&x-info-5-restrict=1")
    assert isinstance(request, SearchRetrieveRequest)
    assert request.version == "1.2"
    assert request.query_text == 'dc.title="frog"'
    assert request.query.root == SearchClause("frog", "dc.title", Relation("="))
    assert (request.start_record, request.maximum_records) == (3, 5)
    assert request.record_schema == "marcxml"
    assert request.record_packing is RecordPacking.STRING
    assert request.result_set_ttl == 300
    assert request.extra == (("x-info-5-restrict", "1"),)


def test_defaults_and_caps() -> None:
    """Absent parameters take the server's defaults; maximumRecords is capped, not refused."""
    request = request_of("operation=searchRetrieve&version=1.1&query=a")
    assert isinstance(request, SearchRetrieveRequest)
    assert (request.start_record, request.maximum_records) == (1, 10)
    assert request.record_packing is RecordPacking.XML
    capped = request_of("operation=searchRetrieve&version=1.2&query=a&maximumRecords=999")
    assert isinstance(capped, SearchRetrieveRequest) and capped.maximum_records == 50
    zero = request_of("operation=searchRetrieve&version=1.2&query=a&maximumRecords=0")
    assert isinstance(zero, SearchRetrieveRequest) and zero.maximum_records == 0


def test_version_negotiation() -> None:
    """1.1 stays, other 1.x become 1.2, 2.x 2.0; none means the server default."""
    def version(text: str) -> str:
        request = request_of(f"query=a&{text}")
        assert isinstance(request, SearchRetrieveRequest)
        return request.version
    assert version("version=1.1") == "1.1"
    assert version("version=1.0") == "1.2"
    assert version("version=1.5") == "1.2"
    assert version("version=2.0") == "2.0"
    assert version("") == "1.2"
    error = error_of("operation=searchRetrieve&version=3.0&query=a")
    assert error.diagnostic is Diagnostic.UNSUPPORTED_VERSION
    assert error.version == "2.0"
    only_1 = RequestLimits(versions=("1.1", "1.2"))
    error = error_of("query=a&version=2.0", only_1)
    assert (error.diagnostic, error.version, error.details) == (
        Diagnostic.UNSUPPORTED_VERSION, "1.2", "1.2")


def test_operation_inferred_without_the_parameter() -> None:
    """SRU 2.0 (and lenient 1.x) infer the operation from query or scanClause."""
    assert isinstance(request_of("version=2.0&query=a"), SearchRetrieveRequest)
    assert isinstance(request_of("version=2.0&scanClause=a"), ScanRequest)
    assert isinstance(request_of("version=2.0"), ExplainRequest)
    assert isinstance(request_of(""), ExplainRequest)


def test_sru2_escaping_and_packing() -> None:
    """2.0 reads recordXMLEscaping; its recordPacking must be C{packed}."""
    request = request_of("version=2.0&query=a&recordXMLEscaping=string&recordPacking=packed")
    assert isinstance(request, SearchRetrieveRequest)
    assert request.record_packing is RecordPacking.STRING
    error = error_of("version=2.0&query=a&recordPacking=unpacked")
    assert error.diagnostic is Diagnostic.UNSUPPORTED_RECORD_PACKING


def test_sort_keys_parameter_becomes_sort_keys() -> None:
    """SRU 1.1 C{sortKeys} turns into the same sort keys as CQL C{sortBy}."""
    request = request_of("version=1.1&operation=searchRetrieve&query=a"
                         "&sortKeys=title,,1+date,,0,1")
    assert isinstance(request, SearchRetrieveRequest)
    assert request.sort_keys == (
        SortKey("title", (Modifier("ascending"),)),
        SortKey("date", (Modifier("descending"), Modifier("respectcase"))))
    by = request_of("version=1.2&query=a+sortBy+dc.date/sort.descending")
    assert isinstance(by, SearchRetrieveRequest)
    assert by.sort_keys == (SortKey("dc.date", (Modifier("sort.descending"),)),)


def test_scan() -> None:
    """A scan request with its clause, position and term count."""
    request = request_of("operation=scan&version=1.2&scanClause=dc.title%3Dfrog"
                         "&responsePosition=3&maximumTerms=7")
    assert isinstance(request, ScanRequest)
    assert request.scan_clause == SearchClause("frog", "dc.title", Relation("="))
    assert (request.response_position, request.maximum_terms) == (3, 7)


def test_explain_with_stylesheet() -> None:
    """Explain keeps its packing and stylesheet."""
    request = request_of("operation=explain&version=1.2&recordPacking=xml&stylesheet=/e.xsl")
    assert request == ExplainRequest("1.2", RecordPacking.XML, "/e.xsl")


@pytest.mark.parametrize(
    ("query", "diagnostic", "details"),
    [
        ("operation=searchRetrieve&version=1.2", Diagnostic.MANDATORY_PARAMETER_NOT_SUPPLIED,
         "query"),
        ("operation=scan&version=1.2", Diagnostic.MANDATORY_PARAMETER_NOT_SUPPLIED,
         "scanClause"),
        ("operation=update&version=1.2", Diagnostic.UNSUPPORTED_OPERATION, "update"),
        ("operation=searchRetrieve&version=1.2&query=a&recordXPath=/x",
         Diagnostic.UNSUPPORTED_PARAMETER, "recordXPath"),
        ("operation=searchRetrieve&version=1.2&query=a&query=b",
         Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "query repeated"),
        ("operation=searchRetrieve&version=1.2&query=a&startRecord=0",
         Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "startRecord"),
        ("operation=searchRetrieve&version=1.2&query=a&startRecord=x",
         Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "startRecord"),
        ("operation=searchRetrieve&version=1.2&query=a&maximumRecords=-1",
         Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "maximumRecords"),
        ("operation=searchRetrieve&version=1.2&query=a&maximumRecords=%C2%B2",
         Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "maximumRecords"),
        ("operation=searchRetrieve&version=1.2&query=a&startRecord=99999999999",
         Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "startRecord"),
        ("operation=searchRetrieve&version=1.2&query=a&recordPacking=json",
         Diagnostic.UNSUPPORTED_RECORD_PACKING, "json"),
        ("operation=searchRetrieve&version=1.2&query=a&resultSetTTL=x",
         Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "resultSetTTL"),
        ("operation=searchRetrieve&version=1.2&query=(a", Diagnostic.INVALID_PARENTHESES, None),
        ("operation=searchRetrieve&version=2.0&query=a&queryType=pqf",
         Diagnostic.UNSUPPORTED_QUERY_TYPE, "pqf"),
        ("operation=searchRetrieve&version=1.1&query=a+sortBy+t&sortKeys=t,,1",
         Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "sortKeys with sortBy"),
        ("operation=searchRetrieve&version=1.1&query=a&sortKeys=t,,2",
         Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "sortKeys"),
        ("operation=searchRetrieve&version=1.2&query=a&stylesheet=%22%3E",
         Diagnostic.UNSUPPORTED_STYLESHEET, "not a URI"),
        ("operation=scan&version=1.2&scanClause=a&maximumTerms=31",
         Diagnostic.TOO_MANY_TERMS_REQUESTED, "30"),
        ("operation=scan&version=1.2&scanClause=a&maximumTerms=0",
         Diagnostic.UNSUPPORTED_PARAMETER_VALUE, "maximumTerms"),
        ("operation=scan&version=1.2&scanClause=a&maximumTerms=5&responsePosition=7",
         Diagnostic.RESPONSE_POSITION_OUT_OF_RANGE, "7"),
        ("operation=scan&version=1.2&scanClause=a+and+b", Diagnostic.QUERY_SYNTAX_ERROR, None),
        ("operation=explain&version=1.2&query=a", Diagnostic.UNSUPPORTED_PARAMETER, "query"),
    ],
)
def test_invalid_requests(query: str, diagnostic: Diagnostic, details: str | None) -> None:
    """Each invalid request raises its standard diagnostic, naming the parameter."""
    error = error_of(query)
    assert error.diagnostic is diagnostic
    if details is not None:
        assert error.details == details


def test_errors_know_what_to_answer_in() -> None:
    """The error carries the negotiated version and the operation's response kind."""
    error = error_of("operation=scan&version=1.1&scanClause=")
    assert (error.version, error.operation) == ("1.1", Operation.SCAN)
    error = error_of("operation=frobnicate&version=2.0")
    assert (error.version, error.operation) == ("2.0", Operation.SEARCH_RETRIEVE)


def test_too_many_parameters() -> None:
    """A query string with more pairs than the limit is refused before any parsing."""
    error = error_of("&".join(f"x-{i}=1" for i in range(100)))
    assert error.diagnostic is Diagnostic.UNSUPPORTED_PARAMETER_VALUE


def test_query_length_limit() -> None:
    """The server's query length limit applies to the CQL (diagnostic 12)."""
    limits = RequestLimits(max_query_length=20)
    error = error_of("version=1.2&query=" + "a" * 21, limits)
    assert error.diagnostic is Diagnostic.TOO_MANY_CHARACTERS_IN_QUERY


def test_bytes_with_bad_utf8_are_read() -> None:
    """Undecodable bytes in a body become U+FFFD, not an exception."""
    pairs = parameters_from_query(b"query=caf%E9&version=1.2")
    assert dict(pairs)["query"] == "caf\ufffd"


_NAMES = st.sampled_from(["operation", "version", "query", "startRecord", "maximumRecords",
                          "recordSchema", "recordPacking", "recordXMLEscaping", "resultSetTTL",
                          "sortKeys", "scanClause", "responsePosition", "maximumTerms",
                          "stylesheet", "queryType", "x-a", "bogus"])
_VALUES = st.one_of(st.sampled_from(["searchRetrieve", "scan", "explain", "1.1", "1.2", "2.0",
                                     "3", "0", "1", "-1", "xml", "string", "dc.title = a",
                                     "a,,1", ""]),
                    st.text(max_size=20))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=8))
def test_any_parameters_give_a_request_or_a_diagnostic(pairs: list[tuple[str, str]]) -> None:
    """Whatever the parameters, the result is a request or an L{SRURequestError} naming a
    supported version to answer in, never another exception."""
    try:
        request = parse_request(pairs, LIMITS)
    except SRURequestError as error:
        assert error.version in LIMITS.versions
        assert error.diagnostic in Diagnostic
        return
    assert request.version in LIMITS.versions
