# -*- test-case-name: tests.gateway.test_upstream_profile -*-
"""The holdings profile of an upstream catalogue: which LMS it is, and the library's choices.

A profile names the LMS (``koha``, ``evergreen``, ``alma``, ``sierra``, ``symphony``,
``polaris``, ``folio``, ``generic-opac``, ``generic-marc``) and carries what differs from one
library to the next: the holdings tag and subfields (MARC profiles), extra status words, which
locations never lend, how numeric dates are written, and the rule that recognises the LMS's
temporary interlibrary-loan items (:class:`TemporaryItemRule`), which are never offered.

:meth:`HoldingsProfile.from_mapping` builds one from a configuration table and reports every
problem at once, each with its key path (``backend.catalogue.profile.holdings_tag: ...``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.backends.upstream.items import DATE_ORDERS, HoldingsItem, ItemStatus

MARC_PROFILES: Mapping[str, str] = {
    "koha": "952", "evergreen": "852", "polaris": "852", "symphony": "926", "generic-marc": ""}
"""Profiles that read item fields of the MARC record, with their holdings tag."""
OPAC_PROFILES = ("alma", "sierra", "folio", "generic-opac")
"""Profiles that read OPAC holdings and circulation records."""
PROFILE_NAMES = (*MARC_PROFILES, *OPAC_PROFILES)
STATUS_WORD_PROFILES = ("evergreen", "polaris", "symphony", "sierra", "folio", "generic-marc")
"""Profiles whose LMS states an item's status in words, which ``status_map`` may extend."""

SUBFIELD_ROLES = ("barcode", "location", "shelving_location", "call_number", "copy_number",
                  "item_type", "collection", "due_date", "status", "temporary_location")
"""What a holdings subfield can carry. Each role names one or more subfield codes: the first
one present gives the value, except ``call_number``, which joins all of them in order."""

DEFAULT_SUBFIELDS: Mapping[str, Mapping[str, str]] = {
    # Koha items (MARC 21 default framework): $b holding branch (where it is now, $a home
    # branch otherwise); item status lives in $0 $1 $4 $5 $7, read by the Koha profile itself.
    "koha": {"barcode": "p", "location": "ba", "shelving_location": "c", "call_number": "o",
             "copy_number": "t", "item_type": "y", "collection": "8", "due_date": "q"},
    # Evergreen's Z39.50 852: $a copy location, $b library, $k call number prefix, $c label.
    "evergreen": {"barcode": "g", "location": "b", "shelving_location": "a",
                  "call_number": "kc", "status": "n"},
    # Polaris's Z39.50 852: $a library, $b collection, $h call number, $r status, $u due date.
    "polaris": {"barcode": "p", "location": "a", "shelving_location": "b", "call_number": "h",
                "item_type": "w", "due_date": "u", "status": "r"},
    # SirsiDynix Symphony 926: $a library, $b current location (a shelf, or a status such as
    # CHECKEDOUT), $c call number, $d item type, $e due date, $i barcode.
    "symphony": {"barcode": "i", "location": "a", "status": "b", "shelving_location": "b",
                 "call_number": "c", "item_type": "d", "due_date": "e"},
    "generic-marc": {},
}

_TAG = re.compile(r"(0[1-9]\d|[1-9]\d\d)$")
_SUBFIELD_CODES = re.compile(r"[a-z0-9]+$")
_KEYS = frozenset({"name", "holdings_tag", "subfields", "status_map", "unmapped_status",
                   "absent_status", "not_for_loan_locations", "date_order",
                   "transit_when_branches_differ", "temporary"})
_TEMPORARY_KEYS = ("item_types", "locations", "statuses", "collections", "barcode_prefixes")


def word_key(text: str) -> str:
    """How status words and codes are compared: spaces collapsed, case folded."""
    return " ".join(text.split()).casefold()


class HoldingsConfigError(ValueError):
    """Every problem found in a holdings profile table, each as ``path: message``."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


@dataclass(frozen=True)
class TemporaryItemRule:
    """What marks an item as the LMS's temporary record of a borrowed (interlibrary) item.

    Such items belong to another library: the upstream catalogue never offers them. Each set
    holds compared words (:func:`word_key`); an item matching any one of them is temporary.
    """

    item_types: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    collections: frozenset[str] = frozenset()
    barcode_prefixes: tuple[str, ...] = ()

    def matches(self, item: HoldingsItem) -> bool:
        """True when ``item`` is a temporary ILL item by its type, location, status,
        collection or barcode."""
        places = {word_key(p) for p in (item.location, item.shelving_location,
                                        item.temporary_location) if p}
        return bool(
            (item.item_type and word_key(item.item_type) in self.item_types)
            or places & self.locations
            or (item.lms_status and word_key(item.lms_status) in self.statuses)
            or (item.collection and word_key(item.collection) in self.collections)
            or (item.barcode and item.barcode.startswith(self.barcode_prefixes)))


@dataclass(frozen=True)
class HoldingsProfile:
    """One upstream catalogue's holdings profile (see the module docstring)."""

    name: str
    holdings_tag: str = ""
    subfields: Mapping[str, str] = field(default_factory=dict)
    status_map: Mapping[str, ItemStatus] = field(default_factory=dict)
    """Extra or overriding status words (keys as :func:`word_key` makes them)."""
    unmapped_status: ItemStatus | None = None
    """The status of a word the profile does not know; None: the profile's own default."""
    absent_status: ItemStatus | None = None
    """The status of an item that states none (and no due date); None: the profile's own
    default (available for generic-marc, unavailable otherwise)."""
    not_for_loan_locations: frozenset[str] = frozenset()
    """Locations (library, shelf or temporary location) whose items never lend: reserves..."""
    date_order: str = "mdy"
    transit_when_branches_differ: bool = True
    """koha: an item whose holding branch ($b) is not its home branch ($a) is in transit."""
    temporary: TemporaryItemRule = TemporaryItemRule()

    @property
    def reads_marc(self) -> bool:
        """True for profiles that read item fields of the MARC record (else OPAC holdings)."""
        return self.name in MARC_PROFILES

    @classmethod
    def named(cls, name: str) -> HoldingsProfile:
        """The profile ``name`` with the LMS's defaults (ValueError for an unknown name)."""
        if name not in PROFILE_NAMES:
            raise ValueError(f"unknown holdings profile {name!r}")
        return cls(name=name, holdings_tag=MARC_PROFILES.get(name, ""),
                   subfields=dict(DEFAULT_SUBFIELDS.get(name, {})))

    @classmethod
    def from_mapping(cls, data: Any, path: str) -> HoldingsProfile:
        """A profile from a configuration table at ``path``; :class:`HoldingsConfigError`
        lists every problem, each with its key path."""
        return _ProfileReader(path).read(data)

    def status_word(self, word: str) -> ItemStatus | None:
        """The library's own meaning of a status word, if it configured one."""
        return self.status_map.get(word_key(word))

    def not_for_loan_at(self, item: HoldingsItem) -> bool:
        """True when the item sits in a location that never lends."""
        return any(word_key(place) in self.not_for_loan_locations for place in
                   (item.location, item.shelving_location, item.temporary_location) if place)


class _ProfileReader:
    """Turns one raw table into a :class:`HoldingsProfile`, collecting errors."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[str] = []

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{self.path}.{key}: {message}" if self.path else f"{key}: {message}")

    def read(self, data: Any) -> HoldingsProfile:
        if not isinstance(data, Mapping):
            raise HoldingsConfigError([f"{self.path}: must be a table"])
        for key in data:
            if key not in _KEYS:
                self.error(str(key), "unknown key")
        name = data.get("name")
        if name is None:
            self.error("name", f"required: one of {', '.join(PROFILE_NAMES)}")
            raise HoldingsConfigError(self.errors)
        if name not in PROFILE_NAMES:
            self.error("name", f"{name!r} is not one of {', '.join(PROFILE_NAMES)}")
            raise HoldingsConfigError(self.errors)
        profile = HoldingsProfile.named(name)
        values: dict[str, Any] = {}
        marc = name in MARC_PROFILES
        if "holdings_tag" in data:
            values["holdings_tag"] = self.tag(data["holdings_tag"], marc)
        elif name == "generic-marc":
            self.error("holdings_tag", "required for generic-marc (the item field, e.g. 949)")
        if "subfields" in data:
            values["subfields"] = {**profile.subfields, **self.subfield_map(data["subfields"],
                                                                             marc)}
        if name == "generic-marc":
            roles = values.get("subfields", {})
            if "subfields" in data and not {"status", "due_date"} & set(roles):
                self.error("subfields", "generic-marc needs a status or a due_date subfield to "
                                        "tell whether an item is available")
            elif "subfields" not in data:
                self.error("subfields", "required for generic-marc (role = subfield codes)")
        if "status_map" in data:
            values["status_map"] = self.status_map(data["status_map"], name)
        for key in ("unmapped_status", "absent_status"):
            if key in data:
                if name not in STATUS_WORD_PROFILES:
                    self.error(key, f"not used by profile {name}: it has no status words")
                else:
                    values[key] = self.status(data[key], key)
        if "not_for_loan_locations" in data:
            values["not_for_loan_locations"] = frozenset(
                word_key(w) for w in self.strings(data["not_for_loan_locations"],
                                                  "not_for_loan_locations"))
        if "date_order" in data:
            if data["date_order"] in DATE_ORDERS:
                values["date_order"] = data["date_order"]
            else:
                self.error("date_order", f"{data['date_order']!r} is not one of "
                                         f"{', '.join(DATE_ORDERS)}")
        if "transit_when_branches_differ" in data:
            flag = data["transit_when_branches_differ"]
            if name != "koha":
                self.error("transit_when_branches_differ", "only used by profile koha")
            elif not isinstance(flag, bool):
                self.error("transit_when_branches_differ", "must be true or false")
            else:
                values["transit_when_branches_differ"] = flag
        if "temporary" in data:
            values["temporary"] = self.temporary(data["temporary"])
        if self.errors:
            raise HoldingsConfigError(self.errors)
        return replace(profile, **values)

    def tag(self, raw: Any, marc: bool) -> str:
        if not marc:
            self.error("holdings_tag", "only used by MARC profiles "
                                       f"({', '.join(MARC_PROFILES)})")
            return ""
        if not isinstance(raw, str) or not _TAG.match(raw):
            self.error("holdings_tag", f"must be a data field tag from 010 to 999 (got {raw!r})")
            return ""
        return raw

    def subfield_map(self, raw: Any, marc: bool) -> dict[str, str]:
        if not marc:
            self.error("subfields", "only used by MARC profiles "
                                    f"({', '.join(MARC_PROFILES)})")
            return {}
        if not isinstance(raw, Mapping):
            self.error("subfields", "must be a table of role = subfield codes")
            return {}
        out = {}
        for role, codes in raw.items():
            if role not in SUBFIELD_ROLES:
                self.error(f"subfields.{role}", f"unknown role: one of {', '.join(SUBFIELD_ROLES)}")
            elif not isinstance(codes, str) or not _SUBFIELD_CODES.match(codes):
                self.error(f"subfields.{role}",
                           f"must be subfield codes (letters a-z, digits), got {codes!r}")
            else:
                out[role] = codes
        return out

    def status_map(self, raw: Any, name: str) -> dict[str, ItemStatus]:
        if name not in STATUS_WORD_PROFILES:
            self.error("status_map", f"not used by profile {name}: it has no status words")
            return {}
        if not isinstance(raw, Mapping):
            self.error("status_map", "must be a table of LMS word = status")
            return {}
        out = {}
        for word, value in raw.items():
            status = self.status(value, f'status_map."{word}"')
            if status is not None:
                out[word_key(str(word))] = status
        return out

    def status(self, raw: Any, key: str) -> ItemStatus | None:
        try:
            return ItemStatus(raw)
        except ValueError:
            self.error(key, f"{raw!r} is not one of {', '.join(s.value for s in ItemStatus)}")
            return None

    def strings(self, raw: Any, key: str) -> tuple[str, ...]:
        if isinstance(raw, list) and all(isinstance(v, str) and v.strip() for v in raw):
            return tuple(raw)
        self.error(key, "must be a list of non-empty strings")
        return ()

    def temporary(self, raw: Any) -> TemporaryItemRule:
        if not isinstance(raw, Mapping):
            self.error("temporary", "must be a table")
            return TemporaryItemRule()
        for key in raw:
            if key not in _TEMPORARY_KEYS:
                self.error(f"temporary.{key}", f"unknown key: one of {', '.join(_TEMPORARY_KEYS)}")
        words = {key: frozenset(word_key(w) for w in self.strings(raw[key], f"temporary.{key}"))
                 for key in _TEMPORARY_KEYS[:4] if key in raw}
        prefixes = self.strings(raw["barcode_prefixes"], "temporary.barcode_prefixes") \
            if "barcode_prefixes" in raw else ()
        return TemporaryItemRule(barcode_prefixes=prefixes, **words)
