"""OPAC records and their encodings remembered by value (issue 20, Z39.50 per-Present CPU).

``retrieval.opac`` keeps UTF-8 OPAC records in a bounded memo keyed by the stored MARC, the live
item states, the element set and the agency id; ``fastber.encode_record`` keeps OPAC records'
encodings keyed by the record's value. Both must give exactly what the unmemoized code gives,
show a changed item state at once (a loan, a hold) and stay bounded.
"""

from __future__ import annotations

import dataclasses

import pytest

from gateway.backends.embedded.demo import demo_records
from gateway.domain.holdings import CatalogueRecord, ItemState
from gateway.z3950 import retrieval
from protocols.z3950 import codec, fastber, oids
from protocols.z3950.codec import ResponseRecord
from protocols.z3950.records import CirculationItem, Holding, OpacRecord

SHELF = ItemState("B1", "Main", "Stacks", "QA 1", "c.1", "available", "4 weeks")


def _record(number: int = 1, items: tuple[ItemState, ...] = (SHELF,)) -> CatalogueRecord:
    marc = next(demo_records(1, start=number)).as_marc()
    return CatalogueRecord(number, f"L{number}", marc, items)


@pytest.fixture(autouse=True)
def _empty_memos() -> None:
    retrieval._opac_memo.clear()
    fastber._encoded_opac.clear()


@pytest.mark.parametrize("element_set", ["F", "B", "OP"])
def test_memo_gives_what_the_renderer_gives(element_set: str) -> None:
    """First and second Present of a record: the unmemoized value, then the same object."""
    view = retrieval.Presentation(agency_id="AGENCY")
    record = _record(3)
    first = retrieval.opac(record, element_set, view)
    esn = "B" if element_set == "B" else "F"
    assert first == retrieval._opac(record, esn, view)
    again = retrieval.opac(dataclasses.replace(record), element_set, view)  # a fresh read
    assert again is first


def test_changed_item_state_is_shown_at_once() -> None:
    """A loan (due date) or a hold after a Present makes a new record, not the remembered one."""
    view = retrieval.Presentation()
    before = retrieval.opac(_record(), "F", view)
    assert before.holdings[0].circulation[0].available_now
    on_loan = dataclasses.replace(SHELF, due_at="2031-03-15T12:00:00Z")
    after = retrieval.opac(_record(items=(on_loan,)), "F", view)
    circ = after.holdings[0].circulation[0]
    assert not circ.available_now and circ.availability_date == "2031-03-15"
    held = retrieval.opac(_record(items=(dataclasses.replace(SHELF, active_holds=1),)), "F", view)
    assert held.holdings[0].circulation[0].on_hold
    # and back on the shelf: the first value again
    assert retrieval.opac(_record(), "F", view) == before


def test_agency_and_charset_are_part_of_the_value() -> None:
    """Another agency id is another record; a negotiated charset bypasses the memo."""
    a = retrieval.opac(_record(), "F", retrieval.Presentation(agency_id="A"))
    b = retrieval.opac(_record(), "F", retrieval.Presentation(agency_id="B"))
    assert a.holdings[0].nuc_code == "A" and b.holdings[0].nuc_code == "B"
    latin = retrieval.Presentation(record_charset="iso-8859-1")
    converted = retrieval.opac(_record(), "F", latin)
    assert converted == retrieval._opac(_record(), "F", latin)
    assert len(retrieval._opac_memo) == 2


def test_memo_is_bounded() -> None:
    """The memo never holds more than OPAC_MEMO_SIZE records."""
    view = retrieval.Presentation()
    for number in range(1, retrieval.OPAC_MEMO_SIZE + 40):
        retrieval.opac(_record(number), "F", view)
        assert len(retrieval._opac_memo) <= retrieval.OPAC_MEMO_SIZE


def _opac_response(barcode: str = "B1", due: str | None = None) -> ResponseRecord:
    circ = CirculationItem(available_now=due is None, item_id=barcode, availability_date=due)
    holding = Holding(nuc_code="X", local_location="Main", circulation=(circ,))
    return ResponseRecord(oids.OPAC, OpacRecord(bibliographic=_record().marc,
                                                holdings=(holding,)), "Default")


def _pyasn1_encoding(record: ResponseRecord) -> bytes:
    return codec.encode_pdu(codec.present_response(next_result_set_position=2,
                                                   records=[record]))


def test_encoding_memo_gives_the_pyasn1_bytes() -> None:
    """An OPAC record measured twice: the same EncodedRecord, and the response bytes pyasn1
    writes for the record itself; an equal record read again hits the memo too."""
    record = _opac_response()
    first = codec.encode_record(record)
    assert first is not None
    assert codec.encode_record(_opac_response()) is first
    sent = fastber.present_response(next_result_set_position=2, records=[first])
    assert sent == _pyasn1_encoding(record)


def test_encoding_memo_follows_the_value() -> None:
    """A record with another item state is encoded anew, to its own bytes."""
    shelf = codec.encode_record(_opac_response())
    loaned = codec.encode_record(_opac_response(due="2031-03-15"))
    assert shelf is not None and loaned is not None and shelf.tlv != loaned.tlv
    sent = fastber.present_response(next_result_set_position=2, records=[loaned])
    assert sent == _pyasn1_encoding(_opac_response(due="2031-03-15"))


def test_encoding_memo_is_bounded_and_skips_unhashable() -> None:
    """At most OPAC_MEMO_SIZE encodings; a record with a list inside is encoded, not kept."""
    for n in range(fastber.OPAC_MEMO_SIZE + 20):
        assert codec.encode_record(_opac_response(barcode=f"B{n}")) is not None
        assert len(fastber._encoded_opac) <= fastber.OPAC_MEMO_SIZE
    fastber._encoded_opac.clear()
    holdings: list[Holding] = []  # a list where the type says tuple
    odd = ResponseRecord(oids.OPAC, OpacRecord(bibliographic=b"x", holdings=holdings),  # type: ignore[arg-type]
                         "Default")
    codec.encode_record(odd)
    assert not fastber._encoded_opac
