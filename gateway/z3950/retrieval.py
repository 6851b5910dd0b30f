# -*- test-case-name: tests.gateway.test_records -*-
"""Retrieval records for Z39.50 Present: MARC 21, MARCXML, OPAC (and OPAC-XML), SUTRS.

Rendering only: the builders below are pure. They turn a
:class:`~gateway.domain.holdings.CatalogueRecord` (the stored MARC and the *live* state of its
items, as the catalogue read them) into the bytes or
:class:`~protocols.z3950.records.OpacRecord` to send.

Holdings: every item becomes one holdings entry. In MARC and MARCXML it is written in the peer's
holdings layout (``holdings_tag``; the stored record's own holdings fields are dropped first, so
availability is never stale); in OPAC it is one ``HoldingsAndCircData`` with one ``CircRecord``.
Layouts:

* **852** (the default; valid MARC 21, MARC::Lint clean): per item one 852 as MARC 21 defines it
  ($a institution (agency id), $b location, $c shelving location, $h call number, $p piece
  designation (barcode), $t copy number, $z public note: ``AVAILABLE``, ``DUE 2031-03-15``, or the
  status) and one 876 item information field ($h use restrictions (loan policy), $j item status
  (``Available``, ``Checked out``, ``On hold``…), $l temporary location (holds shelf, in transit),
  $p barcode, $t copy number, $z ``Due 2031-03-15`` while on loan). Our importer reads it back.
* **852-polaris** (ReShare's Polaris adapter): the default plus 852 $r ``In``/``Out``, the
  availability flag that adapter tests (undefined in MARC 21: use it only for such a peer).
* **852-evergreen** (ReShare's Evergreen adapter): the default plus 852 $g barcode and $n status
  text (``Available``), where that adapter looks (in MARC 21 $n is a country code).
* **926** (SirsiDynix Symphony): $a library (location), $b current location (the shelving
  location, or ``CHECKEDOUT``, ``HOLDS``, ``INTRANSIT``, ``MISSING``, ``DISCARD``), $c call
  number, $d item type (loan policy), $f copies (1), $i barcode, $e due date.
* **952** (Koha items): $a home branch and $b holding branch (location), $c shelving location,
  $o call number, $p barcode, $t copy number, $y item type (loan policy), $0 withdrawn, $1 lost,
  $7 not for loan (``0``; ``1`` while an item is unavailable for another reason than a loan),
  $q due date (only while on loan).
* **982** (TLC): $1 ``y``/``n`` available, $a item type (loan policy), $b location, $c shelving
  location, $i barcode, $m call number, $d due date.

9XX fields are local by definition, so 926, 952 and 982 stay valid MARC 21 too.

ISO 2709 records end at 99,999 bytes: a record whose holdings would not fit keeps the items that
do and says so in a 500 note (how many of how many items are shown, and that OPAC or MARCXML
carry them all), instead of dropping items silently.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, fields, replace
from typing import Any

import pymarc
from lxml import etree

from gateway.domain.holdings import CatalogueRecord, ItemState
from protocols import xmltext
from protocols.iso2709 import FIELD_TERMINATOR, LEADER_LENGTH, plain_fields
from protocols.xmltext import WellFormed
from protocols.z3950 import oids
from protocols.z3950.marc8 import NCR_ERRORS
from protocols.z3950.records import CirculationItem, Holding, OpacRecord

HOLDINGS_TAGS = ("852", "876", "877", "878", "926", "952", "982")
"""Item-level fields removed from the stored record before live holdings are added."""

BRIEF_TAGS = frozenset({"001", "003", "005", "008", "010", "020", "022", "035", "100", "110",
                        "111", "130", "245", "250", "260", "264", "300"})
"""Fields kept in element set B (brief)."""

MARCXML_NS = "http://www.loc.gov/MARC21/slim"
MAX_ISO2709_LENGTH = 99999
"""The record length field has five digits."""

_SYMPHONY_LOCATION = {
    "on_loan": "CHECKEDOUT",
    "on_hold_shelf": "HOLDS",
    "in_transit": "INTRANSIT",
    "missing": "MISSING",
    "withdrawn": "DISCARD",
    # no current location of their own that Symphony readers (ReShare: RESERVES, CHECKEDOUT,
    # MISSING, DISCARD) take as unavailable: the nearest of those
    "lost": "MISSING",
    "damaged": "MISSING",
    "on_order": "MISSING",
    "unavailable": "MISSING",
    "not_for_loan": "RESERVES",
}
_TEMPORARY_LOCATION = {"on_hold_shelf": "Holds shelf", "in_transit": "In transit"}


@dataclass(frozen=True)
class Presentation:
    """What a record's rendering depends on besides the record: who asks, and who we are."""

    agency_id: str = "INTERLEND"
    holdings_tag: str = "852"
    charset: str = "utf-8"
    record_charset: str | None = None
    """The codec MARC records are sent in (charset negotiation), None for UTF-8. MARCXML and
    OPAC-XML stay UTF-8: XML names its own encoding, and MARC-8 is no XML encoding."""


# -- MARC ----------------------------------------------------------------------------------------

def parse_marc(data: bytes) -> pymarc.Record:
    """Read stored ISO 2709 (UTF-8) into a pymarc record; ValueError when it does not parse."""
    try:
        record = pymarc.Record(data=data, to_unicode=True, force_utf8=True)
    except Exception as exc:  # pymarc raises many exception types for bad records
        raise ValueError(f"unreadable MARC record: {exc}") from exc
    if record is None or not record.fields:
        raise ValueError("empty MARC record")
    return record


def bibliographic(record: CatalogueRecord, element_set: str = "F") -> pymarc.Record:
    """The bibliographic part: stored holdings fields removed; B keeps the brief fields only."""
    marc = parse_marc(record.marc)
    drop = [f for f in marc.fields
            if f.tag in HOLDINGS_TAGS or (element_set == "B" and f.tag not in BRIEF_TAGS)]
    for f in drop:
        marc.remove_field(f)
    leader = str(marc.leader)
    marc.leader = pymarc.Leader(leader[:9] + "a" + leader[10:])  # UCS/Unicode: UTF-8
    marc.force_utf8 = True
    return marc


def _field(tag: str, pairs: list[tuple[str, str | None]]) -> pymarc.Field:
    subfields = [pymarc.Subfield(code, value) for code, value in pairs if value]
    return pymarc.Field(tag=tag, indicators=pymarc.Indicators(" ", " "), subfields=subfields)


HOLDINGS_LAYOUTS = ("852", "852-polaris", "852-evergreen", "926", "952", "982")
"""The ``holdings_tag`` values a peer may choose (see the module docstring)."""


def holdings_fields(item: ItemState, tag: str, agency_id: str) -> list[pymarc.Field]:
    """One item as MARC holdings fields in the layout ``tag`` (one of HOLDINGS_LAYOUTS)."""
    if not tag.startswith("852"):
        return [holdings_field(item, tag, agency_id)]
    if tag not in HOLDINGS_LAYOUTS:
        raise ValueError(f"unsupported holdings layout {tag!r}")
    location = item.location or agency_id
    pairs: list[tuple[str, str | None]] = [
        ("a", agency_id), ("b", location), ("c", item.shelving_location)]
    if tag == "852-evergreen":
        pairs.append(("g", item.barcode))
    pairs += [("h", item.call_number)]
    if tag == "852-evergreen":
        pairs.append(("n", item.status_text))
    pairs += [("p", item.barcode)]
    if tag == "852-polaris":
        pairs.append(("r", "In" if item.available_now else "Out"))
    pairs += [("t", item.copy_number), ("z", item.public_note)]
    return [_field("852", pairs), _field("876", [
        ("h", item.loan_policy), ("j", item.status_text),
        ("l", _TEMPORARY_LOCATION.get(item.status)), ("p", item.barcode),
        ("t", item.copy_number), ("z", f"Due {item.due_date}" if item.due_date else None)])]


def holdings_field(item: ItemState, tag: str, agency_id: str) -> pymarc.Field:
    """One item as a 9XX holdings field in the layout of ``tag`` (926, 952 or 982); the 852
    layouts have an 876 too: :func:`holdings_fields`."""
    location = item.location or agency_id
    if tag == "926":
        current = _SYMPHONY_LOCATION.get("on_loan" if item.on_loan else item.status)
        shelf = current or item.shelving_location or "STACKS"
        return _field("926", [("a", location), ("b", shelf), ("c", item.call_number),
                              ("d", item.loan_policy), ("e", item.due_date), ("f", "1"),
                              ("i", item.barcode)])
    if tag == "952":
        unavailable = not item.available_now and not item.on_loan
        return _field("952", [("0", "1" if item.status == "withdrawn" else "0"),
                              ("1", "1" if item.status == "missing" else "0"),
                              ("7", "1" if unavailable else "0"),
                              ("a", location), ("b", location), ("c", item.shelving_location),
                              ("o", item.call_number), ("p", item.barcode), ("q", item.due_date),
                              ("t", item.copy_number), ("y", item.loan_policy)])
    if tag == "982":
        return _field("982", [("1", "y" if item.available_now else "n"), ("a", item.loan_policy),
                              ("b", location), ("c", item.shelving_location), ("d", item.due_date),
                              ("i", item.barcode), ("m", item.call_number)])
    if tag.startswith("852"):
        return holdings_fields(item, tag, agency_id)[0]
    raise ValueError(f"unsupported holdings tag {tag!r}")


TRUNCATION_NOTE_RESERVE = 200
"""Bytes kept free for the 500 note that says holdings were cut at the ISO 2709 limit."""


def truncation_note(shown: int, total: int) -> pymarc.Field:
    """The 500 note of a record whose holdings did not all fit in ISO 2709."""
    return _field("500", [("a", f"Holdings: {shown} of {total} items shown; the record would "
                                "pass the 99,999-byte ISO 2709 limit. OPAC and MARCXML records "
                                "list every item.")])


def with_holdings(record: CatalogueRecord, element_set: str, view: Presentation,
                  max_length: int | None = None) -> pymarc.Record:
    """The bibliographic record with live holdings fields for every item.

    With ``max_length``, items that would take the ISO 2709 record past it are left out (a
    title with thousands of copies still yields a valid record with its first items) and a 500
    note says how many are shown (:func:`truncation_note`).
    """
    marc = bibliographic(record, element_set)
    per_item = [holdings_fields(item, view.holdings_tag, view.agency_id)
                for item in record.items]
    if max_length is not None:
        length = len(iso2709(marc))
        if length + sum(len(f.as_marc("utf-8")) + 12 for fs in per_item for f in fs) \
                > max_length:
            kept = 0
            budget = max_length - TRUNCATION_NOTE_RESERVE
            for fields in per_item:
                length += sum(len(f.as_marc("utf-8")) + 12 for f in fields)
                if length > budget:
                    break
                kept += 1
            per_item = per_item[:kept]
            marc.add_ordered_field(truncation_note(kept, len(record.items)))
    for fields in per_item:
        for field in fields:
            marc.add_ordered_field(field)
    return marc


def iso2709(marc: pymarc.Record) -> bytes:
    """ISO 2709 bytes; ValueError past 99,999 bytes (pymarc would write a wrong length)."""
    data = marc.as_marc()
    if len(data) > MAX_ISO2709_LENGTH:
        raise ValueError(f"record of {len(data)} bytes is too long for ISO 2709")
    return data


_UNCLEAN_SUBFIELD = re.compile(rb"\x1f[\x1e\x1f\x80-\xff]")
"""An empty subfield or a non-ASCII subfield code: pymarc drops or rewrites these."""


def _stored_fields(data: bytes) -> list[tuple[str, bytes]] | None:
    """Each field's tag and bytes (with its terminator), when ``data`` is already exactly what
    pymarc's ``as_marc`` writes for the record pymarc reads from it; None otherwise.

    The importer and the demo store records that way: the plain layout
    (:func:`protocols.iso2709.plain_fields`), UTF-8, no empty subfields, ASCII subfield codes.
    For those, leaving fields out and writing the rest again is plain byte work; anything else
    (and anything pymarc would refuse) takes pymarc's way, with its errors.
    """
    fields = plain_fields(data)
    if fields is None:
        return None
    area = data[int(data[12:17]):]
    if _UNCLEAN_SUBFIELD.search(area):
        return None
    try:
        area.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return [(tag, body + FIELD_TERMINATOR) for tag, body in fields]


def bibliographic_iso2709(record: CatalogueRecord, element_set: str = "F") -> bytes:
    """``iso2709(bibliographic(record, element_set))``: the same bytes, without pymarc when the
    stored record is in the form ``as_marc`` writes (see :func:`_stored_fields`)."""
    fields = _stored_fields(record.marc)
    if fields is None:
        return iso2709(bibliographic(record, element_set))
    brief = element_set == "B"
    directory, bodies = [], []
    offset = 0
    for tag, body in fields:
        if tag in HOLDINGS_TAGS or (brief and tag not in BRIEF_TAGS):
            continue
        directory.append(b"%s%04d%05d" % (tag.encode("ascii"), len(body), offset))
        bodies.append(body)
        offset += len(body)
    base = LEADER_LENGTH + 12 * len(directory) + 1
    leader = record.marc  # no longer than the stored record: within ISO 2709's 99,999 bytes
    return b"".join((b"%05d" % (base + offset + 1), leader[5:9], b"a", leader[10:12],
                     b"%05d" % base, leader[17:LEADER_LENGTH], *directory, b"\x1e", *bodies,
                     b"\x1d"))


def marc21(record: CatalogueRecord, element_set: str, view: Presentation) -> bytes:
    """ISO 2709 MARC 21 (UTF-8, or the negotiated charset) with live holdings (as many items
    as fit in 99,999 bytes)."""
    if view.record_charset is None:
        return iso2709(with_holdings(record, element_set, view, MAX_ISO2709_LENGTH))
    limit = MAX_ISO2709_LENGTH
    while True:  # a charset can take more bytes than UTF-8 (escapes, &#x...;): fit again
        data = iso2709_in(with_holdings(record, element_set, view, limit), view.record_charset)
        if len(data) <= MAX_ISO2709_LENGTH:
            return data
        if limit < 10_000:
            raise ValueError(f"record of {len(data)} bytes is too long for ISO 2709")
        limit -= len(data) - MAX_ISO2709_LENGTH + TRUNCATION_NOTE_RESERVE


def iso2709_in(marc: pymarc.Record, codec: str) -> bytes:
    """ISO 2709 with every field's text in ``codec`` (MARC-8, ISO-8859-1...), leader/09 blank:
    characters the charset lacks become ``&#xXXXX;`` (MARC 21 lossless conversion)."""
    directory: list[bytes] = []
    bodies: list[bytes] = []
    offset = 0
    for f in marc.fields:
        if f.is_control_field():
            body = _encoded(f.data or "", codec) + b"\x1e"
        else:
            body = (f.indicator1 + f.indicator2).encode("ascii") + b"".join(
                b"\x1f" + sf.code.encode("ascii") + _encoded(sf.value or "", codec)
                for sf in f.subfields) + b"\x1e"
        if len(body) > 9999:
            raise ValueError(f"field {f.tag} of {len(body)} bytes is too long for ISO 2709")
        directory.append(b"%s%04d%05d" % (f.tag.encode("ascii"), len(body), offset))
        bodies.append(body)
        offset += len(body)
    base = LEADER_LENGTH + 12 * len(directory) + 1
    leader = str(marc.leader).encode("ascii")
    return b"".join((b"%05d" % (base + offset + 1), leader[5:9], b" ", leader[10:12],
                     b"%05d" % base, leader[17:LEADER_LENGTH], *directory, b"\x1e",
                     *bodies, b"\x1d"))


def _encoded(text: str, codec: str) -> bytes:
    return text.encode(codec, NCR_ERRORS)


def _marcxml_element(marc: pymarc.Record) -> etree._Element:
    return etree.fromstring(pymarc.record_to_xml(marc, namespace=True))


_MARCXML_OPEN = (
    f'<record xmlns="{MARCXML_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    f'xsi:schemaLocation="{MARCXML_NS} http://www.loc.gov/standards/marcxml/schema/'
    'MARC21slim.xsd">')
_NOT_PLAIN = re.compile("[\x00-\x08\x0b-\x1d\ufffe\uffff]")
"""What the pymarc way rewrites (a carriage return) or refuses (other control characters,
U+FFFE/U+FFFF): such records take that way, so the answer stays the same."""


def _xml_field(tag: str, indicators: str, subfields: list[tuple[str, str]] | None,
               data: str | None) -> str:
    """One MARCXML field as text, byte for byte what lxml writes for pymarc's element."""
    if subfields is None:
        return (f'<controlfield tag="{xmltext.attribute(tag)}">{xmltext.text(data)}'
                "</controlfield>" if data else
                f'<controlfield tag="{xmltext.attribute(tag)}"/>')
    head = (f'<datafield ind1="{xmltext.attribute(indicators[0])}" '
            f'ind2="{xmltext.attribute(indicators[1])}" tag="{xmltext.attribute(tag)}"')
    if not subfields:
        return head + "/>"
    return head + ">" + "".join(
        f'<subfield code="{xmltext.attribute(code)}">{xmltext.text(value)}</subfield>'
        if value else f'<subfield code="{xmltext.attribute(code)}"/>'
        for code, value in subfields) + "</datafield>"


_SPECIAL = re.compile('[&<>]|\x1f["\t\n]|\x1f.\x1f', re.DOTALL)
"""Text that needs escaping, or an empty subfield: such records are written field by field."""


def _stored_xml_fields(record: CatalogueRecord, element_set: str) -> list[tuple[str, str]] | None:
    """The bibliographic fields of :func:`bibliographic` as (tag, MARCXML text), read from the
    stored bytes without pymarc; None when the record is not in the plain form."""
    fields = _stored_fields(record.marc)
    if fields is None:
        return None
    brief = element_set == "B"
    out = []
    for tag, body in fields:
        if tag in HOLDINGS_TAGS or (brief and tag not in BRIEF_TAGS):
            continue
        value = body[:-1].decode("utf-8")
        if _NOT_PLAIN.search(value):
            return None
        if tag < "010" and tag.isdigit():
            if "\x1f" in value:
                return None
            out.append((tag, _xml_field(tag, "", None, value)))
        elif (_SPECIAL.search(value) or value[-2:-1] == "\x1f"
              or _QUOTED.search(value[:2])):
            parts = value.split("\x1f")
            out.append((tag, _xml_field(tag, parts[0], [(p[0], p[1:]) for p in parts[1:]],
                                        None)))
        elif len(value) == 2:
            out.append((tag, f'<datafield ind1="{value[0]}" ind2="{value[1]}" tag="{tag}"/>'))
        else:  # nothing to escape, no empty subfield: the subfields in one substitution
            out.append((tag, f'<datafield ind1="{value[0]}" ind2="{value[1]}" tag="{tag}">'
                        f'<subfield code="{value[3]}">'
                        + _SUBFIELD_MARK.sub(_subfield_open, value[4:])
                        + "</subfield></datafield>"))
    return out


_QUOTED = re.compile('["\t\n]')
_SUBFIELD_MARK = re.compile("\x1f(.)", re.DOTALL)


def _subfield_open(match: re.Match[str]) -> str:
    return f'</subfield><subfield code="{match.group(1)}">'


def _insert_ordered(fields: list[tuple[str, str]], tag: str, text: str) -> None:
    """Where pymarc's ``add_ordered_field`` puts a field: before the first greater (or
    non-numeric) tag."""
    if fields and tag.isdigit():
        for index, (other, _) in enumerate(fields):
            if other > tag or not other.isdigit():
                fields.insert(index, (tag, text))
                return
    fields.append((tag, text))


def _marcxml_text(record: CatalogueRecord, element_set: str,
                  added: list[pymarc.Field]) -> WellFormed | None:
    """MARCXML of the bibliographic record plus ``added`` fields (in tag order), written as
    text in one pass; None when the stored record or a value needs pymarc's way."""
    leader = record.marc[:LEADER_LENGTH]
    fields = _stored_xml_fields(record, element_set)
    if fields is None or not leader.isascii() or _NOT_PLAIN.search(leader.decode("ascii")):
        return None
    tags = [tag for tag, _ in fields]
    ordered = all(tag.isdigit() for tag in tags) and tags == sorted(tags)
    for field in added:
        values = [sf.value or "" for sf in field.subfields]
        if any(_NOT_PLAIN.search(v) for v in values):
            return None
        text = _xml_field(field.tag, field.indicator1 + field.indicator2,
                          [(sf.code, sf.value or "") for sf in field.subfields], None)
        if ordered and field.tag.isdigit():  # the same place, found by bisection
            index = bisect.bisect_right(tags, field.tag)
            tags.insert(index, field.tag)
            fields.insert(index, (field.tag, text))
        else:
            ordered = False
            _insert_ordered(fields, field.tag, text)
    text = leader[:9].decode("ascii") + "a" + leader[10:].decode("ascii")
    return WellFormed((f"{_MARCXML_OPEN}<leader>{xmltext.text(text)}</leader>"
                       + "".join(t for _, t in fields) + "</record>").encode("utf-8"))


def bibliographic_marcxml(record: CatalogueRecord, element_set: str = "F") -> bytes:
    """MARCXML of :func:`bibliographic` (no holdings), written as text where it can be."""
    text = _marcxml_text(record, element_set, [])
    if text is not None:
        return text
    return etree.tostring(_marcxml_element(bibliographic(record, element_set)),
                          encoding="utf-8")


def marcxml(record: CatalogueRecord, element_set: str, view: Presentation) -> bytes:
    """MARCXML (``<record xmlns="http://www.loc.gov/MARC21/slim">``) with live holdings.

    Written as text in one pass from the stored bytes (a :class:`~protocols.xmltext.WellFormed`
    the SRU and OAI-PMH writers embed as it is); a record not in the plain form takes pymarc's
    way, and both give the same bytes."""
    added = [field for item in record.items
             for field in holdings_fields(item, view.holdings_tag, view.agency_id)]
    text = _marcxml_text(record, element_set, added)
    if text is not None:
        return text
    return etree.tostring(_marcxml_element(with_holdings(record, element_set, view)),
                          encoding="utf-8")


# -- OPAC ----------------------------------------------------------------------------------------

def opac_holding(item: ItemState, agency_id: str) -> Holding:
    """One item as an OPAC HoldingsAndCircData with its CircRecord."""
    circulation = CirculationItem(
        available_now=item.available_now,
        item_id=item.barcode,
        availability_date=item.due_date,
        available_thru=item.loan_policy or None,
        renewable=False,
        on_hold=item.on_hold,
        temporary_location=_TEMPORARY_LOCATION.get(item.status),
    )
    return Holding(
        nuc_code=agency_id,
        local_location=item.location or agency_id,
        shelving_location=item.shelving_location or None,
        call_number=item.call_number or None,
        copy_number=item.copy_number or None,
        public_note=item.public_note,
        circulation=(circulation,),
    )


OPAC_MEMO_SIZE = 512
"""OPAC records (UTF-8) remembered by their inputs: :func:`opac` is pure, so a record presented
again with the same stored MARC, the same live item states and the same agency is the same
value. Bounded (the memo starts over when full): at most this many records' bytes are held."""

_opac_memo: dict[tuple[Any, ...], OpacRecord] = {}


def opac(record: CatalogueRecord, element_set: str, view: Presentation) -> OpacRecord:
    """The OPAC record: the MARC record (without holdings fields) plus one holding per item.

    UTF-8 records come from a bounded memo keyed by everything they are made of (stored MARC,
    item states, element set, agency id): presenting the same record again costs one hash of
    its inputs instead of the MARC copy and one frozen dataclass pair per item. The key holds
    the item states by value, so a loan, return or hold (a new ItemState) is a new key.
    """
    esn = "B" if element_set == "B" else "F"
    if view.record_charset is None:
        key = (esn, view.agency_id, record.marc, record.items)
        found = _opac_memo.get(key)
        if found is None:
            found = _opac(record, esn, view)
            if len(_opac_memo) >= OPAC_MEMO_SIZE:
                _opac_memo.clear()  # readers may race here: a lost entry is only a miss
            _opac_memo[key] = found
        return found
    return _opac(record, esn, view)


def _opac(record: CatalogueRecord, esn: str, view: Presentation) -> OpacRecord:
    """:func:`opac` without the memo."""
    marc = bibliographic_iso2709(record, esn) if view.record_charset is None else \
        iso2709_in(bibliographic(record, esn), view.record_charset)
    holdings = tuple(opac_holding(i, view.agency_id) for i in record.items)
    if view.record_charset is not None:
        holdings = tuple(_holding_in(h, view.record_charset) for h in holdings)
    return OpacRecord(bibliographic=marc, bib_syntax=oids.USMARC, holdings=holdings)


def _holding_in(holding: Holding, codec: str) -> Holding:
    """A holding with its text in ``codec`` (bytes: the OPAC encoders send bytes as they are)."""

    def text_in(item: Any) -> dict[str, Any]:
        return {f.name: getattr(item, f.name).encode(codec, NCR_ERRORS) for f in fields(item)
                if isinstance(getattr(item, f.name), str)}

    return replace(holding, circulation=tuple(replace(c, **text_in(c))
                                              for c in holding.circulation),
                   **text_in(holding))


def opac_xml(record: CatalogueRecord, element_set: str, view: Presentation) -> bytes:
    """YAZ's XML form of the OPAC record (``opacxml.xsd``), as SRU proxies hand it to ReShare.

    Written as text in one pass (a :class:`~protocols.xmltext.WellFormed`), byte for byte what
    lxml writes; a record or an item value the text way cannot write is built with lxml."""
    bib = bibliographic_marcxml(record, "F")
    if isinstance(bib, WellFormed):
        holdings = []
        for item in record.items:
            text = _opac_holding_text(opac_holding(item, view.agency_id))
            if text is None:
                return _opac_xml_tree(record, view)
            holdings.append(text)
        tail = ("<holdings>" + "".join(holdings) + "</holdings>" if holdings
                else "<holdings/>")
        return WellFormed(b"".join((b"<opacRecord><bibliographicRecord>", bib,
                                    b"</bibliographicRecord>", tail.encode("utf-8"),
                                    b"</opacRecord>")))
    return _opac_xml_tree(record, view)


def _opac_element(name: str, value: str) -> str:
    return f"<{name}>{xmltext.text(value)}</{name}>" if value else f"<{name}></{name}>"


def _opac_holding_text(h: Holding) -> str | None:
    """One ``<holding>`` as text; None when a value holds a character XML cannot carry."""
    values = [h.nuc_code, h.local_location, h.shelving_location, h.call_number, h.copy_number,
              h.public_note]
    for c in h.circulation:
        values += [c.availability_date, c.available_thru, c.item_id, c.temporary_location]
    if any(isinstance(v, str) and xmltext.NOT_XML_CHAR.search(v) for v in values) or \
            any(v is not None and not isinstance(v, str) for v in values):
        return None
    out = ["<holding>"]
    for name, value in (("nucCode", h.nuc_code), ("localLocation", h.local_location),
                        ("shelvingLocation", h.shelving_location),
                        ("callNumber", h.call_number), ("copyNumber", h.copy_number),
                        ("publicNote", h.public_note)):
        if value is not None:
            out.append(_opac_element(name, value))
    if not h.circulation:
        out.append("<circulations/></holding>")
        return "".join(out)
    out.append("<circulations>")
    for c in h.circulation:
        out.append(f'<circulation><availableNow value="{"1" if c.available_now else "0"}"/>')
        for name, text in (("availabilityDate", c.availability_date),
                           ("availableThru", c.available_thru), ("itemId", c.item_id)):
            if text is not None:
                out.append(_opac_element(name, text))
        out.append(f'<renewable value="{"1" if c.renewable else "0"}"/>'
                   f'<onHold value="{"1" if c.on_hold else "0"}"/>')
        if c.temporary_location is not None:
            out.append(_opac_element("temporaryLocation", c.temporary_location))
        out.append("</circulation>")
    out.append("</circulations></holding>")
    return "".join(out)


def _opac_xml_tree(record: CatalogueRecord, view: Presentation) -> bytes:
    """:func:`opac_xml` built with lxml (records the text way cannot write)."""
    root = etree.Element("opacRecord")
    bib = etree.SubElement(root, "bibliographicRecord")
    bib.append(etree.fromstring(bibliographic_marcxml(record, "F")))
    holdings = etree.SubElement(root, "holdings")
    for item in record.items:
        h = opac_holding(item, view.agency_id)
        holding = etree.SubElement(holdings, "holding")
        for name, value in (("nucCode", h.nuc_code), ("localLocation", h.local_location),
                            ("shelvingLocation", h.shelving_location),
                            ("callNumber", h.call_number), ("copyNumber", h.copy_number),
                            ("publicNote", h.public_note)):
            if value is not None:
                etree.SubElement(holding, name).text = value
        circulations = etree.SubElement(holding, "circulations")
        for c in h.circulation:
            circ = etree.SubElement(circulations, "circulation")
            etree.SubElement(circ, "availableNow", value="1" if c.available_now else "0")
            for name, text in (("availabilityDate", c.availability_date),
                               ("availableThru", c.available_thru), ("itemId", c.item_id)):
                if text is not None:
                    etree.SubElement(circ, name).text = text
            etree.SubElement(circ, "renewable", value="1" if c.renewable else "0")
            etree.SubElement(circ, "onHold", value="1" if c.on_hold else "0")
            if c.temporary_location is not None:
                etree.SubElement(circ, "temporaryLocation").text = c.temporary_location
    return WellFormed(etree.tostring(root, encoding="utf-8"))


# -- SUTRS ---------------------------------------------------------------------------------------

def _values(marc: pymarc.Record, tags: tuple[str, ...], codes: str) -> list[str]:
    out = []
    for f in marc.get_fields(*tags):
        if f.is_control_field():
            continue
        text = " ".join(sf.value.strip() for sf in f.subfields if sf.code in codes and sf.value)
        if text:
            out.append(text)
    return out


def sutrs_text(record: CatalogueRecord, element_set: str) -> str:
    """A readable plain-text rendering: main bibliographic data, then one line per item."""
    marc = bibliographic(record, "F")
    lines = [("Local number", record.local_id)]
    lines += [("Title", v) for v in _values(marc, ("245",), "abnp")[:1]]
    lines += [("Author", v) for v in _values(marc, ("100", "110", "111"), "abcdq")]
    lines += [("Published", v) for v in _values(marc, ("264", "260"), "abc")[:1]]
    if element_set != "B":
        lines += [("Edition", v) for v in _values(marc, ("250",), "ab")]
        lines += [("Description", v) for v in _values(marc, ("300",), "abc")]
        lines += [("Other author", v) for v in _values(marc, ("700", "710"), "abcd")]
        lines += [("ISBN", v) for v in _values(marc, ("020",), "a")]
        lines += [("ISSN", v) for v in _values(marc, ("022",), "a")]
        lines += [("Subject", v) for v in _values(
            marc, ("600", "610", "611", "630", "650", "651"), "abcdvxyz")]
    text = "".join(f"{label}: {value}\n" for label, value in lines)
    if record.items:
        text += "Holdings:\n"
    for item in record.items:
        parts = [item.location, item.shelving_location, item.call_number,
                 f"copy {item.copy_number}" if item.copy_number else "",
                 f"barcode {item.barcode}", item.status_text,
                 f"due {item.due_date}" if item.due_date else "", item.loan_policy]
        text += "  " + "; ".join(p for p in parts if p) + "\n"
    return text


def sutrs(record: CatalogueRecord, element_set: str, view: Presentation) -> bytes:
    """SUTRS text in the negotiated or the peer's character set (unencodable characters
    replaced: ``&#xXXXX;`` in a negotiated one)."""
    if view.record_charset is not None:
        return sutrs_text(record, element_set).encode(view.record_charset, NCR_ERRORS)
    return sutrs_text(record, element_set).encode(view.charset, errors="replace")
