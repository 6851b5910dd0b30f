"""EXTERNAL handling, the OPAC record model, charsets and charset negotiation, OIDs."""

from __future__ import annotations

import pytest
from pyasn1.codec.ber import decoder, encoder

from protocols.z3950 import oids
from protocols.z3950.asn1 import External, InternationalString, OtherInformation
from protocols.z3950.asn1_records import OPACRecord, SutrsRecord
from protocols.z3950.charset import (
    CharsetProposal,
    TermDecoder,
    decode_text,
    negotiation_proposal,
    utf8_negotiation_proposal,
    utf8_negotiation_response,
)
from protocols.z3950.errors import Z3950ProtocolError
from protocols.z3950.records import (
    CirculationItem,
    Holding,
    OpacRecord,
    VolumeInfo,
    decode_external,
    make_external,
    opac_from_asn1,
    opac_to_asn1,
    retrieval_record,
)


def _reparse_external(ext: External) -> External:
    value, rest = decoder.decode(encoder.encode(ext), asn1Spec=External())
    assert rest == b""
    return value


def test_external_wire_forms() -> None:
    """EXTERNAL is UNIVERSAL 8: octet-aligned is 81, single-ASN1-type an explicit a0."""
    marc = encoder.encode(retrieval_record(oids.USMARC, b"abc"))
    assert marc == bytes.fromhex("280e06072a8648ce13050a8103") + b"abc"
    sutrs = encoder.encode(retrieval_record(oids.SUTRS, "hi"))
    assert sutrs == bytes.fromhex("280f06072a8648ce130565a0041b02") + b"hi"


def test_decode_external_second_pass() -> None:
    """decode_external decodes registered payloads and leaves others as bytes."""
    sutrs = decode_external(_reparse_external(retrieval_record(oids.SUTRS, b"line\n")))
    assert isinstance(sutrs.value, SutrsRecord) and sutrs.data == b"\x1b\x05line\n"
    unknown = decode_external(_reparse_external(make_external((1, 2, 3), SutrsRecord(b"x"))))
    assert unknown.value is None and unknown.oid == (1, 2, 3)
    xml = decode_external(_reparse_external(retrieval_record(oids.XML, "<a/>")))
    assert (xml.encoding, xml.data, xml.value) == ("octet-aligned", b"<a/>", None)


def test_decode_external_bad_payload_is_protocol_error() -> None:
    """A registered OID whose payload does not decode raises Z3950ProtocolError."""
    ext = make_external(oids.OPAC, InternationalString(b"not an OPAC record"))
    with pytest.raises(Z3950ProtocolError):
        decode_external(_reparse_external(ext))


def test_make_external_requires_exactly_one_payload() -> None:
    """Giving both or neither of value and octets is a caller error."""
    with pytest.raises(ValueError):
        make_external(oids.USMARC)
    with pytest.raises(ValueError):
        make_external(oids.USMARC, SutrsRecord(b"x"), octets=b"y")


def test_opac_model_round_trip_full() -> None:
    """Every OPAC field (holdings strings, volumes, circulation) survives BER."""
    record = OpacRecord(
        bibliographic=b"00024nam a2200000 a 4500",
        holdings=(
            Holding(
                type_of_record="x", encoding_level="1", format="ta", receipt_acq_status="0",
                general_retention="8", completeness="4", date_of_report="260101",
                nuc_code="DemoLib", local_location="MAIN", shelving_location="Stacks",
                call_number="PR4034 .P7", shelving_data="Floor 2", copy_number="c.1",
                public_note="Ask at desk", reproduction_note="r", terms_use_repro="t",
                enum_and_chron="v.1-3",
                volumes=(VolumeInfo("v.1", "2001", "v.1 (2001)"), VolumeInfo(enumeration="v.2")),
                circulation=(
                    CirculationItem(True, item_id="39000000000045"),
                    CirculationItem(
                        False, item_id="39000000000037", availability_date="20261201",
                        available_thru="20261231", restrictions="Library use only",
                        renewable=True, on_hold=True, enum_and_chron="v.2", midspine="ms",
                        temporary_location="ILL shelf",
                    ),
                ),
            ),
            Holding(marc_holdings=b"00000nx  a2200000 a 4500"),
        ),
    )
    data = encoder.encode(opac_to_asn1(record))
    value, rest = decoder.decode(data, asn1Spec=OPACRecord())
    assert rest == b""
    assert opac_from_asn1(value) == record


def test_opac_wire_form_of_circulation() -> None:
    """CircRecord: availableNow [1], itemId [5], renewable [6], onHold [7], all implicit;
    TRUE is 01 as YAZ sends it."""
    record = OpacRecord(holdings=(Holding(circulation=(CirculationItem(True, item_id="7"),)),))
    data = encoder.encode(opac_to_asn1(record))
    assert bytes.fromhex("300c 810101 850137 860100 870100".replace(" ", "")) in data
    assert data.startswith(bytes.fromhex("30"))


def test_opac_text_is_utf8() -> None:
    """Holdings text is encoded as UTF-8 and decoded back to the same text."""
    record = OpacRecord(holdings=(Holding(local_location="Bibliothèque Zoë"),))
    data = encoder.encode(opac_to_asn1(record))
    assert "Bibliothèque Zoë".encode() in data
    value, _ = decoder.decode(data, asn1Spec=OPACRecord())
    assert opac_from_asn1(value).holdings[0].local_location == "Bibliothèque Zoë"


def test_term_decoder_utf8_then_fallback() -> None:
    """UTF-8 first; invalid UTF-8 falls back to Latin-1; configurable and validated."""
    dec = TermDecoder()
    assert dec.decode("Zoë".encode()) == "Zoë"
    assert dec.decode("Zoë".encode("latin-1")) == "Zoë"
    assert TermDecoder("utf-8", "cp1250").decode(b"\x9a") == "š"
    assert TermDecoder("utf-8", None).decode(b"\xff") == "\ufffd"
    assert decode_text(None) is None and decode_text("x") == "x"
    with pytest.raises(LookupError):
        TermDecoder("no-such-charset")


def test_charneg_proposal_found_and_answered() -> None:
    """A UTF-8 proposal in Init otherInfo is found; the answer selects ISO 10646 UTF-8."""
    other = OtherInformation()
    other.append(utf8_negotiation_proposal(records_in_selected_charsets=False))
    value, _ = decoder.decode(encoder.encode(other), asn1Spec=OtherInformation())
    proposal = negotiation_proposal(value)
    assert proposal == CharsetProposal(True, (oids.ISO10646_UTF8,), (), (), False,
                                       (("iso10646", "UTF-8"),))
    unit = utf8_negotiation_response(proposal, language="eng")
    neg = decode_external(unit["information"]["externallyDefinedInfo"])
    response = neg.value["response"]
    assert tuple(response["selectedCharSets"]["iso10646"]["encodingLevel"]) == oids.ISO10646_UTF8
    assert response["selectedLanguage"].asOctets() == b"eng"
    assert bool(response["recordsInSelectedCharSets"]) is True


def test_charneg_absent_or_malformed_is_none() -> None:
    """No otherInfo, other units, or a broken charneg payload all give None (never fail)."""
    assert negotiation_proposal(None) is None
    other = OtherInformation()
    unit = other.componentType.clone()
    unit["information"]["characterInfo"] = b"hello"
    other.append(unit)
    bad = other.componentType.clone()
    bad["information"]["externallyDefinedInfo"]["direct-reference"] = oids.CHARSET_NEGOTIATION_3
    bad["information"]["externallyDefinedInfo"]["encoding"]["single-ASN1-type"] = b"\x05\x00"
    other.append(bad)
    value, _ = decoder.decode(encoder.encode(other), asn1Spec=OtherInformation())
    assert negotiation_proposal(value) is None


def test_oid_helpers() -> None:
    """Names and dotted forms resolve; unknown names are refused."""
    assert oids.resolve_oid("OPAC") == oids.OPAC == (1, 2, 840, 10003, 5, 102)
    assert oids.resolve_oid("bib-1") == oids.BIB1_ATTRSET
    assert oids.resolve_oid("1.2.840.10003.5.109.10") == oids.XML
    assert oids.oid_to_dotted(oids.USMARC) == "1.2.840.10003.5.10"
    assert oids.oid_name(oids.SUTRS) == "sutrs" and oids.oid_name((9, 9)) is None
    assert oids.DIAG1_FORMAT == (1, 2, 840, 10003, 4, 2)
    assert oids.CHARSET_NEGOTIATION_3 == (1, 2, 840, 10003, 15, 3)
    with pytest.raises(ValueError):
        oids.resolve_oid("no-such-syntax")


def test_oids_match_shared_table(shared_dir) -> None:
    """Our named OIDs agree with YAZ's table in ../shared/z3950/data/oids.tsv."""
    table: dict[str, set[tuple[int, ...]]] = {}
    for line in (shared_dir / "z3950" / "data" / "oids.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        _cls, dotted, name = line.split("\t")[:3]
        table.setdefault(name.strip().lower(), set()).add(oids.oid_from_dotted(dotted))
    assert oids.USMARC in table["usmarc"]
    assert oids.OPAC in table["opac"]
    assert oids.SUTRS in table["sutrs"]
    assert oids.XML in table["text-xml"] or oids.XML in table["xml"]
    assert oids.BIB1_ATTRSET in table["bib-1"]
