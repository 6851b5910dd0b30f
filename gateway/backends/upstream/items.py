# -*- test-case-name: tests.gateway.test_upstream_holdings -*-
"""One upstream item after normalisation: its status in our terms, and where it is.

An LMS says "Checked out", ``952 $q 2025-07-01``, ``$r Out``, ``DUE 01-11-23`` or
``availableNow 0`` + a date; the profiles (:mod:`.marc_holdings`, :mod:`.opac_holdings`) turn
each into one :class:`HoldingsItem` with an :class:`ItemStatus`. The domain's item state
(``ItemState``, what retrieval records render) knows fewer statuses than LMSs report, so the
extra ones (lost, damaged, not for loan, on order, unavailable) are defined here; each of them
is a status in which the item cannot be lent, and renders as unavailable.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from enum import StrEnum

from gateway.domain.holdings import ItemState


class ItemStatus(StrEnum):
    """What an item is doing, in the domain's words (the first six are ``ItemState``'s)."""

    AVAILABLE = "available"
    ON_LOAN = "on_loan"
    ON_HOLD_SHELF = "on_hold_shelf"
    IN_TRANSIT = "in_transit"
    MISSING = "missing"
    WITHDRAWN = "withdrawn"
    LOST = "lost"
    DAMAGED = "damaged"
    NOT_FOR_LOAN = "not_for_loan"
    ON_ORDER = "on_order"
    UNAVAILABLE = "unavailable"
    """The LMS says the item cannot be had now and gives no reason we recognise."""


@dataclass(frozen=True)
class HoldingsItem:
    """One item (copy) of an upstream record, normalised.

    ``lms_status`` keeps the LMS's own words (``Checked out``, ``952$7=2 Staff collection``) for
    notes and audit; ``due_date`` is an ISO date (YYYY-MM-DD) and is set only while on loan.
    """

    status: ItemStatus
    barcode: str = ""
    location: str = ""
    shelving_location: str = ""
    call_number: str = ""
    copy_number: str = ""
    item_type: str = ""
    collection: str = ""
    due_date: str | None = None
    on_hold: bool = False
    temporary_location: str = ""
    lms_status: str = ""

    @property
    def lendable(self) -> bool:
        """On the shelf and nobody waiting for it: a lender can send it today."""
        return self.status is ItemStatus.AVAILABLE and not self.on_hold

    def item_state(self) -> ItemState:
        """The domain item state the retrieval records render (OPAC, MARC holdings, SUTRS)."""
        return ItemState(
            barcode=self.barcode,
            location=self.location,
            shelving_location=self.shelving_location,
            call_number=self.call_number,
            copy_number=self.copy_number,
            status=self.status.value,
            loan_policy=self.item_type,
            due_at=self.due_date if self.status is ItemStatus.ON_LOAN else None,
            active_holds=1 if self.on_hold else 0,
        )


DATE_ORDERS = ("mdy", "dmy")
"""How an LMS writes a numeric date such as ``01/11/23``: month first (US) or day first."""

_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?![\d])")
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})$")
_NUMERIC = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})(?![\d])")
_MONTH_FIRST = re.compile(r"([A-Za-z]{3})[a-z]*\.?\s+(\d{1,2}),?\s+(\d{4})")
_DAY_FIRST = re.compile(r"(\d{1,2})\s+([A-Za-z]{3})[a-z]*\.?,?\s+(\d{4})")


def iso_date(text: str | None, order: str = "mdy") -> str | None:
    """The date in ``text`` as YYYY-MM-DD, or None when there is no valid date in it.

    Reads the forms LMSs put in holdings: ``2025-07-01`` (Koha, with or without a time),
    ``20250701``, ``01/25/2023`` (Alma), ``01-11-23`` (Sierra's ``DUE 01-11-23``), ``Dec 15
    2023`` (Polaris) and ``15 Dec 2023``. Numeric day/month order is ``order``; a two-digit
    year is in this century.
    """
    if not text:
        return None
    text = text.strip()
    year = month = day = 0
    if match := _ISO.search(text):
        year, month, day = (int(g) for g in match.groups())
    elif match := _COMPACT.match(text):
        year, month, day = (int(g) for g in match.groups())
    elif match := _NUMERIC.search(text):
        first, second, year = (int(g) for g in match.groups())
        month, day = (first, second) if order == "mdy" else (second, first)
        if year < 100:
            year += 2000
    elif match := _MONTH_FIRST.search(text):
        month = _MONTHS.get(match.group(1).lower(), 0)
        day, year = int(match.group(2)), int(match.group(3))
    elif match := _DAY_FIRST.search(text):
        day, year = int(match.group(1)), int(match.group(3))
        month = _MONTHS.get(match.group(2).lower(), 0)
    try:
        return datetime.date(year, month, day).isoformat()
    except ValueError:
        return None
