# -*- test-case-name: tests.gateway.ncip.test_fake_circulation -*-
"""The embedded circulation system: :class:`ICirculation` on the gateway's own SQLite store.

Circulation and the gateway's books share one database here, so a unit of work is one job of
the store's writer on one connection: the change, the books (request tracking, the reply's
idempotency record, the audit row) commit in one transaction, and the Deferred fires after the
COMMIT. Reads go to the store's reader threads, or run at once on the reactor thread when they
are bounded by an index to a row (:meth:`Store.read_now`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from twisted.internet.defer import Deferred
from zope.interface import implementer

from gateway.backends.embedded import operations as ops
from gateway.backends.embedded import queries
from gateway.domain.books import Books
from gateway.domain.circulation import ICirculation, ICirculationChanges
from gateway.domain.model import BriefRecord, Hold, Item, Loan, Patron, PatronDetails
from gateway.secrets import verify_secret
from gateway.storage.books import StoreBooks
from gateway.storage.store import Store

T = TypeVar("T")


@implementer(ICirculationChanges)
class EmbeddedChanges:
    """The embedded circulation system inside one transaction (one connection)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def find_patron(self, identifier: str,
                    kinds: tuple[str, ...] = ("barcode", "username")) -> Patron | None:
        """See :meth:`ICirculationChanges.find_patron`."""
        return queries.find_patron(self._conn, identifier, kinds)

    def patron_by_id(self, patron_id: int) -> Patron | None:
        """See :meth:`ICirculationChanges.patron_by_id`."""
        return queries.patron_by_id(self._conn, patron_id)

    def ensure_institutional_patron(self, barcode: str, peer: str, agency: str) -> Patron:
        """See :meth:`ICirculationChanges.ensure_institutional_patron`."""
        return ops.ensure_institutional_patron(self._conn, barcode=barcode, peer=peer,
                                               agency=agency)

    def item_by_barcode(self, barcode: str) -> Item | None:
        """See :meth:`ICirculationChanges.item_by_barcode`."""
        return queries.item_by_barcode(self._conn, barcode)

    def item_by_id(self, item_id: int) -> Item | None:
        """See :meth:`ICirculationChanges.item_by_id`."""
        return queries.item_by_id(self._conn, item_id)

    def barcode_in_use(self, barcode: str) -> bool:
        """See :meth:`ICirculationChanges.barcode_in_use`."""
        return ops.barcode_in_use(self._conn, barcode)

    def record_by_identifier(self, kind: str, value: str) -> int | None:
        """See :meth:`ICirculationChanges.record_by_identifier`."""
        return queries.record_by_identifier(self._conn, kind, value)

    def items_of_record(self, record_id: int) -> list[Item]:
        """See :meth:`ICirculationChanges.items_of_record`."""
        return queries.items_of_records(self._conn, [record_id])[record_id]

    def open_loan(self, item_id: int) -> Loan | None:
        """See :meth:`ICirculationChanges.open_loan`."""
        return queries.open_loan(self._conn, item_id)

    def last_returned_loan_patron(self, item_id: int) -> int | None:
        """See :meth:`ICirculationChanges.last_returned_loan_patron`."""
        return ops.last_returned_loan_patron(self._conn, item_id)

    def holds_of_patron(self, patron_id: int) -> list[Hold]:
        """See :meth:`ICirculationChanges.holds_of_patron`."""
        return queries.holds_of_patron(self._conn, patron_id)

    def active_holds_of_item(self, item_id: int) -> list[Hold]:
        """See :meth:`ICirculationChanges.active_holds_of_item`."""
        return queries.active_holds_of_item(self._conn, item_id)

    def holds_placed(self, patron_id: int, item_id: int | None,
                     placed_at: datetime) -> list[Hold]:
        """See :meth:`ICirculationChanges.holds_placed`."""
        return ops.holds_placed(self._conn, patron_id=patron_id, item_id=item_id,
                                placed_at=placed_at)

    def create_brief_record(self, local_id: str, brief: BriefRecord) -> int:
        """See :meth:`ICirculationChanges.create_brief_record`."""
        return ops.create_brief_record(self._conn, local_id, brief)

    def create_temporary_item(self, *, barcode: str, record_id: int, peer: str, location: str,
                              call_number: str = "") -> int:
        """See :meth:`ICirculationChanges.create_temporary_item`."""
        return ops.create_temporary_item(self._conn, barcode=barcode, record_id=record_id,
                                         peer=peer, location=location, call_number=call_number)

    def delete_temporary_item(self, barcode: str, now: datetime) -> int:
        """See :meth:`ICirculationChanges.delete_temporary_item`."""
        return ops.delete_temporary_item(self._conn, barcode, now)

    def set_item_status(self, item_id: int, status: str, now: datetime) -> None:
        """See :meth:`ICirculationChanges.set_item_status`."""
        ops.set_item_status(self._conn, item_id, status, now)

    def place_hold(self, *, patron_id: int, record_id: int, item_id: int | None,
                   pickup_location: str, now: datetime,
                   pickup_expires: datetime | None = None) -> int:
        """See :meth:`ICirculationChanges.place_hold`."""
        return ops.place_hold(self._conn, patron_id=patron_id, record_id=record_id,
                              item_id=item_id, pickup_location=pickup_location, now=now,
                              pickup_expires=pickup_expires)

    def set_hold_status(self, hold_id: int, status: str, now: datetime) -> None:
        """See :meth:`ICirculationChanges.set_hold_status`."""
        ops.set_hold_status(self._conn, hold_id, status, now)

    def check_out(self, *, item_id: int, patron_id: int, due_at: datetime,
                  now: datetime) -> Loan:
        """See :meth:`ICirculationChanges.check_out`."""
        return ops.check_out(self._conn, item_id=item_id, patron_id=patron_id, due_at=due_at,
                             now=now)

    def check_in(self, *, item_id: int, now: datetime, status: str = "available") -> Loan:
        """See :meth:`ICirculationChanges.check_in`."""
        return ops.check_in(self._conn, item_id=item_id, now=now, status=status)

    def renew(self, loan: Loan, due_at: datetime) -> Loan:
        """See :meth:`ICirculationChanges.renew`."""
        return ops.renew(self._conn, loan, due_at)

    def add_fee(self, *, patron_id: int, peer: str, amount: str, currency: str, fee_type: str,
                item_id: int | None, now: datetime) -> int:
        """See :meth:`ICirculationChanges.add_fee`."""
        return ops.add_fee(self._conn, patron_id=patron_id, peer=peer, amount=amount,
                           currency=currency, fee_type=fee_type, item_id=item_id, now=now)


@implementer(ICirculation)
class EmbeddedCirculation:
    """:class:`ICirculation` on the gateway's SQLite store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _read_now(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """A read bounded by an index to a row or two: at once when SQLite can (stand-in
        stores in tests may only have :meth:`Store.read`)."""
        read_now = getattr(self.store, "read_now", None)
        return read_now(work) if read_now is not None else self.store.read(work)

    def lookup_patron(self, identifier: str, *, loans: bool = False,
                      holds: bool = False) -> Deferred[PatronDetails | None]:
        """See :meth:`ICirculation.lookup_patron`."""
        def work(conn: sqlite3.Connection) -> PatronDetails | None:
            patron = queries.find_patron(conn, identifier)
            if patron is None:
                return None
            return PatronDetails(
                patron, tuple(queries.loans_of_patron(conn, patron.id)) if loans else (),
                tuple(queries.holds_of_patron(conn, patron.id)) if holds else ())
        # Lists of loans and holds are not bounded: those go to a reader thread.
        return self.store.read(work) if loans or holds else self._read_now(work)

    def authenticate(self, patron: Patron, secret: str) -> Deferred[bool]:
        """See :meth:`ICirculation.authenticate` (scrypt: on a reader thread)."""
        return self.store.read(
            lambda conn: verify_secret(secret, queries.patron_pin_hash(conn, patron.id)))

    def item(self, barcode: str) -> Deferred[Item | None]:
        """See :meth:`ICirculation.item`."""
        return self.store.read(lambda conn: queries.item_by_barcode(conn, barcode))

    def record_items(self, identifiers: list[tuple[str, str]]) -> Deferred[
            list[tuple[int | None, list[Item]]]]:
        """See :meth:`ICirculation.record_items`."""
        def work(conn: sqlite3.Connection) -> list[tuple[int | None, list[Item]]]:
            result: list[tuple[int | None, list[Item]]] = []
            for kind, value in identifiers:
                record_id = queries.record_by_identifier(conn, kind, value)
                if record_id is None:
                    result.append((None, []))
                    continue
                items = queries.items_of_records(conn, [record_id])[record_id]
                result.append((record_id, [i for i in items if not i.temporary]))
            return result
        return self.store.read(work)

    def transact(self, work: Callable[[ICirculationChanges, Books], T]) -> Deferred[T]:
        """See :meth:`ICirculation.transact`: one job of the store's writer."""
        return self.store.write(lambda conn: work(EmbeddedChanges(conn), StoreBooks(conn)))

    def inspect(self, work: Callable[[ICirculationChanges, Books], T]) -> Deferred[T]:
        """See :meth:`ICirculation.inspect`: on a reader thread."""
        return self.store.read(lambda conn: work(EmbeddedChanges(conn), StoreBooks(conn)))
