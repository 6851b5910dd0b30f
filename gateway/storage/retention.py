# -*- test-case-name: tests.gateway.test_reports -*-
"""Retention and sweeps: audit bodies and rows past their time, stored replies with the bodies,
temporary items that no request needs any more."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.storage.store import Connection
from gateway.storage.timestamps import iso


def purge_audit(conn: Connection, *, now: datetime, body_days: int,
                row_days: int) -> tuple[int, int]:
    """Clear bodies older than ``body_days`` and delete rows older than ``row_days``.

    Stored exactly-once replies (the ``idempotency`` table) are bodies too: they go after
    ``body_days``.

    Returns (bodies cleared from rows kept, rows deleted). Runs in the caller's transaction.
    """
    body_cutoff = iso(now - timedelta(days=body_days))
    row_cutoff = iso(now - timedelta(days=row_days))
    # Rows first, so that a row deleted is not also counted as a body cleared.
    deleted = conn.execute("DELETE FROM audit WHERE time < ?", (row_cutoff,)).rowcount
    cleared = conn.execute(
        "UPDATE audit SET request_body = NULL, response_body = NULL WHERE time < ? AND"
        " (request_body IS NOT NULL OR response_body IS NOT NULL)", (body_cutoff,)).rowcount
    # Exactly-once replies are verbatim reply bodies (patron ids and all): they go with the
    # bodies. A retry weeks later is not a retry; the request's tracking still refuses it.
    conn.execute("DELETE FROM idempotency WHERE created_at < ?", (body_cutoff,))
    return cleared, deleted


@dataclass(frozen=True)
class OrphanItem:
    """A temporary item no live request needs: its request ended long ago, or none tracks it."""

    barcode: str
    owning_peer: str | None
    created_at: str | None
    our_request_id: str | None
    state: str | None
    ended_at: str | None


def orphan_items(conn: Connection, *, now: datetime, days: int) -> list[OrphanItem]:
    """Temporary items whose request ended more than ``days`` ago, or that no request tracks
    and that were created more than ``days`` ago (the embedded backend's items against the
    gateway's request tracking), oldest first."""
    cutoff = iso(now - timedelta(days=days))
    rows = conn.execute(
        "SELECT i.barcode, i.owning_peer, i.created_at, r.our_request_id, r.state,"
        " COALESCE(r.completed_at, r.cancelled_at, r.checked_in_at) AS ended_at"
        " FROM items i LEFT JOIN rs_requests r ON r.item_id = i.id"
        " WHERE i.temporary = 1 AND ((r.id IS NULL AND i.created_at < ?) OR"
        " COALESCE(r.completed_at, r.cancelled_at, r.checked_in_at) < ?)"
        " ORDER BY i.created_at", (cutoff, cutoff)).fetchall()
    return [OrphanItem(*row) for row in rows]
