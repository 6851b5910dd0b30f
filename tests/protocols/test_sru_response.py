"""SRU response documents: structure per version, the OASIS schema, and sruthi as a reader."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from lxml import etree

from protocols.sru.cql import parse
from protocols.sru.diagnostics import Diagnostic, SRUError
from protocols.sru.explain import ZEEREX_NS, RecordSchema, ServerInfo, explain_record
from protocols.sru.profile import CQLProfile, IndexCapability, resolve
from protocols.sru.request import (
    ExplainRequest,
    RecordPacking,
    RequestLimits,
    ScanRequest,
    SearchRetrieveRequest,
    SRURequestError,
    parameters_from_query,
    parse_request,
)
from protocols.sru.response import (
    DIAGNOSTIC_SCHEMA,
    SRU1_DIAGNOSTIC_NS,
    SRU1_NS,
    SRU2_DIAGNOSTIC_NS,
    SRU2_NS,
    SRU2_SCAN_NS,
    ResponseRecord,
    ScanTerm,
    WhereInList,
    error_response,
    explain_response,
    scan_response,
    search_retrieve_response,
)

SHARED_XSD = Path(__file__).resolve().parents[3] / "shared/brokers/crosslink/xsd"
DC_NS = "http://purl.org/dc/elements/1.1/"
LIMITS = RequestLimits(default_maximum_records=2, maximum_records=5)
PROFILE = CQLProfile(indexes={
    "cql.serverchoice": IndexCapability(),
    "dc.title": IndexCapability(sortable=True, scannable=True, title="Title"),
    "dc.creator": IndexCapability(title="Author"),
}, max_sort_keys=1)
SERVER = ServerInfo(host="sru.example.org", port=8210, database="catalogue",
                    title="Example Library catalogue")
SCHEMAS = [RecordSchema("info:srw/schema/1/dc-v1.1", "dc", "Dublin Core"),
           RecordSchema("info:srw/schema/1/marcxml-v1.1", "marcxml", "MARCXML")]


def dc_record(title: str) -> bytes:
    return (f'<srw_dc:dc xmlns:srw_dc="info:srw/schema/1/dc-schema" xmlns:dc="{DC_NS}">'
            f"<dc:title>{title}</dc:title></srw_dc:dc>").encode()


def search(query: str) -> SearchRetrieveRequest:
    request = parse_request(parameters_from_query(query, LIMITS), LIMITS)
    assert isinstance(request, SearchRetrieveRequest)
    return request


def xml(document: bytes) -> etree._Element:
    return etree.fromstring(document)


def test_search_retrieve_1_2_structure() -> None:
    """Version, count, records with positions, next position, echo: all in the zing namespace."""
    request = search("operation=searchRetrieve&version=1.2&query=frog&recordSchema=dc")
    document = search_retrieve_response(
        request, number_of_records=7,
        records=[ResponseRecord("info:srw/schema/1/dc-v1.1", 1, dc_record("Frogs")),
                 ResponseRecord("info:srw/schema/1/dc-v1.1", 2, dc_record("Toads"))],
        next_record_position=3, echo=True)
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<zs:')
    root = xml(document)
    ns = {"zs": SRU1_NS, "dc": DC_NS}
    assert root.tag == f"{{{SRU1_NS}}}searchRetrieveResponse"
    assert root.findtext("zs:version", namespaces=ns) == "1.2"
    assert root.findtext("zs:numberOfRecords", namespaces=ns) == "7"
    records = root.findall("zs:records/zs:record", ns)
    assert [r.findtext("zs:recordPosition", namespaces=ns) for r in records] == ["1", "2"]
    assert [r.findtext("zs:recordPacking", namespaces=ns) for r in records] == ["xml", "xml"]
    assert records[1].findtext("zs:recordData/*/dc:title", namespaces=ns) == "Toads"
    assert root.findtext("zs:nextRecordPosition", namespaces=ns) == "3"
    assert root.findtext("zs:echoedSearchRetrieveRequest/zs:query", namespaces=ns) == "frog"
    children = [etree.QName(child).localname for child in root]
    assert children == ["version", "numberOfRecords", "records", "nextRecordPosition",
                        "echoedSearchRetrieveRequest"]
    plain = xml(search_retrieve_response(request, number_of_records=0))
    assert [etree.QName(child).localname for child in plain] == ["version", "numberOfRecords"]


def test_string_packing_escapes_the_record() -> None:
    """With recordPacking=string the record is text that parses back to the same record."""
    request = search("operation=searchRetrieve&version=1.1&query=frog&recordPacking=string")
    root = xml(search_retrieve_response(
        request, number_of_records=1,
        records=[ResponseRecord("dc", 1, dc_record("Frogs &amp; toads"))]))
    data = root.find(f"{{{SRU1_NS}}}records/{{{SRU1_NS}}}record/{{{SRU1_NS}}}recordData")
    assert data is not None and len(data) == 0
    assert data.text is not None and "&amp;" in data.text
    assert xml(data.text.encode()).findtext(f"{{{DC_NS}}}title") == "Frogs & toads"


def test_diagnostics_and_surrogates() -> None:
    """Fatal diagnostics go in <diagnostics>; a missing record becomes a surrogate diagnostic."""
    request = search("operation=searchRetrieve&version=1.2&query=frog")
    root = xml(search_retrieve_response(
        request, number_of_records=2,
        records=[ResponseRecord("dc", 1, dc_record("ok")),
                 ResponseRecord("dc", 2, diagnostic=SRUError(
                     Diagnostic.RECORD_NOT_AVAILABLE_IN_SCHEMA, "dc"))]))
    ns = {"zs": SRU1_NS, "diag": SRU1_DIAGNOSTIC_NS}
    surrogate = root.findall("zs:records/zs:record", ns)[1]
    assert surrogate.findtext("zs:recordSchema", namespaces=ns) == DIAGNOSTIC_SCHEMA
    assert surrogate.findtext("zs:recordData/diag:diagnostic/diag:uri", namespaces=ns) == (
        "info:srw/diagnostic/1/67")
    failed = xml(search_retrieve_response(
        request, diagnostics=[SRUError(Diagnostic.UNSUPPORTED_INDEX, "dc.subject")]))
    assert failed.findtext("zs:numberOfRecords", namespaces=ns) == "0"
    diagnostic = failed.find("zs:diagnostics/diag:diagnostic", ns)
    assert diagnostic is not None
    assert [child.text for child in diagnostic] == [
        "info:srw/diagnostic/1/16", "dc.subject", "Unsupported index"]


def test_text_that_xml_cannot_carry_is_replaced() -> None:
    """A control character in echoed text or details cannot break the document."""
    request = search("operation=searchRetrieve&version=1.2&query=%22a%01b%22")
    root = xml(search_retrieve_response(
        request, diagnostics=[SRUError(Diagnostic.UNSUPPORTED_INDEX, "x\x00y")], echo=True))
    assert root.findtext(f".//{{{SRU1_NS}}}query") == '"a\ufffdb"'
    assert root.findtext(f".//{{{SRU1_DIAGNOSTIC_NS}}}details") == "x\ufffdy"


def test_malformed_record_is_a_presenting_error() -> None:
    """Record bytes that are not XML raise diagnostic 63 for the caller to report."""
    request = search("operation=searchRetrieve&version=1.2&query=frog")
    with pytest.raises(SRUError) as caught:
        search_retrieve_response(request, number_of_records=1,
                                 records=[ResponseRecord("dc", 1, b"<unclosed>")])
    assert caught.value.diagnostic is Diagnostic.SYSTEM_ERROR_IN_PRESENTING_RECORDS


def test_record_entities_are_not_expanded() -> None:
    """Record bytes are parsed without DTDs or entity expansion."""
    request = search("operation=searchRetrieve&version=1.2&query=frog")
    hostile = (b'<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r>&e;</r>')
    document = search_retrieve_response(request, number_of_records=1,
                                        records=[ResponseRecord("x", 1, hostile)])
    assert b"root:" not in document


def test_stylesheet_processing_instruction() -> None:
    """A requested stylesheet is named in a processing instruction before the root."""
    request = search("operation=searchRetrieve&version=1.2&query=a&stylesheet=/s.xsl%3Fa%3D1%26b")
    document = search_retrieve_response(request)
    assert b'<?xml-stylesheet type="text/xsl" href="/s.xsl?a=1&amp;b"?>\n' in document
    xml(document)


def test_sru2_structure() -> None:
    """2.0: OASIS namespace, no version, recordXMLEscaping, TTL and count precision last."""
    request = search("version=2.0&query=frog&recordXMLEscaping=xml")
    root = xml(search_retrieve_response(
        request, number_of_records=1, result_set_id="rs1", result_set_ttl=60,
        records=[ResponseRecord("dc", 1, dc_record("Frogs"))]))
    assert root.tag == f"{{{SRU2_NS}}}searchRetrieveResponse"
    children = [etree.QName(child).localname for child in root]
    assert children == ["numberOfRecords", "resultSetId", "records",
                        "echoedSearchRetrieveRequest", "resultSetTTL", "resultCountPrecision"]
    record = root.find(f"{{{SRU2_NS}}}records/{{{SRU2_NS}}}record")
    assert record is not None
    assert [etree.QName(c).localname for c in record] == [
        "recordSchema", "recordXMLEscaping", "recordData", "recordPosition"]
    failed = xml(search_retrieve_response(
        request, diagnostics=[SRUError(Diagnostic.QUERY_SYNTAX_ERROR)]))
    assert failed.find(f".//{{{SRU2_DIAGNOSTIC_NS}}}diagnostic") is not None


def test_scan_response_per_version() -> None:
    """Scan terms with counts and positions, in the zing or the OASIS scan namespace."""
    terms = [ScanTerm("frog", 3, "Frog", WhereInList.FIRST), ScanTerm("frogs", 1)]
    for version, ns in (("1.2", SRU1_NS), ("2.0", SRU2_SCAN_NS)):
        root = xml(scan_response(version, terms))
        assert root.tag == f"{{{ns}}}scanResponse"
        found = root.findall(f"{{{ns}}}terms/{{{ns}}}term")
        assert [t.findtext(f"{{{ns}}}value") for t in found] == ["frog", "frogs"]
        assert found[0].findtext(f"{{{ns}}}whereInList") == "first"
        assert (root.findtext(f"{{{ns}}}version") is None) == (version == "2.0")


def test_error_response_picks_the_root() -> None:
    """A failed scan answers with a scanResponse, anything else with searchRetrieveResponse."""
    for query, root_name in (("operation=scan&version=1.2", "scanResponse"),
                             ("operation=update&version=1.2", "searchRetrieveResponse"),
                             ("version=2.0&query=(", "searchRetrieveResponse")):
        with pytest.raises(SRURequestError) as caught:
            parse_request(parameters_from_query(query))
        root = xml(error_response(caught.value))
        assert etree.QName(root).localname == root_name
        assert root.find(".//{*}diagnostic/{*}uri") is not None


def explain_document(version: str = "1.2") -> bytes:
    record = explain_record(SERVER, PROFILE, SCHEMAS, LIMITS, version)
    return explain_response(ExplainRequest(version, RecordPacking.XML), record)


def test_explain_lists_what_searches_accept() -> None:
    """The explain record lists exactly the profile's indexes, schemas and limits."""
    root = xml(explain_document())
    ns = {"zs": SRU1_NS, "zr": ZEEREX_NS}
    assert root.findtext("zs:record/zs:recordSchema", namespaces=ns) == ZEEREX_NS
    explain = root.find("zs:record/zs:recordData/zr:explain", ns)
    assert explain is not None
    names = [(n.get("set"), n.text) for n in explain.iterfind(".//zr:index/zr:map/zr:name", ns)]
    assert names == [("cql", "serverchoice"), ("dc", "creator"), ("dc", "title")]
    for prefix, local in names:
        resolve(parse(f"{prefix}.{local} = x"), PROFILE)  # every listed index is searchable
    assert explain.findtext("zr:configInfo/zr:setting[@type='maximumRecords']",
                            namespaces=ns) == "5"
    assert [s.get("name") for s in explain.iterfind("zr:schemaInfo/zr:schema", ns)] == [
        "dc", "marcxml"]


# -- the OASIS SRU 2.0 schema, read in place ----------------------------------------------------

_STUBS = {
    # The OASIS schema imports four more schemas by URL; only their type names matter for what
    # Interlend writes, so each is stood in for by an open type of the right name.
    "facetedResults.xsd": ("http://docs.oasis-open.org/ns/search-ws/facetedResults",
                           ["facetedResultsDefinition"]),
    "searchResultAnalysis.xsd": ("http://docs.oasis-open.org/ns/search-ws/searchResultAnalysis",
                                 ["searchResultAnalysisDefinition"]),
    "xcql.xsd": ("http://docs.oasis-open.org/ns/search-ws/xcql", ["xcqlDefinition"]),
    "scan.xsd": ("http://docs.oasis-open.org/ns/search-ws/scan", ["scanResponseDefinition"]),
}


class _LocalSchemas(etree.Resolver):
    def resolve(self, url: str, pubid: str, context: Any) -> Any:
        name = url.rsplit("/", 1)[-1]
        if name == "diagnostic.xsd":
            return self.resolve_filename(str(SHARED_XSD / "diagnostic.xsd"), context)
        if name in _STUBS:
            namespace, types = _STUBS[name]
            body = "".join(
                f'<xs:complexType name="{t}"><xs:sequence><xs:any processContents="lax" '
                f'minOccurs="0" maxOccurs="unbounded"/></xs:sequence></xs:complexType>'
                for t in types)
            return self.resolve_string(
                f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
                f'targetNamespace="{namespace}">{body}</xs:schema>', context)
        return None


@pytest.fixture(scope="module")
def sru2_schema() -> etree.XMLSchema:
    if not (SHARED_XSD / "sruResponse.xsd").exists():
        pytest.skip("OASIS sruResponse.xsd not found in shared/")
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalSchemas())
    return etree.XMLSchema(etree.parse(str(SHARED_XSD / "sruResponse.xsd"), parser))


def test_sru2_search_retrieve_is_schema_valid(sru2_schema: etree.XMLSchema) -> None:
    """searchRetrieve 2.0 documents (records, surrogates, diagnostics) pass the OASIS schema."""
    request = search("version=2.0&query=frog&startRecord=2&maximumRecords=2&recordSchema=dc"
                     "&resultSetTTL=30&stylesheet=/s.xsl")
    documents = [
        search_retrieve_response(
            request, number_of_records=4, result_set_id="rs", result_set_ttl=30,
            records=[ResponseRecord("dc", 2, dc_record("a")),
                     ResponseRecord("dc", 3, diagnostic=SRUError(
                         Diagnostic.RECORD_TEMPORARILY_UNAVAILABLE))],
            next_record_position=4),
        search_retrieve_response(search("version=2.0&query=a&recordXMLEscaping=string"),
                                 number_of_records=1,
                                 records=[ResponseRecord("dc", 1, dc_record("b"))]),
        search_retrieve_response(request, diagnostics=[SRUError(Diagnostic.UNSUPPORTED_INDEX,
                                                                "x")]),
    ]
    for document in documents:
        sru2_schema.assertValid(xml(document))


def test_sru2_explain_is_schema_valid(sru2_schema: etree.XMLSchema) -> None:
    """explain 2.0 passes the OASIS schema."""
    sru2_schema.assertValid(xml(explain_document("2.0")))


def test_sru2_schema_catches_a_broken_document(sru2_schema: etree.XMLSchema) -> None:
    """The schema check can fail: a 1.2-only element in a 2.0 response is refused."""
    root = xml(search_retrieve_response(search("version=2.0&query=a"), number_of_records=1))
    etree.SubElement(root, f"{{{SRU2_NS}}}resultSetIdleTime").text = "5"
    assert not sru2_schema.validate(root)


# -- sruthi (PyPI) as a client of our documents ---------------------------------------------------

RECORDS = [dc_record(f"Frog {i}") for i in range(1, 8)]


class _Reply:
    def __init__(self, content: bytes) -> None:
        self.content = content

    def raise_for_status(self) -> None:
        return None


class _InProcessSession:
    """A requests-like session whose GET runs our request parser and response writer."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def get(self, url: str, params: dict[str, Any]) -> _Reply:
        self.calls.append(dict(params))
        pairs = parameters_from_query(urlencode(params), LIMITS)
        try:
            request = parse_request(pairs, LIMITS)
            if isinstance(request, ExplainRequest):
                record = explain_record(SERVER, PROFILE, SCHEMAS, LIMITS, request.version)
                return _Reply(explain_response(request, record))
            assert not isinstance(request, ScanRequest)
            resolve(request.query, PROFILE)
        except SRURequestError as error:
            return _Reply(error_response(error))
        except SRUError as error:
            assert isinstance(request, SearchRetrieveRequest)
            return _Reply(search_retrieve_response(request, diagnostics=[error]))
        first = request.start_record
        page = RECORDS[first - 1 : first - 1 + request.maximum_records]
        after = first + len(page)
        return _Reply(search_retrieve_response(
            request, number_of_records=len(RECORDS),
            records=[ResponseRecord("dc", first + i, data) for i, data in enumerate(page)],
            next_record_position=after if after <= len(RECORDS) else None))


sruthi = pytest.importorskip("sruthi")


def test_sruthi_pages_through_all_records() -> None:
    """sruthi reads our count and records and follows nextRecordPosition to the end."""
    session = _InProcessSession()
    client = sruthi.Client("http://sru.example.org/catalogue", maximum_records=3,
                           sru_version="1.2", session=session)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a namespace warning would mean we wrote it wrong
        result = client.searchretrieve("dc.title = frog")
        titles = [record["title"] for record in result]
    assert result.count == 7
    assert titles == [f"Frog {i}" for i in range(1, 8)]
    assert [call["startRecord"] for call in session.calls] == [1, 4, 7]


def test_sruthi_reads_our_diagnostics() -> None:
    """sruthi surfaces our diagnostic message as an SRU error."""
    client = sruthi.Client("http://sru.example.org/catalogue", session=_InProcessSession())
    with pytest.raises(sruthi.SruError, match="Unsupported index"):
        client.searchretrieve("dc.subject = frog")


def test_sruthi_reads_our_explain() -> None:
    """sruthi's explain reader finds our server, database, indexes and limits."""
    info = sruthi.Client("http://sru.example.org/catalogue", sru_version="1.2",
                         session=_InProcessSession()).explain()
    assert info.sru_version == "1.2"
    assert info.server["host"] == "sru.example.org"
    assert info.server["port"] == 8210
    assert info.database["title"] == "Example Library catalogue"
    assert "dc" in info.index and "title" in info.index["dc"]
    assert info.config["maximumRecords"] == 5
