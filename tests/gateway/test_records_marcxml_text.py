"""MARCXML written as text in one pass (``retrieval.marcxml``, ``bibliographic_marcxml``).

Whatever the stored bytes and the items, the answer must be exactly what pymarc's element
serialised by lxml gives (the way it was written before), or the same error: demo records in
every holdings layout, and hand-made records with text to escape, empty subfields and control
fields, non-numeric tags, fields out of tag order, and characters XML cannot carry.
"""

from __future__ import annotations

import pytest
from lxml import etree

from gateway.backends.embedded.demo import demo_records
from gateway.domain.holdings import CatalogueRecord, ItemState
from gateway.z3950 import retrieval as render
from protocols.xmltext import WellFormed
from tests.marc_fixtures import datafield, iso2709

ITEMS = (
    ItemState("B1", "Main", "Stacks", "QA 1 .A1", "1", "available", "normal"),
    ItemState("B2", "Branch & <Annex>", 'Folio "big"', "QA 2", "2", "on_loan", "short",
              due_at="2027-01-02T10:00:00"),
    ItemState("B3", "", "", "", "", "on_hold_shelf", "normal", active_holds=1),
)


def _pymarc_way(record: CatalogueRecord, element_set: str,
                view: render.Presentation | None) -> bytes:
    marc = (render.bibliographic(record, element_set) if view is None
            else render.with_holdings(record, element_set, view))
    return etree.tostring(render._marcxml_element(marc), encoding="utf-8")


def _same(record: CatalogueRecord, *, text_way: bool) -> None:
    for element_set in ("F", "B"):
        for layout in render.HOLDINGS_LAYOUTS:
            view = render.Presentation(agency_id="AG&1", holdings_tag=layout)
            out = render.marcxml(record, element_set, view)
            assert out == _pymarc_way(record, element_set, view)
            assert isinstance(out, WellFormed) is text_way
        bib = render.bibliographic_marcxml(record, element_set)
        assert bib == _pymarc_way(record, element_set, None)
        assert isinstance(bib, WellFormed) is text_way
        etree.fromstring(bib)


def test_demo_records_with_items_byte_for_byte() -> None:
    """The demo's records (what imports store) take the text way and give the same bytes."""
    for number, marc in enumerate(demo_records(40), 1):
        _same(CatalogueRecord(number, f"L{number}", marc.as_marc(), ITEMS[:number % 4]),
              text_way=True)


TRICKY = [
    ("001", b"L1"), ("003", b""), ("008", b"200101s2020    xx            000 0 eng d"),
    ("245", datafield("10", "a", "Tom & Jerry <vol. 1> \"quoted\" 'single' > x", "c", "")),
    ("246", datafield('"&', "a", "quote and ampersand indicators")),
    ("500", datafield("  ", '"', "quote code", "&", "amp code", "<", "lt code")),
    ("500", b"  "),
    ("650", datafield(" 0", "a", "tab\there and new\nline")),
    ("100", datafield("1 ", "a", "Author out of order")),
    ("CAT", datafield("  ", "a", "non-numeric tag")),
    ("900", datafield("  ", "a", "after the non-numeric tag")),
    ("852", datafield("  ", "p", "stored holdings, dropped")),
]


def test_text_to_escape_and_odd_fields_byte_for_byte() -> None:
    """Escaping in text and attributes, empty values, no subfields, holdings placed where
    pymarc's ordered insert puts them (before a non-numeric tag): still the same bytes."""
    record = CatalogueRecord(1, "L1", iso2709(TRICKY), ITEMS)
    assert render._stored_fields(record.marc) is not None
    _same(record, text_way=True)


@pytest.mark.parametrize("fields", [
    [("001", b"L1"), ("245", datafield("10", "a", "carriage\rreturn"))],
    [("001", b"L1"), ("245", datafield("10", "a", "control \x01 character"))],
    [("001", b"L1"), ("245", datafield("10", "a", "not a character \uffff"))],
    [("001", b"L\x1fsubfield mark in a control field"), ("245", datafield("10", "a", "T"))],
    [("001", b"L1"), ("245", b"10\x1f\x1faempty subfield code")],
], ids=["carriage-return", "control-char", "noncharacter", "mark-in-control", "empty-code"])
def test_records_the_text_way_cannot_write_take_pymarc_way(
        fields: list[tuple[str, bytes]]) -> None:
    """What pymarc and lxml rewrite or refuse goes their way: the same bytes or the same error."""
    record = CatalogueRecord(1, "L1", iso2709(fields), ITEMS[:1])
    view = render.Presentation()
    try:
        expected: bytes | type[Exception] = _pymarc_way(record, "F", view)
    except (ValueError, etree.XMLSyntaxError) as error:
        expected = type(error)
    if isinstance(expected, bytes):
        out = render.marcxml(record, "F", view)
        assert out == expected and not isinstance(out, WellFormed)
    else:
        with pytest.raises(expected):
            render.marcxml(record, "F", view)


def test_item_text_xml_cannot_carry_takes_pymarc_way() -> None:
    """An item value with a control character: not written as text (lxml refuses it)."""
    item = ItemState("B\x02", "Main", "", "", "", "available", "normal")
    record = CatalogueRecord(1, "L1", next(iter(demo_records(1))).as_marc(), (item,))
    with pytest.raises((ValueError, etree.XMLSyntaxError)):
        _pymarc_way(record, "F", render.Presentation())
    with pytest.raises((ValueError, etree.XMLSyntaxError)):
        render.marcxml(record, "F", render.Presentation())


def test_unreadable_record_fails_as_through_pymarc() -> None:
    """Bad UTF-8: ValueError either way."""
    record = CatalogueRecord(1, "L1", iso2709([("001", b"L1"), ("245", b"10\x1fa\xff\xfe")]))
    with pytest.raises(ValueError):
        render.marcxml(record, "F", render.Presentation())


def _pymarc_bibliographic_marcxml(record: CatalogueRecord, element_set: str = "F") -> bytes:
    return _pymarc_way(record, element_set, None)


def _crosswalk_records() -> list[CatalogueRecord]:
    records = [CatalogueRecord(n, f"L{n}", marc.as_marc(), ITEMS[:n % 4])
               for n, marc in enumerate(demo_records(30), 1)]
    return records + [CatalogueRecord(99, "L99", iso2709(TRICKY), ITEMS)]


def _bytes(document: bytes | etree._Element) -> bytes:
    """As the OAI-PMH writer serialises a metadata element."""
    return document if isinstance(document, bytes) else etree.tostring(document, encoding="UTF-8")


def test_dublin_core_and_opac_without_pymarc_are_the_same_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SRU srw_dc, OAI-PMH oai_dc and the OPAC XML record read the stored bytes without
    pymarc and write text; forcing pymarc's way and lxml's trees gives the very same
    documents."""
    from gateway.oai import formats
    from gateway.sru import records as sru_records
    from gateway.z3950 import plain_marc
    from protocols import xmltext

    view = render.Presentation()
    records = _crosswalk_records()
    assert all(plain_marc.plain_bibliographic(r) is not None for r in records)
    fast = [(sru_records.dublin_core(r, view), formats.oai_dc(r, view),
             render.opac_xml(r, "F", view)) for r in records]
    assert all(isinstance(doc, WellFormed) for docs in fast for doc in docs)
    monkeypatch.setattr(sru_records, "plain_bibliographic", lambda record, es: None)
    monkeypatch.setattr(formats, "plain_bibliographic", lambda record, es: None)
    monkeypatch.setattr(render, "bibliographic_marcxml", _pymarc_bibliographic_marcxml)
    monkeypatch.setattr(xmltext, "with_children", lambda head, tail, children: None)
    slow = [(sru_records.dublin_core(r, view), formats.oai_dc(r, view),
             render.opac_xml(r, "F", view)) for r in records]
    assert isinstance(slow[0][1], etree._Element)
    assert [tuple(map(_bytes, docs)) for docs in fast] == \
        [tuple(map(_bytes, docs)) for docs in slow]
    assert b"Tom &amp; Jerry &lt;vol. 1&gt;" in fast[-1][0]
    assert b"Tom &amp; Jerry &lt;vol. 1&gt;" in _bytes(fast[-1][1])


def test_dublin_core_text_lxml_refuses_still_fails() -> None:
    """A title with a control character: lxml refuses it, and so do the text writers."""
    from gateway.oai import formats
    from gateway.sru import records as sru_records

    marc = iso2709([("001", b"L1"), ("245", datafield("10", "a", "bad \x01 title"))])
    record = CatalogueRecord(1, "L1", marc)
    with pytest.raises(ValueError):
        sru_records.dublin_core(record, render.Presentation())
    with pytest.raises(ValueError):
        formats.oai_dc(record, render.Presentation())


def test_opac_xml_text_is_lxml_tree_byte_for_byte() -> None:
    """The OPAC XML record written as text equals the lxml-built one: demo records, the tricky
    record, no items, items whose values need escaping; a value lxml refuses still fails."""
    view = render.Presentation(agency_id="A&B")
    records = _crosswalk_records() + [CatalogueRecord(7, "L7", iso2709(TRICKY))]
    for record in records:
        out = render.opac_xml(record, "F", view)
        assert isinstance(out, WellFormed)
        assert out == render._opac_xml_tree(record, view)
    bad = CatalogueRecord(8, "L8", iso2709(TRICKY), (
        ItemState("B\x02", "Main", "", "", "", "available", "normal"),))
    with pytest.raises(ValueError):
        render._opac_xml_tree(bad, view)
    with pytest.raises(ValueError):
        render.opac_xml(bad, "F", view)
