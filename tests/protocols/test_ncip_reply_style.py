"""Replies answer in the caller's own namespace style unless the peer's configuration says
otherwise (issue 13.9): clients string-match ``<Problem>`` (DCB) or ``<ns1:DateDue>`` (ILLiad).

Replies stay valid against the NCIP 2.02 XSD read in place from ../shared (those checks skip
without it).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from protocols.ncip import (
    AcceptItemResponse,
    Dialect,
    ItemId,
    LookupVersionResponse,
    NCIPProblem,
    PrefixStyle,
    ProblemType,
    RenewItemResponse,
    RequestId,
    parse_message,
    render_problem,
    render_response,
)
from protocols.ncip.writer import reply_style
from tests.protocols.test_ncip_writer import Schemas, load_schemas

NS = "http://www.niso.org/2008/ncip"
DUE = datetime(2031, 5, 1, 22, 30, tzinfo=timezone.utc)


def renew(prefix: str | None, *, default_namespace: bool = False) -> bytes:
    """A RenewItem in one namespace style: ``prefix:`` names, a default namespace, or none."""
    p = f"{prefix}:" if prefix else ""
    if prefix:
        declaration = f' xmlns:{prefix}="{NS}" {p}version="2.02"'
    elif default_namespace:
        declaration = f' xmlns="{NS}" version="http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd"'
    else:
        declaration = ' version="2.02"'
    return (f"<{p}NCIPMessage{declaration}><{p}RenewItem><{p}InitiationHeader><{p}FromAgencyId>"
            f"<{p}AgencyId>BROKER</{p}AgencyId></{p}FromAgencyId><{p}ToAgencyId><{p}AgencyId>LIB"
            f"</{p}AgencyId></{p}ToAgencyId></{p}InitiationHeader><{p}ItemId>"
            f"<{p}ItemIdentifierValue>B-1</{p}ItemIdentifierValue></{p}ItemId>"
            f"<{p}DesiredDateDue>2031-05-01</{p}DesiredDateDue></{p}RenewItem>"
            f"</{p}NCIPMessage>").encode()


STYLES = [  # (request, what a reply in its style looks like, style to validate with)
    (renew("ns1"), b"<ns1:DateDue>", PrefixStyle.NS1),
    (renew("ncip"), b"<ncip:DateDue>", PrefixStyle.NS1),
    (renew(None, default_namespace=True), b"<DateDue>", PrefixStyle.DEFAULT),
    (renew(None), b"<DateDue>", PrefixStyle.NONE),
]


@pytest.fixture
def schemas(shared_dir: Path) -> Schemas:
    return load_schemas(shared_dir)


@pytest.mark.parametrize(("body", "marker", "style"), STYLES)
def test_success_reply_follows_the_request_style(schemas: Schemas, body: bytes, marker: bytes,
                                                 style: PrefixStyle) -> None:
    """With no style configured, a reply repeats the request's prefix (ns1, or another one),
    its default namespace, or its lack of any namespace, and stays schema-valid."""
    request = parse_message(body)
    reply = render_response(RenewItemResponse(item_id=ItemId(value="B-1"), date_due=DUE),
                            request)
    assert marker in reply
    if style is PrefixStyle.NONE:
        assert b"xmlns" not in reply
    schemas.check(reply, Dialect.NCIP2, style)


@pytest.mark.parametrize(("body", "marker", "style"), STYLES)
def test_problem_follows_the_request_style(schemas: Schemas, body: bytes, marker: bytes,
                                           style: PrefixStyle) -> None:
    """A Problem comes in the caller's style too: DCB's ``contains("<Problem>")`` sees the
    Problem of a default-namespace or un-namespaced request."""
    request = parse_message(body)
    reply = render_problem(NCIPProblem(ProblemType.UNKNOWN_ITEM, element="ItemIdentifierValue",
                                       value="B-1"), request)
    expected = marker.replace(b"DateDue", b"Problem")
    assert expected in reply
    schemas.check(reply, Dialect.NCIP2, style)


def test_explicit_style_wins_over_the_request() -> None:
    """ILLiad sends a default namespace but looks for ``<ns1:DateDue>``: a peer configured
    ``ns1`` gets ns1 whatever its requests look like (and ``none`` gets no namespace)."""
    request = parse_message(renew(None, default_namespace=True))
    response = RenewItemResponse(item_id=ItemId(value="B-1"), date_due=DUE)
    assert b"<ns1:DateDue>" in render_response(response, request, prefix_style=PrefixStyle.NS1)
    ncip_prefixed = parse_message(renew("ncip"))
    reply = render_response(response, ncip_prefixed, prefix_style=PrefixStyle.NS1)
    assert b"<ns1:DateDue>" in reply and b"ncip:DateDue" not in reply
    bare = render_response(response, ncip_prefixed, prefix_style=PrefixStyle.NONE)
    assert b"xmlns" not in bare


def test_no_request_means_ns1() -> None:
    """An unparseable body has no style to follow: its Problem is written with ``ns1:``."""
    reply = render_problem(NCIPProblem(ProblemType.INVALID_MESSAGE_SYNTAX_ERROR), None)
    assert b"<ns1:Problem>" in reply
    assert reply_style(None, None) == (PrefixStyle.NS1, "ns1")


def test_ncip1_and_version_requests_stay_unqualified() -> None:
    """An NCIP 1 request is answered in NCIP 1 (no namespace) whatever the style."""
    v1 = parse_message(
        b'<NCIPMessage version="http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">'
        b"<AcceptItem><InitiationHeader><FromAgencyId><UniqueAgencyId><Scheme>s</Scheme>"
        b"<Value>A</Value></UniqueAgencyId></FromAgencyId><ToAgencyId><UniqueAgencyId>"
        b"<Scheme>s</Scheme><Value>B</Value></UniqueAgencyId></ToAgencyId></InitiationHeader>"
        b"<UniqueRequestId><RequestIdentifierValue>R</RequestIdentifierValue>"
        b"</UniqueRequestId></AcceptItem></NCIPMessage>")
    reply = render_response(AcceptItemResponse(request_id=RequestId(value="R")), v1)
    assert b"xmlns" not in reply and b"<AcceptItemResponse>" in reply


def test_version_reply_names_us_when_the_ping_does_not(schemas: Schemas) -> None:
    """A LookupVersion with no ToAgencyId (DCB's ping inside an NCIPMessage) is answered in
    the version-discovery form with our agency id as FromAgencyId, valid against
    ncip_version.xsd."""
    ping = parse_message(f'<NCIPMessage xmlns="{NS}"><LookupVersion><InitiationHeader>'
                         "<FromAgencyId><AgencyId>dcb</AgencyId></FromAgencyId>"
                         "</InitiationHeader></LookupVersion></NCIPMessage>".encode())
    reply = render_response(LookupVersionResponse(services=("LookupUser",)), ping,
                            local_agency="LIB")
    root = schemas.check(reply, Dialect.VERSION)
    assert root.findtext("LookupVersionResponse/FromAgencyId/UniqueAgencyId/Value") == "LIB"
    assert root.findtext("LookupVersionResponse/ToAgencyId/UniqueAgencyId/Value") == "dcb"
