# -*- test-case-name: tests.gateway.test_upstream_holdings -*-
"""Items from the item fields of a MARC record: one field per item.

* **koha** (952, one per item, as Koha's Zebra indexes them): status from Koha's own columns:
  ``$0`` withdrawn, ``$1`` lost (authorised values LOST: 1 Lost, 2 Long overdue, 3 Lost and paid
  for, 4 Missing, 5 Missing from bundle), ``$q`` due date (present only while on loan), ``$4``
  damaged, ``$7`` not for loan (NOT_LOAN: 1 Not for loan, 2 Staff collection, 3 Added to bundle;
  negative values such as -1 Ordered are on order), ``$5`` restricted; holding branch ``$b``
  other than home branch ``$a`` means in transit. Item type ``$y``, else the record's ``942$c``.
  Koha lets staff check out a damaged or restricted item after a warning; a gateway cannot
  ask, so neither is offered (damaged, not for loan).
* **evergreen** (852 ``$n``), **polaris** (852 ``$r``), **symphony** (926 ``$b``, a shelf or a
  status location such as ``CHECKEDOUT``) and **generic-marc** (any tag, configured subfields):
  the status is a word, looked up in the library's ``status_map`` and then the LMS's stock
  vocabulary below; an item with a due date and no known status word is on loan.

The subfields each role is read from are the profile's (:data:`.profile.DEFAULT_SUBFIELDS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pymarc

from gateway.backends.upstream.items import HoldingsItem, ItemStatus, iso_date
from gateway.backends.upstream.profile import HoldingsProfile, word_key

S = ItemStatus

EVERGREEN_STATUSES: Mapping[str, ItemStatus] = {
    # Evergreen's stock copy statuses (config.copy_status, ids 0-18).
    "available": S.AVAILABLE, "reshelving": S.AVAILABLE, "checked out": S.ON_LOAN,
    "on holds shelf": S.ON_HOLD_SHELF, "on reservation shelf": S.ON_HOLD_SHELF,
    "in transit": S.IN_TRANSIT, "lost": S.LOST, "long overdue": S.LOST, "lost and paid": S.LOST,
    "missing": S.MISSING, "damaged": S.DAMAGED, "discard/weed": S.WITHDRAWN,
    "on order": S.ON_ORDER, "reserves": S.NOT_FOR_LOAN, "in process": S.UNAVAILABLE,
    "cataloging": S.UNAVAILABLE, "bindery": S.UNAVAILABLE, "ill": S.UNAVAILABLE,
    "canceled transit": S.UNAVAILABLE,
}
POLARIS_STATUSES: Mapping[str, ItemStatus] = {
    # Polaris circulation statuses as its Z39.50 server writes them in 852 $r.
    "in": S.AVAILABLE, "shelving": S.AVAILABLE, "out": S.ON_LOAN, "out-ill": S.ON_LOAN,
    "held": S.ON_HOLD_SHELF, "in-transit": S.IN_TRANSIT, "transferred": S.IN_TRANSIT,
    "lost": S.LOST, "claim returned": S.LOST, "claim never had": S.LOST,
    "claim missing parts": S.MISSING, "missing": S.MISSING, "withdrawn": S.WITHDRAWN,
    "non-circulating": S.NOT_FOR_LOAN, "on-order": S.ON_ORDER, "in-repair": S.DAMAGED,
    "in-process": S.UNAVAILABLE, "bindery": S.UNAVAILABLE, "routed": S.UNAVAILABLE,
    "returned-ill": S.UNAVAILABLE, "unavailable": S.UNAVAILABLE,
}
SYMPHONY_STATUSES: Mapping[str, ItemStatus] = {
    # SirsiDynix Symphony's status locations; any other current location is a shelf.
    "checkedout": S.ON_LOAN, "holds": S.ON_HOLD_SHELF, "intransit": S.IN_TRANSIT,
    "in-transit": S.IN_TRANSIT, "missing": S.MISSING, "lost": S.LOST, "lost-assum": S.LOST,
    "lost-claim": S.LOST, "lost-paid": S.LOST, "discard": S.WITHDRAWN, "withdrawn": S.WITHDRAWN,
    "damaged": S.DAMAGED, "repair": S.DAMAGED, "reserves": S.NOT_FOR_LOAN,
    "on-order": S.ON_ORDER, "onorder": S.ON_ORDER, "inprocess": S.UNAVAILABLE,
    "cataloging": S.UNAVAILABLE, "bindery": S.UNAVAILABLE, "ill": S.UNAVAILABLE,
}
GENERIC_STATUSES: Mapping[str, ItemStatus] = {
    **{status.value.replace("_", " "): status for status in ItemStatus},
    "checked out": S.ON_LOAN, "on hold": S.ON_HOLD_SHELF,
}
"""Plain English words any generic profile understands besides its ``status_map``."""

VOCABULARIES: Mapping[str, Mapping[str, ItemStatus]] = {
    "evergreen": EVERGREEN_STATUSES, "polaris": POLARIS_STATUSES,
    "symphony": SYMPHONY_STATUSES, "generic-marc": GENERIC_STATUSES,
}
UNMAPPED_DEFAULTS: Mapping[str, ItemStatus] = {"symphony": S.AVAILABLE}
"""The status of an unknown word when the library did not choose one (a Symphony shelf)."""
ABSENT_DEFAULTS: Mapping[str, ItemStatus] = {"generic-marc": S.AVAILABLE}
"""The status of an item stating none when the library did not choose one."""

KOHA_LOST = {"1": "Lost", "2": "Long overdue (lost)", "3": "Lost and paid for", "4": "Missing",
             "5": "Missing from bundle"}
KOHA_MISSING = frozenset({"4", "5"})
KOHA_NOT_FOR_LOAN = {"1": "Not for loan", "2": "Staff collection", "3": "Added to bundle",
                     "-1": "Ordered"}


def subfield_values(field: pymarc.Field) -> dict[str, str]:
    """The first non-empty value of each subfield code, stripped."""
    values: dict[str, str] = {}
    for subfield in field.subfields:
        value = (subfield.value or "").strip()
        if value and subfield.code not in values:
            values[subfield.code] = value
    return values


def role_value(values: Mapping[str, str], profile: HoldingsProfile, role: str) -> str:
    """The value of ``role`` in a field (see :data:`.profile.SUBFIELD_ROLES`)."""
    codes = profile.subfields.get(role, "")
    if role == "call_number":
        return " ".join(values[code] for code in codes if code in values)
    return next((values[code] for code in codes if code in values), "")


def _item(values: Mapping[str, str], profile: HoldingsProfile, status: ItemStatus, words: str,
          item_type: str = "") -> HoldingsItem:
    due = iso_date(role_value(values, profile, "due_date"), profile.date_order)
    return HoldingsItem(
        status=status,
        barcode=role_value(values, profile, "barcode"),
        location=role_value(values, profile, "location"),
        shelving_location=role_value(values, profile, "shelving_location"),
        call_number=role_value(values, profile, "call_number"),
        copy_number=role_value(values, profile, "copy_number"),
        item_type=role_value(values, profile, "item_type") or item_type,
        collection=role_value(values, profile, "collection"),
        due_date=due if status is ItemStatus.ON_LOAN else None,
        temporary_location=role_value(values, profile, "temporary_location"),
        lms_status=words,
    )


def _set(value: str | None) -> bool:
    """Koha's status columns: absent, empty or 0 means no."""
    return bool(value) and value != "0"


def _number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 1  # a non-numeric authorised value is still a value


def koha_status(values: Mapping[str, str], profile: HoldingsProfile) -> tuple[ItemStatus, str]:
    """The status of one Koha 952 item, and Koha's words for it."""
    lost, not_for_loan = values.get("1", "0"), values.get("7", "0")
    if _set(values.get("0")):
        return S.WITHDRAWN, "Withdrawn"
    if _set(lost):
        status = S.MISSING if lost in KOHA_MISSING else S.LOST
        return status, KOHA_LOST.get(lost, f"Lost ({lost})")
    if role_value(values, profile, "due_date"):
        return S.ON_LOAN, "Checked out"
    if _set(values.get("4")):
        return S.DAMAGED, "Damaged"
    if _set(not_for_loan):
        words = KOHA_NOT_FOR_LOAN.get(not_for_loan, f"Not for loan ({not_for_loan})")
        return (S.ON_ORDER if _number(not_for_loan) < 0 else S.NOT_FOR_LOAN), words
    if _set(values.get("5")):
        return S.NOT_FOR_LOAN, "Restricted access"
    home, holding = values.get("a"), values.get("b")
    if profile.transit_when_branches_differ and home and holding and home != holding:
        return S.IN_TRANSIT, "In transit"
    return S.AVAILABLE, "Available"


def koha_item(values: Mapping[str, str], profile: HoldingsProfile,
              record: pymarc.Record) -> HoldingsItem:
    """One Koha item; its type is the record's (942$c) when the item has none."""
    status, words = koha_status(values, profile)
    record_type = next((subfield_values(f).get("c", "") for f in record.get_fields("942")), "")
    return _item(values, profile, status, words, record_type)


def worded_item(values: Mapping[str, str], profile: HoldingsProfile) -> HoldingsItem:
    """One item whose status is a word (Evergreen, Polaris, Symphony, generic-marc)."""
    word = role_value(values, profile, "status")
    vocabulary = VOCABULARIES.get(profile.name, GENERIC_STATUSES)
    known = (profile.status_word(word) or vocabulary.get(word_key(word))) if word else None
    if known is not None:
        status = known
    elif word:
        status = profile.unmapped_status or UNMAPPED_DEFAULTS.get(profile.name, S.UNAVAILABLE)
        if status is S.AVAILABLE and role_value(values, profile, "due_date"):
            status = S.ON_LOAN  # a shelf name, and a due date: out on loan
    elif role_value(values, profile, "due_date"):
        status = S.ON_LOAN
    else:
        status = profile.absent_status or ABSENT_DEFAULTS.get(profile.name, S.UNAVAILABLE)
    item = _item(values, profile, status, word)
    shelf_codes = profile.subfields.get("shelving_location")
    if known is not None and shelf_codes and shelf_codes == profile.subfields.get("status"):
        # Symphony: 926 $b is the shelf, or in its place a status; a status is no shelf
        item = replace(item, shelving_location="")
    return item


def marc_items(profile: HoldingsProfile, record: pymarc.Record) -> tuple[
        list[HoldingsItem], list[str]]:
    """Every item in the record's holdings fields (``profile.holdings_tag``), in field order,
    and a note for each field that could not be read."""
    items: list[HoldingsItem] = []
    notes: list[str] = []
    for number, field in enumerate(record.get_fields(profile.holdings_tag), 1):
        if field.is_control_field():
            notes.append(f"{profile.holdings_tag} #{number}: not a data field, skipped")
            continue
        values = subfield_values(field)
        if profile.name == "koha":
            items.append(koha_item(values, profile, record))
        else:
            items.append(worded_item(values, profile))
    return items, notes
