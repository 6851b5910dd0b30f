# -*- test-case-name: tests.gateway.test_audit,tests.gateway.test_reports -*-
"""The audit table: one row per exchange, written and read here and nowhere else.

:mod:`gateway.audit` decides what a row holds (bodies, patron hashes); this module stores rows
in the caller's transaction and reads them back for the command line, the admin pages and the
metrics. Times are UTC ISO 8601 text with microseconds, so they sort as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from gateway.storage.store import Connection

if TYPE_CHECKING:
    import sqlite_utils


@dataclass(frozen=True)
class AuditEntry:
    """One exchange, as it is stored."""

    protocol: str
    operation: str
    outcome: str
    peer: str | None = None
    remote: str | None = None
    dialect: str | None = None
    broker_request_id: str | None = None
    our_request_id: str | None = None
    item_barcode: str | None = None
    patron_hash: str | None = None
    duration_us: int | None = None
    request_size: int | None = None
    response_size: int | None = None
    request_body: str | None = None
    response_body: str | None = None
    time: str = ""
    notes: str | None = None  # repairs and flags, e.g. "charset-fallback:windows-1252"


def audit_time(moment: datetime) -> str:
    """An audit row's time: UTC, ISO 8601 with microseconds (sorts as text)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


_STORED_COLUMNS = ("protocol", "operation", "outcome", "peer", "remote", "dialect",
                   "broker_request_id", "our_request_id", "item_barcode", "patron_hash",
                   "duration_us", "request_size", "response_size", "request_body",
                   "response_body", "time", "notes")
assert _STORED_COLUMNS == tuple(f.name for f in fields(AuditEntry)), "AuditEntry changed"
_INSERT_AUDIT = (f"INSERT INTO audit ({', '.join(_STORED_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(_STORED_COLUMNS))})")


def _row(e: AuditEntry) -> tuple[Any, ...]:
    """An entry's column values (an explicit tuple, not dataclasses.asdict: a deep copy)."""
    return (e.protocol, e.operation, e.outcome, e.peer, e.remote, e.dialect, e.broker_request_id,
            e.our_request_id, e.item_barcode, e.patron_hash, e.duration_us, e.request_size,
            e.response_size, e.request_body, e.response_body,
            e.time or audit_time(datetime.now(timezone.utc)), e.notes)


def insert_entry(conn: Connection, entry: AuditEntry) -> int:
    """Insert one audit row in the caller's transaction; return its id."""
    cursor = conn.execute(_INSERT_AUDIT, _row(entry))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def insert_entries(conn: Connection, entries: Sequence[AuditEntry]) -> None:
    """Insert several audit rows, in order, in the caller's transaction."""
    conn.executemany(_INSERT_AUDIT, [_row(e) for e in entries])


# -- reading it back -------------------------------------------------------------------------

AUDIT_COLUMNS = ("id", "time", "protocol", "peer", "remote", "operation", "dialect",
                 "broker_request_id", "our_request_id", "item_barcode", "patron_hash", "outcome",
                 "duration_us", "request_size", "response_size", "notes")
"""The columns listings show (bodies only when asked for)."""


def _db(conn: Connection) -> sqlite_utils.Database:
    # imported here: only listings (admin, CLI) read through sqlite_utils, and with click,
    # pluggy and dateutil it costs a serving process (a worker) about 3 MiB it never uses
    import sqlite_utils

    return sqlite_utils.Database(conn, execute_plugins=False)


@dataclass(frozen=True)
class AuditFilter:
    """Filters for ``interlend audit`` (every field optional)."""

    peer: str | None = None
    protocol: str | None = None
    service: str | None = None
    request_id: str | None = None
    item: str | None = None
    outcome: str | None = None
    since: str | None = None
    until: str | None = None
    after_id: int = 0

    def where(self) -> tuple[str, list[Any]]:
        """The filter as a WHERE clause (without the keyword) and its parameters."""
        clauses: list[str] = ["id > ?"]
        params: list[Any] = [self.after_id]
        for column, value in (("peer", self.peer), ("protocol", self.protocol),
                              ("operation", self.service), ("item_barcode", self.item),
                              ("outcome", self.outcome)):
            if value is not None:
                clauses.append(f"{column} = ? COLLATE NOCASE")
                params.append(value)
        if self.request_id is not None:
            clauses.append("(broker_request_id = ? OR our_request_id = ?)")
            params += [self.request_id, self.request_id]
        if self.since is not None:
            clauses.append("time >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("time < ?")
            params.append(self.until)
        return " AND ".join(clauses), params


def audit_rows(conn: Connection, where: AuditFilter, *, limit: int | None = 100,
               bodies: bool = False, newest_first: bool = True) -> list[dict[str, Any]]:
    """Audit rows matching ``where`` (newest first for listings, oldest first for tailing),
    each a mapping of :data:`AUDIT_COLUMNS` (and the two bodies when asked for)."""
    sql, params = where.where()
    columns = AUDIT_COLUMNS + (("request_body", "response_body") if bodies else ())
    return list(_db(conn)["audit"].rows_where(
        sql, params, select=", ".join(columns),
        order_by="id DESC" if newest_first else "id", limit=limit))


def last_audit_id(conn: Connection) -> int:
    """The id of the newest audit row (0 when there is none): where tailing starts."""
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM audit").fetchone()[0])


def exchanges_about(conn: Connection, peer: str, clauses: Sequence[str],
                    params: Sequence[Any]) -> list[dict[str, Any]]:
    """A peer's audit rows matching any of ``clauses``, oldest first."""
    return list(_db(conn)["audit"].rows_where(
        f"peer = ? AND ({' OR '.join(clauses)})", [peer, *params],
        select=", ".join(AUDIT_COLUMNS), order_by="id"))


def first_exchange_id(conn: Connection, peer: str, broker_id: str | None,
                      our_id: str | None) -> int | None:
    """The id of the peer's first audit row naming either request id."""
    value = conn.execute(
        "SELECT MIN(id) FROM audit WHERE peer = ? AND (broker_request_id = ? OR"
        " our_request_id = ?)", (peer, broker_id, our_id)).fetchone()[0]
    return int(value) if value is not None else None


def next_request_about_item(conn: Connection, peer: str, barcode: str, after_id: int,
                            since: str, broker_id: str | None) -> int | None:
    """The id of the first later audit row about ``barcode`` that names another request."""
    value = conn.execute(
        "SELECT MIN(id) FROM audit WHERE peer = ? AND item_barcode = ? AND id > ? AND"
        " time >= ? AND broker_request_id IS NOT NULL AND broker_request_id IS NOT ?",
        (peer, barcode, after_id, since, broker_id)).fetchone()[0]
    return int(value) if value is not None else None


def exchange_bodies(conn: Connection,
                    audit_ids: list[int]) -> dict[int, tuple[str | None, str | None]]:
    """The stored (redacted as configured) bodies of these audit rows, by row id."""
    if not audit_ids:
        return {}
    found: dict[int, tuple[str | None, str | None]] = {}
    for start in range(0, len(audit_ids), 500):
        chunk = audit_ids[start:start + 500]
        for row in conn.execute(
                "SELECT id, request_body, response_body FROM audit WHERE id IN"
                f" ({', '.join('?' * len(chunk))})", chunk):
            found[row[0]] = (row[1], row[2])
    return found


@dataclass(frozen=True)
class PartnerOutcomes:
    """A partner's exchanges since some time: how many, how many failed, the last of each."""

    peer: str
    exchanges: int
    failures: int
    last_success: str | None
    last_failure: str | None

    def failing(self) -> bool:
        """Whether the partner looks broken: it failed last, or at least half the time."""
        return bool(self.failures) and (
            self.last_success is None
            or (self.last_failure or "") > self.last_success
            or 2 * self.failures >= self.exchanges)


def problems_since(conn: Connection, since: str, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """How many exchanges since ``since`` did not succeed, and the newest ``limit`` of them."""
    count = conn.execute("SELECT count(*) FROM audit WHERE time >= ? AND"
                         " outcome != 'success'", (since,)).fetchone()[0]
    rows = [dict(row) for row in conn.execute(
        "SELECT id, time, protocol, peer, operation, outcome, broker_request_id,"
        " our_request_id, item_barcode FROM audit WHERE time >= ? AND outcome != 'success'"
        " ORDER BY id DESC LIMIT ?", (since, limit))]
    return int(count), rows


def partner_outcomes(conn: Connection, since: str) -> list[PartnerOutcomes]:
    """Each partner's exchanges since ``since``, by partner name."""
    return [PartnerOutcomes(peer=row[0], exchanges=int(row[1]), failures=int(row[2] or 0),
                            last_success=row[3], last_failure=row[4])
            for row in conn.execute(
        "SELECT peer, count(*) AS exchanges, sum(outcome != 'success') AS failures,"
        " max(CASE WHEN outcome = 'success' THEN time END) AS last_success,"
        " max(CASE WHEN outcome != 'success' THEN time END) AS last_failure"
        " FROM audit WHERE time >= ? AND peer IS NOT NULL GROUP BY peer ORDER BY peer",
        (since,))]


def last_exchange_per_peer(conn: Connection) -> list[tuple[str, float]]:
    """Each peer's newest audited exchange, as POSIX seconds."""
    # peers by a skip-scan of the (peer, time) index, then each one's newest row
    return [(str(r[0]), datetime.fromisoformat(r[1]).timestamp()) for r in conn.execute(
        "WITH RECURSIVE p(peer) AS (SELECT MIN(peer) FROM audit UNION ALL "
        "SELECT (SELECT MIN(peer) FROM audit WHERE peer > p.peer) FROM p "
        "WHERE p.peer IS NOT NULL) SELECT peer, (SELECT MAX(time) FROM audit a "
        "WHERE a.peer = p.peer) FROM p WHERE peer IS NOT NULL") if r[1]]
