"""Property tests: bad input only ever raises NCIPSyntaxError, and writer output round-trips.

The daemon must never die of a bad request: whatever bytes arrive, parse_message either
returns an Envelope or raises the one exception the writer turns into a Problem.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from protocols.ncip import (
    AcceptItemResponse,
    CheckOutItemResponse,
    Dialect,
    ItemId,
    NCIPSyntaxError,
    PrefixStyle,
    RequestId,
    UserId,
    parse_message,
    render_problem,
    render_response,
)
from protocols.ncip.writer import _clean

NS = "http://www.niso.org/2008/ncip"
VALID = (
    f'<?xml version="1.0" encoding="UTF-8"?><ns1:NCIPMessage xmlns:ns1="{NS}" ns1:version="2">'
    "<ns1:CheckOutItem><ns1:InitiationHeader><ns1:FromAgencyId><ns1:AgencyId>B</ns1:AgencyId>"
    "</ns1:FromAgencyId><ns1:ToAgencyId><ns1:AgencyId>L</ns1:AgencyId></ns1:ToAgencyId>"
    "</ns1:InitiationHeader><ns1:UserId><ns1:UserIdentifierValue>u1</ns1:UserIdentifierValue>"
    "</ns1:UserId><ns1:ItemId><ns1:ItemIdentifierValue>i1</ns1:ItemIdentifierValue></ns1:ItemId>"
    "<ns1:DesiredDateDue>2026-01-01</ns1:DesiredDateDue></ns1:CheckOutItem></ns1:NCIPMessage>"
).encode()

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_refuse(raw: bytes) -> None:
    try:
        envelope = parse_message(raw)
    except NCIPSyntaxError as exc:
        assert b"Invalid Message Syntax Error" in render_problem(exc, None)
        return
    assert envelope.dialect in Dialect


@FAST
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(raw: bytes) -> None:
    """Arbitrary bytes: an Envelope or NCIPSyntaxError, nothing else."""
    _parse_or_refuse(raw)


@FAST
@given(st.integers(min_value=0, max_value=len(VALID)), st.binary(max_size=8))
def test_truncated_or_spliced_messages_never_crash(cut: int, junk: bytes) -> None:
    """A valid message cut short or with junk spliced in never escapes as another exception."""
    _parse_or_refuse(VALID[:cut] + junk + VALID[cut:])


@FAST
@given(st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != ""))
def test_identifiers_round_trip_through_the_writer(value: str) -> None:
    """Any identifier text (bar characters XML cannot carry) survives render then parse."""
    request = parse_message(VALID)
    for style in PrefixStyle:
        reply = render_response(
            CheckOutItemResponse(
                item_id=ItemId(value=value), user_id=UserId(value=value), date_due=None
            ),
            request,
            prefix_style=style,
        )
        envelope = parse_message(reply)
        assert envelope.service == "CheckOutItemResponse"
        assert b"IndeterminateLoanPeriodFlag" in reply
        written = etree.fromstring(reply).findtext(".//{*}ItemIdentifierValue")
        assert written == _clean(value)


@FAST
@given(st.text(max_size=30))
def test_writer_accepts_any_text(value: str) -> None:
    """Control characters and lone surrogates in backend data never make the writer fail."""
    reply = render_response(
        AcceptItemResponse(request_id=RequestId(value=value or "x"), item_id=ItemId(value="i")),
        parse_message(VALID),
    )
    assert reply.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
