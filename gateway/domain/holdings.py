# -*- test-case-name: tests.gateway.test_records -*-
"""Catalogue records with their holdings: each item (copy) and its live circulation state.

What a catalogue hands to the services that render records (Z39.50 retrieval records today):
the stored bibliographic record as ISO 2709 bytes and one :class:`ItemState` per item, read when
the record is fetched, so a loan made a second ago already shows.
"""

from __future__ import annotations

from dataclasses import dataclass

_STATUS_TEXT = {
    "available": "Available",
    "on_loan": "Checked out",
    "on_hold_shelf": "On holds shelf",
    "in_transit": "In transit",
    "missing": "Missing",
    "withdrawn": "Withdrawn",
    "lost": "Lost",
    "damaged": "Damaged",
    "not_for_loan": "Not for loan",
    "on_order": "On order",
    "unavailable": "Unavailable",
}


@dataclass(frozen=True)
class ItemState:
    """One item (copy) with its live circulation state."""

    barcode: str
    location: str
    shelving_location: str
    call_number: str
    copy_number: str
    status: str
    loan_policy: str
    due_at: str | None = None      # ISO 8601, while on loan
    active_holds: int = 0

    @property
    def on_loan(self) -> bool:
        """True while the item has an open loan (or is marked on loan)."""
        return self.due_at is not None or self.status == "on_loan"

    @property
    def available_now(self) -> bool:
        """On the shelf, not on loan, nobody waiting for it: a lender can send it today."""
        return self.status == "available" and not self.on_loan and self.active_holds == 0

    @property
    def on_hold(self) -> bool:
        """Held for a patron (waiting on the holds shelf or with an active hold)."""
        return self.active_holds > 0 or self.status == "on_hold_shelf"

    @property
    def due_date(self) -> str | None:
        """The due date (YYYY-MM-DD) while on loan."""
        return self.due_at[:10] if self.due_at else None

    @property
    def status_text(self) -> str:
        """A human status: ``Available``, ``Checked out``, ``On hold``…"""
        if self.on_loan:
            return "Checked out"
        if self.status == "available" and self.active_holds:
            return "On hold"
        return _STATUS_TEXT.get(self.status, self.status)

    @property
    def public_note(self) -> str:
        """``AVAILABLE`` (what Sierra-style readers test) or the status, with the due date."""
        if self.available_now:
            return "AVAILABLE"
        if self.due_date:
            return f"DUE {self.due_date}"
        return self.status_text.upper()


@dataclass(frozen=True)
class CatalogueRecord:
    """A stored bibliographic record (ISO 2709, UTF-8) and its items."""

    id: int
    local_id: str
    marc: bytes
    items: tuple[ItemState, ...] = ()


__all__ = ["CatalogueRecord", "ItemState"]
