# -*- test-case-name: tests.gateway.test_ncip_lookups -*-
"""Patron and item lookups on the circulation system, in domain terms.

Patron authentication lives here: the circulation system checks the PIN
(:meth:`ICirculation.authenticate`), and repeated failures lock a patron out for a while
whichever broker sent them (kept in the gateway's books, across peers and restarts), so no
broker can be used to guess PINs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from twisted.internet.defer import Deferred

from gateway.domain.books import PinFailureBook, RequestBook
from gateway.domain.circulation import ICirculation, ICirculationChanges
from gateway.domain.model import (
    Item,
    PatronAuthenticationFailed,
    PatronDetails,
    UnknownItem,
    UnknownPatron,
)

__all__ = ["LockoutPolicy", "Lookups", "PatronDetails", "item_named", "today_in"]


@dataclass
class LockoutPolicy:
    """Locks a patron out after ``limit`` wrong PINs, for ``seconds``, whichever peer sent them.

    The failures and the lock are kept in the gateway's books (:class:`PinFailureBook`), so
    another broker or a restart does not clear them. Verifications still running are reserved
    in memory, so that concurrent guesses cannot get past the limit before the first of them
    has failed.
    """

    limit: int
    seconds: float
    clock: Any
    _pending: dict[int, int] = field(default_factory=dict)

    def reserve(self, patron_id: int) -> int:
        """Reserve one PIN verification; return how many others were running already (they
        count as failures until they are decided: at worst a guess is refused too early)."""
        others = self._pending.get(patron_id, 0)
        self._pending[patron_id] = others + 1
        return others

    def release(self, patron_id: int) -> None:
        """A reserved verification is decided (its outcome recorded) or abandoned."""
        left = self._pending.get(patron_id, 0) - 1
        if left > 0:
            self._pending[patron_id] = left
        else:
            self._pending.pop(patron_id, None)

    def allows(self, state: tuple[int, float], others: int) -> bool:
        """Whether a verification may run, given the stored (failures, locked_until)."""
        if self.locked(state):
            return False
        return state[0] + others < max(self.limit, 1)

    def locked(self, state: tuple[int, float]) -> bool:
        """True while a stored (failures, locked_until) locks the patron out."""
        return state[1] > self.clock.seconds()

    def lock_until(self) -> float:
        """When a lock starting now ends."""
        return float(self.clock.seconds() + self.seconds)


def item_named(changes: ICirculationChanges, requests: RequestBook, *, peer: str, value: str,
               by_request: bool = False) -> Item | None:
    """The item a broker names: by the ItemId it gave us with a temporary item (whatever
    barcode we chose), by our barcode, or by its own request id (Tipasa's "ILL Request Id";
    only when that request holds one item). ``by_request`` tries the request id first.
    Whether the peer may act on it is the caller's question."""
    def alias() -> Item | None:
        item_id = requests.aliased_item(peer=peer, broker_item_id=value)
        return changes.item_by_id(item_id) if item_id is not None else None

    def request() -> Item | None:
        item_id = requests.requested_item(peer=peer, broker_request_id=value)
        return changes.item_by_id(item_id) if item_id is not None else None

    def barcode() -> Item | None:
        return changes.item_by_barcode(value)

    for find in (request, alias, barcode) if by_request else (alias, barcode, request):
        found = find()
        if found is not None:
            return found
    return None


class Lookups:
    """Read-only circulation queries for the NCIP lookup services."""

    def __init__(self, circulation: ICirculation, pins: PinFailureBook,
                 lockout: LockoutPolicy) -> None:
        self.circulation = circulation
        self.pins = pins
        self.lockout = lockout

    async def patron(self, identifier: str, *, peer: str, secret: str | None = None,
                     loans: bool = False, holds: bool = False) -> PatronDetails:
        """Find a patron by barcode or username, checking ``secret`` (PIN) when given."""
        details = await self.circulation.lookup_patron(identifier, loans=loans, holds=holds)
        if details is None:
            raise UnknownPatron(element="UserIdentifierValue", value=identifier)
        if secret is not None:
            await self._check_pin(details, secret)
        return details

    async def _check_pin(self, details: PatronDetails, secret: str) -> None:
        """Verify a PIN under the lock-out policy; raise PatronAuthenticationFailed if wrong
        or locked out. The outcome is committed before the reply leaves."""
        lockout = self.lockout
        patron_id = details.patron.id
        others = lockout.reserve(patron_id)
        try:
            state = await self.pins.state(patron_id)
            if not lockout.allows(state, others):
                raise PatronAuthenticationFailed("locked out after repeated failures",
                                                 element="AuthenticationInputData")
            if not await self.circulation.authenticate(details.patron, secret):
                await self.pins.record_failure(patron_id, limit=lockout.limit,
                                               lock_until=lockout.lock_until())
                raise PatronAuthenticationFailed(element="AuthenticationInputData")
            if state[0]:
                await self.pins.record_success(patron_id)
        finally:
            lockout.release(patron_id)

    def item(self, barcode: str, peer: str | None = None) -> Deferred[Item]:
        """The item with this barcode (or, for ``peer``, the temporary item it named by its
        own ItemId when it brought it in), or :class:`UnknownItem`."""
        def found(item: Item | None) -> Item:
            if item is None:
                raise UnknownItem(element="ItemIdentifierValue", value=barcode)
            return item
        if peer:
            named = self.circulation.inspect(
                lambda changes, books: item_named(changes, books.requests, peer=peer,
                                                  value=barcode))
            return named.addCallback(found)
        return self.circulation.item(barcode).addCallback(found)

    def records_items(self, identifiers: list[tuple[str, str]]) -> Deferred[
            list[tuple[tuple[str, str], int | None, list[Item]]]]:
        """For each (kind, value) record identifier: the record id and its own items."""
        return self.circulation.record_items(identifiers).addCallback(
            lambda found: [(wanted, record_id, items)
                           for wanted, (record_id, items) in zip(identifiers, found)])


def today_in(tz: Any) -> date:
    """Today's date in the library's time zone."""
    return datetime.now(tz).date()
