"""The origin's BER fast path (protocols.z3950.fastber_origin) against pyasn1, the reference.

For Search and Present responses built by the codec (as a target sends them), the fast reader
gives the same dataclass as ``client.read_response(decode_pdu(...))``, or declines (``None``)
where it must: diagnostics, OPAC (single-ASN1-type) records, other PDUs, a disabled fast
path. Mutated frames: whatever it accepts, pyasn1 accepts and reads the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.z3950 import client, codec, fastber, fastber_origin, oids
from protocols.z3950.ber import BERFramer
from protocols.z3950.codec import Diagnostic, ResponseRecord, SurrogateDiagnostic
from protocols.z3950.errors import Z3950ProtocolError
from protocols.z3950.records import OpacRecord

from .test_z3950_fixtures import all_captured

MARC = (b"00095nam a2200049 a 4500001000800000245001700008\x1e12345\x1e"
        b"00\x1faA title\x1e\x1d")


def _frame(pdu: object) -> bytes:
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
