# -*- test-case-name: tests.gateway.test_upstream_holdings -*-
"""Holdings normalised per LMS: an upstream record in, the items a broker may see out.

The upstream catalogue (Z39.50 or SRU in front of the library's own LMS) hands each record it
fetched to :func:`normalise` with the library's :class:`~.profile.HoldingsProfile`. The profile
reads the items where that LMS puts them (:mod:`.marc_holdings`: Koha 952, Evergreen and Polaris
852, Symphony 926, a configured tag; :mod:`.opac_holdings`: Alma, Sierra, FOLIO and any OPAC
record) and gives each an :class:`~.items.ItemStatus`. Two library rules follow, the same for
every LMS:

* an available item in a location that never lends (``not_for_loan_locations``: reserves, an
  "Internet" holding) is not for loan;
* the LMS's temporary records of items borrowed from other libraries (``temporary``: an item
  type, location, status, collection or barcode prefix) are never offered: they are counted,
  and a record whose every item is one of them is itself temporary
  (:attr:`RecordHoldings.temporary_record`), so the catalogue leaves it out of result sets.

What comes out is what the retrieval records render (:meth:`RecordHoldings.item_states`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pymarc

from gateway.backends.upstream.items import HoldingsItem, ItemStatus
from gateway.backends.upstream.marc_holdings import marc_items
from gateway.backends.upstream.opac_holdings import opac_items
from gateway.backends.upstream.profile import HoldingsProfile
from gateway.domain.holdings import ItemState
from protocols.z3950.records import OpacRecord

__all__ = ["RecordHoldings", "is_temporary_item", "normalise"]


@dataclass(frozen=True)
class RecordHoldings:
    """The items of one upstream record that may be offered, and what was left out."""

    items: tuple[HoldingsItem, ...]
    temporary: int = 0
    """How many temporary ILL items were left out."""
    notes: tuple[str, ...] = ()
    """Holdings that could not be read (a field without subfields, a holding without items)."""

    @property
    def temporary_record(self) -> bool:
        """True when every item of the record is a temporary ILL item: never offer the record."""
        return self.temporary > 0 and not self.items

    def item_states(self) -> tuple[ItemState, ...]:
        """The offered items as the domain's item states, in the LMS's order."""
        return tuple(item.item_state() for item in self.items)


def is_temporary_item(profile: HoldingsProfile, item: HoldingsItem) -> bool:
    """True for the LMS's temporary record of a borrowed item: never offered to brokers."""
    return profile.temporary.matches(item)


def _lending_rule(profile: HoldingsProfile, item: HoldingsItem) -> HoldingsItem:
    if item.status is ItemStatus.AVAILABLE and profile.not_for_loan_at(item):
        return replace(item, status=ItemStatus.NOT_FOR_LOAN)
    return item


def _marc(data: bytes) -> pymarc.Record | None:
    try:
        return pymarc.Record(data=data, to_unicode=True, force_utf8=True)
    except Exception:  # pymarc raises many exception types for bad records
        return None


def normalise(profile: HoldingsProfile, record: pymarc.Record | OpacRecord) -> RecordHoldings:
    """The offered items of an upstream record (MARC, or OPAC with its bibliographic record)."""
    items: list[HoldingsItem] = []
    notes: list[str] = []
    if isinstance(record, OpacRecord) and not profile.reads_marc:
        items, notes = opac_items(profile, record.holdings)
    elif isinstance(record, OpacRecord):
        marc = _marc(record.bibliographic) if record.bibliographic else None
        if marc is None:
            notes.append(f"profile {profile.name} reads the MARC record; the OPAC record has "
                         "no readable one")
        else:
            items, notes = marc_items(profile, marc)
    elif profile.reads_marc:
        items, notes = marc_items(profile, record)
    else:
        notes.append(f"profile {profile.name} reads OPAC holdings; a MARC record has none")
    ruled = [_lending_rule(profile, item) for item in items]
    offered = tuple(item for item in ruled if not is_temporary_item(profile, item))
    return RecordHoldings(items=offered, temporary=len(ruled) - len(offered), notes=tuple(notes))
