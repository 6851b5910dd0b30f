"""Reading SRU answers: counts, records, scan terms, explain, and diagnostics as domain
errors (SRU 1.1/1.2 namespace and 2.0 alike)."""

from __future__ import annotations

import pytest

from gateway.backends.upstream.sru.reader import (
    SruDiagnostic,
    UpstreamGarbage,
    diagnostic_error,
    read_explain,
    read_scan,
    read_search,
)
from gateway.domain.catalogue import (
    CatalogueUnavailable,
    MalformedTerm,
    ResultSetUnknown,
    UnsupportedIndex,
    UnsupportedSort,
    UnsupportedTruncation,
)

SRW = 'xmlns:zs="http://www.loc.gov/zing/srw/"'
SRU2 = 'xmlns:zs="http://docs.oasis-open.org/ns/search-ws/sruResponse"'


@pytest.mark.parametrize("ns", [SRW, SRU2])
def test_search_with_records(ns: str) -> None:
    data = (f'<zs:searchRetrieveResponse {ns}><zs:numberOfRecords>3</zs:numberOfRecords>'
            '<zs:resultSetId>rs7</zs:resultSetId><zs:records>'
            '<zs:record><zs:recordData><r>1</r></zs:recordData></zs:record>'
            '<zs:record><zs:recordData>&lt;r&gt;2&lt;/r&gt;</zs:recordData></zs:record>'
            '<zs:record><zs:recordData/></zs:record>'
            '</zs:records></zs:searchRetrieveResponse>').encode()
    outcome = read_search(data)
    assert outcome.count == 3 and outcome.result_set_id == "rs7"
    assert [r.text if r is not None else None for r in outcome.records] == ["1", "2", None]


def test_search_diagnostic_raises() -> None:
    data = (f'<zs:searchRetrieveResponse {SRW}><zs:diagnostics><d:diagnostic '
            'xmlns:d="http://www.loc.gov/zing/srw/diagnostic/"><d:uri>info:srw/diagnostic/1/16'
            '</d:uri><d:details>dc.x</d:details><d:message>Unsupported index</d:message>'
            '</d:diagnostic></zs:diagnostics></zs:searchRetrieveResponse>').encode()
    with pytest.raises(UnsupportedIndex, match="diagnostic 16: Unsupported index .dc.x."):
        read_search(data)


@pytest.mark.parametrize(("number", "error"), [
    (16, UnsupportedIndex), (15, UnsupportedIndex), (10, MalformedTerm),
    (28, UnsupportedTruncation), (80, UnsupportedSort), (89, UnsupportedSort),
    (51, ResultSetUnknown), (1, CatalogueUnavailable), (2, CatalogueUnavailable),
    (0, CatalogueUnavailable),
])
def test_diagnostic_mapping(number: int, error: type[Exception]) -> None:
    mapped = diagnostic_error(SruDiagnostic(number, f"info:srw/diagnostic/1/{number}"))
    assert type(mapped) is error


@pytest.mark.parametrize("data", [b"", b"garbage", b"<a/>", b"<?xml version='1.0'?>",
                                  b"<searchRetrieveResponse/>"])
def test_garbage(data: bytes) -> None:
    with pytest.raises(UpstreamGarbage):
        read_search(data)


def test_billion_laughs_is_not_expanded() -> None:
    data = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
            b'<searchRetrieveResponse><numberOfRecords>0</numberOfRecords>'
            b'<records><record><recordData><x>&c;</x></recordData></record></records>'
            b'</searchRetrieveResponse>')
    outcome = read_search(data)
    element = outcome.records[0]
    assert element is not None and "aaaa" not in (element.text or "")


def test_scan_and_explain() -> None:
    scan = (f'<zs:scanResponse {SRW}><zs:terms><zs:term><zs:value>gardens</zs:value>'
            '<zs:numberOfRecords>2</zs:numberOfRecords><zs:displayTerm>Gardens</zs:displayTerm>'
            '</zs:term></zs:terms></zs:scanResponse>').encode()
    assert [(t.value, t.records, t.display) for t in read_scan(scan)] == \
        [("gardens", 2, "Gardens")]
    explain = (f'<zs:explainResponse {SRW}><zs:record><zs:recordData>'
               '<explain xmlns="http://explain.z3950.org/dtd/2.0/"><indexInfo>'
               '<index search="true" sort="true"><map><name set="dc">title</name></map></index>'
               '<index><map><name set="bath">isbn</name></map></index></indexInfo>'
               '<configInfo><setting type="maximumRecords">50</setting></configInfo>'
               '</explain></zs:recordData></zs:record></zs:explainResponse>').encode()
    info = read_explain(explain)
    assert info.searchable == {"dc.title", "bath.isbn"} and info.sortable == {"dc.title"}
    assert info.maximum_records == 50
