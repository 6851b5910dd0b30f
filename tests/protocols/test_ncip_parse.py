"""Parsing NCIP requests of every dialect and broker shape into typed messages.

All fixtures here are written for these tests: they imitate the shapes described in
docs/ncip.md section 6 (ReShare, Tipasa/WSILL, ILLiad, Relais/FOLIO, DCB, INN-Reach,
CrossLink) without copying any captured message.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from protocols.ncip import (
    AcceptItem,
    CancelRequestItem,
    CheckInItem,
    CheckOutItem,
    Code,
    CreateItem,
    CreateUserFiscalTransaction,
    DeleteItem,
    Dialect,
    ItemCheckedIn,
    ItemCheckedOut,
    ItemReceived,
    ItemRenewed,
    ItemRequestCancelled,
    ItemRequested,
    ItemShipped,
    LookupItem,
    LookupItemSet,
    LookupRequest,
    LookupUser,
    LookupVersion,
    NCIPSyntaxError,
    Notification,
    OtherMessage,
    PrefixStyle,
    RenewItem,
    RequestItem,
    parse_message,
)

NS = "http://www.niso.org/2008/ncip"
V1_DOCTYPE = (
    '<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1.0//EN" '
    '"http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">'
)


def ns1(
    body: str, version: str = "http://www.niso.org/schemas/ncip/v2_0/imp1/xsd/ncip_v2_0.xsd"
) -> bytes:
    """Wrap C{body} (written without prefixes) as an ns1:-prefixed NCIP 2 message."""
    import re

    prefixed = re.sub(r"<(/?)([A-Z]\w*)", r"<\1ns1:\2", body)
    prefixed = prefixed.replace(" Scheme=", " ns1:Scheme=")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ns1:NCIPMessage xmlns:ns1="{NS}" '
        f'ns1:version="{version}">{prefixed}</ns1:NCIPMessage>'
    ).encode()


def default_ns(body: str, encoding: str = "UTF-8") -> bytes:
    """Wrap C{body} as a default-namespace NCIP 2 message with an unqualified version."""
    return (
        f'<?xml version="1.0" encoding="{encoding}"?><NCIPMessage xmlns="{NS}" '
        f'version="http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd">{body}</NCIPMessage>'
    ).encode()


def v1(body: str, doctype: str = V1_DOCTYPE) -> bytes:
    """Wrap C{body} as an NCIP 1 message with the standard DOCTYPE."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}\n'
        f'<NCIPMessage version="http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">'
        f"{body}</NCIPMessage>"
    ).encode()


def sv(name: str, value: str, scheme: str = "http://example.org/s.scm") -> str:
    """An NCIP 1 Scheme/Value pair element."""
    return f"<{name}><Scheme>{scheme}</Scheme><Value>{value}</Value></{name}>"


def v1_agency(value: str) -> str:
    return sv(
        "UniqueAgencyId", value, "http://10.0.0.1:6601/IRCIRCD?target=x&amp;scheme=UniqueAgencyId"
    )


V1_HEADER = (
    f"<InitiationHeader><FromAgencyId>{v1_agency('sitea')}</FromAgencyId>"
    f"<ToAgencyId>{v1_agency('siteb')}</ToAgencyId></InitiationHeader>"
)
V2_HEADER = (
    "<InitiationHeader><FromAgencyId><AgencyId>BROKER</AgencyId></FromAgencyId>"
    "<ToAgencyId><AgencyId>LIB</AgencyId></ToAgencyId>"
    "<ApplicationProfileType>EZBORROW</ApplicationProfileType></InitiationHeader>"
)


# --- ReShare / lib-ncip-client (NCIP 2, ns1) ---------------------------------------------------


def test_reshare_lookup_user_by_user_id() -> None:
    """ReShare LookupUser: ns1 prefix, agency authentication, UserId and element types."""
    raw = ns1(
        "<LookupUser><InitiationHeader><FromAgencyId><AgencyId>RS</AgencyId></FromAgencyId>"
        "<FromAgencyAuthentication>partner-secret</FromAgencyAuthentication>"
        "<ToAgencyId><AgencyId>LIB</AgencyId></ToAgencyId>"
        "<ApplicationProfileType>EZBORROW</ApplicationProfileType></InitiationHeader>"
        "<UserId><AgencyId>RS</AgencyId><UserIdentifierValue>2100042</UserIdentifierValue></UserId>"
        "<UserElementType>Name Information</UserElementType>"
        "<UserElementType>User Address Information</UserElementType>"
        "<UserElementType>User Privilege</UserElementType>"
        "<UserElementType>User Id</UserElementType>"
        "</LookupUser>"
    )
    env = parse_message(raw)
    assert (env.dialect, env.prefix_style, env.prefix) == (Dialect.NCIP2, PrefixStyle.NS1, "ns1")
    msg = env.message
    assert isinstance(msg, LookupUser)
    assert msg.user_id is not None and msg.user_id.value == "2100042"
    assert msg.user_id.agency == "RS"
    assert msg.header is not None and msg.header.from_agency is not None
    assert msg.header.to_agency is not None
    assert msg.header.from_agency.value == "RS" and msg.header.to_agency.value == "LIB"
    assert msg.header.application_profile == "ezborrow"
    assert "user privilege" in msg.user_element_types
    assert "partner-secret" not in repr(msg)
    assert "partner-secret" in env.secrets


def test_reshare_lookup_user_barcode_and_pin_hidden_from_repr() -> None:
    """Barcode+PIN login: both inputs parsed by type; the PIN never shows in repr()."""
    raw = ns1(
        "<LookupUser>" + V2_HEADER + "<AuthenticationInput><AuthenticationInputData>2100042"
        "</AuthenticationInputData><AuthenticationDataFormatType>text</AuthenticationDataFormatType>"
        "<AuthenticationInputType>Barcode Id</AuthenticationInputType></AuthenticationInput>"
        "<AuthenticationInput><AuthenticationInputData>8642</AuthenticationInputData>"
        "<AuthenticationDataFormatType>text</AuthenticationDataFormatType>"
        "<AuthenticationInputType>PIN</AuthenticationInputType></AuthenticationInput>"
        "<UserElementType>User Id</UserElementType></LookupUser>"
    )
    env = parse_message(raw)
    msg = env.message
    assert isinstance(msg, LookupUser)
    assert msg.user_id is None
    assert msg.authentication("barcode id") == "2100042"
    assert msg.authentication("pin") == "8642"
    assert "8642" not in repr(msg) and "8642" not in repr(env)
    assert env.secrets == frozenset({"8642"})


def test_reshare_accept_item_full() -> None:
    """ReShare AcceptItem: request hrid, temp barcode, bib description, call number, fee."""
    raw = ns1(
        "<AcceptItem>" + V2_HEADER + "<RequestId><AgencyId>RS</AgencyId>"
        "<RequestIdentifierValue>EAST-322</RequestIdentifierValue></RequestId>"
        '<RequestedActionType Scheme="http://www.niso.org/ncip/v1_0/imp1/schemes/requestedactiontype/'
        'requestedactiontype.scm">Hold For Pickup</RequestedActionType>'
        "<UserId><AgencyId>RS</AgencyId><UserIdentifierValue>2100042</UserIdentifierValue></UserId>"
        "<ItemId><AgencyId>RS</AgencyId><ItemIdentifierValue>RS-TMP-1</ItemIdentifierValue></ItemId>"
        "<DateForReturn>2026-03-01T23:59:00.000-05:00</DateForReturn>"
        "<ItemOptionalFields><BibliographicDescription><Author>Hopper, Grace</Author>"
        "<PublicationDate>1952</PublicationDate><Publisher>Remington</Publisher>"
        "<Title>The Compiler</Title></BibliographicDescription>"
        "<ItemDescription><CallNumber>QA 1 .H6</CallNumber></ItemDescription></ItemOptionalFields>"
        "<PickupLocation>MAIN-DESK</PickupLocation>"
        "<FiscalTransactionInformation><FiscalActionType>charge-default-patron-fee</FiscalActionType>"
        "<FiscalTransactionType>ILL-fee</FiscalTransactionType><Amount><CurrencyCode>USD</CurrencyCode>"
        "<MonetaryValue>0</MonetaryValue></Amount></FiscalTransactionInformation></AcceptItem>",
    )
    msg = parse_message(raw).message
    assert isinstance(msg, AcceptItem)
    assert msg.request_id is not None and msg.request_id.value == "EAST-322"
    assert msg.requested_action_type == "hold for pickup"
    assert msg.item_id is not None and msg.item_id.value == "RS-TMP-1"
    assert msg.date_for_return == datetime(2026, 3, 2, 4, 59, tzinfo=UTC)
    bib = msg.bibliographic
    assert bib is not None and bib.title == "The Compiler" and bib.author == "Hopper, Grace"
    assert bib.publisher == "Remington" and bib.publication_date == "1952"
    assert msg.item is not None and msg.item.call_number == "QA 1 .H6"
    assert msg.pickup_location == "MAIN-DESK"
    fee = msg.fiscal_transaction
    assert fee is not None and fee.action_type == "Charge-Default-Patron-Fee"
    assert fee.amount is not None and fee.amount.value == 0 and fee.amount.currency == "usd"


def test_reshare_request_item_by_record_id_with_location() -> None:
    """ReShare lender RequestItem: SYSNUMBER record id, Loan, Bibliographic Item, location."""
    raw = ns1(
        "<RequestItem>" + V2_HEADER + "<UserId><UserIdentifierValue>INST-EAST</UserIdentifierValue>"
        "</UserId><BibliographicId><BibliographicRecordId><BibliographicRecordIdentifier>990012"
        "</BibliographicRecordIdentifier><BibliographicRecordIdentifierCode>SYSNUMBER"
        "</BibliographicRecordIdentifierCode></BibliographicRecordId></BibliographicId>"
        "<RequestId><RequestIdentifierValue>EAST-400</RequestIdentifierValue></RequestId>"
        "<RequestType>Loan</RequestType><RequestScopeType>Bibliographic Item</RequestScopeType>"
        "<ItemOptionalFields><Location><LocationType>Permanent Location</LocationType>"
        "<LocationName>"
        "<LocationNameInstance><LocationNameLevel>1</LocationNameLevel><LocationNameValue>STACKS"
        "</LocationNameValue></LocationNameInstance></LocationName></Location></ItemOptionalFields>"
        "<PickupLocation>ILL</PickupLocation></RequestItem>"
    )
    msg = parse_message(raw).message
    assert isinstance(msg, RequestItem)
    assert msg.user_id is not None and msg.user_id.value == "INST-EAST"
    assert len(msg.bibliographic_ids) == 1
    record = msg.bibliographic_ids[0]
    assert (record.identifier, record.code, record.kind) == ("990012", "sysnumber", "record")
    assert msg.request_type == "LOAN" and msg.request_scope_type == "bibliographic item"
    assert msg.item is not None and msg.item.locations[0].name == "STACKS"
    assert msg.item.locations[0].names == ((1, "STACKS"),)
    assert msg.item_id is None and msg.pickup_location == "ILL"


def test_reshare_check_out_with_external_reference_request_id() -> None:
    """ReShare CheckOutItem: two RequestIds (hrid, then SLNP external reference), date-only due."""
    raw = ns1(
        "<CheckOutItem>"
        + V2_HEADER
        + "<UserId><UserIdentifierValue>INST-WEST</UserIdentifierValue>"
        "</UserId><ItemId><ItemIdentifierValue>39001000123</ItemIdentifierValue></ItemId>"
        "<RequestId><RequestIdentifierValue>WEST-17</RequestIdentifierValue></RequestId>"
        "<RequestId><RequestIdentifierType>ExternReferenz</RequestIdentifierType>"
        "<RequestIdentifierValue>SLNP-99</RequestIdentifierValue></RequestId>"
        "<DesiredDateDue>2026-04-30</DesiredDateDue></CheckOutItem>"
    )
    msg = parse_message(raw).message
    assert isinstance(msg, CheckOutItem)
    assert msg.request_id is not None and msg.request_id.value == "WEST-17"
    assert [r.value for r in msg.request_ids] == ["WEST-17", "SLNP-99"]
    assert msg.request_ids[1].type == "externreferenz"
    assert msg.desired_date_due == date(2026, 4, 30)
    assert msg.item_id is not None and msg.item_id.value == "39001000123"


def test_reshare_ncip1_accept_item_with_pseudo_schemes() -> None:
    """ReShare NCIP 1 AcceptItem: agency.scm pseudo-scheme everywhere, ToAgencyId = pickup."""
    scheme = "http://www.niso.org/ncip/v1_0/schemes/agency.scm"
    raw = v1(
        "<AcceptItem><InitiationHeader><FromAgencyId>"
        + sv("UniqueAgencyId", "RSLIB", scheme)
        + "</FromAgencyId><ToAgencyId>"
        + sv("UniqueAgencyId", "Main Pickup Desk", scheme)
        + "</ToAgencyId></InitiationHeader><UniqueRequestId>"
        + sv("UniqueAgencyId", "RSLIB", scheme)
        + "<RequestIdentifierValue>RS-55</RequestIdentifierValue></UniqueRequestId>"
        + sv("RequestedActionType", "Hold For Pickup", scheme)
        + "<UniqueUserId>"
        + sv("UniqueAgencyId", "RSLIB", scheme)
        + "<UserIdentifierValue>p123</UserIdentifierValue></UniqueUserId><UniqueItemId>"
        + sv("UniqueAgencyId", "RSLIB", scheme)
        + "<ItemIdentifierValue>RS-55</ItemIdentifierValue></UniqueItemId>"
        "<DateForReturn>2026-05-01T00:00:00Z</DateForReturn>"
        "<ItemOptionalFields><BibliographicDescription><Author>Knuth</Author><Title>TAOCP</Title>"
        "</BibliographicDescription></ItemOptionalFields></AcceptItem>"
    )
    env = parse_message(raw)
    assert env.dialect is Dialect.NCIP1 and "doctype-stripped" in env.notes
    msg = env.message
    assert isinstance(msg, AcceptItem)
    assert msg.header is not None and msg.header.to_agency is not None
    assert msg.header.to_agency.value == "Main Pickup Desk"
    assert msg.header.to_agency.scheme == scheme
    assert msg.request_id is not None and msg.request_id.value == "RS-55"
    assert msg.request_id.agency == "RSLIB"
    assert msg.requested_action_type == "HOLD FOR PICKUP"
    assert msg.user_id is not None and msg.user_id.value == "p123"
    assert msg.bibliographic is not None and msg.bibliographic.title == "TAOCP"


# --- Tipasa / WSILL / Relais D2D -> WMS (NCIP 2, ns1, OCLC schemes) -----------------------------

OCLC_HEADER = (
    '<InitiationHeader><FromSystemId Scheme="http://oclc.org/ncip/schemes/systemid/oclcsystemid.scm">'
    "WSILL</FromSystemId><FromAgencyId>"
    '<AgencyId Scheme="http://oclc.org/ncip/schemes/agencyid/symbol.scm">ZZA</AgencyId></FromAgencyId>'
    '<ToSystemId Scheme="http://oclc.org/ncip/schemes/systemid/oclcsystemid.scm">'
    "WMS Circ</ToSystemId>"
    '<ToAgencyId><AgencyId Scheme="http://oclc.org/ncip/schemes/agencyid/symbol.scm">ZZA</AgencyId>'
    "</ToAgencyId><ApplicationProfileType>2.00</ApplicationProfileType></InitiationHeader>"
)


def test_tipasa_accept_item_with_systems_and_ill_request_id() -> None:
    """WSILL AcceptItem: system ids, symbol schemes, ILL Request Id, lender agency on ItemId."""
    raw = ns1(
        "<AcceptItem>" + OCLC_HEADER + "<RequestId><AgencyId>ZZA</AgencyId>"
        "<RequestIdentifierType>ILL Request Id</RequestIdentifierType>"
        "<RequestIdentifierValue>7781</RequestIdentifierValue></RequestId>"
        "<RequestedActionType>Circulate</RequestedActionType>"
        "<UserId><UserIdentifierType>Barcode</UserIdentifierType>"
        "<UserIdentifierValue>B0001</UserIdentifierValue></UserId>"
        "<ItemId><AgencyId>ZZL</AgencyId><ItemIdentifierValue>L-889</ItemIdentifierValue></ItemId>"
        "<DateForReturn>2026-02-01T12:00:00Z</DateForReturn>"
        "<PickupExpiryDate>2026-01-20T12:00:00Z</PickupExpiryDate></AcceptItem>",
        version="http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd",
    )
    msg = parse_message(raw).message
    assert isinstance(msg, AcceptItem) and msg.header is not None
    assert msg.header.from_system is not None and msg.header.from_system.value == "WSILL"
    assert msg.header.to_system is not None and msg.header.to_system.value == "WMS Circ"
    assert msg.header.from_agency is not None
    assert msg.header.from_agency.scheme == "http://oclc.org/ncip/schemes/agencyid/symbol.scm"
    assert msg.request_id is not None and msg.request_id.type == "ill request id"
    assert msg.item_id is not None and msg.item_id.agency == "ZZL"
    assert msg.user_id is not None and msg.user_id.type == "barcode"
    assert msg.pickup_expiry_date == datetime(2026, 1, 20, 12, tzinfo=UTC)


def test_tipasa_check_in_by_ill_request_id() -> None:
    """WSILL CheckInItem by ItemIdentifierType "ILL Request Id"."""
    raw = ns1(
        "<CheckInItem>" + OCLC_HEADER + "<ItemId><ItemIdentifierType>ILL Request Id"
        "</ItemIdentifierType><ItemIdentifierValue>7781</ItemIdentifierValue></ItemId></CheckInItem>"
    )
    msg = parse_message(raw).message
    assert isinstance(msg, CheckInItem)
    assert msg.item_id is not None and msg.item_id.type == "ILL REQUEST ID"
    assert msg.user_id is None and msg.request_id is None


def test_tipasa_create_user_fiscal_transaction() -> None:
    """WSILL fee: Assess / Interlibrary Loan Fee, 1234 minor units USD, item and request ids."""
    raw = ns1(
        "<CreateUserFiscalTransaction>" + OCLC_HEADER + "<MandatedAction><DateEventOccurred>"
        "2026-01-02T10:00:00Z</DateEventOccurred></MandatedAction><UserId><UserIdentifierValue>"
        "B0001</UserIdentifierValue></UserId><FiscalTransactionInformation><FiscalActionType>"
        "Assess</FiscalActionType><FiscalTransactionType>Interlibrary Loan Fee"
        "</FiscalTransactionType><Amount><CurrencyCode>USD</CurrencyCode><MonetaryValue>1234"
        "</MonetaryValue></Amount><RequestId><RequestIdentifierValue>7781</RequestIdentifierValue>"
        "</RequestId><ItemDetails><ItemId><ItemIdentifierValue>L-889</ItemIdentifierValue></ItemId>"
        "<BibliographicDescription/></ItemDetails></FiscalTransactionInformation>"
        "</CreateUserFiscalTransaction>"
    )
    msg = parse_message(raw).message
    assert isinstance(msg, CreateUserFiscalTransaction)
    fee = msg.fiscal_transaction
    assert fee is not None and fee.action_type == "assess"
    assert fee.transaction_type == "Interlibrary Loan Fee"
    assert fee.amount is not None and (fee.amount.value, fee.amount.currency) == (1234, "USD")
    assert fee.request_id is not None and fee.request_id.value == "7781"
    assert fee.item_id is not None and fee.item_id.value == "L-889"
    assert msg.date_event_occurred == datetime(2026, 1, 2, 10, tzinfo=UTC)


# --- ILLiad add-ons (default namespace, ISO-8859-1 declared, UTF-8 sent) -------------------------


def test_illiad_accept_item_latin1_declared_utf8_sent_and_odd_order() -> None:
    """ILLiad AcceptItem: UTF-8 bytes under a latin-1 declaration, naive date in the library zone,
    DateForReturn before PickupLocation before ItemOptionalFields."""
    body = (
        "<AcceptItem><InitiationHeader><FromAgencyId><AgencyId>01XX_INST</AgencyId></FromAgencyId>"
        "<ToAgencyId><AgencyId>01XX_INST</AgencyId></ToAgencyId>"
        "<ApplicationProfileType>ILLiad</ApplicationProfileType></InitiationHeader>"
        "<RequestId><RequestIdentifierValue>TN9001</RequestIdentifierValue></RequestId>"
        "<RequestedActionType>Hold For Pickup And Notify</RequestedActionType>"
        "<UserId><AgencyId>01XX_INST</AgencyId><UserIdentifierType>Barcode Id</UserIdentifierType>"
        "<UserIdentifierValue>2999</UserIdentifierValue></UserId>"
        "<ItemId><ItemIdentifierValue>ILL-TN9001</ItemIdentifierValue></ItemId>"
        "<DateForReturn>2026-06-30T23:59:00</DateForReturn><PickupLocation>CIRC</PickupLocation>"
        "<ItemOptionalFields><BibliographicDescription><Author>Müller, Jürgen</Author>"
        "<Title>Straße</Title></BibliographicDescription></ItemOptionalFields></AcceptItem>"
    )
    raw = default_ns(body, encoding="ISO-8859-1")
    eastern = timezone(timedelta(hours=-4))
    env = parse_message(raw, tz=eastern)
    assert env.prefix_style is PrefixStyle.DEFAULT and env.dialect is Dialect.NCIP2
    assert "latin1-declared-utf8-sent" in env.notes
    msg = env.message
    assert isinstance(msg, AcceptItem)
    assert msg.bibliographic is not None and msg.bibliographic.author == "Müller, Jürgen"
    assert msg.bibliographic.title == "Straße"
    assert msg.date_for_return == datetime(2026, 6, 30, 23, 59, tzinfo=eastern)
    assert msg.requested_action_type == "hold for pickup and notify"
    assert msg.pickup_location == "CIRC"
    assert msg.header is not None and msg.header.application_profile == "illiad"


def test_true_latin1_body_still_decoded_as_latin1() -> None:
    """A body that really is ISO-8859-1 is read with its declared encoding."""
    body = (
        "<DeleteItem><ItemId><ItemIdentifierValue>caf\u00e9</ItemIdentifierValue></ItemId>"
        "</DeleteItem>"
    )
    raw = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        f'<NCIPMessage xmlns="{NS}" version="2">{body}</NCIPMessage>'
    ).encode("latin-1")
    env = parse_message(raw)
    assert isinstance(env.message, DeleteItem)
    assert env.message.item_id is not None and env.message.item_id.value == "café"
    assert env.notes == ()


def test_illiad_check_in_with_user_and_request_ids() -> None:
    """ILLiad CheckInItem carries UserId and RequestId (non-standard): both kept."""
    raw = default_ns(
        "<CheckInItem><InitiationHeader><FromAgencyId><AgencyId>I</AgencyId></FromAgencyId>"
        "<ToAgencyId><AgencyId>I</AgencyId></ToAgencyId></InitiationHeader>"
        "<UserId><UserIdentifierValue>2999</UserIdentifierValue></UserId>"
        "<ItemId><ItemIdentifierValue>ILL-TN9001</ItemIdentifierValue></ItemId>"
        "<RequestId><RequestIdentifierValue>TN9001</RequestIdentifierValue></RequestId></CheckInItem>"
    )
    msg = parse_message(raw).message
    assert isinstance(msg, CheckInItem)
    assert msg.user_id is not None and msg.user_id.value == "2999"
    assert msg.request_id is not None and msg.request_id.value == "TN9001"


def test_illiad_renew_item_date_only() -> None:
    """ILLiad RenewItem: date-only DesiredDateDue comes back as a date."""
    raw = default_ns(
        "\n\t\t\t<RenewItem>\n<UserId>\n<UserIdentifierValue>\t2999\n</UserIdentifierValue>\n</UserId>"
        "<ItemId><ItemIdentifierValue>ILL-1</ItemIdentifierValue></ItemId>"
        "<DesiredDateDue>2026-07-15</DesiredDateDue></RenewItem>"
    )
    msg = parse_message(raw).message
    assert isinstance(msg, RenewItem)
    assert msg.desired_date_due == date(2026, 7, 15)
    assert msg.user_id is not None and msg.user_id.value == "2999"
    assert msg.header is None


# --- Relais -> FOLIO shapes (no namespace, sloppy prolog) ---------------------------------


def test_relais_no_namespace_accept_item_with_stray_text() -> None:
    """FOLIO-style input: single-quoted spaced prolog, no namespace, stray text, fee last."""
    raw = (
        b"<?xml version = '1.0' encoding='UTF-8'?>\n"
        b"<NCIPMessage version='http://www.niso.org/schemas/ncip/v2_0/ncip_v2_0.xsd'>stray text\n"
        b"<AcceptItem><InitiationHeader><FromAgencyId><AgencyId>Relais</AgencyId></FromAgencyId>"
        b"<ToAgencyId><AgencyId>LEHX</AgencyId></ToAgencyId></InitiationHeader>"
        b"<RequestId><AgencyId>Relais</AgencyId><RequestIdentifierValue>LX-2019</RequestIdentifierValue>"
        b"</RequestId><RequestedActionType>Hold For Pickup</RequestedActionType>"
        b"<UserId><UserIdentifierValue>7001</UserIdentifierValue></UserId>"
        b"<ItemId><ItemIdentifierValue>LX-2019</ItemIdentifierValue></ItemId>"
        b"<PickupLocation>DELIV</PickupLocation><FiscalTransactionInformation>"
        b"<FiscalActionType>charge-default-patron-fee</FiscalActionType><FiscalTransactionType>"
        b"ILL-fee</FiscalTransactionType><Amount><MonetaryValue>0</MonetaryValue></Amount>"
        b"</FiscalTransactionInformation></AcceptItem></NCIPMessage>"
    )
    env = parse_message(raw)
    assert (env.dialect, env.prefix_style) == (Dialect.NCIP2, PrefixStyle.NONE)
    msg = env.message
    assert isinstance(msg, AcceptItem)
    assert msg.request_id is not None and msg.request_id.value == "LX-2019"
    assert msg.fiscal_transaction is not None and msg.fiscal_transaction.amount is not None
    assert msg.fiscal_transaction.amount.currency is None


def test_relais_lookup_user_pin_with_empty_format() -> None:
    """FOLIO LookupUser: UserId plus a PIN with an empty AuthenticationDataFormatType."""
    raw = default_ns(
        "<LookupUser>"
        + V2_HEADER
        + "<UserId><UserIdentifierValue>7001</UserIdentifierValue></UserId>"
        "<AuthenticationInput><AuthenticationInputData>4321</AuthenticationInputData>"
        "<AuthenticationDataFormatType></AuthenticationDataFormatType>"
        "<AuthenticationInputType>PIN</AuthenticationInputType></AuthenticationInput>"
        "<UserElementType>User Id</UserElementType></LookupUser>"
    )
    env = parse_message(raw)
    msg = env.message
    assert isinstance(msg, LookupUser)
    assert msg.user_id is not None and msg.user_id.value == "7001"
    assert msg.authentication_inputs[0].format is None
    assert msg.authentication("Pin") == "4321"
    assert "4321" in env.secrets and "4321" not in repr(env)


# --- OpenRS DCB (default ns + ncip: prefix for the attribute) -----------------------------

DCB_ROOT = (
    f'<NCIPMessage xmlns="{NS}" xmlns:ncip="{NS}" '
    'xmlns:openrs="https://openrs.org/ncip/fallback-host" ncip:version="2.02">'
)
DCB_HEADER = (
    "<InitiationHeader><FromSystemId>dcb</FromSystemId><FromAgencyId><AgencyId>dcb-host</AgencyId>"
    "</FromAgencyId><ToSystemId>lms</ToSystemId><ToAgencyId><AgencyId>lib-host</AgencyId>"
    "</ToAgencyId></InitiationHeader>"
)


def test_dcb_item_requested_with_openrs_ext() -> None:
    """DCB appliance ItemRequested: ncip:version="2.02", bib record id, Ext ignored."""
    raw = (
        DCB_ROOT
        + "<ItemRequested>"
        + DCB_HEADER
        + "<UserId><UserIdentifierValue>patron-9</UserIdentifierValue></UserId>"
        "<BibliographicId><BibliographicRecordId><BibliographicRecordIdentifier>bib-77"
        "</BibliographicRecordIdentifier><AgencyId>lib-host</AgencyId></BibliographicRecordId>"
        "</BibliographicId><RequestId><RequestIdentifierValue>pr-1:SUPPLIER</RequestIdentifierValue>"
        "</RequestId><RequestType>Hold</RequestType><RequestScopeType>Bibliographic Item"
        "</RequestScopeType><Ext><openrs:FallbackHostSelectedItem><openrs:SelectedItemBarcode>"
        "itm-5</openrs:SelectedItemBarcode></openrs:FallbackHostSelectedItem></Ext>"
        "</ItemRequested></NCIPMessage>"
    ).encode()
    env = parse_message(raw)
    assert env.prefix_style is PrefixStyle.DEFAULT and env.version == "2.02"
    msg = env.message
    assert isinstance(msg, ItemRequested)
    assert msg.request_id is not None and msg.request_id.value == "pr-1:SUPPLIER"
    assert msg.bibliographic_ids[0].agency == "lib-host"
    assert msg.request_type == "hold" and msg.request_scope_type == "Bibliographic Item"


def test_dcb_lookup_user_by_username_password() -> None:
    """DCB LookupUser by Username/Password (Text): the password is a secret, the name is not."""
    raw = (
        DCB_ROOT
        + "<LookupUser>"
        + DCB_HEADER
        + "<AuthenticationInput><AuthenticationInputData>jdoe</AuthenticationInputData>"
        "<AuthenticationDataFormatType>Text</AuthenticationDataFormatType>"
        "<AuthenticationInputType>Username</AuthenticationInputType></AuthenticationInput>"
        "<AuthenticationInput><AuthenticationInputData>s3cr3t!</AuthenticationInputData>"
        "<AuthenticationDataFormatType>Text</AuthenticationDataFormatType>"
        "<AuthenticationInputType>Password</AuthenticationInputType></AuthenticationInput>"
        "</LookupUser></NCIPMessage>"
    ).encode()
    env = parse_message(raw)
    msg = env.message
    assert isinstance(msg, LookupUser)
    assert msg.authentication("username") == "jdoe"
    assert env.secrets == frozenset({"s3cr3t!"})


def test_dcb_accept_item_nonstandard_action_and_barcode_code() -> None:
    """DCB AcceptItem: "Accept For Loan" kept verbatim; ISBN via BibliographicItemId code."""
    raw = (
        DCB_ROOT
        + "<AcceptItem>"
        + DCB_HEADER
        + "<RequestId><RequestIdentifierValue>pr-1:BORROWER</RequestIdentifierValue></RequestId>"
        "<RequestedActionType>Accept For Loan</RequestedActionType>"
        "<UserId><UserIdentifierValue>patron-9</UserIdentifierValue></UserId>"
        "<ItemId><ItemIdentifierValue>itm-5</ItemIdentifierValue></ItemId>"
        "<ItemOptionalFields><BibliographicDescription><BibliographicItemId>"
        "<BibliographicItemIdentifier>9780262033848</BibliographicItemIdentifier>"
        "<BibliographicItemIdentifierCode>ISBN</BibliographicItemIdentifierCode>"
        "</BibliographicItemId><Title>Algorithms</Title></BibliographicDescription>"
        "</ItemOptionalFields><PickupLocation>branch-2</PickupLocation></AcceptItem></NCIPMessage>"
    ).encode()
    msg = parse_message(raw).message
    assert isinstance(msg, AcceptItem)
    assert msg.requested_action_type == "accept for loan"
    assert msg.bibliographic is not None and msg.bibliographic.isbn == "9780262033848"


def test_dcb_lookup_item_set_and_version_ping() -> None:
    """DCB LookupItemSet by bib id; DCB LookupVersion ping inside NCIPMessage."""
    raw = (
        DCB_ROOT
        + "<LookupItemSet>"
        + DCB_HEADER
        + "<BibliographicId><BibliographicRecordId><BibliographicRecordIdentifier>bib-77"
        "</BibliographicRecordIdentifier><BibliographicRecordIdentifierCode>BibID"
        "</BibliographicRecordIdentifierCode></BibliographicRecordId></BibliographicId>"
        "<ItemElementType>Circulation Status</ItemElementType><MaximumItemsCount>10"
        "</MaximumItemsCount></LookupItemSet></NCIPMessage>"
    ).encode()
    msg = parse_message(raw).message
    assert isinstance(msg, LookupItemSet)
    assert msg.bibliographic_ids[0].code == "bibid" and msg.maximum_items_count == 10
    ping = (
        DCB_ROOT
        + "<LookupVersion>"
        + DCB_HEADER
        + "<VersionSupported>2.02</VersionSupported></LookupVersion></NCIPMessage>"
    ).encode()
    env = parse_message(ping)
    assert isinstance(env.message, LookupVersion) and env.message.versions == ("2.02",)
    assert env.dialect is Dialect.NCIP2


# --- INN-Reach DCB (NCIP 1) ---------------------------------------------------------------------


def test_innreach_lookup_user_visible_user_id_with_empty_internal_subset() -> None:
    """INN-Reach LookupUser: DOCTYPE with "[]", datatype attributes, VisibleUserId Barcode."""
    doctype = V1_DOCTYPE[:-1] + "[]>"
    raw = v1(
        "<LookupUser>"
        + V1_HEADER
        + "<VisibleUserId>"
        + sv("VisibleUserIdentifierType", "Barcode")
        + '<VisibleUserIdentifier datatype="string">21000777</VisibleUserIdentifier>'
        + "</VisibleUserId>"
        + sv("UserElementType", "Block Or Trap")
        + sv("UserElementType", "Visible User Id")
        + "</LookupUser>",
        doctype=doctype,
    )
    env = parse_message(raw)
    assert env.dialect is Dialect.NCIP1
    msg = env.message
    assert isinstance(msg, LookupUser)
    assert msg.user_id is not None
    assert (msg.user_id.value, msg.user_id.visible, msg.user_id.type) == (
        "21000777",
        True,
        "barcode",
    )
    assert msg.user_element_types == ("block or trap", "visible user id")
    assert msg.header is not None and msg.header.from_agency is not None
    assert msg.header.from_agency.value == "sitea"
    assert msg.header.from_agency.scheme is not None and "&scheme=" in msg.header.from_agency.scheme


def test_innreach_item_requested_lowercase_codes_and_pickup() -> None:
    """INN-Reach ItemRequested: "hold"/"item" lower-case, patron record number, pickup text."""
    raw = v1(
        "<ItemRequested>"
        + V1_HEADER
        + "<UniqueUserId>"
        + v1_agency("siteb")
        + '<UserIdentifierValue datatype="string">p1234567</UserIdentifierValue></UniqueUserId>'
        "<UniqueItemId>"
        + v1_agency("sitea")
        + "<ItemIdentifierValue>i7654321</ItemIdentifierValue>"
        "</UniqueItemId>"
        + sv("RequestType", "hold")
        + sv("RequestScopeType", "item")
        + '<DateOfUserRequest datatype="dateTime">2026-01-05T16:00:45Z</DateOfUserRequest>'
        "<ItemOptionalFields><BibliographicDescription><Author>A</Author><Title>T</Title>"
        + sv("MediumType", "Book")
        + "</BibliographicDescription><ItemDescription><CallNumber>PS 1</CallNumber>"
        "</ItemDescription></ItemOptionalFields><UserOptionalFields><VisibleUserId>"
        + sv("VisibleUserIdentifierType", "Barcode")
        + "<VisibleUserIdentifier>21000777</VisibleUserIdentifier></VisibleUserId>"
        "</UserOptionalFields><ShippingInformation><PhysicalAddress><UnstructuredAddress>"
        + sv("UnstructuredAddressType", "Pickup Location")
        + "<UnstructuredAddressData>North Branch</UnstructuredAddressData></UnstructuredAddress>"
        + sv("PhysicalAddressType", "Pickup Location")
        + "</PhysicalAddress><ShippingNote>stop 4</ShippingNote></ShippingInformation>"
        + "</ItemRequested>"
    )
    msg = parse_message(raw).message
    assert isinstance(msg, ItemRequested)
    assert msg.request_type == "Hold" and msg.request_scope_type == "Item"
    assert msg.user_id is not None and msg.user_id.value == "p1234567"
    assert msg.user_id.agency == "siteb"
    assert msg.item_id is not None and msg.item_id.value == "i7654321"
    assert msg.date_event == datetime(2026, 1, 5, 16, 0, 45, tzinfo=UTC)
    assert msg.item is not None and msg.item.bibliographic is not None
    assert msg.item.bibliographic.medium_type == "book" and msg.item.call_number == "PS 1"
    assert msg.user_ids[0].value == "21000777"
    assert msg.shipping is not None and msg.shipping.unstructured == "North Branch"
    assert msg.shipping.note == "stop 4"


@pytest.mark.parametrize(
    ("service", "cls", "date_element"),
    [
        ("ItemShipped", ItemShipped, "DateShipped"),
        ("ItemReceived", ItemReceived, "DateReceived"),
        ("ItemCheckedOut", ItemCheckedOut, "DateCheckedOut"),
        ("ItemCheckedIn", ItemCheckedIn, "DateCheckedIn"),
        ("ItemRequestCancelled", ItemRequestCancelled, "DateOfCancellation"),
        ("ItemRenewed", ItemRenewed, "DateRenewed"),
    ],
)
def test_innreach_notifications(service: str, cls: type[Notification], date_element: str) -> None:
    """Each NCIP 1 notification is typed, with ids, event date and due date."""
    raw = v1(
        f"<{service}>"
        + V1_HEADER
        + "<UniqueUserId>"
        + v1_agency("siteb")
        + "<UserIdentifierValue>p1</UserIdentifierValue></UniqueUserId><UniqueItemId>"
        + v1_agency("sitea")
        + "<ItemIdentifierValue>i1</ItemIdentifierValue></UniqueItemId>"
        "<UniqueRequestId>"
        + v1_agency("sitea")
        + "<RequestIdentifierValue>r1</RequestIdentifierValue></UniqueRequestId>"
        f"<{date_element}>2026-02-03T04:05:06Z</{date_element}>"
        f"<DateDue>2026-03-03T00:00:00Z</DateDue></{service}>"
    )
    env = parse_message(raw)
    msg = env.message
    assert isinstance(msg, cls) and env.service == service
    assert msg.user_id is not None and msg.item_id is not None and msg.request_id is not None
    assert msg.user_id.value == "p1" and msg.item_id.value == "i1" and msg.request_id.value == "r1"
    assert msg.date_event == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert msg.date_due == datetime(2026, 3, 3, tzinfo=UTC)


def test_ncip1_agency_value_without_scheme_and_v1_profile() -> None:
    """UniqueAgencyId with a Value but no Scheme; ApplicationProfileType as a Value pair."""
    raw = (
        b'<NCIPMessage version="http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd"><CheckInItem>'
        b"<InitiationHeader><FromAgencyId><UniqueAgencyId><Value>caia</Value></UniqueAgencyId>"
        b"</FromAgencyId><ToAgencyId><UniqueAgencyId><Value>TNS</Value></UniqueAgencyId></ToAgencyId>"
        b"<ApplicationProfileType><Value>caia</Value></ApplicationProfileType></InitiationHeader>"
        b"<UniqueItemId><UniqueAgencyId><Value>TNS</Value></UniqueAgencyId><ItemIdentifierValue>"
        b"3120</ItemIdentifierValue></UniqueItemId></CheckInItem></NCIPMessage>"
    )
    env = parse_message(raw)
    assert env.dialect is Dialect.NCIP1
    msg = env.message
    assert isinstance(msg, CheckInItem) and msg.header is not None
    assert msg.header.from_agency is not None and msg.header.from_agency.scheme is None
    assert msg.header.application_profile == "CAIA"
    assert msg.item_id is not None and msg.item_id.agency == "TNS"


# --- CrossLink (Go encoding/xml) and the remaining services ------------------------------------


def test_crosslink_repeated_xmlns_and_empty_values() -> None:
    """Go output repeats xmlns on every element; empty values parse as absent, not as errors."""
    raw = (
        f'<NCIPMessage xmlns="{NS}" xmlns:ncip="{NS}" ncip:version="x"><AcceptItem xmlns="{NS}">'
        f'<InitiationHeader xmlns="{NS}"><FromAgencyId xmlns="{NS}"><AgencyId></AgencyId>'
        f'</FromAgencyId><ToAgencyId><AgencyId ncip:Scheme="urn:any">to</AgencyId></ToAgencyId>'
        f'</InitiationHeader><RequestId xmlns="{NS}">'
        "<RequestIdentifierValue></RequestIdentifierValue>"
        "</RequestId><RequestedActionType></RequestedActionType>"
        "<DateForReturn>2026-10-06T11:14:00.592Z</DateForReturn></AcceptItem></NCIPMessage>"
    ).encode()
    msg = parse_message(raw).message
    assert isinstance(msg, AcceptItem)
    assert msg.request_id is None and msg.requested_action_type is None
    assert msg.header is not None and msg.header.to_agency is not None
    assert msg.header.to_agency.scheme == "urn:any"
    assert msg.header.from_agency is not None and msg.header.from_agency.value == ""
    assert msg.date_for_return == datetime(2026, 10, 6, 11, 14, 0, 592000, tzinfo=UTC)


def test_lookup_item_lookup_request_cancel_create_delete() -> None:
    """LookupItem, LookupRequest, CancelRequestItem, CreateItem and DeleteItem are typed."""
    cases = {
        "<LookupItem><ItemId><ItemIdentifierValue>b1</ItemIdentifierValue></ItemId>"
        "<ItemElementType>Bibliographic Description</ItemElementType></LookupItem>": LookupItem,
        "<LookupRequest><RequestId><RequestIdentifierValue>h1</RequestIdentifierValue></RequestId>"
        "</LookupRequest>": LookupRequest,
        "<CancelRequestItem><UserId><UserIdentifierValue>u</UserIdentifierValue></UserId><RequestId>"
        "<RequestIdentifierValue>h1</RequestIdentifierValue></RequestId><RequestType>Hold"
        "</RequestType><RequestScopeType>Item</RequestScopeType>"
        "</CancelRequestItem>": CancelRequestItem,
        "<CreateItem><ItemId><ItemIdentifierValue>n1</ItemIdentifierValue></ItemId>"
        "<BibliographicDescription><Title>T</Title></BibliographicDescription>"
        "<CirculationStatus>Available On Shelf</CirculationStatus><ItemDescription><CallNumber>C"
        "</CallNumber></ItemDescription></CreateItem>": CreateItem,
        "<DeleteItem><ItemId><ItemIdentifierValue>n1</ItemIdentifierValue></ItemId>"
        "</DeleteItem>": DeleteItem,
    }
    for body, cls in cases.items():
        msg = parse_message(ns1(body)).message
        assert isinstance(msg, cls), body
    create = parse_message(ns1(list(cases)[3])).message
    assert isinstance(create, CreateItem) and create.item is not None
    assert create.item.bibliographic is not None and create.item.bibliographic.title == "T"
    assert create.item.circulation_status == "available on shelf" and create.item.call_number == "C"
    cancel = parse_message(ns1(list(cases)[2])).message
    assert isinstance(cancel, CancelRequestItem) and cancel.request_type == "hold"


def test_lookup_version_message() -> None:
    """NCIPVersionMessage LookupVersion: its own dialect; agencies read from the message."""
    raw = (
        b'<NCIPVersionMessage version="http://www.niso.org/ncip/v1_0/imp1/xsd/ncip_version.xsd">'
        b"<LookupVersion><FromAgencyId><UniqueAgencyId><Scheme>s</Scheme><Value>A</Value>"
        b"</UniqueAgencyId></FromAgencyId><ToAgencyId><UniqueAgencyId><Scheme>s</Scheme>"
        b"<Value>B</Value></UniqueAgencyId></ToAgencyId></LookupVersion></NCIPVersionMessage>"
    )
    env = parse_message(raw)
    assert env.dialect is Dialect.VERSION and isinstance(env.message, LookupVersion)
    assert env.message.header is not None and env.message.header.from_agency is not None
    assert env.message.header.from_agency.value == "A"


def test_unknown_service_and_ext_wrapped_service() -> None:
    """Untyped services become OtherMessage; a standard service wrapped in Ext is unwrapped."""
    env = parse_message(
        ns1(
            "<UpdateUser><UserId><UserIdentifierValue>u</UserIdentifierValue></UserId></UpdateUser>"
        )
    )
    assert isinstance(env.message, OtherMessage) and env.message.name == "UpdateUser"
    wrapped = parse_message(
        ns1(
            "<Ext><LookupItemSet><ItemId><ItemIdentifierValue>x"
            "</ItemIdentifierValue></ItemId></LookupItemSet></Ext>"
        )
    )
    assert isinstance(wrapped.message, LookupItemSet) and "ext-wrapped" in wrapped.notes


def test_element_order_does_not_matter() -> None:
    """The same AcceptItem with children in reverse order parses to an equal message."""
    parts = [
        "<RequestId><RequestIdentifierValue>R</RequestIdentifierValue></RequestId>",
        "<RequestedActionType>Circulate</RequestedActionType>",
        "<UserId><UserIdentifierValue>U</UserIdentifierValue></UserId>",
        "<ItemId><ItemIdentifierValue>I</ItemIdentifierValue></ItemId>",
        "<DateForReturn>2026-01-01</DateForReturn>",
        "<PickupLocation>P</PickupLocation>",
        "<RenewalNotPermitted/>",
    ]
    forward = parse_message(ns1("<AcceptItem>" + "".join(parts) + "</AcceptItem>")).message
    backward = parse_message(
        ns1("<AcceptItem>" + "".join(reversed(parts)) + "</AcceptItem>")
    ).message
    assert forward == backward
    assert isinstance(forward, AcceptItem) and forward.renewal_not_permitted


def test_codes_compare_case_insensitively() -> None:
    """Code equality and hashing ignore case and whitespace; the original spelling is kept."""
    code = Code("  Hold  For\tPickup ")
    assert code == "hold for pickup" and "HOLD FOR PICKUP" == code
    assert code != "Hold"
    assert hash(code) == hash(Code("hold for pickup"))
    assert code in {"hold for pickup"} or Code("hold for pickup") in {code}
    assert code.is_one_of("Circulate", "hold for pickup")
    assert str(code) == "  Hold  For\tPickup "


def test_invalid_date_is_reported_not_fatal() -> None:
    """A date the parser cannot read becomes None plus an Invalid Date issue for the gateway."""
    env = parse_message(
        ns1(
            "<RenewItem><ItemId><ItemIdentifierValue>i</ItemIdentifierValue>"
            "</ItemId><DesiredDateDue>DATE_DUE</DesiredDateDue></RenewItem>"
        )
    )
    assert isinstance(env.message, RenewItem) and env.message.desired_date_due is None
    assert [(i.problem_type, i.element, i.value) for i in env.issues] == [
        ("Invalid Date", "DesiredDateDue", "DATE_DUE")
    ]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not xml",
        b"<NCIPMessage/>",
        b"<Foo><LookupUser/></Foo>",
        b'<x:NCIPMessage xmlns:x="urn:other"><x:LookupUser/></x:NCIPMessage>',
    ],
)
def test_unacceptable_documents_raise_syntax_error(raw: bytes) -> None:
    """Empty, non-XML, message-less, wrongly rooted or foreign-namespace input is refused."""
    with pytest.raises(NCIPSyntaxError):
        parse_message(raw)
