# -*- test-case-name: tests.gateway.test_oai_harvest,tests.gateway.test_oai_scale -*-
"""The embedded catalogue's harvest side (:class:`IHarvestable`) over the ``oai_records`` table.

Datestamps and tombstones are kept by triggers (migration 10 in
:mod:`gateway.storage.schema`); this module only reads them, in keyset pages on
(datestamp, record_id) served by the ``oai_records_datestamp`` index, and loads the page's live
records with :func:`gateway.backends.embedded.catalogue.load_records`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from zope.interface import implementer

from gateway.backends.embedded.catalogue import load_records
from gateway.domain.harvest import (
    HarvestedRecord,
    HarvestHeader,
    HarvestPosition,
    HarvestSelection,
    HarvestSets,
    IHarvestable,
)
from gateway.domain.holdings import CatalogueRecord
from gateway.storage.store import Store

__all__ = ["EmbeddedHarvest", "page_query", "parse_datestamp", "read_page", "stamp"]

T = TypeVar("T")
_COLUMNS = "record_id, local_id, datestamp, deleted, locations, kind"


def stamp(moment: datetime) -> str:
    """A datestamp as the table stores it (UTC, seconds, 'Z')."""
    utc = moment.astimezone(timezone.utc) if moment.tzinfo else moment
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datestamp(text: str) -> datetime:
    """A stored datestamp as an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _where(selection: HarvestSelection) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if selection.from_ is not None:
        clauses.append("datestamp >= ?")
        args.append(stamp(selection.from_))
    if selection.until is not None:
        clauses.append("datestamp <= ?")
        args.append(stamp(selection.until))
    if selection.location is not None:
        clauses.append(
            "(deleted = 0 AND EXISTS (SELECT 1 FROM items i WHERE i.record_id = o.record_id"
            " AND i.temporary = 0 AND i.location = ?)"
            " OR deleted = 1 AND instr(char(10) || coalesce(locations, '') || char(10),"
            " char(10) || ? || char(10)) > 0)")
        args += [selection.location, selection.location]
    if selection.kinds is not None:
        kinds = sorted(selection.kinds)
        clauses.append(f"substr(kind, 1, 1) IN ({','.join('?' * len(kinds))})")
        args += kinds
    if selection.serial is not None:
        clauses.append("substr(kind, 2, 1) " + ("= 's'" if selection.serial else "!= 's'"))
    return clauses, args


def _header(row: tuple[Any, ...]) -> HarvestHeader:
    record_id, local_id, datestamp, deleted, locations, kind = row
    return HarvestHeader(record_id, local_id, parse_datestamp(datestamp), bool(deleted),
                         tuple(locations.split("\n")) if locations else (), kind or "")


def _with_records(conn: sqlite3.Connection, headers: list[HarvestHeader],
                  with_records: bool, build: Callable[[CatalogueRecord], Any] | None = None
                  ) -> list[HarvestedRecord]:
    live = [h.record_id for h in headers if not h.deleted]
    loaded = load_records(conn, live) if with_records and live else {}
    if not with_records:
        # ListIdentifiers still reports the live records' locations as their sets.
        loaded_locations = _locations(conn, live)
        headers = [h if h.deleted else HarvestHeader(
            h.record_id, h.local_id, h.datestamp, False, loaded_locations.get(h.record_id, ()),
            h.kind) for h in headers]
        return [HarvestedRecord(h, None) for h in headers]
    out = []
    for h in headers:
        record = None if h.deleted else loaded.get(h.record_id)
        if record is not None:
            locations = tuple(dict.fromkeys(i.location for i in record.items if i.location))
            h = HarvestHeader(h.record_id, h.local_id, h.datestamp, False, locations, h.kind)
        out.append(HarvestedRecord(h, record if record is None or build is None
                                   else _built(build, record)))
    return out


def _built(build: Callable[[CatalogueRecord], Any], record: CatalogueRecord) -> Any:
    """``build(record)``, or the ValueError it raised (an unreadable stored record), for the
    caller to report: one bad record must not fail its page."""
    try:
        return build(record)
    except ValueError as error:
        return error


def _locations(conn: sqlite3.Connection, record_ids: list[int]) -> dict[int, tuple[str, ...]]:
    found: dict[int, list[str]] = {}
    for start in range(0, len(record_ids), 500):
        chunk = record_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for record_id, location in conn.execute(
                f"SELECT DISTINCT record_id, location FROM items WHERE record_id IN ({marks})"
                " AND temporary = 0 AND location != '' ORDER BY record_id, location", chunk):
            found.setdefault(record_id, []).append(location)
    return {k: tuple(v) for k, v in found.items()}


def page_query(selection: HarvestSelection, after: HarvestPosition | None, limit: int
               ) -> list[tuple[str, list[Any]]]:
    """The keyset page statements, run in order until ``limit`` rows: the rest of ``after``'s
    second (record ids above it), then later seconds. Two index ranges, because SQLite reads a
    row-value comparison ``(datestamp, record_id) > (?, ?)`` as ``datestamp >= ?`` and would
    walk every record of a busy second again on each page. Never an OFFSET."""
    clauses, args = _where(selection)
    order = " ORDER BY datestamp, record_id LIMIT ?"
    head = f"SELECT {_COLUMNS} FROM oai_records o INDEXED BY oai_records_datestamp"
    if after is None:
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return [(head + where + order, [*args, limit])]
    moment = stamp(after.datestamp)
    same = " WHERE " + " AND ".join([*clauses, "datestamp = ?", "record_id > ?"])
    later = " WHERE " + " AND ".join([*clauses, "datestamp > ?"])
    return [(head + same + order, [*args, moment, after.record_id, limit]),
            (head + later + order, [*args, moment, limit])]


def read_page(conn: sqlite3.Connection, selection: HarvestSelection,
              after: HarvestPosition | None, limit: int, with_records: bool,
              build: Callable[[CatalogueRecord], Any] | None = None) -> list[HarvestedRecord]:
    """One page of headers (and records) on ``conn``."""
    headers: list[HarvestHeader] = []
    for sql, args in page_query(selection, after, limit):
        args[-1] = limit - len(headers)
        headers += [_header(row) for row in conn.execute(sql, args)]
        if len(headers) >= limit:
            break
    return _with_records(conn, headers, with_records, build)


@implementer(IHarvestable)
class EmbeddedHarvest:
    """Harvest reads over the embedded store, on its reader threads."""

    def __init__(self, store: Store, *, time_limit: Callable[[], float] = lambda: 30.0) -> None:
        self._store = store
        self._time_limit = time_limit

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        return self._store.read_budgeted(work, self._time_limit())

    def earliest(self) -> Deferred[datetime | None]:
        def work(conn: sqlite3.Connection) -> datetime | None:
            row = conn.execute("SELECT min(datestamp) FROM oai_records").fetchone()
            return parse_datestamp(row[0]) if row and row[0] else None
        return self._read(work)

    def count(self, selection: HarvestSelection) -> Deferred[int]:
        clauses, args = _where(selection)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""

        def work(conn: sqlite3.Connection) -> int:
            return int(conn.execute(f"SELECT count(*) FROM oai_records o{where}", args)
                       .fetchone()[0])
        return self._read(work)

    def page(self, selection: HarvestSelection, after: HarvestPosition | None, limit: int,
             with_records: bool, build: Callable[[CatalogueRecord], Any] | None = None
             ) -> Deferred[list[HarvestedRecord]]:
        return self._read(lambda conn: read_page(conn, selection, after, limit, with_records,
                                                 build))

    def get(self, local_id: str) -> Deferred[HarvestedRecord | None]:
        def work(conn: sqlite3.Connection) -> HarvestedRecord | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM oai_records o WHERE record_id ="
                " (SELECT id FROM records WHERE local_id = ?)", (local_id,)).fetchone()
            if row is None:  # a tombstone: rare, and no index on local_id for them
                row = conn.execute(f"SELECT {_COLUMNS} FROM oai_records o WHERE local_id = ?"
                                   " AND deleted = 1 LIMIT 1", (local_id,)).fetchone()
            if row is None:
                return None
            return _with_records(conn, [_header(tuple(row))], True)[0]
        return self._read(work)

    def sets(self) -> Deferred[HarvestSets]:
        def work(conn: sqlite3.Connection) -> HarvestSets:
            locations = [r[0] for r in conn.execute(
                "SELECT DISTINCT location FROM items WHERE temporary = 0 AND location != ''"
                " ORDER BY location")]
            kinds = [r[0] for r in conn.execute(
                "SELECT DISTINCT substr(kind, 1, 1) FROM oai_records WHERE kind != ''"
                " ORDER BY 1")]
            return HarvestSets(tuple(locations), tuple(kinds))
        return self._read(work)
