# -*- test-case-name: tests.gateway.ncip.test_exactly_once -*-
"""The gateway's own books on one connection of its store: request tracking, exactly-once
replies, audit rows. A backend's unit of work opens them on the connection it commits."""

from __future__ import annotations

import sqlite3

from gateway.audit import AuditEntry, insert_entry
from gateway.storage.idempotency import SqlReplyBook
from gateway.storage.tracking import SqlRequestBook


class StoreBooks:
    """:class:`gateway.domain.books.Books` in the gateway's SQLite store."""

    __slots__ = ("_conn", "requests", "replies")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.requests = SqlRequestBook(conn)
        self.replies = SqlReplyBook(conn)

    def audit(self, entry: AuditEntry) -> None:
        """Add an audit row in this connection's transaction."""
        insert_entry(self._conn, entry)
