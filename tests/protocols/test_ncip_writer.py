"""Writing NCIP replies: dialects, prefix styles, header swap, and schema validity.

Replies are validated against the NCIP 2.02 XSD, the NCIP 1.0 DTD and the version-message XSD
read in place from ../shared (tests skip cleanly without it); no schema is ever fetched.
"""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import pytest
from lxml import etree

from protocols.ncip import (
    AcceptItemResponse,
    BibInformation,
    BibliographicDescription,
    BibliographicId,
    BlockOrTrap,
    CancelRequestItemResponse,
    CheckInItemResponse,
    CheckOutItemResponse,
    CreateItemResponse,
    CreateUserFiscalTransactionResponse,
    DeleteItemResponse,
    Dialect,
    Envelope,
    HoldingsSet,
    ItemId,
    ItemInformation,
    LoanedItem,
    LookupItemResponse,
    LookupItemSetResponse,
    LookupRequestResponse,
    LookupUserResponse,
    LookupVersionResponse,
    NCIPProblem,
    NCIPResponse,
    NotificationResponse,
    PersonalName,
    PrefixStyle,
    ProblemType,
    RenewItemResponse,
    RequestedItem,
    RequestId,
    RequestItemResponse,
    UserAddress,
    UserId,
    UserPrivilege,
    parse_message,
    parse_xml,
    render_problem,
    render_response,
)
from protocols.ncip.writer import ReplyTree

NS = "http://www.niso.org/2008/ncip"
V1_ONLY_IN_1_01 = frozenset(
    {"LookupRequestResponse", "DeleteItemResponse", "LookupItemSetResponse"}
)
"""Response elements NCIP 1.0's DTD lacks (1.01 or 2.x services): checked for shape only."""


class Schemas:
    """The reference schemas, loaded locally with network access off."""

    def __init__(self, shared: Path) -> None:
        folder = shared / "ncip" / "schemas"
        parser = etree.XMLParser(no_network=True, resolve_entities=False)
        self.xsd = etree.XMLSchema(etree.parse(str(folder / "ncip_v2_02.xsd"), parser))
        self.version_xsd = etree.XMLSchema(etree.parse(str(folder / "ncip_version.xsd"), parser))
        self.dtd = etree.DTD(str(folder / "ncip_v1_0.dtd"))

    def check(
        self, reply: bytes, dialect: Dialect, style: PrefixStyle = PrefixStyle.NS1
    ) -> etree._Element:
        """Assert C{reply} is well-formed and valid for its dialect; return its root."""
        assert reply.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
        root = etree.fromstring(reply)
        if root.tag == "NCIPVersionMessage":
            assert self.version_xsd.validate(root), self.version_xsd.error_log
        elif dialect is Dialect.NCIP1 and root.tag == "NCIPMessage" and "}" not in root.tag:
            name = etree.QName(root[0]).localname
            if name in V1_ONLY_IN_1_01:
                assert root[0][0].tag == "ResponseHeader"
            else:
                assert self.dtd.validate(root), self.dtd.error_log.filter_from_errors()
        elif style is PrefixStyle.NONE:
            assert b"xmlns" not in reply
            qualified = qualify(root)
            assert self.xsd.validate(qualified), self.xsd.error_log
        else:
            assert self.xsd.validate(root), self.xsd.error_log
        return root


@lru_cache(maxsize=1)
def load_schemas(shared: Path) -> Schemas:
    """Schemas are costly to compile: one instance per session."""
    return Schemas(shared)


def qualify(root: etree._Element) -> etree._Element:
    """Copy of an unqualified NCIP 2 tree moved into the NCIP namespace (to validate it)."""
    copied = copy.deepcopy(root)
    for element in copied.iter():
        if isinstance(element.tag, str) and not element.tag.startswith("{"):
            element.tag = f"{{{NS}}}{element.tag}"
        for key in list(element.attrib):
            if key in ("version", "Scheme"):
                element.set(f"{{{NS}}}{key}", element.attrib.pop(key))
    return etree.fromstring(etree.tostring(copied))


@pytest.fixture
def schemas(shared_dir: Path) -> Schemas:
    """Compiled reference schemas from ../shared."""
    return load_schemas(shared_dir)


V2_REQUEST = (
    f'<ns1:NCIPMessage xmlns:ns1="{NS}" ns1:version="2"><ns1:AcceptItem><ns1:InitiationHeader>'
    '<ns1:FromSystemId ns1:Scheme="urn:sys">WSILL</ns1:FromSystemId><ns1:FromAgencyId>'
    '<ns1:AgencyId ns1:Scheme="urn:sym">BROKER</ns1:AgencyId></ns1:FromAgencyId>'
    "<ns1:ToSystemId>LMS</ns1:ToSystemId><ns1:ToAgencyId><ns1:AgencyId>LIB</ns1:AgencyId>"
    "</ns1:ToAgencyId></ns1:InitiationHeader><ns1:RequestId><ns1:RequestIdentifierValue>R1"
    "</ns1:RequestIdentifierValue></ns1:RequestId><ns1:RequestedActionType>Circulate"
    "</ns1:RequestedActionType></ns1:AcceptItem></ns1:NCIPMessage>"
).encode()

V1_REQUEST = (
    b'<NCIPMessage version="v1"><AcceptItem><InitiationHeader><FromAgencyId><UniqueAgencyId>'
    b"<Scheme>urn:a</Scheme><Value>sitea</Value></UniqueAgencyId></FromAgencyId><ToAgencyId>"
    b"<UniqueAgencyId><Scheme>urn:a</Scheme><Value>siteb</Value></UniqueAgencyId></ToAgencyId>"
    b"</InitiationHeader><UniqueRequestId><UniqueAgencyId><Scheme>urn:a</Scheme><Value>sitea"
    b"</Value></UniqueAgencyId><RequestIdentifierValue>R1</RequestIdentifierValue>"
    b"</UniqueRequestId></AcceptItem></NCIPMessage>"
)


def v2_request() -> Envelope:
    """A parsed ns1 NCIP 2 request with systems and schemes in its header."""
    return parse_message(V2_REQUEST)


def v1_request() -> Envelope:
    """A parsed NCIP 1 request."""
    return parse_message(V1_REQUEST)


DUE = datetime(2026, 5, 1, 18, 30, tzinfo=timezone(timedelta(hours=-4)))
USER = UserId(value="2100042", agency="LIB", type="Barcode")
ITEM = ItemId(value="RS-TMP-1", agency="LIB")
REQUEST = RequestId(value="EAST-322", agency="BROKER")
BIB = BibliographicDescription(
    title="The Compiler",
    author="Hopper, Grace",
    publisher="Remington",
    publication_date="1952",
    ids=(
        BibliographicId("9780000000002", code="ISBN", kind="item"),
        BibliographicId("990012", code="SYSNUMBER"),
    ),
)


def sample_responses() -> list[NCIPResponse]:
    """One populated instance of every response type."""
    return [
        LookupUserResponse(
            user_id=USER,
            name=PersonalName(given="Grace", surname="Hopper"),
            addresses=(
                UserAddress.email("grace@example.org"),
                UserAddress.phone("+1 555 0100"),
                UserAddress(postal="1 Main St\nSpringfield"),
            ),
            privileges=(
                UserPrivilege(agency="LIB", privilege_type="PROFILE", status="Faculty"),
                UserPrivilege(
                    agency="LIB",
                    privilege_type="STATUS",
                    status="ACTIVE",
                    valid_to=date(2027, 1, 1),
                ),
            ),
            blocks=(BlockOrTrap(agency="LIB", block_type="Block Holds"),),
            user_ids=(UserId(value="uuid-1", type="uuid"),),
            loaned_items=(LoanedItem(item_id=ITEM, date_due=DUE, title="T"),),
            requested_items=(RequestedItem(date_placed=DUE, request_id=REQUEST),),
        ),
        LookupItemResponse(
            item_id=ITEM,
            bibliographic=BIB,
            circulation_status="On Loan",
            call_number="QA 1",
            location="Stacks",
            date_due=DUE,
            hold_queue_length=2,
        ),
        LookupItemSetResponse(
            bibs=(
                BibInformation(
                    bibliographic_id=BibliographicId("990012", code="SYSNUMBER"),
                    bibliographic=BIB,
                    holdings=(
                        HoldingsSet(
                            call_number="QA 1",
                            location="Stacks",
                            items=(
                                ItemInformation(
                                    item_id=ITEM, circulation_status="Available On Shelf"
                                ),
                            ),
                        ),
                    ),
                ),
            ),
            next_item_token="t2",
        ),
        LookupRequestResponse(
            request_id=REQUEST,
            user_id=USER,
            request_type="Hold",
            request_status="In Process",
            pickup_location="MAIN",
        ),
        AcceptItemResponse(request_id=REQUEST, item_id=ITEM),
        CheckOutItemResponse(item_id=ITEM, user_id=USER, date_due=DUE, renewal_count=0),
        CheckOutItemResponse(item_id=ITEM, user_id=USER),
        CheckInItemResponse(item_id=ITEM, user_id=USER),
        RenewItemResponse(item_id=ITEM, user_id=USER, date_due=DUE),
        RequestItemResponse(
            request_id=RequestId(value="hold-77", agency="LIB"),
            item_id=ITEM,
            user_id=USER,
            request_type="Loan",
            request_scope_type="Bibliographic Item",
        ),
        CancelRequestItemResponse(request_id=REQUEST, user_id=USER),
        CreateItemResponse(item_id=ITEM),
        DeleteItemResponse(item_id=ITEM),
        CreateUserFiscalTransactionResponse(
            user_id=USER, reference_id="fee-9", reference_agency="LIB"
        ),
        NotificationResponse(service="ItemShipped"),
    ]


@pytest.mark.parametrize("style", list(PrefixStyle))
def test_every_response_type_valid_in_every_ncip2_style(
    schemas: Schemas, style: PrefixStyle
) -> None:
    """Each response type renders XSD-valid NCIP 2.02 in ns1, default-namespace and none styles."""
    request = v2_request()
    for response in sample_responses():
        reply = render_response(response, request, prefix_style=style)
        root = schemas.check(reply, Dialect.NCIP2, style)
        name = getattr(response, "response_element", response.element)
        assert etree.QName(root[0]).localname == name


def test_every_response_type_valid_in_ncip1(schemas: Schemas) -> None:
    """Each response type renders DTD-valid NCIP 1 (Scheme/Value pairs, Unique* ids)."""
    request = v1_request()
    for response in sample_responses():
        reply = render_response(response, request)
        root = schemas.check(reply, Dialect.NCIP1)
        assert root.get("version") == "http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd"
        assert b"xmlns" not in reply


def test_prefix_styles_look_as_peers_expect() -> None:
    """ns1 writes <ns1:DateDue> (ILLiad), default-namespace writes <Problem>-style bare names
    with a qualified version, none writes no namespace at all."""
    response = RenewItemResponse(item_id=ITEM, date_due=DUE)
    request = v2_request()
    ns1 = render_response(response, request)
    assert b"<ns1:DateDue>2026-05-01T22:30:00Z</ns1:DateDue>" in ns1
    assert b'ns1:version="http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd"' in ns1
    default = render_response(response, request, prefix_style=PrefixStyle.DEFAULT)
    assert b"<DateDue>2026-05-01T22:30:00Z</DateDue>" in default
    assert f'xmlns="{NS}"'.encode() in default and b'ncip:version="' in default
    bare = render_response(response, request, prefix_style=PrefixStyle.NONE)
    assert b"xmlns" not in bare and b' version="' in bare


def test_answer_in_kind_with_request_prefix_style() -> None:
    """Passing the request's own prefix style answers a default-namespace peer in kind."""
    request = parse_message(V2_REQUEST.replace(b"ns1:", b"").replace(b"xmlns:ns1", b"xmlns"))
    assert request.prefix_style is PrefixStyle.DEFAULT
    reply = render_response(
        AcceptItemResponse(request_id=REQUEST), request, prefix_style=request.prefix_style
    )
    assert b"<AcceptItemResponse>" in reply


def test_response_header_swaps_from_and_to() -> None:
    """ResponseHeader: From is the request's To and vice versa, systems too, schemes kept."""
    reply = render_response(AcceptItemResponse(request_id=REQUEST), v2_request())
    root = etree.fromstring(reply)
    header = root.find(f"{{{NS}}}AcceptItemResponse/{{{NS}}}ResponseHeader")
    assert header is not None
    texts = [
        (etree.QName(e).localname, (e.text or "").strip())
        for e in header.iter()
        if e.text and e.text.strip()
    ]
    assert texts == [
        ("FromSystemId", "LMS"),
        ("AgencyId", "LIB"),
        ("ToSystemId", "WSILL"),
        ("AgencyId", "BROKER"),
    ]
    to_agency = header.find(f"{{{NS}}}ToAgencyId/{{{NS}}}AgencyId")
    assert to_agency is not None and to_agency.get(f"{{{NS}}}Scheme") == "urn:sym"


def test_ncip1_header_swapped_and_doctype_optional() -> None:
    """NCIP 1 replies swap UniqueAgencyIds; the DOCTYPE is written only on request."""
    request = v1_request()
    reply = render_response(AcceptItemResponse(request_id=REQUEST), request)
    assert b"<!DOCTYPE" not in reply
    root = etree.fromstring(reply)
    values = [v.text for v in root.iterfind("AcceptItemResponse/ResponseHeader//Value")]
    assert values == ["siteb", "sitea"]
    with_doctype = render_response(
        AcceptItemResponse(request_id=REQUEST), request, ncip1_doctype=True
    )
    assert b'<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1.0//EN"' in with_doctype


def test_no_request_header_means_no_ncip2_response_header() -> None:
    """Without a request header (allowed in NCIP 2) the optional ResponseHeader is omitted,
    unless the caller supplies our agency id."""
    request = parse_message(
        f'<NCIPMessage xmlns="{NS}"><DeleteItem><ItemId><ItemIdentifierValue>x'
        "</ItemIdentifierValue></ItemId></DeleteItem></NCIPMessage>".encode()
    )
    bare = render_response(DeleteItemResponse(item_id=ITEM), request)
    assert b"ResponseHeader" not in bare
    named = render_response(DeleteItemResponse(item_id=ITEM), request, local_agency="LIB")
    assert b"<ResponseHeader><FromAgencyId><AgencyId>LIB<" in named  # in its style


def test_lookup_user_response_follows_broker_conventions() -> None:
    """STATUS and PROFILE privileges, mailto e-mail, structured plus unstructured name, blocks."""
    response = sample_responses()[0]
    root = etree.fromstring(render_response(response, v2_request()))
    n = {"n": NS}
    fields = root.find("n:LookupUserResponse/n:UserOptionalFields", n)
    assert fields is not None
    privileges = {
        p.findtext("n:AgencyUserPrivilegeType", namespaces=n): p.findtext(
            "n:UserPrivilegeStatus/n:UserPrivilegeStatusType", namespaces=n
        )
        for p in fields.iterfind("n:UserPrivilege", n)
    }
    assert privileges == {"PROFILE": "Faculty", "STATUS": "ACTIVE"}
    emails = [
        a.findtext("n:ElectronicAddressData", namespaces=n)
        for a in fields.iterfind("n:UserAddressInformation/n:ElectronicAddress", n)
        if a.findtext("n:ElectronicAddressType", namespaces=n) == "mailto"
    ]
    assert emails == ["grace@example.org"]
    name = fields.find("n:NameInformation/n:PersonalNameInformation", n)
    assert name is not None
    assert name.findtext("n:StructuredPersonalUserName/n:Surname", namespaces=n) == "Hopper"
    assert name.findtext("n:StructuredPersonalUserName/n:GivenName", namespaces=n) == "Grace"
    assert name.findtext("n:UnstructuredPersonalUserName", namespaces=n) == "Grace Hopper"
    assert fields.findtext("n:BlockOrTrap/n:BlockOrTrapType", namespaces=n) == "Block Holds"
    assert (
        root.findtext("n:LookupUserResponse/n:UserId/n:UserIdentifierValue", namespaces=n)
        == "2100042"
    )


def test_ncip1_lookup_user_response_has_visible_user_id() -> None:
    """NCIP 1 LookupUserResponse: UniqueUserId plus VisibleUserId entries (INN-Reach)."""
    root = etree.fromstring(render_response(sample_responses()[0], v1_request()))
    visible = root.find("LookupUserResponse/UserOptionalFields/VisibleUserId")
    assert visible is not None and visible.findtext("VisibleUserIdentifier") == "uuid-1"
    assert root.findtext("LookupUserResponse/UniqueUserId/UserIdentifierValue") == "2100042"


def test_check_out_due_date_is_utc_with_z_and_indeterminate_flag() -> None:
    """DateDue is ISO 8601 in UTC with Z; no due date writes IndeterminateLoanPeriodFlag."""
    reply = render_response(
        CheckOutItemResponse(item_id=ITEM, user_id=USER, date_due=DUE), v2_request()
    )
    assert b"<ns1:DateDue>2026-05-01T22:30:00Z</ns1:DateDue>" in reply
    flag = render_response(CheckOutItemResponse(item_id=ITEM, user_id=USER), v2_request())
    assert b"<ns1:IndeterminateLoanPeriodFlag/>" in flag


def test_notification_responses_use_specific_element(schemas: Schemas) -> None:
    """Notifications get their own response element (ItemCheckedOutResponse), never <Response>."""
    for request in (v1_request(), v2_request()):
        reply = render_response(NotificationResponse(service="ItemCheckedOut"), request)
        root = schemas.check(reply, request.dialect)
        assert etree.QName(root[0]).localname == "ItemCheckedOutResponse"
        assert b"<Response>" not in reply and b":Response>" not in reply


def test_lookup_version_response_is_a_version_message(schemas: Schemas) -> None:
    """LookupVersionResponse is an NCIPVersionMessage valid against ncip_version.xsd."""
    request = parse_message(
        b'<NCIPVersionMessage version="x"><LookupVersion><FromAgencyId><UniqueAgencyId><Scheme>s'
        b"</Scheme><Value>A</Value></UniqueAgencyId></FromAgencyId><ToAgencyId><UniqueAgencyId>"
        b"<Scheme>s</Scheme><Value>B</Value></UniqueAgencyId></ToAgencyId></LookupVersion>"
        b"</NCIPVersionMessage>"
    )
    reply = render_response(LookupVersionResponse(services=("LookupUser",)), request)
    root = schemas.check(reply, request.dialect)
    assert root.findtext("LookupVersionResponse/FromAgencyId/UniqueAgencyId/Value") == "B"
    assert root.findtext("LookupVersionResponse/ServiceSupported") == "LookupUser"


def test_control_characters_are_dropped_not_fatal() -> None:
    """Characters XML 1.0 forbids (from a backend record) are removed instead of crashing."""
    response = LookupItemResponse(
        item_id=ITEM, bibliographic=BibliographicDescription(title="A\x0bB\x00")
    )
    reply = render_response(response, v2_request())
    assert b"<ns1:Title>AB</ns1:Title>" in reply


def test_item_or_request_id_required() -> None:
    """A response whose choice (ItemId | RequestId) is empty is a programming error."""
    with pytest.raises(ValueError):
        render_response(LookupItemResponse(), v2_request())


# Markup, quotes, line ends, a character XML forbids, non-ASCII and an astral character.
AWKWARD = 'a&b <c> "d" \'e\' f\r\ng\th ]]> \x0b é \U0001f4da'


@pytest.mark.parametrize("style", list(PrefixStyle))
def test_escaping_matches_lxml_in_text_and_attributes(style: PrefixStyle) -> None:
    """The reply text is what lxml would write for the same tree: escapes in element text and
    in the Scheme attribute, forbidden characters dropped, the rest kept as UTF-8."""
    item = ItemId(value=AWKWARD, agency=AWKWARD, type=AWKWARD)
    reply = render_response(CheckInItemResponse(item_id=item), v2_request(), prefix_style=style)
    root = etree.fromstring(reply)
    assert etree.tostring(root, encoding="UTF-8") == reply.split(b"\n", 1)[1].rstrip(b"\n")
    clean = AWKWARD.replace("\x0b", "")
    ids = root.find("{*}CheckInItemResponse/{*}ItemId")
    assert [child.text for child in ids] == [clean, clean, clean]
    scheme = ids.find("{*}ItemIdentifierType")
    assert scheme.attrib == {} and ids.find("{*}AgencyId").attrib == {}
    problem = render_problem(NCIPProblem(ProblemType.UNKNOWN_ITEM, element="ItemId",
                                         value=AWKWARD), v2_request(), prefix_style=style)
    assert etree.tostring(etree.fromstring(problem), encoding="UTF-8") == (
        problem.split(b"\n", 1)[1].rstrip(b"\n"))
    assert b"&amp;b &lt;c&gt;" in problem and b"&#13;" in problem


def test_scheme_attribute_escaped_like_lxml() -> None:
    """A scheme (from the request header) with quotes, markup and whitespace survives."""
    request = parse_message(V2_REQUEST.replace(
        b'ns1:Scheme="urn:sym"', 'ns1:Scheme="s&amp;&lt;&quot;&#10;&#9;é"'.encode()))
    reply = render_response(AcceptItemResponse(request_id=REQUEST), request)
    root = etree.fromstring(reply)
    assert etree.tostring(root, encoding="UTF-8") == reply.split(b"\n", 1)[1].rstrip(b"\n")
    agency = root.find(f".//{{{NS}}}ToAgencyId/{{{NS}}}AgencyId")
    assert agency.text == "BROKER"
    assert agency.get(f"{{{NS}}}Scheme") == 's&<"\n\té'


def _reparsed(reply: bytes) -> bytes:
    """The reply parsed and written back by lxml, as the audit log's redaction writes it."""
    return etree.tostring(parse_xml(reply).root, encoding="UTF-8", xml_declaration=True)


@pytest.mark.parametrize("style", list(PrefixStyle))
def test_kept_tree_is_the_reply_parsed(style: PrefixStyle) -> None:
    """keep_tree receives the reply's ReplyTree, which writes back exactly what parsing the
    reply and serializing it gives (empty elements included), for successes, Problems and
    NCIP 1 replies with a DOCTYPE."""
    for response in sample_responses():
        for request, doctype in ((v2_request(), False), (v1_request(), True)):
            kept: list[ReplyTree] = []
            reply = render_response(response, request, prefix_style=style, keep_tree=kept,
                                    ncip1_doctype=doctype)
            assert len(kept) == 1
            assert kept[0].redacted() == _reparsed(reply)
    kept = []
    reply = render_problem(NCIPProblem(ProblemType.UNKNOWN_USER, value=""), v2_request(),
                           prefix_style=style, keep_tree=kept)
    assert kept[0].redacted() == _reparsed(reply)
