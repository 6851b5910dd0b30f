# -*- test-case-name: tests.gateway.test_importers -*-
"""Items from the holdings fields of a bibliographic record: MARC 852 and Koha's 952.

One field describes one item (copy). Items are keyed by barcode, so a field without one cannot
become an item: it is skipped and the caller reports why.

852 (MARC holdings location): $a institution, $b sublocation (branch) → location, $c shelving
location, $k/$h/$i/$m call number (prefix, classification part, item part, suffix) or $j
(shelving control number), $t copy number, $p barcode.

952 (Koha items): $a home branch → location ($b holding branch when $a is empty), $c shelving
location, $o call number, $p barcode, $t copy number, $0 withdrawn, $1 lost, $7 not for loan,
$q due date (the item is on loan).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pymarc

from gateway.backends.embedded.records import ItemData, LightField, light_fields

HOLDINGS_TAGS = ("852", "952")
NOT_FOR_LOAN_POLICY = "not_for_loan"


@dataclass(frozen=True)
class Holdings:
    """The items found in one record, and a note for each holdings field that was skipped."""

    items: tuple[ItemData, ...]
    skipped: tuple[str, ...]


def _firsts(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The first non-empty value of each subfield code, stripped."""
    values: dict[str, str] = {}
    for code, value in pairs:
        if code not in values and value and value.strip():
            values[code] = value.strip()
    return values


def _flag(values: dict[str, str], code: str) -> bool:
    """Koha's status subfields: empty or 0 means "no", any other value "yes"."""
    return values.get(code, "0") != "0"


def _item_from_852(values: dict[str, str], barcode: str) -> ItemData:
    call_number = " ".join(values[c] for c in "khim" if c in values)
    return ItemData(
        barcode=barcode,
        location=values.get("b") or values.get("a", ""),
        shelving_location=values.get("c", ""),
        call_number=call_number or values.get("j", ""),
        copy_number=values.get("t", ""),
    )


def _item_from_952(values: dict[str, str], barcode: str) -> ItemData:
    if _flag(values, "0"):
        status = "withdrawn"
    elif _flag(values, "1"):
        status = "missing"
    elif values.get("q"):
        status = "on_loan"
    else:
        status = "available"
    return ItemData(
        barcode=barcode,
        location=values.get("a") or values.get("b", ""),
        shelving_location=values.get("c", ""),
        call_number=values.get("o", ""),
        copy_number=values.get("t", ""),
        status=status,
        loan_policy=NOT_FOR_LOAN_POLICY if _flag(values, "7") else "standard",
    )


def extract_items(record: pymarc.Record) -> Holdings:
    """The items described by a record's 852 and 952 fields, in field order.

    A field without a barcode ($p), or repeating a barcode already seen in the same record, is
    skipped with a note naming the field (``"852 #2: no barcode ($p)"``).
    """
    return extract_light_items(light_fields(record))


def extract_light_items(fields: Iterable[LightField]) -> Holdings:
    """:func:`extract_items` for a record given as (tag, data, subfields) tuples."""
    items: list[ItemData] = []
    skipped: list[str] = []
    seen: set[str] = set()
    counts = {tag: 0 for tag in HOLDINGS_TAGS}
    for field in fields:
        tag = field[0]
        if tag not in counts:
            continue
        data, pairs = field[1], field[2]
        counts[tag] += 1
        name = f"{tag} #{counts[tag]}"
        if data is not None:
            skipped.append(f"{name}: not a data field")
            continue
        values = _firsts(pairs)
        barcode = values.get("p", "")
        if not barcode:
            skipped.append(f"{name}: no barcode ($p), item skipped")
            continue
        if barcode in seen:
            skipped.append(f"{name}: barcode {barcode!r} repeated in the record, item skipped")
            continue
        seen.add(barcode)
        build = _item_from_852 if tag == "852" else _item_from_952
        items.append(build(values, barcode))
    return Holdings(items=tuple(items), skipped=tuple(skipped))
