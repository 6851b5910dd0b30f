"""Circulation operations on the embedded store (``gateway.backends.operations``)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.backends import operations as ops
from gateway.store import open_database

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
DUE = "2030-02-01T23:59:59+00:00"


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return open_database(tmp_path / "db.sqlite3")


def _row(conn: sqlite3.Connection, rs_id: int) -> dict[str, object]:
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM rs_requests WHERE id = ?", (rs_id,)).fetchone())
    del row["id"], row["our_request_id"]
    return row


def test_request_created_at_a_later_step_equals_created_then_advanced(
        conn: sqlite3.Connection) -> None:
    """One INSERT with ``also_stamped`` and columns gives the row that creating the request
    and then advancing it gives (AcceptItem: accepted and received at once)."""
    common = {"peer": "p", "role": "borrower", "broker_request_id": "R1",
              "state": "awaiting_pickup", "step": "accepted", "now": NOW, "item_barcode": "B"}
    two = ops.create_rs_request(conn, our_request_id="B-1", **common)
    ops.advance_rs_request(conn, two, state="awaiting_pickup", step="received", now=NOW,
                           due_at=DUE, renewable=0)
    one = ops.create_rs_request(conn, our_request_id="B-2", also_stamped=("received",),
                                due_at=DUE, renewable=0, **{**common, "broker_request_id": "R2"})
    expected = _row(conn, two)
    expected["broker_request_id"] = "R2"
    assert _row(conn, one) == expected
    assert expected["received_at"] == expected["accepted_at"] and expected["renewable"] == 0


def test_unknown_steps_and_columns_refused(conn: sqlite3.Connection) -> None:
    """A misspelt step or column is a programming error, not a silent no-op."""
    base = {"peer": "p", "role": "borrower", "broker_request_id": "R", "our_request_id": "X",
            "state": "s", "step": "accepted", "now": NOW}
    with pytest.raises(ValueError):
        ops.create_rs_request(conn, also_stamped=("recieved",), **base)
    with pytest.raises(ValueError):
        ops.create_rs_request(conn, due=DUE, **base)
