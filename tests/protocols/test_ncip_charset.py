"""Bodies that are not what they declare (issue 13.13): ILLiad sends Windows-1252 while
declaring UTF-8, or declaring nothing, or declaring ISO-8859-1. With the sender's fallback
charset the parser decodes them without losing a character, and notes the repair."""

from __future__ import annotations

import pytest

from protocols.ncip import AcceptItem, NCIPSyntaxError, parse_message, parse_xml
from protocols.ncip.safexml import declares_latin1, needs_fallback

NS = "http://www.niso.org/2008/ncip"
TITLE = "Caf\u00e9 \u201cNo\u00ebl\u201d \u2013 \u20ac5 \u0152uvres"  # é “ ë ” – € Œ


def accept_item(declaration: str, title: str = TITLE, encoding: str = "cp1252") -> bytes:
    """ILLiad's borrowing AcceptItem (default namespace) with a title in ``encoding``."""
    return (declaration + f'<NCIPMessage xmlns="{NS}" version="2.02"><AcceptItem>'
            "<InitiationHeader><FromAgencyId><AgencyId>01XXX_INST</AgencyId></FromAgencyId>"
            "<ToAgencyId><AgencyId>01XXX_INST</AgencyId></ToAgencyId></InitiationHeader>"
            "<RequestId><RequestIdentifierValue>TN-1</RequestIdentifierValue></RequestId>"
            "<RequestedActionType>Hold For Pickup And Notify</RequestedActionType>"
            "<UserId><UserIdentifierValue>P-1</UserIdentifierValue></UserId>"
            "<ItemOptionalFields><BibliographicDescription>"
            f"<Title>{title}</Title></BibliographicDescription></ItemOptionalFields>"
            "</AcceptItem></NCIPMessage>").encode(encoding)


UTF8_DECLARED = '<?xml version="1.0" encoding="UTF-8"?>'
LATIN1_DECLARED = '<?xml version="1.0" encoding="ISO-8859-1"?>'


@pytest.mark.parametrize("declaration", [UTF8_DECLARED, "",
                                         "<?xml version = '1.0' encoding = 'utf8'?>"])
def test_windows_1252_declared_utf8_or_undeclared(declaration: str) -> None:
    """Without a fallback the body is refused (it is not UTF-8); with the peer's fallback
    charset every character arrives, and the repair is noted."""
    body = accept_item(declaration)
    assert needs_fallback(body)
    with pytest.raises(NCIPSyntaxError):
        parse_xml(body)
    document = parse_xml(body, fallback_charset="windows-1252")
    title = next(e.text for e in document.root.iter() if str(e.tag).endswith("}Title"))
    assert title == TITLE
    assert "charset-fallback:windows-1252" in document.notes


def test_windows_1252_declared_latin1_keeps_its_quotes() -> None:
    """Declared ISO-8859-1, Windows-1252's curly quotes, dash and euro (bytes 0x80-0x9F) would
    become control characters; the fallback decodes them as the sender meant."""
    body = accept_item(LATIN1_DECLARED)
    assert declares_latin1(body) and needs_fallback(body)
    plain = parse_xml(body)
    lost = next(e.text for e in plain.root.iter() if str(e.tag).endswith("}Title"))
    assert lost != TITLE and "\x93" in lost
    repaired = parse_xml(body, fallback_charset="windows-1252")
    title = next(e.text for e in repaired.root.iter() if str(e.tag).endswith("}Title"))
    assert title == TITLE and "charset-fallback:windows-1252" in repaired.notes


def test_honest_bodies_are_left_alone() -> None:
    """UTF-8 bodies, real Latin-1 (no 0x80-0x9F) and ILLiad's UTF-8 declared as ISO-8859-1 are
    read as before, with no fallback note, whatever the peer's fallback is."""
    utf8 = accept_item(UTF8_DECLARED, encoding="utf-8")
    latin1 = accept_item(LATIN1_DECLARED, title="Caf\u00e9 No\u00ebl", encoding="latin-1")
    utf8_as_latin1 = accept_item(LATIN1_DECLARED, title="Caf\u00e9 \u201cx\u201d",
                                 encoding="utf-8")
    for body, expected in ((utf8, TITLE), (latin1, "Caf\u00e9 No\u00ebl"),
                           (utf8_as_latin1, "Caf\u00e9 \u201cx\u201d")):
        assert not needs_fallback(body)
        document = parse_xml(body, fallback_charset="windows-1252")
        title = next(e.text for e in document.root.iter() if str(e.tag).endswith("}Title"))
        assert title == expected
        assert not any(n.startswith("charset-fallback") for n in document.notes)


def test_bytes_the_fallback_cannot_decode_are_refused() -> None:
    """0x81 is undefined in Windows-1252: still Invalid Message Syntax, never a guess."""
    body = accept_item(UTF8_DECLARED, title="x").replace(b"<Title>x", b"<Title>\x81x")
    with pytest.raises(NCIPSyntaxError):
        parse_xml(body, fallback_charset="windows-1252")


def test_innreach_accept_item_patron_by_visible_user_id() -> None:
    """INN-Reach's NCIP 1 AcceptItem naming the patron only by its local barcode (a
    VisibleUserId in UserOptionalFields) has that barcode as its user id (13.12)."""
    body = (b'<NCIPMessage version="http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">'
            b"<AcceptItem><InitiationHeader><FromAgencyId><UniqueAgencyId><Scheme>s</Scheme>"
            b"<Value>zv247</Value></UniqueAgencyId></FromAgencyId><ToAgencyId><UniqueAgencyId>"
            b"<Scheme>s</Scheme><Value>LIB</Value></UniqueAgencyId></ToAgencyId>"
            b"</InitiationHeader><UniqueRequestId><RequestIdentifierValue>T-9"
            b"</RequestIdentifierValue></UniqueRequestId><RequestedActionType><Scheme>s"
            b"</Scheme><Value>Hold for Pickup</Value></RequestedActionType><UserOptionalFields>"
            b"<VisibleUserId><VisibleUserIdentifierType><Scheme>s</Scheme><Value>Barcode"
            b"</Value></VisibleUserIdentifierType><VisibleUserIdentifier>21234000001"
            b"</VisibleUserIdentifier></VisibleUserId></UserOptionalFields></AcceptItem>"
            b"</NCIPMessage>")
    message = parse_message(body).message
    assert isinstance(message, AcceptItem)
    assert message.user_id is not None and message.user_id.value == "21234000001"
    assert message.user_id.visible and [u.value for u in message.user_ids] == ["21234000001"]
