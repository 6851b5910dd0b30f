"""PDU codec: builders and readers round-trip every PDU type, tagging matches the wire
rules of docs/z3950.md section 3, and nothing but Z3950ProtocolError leaves decode_pdu."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.z3950 import client, codec, oids, pqf
from protocols.z3950.asn1 import PDU_ARMS
from protocols.z3950.charset import (
    CharsetProposal,
    utf8_negotiation_proposal,
    utf8_negotiation_response,
)
from protocols.z3950.codec import (
    Authentication,
    Diagnostic,
    ResponseRecord,
    ScanEntry,
    SortKeyInfo,
    SurrogateDiagnostic,
)
from protocols.z3950.errors import CloseReason, Z3950ProtocolError
from protocols.z3950.records import CirculationItem, Holding, OpacRecord, opac_from_asn1


def _round_trip(pdu: codec.PDU) -> codec.PDU:
    """Encode, decode, re-encode; assert byte stability and return the decoded PDU."""
    data = codec.encode_pdu(pdu)
    decoded = codec.decode_pdu(data)
    assert codec.encode_pdu(decoded) == data
    assert codec.pdu_arm(decoded) == codec.pdu_arm(pdu)
    return decoded


# --------------------------------------------------------------------------------------
# Init


def test_init_request_round_trip_open_auth() -> None:
    """InitRequest with referenceId and open authentication reads back field by field."""
    pdu = client.init_request(
        reference_id=b"REF-42",
        options=("search", "present", "delSet", "namedResultSets"),
        preferred_message_size=100_000,
        exceptional_record_size=200_000,
        authentication=Authentication("open", "user", "secret"),
        implementation_id="81",
        implementation_name="test client",
        implementation_version="1.0",
    )
    info = codec.read_init_request(_round_trip(pdu))
    assert info.reference_id == b"REF-42"
    assert info.versions == {1, 2, 3}
    assert info.options == {"search", "present", "delSet", "namedResultSets"}
    assert (info.preferred_message_size, info.exceptional_record_size) == (100_000, 200_000)
    assert info.authentication == Authentication("open", "user", "secret")
    assert "secret" not in repr(info.authentication)
    assert info.implementation_name == "test client"


def test_init_request_idpass_and_charneg_proposal() -> None:
    """idPass authentication and a charneg-3 UTF-8 proposal in otherInfo are read."""
    pdu = client.init_request(
        authentication=Authentication("idPass", "u", "p", "g"),
        other_info=[utf8_negotiation_proposal(records_in_selected_charsets=True)],
    )
    info = codec.read_init_request(_round_trip(pdu))
    assert info.authentication == Authentication("idPass", "u", "p", "g")
    assert info.charset_proposal == CharsetProposal(
        utf8=True,
        iso10646_forms=(oids.ISO10646_UTF8,),
        records_in_selected_charsets=True,
        offered=(("iso10646", "UTF-8"),),
    )


def test_init_request_anonymous() -> None:
    """Anonymous idAuthentication reads as kind 'anonymous'."""
    pdu = client.init_request(authentication=Authentication("anonymous"))
    assert codec.read_init_request(_round_trip(pdu)).authentication == Authentication("anonymous")


def test_init_wire_bits_match_yaz() -> None:
    """Versions 1-3 encode as 83 02 00 e0 and YAZ's option set as 84 03 00 e9 a2."""
    pdu = client.init_request(
        options=(
            "search", "present", "delSet", "triggerResourceCtrl", "scan", "sort",
            "extendedServices", "namedResultSets",
        ),
        preferred_message_size=0x04000000,
        exceptional_record_size=0x04000000,
    )
    data = codec.encode_pdu(pdu)
    assert data.startswith(b"\xb4")
    assert bytes.fromhex("830200e0840300e9a2") in data


def test_init_response_accept_with_charneg_answer() -> None:
    """An accepting InitResponse with the UTF-8 charneg answer in otherInfo round-trips."""
    pdu = codec.init_response(
        reference_id=b"REF-42",
        options=("search", "present"),
        preferred_message_size=1_048_576,
        exceptional_record_size=1_048_576,
        implementation_name="Interlend",
        other_info=[
            utf8_negotiation_response(CharsetProposal(True, records_in_selected_charsets=True))
        ],
    )
    decoded = _round_trip(pdu)
    body = codec.pdu_body(decoded)
    assert codec.reference_id(decoded) == b"REF-42"
    assert bool(body["result"]) is True
    from protocols.z3950.records import decode_external

    [unit] = list(body["otherInfo"])
    ext = decode_external(unit["information"]["externallyDefinedInfo"])
    assert ext.oid == oids.CHARSET_NEGOTIATION_3
    response = ext.value["response"]
    assert tuple(response["selectedCharSets"]["iso10646"]["encodingLevel"]) == oids.ISO10646_UTF8
    assert bool(response["recordsInSelectedCharSets"]) is True


def test_init_response_refusal_carries_gfs_style_diagnostic() -> None:
    """A refused Init carries diag 1014 nested UserInfo-1 -> diag-1 as GFS does it."""
    pdu = codec.init_response(
        accepted=False,
        preferred_message_size=1024,
        exceptional_record_size=1024,
        diagnostic=Diagnostic(1014, "Password does not match"),
    )
    decoded = _round_trip(pdu)
    assert bool(codec.pdu_body(decoded)["result"]) is False
    [diag] = client.read_init_diagnostics(decoded)
    assert (diag.condition, diag.addinfo) == (1014, "Password does not match")
    data = codec.encode_pdu(pdu)
    assert bytes.fromhex("ab") in data  # [11] explicit wrapper
    assert bytes.fromhex("2a8648ce130a03") in data  # UserInfo-1
    assert bytes.fromhex("2a8648ce130402") in data  # diag-1


# --------------------------------------------------------------------------------------
# Search


def test_search_request_wire_form_matches_yaz_capture() -> None:
    """Our SearchRequest for @attr 1=4 computer is byte-identical to yaz-client's."""
    pdu = client.search_request(
        "@attr 1=4 computer",
        result_set_name="1",
        database_names=["Default"],
    )
    expected = bytes.fromhex(
        "b6458d01008e01018f0100900101910131b20a9f690744656661756c74b528a12606072a8648ce130301"
        "a01bbf6618bf2c0a30089f7801019f7901049f2d08636f6d7075746572"
    )
    assert codec.encode_pdu(pdu) == expected


def test_search_request_reader() -> None:
    """Every SearchRequest field a server needs reads back, the query as a model."""
    query = pqf.parse_pqf('@and @attr 1=7 0262011530 @or @attr 1=4 "a b" @set prior')
    pdu = client.search_request(
        query,
        database_names=["Default", "Other"],
        result_set_name="default",
        reference_id=b"r",
        preferred_record_syntax=oids.OPAC,
        element_set_name="F",
        small_set_upper_bound=1,
        medium_set_present_number=2,
    )
    info = codec.read_search_request(_round_trip(pdu))
    assert info.query == query
    assert info.query_error is None
    assert info.database_names == ("Default", "Other")
    assert info.preferred_record_syntax == oids.OPAC
    assert info.small_set_element_set_name == info.medium_set_element_set_name == "F"
    assert (info.small_set_upper_bound, info.large_set_lower_bound) == (1, 1)
    assert info.medium_set_present_number == 2
    assert info.replace_indicator is True
    assert info.reference_id == b"r"


def test_search_request_latin1_term_falls_back() -> None:
    """A Latin-1 term (invalid UTF-8) decodes through the fallback charset."""
    pdu = client.search_request(pqf.Query(pqf.Term("Zoë")), charset="latin-1")
    info = codec.read_search_request(codec.decode_pdu(codec.encode_pdu(pdu)))
    assert info.query is not None and info.query.root == pqf.Term("Zoë")


def test_search_request_unsupported_query_type_reported() -> None:
    """A non-RPN query is not an error for the codec: query is None with a reason."""
    pdu, body = codec.new_pdu("searchRequest")
    body["smallSetUpperBound"] = 0
    body["largeSetLowerBound"] = 1
    body["mediumSetPresentNumber"] = 0
    body["replaceIndicator"] = True
    body["resultSetName"] = b"default"
    body["databaseNames"].append(body["databaseNames"].componentType.clone(b"Default"))
    body["query"]["type-2"] = b"ti=foo"
    info = codec.read_search_request(_round_trip(pdu))
    assert info.query is None and info.query_type == "type-2"
    assert "type-2" in (info.query_error or "")


def test_search_response_with_records_and_surrogate() -> None:
    """Piggy-backed records: a MARC record and a surrogate diagnostic 17."""
    pdu = codec.search_response(
        reference_id=b"r",
        result_count=7,
        present_status=0,
        records=[
            ResponseRecord(oids.USMARC, b"00024nam  2200000 a 4500", database="Default"),
            SurrogateDiagnostic(Diagnostic(17, "2")),
        ],
    )
    body = codec.pdu_body(_round_trip(pdu))
    assert int(body["numberOfRecordsReturned"]) == 2
    assert int(body["nextResultSetPosition"]) == 3
    marc, diag = client.read_records(body)
    assert marc.oid == oids.USMARC and marc.data.startswith(b"00024nam")
    assert diag == SurrogateDiagnostic(Diagnostic(17, "2"))


def test_search_response_failure_single_and_multiple_diagnostics() -> None:
    """One diagnostic -> nonSurrogateDiagnostic [130]; several -> multipleNonSurDiagnostics."""
    one = codec.search_response(
        result_count=0, search_status=False, result_set_status=3,
        diagnostics=[Diagnostic(109, "nosuchdb", v2=True)],
    )
    data = codec.encode_pdu(one)
    assert bytes.fromhex("bf8102") in data and bytes.fromhex("1a086e6f7375636864") in data
    assert client.read_diagnostics(codec.pdu_body(_round_trip(one))) == [
        Diagnostic(109, "nosuchdb", v2=True)
    ]
    many = codec.search_response(
        result_count=0, search_status=False,
        diagnostics=[Diagnostic(114, "9999"), Diagnostic(121, "1.2.3")],
    )
    assert [d.condition for d in client.read_diagnostics(codec.pdu_body(_round_trip(many)))] == [
        114, 121,
    ]


def test_search_response_rejects_records_and_diagnostics_together() -> None:
    """Records and non-surrogate diagnostics are exclusive (a caller bug)."""
    with pytest.raises(ValueError):
        codec.search_response(
            result_count=1, records=[ResponseRecord(oids.USMARC, b"x")],
            diagnostics=[Diagnostic(1)],
        )


# --------------------------------------------------------------------------------------
# Present


def test_present_request_round_trip() -> None:
    """PresentRequest fields (ESN via explicit [19], syntax) read back."""
    pdu = client.present_request(
        result_set_id="1", start=3, count=2, reference_id=b"q",
        preferred_record_syntax=oids.XML, element_set_name="OP",
    )
    data = codec.encode_pdu(pdu)
    assert bytes.fromhex("b30480024f50") in data  # [19] { [0] 'OP' }
    info = codec.read_present_request(_round_trip(pdu))
    assert (info.result_set_id, info.start, info.count) == ("1", 3, 2)
    assert info.element_set_name == "OP" and info.preferred_record_syntax == oids.XML


def test_present_response_all_record_kinds() -> None:
    """OPAC (from the model), SUTRS, XML and a surrogate diagnostic in one response."""
    opac = OpacRecord(
        bibliographic=b"00024nam  2200000 a 4500",
        holdings=(
            Holding(
                nuc_code="ILL",
                local_location="Main library",
                call_number="QA76 .K5",
                circulation=(CirculationItem(True, item_id="39001", renewable=True),),
            ),
        ),
    )
    pdu = codec.present_response(
        reference_id=b"x",
        present_status=2,
        next_result_set_position=5,
        records=[
            ResponseRecord(oids.OPAC, opac, database="Default"),
            ResponseRecord(oids.SUTRS, "title: Zoë\n"),
            ResponseRecord(oids.XML, "<record/>"),
            SurrogateDiagnostic(Diagnostic(16)),
        ],
    )
    body = codec.pdu_body(_round_trip(pdu))
    assert int(body["presentStatus"]) == 2 and int(body["numberOfRecordsReturned"]) == 4
    got_opac, sutrs, xml, diag = client.read_records(body)
    assert opac_from_asn1(got_opac.value) == opac
    assert sutrs.value.asOctets().decode("utf-8") == "title: Zoë\n"
    assert xml.data == b"<record/>"
    assert diag.diagnostic.condition == 16


def test_retrieval_record_has_two_explicit_layers() -> None:
    """NamePlusRecord.record [1] then retrievalRecord [1]: a1 .. a1 .. 28 (the classic bug)."""
    pdu = codec.present_response(
        next_result_set_position=2, records=[ResponseRecord(oids.USMARC, b"abc")]
    )
    data = codec.encode_pdu(pdu)
    ext = bytes.fromhex("28 0e 06 07 2a8648ce13050a 81 03") + b"abc"
    assert bytes.fromhex("a1 12 a1 10") + ext in data


def test_present_response_out_of_range() -> None:
    """Present out of range: failure(5), diag 13 with the start position, no records."""
    pdu = codec.present_response(
        present_status=5, next_result_set_position=0, diagnostics=[Diagnostic(13, "20")]
    )
    body = codec.pdu_body(_round_trip(pdu))
    assert int(body["numberOfRecordsReturned"]) == 0
    assert client.read_diagnostics(body) == [Diagnostic(13, "20")]
    assert client.read_records(body) == []


# --------------------------------------------------------------------------------------
# Scan, Sort, Delete, Close


def test_scan_round_trip() -> None:
    """ScanRequest and a ScanResponse with entries and a surrogate diagnostic."""
    req = codec.read_scan_request(
        _round_trip(client.scan_request("@attr 1=4 b", number_of_terms=3)))
    assert req.term == pqf.Term("b", (pqf.Attribute(None, 1, 4),))
    assert req.attribute_set == oids.BIB1_ATTRSET and req.number_of_terms == 3
    resp = codec.scan_response(
        reference_id=b"s",
        position_of_term=1,
        entries=[ScanEntry("banana", 5), ScanEntry("computer", 7, "Computer"), Diagnostic(2)],
    )
    body = codec.pdu_body(_round_trip(resp))
    assert int(body["numberOfEntriesReturned"]) == 2
    entries = list(body["entries"]["entries"])
    assert entries[1]["termInfo"]["displayTerm"].asOctets() == b"Computer"
    assert entries[2].getName() == "surrogateDiagnostic"
    fail = codec.scan_response(scan_status=6, diagnostics=[Diagnostic(1)])
    assert int(codec.pdu_body(_round_trip(fail))["scanStatus"]) == 6


def test_sort_round_trip() -> None:
    """SortRequest keys (attributes or field) and a SortResponse with a diagnostic."""
    keys = (
        SortKeyInfo(attributes=(pqf.Attribute(None, 1, 4),)),
        SortKeyInfo(sort_field="date", relation=1, case_sensitive=True),
    )
    info = codec.read_sort_request(
        _round_trip(client.sort_request(input_result_sets=["1"], sorted_result_set="1", keys=keys))
    )
    assert info.keys == keys and info.input_result_sets == ("1",)
    resp = codec.sort_response(sort_status=2, diagnostics=[Diagnostic(2)], result_count=0)
    body = codec.pdu_body(_round_trip(resp))
    assert int(body["sortStatus"]) == 2 and len(body["diagnostics"]) == 1
    assert codec.encode_pdu(codec.sort_response()) == bytes.fromhex("bf2c03830100")


def test_delete_result_set_round_trip() -> None:
    """Delete: list and all functions; response list statuses and message."""
    info = codec.read_delete_result_set_request(
        _round_trip(client.delete_result_set_request(result_sets=["a", "b"], reference_id=b"d"))
    )
    assert info == codec.DeleteResultSetRequestInfo(b"d", False, ("a", "b"))
    assert codec.read_delete_result_set_request(
        _round_trip(client.delete_result_set_request(delete_all=True))
    ).delete_all
    resp = codec.delete_result_set_response(
        status=0, list_statuses=[("a", 0), ("b", 1)], number_not_deleted=1, message="partly"
    )
    body = codec.pdu_body(_round_trip(resp))
    assert [int(s["status"]) for s in body["deleteListStatuses"]] == [0, 1]
    assert data_tag(codec.encode_pdu(resp)) == "bb"  # [27]
    assert data_tag(codec.encode_pdu(client.delete_result_set_request())) == "ba"  # [26]


def data_tag(data: bytes) -> str:
    """First identifier octet of an encoding, in hex."""
    return data[:1].hex()


def test_close_wire_form_and_reader() -> None:
    """Close(finished) is bf30 05 9f8153 01 00 (as yaz-client sends); reasons read back."""
    assert codec.encode_pdu(codec.close()) == bytes.fromhex("bf30059f81530100")
    pdu = codec.close(CloseReason.protocolError, reference_id=b"z",
                      diagnostic_information="Malformed package")
    info = codec.read_close(_round_trip(pdu))
    assert info == codec.CloseInfo(b"z", 6, "Malformed package")


def test_every_pdu_arm_has_tag_from_module() -> None:
    """Each PDU arm encodes with its context tag number from the ASN.1 (20..50)."""
    for arm, (number, _cls) in PDU_ARMS.items():
        pdu = codec.PDU()
        pdu.setComponentByName(arm)
        tag_set = pdu.componentType[arm].asn1Object.tagSet
        assert tag_set.superTags[-1].tagId == number, arm


def test_other_arms_decodable() -> None:
    """Access/resource control, ES, segment and duplicate detection PDUs round-trip."""
    pdu, body = codec.new_pdu("accessControlRequest")
    body["securityChallenge"]["simpleForm"] = b"challenge"
    _round_trip(pdu)
    pdu, body = codec.new_pdu("resourceControlRequest")
    body["responseRequired"] = True
    _round_trip(pdu)
    pdu, body = codec.new_pdu("triggerResourceControlRequest")
    body["requestedAction"] = 3
    _round_trip(pdu)
    pdu, body = codec.new_pdu("extendedServicesRequest")
    body["function"] = 1
    body["packageType"] = oids.ES_ITEM_ORDER
    body["waitAction"] = 1
    _round_trip(pdu)
    pdu, body = codec.new_pdu("extendedServicesResponse")
    body["operationStatus"] = 3
    body["diagnostics"].append(body["diagnostics"].componentType.clone())
    Diagnostic(1).fill(body["diagnostics"][0]["defaultFormat"])
    _round_trip(pdu)
    pdu, body = codec.new_pdu("segmentRequest")
    body["numberOfRecordsReturned"] = 0
    body["segmentRecords"].clear()
    _round_trip(pdu)
    pdu, body = codec.new_pdu("duplicateDetectionResponse")
    body["status"] = 0
    _round_trip(pdu)
    pdu, body = codec.new_pdu("resourceReportRequest")
    _round_trip(pdu)


def test_new_pdu_rejects_unknown_arm() -> None:
    """Unknown arm names are a programming error."""
    with pytest.raises(ValueError):
        codec.new_pdu("fooRequest")


def test_read_request_dispatch() -> None:
    """read_request picks the reader by arm and returns None for responses."""
    assert isinstance(codec.read_request(codec.close()), codec.CloseInfo)
    assert isinstance(
        codec.read_request(client.search_request("x")), codec.SearchRequestInfo
    )
    assert codec.read_request(codec.sort_response()) is None


def test_decode_pdu_framed_skips_normalisation() -> None:
    """framed=True trusts the framer's output; the result is the same PDU."""
    data = codec.encode_pdu(client.search_request("@attr 1=4 x"))
    assert codec.encode_pdu(codec.decode_pdu(data, framed=True)) == data


def test_bits_helpers() -> None:
    """Option names map to bit positions and back; unknown names are refused."""
    bits = codec.bits_from_names(["search", "namedResultSets"])
    assert len(bits) == 16 and bits[0] == 1 and bits[14] == 1
    with pytest.raises(ValueError):
        codec.bits_from_names(["teleport"])


# --------------------------------------------------------------------------------------
# The decode boundary


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xb4",
        bytes.fromhex("04 88 ff ff ff ff ff ff ff ff"),
        bytes.fromhex("3f 03 3f 03 00 00"),
        bytes.fromhex("b4 03 02 01 05"),  # wrong contents for InitializeRequest
        bytes.fromhex("b6 00"),  # empty SearchRequest
        bytes.fromhex("9f 81 53 01 00"),  # primitive at top level
        bytes.fromhex("bf 7f 00"),  # unknown arm
        bytes.fromhex("b4 80 00 00 00"),  # trailing byte
        bytes.fromhex("bf 30 03 9f 81 53"),  # truncated inside
    ],
)
def test_decode_pdu_refuses_garbage(data: bytes) -> None:
    """Malformed input of every sort raises Z3950ProtocolError(protocolError)."""
    with pytest.raises(Z3950ProtocolError) as info:
        codec.decode_pdu(data)
    assert info.value.close_reason == CloseReason.protocolError


@pytest.mark.parametrize(
    "exc", [OverflowError("x"), IndexError("x"), AttributeError("x"), RecursionError("x"),
            ValueError("x"), TypeError("x")],
)
def test_decode_pdu_wraps_every_pyasn1_exception(monkeypatch, exc: Exception) -> None:
    """Whatever pyasn1 raises (not only PyAsn1Error) leaves as Z3950ProtocolError."""
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(codec.ber_decoder, "decode", boom)
    with pytest.raises(Z3950ProtocolError) as info:
        codec.decode_pdu(codec.encode_pdu(codec.close()))
    assert info.value.__cause__ is exc


def test_encode_pdu_reports_incomplete_values() -> None:
    """Encoding a PDU missing mandatory fields raises Z3950ProtocolError, not pyasn1's."""
    pdu, _body = codec.new_pdu("close")
    with pytest.raises(Z3950ProtocolError):
        codec.encode_pdu(pdu)


_OPAC = OpacRecord(
    b"m", holdings=(Holding(local_location="x", circulation=(CirculationItem(True),)),)
)
_SEEDS = [
    codec.encode_pdu(
        client.init_request(reference_id=b"r", authentication=Authentication("open", "a", "b"))
    ),
    codec.encode_pdu(client.search_request("@and @attr 1=4 a @attr 1=7 123")),
    codec.encode_pdu(
        codec.present_response(
            next_result_set_position=2, records=[ResponseRecord(oids.OPAC, _OPAC)]
        )
    ),
    codec.encode_pdu(codec.close()),
    codec.encode_pdu(client.scan_request("@attr 1=4 a")),
    codec.encode_pdu(
        client.sort_request(keys=[SortKeyInfo(attributes=(pqf.Attribute(None, 1, 4),))])
    ),
    codec.encode_pdu(
        client.present_request(element_set_name="F", preferred_record_syntax=oids.XML)),
    codec.encode_pdu(client.init_request(other_info=[utf8_negotiation_proposal()])),
    bytes.fromhex("b9809801019901029b0100bc8030800000000000"),
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000),
)
def test_fuzz_mutated_pdus_raise_only_protocol_errors(seed: bytes, edits, cut: int) -> None:
    """Mutated and truncated valid PDUs either decode or raise Z3950ProtocolError."""
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    data = data[: max(1, cut % (len(data) + 1))]
    try:
        pdu = codec.decode_pdu(bytes(data))
        codec.read_request(pdu)
    except Z3950ProtocolError:
        return
    codec.encode_pdu(pdu)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    """Random bytes through the framer and decoder raise nothing but Z3950ProtocolError."""
    try:
        frames = codec_frames(data)
    except Z3950ProtocolError:
        return
    for frame in frames:
        try:
            codec.decode_pdu(frame)
        except Z3950ProtocolError:
            pass


def codec_frames(data: bytes) -> list[bytes]:
    """Frame C{data} with a small-limit framer."""
    from protocols.z3950.ber import BERFramer

    return BERFramer(max_pdu_size=4096, max_depth=32).feed(data)
