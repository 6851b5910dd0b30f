# -*- test-case-name: tests.gateway.test_operations -*-
"""Resource-sharing request tracking in the gateway's store (the ``rs_requests`` table).

The row-level functions serve the admin reports, the CLI and test fixtures; the NCIP workflows
use :class:`SqlRequestBook`, which gives typed :class:`TrackedRequest` records. Every function
runs inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from gateway.domain.books import RS_STEPS, TrackedRequest
from gateway.storage.timestamps import iso, parse_time

_RS_COLUMNS = frozenset({"item_id", "item_barcode", "patron_id", "due_at", "renewable",
                         "broker_item_id", "end_reason"})


def _check_step(step: str) -> None:
    if step not in RS_STEPS:
        raise ValueError(step)


def _check_rs_columns(columns: dict[str, object]) -> None:
    extra = [name for name in columns if name not in _RS_COLUMNS]
    if extra:
        raise ValueError(f"unknown columns {extra}")


def find_rs_request(conn: sqlite3.Connection, *, peer: str, role: str,
                    broker_request_id: str | None = None, our_request_id: str | None = None,
                    item_id: int | None = None) -> sqlite3.Row | None:
    """The tracked request matching one of the identifiers given (most specific first)."""
    if our_request_id:
        row = conn.execute("SELECT * FROM rs_requests WHERE our_request_id = ? AND peer = ?",
                           (our_request_id, peer)).fetchone()
        if row is not None:
            return row
    if broker_request_id:
        row = conn.execute("SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND"
                           " broker_request_id = ?", (peer, role, broker_request_id)).fetchone()
        if row is not None:
            return row
    if item_id is not None:
        return conn.execute(
            "SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND item_id = ? AND"
            " completed_at IS NULL AND cancelled_at IS NULL ORDER BY id DESC LIMIT 1",
            (peer, role, item_id)).fetchone()
    return None


def find_volume(conn: sqlite3.Connection, *, peer: str, role: str, broker_request_id: str,
                broker_item_id: str | None) -> sqlite3.Row | None:
    """The tracked request for one volume: the broker's RequestId and ItemId together (one
    RequestId names one volume per ItemId)."""
    return conn.execute(
        "SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND broker_request_id = ? AND"
        " COALESCE(broker_item_id, '') = ?",
        (peer, role, broker_request_id, broker_item_id or "")).fetchone()


def next_request_number(conn: sqlite3.Connection) -> int:
    """The number the next tracked request will get (safe: one writer at a time)."""
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM rs_requests").fetchone()[0])


def create_rs_request(conn: sqlite3.Connection, *, peer: str, role: str,
                      broker_request_id: str | None, our_request_id: str, state: str,
                      step: str, now: datetime, item_id: int | None = None,
                      item_barcode: str | None = None, patron_id: int | None = None,
                      also_stamped: Sequence[str] = (), **columns: object) -> int:
    """Start tracking a resource-sharing request at its first step.

    ``also_stamped``: later steps already reached (stamped ``now`` too) and ``columns``
    (``due_at``, ``renewable``): as :func:`advance_rs_request` would set them, in the one
    INSERT (e.g. a borrowed item accepted and received at once).
    """
    steps = (step, *also_stamped)
    for name in steps:
        _check_step(name)
    _check_rs_columns(columns)
    stamps = {f"{name}_at": iso(now) for name in steps}
    values = {"peer": peer, "role": role, "broker_request_id": broker_request_id,
              "our_request_id": our_request_id, "item_id": item_id,
              "item_barcode": item_barcode, "patron_id": patron_id, "state": state,
              "requested_at": iso(now), **stamps, **columns}
    cursor = conn.execute(
        f"INSERT INTO rs_requests ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
        tuple(values.values()))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def advance_rs_request(conn: sqlite3.Connection, request_id: int, *, state: str, step: str,
                       now: datetime, **columns: object) -> None:
    """Move a tracked request to ``state``, stamping ``step`` (kept if already stamped)."""
    _check_step(step)
    _check_rs_columns(columns)
    assignments = "".join(f", {name} = ?" for name in columns)
    conn.execute(
        f"UPDATE rs_requests SET state = ?, {step}_at = COALESCE({step}_at, ?){assignments}"
        " WHERE id = ?", (state, iso(now), *columns.values(), request_id))


def latest_rs_request(conn: sqlite3.Connection, *, peer: str, role: str,
                      item_id: int | None = None,
                      item_barcode: str | None = None) -> sqlite3.Row | None:
    """The peer's most recent tracked request for an item (by row id or barcode), any state."""
    if item_id is not None:
        return conn.execute("SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND"
                            " item_id = ? ORDER BY id DESC LIMIT 1",
                            (peer, role, item_id)).fetchone()
    if item_barcode:
        return conn.execute("SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND"
                            " item_barcode = ? ORDER BY id DESC LIMIT 1",
                            (peer, role, item_barcode)).fetchone()
    return None


def tracked(row: sqlite3.Row) -> TrackedRequest:
    """A ``rs_requests`` row as a typed record."""
    keys = row.keys()
    return TrackedRequest(
        id=row["id"], peer=row["peer"], role=row["role"], our_request_id=row["our_request_id"],
        state=row["state"], broker_request_id=row["broker_request_id"],
        broker_item_id=row["broker_item_id"] if "broker_item_id" in keys else None,
        item_id=row["item_id"], item_barcode=row["item_barcode"], patron_id=row["patron_id"],
        requested_at=parse_time(row["requested_at"]),
        accepted_at=parse_time(row["accepted_at"]), shipped_at=parse_time(row["shipped_at"]),
        received_at=parse_time(row["received_at"]),
        checked_out_at=parse_time(row["checked_out_at"]),
        returned_at=parse_time(row["returned_at"]),
        checked_in_at=parse_time(row["checked_in_at"]),
        completed_at=parse_time(row["completed_at"]),
        cancelled_at=parse_time(row["cancelled_at"]), due_at=parse_time(row["due_at"]),
        renewable=bool(row["renewable"]),
        end_reason=row["end_reason"] if "end_reason" in keys else None)


def _maybe(row: sqlite3.Row | None) -> TrackedRequest | None:
    return tracked(row) if row is not None else None


class SqlRequestBook:
    """:class:`gateway.domain.books.RequestBook` on a connection of the gateway's store."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def find(self, *, peer: str, role: str, broker_request_id: str | None = None,
             our_request_id: str | None = None,
             item_id: int | None = None) -> TrackedRequest | None:
        """See :meth:`RequestBook.find`."""
        return _maybe(find_rs_request(self._conn, peer=peer, role=role,
                                      broker_request_id=broker_request_id,
                                      our_request_id=our_request_id, item_id=item_id))

    def find_volume(self, *, peer: str, role: str, broker_request_id: str,
                    broker_item_id: str | None) -> TrackedRequest | None:
        """See :meth:`RequestBook.find_volume`."""
        return _maybe(find_volume(self._conn, peer=peer, role=role,
                                  broker_request_id=broker_request_id,
                                  broker_item_id=broker_item_id))

    def volumes(self, *, peer: str, role: str, broker_request_id: str) -> list[TrackedRequest]:
        """See :meth:`RequestBook.volumes`."""
        rows = self._conn.execute("SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND"
                                  " broker_request_id = ? ORDER BY id",
                                  (peer, role, broker_request_id)).fetchall()
        return [tracked(row) for row in rows]

    def latest(self, *, peer: str, role: str, item_id: int) -> TrackedRequest | None:
        """See :meth:`RequestBook.latest`."""
        return _maybe(latest_rs_request(self._conn, peer=peer, role=role, item_id=item_id))

    def latest_borrowed(self, *, peer: str, name: str) -> TrackedRequest | None:
        """See :meth:`RequestBook.latest_borrowed`."""
        return _maybe(self._conn.execute(
            "SELECT * FROM rs_requests WHERE peer = ? AND role = 'borrower' AND"
            " (item_barcode = ? OR broker_item_id = ?) ORDER BY id DESC LIMIT 1",
            (peer, name, name)).fetchone())

    def aliased_item(self, *, peer: str, broker_item_id: str) -> int | None:
        """See :meth:`RequestBook.aliased_item`."""
        row = self._conn.execute("SELECT item_id FROM rs_requests WHERE peer = ? AND"
                                 " broker_item_id = ? AND item_id IS NOT NULL ORDER BY id DESC"
                                 " LIMIT 1", (peer, broker_item_id)).fetchone()
        return int(row[0]) if row is not None else None

    def requested_item(self, *, peer: str, broker_request_id: str) -> int | None:
        """See :meth:`RequestBook.requested_item`."""
        rows = self._conn.execute("SELECT DISTINCT item_id FROM rs_requests WHERE peer = ? AND"
                                  " broker_request_id = ? AND item_id IS NOT NULL LIMIT 2",
                                  (peer, broker_request_id)).fetchall()
        return int(rows[0][0]) if len(rows) == 1 else None

    def placed_together(self, request: TrackedRequest) -> list[int]:
        """See :meth:`RequestBook.placed_together`."""
        requested = iso(request.requested_at) if request.requested_at else None
        return [int(row[0]) for row in self._conn.execute(
            "SELECT id FROM rs_requests WHERE patron_id = ? AND role = 'lender' AND"
            " requested_at = ? AND item_id IS ? ORDER BY id",
            (request.patron_id, requested, request.item_id))]

    def any_for_patron(self, *, peer: str, patron_id: int) -> bool:
        """See :meth:`RequestBook.any_for_patron`."""
        return self._conn.execute("SELECT 1 FROM rs_requests WHERE peer = ? AND patron_id = ?"
                                  " LIMIT 1", (peer, patron_id)).fetchone() is not None

    def next_number(self) -> int:
        """See :meth:`RequestBook.next_number`."""
        return next_request_number(self._conn)

    def create(self, *, peer: str, role: str, broker_request_id: str | None,
               our_request_id: str, state: str, step: str, now: datetime,
               item_id: int | None = None, item_barcode: str | None = None,
               patron_id: int | None = None, also_stamped: tuple[str, ...] = (),
               due_at: datetime | None = None, renewable: bool = True,
               broker_item_id: str | None = None) -> int:
        """See :meth:`RequestBook.create`."""
        columns: dict[str, object] = {}
        if due_at is not None:
            columns["due_at"] = iso(due_at)
        if not renewable:
            columns["renewable"] = 0
        if broker_item_id is not None:
            columns["broker_item_id"] = broker_item_id
        return create_rs_request(self._conn, peer=peer, role=role,
                                 broker_request_id=broker_request_id,
                                 our_request_id=our_request_id, state=state, step=step,
                                 now=now, item_id=item_id, item_barcode=item_barcode,
                                 patron_id=patron_id, also_stamped=also_stamped, **columns)

    def advance(self, request_id: int, *, state: str, step: str, now: datetime,
                item_id: int | None = None, item_barcode: str | None = None,
                due_at: datetime | None = None, end_reason: str | None = None) -> None:
        """See :meth:`RequestBook.advance`."""
        columns: dict[str, object] = {}
        if item_id is not None:
            columns["item_id"] = item_id
        if item_barcode is not None:
            columns["item_barcode"] = item_barcode
        if due_at is not None:
            columns["due_at"] = iso(due_at)
        if end_reason is not None:
            columns["end_reason"] = end_reason
        advance_rs_request(self._conn, request_id, state=state, step=step, now=now, **columns)

    def set_due(self, request_id: int, due_at: datetime) -> None:
        """See :meth:`RequestBook.set_due`."""
        self._conn.execute("UPDATE rs_requests SET due_at = ? WHERE id = ?",
                           (iso(due_at), request_id))

    def forget_item(self, item_id: int) -> None:
        """See :meth:`RequestBook.forget_item`."""
        self._conn.execute("UPDATE rs_requests SET item_id = NULL WHERE item_id = ?",
                           (item_id,))
