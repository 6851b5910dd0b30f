"""Tests for gateway.backends.upstream.profile: the holdings profile as a validated table."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from gateway.backends.upstream.items import HoldingsItem, ItemStatus
from gateway.backends.upstream.profile import (
    DEFAULT_SUBFIELDS,
    PROFILE_NAMES,
    HoldingsConfigError,
    HoldingsProfile,
    TemporaryItemRule,
)

PATH = "backend.catalogue.profile"


def errors(data: Any) -> list[str]:
    with pytest.raises(HoldingsConfigError) as caught:
        HoldingsProfile.from_mapping(data, PATH)
    return caught.value.errors


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_profile_by_name_alone(name: str) -> None:
    """Each LMS profile needs only its name (generic-marc excepted: it needs a tag)."""
    if name == "generic-marc":
        assert errors({"name": name}) == [
            f"{PATH}.holdings_tag: required for generic-marc (the item field, e.g. 949)",
            f"{PATH}.subfields: required for generic-marc (role = subfield codes)"]
        return
    built = HoldingsProfile.from_mapping({"name": name}, PATH)
    assert built == HoldingsProfile.named(name)
    assert built.subfields == DEFAULT_SUBFIELDS.get(name, {})


def test_a_full_table_from_toml() -> None:
    """Every key, as an operator writes it in the TOML file."""
    data = tomllib.loads("""
        name = "symphony"
        holdings_tag = "926"
        subfields = { barcode = "i", call_number = "ck" }
        status_map = { "NEWBOOKS" = "not_for_loan", "ON-DISPLAY" = "available" }
        unmapped_status = "available"
        absent_status = "unavailable"
        not_for_loan_locations = ["RESERVES-DESK"]
        date_order = "dmy"
        [temporary]
        item_types = ["ILL-BOOK"]
        locations = ["ILL"]
        statuses = ["INTRANSIT-ILL"]
        collections = ["BORROWED"]
        barcode_prefixes = ["ILL"]
    """)
    built = HoldingsProfile.from_mapping(data, PATH)
    assert built.subfields["call_number"] == "ck"
    assert built.subfields["item_type"] == "d"  # defaults kept for roles not given
    assert built.status_map == {"newbooks": ItemStatus.NOT_FOR_LOAN,
                                "on-display": ItemStatus.AVAILABLE}
    assert built.status_word("  NewBooks ") is ItemStatus.NOT_FOR_LOAN
    assert (built.unmapped_status, built.absent_status, built.date_order) == (
        ItemStatus.AVAILABLE, ItemStatus.UNAVAILABLE, "dmy")
    assert built.not_for_loan_locations == frozenset({"reserves-desk"})
    assert built.temporary == TemporaryItemRule(
        item_types=frozenset({"ill-book"}), locations=frozenset({"ill"}),
        statuses=frozenset({"intransit-ill"}), collections=frozenset({"borrowed"}),
        barcode_prefixes=("ILL",))


def test_every_error_at_once_with_its_path() -> None:
    """A table with many mistakes: all reported together, each with its key path."""
    assert errors({
        "name": "koha", "holding_tag": "952", "holdings_tag": "9520",
        "subfields": {"barcode": "P", "shelf": "c"}, "status_map": {"x": "available"},
        "unmapped_status": "available", "date_order": "ymd",
        "transit_when_branches_differ": "yes", "not_for_loan_locations": "REF",
        "temporary": {"item_types": "ILL", "kinds": []},
    }) == [
        f"{PATH}.holding_tag: unknown key",
        f"{PATH}.holdings_tag: must be a data field tag from 010 to 999 (got '9520')",
        f"{PATH}.subfields.barcode: must be subfield codes (letters a-z, digits), got 'P'",
        f"{PATH}.subfields.shelf: unknown role: one of barcode, location, shelving_location, "
        "call_number, copy_number, item_type, collection, due_date, status, temporary_location",
        f"{PATH}.status_map: not used by profile koha: it has no status words",
        f"{PATH}.unmapped_status: not used by profile koha: it has no status words",
        f"{PATH}.not_for_loan_locations: must be a list of non-empty strings",
        f"{PATH}.date_order: 'ymd' is not one of mdy, dmy",
        f"{PATH}.transit_when_branches_differ: must be true or false",
        f"{PATH}.temporary.kinds: unknown key: one of item_types, locations, statuses, "
        "collections, barcode_prefixes",
        f"{PATH}.temporary.item_types: must be a list of non-empty strings",
    ]


@pytest.mark.parametrize(("data", "expected"), [
    ("koha", [f"{PATH}: must be a table"]),
    ({}, [f"{PATH}.name: required: one of {', '.join(PROFILE_NAMES)}"]),
    ({"name": "aleph"}, [f"{PATH}.name: 'aleph' is not one of {', '.join(PROFILE_NAMES)}"]),
    ({"name": "alma", "holdings_tag": "852"},
     [f"{PATH}.holdings_tag: only used by MARC profiles "
      "(koha, evergreen, polaris, symphony, generic-marc)"]),
    ({"name": "folio", "subfields": {"barcode": "p"}},
     [f"{PATH}.subfields: only used by MARC profiles "
      "(koha, evergreen, polaris, symphony, generic-marc)"]),
    ({"name": "evergreen", "status_map": {"Display": "shelved"}},
     [f'{PATH}.status_map."Display": \'shelved\' is not one of '
      + ", ".join(s.value for s in ItemStatus)]),
    ({"name": "generic-marc", "holdings_tag": "001", "subfields": {"barcode": "p"}},
     [f"{PATH}.holdings_tag: must be a data field tag from 010 to 999 (got '001')",
      f"{PATH}.subfields: generic-marc needs a status or a due_date subfield to tell whether "
      "an item is available"]),
    ({"name": "polaris", "transit_when_branches_differ": False},
     [f"{PATH}.transit_when_branches_differ: only used by profile koha"]),
    ({"name": "sierra", "temporary": ["ILL"]}, [f"{PATH}.temporary: must be a table"]),
])
def test_single_errors(data: Any, expected: list[str]) -> None:
    """Each kind of mistake, with the message an operator reads in the journal."""
    assert errors(data) == expected


def test_unknown_profile_name_by_code() -> None:
    """named() refuses what from_mapping refuses."""
    with pytest.raises(ValueError, match="unknown holdings profile 'aleph'"):
        HoldingsProfile.named("aleph")


def test_temporary_rule_matching_is_by_word() -> None:
    """Case and spacing do not matter; barcode prefixes are exact."""
    rule = TemporaryItemRule(item_types=frozenset({"ill book"}),
                             locations=frozenset({"ill shelf"}), barcode_prefixes=("ILL",))
    assert rule.matches(HoldingsItem(ItemStatus.AVAILABLE, item_type="ILL  Book"))
    assert rule.matches(HoldingsItem(ItemStatus.AVAILABLE, temporary_location="ILL shelf"))
    assert rule.matches(HoldingsItem(ItemStatus.AVAILABLE, barcode="ILL0001"))
    assert not rule.matches(HoldingsItem(ItemStatus.AVAILABLE, barcode="ill0001"))
    assert not rule.matches(HoldingsItem(ItemStatus.AVAILABLE, item_type="BOOK",
                                         location="Main"))
