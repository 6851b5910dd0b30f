# -*- test-case-name: tests.gateway.upstream_ncip.test_settings_and_shapes -*-
"""NCIP as an initiator: requests written in an LMS's dialect, and its replies read leniently.

Interlend answers brokers; toward the library's own NCIP responder it is the client. The
request shape (namespace and prefix, version string, NCIP 1 structure) comes from a
:class:`RequestShape`; the reply reader tolerates what real responders send (``text/html``
bodies, Problems without a ProblemType, NCIP 1 shapes in an NCIP 2 envelope, blank padding,
malformed XML, HTML error pages) and reports each as data, never as an exception.
Pure: no I/O, no Twisted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from typing import Literal

from lxml import etree

from .codes import NCIP2_NS
from .dates import format_ncip_datetime, parse_ncip_date
from .problems import NCIPSyntaxError
from .safexml import parse_xml
from .sierra_ids import BadCheckDigit
from .sierra_ids import to_lms as sierra_to_lms

NCIP1_VERSION_URI = "http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd"
NCIP2_VERSION_URI = "http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd"
NCIP1_DOCTYPE = ('<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1//EN" '
                 '"http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">')
V1_SCHEME = "http://www.niso.org/ncip/v1_0/schemes/"

MAX_REPLY_BYTES = 512 * 1024

Style = Literal["prefix", "default", "none"]
RecordIds = Literal["plain", "sierra"]


@dataclass(frozen=True)
class RequestShape:
    """How one LMS wants its requests written."""

    style: Style = "prefix"          # ``ns1:`` prefix, default namespace, or no namespace
    prefix: str = "ns1"
    version: str = NCIP2_VERSION_URI
    ncip1: bool = False              # NCIP 1 structure (Unique* ids, Scheme/Value pairs)
    application_profile: str | None = None
    record_ids: RecordIds = "plain"  # "sierra": record numbers in the form Sierra wants them


@dataclass(frozen=True)
class Bibliographic:
    """The brief description sent with AcceptItem."""

    title: str = ""
    author: str = ""
    publisher: str = ""
    date: str = ""
    isbn: str = ""


@dataclass(frozen=True)
class UpstreamRequest:
    """One request to the LMS, in domain terms; :func:`write_request` gives it its shape."""

    service: str
    from_agency: str
    to_agency: str
    user_id: str | None = None
    item_id: str | None = None
    request_id: str | None = None
    request_agency: str | None = None
    requested_action: str | None = None
    pickup_location: str | None = None
    bibliographic: Bibliographic | None = None
    date_due: datetime | None = None
    user_elements: tuple[str, ...] = ()
    request_type: str = "Hold"
    request_scope: str = "Item"
    bib_id: str | None = None        # RequestItem for a title (instead of the item)
    bib_id_code: str = "SYSNUMBER"


class _Writer:
    def __init__(self, shape: RequestShape) -> None:
        self.shape = shape
        self.ns = NCIP2_NS if shape.style != "none" and not shape.ncip1 else None

    def lms_id(self, value: str, kind: str) -> str:
        """An id as the LMS wants it (Sierra: record numbers without dot or check digit; one
        with a wrong check digit goes as written, for the LMS to call unknown)."""
        if self.shape.record_ids != "sierra":
            return value
        try:
            return sierra_to_lms(value, kind)
        except BadCheckDigit:
            return value

    def tag(self, name: str) -> str:
        return f"{{{self.ns}}}{name}" if self.ns else name

    def sub(self, parent: etree._Element, name: str, text: str | None = None
            ) -> etree._Element:
        node = etree.SubElement(parent, self.tag(name))
        if text is not None:
            node.text = text
        return node

    def scheme_value(self, parent: etree._Element, name: str, value: str,
                     scheme: str | None = None) -> None:
        """NCIP 1 ``<X><Scheme/><Value/></X>``; NCIP 2 plain text."""
        if self.shape.ncip1:
            node = self.sub(parent, name)
            self.sub(node, "Scheme", scheme or V1_SCHEME)
            self.sub(node, "Value", value)
        else:
            self.sub(parent, name, value)

    def agency(self, parent: etree._Element, value: str) -> None:
        if self.shape.ncip1:
            unique = self.sub(parent, "UniqueAgencyId")
            self.sub(unique, "Scheme", V1_SCHEME + "agencyidtype/agencyidtype.scm")
            self.sub(unique, "Value", value)
        else:
            self.sub(parent, "AgencyId", value)

    def header(self, parent: etree._Element, r: UpstreamRequest) -> None:
        head = self.sub(parent, "InitiationHeader")
        self.agency(self.sub(head, "FromAgencyId"), r.from_agency)
        self.agency(self.sub(head, "ToAgencyId"), r.to_agency)
        if self.shape.application_profile and not self.shape.ncip1:
            self.sub(head, "ApplicationProfileType", self.shape.application_profile)

    def user(self, parent: etree._Element, r: UpstreamRequest) -> None:
        if r.user_id is None:
            return
        if self.shape.ncip1:
            unique = self.sub(parent, "UniqueUserId")
            self.agency(unique, r.to_agency)
            self.sub(unique, "UserIdentifierValue", self.lms_id(r.user_id, "p"))
        else:
            self.sub(self.sub(parent, "UserId"), "UserIdentifierValue",
                     self.lms_id(r.user_id, "p"))

    def item(self, parent: etree._Element, r: UpstreamRequest) -> None:
        if r.item_id is None:
            return
        if self.shape.ncip1:
            unique = self.sub(parent, "UniqueItemId")
            self.agency(unique, r.to_agency)
            self.sub(unique, "ItemIdentifierValue", self.lms_id(r.item_id, "i"))
        else:
            self.sub(self.sub(parent, "ItemId"), "ItemIdentifierValue",
                     self.lms_id(r.item_id, "i"))

    def bibliographic_id(self, parent: etree._Element, r: UpstreamRequest) -> None:
        """``BibliographicId/BibliographicRecordId`` (the record, for a title request)."""
        assert r.bib_id is not None
        record = self.sub(self.sub(parent, "BibliographicId"), "BibliographicRecordId")
        self.sub(record, "BibliographicRecordIdentifier", self.lms_id(r.bib_id, "b"))
        self.scheme_value(record, "BibliographicRecordIdentifierCode", r.bib_id_code)

    def request(self, parent: etree._Element, r: UpstreamRequest) -> None:
        if r.request_id is None:
            return
        if self.shape.ncip1:
            unique = self.sub(parent, "UniqueRequestId")
            self.agency(unique, r.request_agency or r.from_agency)
            self.sub(unique, "RequestIdentifierValue", r.request_id)
        else:
            node = self.sub(parent, "RequestId")
            self.sub(node, "AgencyId", r.request_agency or r.from_agency)
            self.sub(node, "RequestIdentifierValue", r.request_id)


def write_request(r: UpstreamRequest, shape: RequestShape) -> bytes:
    """The request as bytes in the LMS's dialect (pretty-printed: NCIPServer takes the
    service element as the second child node, so the whitespace matters)."""
    w = _Writer(shape)
    nsmap: dict[str | None, str] | None = None
    if w.ns is not None:
        nsmap = {shape.prefix: w.ns} if shape.style == "prefix" else {None: w.ns}
    root = etree.Element(w.tag("NCIPMessage"), nsmap=nsmap)
    if w.ns is not None and shape.style == "prefix":
        root.set(f"{{{w.ns}}}version", shape.version)
    else:
        root.set("version", NCIP1_VERSION_URI if shape.ncip1 else shape.version)
    body = w.sub(root, r.service)
    w.header(body, r)
    s = r.service
    if s == "LookupUser":
        w.user(body, r)
        for element in r.user_elements:
            w.scheme_value(body, "UserElementType", element,
                           V1_SCHEME + "userelementtype/userelementtype.scm")
    elif s == "AcceptItem":
        w.request(body, r)
        w.scheme_value(body, "RequestedActionType", r.requested_action or "Hold For Pickup",
                       V1_SCHEME + "requestedactiontype/requestedactiontype.scm")
        w.user(body, r)
        w.item(body, r)
        if r.date_due is not None:
            w.sub(body, "DateForReturn", format_ncip_datetime(r.date_due))
        bib = r.bibliographic
        if bib is not None:
            optional = w.sub(body, "ItemOptionalFields")
            desc = w.sub(optional, "BibliographicDescription")
            for name, value in (("Author", bib.author), ("PublicationDate", bib.date),
                                ("Publisher", bib.publisher), ("Title", bib.title)):
                if value:
                    w.sub(desc, name, value)
        if r.pickup_location:
            w.scheme_value(body, "PickupLocation", r.pickup_location)
    elif s in ("CheckOutItem", "RenewItem"):
        w.user(body, r)
        w.item(body, r)
        w.request(body, r)
        if r.date_due is not None:
            w.sub(body, "DesiredDateDue", format_ncip_datetime(r.date_due))
    elif s in ("CheckInItem", "LookupItem", "DeleteItem"):
        w.item(body, r)
        if s == "CheckInItem":
            w.request(body, r)
    elif s == "RequestItem":
        w.user(body, r)
        if r.bib_id is not None:
            w.bibliographic_id(body, r)      # ItemId or BibliographicId: a choice
        else:
            w.item(body, r)
        w.request(body, r)
        w.scheme_value(body, "RequestType", r.request_type)
        w.scheme_value(body, "RequestScopeType", r.request_scope)
        if r.pickup_location:
            w.scheme_value(body, "PickupLocation", r.pickup_location)
    elif s == "CancelRequestItem":
        w.user(body, r)
        w.request(body, r)
        w.scheme_value(body, "RequestType", r.request_type)
    else:
        raise ValueError(f"no request shape for {s}")
    text = etree.tostring(root, encoding="unicode", pretty_print=True)
    doctype = NCIP1_DOCTYPE + "\n" if shape.ncip1 else ""
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}{text}'.encode()


# -- replies -----------------------------------------------------------------------------------

ReplyKind = Literal["ok", "problem", "http-error", "malformed", "not-ncip", "empty"]


@dataclass(frozen=True)
class UpstreamReply:
    """What the LMS answered, read as far as it can be.

    ``kind``: ``ok`` (a service response without Problem), ``problem`` (a Problem, possibly
    without a type: ``problem_types`` holds every type text found, NCIP 2 ``ProblemType`` or
    NCIP 1 ``ProcessingErrorType/Value``, stripped, empties dropped), ``http-error`` (status
    >= 400; ``detail`` holds the page's text, shortened), ``malformed`` (not well-formed),
    ``not-ncip`` (well-formed but no NCIPMessage), ``empty`` (an NCIPMessage with no service
    response, as NCIPServer's LookupItem).
    """

    kind: ReplyKind
    status: int = 200
    service: str | None = None
    problem_types: tuple[str, ...] = ()
    detail: str = ""
    element: str | None = None
    value: str | None = None
    item_id: str | None = None
    item_id_type: str | None = None
    user_id: str | None = None
    request_id: str | None = None
    date_due: datetime | None = None
    given_name: str = ""
    surname: str = ""
    blocked: bool = False
    valid_to: datetime | None = None
    circulation_status: str | None = None
    title: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """A service response without a Problem."""
        return self.kind == "ok"

    @property
    def texts(self) -> tuple[str, ...]:
        """Every piece of text the vocabulary may be matched against."""
        return (*self.problem_types, *((self.detail,) if self.detail else ()))


def _local(node: etree._Element) -> str:
    """The element's local name ("" for a comment or PI): lxml's ``{namespace}local`` split
    as text, not through a QName object per node (every reply walks all its nodes)."""
    tag = node.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _find(node: etree._Element | None, *path: str) -> etree._Element | None:
    for name in path:
        if node is None:
            return None
        node = next((c for c in node if _local(c) == name), None)
    return node


def _either(node: etree._Element, first: str, second: str) -> etree._Element | None:
    found = _find(node, first)
    return found if found is not None else _find(node, second)


def _descendants(node: etree._Element, name: str) -> list[etree._Element]:
    return [d for d in node.iter() if _local(d) == name]


def _text(node: etree._Element | None) -> str:
    if node is None:
        return ""
    return " ".join("".join(node.itertext()).split())


def _page_text(body: bytes) -> str:
    """A short plain-text summary of an HTML or text error body."""
    try:
        html = etree.fromstring(body[:MAX_REPLY_BYTES], etree.HTMLParser(no_network=True))
    except (etree.XMLSyntaxError, ValueError):
        html = None
    if html is not None:
        for bad in html.iter("script", "style"):
            bad.text = ""
        text = " ".join("".join(html.itertext()).split())
    else:
        text = " ".join(body[:4096].decode("utf-8", "replace").split())
    return text[:300]


def _date(text: str, tz: tzinfo) -> datetime | None:
    if not text:
        return None
    try:
        value = parse_ncip_date(text, tz)
    except ValueError:
        return None
    return value if isinstance(value, datetime) else datetime(value.year, value.month,
                                                              value.day, 23, 59, tzinfo=tz)


def _parse(body: bytes) -> tuple[etree._Element | None, str]:
    """The body's root under the hardened NCIP parser, or why not."""
    try:
        return parse_xml(body, MAX_REPLY_BYTES).root, ""
    except NCIPSyntaxError as e:
        return None, str(e)


def _looks_html(body: bytes) -> bool:
    head = body[:2048].lower()
    return b"<html" in head or b"<!doctype html" in head


def read_reply(status: int, body: bytes, tz: tzinfo) -> UpstreamReply:
    """Read an LMS's HTTP reply (dates without a zone are in ``tz``, the LMS's zone)."""
    root, why = _parse(body) if body.strip() and not _looks_html(body) else (None, "")
    is_ncip = root is not None and _local(root) in ("NCIPMessage", "NCIPVersionMessage")
    if status >= 400:
        if not is_ncip or root is None:
            return UpstreamReply("http-error", status, detail=_page_text(body))
        reply = _read_message(root, tz)
        return replace(reply, status=status,
                       kind="problem" if reply.kind == "problem" else "http-error")
    if root is None:
        if _looks_html(body) or not body.strip():
            return UpstreamReply("not-ncip", status, detail=_page_text(body))
        return UpstreamReply("malformed", status, detail=why[:200])
    if not is_ncip:
        return UpstreamReply("not-ncip", status, detail=_page_text(body))
    return replace(_read_message(root, tz), status=status)


def _read_message(root: etree._Element, tz: tzinfo) -> UpstreamReply:
    response = next((c for c in root if _local(c).endswith("Response")), None)
    if response is None:
        problem = _find(root, "Problem")
        if problem is None:
            return UpstreamReply("empty")
        response = root
    service = _local(response).removesuffix("Response") if response is not root else None
    problems = _descendants(response, "Problem")
    if problems:
        types: list[str] = []
        detail, element, value = "", None, None
        for problem in problems:
            for node in problem.iter():
                name = _local(node)
                if name == "ProblemType" or name == "ProcessingErrorType":
                    inner = _find(node, "Value")
                    text = _text(inner if inner is not None else node)
                    if text:
                        types.append(text)
                elif name == "ProblemDetail" and not detail:
                    detail = _text(node)
                elif name in ("ProblemElement", "ElementName") and element is None:
                    element = _text(node) or None
                elif name in ("ProblemValue", "ProcessingErrorValue") and value is None:
                    value = _text(node) or None
        return UpstreamReply("problem", service=service, problem_types=tuple(types),
                             detail=detail, element=element, value=value)
    item = _either(response, "ItemId", "UniqueItemId")
    user = _either(response, "UserId", "UniqueUserId")
    request = _either(response, "RequestId", "UniqueRequestId")
    optional = _find(response, "UserOptionalFields")
    person = _find(optional, "NameInformation", "PersonalNameInformation",
                 "StructuredPersonalUserName")
    privilege = _find(optional, "UserPrivilege")
    bib = _find(response, "ItemOptionalFields", "BibliographicDescription")
    status_node = _find(response, "ItemOptionalFields", "CirculationStatus")
    return UpstreamReply(
        "ok", service=service,
        item_id=_text(_find(item, "ItemIdentifierValue")) or None,
        item_id_type=_text(_find(item, "ItemIdentifierType")) or None,
        user_id=_text(_find(user, "UserIdentifierValue")) or None,
        request_id=_text(_find(request, "RequestIdentifierValue")) or None,
        date_due=_date(_text(_find(response, "DateDue")), tz),
        given_name=_text(_find(person, "GivenName")),
        surname=_text(_find(person, "Surname")),
        blocked=optional is not None and _find(optional, "BlockOrTrap") is not None,
        valid_to=_date(_text(_find(privilege, "ValidToDate")), tz),
        circulation_status=_text(_either(status_node, "Value", "Value")
                                 if status_node is not None and len(status_node)
                                 else status_node) or None,
        title=_text(_find(bib, "Title")))


def request_item_id(body: bytes) -> str | None:
    """The item a request we wrote names (its first ``ItemIdentifierValue``, NCIP 1 or 2), read
    back from the outbox to settle a lost answer; None if it names none."""
    root, _ = _parse(body)
    if root is None:
        return None
    found = _descendants(root, "ItemIdentifierValue")
    if not found:
        found = [v for u in _descendants(root, "UniqueItemIdentifier")
                 for v in _descendants(u, "Value")]
    return _text(found[0]) or None if found else None
