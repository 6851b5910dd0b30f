"""Redaction of NCIP bodies for the audit store: secrets always, personal data on request."""

from __future__ import annotations

import hashlib

from lxml import etree

from protocols.ncip import parse_xml, redact

BODY = (
    b'<ns1:NCIPMessage xmlns:ns1="http://www.niso.org/2008/ncip" ns1:version="2"><ns1:LookupUser>'
    b"<ns1:InitiationHeader><ns1:FromAgencyId><ns1:AgencyId>B</ns1:AgencyId></ns1:FromAgencyId>"
    b"<ns1:FromAgencyAuthentication>agency-pw</ns1:FromAgencyAuthentication><ns1:ToAgencyId>"
    b"<ns1:AgencyId>L</ns1:AgencyId></ns1:ToAgencyId></ns1:InitiationHeader>"
    b"<ns1:UserId><ns1:UserIdentifierValue>2100042</ns1:UserIdentifierValue></ns1:UserId>"
    b"<ns1:AuthenticationInput><ns1:AuthenticationInputData>8642</ns1:AuthenticationInputData>"
    b"<ns1:AuthenticationDataFormatType>text</ns1:AuthenticationDataFormatType>"
    b"<ns1:AuthenticationInputType>PIN</ns1:AuthenticationInputType></ns1:AuthenticationInput>"
    b"<ns1:UserOptionalFields><ns1:NameInformation><ns1:PersonalNameInformation>"
    b"<ns1:UnstructuredPersonalUserName>Grace Hopper</ns1:UnstructuredPersonalUserName>"
    b"</ns1:PersonalNameInformation></ns1:NameInformation><ns1:UserAddressInformation>"
    b"<ns1:ElectronicAddress><ns1:ElectronicAddressData>grace@example.org</ns1:ElectronicAddressData>"
    b"</ns1:ElectronicAddress></ns1:UserAddressInformation></ns1:UserOptionalFields>"
    b"</ns1:LookupUser></ns1:NCIPMessage>"
)


def test_secrets_always_removed_personal_kept_by_default() -> None:
    """Default redaction drops the PIN and agency secret but keeps ids, names and e-mail."""
    out = redact(BODY)
    assert b"8642" not in out and b"agency-pw" not in out
    assert b"2100042" in out and b"Grace Hopper" in out and b"grace@example.org" in out
    assert out.count(b">***<") == 2


def test_personal_data_replaced_on_request() -> None:
    """personal=True also replaces names, e-mail and user ids; structure is preserved."""
    out = redact(BODY, personal=True)
    for value in (b"8642", b"agency-pw", b"2100042", b"Grace Hopper", b"grace@example.org"):
        assert value not in out
    assert b"[redacted]" in out
    assert etree.fromstring(out).tag == "{http://www.niso.org/2008/ncip}NCIPMessage"


def test_pseudonymized_user_ids_stay_correlatable() -> None:
    """With pseudonymize, the same barcode maps to the same token."""
    token = lambda value: hashlib.sha256(b"k" + value.encode()).hexdigest()[:12]  # noqa: E731
    out = redact(BODY, personal=True, pseudonymize=token)
    assert token("2100042").encode() in out and b"2100042" not in out


def test_tree_input_is_not_modified() -> None:
    """Redacting a parsed tree works on a copy."""
    root = parse_xml(BODY).root
    out = redact(root)
    assert b"8642" not in out
    assert b"8642" in etree.tostring(root)


def test_unparseable_bodies() -> None:
    """Broken bodies still lose their secrets; with personal=True they are withheld entirely."""
    broken = b"<NCIPMessage><AuthenticationInputData>8642</AuthenticationInputData> & oops"
    assert b"8642" not in redact(broken)
    assert redact(broken, personal=True) == b"<!-- unparseable body withheld -->"


def test_pins_are_redacted_by_meaning() -> None:
    """A PIN in a non-standard element (an Ext's ``UserPIN``, ``pin_code``), a ``password``
    attribute, or a non-standard child of AuthenticationInput is removed, and so is the same
    value wherever else it is echoed (text, attribute, comment); look-alike names are kept."""
    body = (b'<NCIPMessage xmlns="http://www.niso.org/2008/ncip"><LookupUser>'
            b"<AuthenticationInput><AuthenticationInputType>PIN</AuthenticationInputType>"
            b"<Value>4711-secret</Value></AuthenticationInput>"
            b'<Ext><UserPIN>9931</UserPIN><pin_code>5566</pin_code><Login password="pw-77x"/>'
            b"<Note>pin was 9931, or 4711-secret; pw-77x</Note><!-- 5566 -->"
            b"<Shipping>Spinner 12</Shipping><Token>tok-abc</Token></Ext>"
            b"<UserElementType>Name Information</UserElementType></LookupUser></NCIPMessage>")
    out = redact(body)
    for secret in (b"4711-secret", b"9931", b"5566", b"pw-77x", b"tok-abc"):
        assert secret not in out, secret
    for kept in (b"<AuthenticationInputType>PIN</AuthenticationInputType>",
                 b"<Shipping>Spinner 12</Shipping>", b"Name Information", b"pin was"):
        assert kept in out, kept
    assert redact(body, personal=True).count(b"9931") == 0
