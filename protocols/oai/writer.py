# -*- test-case-name: tests.protocols.test_oai_writer -*-
"""OAI-PMH 2.0 responses as bytes, the long lists written chunk by chunk in constant memory.

L{ListWriter} writes C{ListRecords}, C{ListIdentifiers} and C{ListSets}: L{ListWriter.start}
returns the document's head, each L{ListWriter.record} (or C{header}, C{set}) one item, and
L{ListWriter.finish} the resumption token and the closing tags. The gateway sends each chunk to
the HTTP transport as it comes, so nothing larger than one record is ever held. It must know
the first item exists before calling C{start} (an empty list is C{noRecordsMatch}, an error
response); a failure after C{start} can only abort the connection.

The envelope, headers and tokens are written from templates with every text and attribute
escaped; record metadata and descriptions are parsed (no DTD, no entities, no network) and
re-serialised, so a malformed rendering fails here instead of reaching a harvester. Datestamps
are UTC at the repository's granularity; a deleted record has C{status="deleted"} and no
metadata; the last page of a resumed list carries an empty token with its cursor and
completeListSize, as the protocol asks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from lxml import etree

from ..xmltext import WellFormed
from .errors import OAIError
from .request import Granularity, format_datestamp

__all__ = [
    "OAI_NS",
    "OAI_SCHEMA_LOCATION",
    "DeletedRecordPolicy",
    "ListWriter",
    "MetadataFormat",
    "RecordHeader",
    "RepositoryInfo",
    "ResumptionToken",
    "SetInfo",
    "error_response",
    "get_record_response",
    "identify_response",
    "list_metadata_formats_response",
]

OAI_NS = "http://www.openarchives.org/OAI/2.0/"
OAI_SCHEMA_LOCATION = f"{OAI_NS} http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False)

_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

@dataclass(frozen=True)
class RecordHeader:
    """An item's header: identifier, datestamp (UTC), sets, and whether it is deleted."""

    identifier: str
    datestamp: datetime
    set_specs: tuple[str, ...] = ()
    deleted: bool = False


@dataclass(frozen=True)
class ResumptionToken:
    """The C{<resumptionToken>} of a page: empty C{value} on the last page of a resumed list."""

    value: str
    cursor: int | None = None
    complete_list_size: int | None = None
    expiration: datetime | None = None


@dataclass(frozen=True)
class MetadataFormat:
    """A format the repository disseminates (C{oai_dc}, C{marc21} ...)."""

    prefix: str
    schema: str
    namespace: str


@dataclass(frozen=True)
class SetInfo:
    """A set: its spec (C{branch:main}), name, and optional description element."""

    spec: str
    name: str
    description: bytes | None = None


class DeletedRecordPolicy(Enum):
    """The values of C{Identify}'s C{deletedRecord}."""

    NO = "no"
    PERSISTENT = "persistent"
    TRANSIENT = "transient"


@dataclass(frozen=True)
class RepositoryInfo:
    """What C{Identify} says about the repository."""

    name: str
    base_url: str
    admin_emails: tuple[str, ...]
    earliest_datestamp: datetime
    deleted_record: DeletedRecordPolicy = DeletedRecordPolicy.PERSISTENT
    granularity: Granularity = Granularity.SECONDS
    descriptions: tuple[bytes, ...] = ()


def _clean(text: str) -> str:
    """Text safe for XML 1.0: characters it cannot carry become U+FFFD."""
    return _NOT_XML_CHAR.sub("\ufffd", text)


def _text(text: str) -> str:
    return _clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(text: str) -> str:
    return (_text(text).replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;")
            .replace("\r", "&#13;"))


def _element(name: str, text: str, **attributes: str | None) -> str:
    attrs = "".join(f' {key}="{_attribute(value)}"' for key, value in attributes.items()
                    if value is not None)
    return f"<{name}{attrs}>{_text(text)}</{name}>"


def _fragment(data: bytes | etree._Element, what: str) -> bytes:
    """One foreign-namespace element, checked and serialised as UTF-8 without a declaration.

    An lxml element is only serialised; bytes are parsed first, so pass elements where the
    rendering already has them, and :class:`~protocols.xmltext.WellFormed` where it wrote the
    element as text (embedded as it is).
    """
    if isinstance(data, WellFormed):
        return data
    try:
        element = data if isinstance(data, etree._Element) else etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as error:
        raise ValueError(f"{what} is not well-formed XML: {error}") from error
    namespace = etree.QName(element).namespace
    if namespace is None or namespace == OAI_NS:
        raise ValueError(f"{what} must be an element in its own namespace")
    return etree.tostring(element, encoding="UTF-8")


def _head(base_url: str, response_date: datetime, arguments: Sequence[tuple[str, str]],
          stylesheet: str | None) -> str:
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    if stylesheet:
        head += f'<?xml-stylesheet type="text/xsl" href="{_attribute(stylesheet)}"?>\n'
    attrs = "".join(f' {name}="{_attribute(value)}"' for name, value in arguments)
    return (f'{head}<OAI-PMH xmlns="{OAI_NS}" xmlns:xsi="{XSI_NS}" '
            f'xsi:schemaLocation="{OAI_SCHEMA_LOCATION}">\n'
            f"<responseDate>{format_datestamp(response_date)}</responseDate>\n"
            f"<request{attrs}>{_text(base_url)}</request>\n")


_TAIL = "</OAI-PMH>\n"
_REQUEST_ARGUMENTS = frozenset({"verb", "identifier", "metadataPrefix", "from", "until", "set",
                                "resumptionToken"})


def _echo(arguments: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request's arguments as the C{<request>} element may carry them."""
    return [(name, value) for name, value in arguments if name in _REQUEST_ARGUMENTS]


def _header(header: RecordHeader, granularity: Granularity) -> str:
    status = ' status="deleted"' if header.deleted else ""
    sets = "".join(_element("setSpec", spec) for spec in header.set_specs)
    return (f"<header{status}>{_element('identifier', header.identifier)}"
            f"<datestamp>{format_datestamp(header.datestamp, granularity)}</datestamp>"
            f"{sets}</header>")


def _record(header: RecordHeader, metadata: bytes | etree._Element | None,
            granularity: Granularity) -> bytes:
    if header.deleted:
        return f"<record>{_header(header, granularity)}</record>\n".encode()
    if metadata is None:
        raise ValueError("a record that is not deleted needs metadata")
    return (f"<record>{_header(header, granularity)}<metadata>".encode()
            + _fragment(metadata, "metadata") + b"</metadata></record>\n")


def error_response(base_url: str, response_date: datetime, errors: Sequence[OAIError],
                   arguments: Iterable[tuple[str, str]] = (),
                   stylesheet: str | None = None) -> bytes:
    """An error response; the request's arguments are echoed unless an error forbids it."""
    echoed = [] if any(e.omits_request_arguments for e in errors) else _echo(arguments)
    body = "".join(_element("error", e.message, code=e.code.value) + "\n" for e in errors)
    return (_head(base_url, response_date, echoed, stylesheet) + body + _TAIL).encode()


def identify_response(info: RepositoryInfo, response_date: datetime,
                      stylesheet: str | None = None) -> bytes:
    """The Identify response."""
    parts = [
        _element("repositoryName", info.name),
        _element("baseURL", info.base_url),
        "<protocolVersion>2.0</protocolVersion>",
        *(_element("adminEmail", email) for email in info.admin_emails),
        _element("earliestDatestamp",
                 format_datestamp(info.earliest_datestamp, info.granularity)),
        _element("deletedRecord", info.deleted_record.value),
        _element("granularity", info.granularity.value),
        *(f"<description>{_fragment(d, 'description').decode()}</description>"
          for d in info.descriptions),
    ]
    body = "<Identify>\n" + "\n".join(parts) + "\n</Identify>\n"
    head = _head(info.base_url, response_date, [("verb", "Identify")], stylesheet)
    return (head + body + _TAIL).encode()


def list_metadata_formats_response(base_url: str, response_date: datetime,
                                   formats: Sequence[MetadataFormat],
                                   arguments: Iterable[tuple[str, str]],
                                   stylesheet: str | None = None) -> bytes:
    """ListMetadataFormats; the caller answers C{noMetadataFormats} instead of an empty list."""
    if not formats:
        raise ValueError("an empty format list is the noMetadataFormats error")
    items = "".join(
        f"<metadataFormat>{_element('metadataPrefix', f.prefix)}{_element('schema', f.schema)}"
        f"{_element('metadataNamespace', f.namespace)}</metadataFormat>\n" for f in formats)
    head = _head(base_url, response_date, _echo(arguments), stylesheet)
    return (head + "<ListMetadataFormats>\n" + items + "</ListMetadataFormats>\n" + _TAIL
            ).encode()


def get_record_response(base_url: str, response_date: datetime, header: RecordHeader,
                        metadata: bytes | etree._Element | None,
                        arguments: Iterable[tuple[str, str]],
                        granularity: Granularity = Granularity.SECONDS,
                        stylesheet: str | None = None) -> bytes:
    """GetRecord: one record, or its header alone when it is deleted."""
    head = _head(base_url, response_date, _echo(arguments), stylesheet)
    return ((head + "<GetRecord>").encode() + _record(header, metadata, granularity)
            + ("</GetRecord>\n" + _TAIL).encode())


class ListWriter:
    """ListRecords, ListIdentifiers or ListSets, one chunk of bytes per call."""

    _ITEMS = {"ListRecords": "record", "ListIdentifiers": "header", "ListSets": "set"}

    def __init__(self, verb: str, base_url: str, response_date: datetime,
                 arguments: Iterable[tuple[str, str]],
                 granularity: Granularity = Granularity.SECONDS,
                 stylesheet: str | None = None) -> None:
        if verb not in self._ITEMS:
            raise ValueError(f"{verb} is not a list verb")
        self.verb = verb
        self._base_url = base_url
        self._response_date = response_date
        self._arguments = _echo(arguments)
        self._granularity = granularity
        self._stylesheet = stylesheet
        self._state = "new"
        self.count = 0

    def _expect(self, state: str, item: str | None = None) -> None:
        if self._state != state:
            raise RuntimeError(f"{self.verb} writer is {self._state}, not {state}")
        if item is not None and self._ITEMS[self.verb] != item:
            raise RuntimeError(f"{self.verb} does not list {item}s")

    def start(self) -> bytes:
        """The document head up to the opening list element."""
        self._expect("new")
        self._state = "open"
        head = _head(self._base_url, self._response_date, self._arguments, self._stylesheet)
        return (head + f"<{self.verb}>\n").encode()

    def record(self, header: RecordHeader, metadata: bytes | etree._Element | None) -> bytes:
        """One C{<record>} (ListRecords); C{metadata} is ignored for a deleted record."""
        self._expect("open", "record")
        self.count += 1
        return _record(header, metadata, self._granularity)

    def header(self, header: RecordHeader) -> bytes:
        """One C{<header>} (ListIdentifiers)."""
        self._expect("open", "header")
        self.count += 1
        return (_header(header, self._granularity) + "\n").encode()

    def set(self, info: SetInfo) -> bytes:
        """One C{<set>} (ListSets)."""
        self._expect("open", "set")
        self.count += 1
        description = ("" if info.description is None else
                       "<setDescription>"
                       f"{_fragment(info.description, 'setDescription').decode()}"
                       "</setDescription>")
        return (f"<set>{_element('setSpec', info.spec)}{_element('setName', info.name)}"
                f"{description}</set>\n").encode()

    def finish(self, token: ResumptionToken | None = None) -> bytes:
        """The resumption token (if the list is incomplete or resumed) and the closing tags."""
        self._expect("open")
        if self.count == 0:
            raise RuntimeError("an empty list is the noRecordsMatch error, not a list")
        self._state = "finished"
        tail = ""
        if token is not None:
            expiration = (None if token.expiration is None
                          else format_datestamp(token.expiration))
            tail = _element(
                "resumptionToken", token.value,
                expirationDate=expiration,
                completeListSize=None if token.complete_list_size is None
                else str(token.complete_list_size),
                cursor=None if token.cursor is None else str(token.cursor)) + "\n"
        return (tail + f"</{self.verb}>\n" + _TAIL).encode()
