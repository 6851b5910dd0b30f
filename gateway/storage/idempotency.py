# -*- test-case-name: tests.gateway.ncip.test_exactly_once -*-
"""Exactly-once replies in the gateway's store (the ``idempotency`` table).

Each state-changing NCIP request that succeeded leaves its reply here, sealed, under its
replay key; a repeat is answered from it. Runs inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime

from gateway.domain.books import ReplayKey
from gateway.storage.timestamps import iso


class SqlReplyBook:
    """:class:`gateway.domain.books.ReplyBook` on a connection of the gateway's store."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def replay(self, key: ReplayKey, opener: Callable[[bytes], bytes | None]) -> bytes | None:
        """See :meth:`ReplyBook.replay`."""
        row = self._conn.execute("SELECT response FROM idempotency WHERE peer = ? AND"
                                 " service = ? AND key = ?", key.ident).fetchone()
        if row is None:
            return None
        reply = opener(bytes(row[0]))
        if reply is None:
            self._conn.execute("DELETE FROM idempotency WHERE peer = ? AND service = ? AND"
                               " key = ?", key.ident)
        return reply

    def conflicts(self, key: ReplayKey) -> bool:
        """See :meth:`ReplyBook.conflicts`."""
        return self._conn.execute(
            "SELECT 1 FROM idempotency WHERE peer = ? AND request_key = ? AND service = ?"
            " AND item_key = ? AND user_key IS NOT NULL AND user_key != ? LIMIT 1",
            (key.peer, key.request, key.service, key.item, key.user)).fetchone() is not None

    def keep(self, key: ReplayKey, sealed: bytes, now: datetime) -> None:
        """See :meth:`ReplyBook.keep`."""
        self._conn.execute("INSERT INTO idempotency (peer, service, key, response, created_at,"
                           " request_key, item_key, user_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (*key.ident, sealed, iso(now), key.request, key.item, key.user))

    def forget_item(self, peer: str, name: str) -> None:
        """See :meth:`ReplyBook.forget_item`."""
        self._conn.execute("DELETE FROM idempotency WHERE peer = ? AND request_key = ?",
                           (peer, f"item:{name}"))
