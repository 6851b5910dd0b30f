"""The BER fast path (protocols.z3950.fastber) against pyasn1, the reference.

Decoding: for every captured request and for generated ones, the fast reader gives the same
dataclass as C{read_request(decode_pdu(...))}, or declines (C{None}) and the codec falls back
to pyasn1. Encoding: the fast encoders give the same bytes as C{encode_pdu(builder(...))},
or decline. Mutated frames: whatever the fast reader accepts, pyasn1 accepts and reads the
same way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.z3950 import client, codec, fastber, oids, pqf
from protocols.z3950.association import encoded_record_size
from protocols.z3950.ber import BERFramer
from protocols.z3950.charset import TermDecoder, utf8_negotiation_proposal
from protocols.z3950.codec import (
    Authentication,
    Diagnostic,
    ResponseRecord,
    SurrogateDiagnostic,
)
from protocols.z3950.errors import CloseReason, Z3950ProtocolError
from protocols.z3950.records import (
    CirculationItem,
    Holding,
    OpacRecord,
    VolumeInfo,
    opac_from_asn1,
)

from .test_z3950_fixtures import all_captured


def _frame(data: bytes) -> bytes:
    frames = BERFramer().feed(data)
    assert len(frames) == 1
    return frames[0]


def _reference(frame: bytes, decoder: TermDecoder | None = None):
    """What the pyasn1 path makes of a frame: the reader dataclass, or the error."""
    try:
        return codec.read_request(codec.decode_pdu(frame, framed=True), decoder)
    except Z3950ProtocolError as exc:
        return exc


@pytest.fixture()
def pyasn1_only(monkeypatch):
    monkeypatch.setattr(fastber, "ENABLED", False)


# --------------------------------------------------------------------------------------
# Captured PDUs


def test_captured_requests_read_alike(shared_dir: Path) -> None:
    """Every captured client PDU: the fast reader agrees with pyasn1 or declines."""
    fast = 0
    for pdu in all_captured(shared_dir):
        if pdu.direction != "C>S":
            continue
        frame = _frame(pdu.data)
        expected = _reference(frame)
        got = fastber.read_request(frame)
        if got is not None:
            fast += 1
            assert got == expected, pdu.id
        assert _decode_request(frame) == expected or got is None, pdu.id
    assert fast >= 4  # the yaz-client Inits without charneg, Searches, Presents, Closes


def _decode_request(frame: bytes):
    try:
        return codec.decode_request(frame)
    except Z3950ProtocolError as exc:
        return exc


def _builder_args(arm: str, body) -> dict | None:
    """Builder arguments that rebuild a captured response (records as our models)."""
    def records():
        out: list[SurrogateDiagnostic | ResponseRecord] = []
        for rec in client.read_records(body):
            if isinstance(rec, SurrogateDiagnostic):
                out.append(rec)
            elif rec.oid == oids.OPAC:
                out.append(ResponseRecord(oids.OPAC, opac_from_asn1(rec.value)))
            elif rec.oid == oids.SUTRS:
                out.append(ResponseRecord(oids.SUTRS, rec.value.asOctets()))
            elif rec.encoding == "octet-aligned" and rec.oid is not None:
                out.append(ResponseRecord(rec.oid, rec.data))
            else:
                return None
        return out

    ref = codec.reference_id(body)
    if arm == "searchResponse":
        recs = records()
        if recs is None:
            return None
        return dict(reference_id=ref, result_count=int(body["resultCount"]),
                    search_status=bool(body["searchStatus"]),
                    next_result_set_position=int(body["nextResultSetPosition"]),
                    result_set_status=int(body["resultSetStatus"])
                    if body["resultSetStatus"].isValue else None,
                    present_status=int(body["presentStatus"])
                    if body["presentStatus"].isValue else None,
                    records=recs, diagnostics=client.read_diagnostics(body))
    if arm == "presentResponse":
        recs = records()
        if recs is None:
            return None
        return dict(reference_id=ref, present_status=int(body["presentStatus"]),
                    next_result_set_position=int(body["nextResultSetPosition"]),
                    records=recs, diagnostics=client.read_diagnostics(body))
    if arm == "close":
        info = codec.read_close(body)
        return dict(reason=info.reason, reference_id=ref,
                    diagnostic_information=info.diagnostic_information)
    return None


_ENCODERS: dict[str, tuple[Callable[..., bytes | None], Callable[..., codec.PDU]]] = {
    "searchResponse": (fastber.search_response, codec.search_response),
    "presentResponse": (fastber.present_response, codec.present_response),
}


def test_captured_responses_encode_alike(shared_dir: Path) -> None:
    """Every captured server response rebuilt with the builders: identical bytes."""
    done = 0
    for pdu in all_captured(shared_dir):
        if pdu.direction != "S>C":
            continue
        decoded = codec.decode_pdu(pdu.data)
        arm = codec.pdu_arm(decoded)
        args = _builder_args(arm, codec.pdu_body(decoded))
        if args is None:
            continue
        if arm == "close":
            reason = args.pop("reason")
            expected = codec.encode_pdu(codec.close(reason, **args))
            assert fastber.close(reason, **args) == expected, pdu.id
        else:
            fast, build = _ENCODERS[arm]
            if args["records"] and args["diagnostics"]:
                continue
            expected = codec.encode_pdu(build(**args))
            assert fast(**args) == expected, pdu.id
            for rec in args["records"]:
                assert fastber.record_size(rec) == _pyasn1_record_size(rec), pdu.id
        done += 1
    assert done >= 6


# --------------------------------------------------------------------------------------
# Generated requests

# typed as the category literal hypothesis expects (a bare ("Cs",) is inferred as tuple[str])
_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
_text = st.text(st.characters(blacklist_categories=_SURROGATES), max_size=10)
_octets = st.one_of(_text.map(lambda t: t.encode("utf-8")), st.binary(max_size=10))
_small_int = st.integers(-(2**40), 2**40)
_attr_value = st.one_of(
    st.integers(0, 2**31),
    _text.filter(bool),
    st.lists(st.one_of(st.integers(-5, 10**6), _text), min_size=1, max_size=3).map(tuple),
)
_attrs = st.lists(
    st.builds(pqf.Attribute, st.sampled_from([None, oids.BIB1_ATTRSET, (1, 2, 840, 10003, 3, 2)]),
              st.integers(0, 2**20), _attr_value),
    max_size=4,
).map(tuple)


_term = st.one_of(
    st.builds(pqf.Term, _text, _attrs),
    st.builds(pqf.Term, st.integers(-(2**31), 2**31).map(str), _attrs, st.just("numeric")),
    st.builds(pqf.Term, _text, _attrs, st.just("characterString")),
    st.builds(pqf.Term, st.just(""), _attrs, st.just("null")),
)
_leaf = st.one_of(_term, st.builds(pqf.ResultSetRef, _text))
_nodes = st.recursive(
    _leaf,
    lambda kids: st.one_of(st.builds(pqf.And, kids, kids), st.builds(pqf.Or, kids, kids),
                           st.builds(pqf.AndNot, kids, kids)),
    max_leaves=10,
)
_opt = lambda s: st.one_of(st.none(), s)  # noqa: E731


@st.composite
def _init_requests(draw) -> bytes:
    auth = draw(st.one_of(
        st.none(),
        st.builds(Authentication, st.just("open"), _text.filter(lambda t: "/" not in t),
                  _opt(_text.filter(bool))),
        st.builds(Authentication, st.just("idPass"), _opt(_text), _opt(_text), _opt(_text)),
        st.just(Authentication("anonymous")),
    ))
    options = draw(st.sets(st.sampled_from([n for n in codec.OPTION_NAMES if n])))
    versions = draw(st.sets(st.sampled_from([1, 2, 3])))
    pdu = client.init_request(
        reference_id=draw(_opt(st.binary(max_size=6))), versions=versions, options=options,
        preferred_message_size=draw(st.integers(-5, 2**31)),
        exceptional_record_size=draw(st.integers(-5, 2**31)), authentication=auth,
        implementation_id=draw(_opt(_octets)), implementation_name=draw(_opt(_text)),
        implementation_version=draw(_opt(_octets)))
    return codec.encode_pdu(pdu)


@st.composite
def _search_requests(draw) -> bytes:
    query = pqf.Query(draw(_nodes), draw(st.sampled_from([oids.BIB1_ATTRSET, (1, 2, 3)])))
    pdu = client.search_request(
        query, database_names=draw(st.lists(_octets, max_size=3)),
        result_set_name=draw(_octets), reference_id=draw(_opt(st.binary(max_size=6))),
        small_set_upper_bound=draw(_small_int), large_set_lower_bound=draw(_small_int),
        medium_set_present_number=draw(_small_int), replace_indicator=draw(st.booleans()),
        preferred_record_syntax=draw(_opt(st.sampled_from(
            [oids.OPAC, oids.USMARC, oids.XML, oids.SUTRS, (2, 999, 1), (0, 39, 2**40)]))),
        element_set_name=draw(_opt(_octets)), charset=draw(st.sampled_from(["utf-8"])))
    if draw(st.booleans()):  # type-101: the same RPN under another tag
        pqf.query_to_rpn(query, target=codec.pdu_body(pdu)["query"]["type-101"])
    return codec.encode_pdu(pdu)


@st.composite
def _present_requests(draw) -> bytes:
    pdu = client.present_request(
        result_set_id=draw(_octets), start=draw(_small_int), count=draw(_small_int),
        reference_id=draw(_opt(st.binary(max_size=6))),
        preferred_record_syntax=draw(_opt(st.sampled_from([oids.OPAC, oids.USMARC]))),
        element_set_name=draw(_opt(_octets)))
    body = codec.pdu_body(pdu)
    ranges = draw(st.lists(st.tuples(_small_int, _small_int), max_size=2))
    if ranges:
        lst = body["additionalRanges"]
        for a, b in ranges:
            item = lst.componentType.clone()
            item["startingPosition"] = a
            item["numberOfRecords"] = b
            lst.append(item)
    size = draw(_opt(st.integers(0, 2**31)))
    if size is not None:
        body["maxRecordSize"] = size
    return codec.encode_pdu(pdu)


@st.composite
def _close_requests(draw) -> bytes:
    return codec.encode_pdu(codec.close(
        draw(st.integers(0, 10)), reference_id=draw(_opt(st.binary(max_size=6))),
        diagnostic_information=draw(_opt(_octets))))


_requests = st.one_of(_init_requests(), _search_requests(), _present_requests(),
                      _close_requests())
_decoders = st.sampled_from([TermDecoder(), TermDecoder("utf-8", "cp1252"),
                             TermDecoder("latin-1", None)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests, _decoders)
def test_generated_requests_read_alike(data: bytes, decoder: TermDecoder) -> None:
    frame = _frame(data)
    expected = _reference(frame, decoder)
    got = fastber.read_request(frame, decoder)
    assert got is not None  # every generated request is on the fast path
    assert got == expected


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                           max_size=3), st.integers(0, 3))
def test_mutated_requests_never_accepted_differently(data: bytes, flips, cut: int) -> None:
    """Whatever the fast reader accepts from damaged input, pyasn1 reads the same way."""
    raw = bytearray(data)
    for pos, value in flips:
        raw[pos % len(raw)] = value
    if cut:
        raw = raw[:-cut] if cut < len(raw) else raw
    frame = bytes(raw)
    got = fastber.read_request(frame)
    if got is None:
        return
    assert _reference(frame) == got


# --------------------------------------------------------------------------------------
# Fallbacks


def test_charset_negotiation_init_falls_back() -> None:
    pdu = client.init_request(options=("search", "present", "negotiationModel"),
                             other_info=[utf8_negotiation_proposal()])
    frame = codec.encode_pdu(pdu)
    assert fastber.read_request(frame) is None
    out = codec.decode_request(frame)
    assert isinstance(out, codec.InitRequestInfo)
    assert out.charset_proposal is not None


def _prox_search() -> bytes:
    pdu = client.search_request("@and a b")
    op = codec.pdu_body(pdu)["query"]["type-1"]["rpn"]["rpnRpnOp"]["op"]
    prox = op["prox"]
    prox["distance"] = 1
    prox["ordered"] = True
    prox["relationType"] = 2
    prox["proximityUnitCode"]["known"] = 2
    return codec.encode_pdu(pdu)


def _type2_search() -> bytes:
    pdu = client.search_request("a")
    codec.pdu_body(pdu)["query"]["type-2"] = b"ccl"
    return codec.encode_pdu(pdu)


def _db_specific_esn_search() -> bytes:
    pdu = client.search_request("a")
    esn = codec.pdu_body(pdu)["smallSetElementSetNames"]["databaseSpecific"]
    item = esn.componentType.clone()
    item["dbName"] = b"Default"
    item["esn"] = b"F"
    esn.append(item)
    return codec.encode_pdu(pdu)


def _complex_present() -> bytes:
    pdu = client.present_request()
    comp = codec.pdu_body(pdu)["recordComposition"]["complex"]
    comp["selectAlternativeSyntax"] = False
    comp["recordSyntax"].append(comp["recordSyntax"].componentType.clone(oids.USMARC))
    return codec.encode_pdu(pdu)


def _oid_term_search() -> bytes:
    pdu = client.search_request("a")
    apt = codec.pdu_body(pdu)["query"]["type-1"]["rpn"]["op"]["attrTerm"]
    apt["term"]["oid"] = (1, 2, 3)
    return codec.encode_pdu(pdu)


_SEARCH = codec.encode_pdu(client.search_request("@attr 1=4 river", result_set_name="1"))
_INIT = codec.encode_pdu(client.init_request())


@pytest.mark.parametrize("frame", [
    _prox_search(),
    _type2_search(),
    _db_specific_esn_search(),
    _complex_present(),
    _oid_term_search(),
    # indefinite length on the PDU
    bytes([_SEARCH[0], 0x80]) + _SEARCH[2:] + b"\x00\x00",
    # trailing bytes, truncation
    _SEARCH + b"\x00",
    _SEARCH[:-1],
    # a duplicated component (two exceptionalRecordSize)
    codec.encode_pdu(client.init_request(preferred_message_size=1)).replace(
        b"\x85\x01\x01", b"\x86\x01\x01", 1),
    # scan, sort: other arms
    codec.encode_pdu(client.scan_request("@attr 1=4 a")),
    codec.encode_pdu(client.sort_request()),
    b"\x30\x00",
    b"",
], ids=["prox", "type-2", "db-specific-esn", "complex-composition", "oid-term", "indefinite",
        "trailing", "truncated", "duplicate", "scan", "sort", "not-a-pdu", "empty"])
def test_fast_reader_declines(frame: bytes) -> None:
    assert fastber.read_request(frame) is None


def test_non_minimal_integer_reads_as_pyasn1_does() -> None:
    """A non-minimal INTEGER (as pyasn1's own encoder writes -128) reads the same both ways."""
    data = bytearray(codec.encode_pdu(codec.close(CloseReason.finished)))
    # bf 30 05 9f 81 53 01 00 -> closeReason as 00 00
    assert bytes(data[-5:]) == b"\x9f\x81\x53\x01\x00"
    data = data[:2] + bytes([data[2] + 1]) + data[3:-2] + b"\x02\x00\x00"
    frame = bytes(data)
    assert fastber.read_request(frame) == codec.read_request(codec.decode_pdu(frame))


def test_switch_forces_pyasn1(pyasn1_only, monkeypatch) -> None:
    def unused(*args: object) -> None:
        raise AssertionError("the fast path was taken")

    monkeypatch.setattr(fastber, "read_request", unused)
    monkeypatch.setattr(fastber, "encode_record", unused)
    out = codec.decode_request(_SEARCH)
    assert out == codec.read_request(codec.decode_pdu(_SEARCH))
    assert codec.encode_record(ResponseRecord(oids.USMARC, b"x")) is None
    assert codec.encode_close(CloseReason.finished) == codec.encode_pdu(codec.close())


def test_decode_request_errors_are_pyasn1s() -> None:
    for bad in (_SEARCH[:-1] + b"\xff\xff", b"\xb6\x03\x02\x01\x01"):
        with pytest.raises(Z3950ProtocolError):
            codec.decode_request(bad)


@pytest.mark.parametrize("kwargs", [
    dict(preferred_message_size=1, exceptional_record_size=1,
         diagnostic=Diagnostic(1011, None, v2=True), accepted=False),
    dict(preferred_message_size=1, exceptional_record_size=1,
         other_info=[utf8_negotiation_proposal()]),
])
def test_init_response_fallbacks(kwargs) -> None:
    assert fastber.init_response(**kwargs) is None
    assert codec.encode_init_response(**kwargs) == codec.encode_pdu(codec.init_response(**kwargs))


def test_encoder_fallbacks() -> None:
    from protocols.z3950.records import opac_to_asn1

    ready = ResponseRecord(oids.OPAC, opac_to_asn1(OpacRecord(b"x")))
    assert fastber.present_response(next_result_set_position=2, records=[ready]) is None
    assert codec.encode_present_response(next_result_set_position=2, records=[ready]) == \
        codec.encode_pdu(codec.present_response(next_result_set_position=2, records=[ready]))
    with pytest.raises(ValueError):
        codec.encode_search_response(result_count=1, records=[ready],
                                     diagnostics=[Diagnostic(2)])


# --------------------------------------------------------------------------------------
# Generated responses

_circ = st.builds(
    CirculationItem, st.booleans(), _opt(_text), _opt(_text), _opt(_text), _opt(_octets),
    st.booleans(), st.booleans(), _opt(_text), _opt(_text), _opt(_text))
_vol = st.builds(VolumeInfo, _opt(_text), _opt(_octets), _opt(_text))


@st.composite
def _holdings(draw) -> Holding:
    if draw(st.integers(0, 5)) == 0:
        return Holding(marc_holdings=draw(st.binary(max_size=20)))
    names = ["type_of_record", "encoding_level", "format", "receipt_acq_status",
             "general_retention", "completeness", "date_of_report", "nuc_code",
             "local_location", "shelving_location", "call_number", "shelving_data",
             "copy_number", "public_note", "reproduction_note", "terms_use_repro",
             "enum_and_chron"]
    kwargs = {name: draw(_opt(_text)) for name in names}
    return Holding(volumes=tuple(draw(st.lists(_vol, max_size=2))),
                   circulation=tuple(draw(st.lists(_circ, max_size=3))), **kwargs)


_opac = st.builds(OpacRecord, _opt(st.binary(min_size=0, max_size=300)),
                  st.sampled_from([oids.USMARC, oids.XML]),
                  st.lists(_holdings(), max_size=3).map(tuple))
_diag = st.builds(Diagnostic, st.integers(0, 2**16), _opt(_octets),
                  st.sampled_from([oids.BIB1_DIAGSET, (1, 2, 3)]), st.booleans())
_entry = st.one_of(
    st.builds(ResponseRecord, st.just(oids.OPAC), _opac, _opt(_text)),
    st.builds(ResponseRecord, st.sampled_from([oids.USMARC, oids.XML, oids.SUTRS]),
              st.one_of(st.binary(max_size=400), _text), _opt(_octets)),
    st.builds(SurrogateDiagnostic, _diag, _opt(_text)),
)


def _pyasn1_record_size(record) -> int:
    fastber_enabled = fastber.ENABLED
    fastber.ENABLED = False
    try:
        return encoded_record_size(record)
    finally:
        fastber.ENABLED = fastber_enabled


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_entry, max_size=3), st.lists(_diag, max_size=3), _opt(st.binary(max_size=5)),
       st.integers(0, 2**33), _opt(st.integers(-1, 10)), st.integers(0, 5), st.booleans())
def test_generated_responses_encode_alike(records, diagnostics, ref, count, next_pos, status,
                                          ok) -> None:
    if records:
        diagnostics = []
    kw = dict(reference_id=ref, result_count=count, search_status=ok,
              next_result_set_position=next_pos, result_set_status=status if ok else None,
              present_status=status if records else None, records=records,
              diagnostics=diagnostics)
    assert fastber.search_response(**kw) == codec.encode_pdu(codec.search_response(**kw))
    pkw = dict(reference_id=ref, present_status=status,
               next_result_set_position=next_pos or 0, records=records,
               diagnostics=diagnostics)
    assert fastber.present_response(**pkw) == codec.encode_pdu(codec.present_response(**pkw))
    for rec in records:
        assert fastber.record_size(rec) == _pyasn1_record_size(rec)


@settings(max_examples=100, deadline=None)
@given(_opt(st.binary(max_size=5)), st.sets(st.sampled_from([1, 2, 3])),
       st.sets(st.sampled_from([n for n in codec.OPTION_NAMES if n])), st.integers(0, 2**40),
       st.integers(0, 2**40), st.booleans(), _opt(_text), _opt(_octets), _opt(_text))
def test_generated_init_responses_encode_alike(ref, versions, options, pms, ers, accepted,
                                               ident, name, version) -> None:
    kw = dict(reference_id=ref, accepted=accepted, versions=sorted(versions) or (1, 2, 3),
              options=sorted(options), preferred_message_size=pms,
              exceptional_record_size=ers, implementation_id=ident,
              implementation_name=name, implementation_version=version)
    assert fastber.init_response(**kw) == codec.encode_pdu(codec.init_response(**kw))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**20), _opt(st.binary(max_size=5)), _opt(_octets))
def test_generated_closes_encode_alike(reason, ref, info) -> None:
    assert fastber.close(reason, reference_id=ref, diagnostic_information=info) == \
        codec.encode_pdu(codec.close(reason, reference_id=ref, diagnostic_information=info))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_entry, min_size=1, max_size=3))
def test_measured_records_encode_alike(records) -> None:
    """The association measures each record, then encodes the response with the encodings
    it measured: same sizes and same bytes as pyasn1 encoding the records themselves."""
    measured = [codec.encode_record(rec) if isinstance(rec, ResponseRecord) else rec
                for rec in records]
    assert None not in measured
    sizes = [m.size for m in measured if isinstance(m, codec.EncodedRecord)]
    assert sizes == [_pyasn1_record_size(rec) for rec in records
                     if isinstance(rec, ResponseRecord)]
    kw = dict(next_result_set_position=len(records) + 1, records=records)
    expected = codec.encode_pdu(codec.present_response(**kw))
    assert fastber.present_response(**{**kw, "records": measured}) == expected
    assert codec.encode_pdu(codec.present_response(**{**kw, "records": measured})) == expected


def _module_state() -> dict[str, object]:
    """Copies of fastber's mutable module-level containers."""
    return {name: copy.copy(value) for name, value in vars(fastber).items()
            if isinstance(value, (dict, list, set, bytearray))}


def test_nothing_kept_between_calls() -> None:
    """Measuring and encoding leave fastber's module state as it was: an encoding travels
    with its record (EncodedRecord), never through a module-level cache (but for OPAC
    records' encodings, memoized by value: tests/gateway/test_opac_memo.py)."""
    before = _module_state()
    records = [ResponseRecord(oids.USMARC, bytes([i % 256]) * 100) for i in range(200)]
    measured = [codec.encode_record(rec) for rec in records]
    for rec in records:
        fastber.record_size(rec)
    expected = codec.encode_pdu(codec.present_response(next_result_set_position=201,
                                                       records=records))
    assert fastber.present_response(next_result_set_position=201, records=measured) == expected
    assert fastber.present_response(next_result_set_position=201, records=records) == expected
    assert _module_state() == before


def test_text_where_octets_belong_falls_back() -> None:
    """The builders take bytes for OPAC payloads; text there is pyasn1's to refuse."""
    # text where the type says bytes, on purpose: this is the misuse under test
    rec = ResponseRecord(oids.OPAC, OpacRecord("not bytes"))  # type: ignore[arg-type]
    assert fastber.present_response(next_result_set_position=2, records=[rec]) is None
    assert fastber.record_size(rec) is None
    with pytest.raises(TypeError):
        codec.encode_present_response(next_result_set_position=2, records=[rec])
