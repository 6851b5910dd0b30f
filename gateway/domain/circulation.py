# -*- test-case-name: tests.gateway.ncip.test_fake_circulation -*-
"""The Circulation interface: what the NCIP services ask of a circulation system.

Patrons (lookup, authenticate), items, temporary items, holds, loans, renewals, check-in, fees
and institutional patrons, in domain types (:mod:`gateway.domain.model`) and with its domain
errors; never XML, PDUs or SQL rows.

Reads are asynchronous methods (Deferreds): upstream circulation systems do network I/O.

Changes run as a *unit of work*: :meth:`ICirculation.transact` runs ``work(changes, books)``
once, synchronously, as one atomic unit, where ``changes`` (:class:`ICirculationChanges`) is
the circulation system seen through a synchronous facade and ``books`` the gateway's own books
(:mod:`gateway.domain.books`: request tracking, exactly-once replies, audit). Whatever ``work``
does commits together or not at all, and the Deferred fires only once it is durable: that is
the exactly-once guarantee (the change, the rendered reply, its idempotency record and its
audit row in one commit). The embedded backend runs ``work`` as one job of the store's writer
on one SQLite connection. A backend that drives a remote system (the upstream NCIP one) may run
``work`` more than once, so ``work`` must be deterministic given the same database state and
the same remote answers, with no effects outside ``changes`` and ``books``: a run that reaches
a remote call stops (rolled back), the call is made outside the writer, and the next run gets
its answer at the same point; only the last run commits. Each state-changing remote call is
recorded in a durable outbox before it is made and its answer after, so that a crash or a
timeout between the remote change and the local commit is settled (the answer reused, or the
call resent with the same remote request id where the remote system deduplicates) instead of
being done twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from zope.interface import Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from gateway.domain.books import Books
    from gateway.domain.model import BriefRecord, Hold, Item, Loan, Patron, PatronDetails

T = TypeVar("T")

# What a unit of work is given, and returns.
Work = Callable[["ICirculationChanges", "Books"], Any]


class ICirculationChanges(Interface):
    """The circulation system inside one unit of work: reads see the unit's own changes."""

    def find_patron(identifier: str,
                    kinds: tuple[str, ...] = ("barcode", "username")) -> Patron | None:
        """The patron whose barcode or username (in ``kinds`` order) is ``identifier``."""

    def patron_by_id(patron_id: int) -> Patron | None:
        """The patron with this id."""

    def ensure_institutional_patron(barcode: str, peer: str, agency: str) -> Patron:
        """The borrowing library's patron record, created on first use."""

    def item_by_barcode(barcode: str) -> Item | None:
        """The item with this barcode (temporary or not)."""

    def item_by_id(item_id: int) -> Item | None:
        """The item with this id."""

    def barcode_in_use(barcode: str) -> bool:
        """True if any item (temporary or not) has this barcode."""

    def record_by_identifier(kind: str, value: str) -> int | None:
        """The id of the library's own record with this identifier (local, isbn, issn,
        oclc), in any of its forms."""

    def items_of_record(record_id: int) -> list[Item]:
        """Every item of a record."""

    def open_loan(item_id: int) -> Loan | None:
        """The open loan of an item, if it is on loan."""

    def last_returned_loan_patron(item_id: int) -> int | None:
        """The patron of the item's most recent loan, if that loan has ended."""

    def holds_of_patron(patron_id: int) -> list[Hold]:
        """The patron's active holds, oldest first."""

    def active_holds_of_item(item_id: int) -> list[Hold]:
        """The active holds on an item, oldest first."""

    def holds_placed(patron_id: int, item_id: int | None, placed_at: datetime) -> list[Hold]:
        """The patron's holds (any status) on an item (None: on a record) placed at
        ``placed_at``, in creation order."""

    def create_brief_record(local_id: str, brief: BriefRecord) -> int:
        """A minimal record for a temporary item, hidden from searches; its id."""

    def create_temporary_item(*, barcode: str, record_id: int, peer: str, location: str,
                              call_number: str = "") -> int:
        """A temporary item for a borrowed book, owned by the lending peer; its id."""

    def delete_temporary_item(barcode: str, now: datetime) -> int:
        """Remove a temporary item (ending any loan), its holds and its brief record when no
        other item uses it; :class:`NotTemporaryItem` for the library's own items."""

    def set_item_status(item_id: int, status: str, now: datetime) -> None:
        """An item's circulation status (e.g. ``in_transit`` going back to its lender)."""

    def place_hold(*, patron_id: int, record_id: int, item_id: int | None,
                   pickup_location: str, now: datetime,
                   pickup_expires: datetime | None = None) -> int:
        """An active hold for a patron on a record (and item); its id."""

    def set_hold_status(hold_id: int, status: str, now: datetime) -> None:
        """Fulfil, cancel or expire a hold."""

    def check_out(*, item_id: int, patron_id: int, due_at: datetime, now: datetime) -> Loan:
        """Lend an item; the patron's active holds on it are fulfilled."""

    def check_in(*, item_id: int, now: datetime, status: str = "available") -> Loan:
        """End an item's open loan (:class:`ItemNotCheckedOut` if none)."""

    def renew(loan: Loan, due_at: datetime) -> Loan:
        """Move a loan's due date; counts as a renewal."""

    def add_fee(*, patron_id: int, peer: str, amount: str, currency: str, fee_type: str,
                item_id: int | None, now: datetime) -> int:
        """Record a fee against a patron (no payment processing); its id."""


class ICirculation(Interface):
    """A circulation system the gateway drives."""

    def lookup_patron(identifier: str, *, loans: bool = False,
                      holds: bool = False) -> Deferred[PatronDetails | None]:
        """The patron with this barcode or username, with open loans and active holds when
        asked for; None if there is none."""

    def authenticate(patron: Patron, secret: str) -> Deferred[bool]:
        """Whether ``secret`` is the patron's PIN or password (the lock-out policy is the
        caller's)."""

    def item(barcode: str) -> Deferred[Item | None]:
        """The item with this barcode, with its live circulation state."""

    def record_items(identifiers: list[tuple[str, str]]) -> Deferred[
            list[tuple[int | None, list[Item]]]]:
        """For each (kind, value) record identifier: the record id (None: unknown) and its
        items, the library's own only."""

    def transact(work: Callable[[ICirculationChanges, Books], T]) -> Deferred[T]:
        """Run ``work`` as one atomic unit: its changes and the books commit together; the
        Deferred fires with its result once durable (or fails, nothing done). Only one run
        commits; a remote backend may roll back earlier runs (see the module docstring)."""

    def inspect(work: Callable[[ICirculationChanges, Books], T]) -> Deferred[T]:
        """Run read-only ``work`` on one consistent view (it must change nothing)."""
