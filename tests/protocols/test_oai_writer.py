"""OAI-PMH responses: what the OAI-PMH 2.0 schema requires, streaming in constant memory, and
Sickle (PyPI) harvesting an in-process repository built from these modules."""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from lxml import etree

from protocols.oai.errors import OAIError, OAIErrorCode
from protocols.oai.request import (
    GetRecord,
    Granularity,
    Identify,
    ListMetadataFormats,
    ListRequest,
    ListSets,
    format_datestamp,
    parse_request,
)
from protocols.oai.tokens import ResumptionState, TokenCodec
from protocols.oai.writer import (
    OAI_NS,
    DeletedRecordPolicy,
    ListWriter,
    MetadataFormat,
    RecordHeader,
    RepositoryInfo,
    ResumptionToken,
    SetInfo,
    error_response,
    get_record_response,
    identify_response,
    list_metadata_formats_response,
)

UTC = timezone.utc
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
BASE = "https://library.example.org/oai"
OAI_DC_NS = "http://www.openarchives.org/OAI/2.0/oai_dc/"
DC_NS = "http://purl.org/dc/elements/1.1/"
OAI = f"{{{OAI_NS}}}"


def oai_dc(title: str) -> bytes:
    return (f'<oai_dc:dc xmlns:oai_dc="{OAI_DC_NS}" xmlns:dc="{DC_NS}">'
            f"<dc:title>{title}</dc:title></oai_dc:dc>").encode()


# -- what the OAI-PMH 2.0 schema requires, checked without the schema's text ----------------------

_UTC_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_UTC_ANY = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?")
_SET_SPEC = re.compile(r"([A-Za-z0-9\-_.!~*'()])+(:[A-Za-z0-9\-_.!~*'()]+)*")
_VERB_ELEMENTS = {"Identify", "ListMetadataFormats", "ListSets", "GetRecord", "ListIdentifiers",
                  "ListRecords"}
_REQUEST_ATTRIBUTES = {"verb", "identifier", "metadataPrefix", "from", "until", "set",
                       "resumptionToken"}


def local(element: etree._Element) -> str:
    return etree.QName(element).localname


def check_header(header: etree._Element) -> None:
    assert set(header.attrib) <= {"status"} and header.get("status", "deleted") == "deleted"
    names = [local(child) for child in header]
    assert names[:2] == ["identifier", "datestamp"] and set(names[2:]) <= {"setSpec"}
    assert _UTC_ANY.fullmatch(header[1].text or "")
    for spec in header[2:]:
        assert _SET_SPEC.fullmatch(spec.text or "")


def check_record(record: etree._Element) -> None:
    names = [local(child) for child in record]
    assert names[0] == "header"
    check_header(record[0])
    if record[0].get("status") == "deleted":
        assert names == ["header"]
    else:
        assert names[:2] == ["header", "metadata"] and set(names[2:]) <= {"about"}
        metadata = record[1]
        assert len(metadata) == 1 and metadata.text is None
        assert etree.QName(metadata[0]).namespace not in (None, OAI_NS)


def check_token(token: etree._Element) -> None:
    assert set(token.attrib) <= {"expirationDate", "completeListSize", "cursor"}
    if "expirationDate" in token.attrib:
        assert _UTC_SECONDS.fullmatch(token.get("expirationDate", ""))
    if "completeListSize" in token.attrib:
        assert int(token.get("completeListSize", "")) > 0
    if "cursor" in token.attrib:
        assert int(token.get("cursor", "")) >= 0


def check_oai(document: bytes) -> etree._Element:
    """Parse strictly and check the OAI-PMH.xsd content model for what Interlend writes."""
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    root = etree.fromstring(document, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.tag == f"{OAI}OAI-PMH"
    assert all(etree.QName(e).namespace in (OAI_NS, None) or e.getparent() is not None
               for e in root)
    children = list(root)
    assert [local(c) for c in children[:2]] == ["responseDate", "request"]
    assert _UTC_SECONDS.fullmatch(children[0].text or "")
    assert set(children[1].attrib) <= _REQUEST_ATTRIBUTES
    body = children[2:]
    if local(body[0]) == "error":
        assert all(local(e) == "error" for e in body)
        codes = {code.value for code in OAIErrorCode}
        assert all(e.get("code") in codes for e in body)
        return root
    assert len(body) == 1 and local(body[0]) in _VERB_ELEMENTS
    verb = body[0]
    items = list(verb)
    if items and local(items[-1]) == "resumptionToken":
        check_token(items.pop())
    kind = local(verb)
    if kind in ("ListRecords", "GetRecord"):
        assert items and all(local(i) == "record" for i in items)
        for item in items:
            check_record(item)
    elif kind == "ListIdentifiers":
        assert items and all(local(i) == "header" for i in items)
        for item in items:
            check_header(item)
    elif kind == "ListSets":
        for item in items:
            names = [local(c) for c in item]
            assert names[:2] == ["setSpec", "setName"] and set(names[2:]) <= {"setDescription"}
    elif kind == "ListMetadataFormats":
        for item in items:
            assert [local(c) for c in item] == ["metadataPrefix", "schema", "metadataNamespace"]
    elif kind == "Identify":
        names = [local(c) for c in items]
        emails = names.count("adminEmail")
        assert emails >= 1
        assert names[:3 + emails + 3] == (["repositoryName", "baseURL", "protocolVersion"]
                                          + ["adminEmail"] * emails
                                          + ["earliestDatestamp", "deletedRecord",
                                             "granularity"])
        assert set(names[3 + emails + 3:]) <= {"compression", "description"}
    return root


# -- single documents ----------------------------------------------------------------------------

INFO = RepositoryInfo(
    name="Example Library", base_url=BASE, admin_emails=("ill@example.org",),
    earliest_datestamp=datetime(2001, 1, 1, tzinfo=UTC),
    descriptions=(b'<oai-identifier xmlns="http://www.openarchives.org/OAI/2.0/oai-identifier">'
                  b"<scheme>oai</scheme><repositoryIdentifier>library.example.org"
                  b"</repositoryIdentifier><delimiter>:</delimiter>"
                  b"<sampleIdentifier>oai:library.example.org:1</sampleIdentifier>"
                  b"</oai-identifier>",))


def test_identify() -> None:
    """Identify carries the fields in schema order, with granularity and deletion policy."""
    root = check_oai(identify_response(INFO, NOW))
    identify = root.find(f"{OAI}Identify")
    assert identify is not None
    assert identify.findtext(f"{OAI}granularity") == "YYYY-MM-DDThh:mm:ssZ"
    assert identify.findtext(f"{OAI}deletedRecord") == "persistent"
    assert identify.findtext(f"{OAI}earliestDatestamp") == "2001-01-01T00:00:00Z"
    day = replace(INFO, granularity=Granularity.DAY, deleted_record=DeletedRecordPolicy.NO)
    identify = check_oai(identify_response(day, NOW)).find(f"{OAI}Identify")
    assert identify is not None and identify.findtext(f"{OAI}earliestDatestamp") == "2001-01-01"


def test_errors_echo_or_not() -> None:
    """badArgument omits the request's arguments; cannotDisseminateFormat echoes them."""
    arguments = [("verb", "ListRecords"), ("metadataPrefix", "mods")]
    bad = check_oai(error_response(BASE, NOW, [OAIError(OAIErrorCode.BAD_ARGUMENT, "x")],
                                   arguments))
    request = bad.find(f"{OAI}request")
    assert request is not None and dict(request.attrib) == {} and request.text == BASE
    format_error = check_oai(error_response(
        BASE, NOW, [OAIError(OAIErrorCode.CANNOT_DISSEMINATE_FORMAT, "mods")],
        arguments + [("x-extra", "1")]))
    request = format_error.find(f"{OAI}request")
    assert request is not None
    assert dict(request.attrib) == {"verb": "ListRecords", "metadataPrefix": "mods"}
    error = format_error.find(f"{OAI}error")
    assert error is not None and error.get("code") == "cannotDisseminateFormat"


def test_escaping() -> None:
    """Markup, quotes and control characters in text and attributes cannot break the XML."""
    hostile = 'a<b>&"c\x01'
    document = error_response(BASE + "?a=1&b=2", NOW,
                              [OAIError(OAIErrorCode.ID_DOES_NOT_EXIST, hostile)],
                              [("verb", "GetRecord"), ("identifier", hostile)])
    root = check_oai(document)
    request = root.find(f"{OAI}request")
    assert request is not None and request.get("identifier") == 'a<b>&"c\ufffd'
    assert root.findtext(f"{OAI}error") == 'a<b>&"c\ufffd'


def test_get_record_and_deleted_record() -> None:
    """GetRecord has header and metadata; a deleted record has status and no metadata."""
    header = RecordHeader("oai:x:1", datetime(2026, 12, 1, 8, 30, tzinfo=UTC), ("kind:book",))
    root = check_oai(get_record_response(BASE, NOW, header, oai_dc("Frogs"),
                                         [("verb", "GetRecord")]))
    assert root.findtext(f".//{{{DC_NS}}}title") == "Frogs"
    deleted = check_oai(get_record_response(BASE, NOW, replace(header, deleted=True), None,
                                            [("verb", "GetRecord")]))
    header_element = deleted.find(f".//{OAI}header")
    assert header_element is not None and header_element.get("status") == "deleted"
    assert deleted.find(f".//{OAI}metadata") is None


def test_metadata_must_be_namespaced_well_formed_xml() -> None:
    """Metadata that is malformed or in no namespace is refused before it is written."""
    header = RecordHeader("oai:x:1", NOW)
    with pytest.raises(ValueError, match="well-formed"):
        get_record_response(BASE, NOW, header, b"<dc>", [])
    with pytest.raises(ValueError, match="own namespace"):
        get_record_response(BASE, NOW, header, b"<dc/>", [])
    with pytest.raises(ValueError, match="needs metadata"):
        get_record_response(BASE, NOW, header, None, [])


def test_list_metadata_formats() -> None:
    """Formats are listed with prefix, schema and namespace; none is a usage error."""
    formats = [MetadataFormat("oai_dc", "http://www.openarchives.org/OAI/2.0/oai_dc.xsd",
                              OAI_DC_NS),
               MetadataFormat("marc21", "http://www.loc.gov/standards/marcxml/schema/"
                              "MARC21slim.xsd", "http://www.loc.gov/MARC21/slim")]
    root = check_oai(list_metadata_formats_response(BASE, NOW, formats,
                                                    [("verb", "ListMetadataFormats")]))
    assert [e.text for e in root.iterfind(f".//{OAI}metadataPrefix")] == ["oai_dc", "marc21"]
    with pytest.raises(ValueError):
        list_metadata_formats_response(BASE, NOW, [], [])


def test_list_writer_pages_and_tokens() -> None:
    """Chunks join into one valid document; tokens carry cursor, size and expiry."""
    writer = ListWriter("ListIdentifiers", BASE, NOW,
                        [("verb", "ListIdentifiers"), ("metadataPrefix", "oai_dc")],
                        granularity=Granularity.DAY)
    chunks = [writer.start()]
    for i in range(3):
        chunks.append(writer.header(RecordHeader(f"oai:x:{i}", NOW, deleted=i == 1)))
    chunks.append(writer.finish(ResumptionToken("abc", 0, 10, NOW + timedelta(hours=1))))
    root = check_oai(b"".join(chunks))
    token = root.find(f".//{OAI}resumptionToken")
    assert token is not None and token.text == "abc"
    assert dict(token.attrib) == {"expirationDate": "2026-12-06T13:00:00Z",
                                  "completeListSize": "10", "cursor": "0"}
    assert [h.findtext(f"{OAI}datestamp") for h in root.iterfind(f".//{OAI}header")] == [
        "2026-12-06"] * 3


def test_last_page_has_an_empty_token() -> None:
    """The last page of a resumed list ends with an empty token and its cursor."""
    writer = ListWriter("ListSets", BASE, NOW, [("verb", "ListSets")])
    document = (writer.start() + writer.set(SetInfo("branch:main", "Main library")) +
                writer.finish(ResumptionToken("", 10, 11)))
    token = check_oai(document).find(f".//{OAI}resumptionToken")
    assert token is not None and token.text is None and token.get("cursor") == "10"


def test_list_writer_misuse() -> None:
    """The writer refuses out-of-order calls, wrong item kinds and empty lists."""
    writer = ListWriter("ListRecords", BASE, NOW, [])
    with pytest.raises(RuntimeError):
        writer.record(RecordHeader("a", NOW), oai_dc("x"))
    writer.start()
    with pytest.raises(RuntimeError):
        writer.header(RecordHeader("a", NOW))
    with pytest.raises(RuntimeError):
        writer.finish()
    with pytest.raises(ValueError):
        ListWriter("GetRecord", BASE, NOW, [])


def test_streaming_memory_does_not_grow_with_the_list() -> None:
    """Writing 20,000 records peaks at about the same memory as writing 1,000."""
    def peak(count: int) -> int:
        tracemalloc.start()
        writer = ListWriter("ListRecords", BASE, NOW, [("verb", "ListRecords")])
        written = len(writer.start())
        for i in range(count):
            written += len(writer.record(RecordHeader(f"oai:x:{i}", NOW, ("kind:book",)),
                                         oai_dc(f"Title {i}")))
        written += len(writer.finish(ResumptionToken("t", 0, count * 2)))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert written > count * 200
        return top
    small, large = peak(1_000), peak(20_000)
    assert large < small + 64 * 1024, (small, large)


# -- Sickle (PyPI) harvesting an in-process repository -----------------------------------------

sickle = pytest.importorskip("sickle")
SickleBase: Any = sickle.Sickle


@dataclass
class Item:
    identifier: str
    datestamp: datetime
    title: str
    sets: tuple[str, ...] = ("kind:book",)
    deleted: bool = False


class Repository:
    """A tiny repository wired from these modules the way the gateway will wire them."""

    page_size = 3

    def __init__(self, items: list[Item]) -> None:
        self.items = {item.identifier: item for item in items}
        self.codec = TokenCodec(b"r" * 32)
        self.now = NOW
        self.requests: list[dict[str, str]] = []

    def handle(self, params: dict[str, str]) -> bytes:
        self.requests.append(params)
        pairs = list(params.items())
        try:
            request = parse_request(pairs, codec=self.codec, now=self.now,
                                    metadata_prefixes=["oai_dc"])
            if isinstance(request, Identify):
                return identify_response(replace(INFO, base_url=BASE), self.now)
            if isinstance(request, ListRequest):
                return self.list(request, pairs)
            if isinstance(request, GetRecord):
                item = self.items.get(request.identifier)
                if item is None:
                    raise OAIError(OAIErrorCode.ID_DOES_NOT_EXIST, request.identifier)
                return get_record_response(BASE, self.now, self.header(item), oai_dc(item.title),
                                           pairs)
            assert isinstance(request, (ListSets, ListMetadataFormats))
            raise OAIError(OAIErrorCode.NO_SET_HIERARCHY)
        except OAIError as error:
            return error_response(BASE, self.now, [error], pairs)

    @staticmethod
    def header(item: Item) -> RecordHeader:
        return RecordHeader(item.identifier, item.datestamp, item.sets, item.deleted)

    @staticmethod
    def key(item: Item) -> str:
        return f"{int(item.datestamp.timestamp()):012d}|{item.identifier}"

    def list(self, request: ListRequest, pairs: list[tuple[str, str]]) -> bytes:
        until = request.until or self.now  # a harvest is a snapshot up to its first request
        selected = sorted(
            (item for item in self.items.values()
             if (request.from_ is None or item.datestamp >= request.from_)
             and item.datestamp <= until
             and (request.set_spec is None or request.set_spec in item.sets)),
            key=self.key)
        resumed = request.resumption
        after = resumed.position if resumed else ""
        cursor = resumed.cursor if resumed else 0
        remaining = [item for item in selected if self.key(item) > after]
        page, rest = remaining[: self.page_size], remaining[self.page_size:]
        if not page:
            raise OAIError(OAIErrorCode.NO_RECORDS_MATCH)
        writer = ListWriter(request.verb, BASE, self.now, pairs)
        chunks = [writer.start()]
        for item in page:
            if request.verb == "ListRecords":
                chunks.append(writer.record(self.header(item), oai_dc(item.title)))
            else:
                chunks.append(writer.header(self.header(item)))
        token = None
        size = cursor + len(remaining)
        if rest:
            state = ResumptionState(request.verb, request.metadata_prefix, request.set_spec,
                                    request.from_, until, cursor + len(page),
                                    self.key(page[-1]), self.now + timedelta(hours=1), size)
            token = ResumptionToken(self.codec.encode(state), cursor, size, state.expires)
        elif resumed:
            token = ResumptionToken("", cursor, size)
        chunks.append(writer.finish(token))
        document = b"".join(chunks)
        check_oai(document)
        return document


class _HTTPReply:
    status_code = 200
    encoding = "utf-8"

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.text = content.decode()

    def raise_for_status(self) -> None:
        return None


class InProcessSickle(SickleBase):
    """Sickle with its HTTP call replaced by a direct call into the repository."""

    def __init__(self, repository: Repository) -> None:
        super().__init__(BASE)
        self.repository = repository

    def _request(self, kwargs: dict[str, Any]) -> _HTTPReply:
        return _HTTPReply(self.repository.handle({k: str(v) for k, v in kwargs.items()}))


def catalogue(count: int = 8) -> list[Item]:
    return [Item(f"oai:library.example.org:{i}", NOW - timedelta(days=30 - i), f"Title {i}")
            for i in range(1, count + 1)]


def identifiers(records: Iterator[Any]) -> list[tuple[str, bool]]:
    return [(r.header.identifier, r.header.deleted) for r in records]


def test_sickle_full_harvest_follows_resumption_tokens() -> None:
    """Sickle harvests every record across pages, reading our tokens and metadata."""
    repository = Repository(catalogue(8))
    harvester = InProcessSickle(repository)
    records = list(harvester.ListRecords(metadataPrefix="oai_dc"))
    assert [r.metadata["title"] for r in records] == [[f"Title {i}"] for i in range(1, 9)]
    assert len(repository.requests) == 3
    assert set(repository.requests[1]) == {"verb", "resumptionToken"}


def test_sickle_incremental_harvest_sees_exactly_the_changes() -> None:
    """After a record update, a holdings change and a deletion, from= sees exactly those three."""
    repository = Repository(catalogue(8))
    harvester = InProcessSickle(repository)
    assert len(list(harvester.ListIdentifiers(metadataPrefix="oai_dc"))) == 8
    last_harvest = repository.now
    repository.now = NOW + timedelta(hours=2)
    changed = repository.items
    changed["oai:library.example.org:2"].title = "Title 2, revised"
    changed["oai:library.example.org:2"].datestamp = NOW + timedelta(minutes=10)
    changed["oai:library.example.org:4"].datestamp = NOW + timedelta(minutes=20)  # checked out
    changed["oai:library.example.org:6"].deleted = True
    changed["oai:library.example.org:6"].datestamp = NOW + timedelta(minutes=30)
    records = harvester.ListRecords(metadataPrefix="oai_dc",
                                    **{"from": format_datestamp(last_harvest)})
    assert identifiers(records) == [("oai:library.example.org:2", False),
                                    ("oai:library.example.org:4", False),
                                    ("oai:library.example.org:6", True)]


def test_sickle_reads_errors_as_exceptions() -> None:
    """Our error codes reach Sickle as its exceptions of the same names."""
    oaiexceptions = pytest.importorskip("sickle.oaiexceptions")
    harvester = InProcessSickle(Repository(catalogue(2)))
    with pytest.raises(oaiexceptions.CannotDisseminateFormat):
        next(iter(harvester.ListRecords(metadataPrefix="mods")))
    with pytest.raises(oaiexceptions.NoRecordsMatch):
        next(iter(harvester.ListRecords(metadataPrefix="oai_dc", **{"from": "2030-01-01"})))
    with pytest.raises(oaiexceptions.IdDoesNotExist):
        harvester.GetRecord(identifier="oai:nowhere:1", metadataPrefix="oai_dc")
    with pytest.raises(oaiexceptions.BadResumptionToken):
        next(iter(harvester.ListRecords(resumptionToken="forged.token")))


def test_sickle_identify_and_get_record() -> None:
    """Sickle reads Identify and GetRecord as we write them."""
    harvester = InProcessSickle(Repository(catalogue(2)))
    identify = harvester.Identify()
    assert identify.repositoryName == "Example Library"
    assert identify.granularity == "YYYY-MM-DDThh:mm:ssZ"
    record = harvester.GetRecord(identifier="oai:library.example.org:1", metadataPrefix="oai_dc")
    assert record.metadata["title"] == ["Title 1"]
    assert record.header.datestamp == format_datestamp(NOW - timedelta(days=29))
