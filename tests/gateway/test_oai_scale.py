# -*- test-case-name: tests.gateway.test_oai_scale -*-
"""Big harvests: keyset pages in index order (no OFFSET, no sort), the same SQLite work for the
last page as for the first, every record exactly once, and memory per page that does not grow
with the harvest. Counted (SQLite VM steps, tracemalloc peaks), never timed."""

from __future__ import annotations

import re
import sqlite3
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest
import pytest_twisted
from twisted.internet import reactor

from gateway.backends.embedded.harvest import EmbeddedHarvest, page_query, read_page
from gateway.domain.harvest import HarvestPosition, HarvestSelection
from gateway.oai.provider import OAIProvider, ProviderSettings
from gateway.storage.store import Store, open_database
from gateway.testing import iso2709
from protocols.oai import TokenCodec

RECORDS = 6000
NOW = "2026-01-01T00:00:00+00:00"


def build(path: Path, count: int) -> None:
    """``count`` small records with items, inserted as any writer does (the triggers stamp
    them); their datestamps are then spread over a few seconds, ties included, so the keyset
    must order by record id within a second."""
    conn = open_database(path)
    with conn:
        conn.executemany(
            "INSERT INTO records (local_id, marc, title, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            ((f"r{n:07d}", iso2709([("001", f"r{n:07d}"), ("245", f"00$aTitle {n}")]),
              f"Title {n}", NOW, NOW) for n in range(count)))
        conn.execute(
            "INSERT INTO items (barcode, record_id, location, created_at, updated_at)"
            " SELECT 'B' || id, id, CASE id % 3 WHEN 0 THEN 'North' ELSE 'South' END, ?, ?"
            " FROM records", (NOW, NOW))
        conn.execute("UPDATE oai_records SET datestamp ="
                     " printf('2020-01-01T00:00:%02dZ', (record_id * 7) % 13)")
    conn.close()


@pytest.fixture
def big(tmp_path: Path) -> Iterator[Path]:
    """A catalogue of RECORDS records."""
    path = tmp_path / "big.sqlite3"
    build(path, RECORDS)
    yield path


def steps(conn: sqlite3.Connection, statements: list[tuple[str, list[Any]]]) -> int:
    """SQLite VM steps (in hundreds) to run a page's statements to the end."""
    counted = [0]

    def tick() -> int:
        counted[0] += 1
        return 0

    conn.set_progress_handler(tick, 100)
    for sql, args in statements:
        conn.execute(sql, args).fetchall()
    conn.set_progress_handler(None, 0)
    return counted[0]


def test_pages_follow_the_index_and_cost_the_same_at_the_end(big: Path) -> None:
    """Keyset pages read the datestamp index without sorting, visit every record once in
    (datestamp, id) order, and the last pages take the SQLite steps the first does."""
    conn = sqlite3.connect(big)
    everything = HarvestSelection()
    later = HarvestPosition(datetime(2020, 1, 1, tzinfo=timezone.utc), 5)
    for sql, args in page_query(everything, None, 100) + page_query(everything, later, 100):
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
        assert "oai_records_datestamp" in plan and "TEMP B-TREE" not in plan, plan
        assert "OFFSET" not in sql.upper()
    seen: list[int] = []
    costs: list[int] = []
    after = None
    while True:
        costs.append(steps(conn, page_query(everything, after, 100)))
        page = read_page(conn, everything, after, 100, False)
        if not page:
            break
        seen += [p.header.record_id for p in page]
        after = page[-1].header.position
    assert len(seen) == len(set(seen)) == RECORDS
    stamps = conn.execute("SELECT record_id FROM oai_records ORDER BY datestamp, record_id")
    assert seen == [r[0] for r in stamps]
    # keyset: the last full page costs what the first does (an OFFSET would be ~60x)
    assert max(costs[-5:-1]) <= 2 * costs[0] + 5, (costs[0], costs[-5:])
    # a set filter keeps to the index too
    north = HarvestSelection(location="North")
    for sql, args in page_query(north, later, 100):
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
        assert "TEMP B-TREE" not in plan, plan
    conn.close()


@pytest_twisted.ensureDeferred
async def test_a_full_harvest_holds_one_page_at_a_time(big: Path) -> None:
    """A full ListRecords harvest through the provider: every record, the completeListSize
    right, and the memory peak of the last pages no higher than that of the first."""
    store = Store(big, cast(Any, reactor))
    store.start()
    try:
        provider = OAIProvider(EmbeddedHarvest(store), TokenCodec(b"t" * 32),
                               ProviderSettings(page_size=200))
        now = datetime(2026, 12, 6, tzinfo=timezone.utc)
        query = b"verb=ListRecords&metadataPrefix=marc21_holdings"
        peaks: list[int] = []
        total = 0
        size = None
        tracemalloc.start()
        try:
            while True:
                tracemalloc.reset_peak()
                chunks = await provider.handle(query, now)
                peaks.append(tracemalloc.get_traced_memory()[1])
                body = b"".join(chunks)
                del chunks
                total += body.count(b"<record>")
                token = re.search(rb'<resumptionToken([^>]*)>([^<]*)<', body)
                assert token is not None or total == RECORDS
                if token is None or not token.group(2):
                    break
                found = re.search(rb'completeListSize="(\d+)"', token.group(1))
                assert found is not None
                size = int(found.group(1))
                query = b"verb=ListRecords&resumptionToken=" + quote(token.group(2)).encode()
        finally:
            tracemalloc.stop()
        assert total == size == RECORDS
        assert len(peaks) == RECORDS // 200
        # memory per page does not grow with the harvest: the last pages peak like the first
        assert max(peaks[-5:]) <= 1.5 * max(peaks[:5]), (peaks[:5], peaks[-5:])
    finally:
        await store.stop()
