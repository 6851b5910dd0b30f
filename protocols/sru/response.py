# -*- test-case-name: tests.protocols.test_sru_response -*-
"""SRU responses written with lxml, in the namespaces of the request's version.

SRU 1.1 and 1.2 answer in C{http://www.loc.gov/zing/srw/} (prefix C{zs}, as YAZ writes it) with
diagnostics in C{http://www.loc.gov/zing/srw/diagnostic/}; SRU 2.0 answers in the OASIS
C{sruResponse} namespace (scan in the OASIS C{scan} namespace) with OASIS diagnostics, no
C{version} element, C{recordXMLEscaping} instead of the old C{recordPacking}, C{resultSetTTL}
instead of C{resultSetIdleTime}, and a C{resultCountPrecision}.

The gateway's SRU service will render each retrieved record (MARCXML, Dublin Core, OPAC) to
bytes of one XML element, wrap them in L{ResponseRecord}s, and call L{search_retrieve_response},
L{scan_response} or L{explain_response}; L{error_response} answers a request that failed
validation, choosing the root element from the operation the L{SRURequestError} carries.
Every document is UTF-8 with a double-quoted declaration, and a C{<?xml-stylesheet?>}
processing instruction when the request named a stylesheet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from lxml import etree

from .. import xmltext
from ..xmltext import WellFormed
from .diagnostics import Diagnostic, SRUError
from .request import (
    ExplainRequest,
    Operation,
    RecordPacking,
    SearchRetrieveRequest,
    SRURequestError,
)

__all__ = [
    "DIAGNOSTIC_SCHEMA",
    "SRU1_DIAGNOSTIC_NS",
    "SRU1_NS",
    "SRU2_DIAGNOSTIC_NS",
    "SRU2_NS",
    "SRU2_SCAN_NS",
    "ResponseRecord",
    "ScanTerm",
    "WhereInList",
    "error_response",
    "explain_response",
    "scan_response",
    "search_retrieve_response",
]

SRU1_NS = "http://www.loc.gov/zing/srw/"
SRU1_DIAGNOSTIC_NS = "http://www.loc.gov/zing/srw/diagnostic/"
SRU2_NS = "http://docs.oasis-open.org/ns/search-ws/sruResponse"
SRU2_DIAGNOSTIC_NS = "http://docs.oasis-open.org/ns/search-ws/diagnostic"
SRU2_SCAN_NS = "http://docs.oasis-open.org/ns/search-ws/scan"
DIAGNOSTIC_SCHEMA = "info:srw/schema/1/diagnostics-v1.1"
"""The recordSchema of a surrogate diagnostic (a record that could not be supplied)."""
EXACT_COUNT = "info:srw/vocabulary/resultCountPrecision/1/exact"

_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_RECORD_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                 huge_tree=False, remove_blank_text=False)

_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

@dataclass(frozen=True)
class ResponseRecord:
    """One record at a position in the result set: its XML, or the reason it is missing.

    C{data} is one serialised XML element (parsed and checked before it is written), a
    L{protocols.xmltext.WellFormed} (written as it is), or an lxml element; a record that cannot be
    supplied carries C{diagnostic} instead, and is written as a surrogate diagnostic.
    """

    schema: str
    position: int
    data: bytes | etree._Element | None = None
    diagnostic: SRUError | None = None


class WhereInList(Enum):
    """Where a scan term stands in the whole index."""

    FIRST = "first"
    LAST = "last"
    ONLY = "only"
    INNER = "inner"


@dataclass(frozen=True)
class ScanTerm:
    """One scan entry: the term, how many records carry it, and how to show it."""

    value: str
    number_of_records: int | None = None
    display_term: str | None = None
    where_in_list: WhereInList | None = None


class _Writer:
    """Element building in one version's namespaces."""

    def __init__(self, version: str, root_ns: str | None = None) -> None:
        self.spliced: list[bytes] = []
        """The content of each record carrying WellFormed XML, in document order: left out of
        the tree (an empty ``record`` element in its place) and written into the serialised
        document by :func:`_document`."""
        self.version = version
        self.modern = version.startswith("2.")
        self.ns = root_ns or (SRU2_NS if self.modern else SRU1_NS)
        self.diag_ns = SRU2_DIAGNOSTIC_NS if self.modern else SRU1_DIAGNOSTIC_NS

    def root(self, name: str) -> etree._Element:
        prefix = "scan" if self.ns == SRU2_SCAN_NS else "zs"
        return etree.Element(f"{{{self.ns}}}{name}", nsmap={prefix: self.ns})

    def child(self, parent: etree._Element, name: str, text: object = None) -> etree._Element:
        element = etree.SubElement(parent, f"{{{self.ns}}}{name}")
        if text is not None:
            element.text = str(text)
        return element

    def version_element(self, root: etree._Element) -> None:
        if not self.modern:
            self.child(root, "version", self.version)

    def diagnostic(self, parent: etree._Element, error: SRUError) -> None:
        element = etree.SubElement(parent, f"{{{self.diag_ns}}}diagnostic",
                                   nsmap={"diag": self.diag_ns})
        etree.SubElement(element, f"{{{self.diag_ns}}}uri").text = error.diagnostic.uri
        if error.details:
            etree.SubElement(element, f"{{{self.diag_ns}}}details").text = _clean(error.details)
        etree.SubElement(element, f"{{{self.diag_ns}}}message").text = _clean(error.message)

    def diagnostics(self, root: etree._Element, errors: Sequence[SRUError]) -> None:
        if errors:
            container = self.child(root, "diagnostics")
            for error in errors:
                self.diagnostic(container, error)

    def record(self, parent: etree._Element, name: str, schema: str, packing: RecordPacking,
               data: bytes | etree._Element, position: int | None) -> None:
        if (isinstance(data, WellFormed) and packing is RecordPacking.XML and name == "record"
                and not _NOT_XML_CHAR.search(schema)):
            # the whole <zs:record> as text: an empty one in the tree marks its place
            self.child(parent, name)
            packing_name = "recordXMLEscaping" if self.modern else "recordPacking"
            tail = (b"" if position is None
                    else b"<zs:recordPosition>%d</zs:recordPosition>" % position)
            self.spliced.append(b"".join((
                f"<zs:recordSchema>{xmltext.text(schema)}</zs:recordSchema>"
                f"<zs:{packing_name}>xml</zs:{packing_name}><zs:recordData>".encode(),
                data, b"</zs:recordData>", tail)))
            return
        record = self.child(parent, name)
        self.child(record, "recordSchema", schema)
        if self.modern:
            self.child(record, "recordXMLEscaping", packing.value)
        else:
            self.child(record, "recordPacking", packing.value)
        record_data = self.child(record, "recordData")
        if isinstance(data, WellFormed) and packing is not RecordPacking.XML:
            record_data.text = data.decode("utf-8")
        elif packing is RecordPacking.XML:
            element = _element(data)
            record_data.append(element)
        else:
            record_data.text = etree.tostring(_element(data), encoding="unicode")
        if position is not None:
            self.child(record, "recordPosition", position)


def _element(data: bytes | etree._Element) -> etree._Element:
    if not isinstance(data, bytes):
        return data
    try:
        return etree.fromstring(data, _RECORD_PARSER)
    except etree.XMLSyntaxError as error:
        raise SRUError(Diagnostic.SYSTEM_ERROR_IN_PRESENTING_RECORDS, "malformed record") \
            from error


def _clean(text: str) -> str:
    """Text safe for XML 1.0: characters it cannot carry become U+FFFD."""
    return _NOT_XML_CHAR.sub("\ufffd", text)


_EMPTY_RECORD = b"<zs:record/>"


def _document(root: etree._Element, stylesheet: str | None,
              spliced: Sequence[bytes] = ()) -> bytes:
    """The declaration, the stylesheet instruction, the tree; the spliced records written into
    the ``record`` elements left empty for them (in order: no other ``record`` is empty)."""
    head = _DECLARATION
    if stylesheet:
        href = stylesheet.replace("&", "&amp;").replace('"', "&quot;")
        head += f'<?xml-stylesheet type="text/xsl" href="{href}"?>\n'.encode()
    body = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    if spliced:
        parts = body.split(_EMPTY_RECORD)
        if len(parts) != len(spliced) + 1:
            raise AssertionError("record elements and spliced records out of step")
        out = [head, parts[0]]
        for data, rest in zip(spliced, parts[1:], strict=True):
            out += (b"<zs:record>", data, b"</zs:record>", rest)
        return b"".join(out)
    return head + body


def _surrogate(writer: _Writer, parent: etree._Element, record: ResponseRecord,
               error: SRUError) -> None:
    holder = etree.Element("holder")
    writer.diagnostic(holder, error)
    writer.record(parent, "record", DIAGNOSTIC_SCHEMA, RecordPacking.XML, holder[0],
                  record.position)


def search_retrieve_response(
    request: SearchRetrieveRequest | None,
    *,
    version: str | None = None,
    number_of_records: int = 0,
    records: Sequence[ResponseRecord] = (),
    result_set_id: str | None = None,
    result_set_ttl: int | None = None,
    next_record_position: int | None = None,
    diagnostics: Sequence[SRUError] = (),
    echo: bool | None = None,
) -> bytes:
    """A searchRetrieveResponse: the count, the page of records, the next position, diagnostics.

    @param request: the request answered (its version, packing and stylesheet are used, and it
        is echoed when C{echo}); C{None} with C{version} when the request did not validate.
    @param number_of_records: the exact hit count (0 with a fatal diagnostic).
    @param records: the page, in position order; surrogate diagnostics in place of records
        that could not be supplied.
    @param next_record_position: the position after this page, or C{None} at the end.
    @param echo: write C{echoedSearchRetrieveRequest}; by default only in 2.0, where the
        schema makes its C{xQuery} (the query in XCQL) optional, which Interlend does not
        write.
    """
    writer = _Writer(request.version if request else version or "1.2")
    packing = request.record_packing if request else RecordPacking.XML
    root = writer.root("searchRetrieveResponse")
    writer.version_element(root)
    writer.child(root, "numberOfRecords", number_of_records)
    if result_set_id is not None:
        writer.child(root, "resultSetId", result_set_id)
        if result_set_ttl is not None and not writer.modern:
            writer.child(root, "resultSetIdleTime", max(result_set_ttl, 1))
    if records:
        container = writer.child(root, "records")
        for record in records:
            if record.diagnostic is not None or record.data is None:
                error = record.diagnostic or SRUError(Diagnostic.RECORD_TEMPORARILY_UNAVAILABLE)
                _surrogate(writer, container, record, error)
            else:
                writer.record(container, "record", record.schema, packing, record.data,
                              record.position)
    if next_record_position is not None:
        writer.child(root, "nextRecordPosition", next_record_position)
    if echo is None:
        echo = writer.modern
    if request is not None and echo:
        _echo_search_retrieve(writer, root, request)
    writer.diagnostics(root, diagnostics)
    if writer.modern:
        if result_set_id is not None and result_set_ttl is not None:
            writer.child(root, "resultSetTTL", result_set_ttl)
        if not diagnostics:
            writer.child(root, "resultCountPrecision", EXACT_COUNT)
    return _document(root, request.stylesheet if request else None, writer.spliced)


def _echo_search_retrieve(writer: _Writer, root: etree._Element,
                          request: SearchRetrieveRequest) -> None:
    echo = writer.child(root, "echoedSearchRetrieveRequest")
    writer.version_element(echo)
    if writer.modern:
        writer.child(echo, "queryType", "cql")
    writer.child(echo, "query", _clean(request.query_text))
    writer.child(echo, "startRecord", request.start_record)
    writer.child(echo, "maximumRecords", request.maximum_records)
    writer.child(echo, "recordXMLEscaping" if writer.modern else "recordPacking",
                 request.record_packing.value)
    if request.record_schema:
        writer.child(echo, "recordSchema", _clean(request.record_schema))
    if request.result_set_ttl is not None:
        writer.child(echo, "resultSetTTL", request.result_set_ttl)
    if request.stylesheet:
        writer.child(echo, "stylesheet", request.stylesheet)


def scan_response(
    version: str,
    terms: Sequence[ScanTerm] = (),
    *,
    diagnostics: Sequence[SRUError] = (),
    stylesheet: str | None = None,
) -> bytes:
    """A scanResponse: the terms around the scan clause's term, in index order."""
    writer = _Writer(version, SRU2_SCAN_NS if version.startswith("2.") else None)
    root = writer.root("scanResponse")
    writer.version_element(root)
    if terms:
        container = writer.child(root, "terms")
        for term in terms:
            element = writer.child(container, "term")
            writer.child(element, "value", _clean(term.value))
            if term.number_of_records is not None:
                writer.child(element, "numberOfRecords", term.number_of_records)
            if term.display_term is not None:
                writer.child(element, "displayTerm", _clean(term.display_term))
            if term.where_in_list is not None:
                writer.child(element, "whereInList", term.where_in_list.value)
    writer.diagnostics(root, diagnostics)
    return _document(root, stylesheet)


def explain_response(
    request: ExplainRequest,
    explain_record: etree._Element | bytes,
    *,
    diagnostics: Sequence[SRUError] = (),
) -> bytes:
    """An explainResponse carrying the ZeeRex record (see L{protocols.sru.explain})."""
    writer = _Writer(request.version)
    root = writer.root("explainResponse")
    writer.version_element(root)
    element = _element(explain_record)
    schema = etree.QName(element).namespace or ""
    writer.record(root, "record", schema, request.record_packing, element, None)
    writer.diagnostics(root, diagnostics)
    return _document(root, request.stylesheet)


def error_response(error: SRURequestError) -> bytes:
    """The response to a request that failed validation: the operation's root, one diagnostic.

    A scan gets a scanResponse; any other operation a searchRetrieveResponse with no records
    (an explainResponse must carry a record, so a failed explain is answered this way too),
    in the version the error names.
    """
    if error.operation is Operation.SCAN:
        return scan_response(error.version, diagnostics=[error])
    return search_retrieve_response(None, version=error.version, diagnostics=[error])
