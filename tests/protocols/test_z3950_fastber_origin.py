"""The origin's BER fast path (protocols.z3950.fastber_origin) against pyasn1, the reference.

For Search and Present responses built by the codec (as a target sends them), the fast reader
gives the same dataclass as ``client.read_response(decode_pdu(...))``, or declines (``None``)
where it must: diagnostics, OPAC (single-ASN1-type) records, other PDUs, a disabled fast
path. Mutated frames: whatever it accepts, pyasn1 accepts and reads the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.z3950 import client, codec, fastber, fastber_origin, oids, pqf
from protocols.z3950.ber import BERFramer
from protocols.z3950.codec import Diagnostic, ResponseRecord, SurrogateDiagnostic
from protocols.z3950.errors import Z3950ProtocolError
from protocols.z3950.external import DecodedExternal
from protocols.z3950.records import OpacRecord

from .test_z3950_fixtures import all_captured

MARC = (b"00095nam a2200049 a 4500001000800000245001700008\x1e12345\x1e"
        b"00\x1faA title\x1e\x1d")


def _frame(pdu: Any) -> bytes:
    frames = BERFramer().feed(codec.encode_pdu(pdu))
    assert len(frames) == 1
    return frames[0]


def _reference(frame: bytes) -> object:
    return client.read_response(codec.decode_pdu(frame, framed=True))


RECORDS = st.lists(st.tuples(
    st.sampled_from([oids.USMARC, oids.XML, (1, 2, 840, 10003, 5, 109, 10)]),
    st.binary(max_size=300),
    st.one_of(st.none(), st.sampled_from(["biblios", "Default", "db"]))),
    max_size=5)


@given(reference_id=st.one_of(st.none(), st.binary(max_size=20)),
       count=st.integers(0, 2**40), status=st.one_of(st.none(), st.integers(0, 5)),
       set_status=st.one_of(st.none(), st.integers(1, 3)), records=RECORDS,
       search_ok=st.booleans())
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_search_response_same_as_pyasn1(reference_id: bytes | None, count: int,
                                        status: int | None, set_status: int | None,
                                        records: list, search_ok: bool) -> None:
    frame = _frame(codec.search_response(
        reference_id=reference_id, result_count=count, search_status=search_ok,
        result_set_status=set_status, present_status=status,
        records=[ResponseRecord(oid, data, db) for oid, data, db in records]))
    fast = fastber_origin.read_response(frame)
    assert fast is not None
    assert fast == _reference(frame)


@given(reference_id=st.one_of(st.none(), st.binary(max_size=20)),
       status=st.integers(0, 5), next_position=st.integers(0, 10**6), records=RECORDS)
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_present_response_same_as_pyasn1(reference_id: bytes | None, status: int,
                                         next_position: int, records: list) -> None:
    frame = _frame(codec.present_response(
        reference_id=reference_id, present_status=status, next_result_set_position=next_position,
        records=[ResponseRecord(oid, data, db) for oid, data, db in records]))
    fast = fastber_origin.read_response(frame)
    assert fast is not None
    assert fast == _reference(frame)


def test_a_marc_record_arrives_as_its_bytes() -> None:
    frame = _frame(codec.present_response(next_result_set_position=2,
                                          records=[ResponseRecord(oids.USMARC, MARC)]))
    fast = fastber_origin.read_response(frame)
    assert isinstance(fast, client.PresentResponseInfo)
    (record,) = fast.records
    assert isinstance(record, DecodedExternal)
    assert record.oid == oids.USMARC and record.data == MARC and record.value is None
    assert record.encoding == "octet-aligned"


@pytest.mark.parametrize("pdu", [
    codec.search_response(result_count=0, search_status=False, result_set_status=3,
                          diagnostics=[Diagnostic(114, "1016")]),
    codec.search_response(result_count=0, search_status=False,
                          diagnostics=[Diagnostic(114, "1"), Diagnostic(2, "x")]),
    codec.present_response(present_status=5, next_result_set_position=1,
                           diagnostics=[Diagnostic(13, "20")]),
    codec.present_response(next_result_set_position=2, records=[
        SurrogateDiagnostic(Diagnostic(239, "opac"), "biblios")]),
    codec.present_response(next_result_set_position=2, records=[
        ResponseRecord(oids.OPAC, OpacRecord(MARC))]),
    codec.present_response(next_result_set_position=3, records=[
        ResponseRecord(oids.USMARC, MARC), ResponseRecord(oids.OPAC, OpacRecord(MARC))]),
    codec.present_response(next_result_set_position=2, records=[
        ResponseRecord(oids.SUTRS, "a brief text")]),
    client.present_request(result_set_id="il0", start=1, count=1),
    codec.close(0),
], ids=["search-diagnostic", "search-diagnostics", "present-diagnostic", "surrogate",
        "opac", "marc-then-opac", "sutrs", "a-request", "close"])
def test_declines_what_it_does_not_read(pdu: object) -> None:
    frame = _frame(pdu)
    assert fastber_origin.read_response(frame) is None


def test_switched_off_with_the_target_side(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _frame(codec.search_response(result_count=3))
    assert fastber_origin.read_response(frame) is not None
    monkeypatch.setattr(fastber, "ENABLED", False)
    assert fastber_origin.read_response(frame) is None


SAMPLE = _frame(codec.search_response(
    reference_id=b"r", result_count=13, present_status=0,
    records=[ResponseRecord(oids.USMARC, MARC, "biblios"), ResponseRecord(oids.XML, b"<r/>")]))


@given(st.data())
@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_mutated_frames_never_read_otherwise(data: st.DataObject) -> None:
    _mutated_reads_as_pyasn1(data, SAMPLE)


def _mutated_reads_as_pyasn1(data: st.DataObject, sample: bytes) -> None:
    frame = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(frame) - 1))
        frame[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(frame) - 3, len(frame)))
    mutated = bytes(frame[:cut])
    fast = fastber_origin.read_response(mutated)
    if fast is None:
        return
    assert fast == _reference(mutated)


def test_garbage_and_short_frames_decline() -> None:
    for junk in (b"", b"\xb7", b"\xb7\x05\x97\x01", b"\xb9\x81", SAMPLE[:-1], SAMPLE + b"\x00"):
        assert fastber_origin.read_response(junk) is None


# Koha's Zebra answering ``@attr 1=1016 library`` (4 hits): its searchResult-1 report travels
# as additionalSearchInfo [203], which the origin does not read.
ZEBRA_SEARCH = bytes.fromhex(
    "b739970104980100990101960101bf814b293027a42506072a8648ce130a01a01a30183016820100a30ea1"
    "0ca10a9f2d076c696272617279860104")


def test_zebras_search_response_with_its_search_report() -> None:
    fast = fastber_origin.read_response(ZEBRA_SEARCH)
    assert fast is not None
    assert fast == _reference(ZEBRA_SEARCH)
    assert isinstance(fast, client.SearchResponseInfo)
    assert fast.result_count == 4 and fast.search_status


@given(st.data())
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_zebra_answers_never_read_otherwise(data: st.DataObject) -> None:
    _mutated_reads_as_pyasn1(data, ZEBRA_SEARCH)


def test_an_additional_search_info_pyasn1_rejects_sends_the_pdu_to_pyasn1() -> None:
    broken = bytearray(ZEBRA_SEARCH)
    broken[broken.index(bytes.fromhex("06072a8648ce130a01"))] = 0x04   # OID -> OCTET STRING
    with pytest.raises(Z3950ProtocolError):
        _reference(bytes(broken))
    assert fastber_origin.read_response(bytes(broken)) is None


def test_captured_responses_read_as_pyasn1_reads_them(shared_dir: Path) -> None:
    responses = [p for p in all_captured(shared_dir) if p.data[:1] in (b"\xb7", b"\xb9")]
    if not responses:
        pytest.skip("no captured Search/Present responses in ../shared")
    read = 0
    for captured in responses:
        frame = BERFramer().feed(captured.data)[0]
        fast = fastber_origin.read_response(frame)
        if fast is not None:
            read += 1
            assert fast == _reference(frame), captured.id
    assert read, "no captured response took the fast path"


# -- the origin's requests -------------------------------------------------------------------

TERMS = st.builds(
    pqf.Term,
    st.text(max_size=12),
    st.lists(st.one_of(
        st.tuples(st.none(), st.integers(1, 9), st.integers(-5, 2**33)),
        st.tuples(st.just(oids.BIB1_ATTRSET), st.integers(1, 9), st.integers(1, 9)),
        st.tuples(st.none(), st.integers(1, 9), st.text(max_size=4))),
        max_size=4).map(lambda items: tuple(pqf.Attribute(*a) for a in items)),
    st.sampled_from(["general", "general", "numeric", "characterString", "null"]))
QUERIES = st.recursive(
    st.one_of(TERMS, st.builds(pqf.ResultSetRef, st.text(min_size=1, max_size=5))),
    lambda inner: st.one_of(*(st.builds(op, inner, inner) for op in (pqf.And, pqf.Or,
                                                                      pqf.AndNot))),
    max_leaves=6)


@given(root=QUERIES, databases=st.lists(st.text(min_size=1, max_size=8), min_size=1,
                                        max_size=3),
       name=st.text(max_size=6), reference_id=st.one_of(st.none(), st.binary(max_size=8)),
       syntax=st.sampled_from([None, oids.USMARC, oids.XML, oids.OPAC]),
       bounds=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 300)),
       replace=st.booleans(), charset=st.sampled_from(["utf-8", "latin-1"]))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_search_request_bytes_as_pyasn1_encodes_them(
        root: pqf.Node, databases: list[str], name: str, reference_id: bytes | None,
        syntax: tuple[int, ...] | None, bounds: tuple[int, int, int], replace: bool,
        charset: str) -> None:
    kwargs: dict[str, Any] = dict(
        database_names=tuple(databases), result_set_name=name, reference_id=reference_id,
        preferred_record_syntax=syntax, small_set_upper_bound=bounds[0],
        large_set_lower_bound=bounds[1], medium_set_present_number=bounds[2],
        replace_indicator=replace, charset=charset)
    query = pqf.Query(root)
    fast = fastber_origin.search_request(query, **kwargs)
    try:
        reference = codec.encode_pdu(client.search_request(query, **kwargs))
    except Exception:  # noqa: BLE001 - pyasn1 refuses it: the fast path must have declined
        assert fast is None
        return
    assert fast is None or fast == reference
    plain = all(t.kind == "general" and all(a.attrset is None and type(a.value) is int
                                            for a in t.attributes) for t in query.terms())
    if plain and charset == "utf-8":
        assert fast is not None


@given(name=st.text(max_size=6), start=st.integers(1, 2**31), count=st.integers(0, 10**4),
       reference_id=st.one_of(st.none(), st.binary(max_size=8)),
       syntax=st.sampled_from([None, oids.USMARC, oids.XML]),
       element_set=st.sampled_from([None, "F", "B", "OPAC"]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_present_request_bytes_as_pyasn1_encodes_them(
        name: str, start: int, count: int, reference_id: bytes | None,
        syntax: tuple[int, ...] | None, element_set: str | None) -> None:
    kwargs: dict[str, Any] = dict(
        result_set_id=name, start=start, count=count, reference_id=reference_id,
        preferred_record_syntax=syntax, element_set_name=element_set)
    fast = fastber_origin.present_request(**kwargs)
    assert fast is not None
    assert fast == codec.encode_pdu(client.present_request(**kwargs))


def test_requests_fall_back_where_they_must(monkeypatch: pytest.MonkeyPatch) -> None:
    query = pqf.parse_pqf("@attr 1=1016 library")
    assert fastber_origin.search_request(query, element_set_name="F") is None
    complex_value = pqf.Term("y", (pqf.Attribute(None, 1, "x"),))
    assert fastber_origin.search_request(pqf.Query(complex_value)) is None
    deep: pqf.Node = pqf.Term("t")
    for _ in range(pqf.MAX_QUERY_DEPTH + 2):
        deep = pqf.And(deep, pqf.Term("t"))
    assert fastber_origin.search_request(pqf.Query(deep)) is None
    monkeypatch.setattr(fastber, "ENABLED", False)
    assert fastber_origin.search_request(query) is None
    assert fastber_origin.present_request(result_set_id="il0") is None
