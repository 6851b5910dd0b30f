# -*- test-case-name: tests.gateway.test_catalogue_limits -*-
"""The catalogue's defences (issue 12): regular expressions in linear time, term limits, the
time budget of catalogue reads, result sets that hold a bounded window of ids, Scan steps and
Sort sizes. Over a real :class:`Store`; the network attacks are in tests/robustness."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.internet.interfaces import IReactorFromThreads

from gateway.backends.embedded import search as search_module
from gateway.backends.embedded.records import upsert_record
from gateway.backends.embedded.search import HELD_IDS, Hits, compile_regex, run_plan
from gateway.config import Config, Z3950Settings
from gateway.domain.catalogue import CatalogueError
from gateway.storage.store import ReadInterrupted, Store, open_database
from gateway.z3950.catalogue import ResultSet
from gateway.z3950.diagnostics import Bib1Error, bib1_error
from gateway.z3950.query import plan_query
from protocols.z3950.codec import SortKeyInfo
from protocols.z3950.pqf import Attribute, Term, parse_pqf
from tests.gateway.test_catalogue import make_record, service_for

RECORDS = 600

reactor = cast(IReactorFromThreads, global_reactor)
"""The global reactor, as the store takes it (it runs reader callbacks through it)."""


def _catalogue(path: Path) -> None:
    conn = open_database(path)
    conn.execute("BEGIN")
    for n in range(RECORDS):
        upsert_record(conn, make_record(f"r{n:05d}", f"Common title w{n} volume{n % 7}",
                                        author=f"Writer{n % 40}, Ann"))
    conn.execute("COMMIT")
    conn.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[SimpleNamespace]:
    path = tmp_path / "limits.sqlite3"
    _catalogue(path)
    store = Store(path, reactor)
    store.start()
    gateway = SimpleNamespace(store=store, reactor=reactor, state="running",
                              config=Config(z3950=Z3950Settings(databases=("Default",))))
    service = service_for(gateway)
    yield SimpleNamespace(service=service, catalogue=service.catalogue, store=store,
                          gateway=gateway, path=path)
    pytest_twisted.blockon(store.stop())


async def _search(env: SimpleNamespace, pqf: str, result_sets: dict | None = None) -> ResultSet:
    return await env.service.search(parse_pqf(pqf), ["Default"], peer=None,
                                    result_sets=result_sets or {}, name="1")


async def _diagnostic(deferred) -> Bib1Error:
    """The diagnostic a call fails with (a catalogue error as the service maps it)."""
    try:
        await deferred
    except Bib1Error as error:
        return error
    except CatalogueError as error:
        return bib1_error(error)
    raise AssertionError("no diagnostic")


def test_backtracking_regex_runs_in_linear_time() -> None:
    """A pattern that makes a backtracking engine take exponential time (the attack of issue
    12, point 1) is matched at once by RE2; backreferences are refused with 125."""
    regex = compile_regex("(a|aa|a?)*(a+)+b")
    started = time.perf_counter()
    for _ in range(1000):
        assert regex.fullmatch("a" * 40) is None
    assert time.perf_counter() - started < 1.0
    with pytest.raises(CatalogueError) as error:
        compile_regex(r"(a)\1")
    assert bib1_error(error.value).code == 125
    with pytest.raises(CatalogueError) as error:
        compile_regex("a" * (search_module.MAX_REGEX + 1))
    assert bib1_error(error.value).code == 125


@pytest_twisted.ensureDeferred
async def test_regex_search_still_finds_words(env: SimpleNamespace) -> None:
    """Truncation 102 still finds what the expression matches, through RE2."""
    rs = await _search(env, "@attr 5=102 @attr 1=4 volume[34]")
    assert rs.count == sum(1 for n in range(RECORDS) if n % 7 in (3, 4))


@pytest_twisted.ensureDeferred
async def test_term_length_and_word_limits(env: SimpleNamespace) -> None:
    """A term longer than max_term_length is Bib-1 11, one with more than max_term_words
    words Bib-1 5, anywhere in a boolean query, before any database work; a Scan term too."""
    z = env.gateway.config.z3950
    long_term = '"' + "a" * (z.max_term_length + 1) + '"'
    many_words = '"' + " ".join(["common"] * (z.max_term_words + 1)) + '"'
    assert (await _diagnostic(env.service.search(
        parse_pqf(f"@or title {long_term}"), ["Default"], peer=None, result_sets={},
        name="1"))).code == 11
    assert (await _diagnostic(env.service.search(
        parse_pqf(f"@and {many_words} title"), ["Default"], peer=None, result_sets={},
        name="1"))).code == 5
    ok = '"' + " ".join(["common"] * z.max_term_words) + '"'
    assert (await _search(env, ok)).count == RECORDS
    scan = env.service.scan(Term("a" * (z.max_term_length + 1), ()), ["Default"], count=5,
                            preferred_position=1, step_size=0, peer=None)
    assert (await _diagnostic(scan)).code == 11


@pytest_twisted.ensureDeferred
async def test_time_budget_interrupts_a_catalogue_read(env: SimpleNamespace) -> None:
    """Past operation_time_limit SQLite is interrupted and the search answers Bib-1 31; the
    reader thread is free again at once."""
    env.gateway.config = replace(env.gateway.config, z3950=replace(
        env.gateway.config.z3950, operation_time_limit=0.05))

    def slow(conn: sqlite3.Connection) -> int:
        # a statement that runs for ever unless interrupted
        return conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)"
                            " SELECT count(*) FROM n").fetchone()[0]

    started = time.monotonic()
    with pytest.raises(ReadInterrupted, match="time limit"):
        await env.store.read_budgeted(slow, 0.05)
    assert time.monotonic() - started < 2
    error = await _diagnostic(env.catalogue._read(slow))
    assert error.code == 31 and "time limit" in (error.addinfo or "")
    assert (await _search(env, "common")).count == RECORDS


@pytest_twisted.ensureDeferred
async def test_stopping_interrupts_catalogue_reads(env: SimpleNamespace) -> None:
    """A budgeted read stops as soon as the gateway is stopping, whatever its budget."""
    def slow(conn: sqlite3.Connection) -> int:
        return conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)"
                            " SELECT count(*) FROM n").fetchone()[0]

    env.gateway.state = "stopping"
    started = time.monotonic()
    error = await _diagnostic(env.catalogue._read(slow))
    assert error.code == 31 and time.monotonic() - started < 2


@pytest_twisted.ensureDeferred
async def test_store_stop_interrupts_a_running_reader(tmp_path: Path) -> None:
    """Store.stop() interrupts a reader in the middle of a long statement instead of waiting
    for it (SIGTERM must be honoured whatever a reader is doing)."""
    path = tmp_path / "stop.sqlite3"
    open_database(path).close()
    store = Store(path, reactor)
    store.start()
    running = []

    def slow(conn: sqlite3.Connection) -> int:
        running.append(True)
        return conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)"
                            " SELECT count(*) FROM n").fetchone()[0]

    d = store.read(slow)
    deadline = time.monotonic() + 10
    while not running and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    await store.stop()
    assert time.monotonic() - started < 5
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        await d


@pytest_twisted.ensureDeferred
async def test_large_boolean_result_sets_hold_a_window(env: SimpleNamespace,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A boolean search with more hits than HELD_IDS holds at most HELD_IDS ids; every page,
    read forwards, far ahead or backwards, is the same as the full ordered list."""
    monkeypatch.setattr(search_module, "HELD_IDS", 50)
    rs = await _search(env, "@or common @attr 1=1003 writer3")
    hits = rs.found
    assert isinstance(hits, Hits)
    assert rs.count == RECORDS and hits.streamed and len(hits.ids) <= 50
    expected = await env.store.read(lambda conn: [row[0] for row in conn.execute(
        "SELECT id FROM records ORDER BY id")])
    pages: list[int] = []
    for start in range(1, RECORDS + 1, 37):
        pages += await env.store.read(lambda conn, s=start: hits.page(conn, s, 37))
        assert len(hits.ids) <= 50
    assert pages == expected
    for start, count in ((501, 20), (3, 10), (1, 5), (590, 30), (100, 1)):
        got = await env.store.read(lambda conn, s=start, c=count: hits.page(conn, s, c))
        assert got == expected[start - 1:start - 1 + count]
    assert len(hits.ids) <= 50


def test_small_boolean_results_are_read_whole(tmp_path: Path) -> None:
    """Up to HELD_IDS hits, a boolean plan is read in one statement and held whole."""
    path = tmp_path / "small.sqlite3"
    _catalogue(path)
    conn = open_database(path)
    hits = run_plan(conn, plan_query(parse_pqf("@or volume1 volume2"), {}))
    assert not hits.streamed and hits.count == len(hits.ids) <= HELD_IDS
    assert hits.count == sum(1 for n in range(RECORDS) if n % 7 in (1, 2))


@pytest_twisted.ensureDeferred
async def test_scan_step_and_sort_size_limits(env: SimpleNamespace) -> None:
    """A Scan step over max_scan_step is Bib-1 206 (it used to reach SQLite as an overflowing
    LIMIT and log a critical traceback); a Sort of more than max_sort_records is 230."""
    for step in (env.gateway.config.z3950.max_scan_step + 1, 2**62):
        scan = env.service.scan(Term("common", (Attribute(None, 1, 4),)), ["Default"],
                                count=10, preferred_position=1, step_size=step, peer=None)
        assert (await _diagnostic(scan)).code == 206
    env.gateway.config = replace(env.gateway.config, z3950=replace(
        env.gateway.config.z3950, max_sort_records=RECORDS - 1))
    rs = await _search(env, "common")
    key = SortKeyInfo(sort_field="title", attributes=(), relation=0)
    assert (await _diagnostic(env.service.sort(rs, [key], name="s"))).code == 230


@pytest_twisted.ensureDeferred
async def test_result_sets_are_charged_to_the_memory_budget(env: SimpleNamespace) -> None:
    """Each saved result set takes its size from the memory budget and gives it back when it
    is dropped; a search the budget cannot hold answers Bib-1 31 (resources exhausted)."""
    service = env.service
    first = await _search(env, "@or common writer1")
    used = service.memory.used
    assert used > 0
    env.gateway.config = replace(env.gateway.config, z3950=replace(
        env.gateway.config.z3950, memory_budget=used + 100))
    error = await _diagnostic(env.service.search(parse_pqf("@or common writer2"), ["Default"],
                                                 peer=None, result_sets={}, name="2"))
    assert error.code == 31 and service.memory.refused == 1
    del first
    assert service.memory.used == 0
    assert (await _search(env, "@or common writer2")).count == RECORDS


@pytest_twisted.ensureDeferred
async def test_every_catalogue_operation_is_under_the_time_budget(
        env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Search, Scan, Sort and Present all run under operation_time_limit: with a budget
    too small for any of them, each answers Bib-1 31 instead of running on."""
    monkeypatch.setattr(search_module, "HELD_IDS", 50)
    rs = await _search(env, "@or common @attr 1=1003 writer3")       # a set to present/sort
    env.gateway.config = replace(env.gateway.config, z3950=replace(
        env.gateway.config.z3950, operation_time_limit=1e-6))
    calls = {
        "search": env.service.search(parse_pqf("@or common @attr 1=1003 writer2"), ["Default"],
                                     peer=None, result_sets={}, name="2"),
        "scan": env.service.scan(Term("common", (Attribute(None, 1, 4),)), ["Default"],
                                 count=50, preferred_position=25, step_size=5, peer=None),
        "sort": env.service.sort(rs, [SortKeyInfo(sort_field="title")], name="s"),
        "present": env.service.fetch(rs, RECORDS - 20, 20, syntax=None, element_set="F",
                                     database="Default", peer=None),
    }
    for name, call in calls.items():
        error = await _diagnostic(call)
        assert error.code == 31, name
