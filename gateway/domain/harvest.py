# -*- test-case-name: tests.gateway.test_oai_harvest -*-
"""Harvesting a catalogue: records by datestamp, deletions kept, what the OAI-PMH provider needs.

A separate interface, :class:`IHarvestable`, rather than more methods on ``ICatalogue``: a
catalogue that can be searched cannot always be harvested (an upstream Z39.50 catalogue has no
datestamps and no deletions), so a backend that can be harvested says so with an optional
``harvest(context)`` method returning an :class:`IHarvestable` (as optional as its
``settings_problems``: the registry's contract is unchanged), and the gateway serves OAI-PMH
only over such a backend. Pages are keyset pages on (datestamp, record id): the caller passes
back the last header's :class:`HarvestPosition`, never an offset, so a page costs the same at
record one million as at record one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zope.interface import Interface

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from twisted.internet.defer import Deferred

    from gateway.domain.holdings import CatalogueRecord

__all__ = ["HarvestHeader", "HarvestPosition", "HarvestSelection", "HarvestSets",
           "HarvestedRecord", "IHarvestable"]


@dataclass(frozen=True)
class HarvestPosition:
    """Where a page ended: the last (datestamp, record id) delivered."""

    datestamp: datetime
    record_id: int


@dataclass(frozen=True)
class HarvestSelection:
    """Which records: a datestamp window (inclusive, UTC) and at most one set.

    ``location`` selects records with an item at that branch/location; ``kinds`` records whose
    leader/06 (type of record) is one of the codes, and ``serial`` (when not None) whether
    leader/07 says serial.
    """

    from_: datetime | None = None
    until: datetime | None = None
    location: str | None = None
    kinds: frozenset[str] | None = None
    serial: bool | None = None


@dataclass(frozen=True)
class HarvestHeader:
    """A record's harvest header: datestamp, whether deleted, locations and its kind code."""

    record_id: int
    local_id: str
    datestamp: datetime
    deleted: bool
    locations: tuple[str, ...]
    kind: str

    @property
    def position(self) -> HarvestPosition:
        return HarvestPosition(self.datestamp, self.record_id)


@dataclass(frozen=True)
class HarvestedRecord:
    """A header, and the record with live holdings (or what ``build`` made of it) unless it
    is deleted."""

    header: HarvestHeader
    record: Any


@dataclass(frozen=True)
class HarvestSets:
    """The sets the catalogue can select by: locations in use and record kind codes."""

    locations: tuple[str, ...]
    kinds: tuple[str, ...]


class IHarvestable(Interface):
    """A catalogue whose records can be harvested by datestamp, with deletions kept."""

    def earliest() -> Deferred[datetime | None]:
        """The earliest datestamp (None for an empty catalogue)."""

    def count(selection: HarvestSelection) -> Deferred[int]:
        """How many records (deleted ones included) the selection holds."""

    def page(selection: HarvestSelection, after: HarvestPosition | None, limit: int,
             with_records: bool, build: Callable[[CatalogueRecord], Any] | None = None
             ) -> Deferred[list[HarvestedRecord]]:
        """Up to ``limit`` records after ``after`` in (datestamp, id) order; records with live
        holdings only when ``with_records``, each passed through ``build`` where it was read
        (a reader thread: rendering stays off the reactor)."""

    def get(local_id: str) -> Deferred[HarvestedRecord | None]:
        """One record (or its tombstone) by local id, None if it never existed here."""

    def sets() -> Deferred[HarvestSets]:
        """The locations and kinds present in the catalogue."""
