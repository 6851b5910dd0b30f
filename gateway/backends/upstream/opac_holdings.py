# -*- test-case-name: tests.gateway.test_upstream_holdings -*-
"""Items from OPAC records (Z39.50 OPAC syntax, or its XML form over SRU): one per CircRecord.

* **generic-opac** and **alma**: ``availableNow`` 1 is available (with ``onHold`` kept);
  otherwise an ``availabilityDate`` is the due date of a loan (Alma writes ``01/25/2023``), and
  without one the item is unavailable. ``availableThru`` is the item policy (our item type).
* **folio** (Net::Z3950::FOLIO): the item status name in ``restrictions`` (``Checked out``,
  ``Awaiting pickup``, ``Declared lost``...) decides, else ``availableNow``; ``temporaryLocation``
  is the item's effective location.
* **sierra**: the holding's ``publicNote`` carries the status (``AVAILABLE``, ``CHECK SHELVES``,
  ``DUE 01-11-23 +1 HOLD``, ``LIB USE ONLY``...), as ReShare's Sierra adapter reads it; a holding
  may have no CircRecord at all and is then one item.

:func:`opac_from_xml` reads YAZ's OPAC XML (``opacxml.xsd``) into the same
:class:`~protocols.z3950.records.OpacRecord` model the Z39.50 codec produces.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.xmlreader import AttributesNSImpl

import pymarc
from lxml import etree

from gateway.backends.upstream.items import HoldingsItem, ItemStatus, iso_date
from gateway.backends.upstream.profile import HoldingsProfile, word_key
from protocols.z3950 import oids
from protocols.z3950.records import CirculationItem, Holding, OpacRecord, VolumeInfo

S = ItemStatus

FOLIO_STATUSES: Mapping[str, ItemStatus] = {
    # FOLIO inventory item status names.
    "available": S.AVAILABLE, "checked out": S.ON_LOAN, "awaiting pickup": S.ON_HOLD_SHELF,
    "awaiting delivery": S.ON_HOLD_SHELF, "in transit": S.IN_TRANSIT, "missing": S.MISSING,
    "long missing": S.MISSING, "declared lost": S.LOST, "aged to lost": S.LOST,
    "lost and paid": S.LOST, "claimed returned": S.LOST, "withdrawn": S.WITHDRAWN,
    "on order": S.ON_ORDER, "restricted": S.NOT_FOR_LOAN, "intellectual item": S.NOT_FOR_LOAN,
    "in process": S.UNAVAILABLE, "in process (non-requestable)": S.UNAVAILABLE,
    "order closed": S.UNAVAILABLE, "paged": S.UNAVAILABLE, "unavailable": S.UNAVAILABLE,
    "unknown": S.UNAVAILABLE,
}
SIERRA_STATUSES: Mapping[str, ItemStatus] = {
    # Sierra/Millennium item status display texts (the ``DUE mm-dd-yy`` form is read apart).
    "available": S.AVAILABLE, "check shelves": S.AVAILABLE, "check shelf": S.AVAILABLE,
    "in transit": S.IN_TRANSIT, "missing": S.MISSING, "on search": S.MISSING, "lost": S.LOST,
    "billed": S.LOST, "lost and paid": S.LOST, "on holdshelf": S.ON_HOLD_SHELF,
    "ready for pickup": S.ON_HOLD_SHELF, "lib use only": S.NOT_FOR_LOAN,
    "library use only": S.NOT_FOR_LOAN, "on order": S.ON_ORDER, "in process": S.UNAVAILABLE,
    "damaged": S.DAMAGED, "in repair": S.DAMAGED, "withdrawn": S.WITHDRAWN,
}
_SIERRA_DUE = re.compile(r"due\b", re.I)
_SIERRA_HOLDS = re.compile(r"\s*\+\s*\d+\s+holds?\s*$", re.I)


def _text(value: str | None) -> str:
    return (value or "").strip()


def _base(holding: Holding, circulation: CirculationItem | None, status: ItemStatus,
          words: str, due: str | None = None, on_hold: bool = False) -> HoldingsItem:
    return HoldingsItem(
        status=status,
        barcode=_text(circulation.item_id) if circulation else "",
        location=_text(holding.local_location) or _text(holding.nuc_code),
        shelving_location=_text(holding.shelving_location),
        call_number=_text(holding.call_number),
        copy_number=_text(holding.copy_number),
        item_type=_text(circulation.available_thru) if circulation else "",
        due_date=due if status is S.ON_LOAN else None,
        on_hold=on_hold,
        temporary_location=_text(circulation.temporary_location) if circulation else "",
        lms_status=words,
    )


def flagged_item(profile: HoldingsProfile, holding: Holding,
                 circulation: CirculationItem) -> HoldingsItem:
    """generic-opac and alma: the CircRecord's flags and date decide."""
    words = _text(circulation.restrictions)
    if circulation.available_now:
        return _base(holding, circulation, S.AVAILABLE, words or "Available",
                     on_hold=circulation.on_hold)
    due = iso_date(circulation.availability_date, profile.date_order)
    if due:
        return _base(holding, circulation, S.ON_LOAN, words or "Checked out", due,
                     on_hold=circulation.on_hold)
    return _base(holding, circulation, S.UNAVAILABLE, words, on_hold=circulation.on_hold)


def folio_item(profile: HoldingsProfile, holding: Holding,
               circulation: CirculationItem) -> HoldingsItem:
    """folio: the item status name (in ``restrictions``) first, then the flags."""
    words = _text(circulation.restrictions)
    known = (profile.status_word(words) or FOLIO_STATUSES.get(word_key(words))) if words \
        else None
    if known is None and (circulation.available_now or not words):
        return flagged_item(profile, holding, circulation)
    status = known or profile.unmapped_status or S.UNAVAILABLE
    if status is S.AVAILABLE and not circulation.available_now:
        status = S.UNAVAILABLE  # the LMS says: not now
    due = iso_date(circulation.availability_date, profile.date_order)
    return _base(holding, circulation, status, words, due, on_hold=circulation.on_hold)


def sierra_item(profile: HoldingsProfile, holding: Holding,
                circulation: CirculationItem | None) -> HoldingsItem:
    """sierra: the public note (``AVAILABLE``, ``DUE 01-11-23 +2 HOLDS``...) decides."""
    note = _text(holding.public_note)
    held = bool(_SIERRA_HOLDS.search(note))
    word = _SIERRA_HOLDS.sub("", note)
    if not word and circulation is not None:
        return flagged_item(profile, holding, circulation)
    on_hold = held or bool(circulation and circulation.on_hold)
    if _SIERRA_DUE.match(word):
        return _base(holding, circulation, S.ON_LOAN, note,
                     iso_date(word[3:], profile.date_order), on_hold=on_hold)
    status = profile.status_word(word) or SIERRA_STATUSES.get(word_key(word)) \
        or profile.unmapped_status or S.UNAVAILABLE
    return _base(holding, circulation, status, note, on_hold=on_hold)


def opac_items(profile: HoldingsProfile, holdings: Sequence[Holding]) -> tuple[
        list[HoldingsItem], list[str]]:
    """Every item of an OPAC record's holdings, and a note for each holding without one."""
    items: list[HoldingsItem] = []
    notes: list[str] = []
    for number, holding in enumerate(holdings, 1):
        if holding.marc_holdings is not None:
            notes.append(f"holding #{number}: a MARC holdings record, not read")
            continue
        if not holding.circulation:
            if profile.name == "sierra" and _text(holding.public_note):
                items.append(sierra_item(profile, holding, None))
            else:
                notes.append(f"holding #{number}: no circulation record, no item")
            continue
        for circulation in holding.circulation:
            if profile.name == "sierra":
                items.append(sierra_item(profile, holding, circulation))
            elif profile.name == "folio":
                items.append(folio_item(profile, holding, circulation))
            else:
                items.append(flagged_item(profile, holding, circulation))
    return items, notes


# -- OPAC XML ------------------------------------------------------------------------------------

_HOLDING_TEXT = {
    "typeOfRecord": "type_of_record", "encodingLevel": "encoding_level", "format": "format",
    "receiptAcqStatus": "receipt_acq_status", "generalRetention": "general_retention",
    "completeness": "completeness", "dateOfReport": "date_of_report", "nucCode": "nuc_code",
    "localLocation": "local_location", "shelvingLocation": "shelving_location",
    "callNumber": "call_number", "shelvingData": "shelving_data", "copyNumber": "copy_number",
    "publicNote": "public_note", "reproductionNote": "reproduction_note",
    "termsUseRepro": "terms_use_repro", "enumAndChron": "enum_and_chron",
}
_CIRCULATION_TEXT = {
    "availabilityDate": "availability_date", "availablityDate": "availability_date",
    "availableThru": "available_thru", "restrictions": "restrictions", "itemId": "item_id",
    "enumAndChron": "enum_and_chron", "midspine": "midspine",
    "temporaryLocation": "temporary_location",
}
_CIRCULATION_FLAGS = {"availableNow": "available_now", "renewable": "renewable",
                      "onHold": "on_hold"}
_VOLUME_TEXT = {"enumeration": "enumeration", "chronology": "chronology",
                "enumAndChron": "enum_and_chron"}


def _name(element: etree._Element) -> str:
    return etree.QName(element).localname


def _children(element: etree._Element, name: str) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str) and _name(child) == name]


def _texts(element: etree._Element, names: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for child in element:
        if isinstance(child.tag, str) and _name(child) in names:
            text = (child.text or "").strip()
            if text:
                out[names[_name(child)]] = text
    return out


def _circulation(element: etree._Element) -> CirculationItem:
    values: dict[str, Any] = {name: False for name in _CIRCULATION_FLAGS.values()}
    for child in element:
        if isinstance(child.tag, str) and _name(child) in _CIRCULATION_FLAGS:
            value = child.get("value", child.text or "").strip().lower()
            values[_CIRCULATION_FLAGS[_name(child)]] = value in ("1", "true", "yes")
    values.update(_texts(element, _CIRCULATION_TEXT))
    return CirculationItem(**values)


def _holding(element: etree._Element) -> Holding:
    volumes = tuple(VolumeInfo(**_texts(volume, _VOLUME_TEXT))
                    for group in _children(element, "volumes")
                    for volume in _children(group, "volume"))
    circulation = tuple(_circulation(c) for group in _children(element, "circulations")
                        for c in _children(group, "circulation"))
    texts: dict[str, Any] = _texts(element, _HOLDING_TEXT)
    return Holding(volumes=volumes, circulation=circulation, **texts)


def marc_from_xml(element: etree._Element) -> pymarc.Record | None:
    """A MARCXML ``record`` element as a pymarc record (None when it holds no record).

    pymarc's own MARCXML handler builds the record from the parsed tree's elements, as its
    SAX parse of the serialised element would (same events, same handler); a tree with
    anything but elements and text in it (a comment, an unresolved entity...) is serialised
    and parsed by pymarc as before."""
    handler = pymarc.XmlHandler()
    try:
        _replay(element, handler)
    except (_NotPlain, RecursionError):
        handler = pymarc.XmlHandler()
        pymarc.parse_xml(io.BytesIO(etree.tostring(element)), handler)
    records = handler.records
    return records[0] if records and records[0] is not None else None


def _sax_name(clark: str) -> tuple[str | None, str]:
    """``{namespace}local`` (lxml's name) as SAX's ``(namespace, local)`` pair."""
    if clark[:1] == "{":
        namespace, _, local = clark[1:].partition("}")
        return namespace, local
    return None, clark


class _NotPlain(Exception):
    """A node :func:`_replay` does not replay (the SAX parse decides)."""


def _replay(element: etree._Element, handler: pymarc.XmlHandler) -> None:
    """The SAX namespace events of ``element``'s subtree, in document order, to ``handler``
    (text as one ``characters`` call where the parser may make several: the handler joins
    them)."""
    tag = element.tag
    if not isinstance(tag, str):
        raise _NotPlain
    name = _sax_name(tag)
    attributes = {_sax_name(key): value for key, value in element.attrib.items()}
    handler.startElementNS(name, None, AttributesNSImpl(attributes, {}))
    text = element.text
    for child in element:
        if text:
            handler.characters(text)
        _replay(child, handler)
        text = child.tail
    if text:
        handler.characters(text)
    handler.endElementNS(name, None)


def opac_from_xml(element: etree._Element) -> OpacRecord:
    """An ``opacRecord`` element (YAZ's OPAC XML) as an :class:`OpacRecord`, the bibliographic
    record as UTF-8 ISO 2709."""
    bibliographic = None
    for bib in _children(element, "bibliographicRecord"):
        for child in bib:
            if isinstance(child.tag, str) and _name(child) == "record":
                marc = marc_from_xml(child)
                if marc is not None:
                    marc.force_utf8 = True
                    bibliographic = marc.as_marc()
    holdings = tuple(_holding(h) for group in _children(element, "holdings")
                     for h in _children(group, "holding"))
    return OpacRecord(bibliographic=bibliographic, bib_syntax=oids.USMARC, holdings=holdings)
