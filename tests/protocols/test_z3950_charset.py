"""Character-set negotiation (charneg-3) and MARC-8 (issue 14, point 9).

The association picks one of the character sets the client offered (in the client's order: the
first one we convert to), answers by OID for ISO 10646 UTF-8 and by name for the others (as YAZ
proposes and reads them), decodes terms in it and asks for records in it when the client wants
records in the selected set; UTF-8 is answered only when it was offered or when the proposal
named no character set. MARC-8 is checked against Debian's ``yaz-iconv`` where installed.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from protocols.z3950 import client, codec, marc8, oids
from protocols.z3950.association import Association, FetchCall, SearchCall, State
from protocols.z3950.charset import (
    CharsetChoice,
    CharsetProposal,
    choose_charset,
    utf8_negotiation_proposal,
)
from protocols.z3950.codec import ScanEntry
from protocols.z3950.pqf import Term
from protocols.z3950.records import decode_external

OPTIONS = ("search", "present", "scan", "negotiationModel")
SAMPLES = ("Moreau, Émile", "Łódź", "Война и мир", "Ἰλιάς", "中文", "naïve café",
           "Cafe\u0301 decomposed", "Straße")


def negotiate(*names: str, records: bool | None = True,
              options: tuple[str, ...] = OPTIONS) -> tuple[Association, Any]:
    """Init with a proposal of ``names``; the association and the InitResponse body."""
    assoc = Association()
    unit = utf8_negotiation_proposal(records, names=names)
    actions = assoc.receive(codec.decode_request(codec.encode_pdu(
        client.init_request(options=options, other_info=[unit]))))
    [reply] = [codec.decode_pdu(a.data) for a in actions if hasattr(a, "data")]
    return assoc, codec.pdu_body(reply)


def selected(body: Any) -> tuple[str, str | bool | None]:
    """('iso10646', dotted OID) or ('private', name) the InitResponse selected, and the
    recordsInSelectedCharSets flag; ('none', None) without an answer."""
    info = body["otherInfo"]
    if not info.isValue or not len(info):
        return ("none", None)
    neg = decode_external(info[0]["information"]["externallyDefinedInfo"]).value["response"]
    chosen = neg["selectedCharSets"]
    flag = bool(neg["recordsInSelectedCharSets"]) if neg["recordsInSelectedCharSets"].isValue \
        else None
    if chosen.getName() == "iso10646":
        return (oids.oid_to_dotted(tuple(chosen["iso10646"]["encodingLevel"])), flag)
    external = chosen["private"]["externallySpecified"]
    assert tuple(external["direct-reference"]) == oids.NEGOTIATION_CHARSET_ID
    return (external["encoding"]["octet-aligned"].asOctets().decode(), flag)


@pytest.mark.parametrize("names,answer,codec_name", [
    (("ISO-8859-1",), "ISO-8859-1", "iso8859-1"),
    (("MARC-8",), "MARC-8", "marc-8"),
    (("UTF-8",), "1.0.10646.1.0.8", "utf-8"),
    (("MARC-8", "ISO-8859-1", "UTF-8"), "MARC-8", "marc-8"),
    (("ISO-8859-1", "UTF-8"), "ISO-8859-1", "iso8859-1"),
    (("EBCDIC-US", "UTF-16", "ISO-8859-1"), "ISO-8859-1", "iso8859-1"),
    ((), "1.0.10646.1.0.8", "utf-8"),
])
def test_the_first_offered_charset_we_convert_to_is_chosen(names: tuple[str, ...], answer: str,
                                                           codec_name: str) -> None:
    """Client order wins; UTF-8 only when offered or when no set was named at all."""
    assoc, body = negotiate(*names)
    assert selected(body) == (answer, True)
    assert "negotiationModel" in codec.names_from_bits(body["options"], codec.OPTION_NAMES)
    assert assoc.charset is not None and assoc.charset.codec == codec_name
    assert assoc.record_charset == (None if codec_name == "utf-8" else codec_name)


def test_nothing_we_convert_to_goes_unanswered() -> None:
    """Only unsupported sets offered: no charneg answer, negotiationModel not confirmed, terms
    and records stay UTF-8."""
    assoc, body = negotiate("EBCDIC-US", "UTF-16")
    assert selected(body) == ("none", None)
    assert "negotiationModel" not in codec.names_from_bits(body["options"], codec.OPTION_NAMES)
    assert assoc.charset is None and assoc.record_charset is None
    assert assoc.state is State.UP


def test_records_stay_utf8_unless_the_client_wants_them_in_the_set() -> None:
    """recordsInSelectedCharSets false: terms in Latin-1, records in UTF-8 (answered false)."""
    assoc, body = negotiate("ISO-8859-1", records=False)
    assert selected(body) == ("ISO-8859-1", False)
    assert assoc.record_charset is None and assoc.decoder.primary == "iso8859-1"


def test_terms_decoded_and_records_asked_in_the_negotiated_set() -> None:
    """MARC-8 negotiated: a MARC-8 search term arrives as text; the Present asks the catalogue
    for MARC-8 records; scan terms go back in MARC-8."""
    assoc, _ = negotiate("MARC-8")
    term = "Moreau, Émile".encode("marc-8")
    model = client.search_request("@attr 1=1003 x")
    pdu = codec.decode_pdu(codec.encode_pdu(model))
    body = codec.pdu_body(pdu)
    body["query"]["type-1"]["rpn"]["op"]["attrTerm"]["term"]["general"] = term
    [call] = assoc.receive(codec.decode_request(codec.encode_pdu(pdu), assoc.decoder))
    assert isinstance(call, SearchCall) and isinstance(call.query.root, Term)
    assert call.query.root.value == "Moreau, Émile"

    class Hits:
        name, count = "default", 1

    assoc.resume(Hits())
    [fetch] = assoc.receive(codec.decode_request(codec.encode_pdu(client.present_request())))
    assert isinstance(fetch, FetchCall) and fetch.charset == "marc-8"
    assoc.resume([])
    [scan] = assoc.receive(codec.decode_request(
        codec.encode_pdu(client.scan_request("@attr 1=4 w")), assoc.decoder))
    actions = assoc.resume([ScanEntry("Война", 2, "Война")])
    [reply] = [codec.decode_pdu(a.data) for a in actions if hasattr(a, "data")]
    entry = codec.pdu_body(reply)["entries"]["entries"][0]["termInfo"]
    assert entry["term"]["general"].asOctets() == "Война".encode("marc-8")


def test_choose_charset_without_proposal_is_none() -> None:
    assert choose_charset(None) is None
    assert choose_charset(CharsetProposal(False)) == CharsetChoice(
        "UTF-8", "utf-8", iso10646=True, records=False)


@pytest.mark.parametrize("text", SAMPLES)
def test_marc8_round_trip(text: str) -> None:
    """MARC-8 encoding decodes back (pymarc) to the same text, NFC; marks before bases."""
    import unicodedata

    data = text.encode("marc-8")
    assert data.decode("MARC-8") == unicodedata.normalize("NFC", text)
    assert b"&#x" not in data  # every sample is in MARC-8's repertoire


def test_marc8_writes_combining_marks_before_the_base_and_ncrs_for_the_rest() -> None:
    assert "é".encode("marc-8") == b"\xe2e"       # ANSEL acute (0xE2) then e
    assert "Ł".encode("marc-8") == b"\xa1"
    assert "x☃".encode("marc-8") == b"x&#x2603;"  # not in MARC-8: lossless NCR
    assert "Война".encode("latin-1", marc8.NCR_ERRORS) == \
        b"&#x0412;&#x043E;&#x0439;&#x043D;&#x0430;"


@pytest.mark.skipif(shutil.which("yaz-iconv") is None, reason="yaz-iconv (Debian yaz) is not "
                    "installed")
def test_marc8_agrees_with_yaz_iconv() -> None:
    """YAZ's own MARC-8 decoder reads our MARC-8 as the text we encoded."""
    import unicodedata

    for text in SAMPLES:
        done = subprocess.run(["yaz-iconv", "-f", "MARC8", "-t", "UTF-8"],
                              input=text.encode("marc-8"), capture_output=True, timeout=10,
                              check=True)
        assert unicodedata.normalize("NFC", done.stdout.decode()) == \
            unicodedata.normalize("NFC", text), text
