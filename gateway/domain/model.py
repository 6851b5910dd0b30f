# -*- test-case-name: tests.gateway.ncip.test_fake_circulation -*-
"""The domain a backend speaks: patrons, items, loans, holds, and the errors of circulation.

Nothing here knows NCIP or Z39.50. The NCIP and Z39.50 services map these errors to Problems
and diagnostics in one place each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class Patron:
    """A library patron (or a borrowing library's institutional patron)."""

    id: int
    barcode: str
    username: str | None
    given_name: str
    family_name: str
    email: str
    status: str
    patron_group: str
    expires: date | None
    institutional_peer: str | None = None

    def is_expired(self, today: date) -> bool:
        """Expired by status, or by an expiry date in the past."""
        return self.status == "expired" or (self.expires is not None and self.expires < today)

    def is_blocked(self) -> bool:
        """Blocked by staff."""
        return self.status == "blocked"

    @property
    def display_name(self) -> str:
        """Given and family name, for unstructured name fields."""
        return " ".join(part for part in (self.given_name, self.family_name) if part)


@dataclass(frozen=True)
class Item:
    """An item with the bibliographic data and circulation state callers need."""

    id: int
    barcode: str
    record_id: int
    local_id: str
    title: str
    author: str
    publisher: str
    pub_year: int | None
    isbn: str | None
    location: str
    shelving_location: str
    call_number: str
    copy_number: str
    status: str
    temporary: bool
    owning_peer: str | None
    due_at: datetime | None = None
    loan_patron_id: int | None = None
    active_holds: int = 0


@dataclass(frozen=True)
class Loan:
    """An open loan."""

    id: int
    item_id: int
    item_barcode: str
    patron_id: int
    title: str
    checked_out_at: datetime
    due_at: datetime
    renewals: int = 0


@dataclass(frozen=True)
class BriefRecord:
    """The bibliographic data a broker sends with a borrowed item."""

    title: str
    author: str = ""
    publisher: str = ""
    date: str = ""
    isbn: str = ""


@dataclass(frozen=True)
class Hold:
    """A hold (request) placed for a patron."""

    id: int
    patron_id: int
    record_id: int
    item_id: int | None
    item_barcode: str | None
    title: str
    pickup_location: str
    status: str
    placed_at: datetime
    pickup_expires: datetime | None = None


@dataclass(frozen=True)
class PatronDetails:
    """A patron with the loans and holds a LookupUser may ask for."""

    patron: Patron
    loans: tuple[Loan, ...] = ()
    holds: tuple[Hold, ...] = ()


class CirculationError(Exception):
    """A known circulation failure; ``element`` and ``value`` say what it was about."""

    def __init__(self, message: str = "", *, element: str | None = None,
                 value: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.__class__.__name__)
        self.element = element
        self.value = value


class UnknownPatron(CirculationError):
    """No patron has this identifier."""


class PatronAuthenticationFailed(CirculationError):
    """The PIN or password does not match (or the patron is locked out)."""


class PatronBlocked(CirculationError):
    """The patron is blocked or expired and may not borrow or request."""


class UnknownItem(CirculationError):
    """No item has this barcode."""


class UnknownRecord(CirculationError):
    """No bibliographic record matches this identifier."""


class ItemNotCheckedOut(CirculationError):
    """The item is not on loan."""


class ItemNotRenewable(CirculationError):
    """The loan may not be renewed."""


class ItemNotAvailable(CirculationError):
    """No item of the record can be requested or lent."""


class ItemAlreadyCheckedOut(CirculationError):
    """The item is on loan to someone else."""


class UnknownRequest(CirculationError):
    """No request has this identifier."""


class RequestAlreadyProcessed(CirculationError):
    """The request has progressed past the point where this can be done."""


class DuplicateRequest(CirculationError):
    """A different request already uses this identifier."""


class NeededDataMissing(CirculationError):
    """The request lacks data the operation needs."""


class NotTemporaryItem(CirculationError):
    """The item is part of the library's own collection, not a temporary item."""


class ServiceUnsupported(CirculationError):
    """The circulation system has no way to do this (an upstream LMS without the service)."""


class MaximumRenewalsExceeded(ItemNotRenewable):
    """The loan has been renewed as often as local policy allows."""


class ConflictingRequest(DuplicateRequest):
    """This RequestId already names this item for a different patron."""
