# -*- test-case-name: tests.gateway.test_ncip_lookups -*-
"""Patron and item lookups on the circulation system, in domain terms.

Patron authentication lives here: the PIN is checked against its salted hash on a reader thread
(scrypt is deliberately slow), and repeated failures lock a patron out per peer for a while, so a
broker cannot be used to guess PINs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from twisted.internet.defer import Deferred

from gateway.backends import operations, queries
from gateway.backends.base import (
    Hold,
    Item,
    Loan,
    Patron,
    PatronAuthenticationFailed,
    UnknownItem,
    UnknownPatron,
)
from gateway.secrets import verify_secret
from gateway.store import Store


@dataclass(frozen=True)
class PatronDetails:
    """A patron with the loans and holds a LookupUser may ask for."""

    patron: Patron
    loans: tuple[Loan, ...] = ()
    holds: tuple[Hold, ...] = ()


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    pending: int = 0  # verifications started and not finished yet


@dataclass
class LockoutPolicy:
    """Locks a patron out (per peer) after ``limit`` wrong PINs, for ``seconds``."""

    limit: int
    seconds: float
    clock: Any
    _failures: dict[tuple[str, int], _Failures] = field(default_factory=dict)

    def locked(self, peer: str, patron_id: int) -> bool:
        state = self._failures.get((peer, patron_id))
        return state is not None and state.locked_until > self.clock.seconds()

    def begin(self, peer: str, patron_id: int) -> bool:
        """Reserve one PIN verification; False when locked out, or when the failures so far
        plus the verifications still running reach the limit (so that concurrent guesses
        cannot get past the limit before the first of them has failed)."""
        if self.locked(peer, patron_id):
            return False
        state = self._failures.setdefault((peer, patron_id), _Failures())
        if state.count + state.pending >= max(self.limit, 1):
            return False
        state.pending += 1
        return True

    def release(self, peer: str, patron_id: int) -> None:
        """A reserved verification ended without a verdict (e.g. a store error)."""
        state = self._failures.get((peer, patron_id))
        if state is not None and state.pending > 0:
            state.pending -= 1

    def failed(self, peer: str, patron_id: int) -> None:
        self.release(peer, patron_id)
        state = self._failures.setdefault((peer, patron_id), _Failures())
        state.count += 1
        if state.count >= self.limit:
            state.locked_until = self.clock.seconds() + self.seconds
            state.count = 0

    def succeeded(self, peer: str, patron_id: int) -> None:
        self._failures.pop((peer, patron_id), None)


class Lookups:
    """Read-only circulation queries for the NCIP lookup services."""

    def __init__(self, store: Store, lockout: LockoutPolicy) -> None:
        self.store = store
        self.lockout = lockout

    async def patron(self, identifier: str, *, peer: str, secret: str | None = None,
                     loans: bool = False, holds: bool = False) -> PatronDetails:
        """Find a patron by barcode or username, checking ``secret`` (PIN) when given."""
        def work(conn: Any) -> tuple[Patron | None, str | None, list[Loan], list[Hold]]:
            patron = queries.find_patron(conn, identifier)
            if patron is None:
                return None, None, [], []
            pin_hash = queries.patron_pin_hash(conn, patron.id) if secret is not None else None
            return (patron, pin_hash,
                    queries.loans_of_patron(conn, patron.id) if loans else [],
                    queries.holds_of_patron(conn, patron.id) if holds else [])

        # Without loans/holds this is a single-row read by a unique key (barcode or username,
        # then the PIN hash by row id): run it on the reactor thread when SQLite answers at once
        # (Store.read_now, bounded; see there); lists of loans/holds go to a reader thread.
        read = self.store.read if loans or holds else getattr(  # (stand-in stores: read only)
            self.store, "read_now", self.store.read)
        patron, pin_hash, loan_list, hold_list = await read(work)
        if patron is None:
            raise UnknownPatron(element="UserIdentifierValue", value=identifier)
        if secret is not None:
            if not self.lockout.begin(peer, patron.id):
                raise PatronAuthenticationFailed("locked out after repeated failures",
                                                 element="AuthenticationInputData")
            try:
                ok = await self.store.read(lambda _conn: verify_secret(secret, pin_hash))
            except BaseException:
                self.lockout.release(peer, patron.id)
                raise
            if not ok:
                self.lockout.failed(peer, patron.id)
                raise PatronAuthenticationFailed(element="AuthenticationInputData")
            self.lockout.succeeded(peer, patron.id)
        return PatronDetails(patron, tuple(loan_list), tuple(hold_list))

    def item(self, barcode: str, peer: str | None = None) -> Deferred[Item]:
        """The item with this barcode (or, for ``peer``, the temporary item it named by its
        own ItemId when it brought it in), or :class:`UnknownItem`."""
        def work(conn: Any) -> Item:
            found = (operations.item_named(conn, peer=peer, value=barcode) if peer
                     else queries.item_by_barcode(conn, barcode))
            if found is None:
                raise UnknownItem(element="ItemIdentifierValue", value=barcode)
            return found
        return self.store.read(work)

    def records_items(self, identifiers: list[tuple[str, str]]) -> Deferred[
            list[tuple[tuple[str, str], int | None, list[Item]]]]:
        """For each (kind, value) record identifier: the record id and its own items."""
        def work(conn: Any) -> list[tuple[tuple[str, str], int | None, list[Item]]]:
            result = []
            for kind, value in identifiers:
                record_id = queries.record_by_identifier(conn, kind, value)
                if record_id is None:
                    result.append(((kind, value), None, []))
                    continue
                items = queries.items_of_records(conn, [record_id])[record_id]
                result.append(((kind, value), record_id, [i for i in items if not i.temporary]))
            return result
        return self.store.read(work)


def today_in(tz: Any) -> date:
    """Today's date in the library's time zone."""
    return datetime.now(tz).date()
