# -*- test-case-name: tests.gateway.test_ncip_lookups -*-
"""Patron and item lookups on the circulation system, in domain terms.

Patron authentication lives here: the PIN is checked against its salted hash on a reader thread
(scrypt is deliberately slow), and repeated failures lock a patron out for a while whichever
broker sent them (kept in the database, across peers and restarts), so no broker can be used
to guess PINs.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from twisted.internet.defer import Deferred

from gateway.backends.embedded import operations, queries
from gateway.domain.model import (
    Hold,
    Item,
    Loan,
    Patron,
    PatronAuthenticationFailed,
    UnknownItem,
    UnknownPatron,
)
from gateway.secrets import verify_secret
from gateway.storage.store import Store


@dataclass(frozen=True)
class PatronDetails:
    """A patron with the loans and holds a LookupUser may ask for."""

    patron: Patron
    loans: tuple[Loan, ...] = ()
    holds: tuple[Hold, ...] = ()


_LOCK_STATE = "SELECT failures, locked_until FROM pin_failures WHERE patron_id = ?"


@dataclass
class LockoutPolicy:
    """Locks a patron out after ``limit`` wrong PINs, for ``seconds``, whichever peer sent them.

    The failures and the lock are kept in the database (``pin_failures``), so another broker
    or a restart does not clear them. Verifications still running are reserved in memory, so
    that concurrent guesses cannot get past the limit before the first of them has failed.
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
        failures, locked_until = state
        if locked_until > self.clock.seconds():
            return False
        return failures + others < max(self.limit, 1)

    @staticmethod
    def state(conn: sqlite3.Connection, patron_id: int) -> tuple[int, float]:
        """The patron's stored (failures, locked_until)."""
        row = conn.execute(_LOCK_STATE, (patron_id,)).fetchone()
        return (int(row[0]), float(row[1])) if row is not None else (0, 0.0)

    def record_failure(self, conn: sqlite3.Connection, patron_id: int) -> None:
        """One more wrong PIN (in the writer's transaction); at the limit, lock."""
        conn.execute("INSERT INTO pin_failures (patron_id, failures, locked_until) "
                     "VALUES (?, 1, 0) ON CONFLICT (patron_id) DO UPDATE SET "
                     "failures = failures + 1", (patron_id,))
        failures = self.state(conn, patron_id)[0]
        if failures >= self.limit:
            conn.execute("UPDATE pin_failures SET failures = 0, locked_until = ? "
                         "WHERE patron_id = ?", (self.clock.seconds() + self.seconds,
                                                 patron_id))

    @staticmethod
    def record_success(conn: sqlite3.Connection, patron_id: int) -> None:
        """The right PIN: the count starts again."""
        conn.execute("DELETE FROM pin_failures WHERE patron_id = ?", (patron_id,))

    def locked(self, conn: sqlite3.Connection, patron_id: int) -> bool:
        """True while the patron is locked out (for reports and tests)."""
        return self.state(conn, patron_id)[1] > self.clock.seconds()


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
            await self._check_pin(patron.id, secret, pin_hash)
        return PatronDetails(patron, tuple(loan_list), tuple(hold_list))

    async def _check_pin(self, patron_id: int, secret: str, pin_hash: str | None) -> None:
        """Verify a PIN under the lock-out policy; raise PatronAuthenticationFailed if wrong
        or locked out. The outcome is committed before the reply leaves."""
        lockout = self.lockout
        others = lockout.reserve(patron_id)
        try:
            read = getattr(self.store, "read_now", self.store.read)  # a one-row read by key
            state = await read(lambda conn: lockout.state(conn, patron_id))
            if not lockout.allows(state, others):
                raise PatronAuthenticationFailed("locked out after repeated failures",
                                                 element="AuthenticationInputData")
            ok = await self.store.read(lambda _conn: verify_secret(secret, pin_hash))
            if not ok:
                await self.store.write(lambda conn: lockout.record_failure(conn, patron_id))
                raise PatronAuthenticationFailed(element="AuthenticationInputData")
            if state[0]:
                await self.store.write(lambda conn: lockout.record_success(conn, patron_id))
        finally:
            lockout.release(patron_id)

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
            result: list[tuple[tuple[str, str], int | None, list[Item]]] = []
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
