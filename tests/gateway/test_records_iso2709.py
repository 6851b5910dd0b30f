"""The OPAC record's bibliographic part written without pymarc (``bibliographic_iso2709``).

Whatever the stored bytes, the result must be exactly ``iso2709(bibliographic(...))``: the same
bytes for records in the form pymarc writes (the demo's and the importer's), the same bytes or
the same ValueError through pymarc for anything else.
"""

from __future__ import annotations

import pymarc
import pytest

from gateway.backends.embedded.demo import demo_records
from gateway.z3950 import retrieval as render
from tests.marc_fixtures import datafield, iso2709


def _record(marc: bytes) -> render.CatalogueRecord:
    return render.CatalogueRecord(1, "L1", marc)


def _pymarc_way(marc: bytes, element_set: str) -> bytes:
    return render.iso2709(render.bibliographic(_record(marc), element_set))


@pytest.mark.parametrize("element_set", ["F", "B"])
def test_demo_records_byte_for_byte(element_set: str) -> None:
    """Demo records (holdings fields included) are written without pymarc, to the same bytes."""
    for record in demo_records(60):
        record.add_ordered_field(pymarc.Field(
            tag="852", indicators=pymarc.Indicators(" ", " "),
            subfields=[pymarc.Subfield("a", "X"), pymarc.Subfield("p", "B1")]))
        marc = record.as_marc()
        assert render._stored_fields(marc) is not None
        assert render.bibliographic_iso2709(_record(marc), element_set) == \
            _pymarc_way(marc, element_set)


CLEAN = [("001", b"L1"), ("005", b"a\x1fsubfield mark in a control field"),
         ("008", b"200101s2020    xx            000 0 eng d"),
         ("245", datafield("10", "a", "Die Flu\u0308sse :", "b", "a river")),
         ("650", datafield(" 0", "a", "Rivers")), ("852", datafield("  ", "p", "B1"))]


def test_clean_hand_made_record_takes_the_byte_way() -> None:
    """A hand-assembled clean record: holdings dropped, leader/09 'a', same bytes as pymarc."""
    marc = iso2709(CLEAN, coding=b" ")
    assert render._stored_fields(marc) is not None
    for element_set in ("F", "B"):
        out = render.bibliographic_iso2709(_record(marc), element_set)
        assert out == _pymarc_way(marc, element_set)
        assert out[9:10] == b"a" and b"B1" not in out
    assert b"Rivers" not in render.bibliographic_iso2709(_record(marc), "B")


@pytest.mark.filterwarnings("ignore:The subfield contained a non-ASCII subfield code")
@pytest.mark.parametrize("fields", [
    [("001", b"L1"), ("245", datafield("1", "a", "one indicator"))],
    [("001", b"L1"), ("245", datafield("100", "a", "three indicators"))],
    [("001", b"L1"), ("245", b"10\x1f\x1faempty subfield")],
    [("001", b"L1"), ("245", b"10\x1fa\xc3\xa9\x1f\xc3\xa9non-ASCII code")],
], ids=["one-indicator", "three-indicators", "empty-subfield", "non-ascii-code"])
def test_records_pymarc_rewrites_take_pymarc_way(fields: list[tuple[str, bytes]]) -> None:
    """Records pymarc would read differently from their bytes go through pymarc."""
    marc = iso2709(fields)
    assert render._stored_fields(marc) is None
    assert render.bibliographic_iso2709(_record(marc), "F") == _pymarc_way(marc, "F")


def test_fields_out_of_directory_order_take_pymarc_way() -> None:
    """A directory whose offsets are not in field order: pymarc reorders the data."""
    marc = iso2709([("001", b"L1"), ("245", datafield("10", "a", "T"))])
    base = int(marc[12:17])
    first, second = marc[24:36], marc[36:48]
    swapped = marc[:24] + second + first + marc[48:]
    assert int(swapped[12:17]) == base
    assert render._stored_fields(swapped) is None
    assert render.bibliographic_iso2709(_record(swapped), "F") == _pymarc_way(swapped, "F")


@pytest.mark.parametrize("marc", [
    iso2709([("001", b"L1"), ("245", b"10\x1fa\xff\xfe")]),
    iso2709([]),
    b"00010nam",
    iso2709([("001", b"L1")] + [("500", datafield("  ", "a", "x" * 9000))] * 12),
], ids=["bad-utf8", "no-fields", "truncated", "over-99999-bytes"])
def test_unreadable_records_fail_as_through_pymarc(marc: bytes) -> None:
    """Bad UTF-8, no fields, a broken leader: ValueError, as ``parse_marc`` raises."""
    with pytest.raises(ValueError):
        _pymarc_way(marc, "F")
    with pytest.raises(ValueError):
        render.bibliographic_iso2709(_record(marc), "F")
