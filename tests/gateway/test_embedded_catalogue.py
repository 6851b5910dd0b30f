# -*- test-case-name: tests.gateway.test_embedded_catalogue -*-
"""The embedded catalogue through the ICatalogue interface alone: domain plans in, result sets,
records with live holdings, scan pages and sorted sets out, domain errors for what it cannot
do. The fake catalogue is checked against the same interface.

Over the seeded catalogue of ``test_catalogue`` on a running Store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from zope.interface.verify import verifyClass, verifyObject

from gateway.backends.embedded.catalogue import EmbeddedCatalogue
from gateway.backends.embedded.operations import check_out
from gateway.domain.catalogue import (
    ICatalogue,
    IndexEntry,
    IResultSet,
    MalformedTerm,
    ResultSetUnknown,
    SortField,
    SortKey,
    UnsupportedCombination,
    UnsupportedIndex,
)
from gateway.domain.holdings import CatalogueRecord
from gateway.domain.query import (
    Combine,
    Comparison,
    IdentifierTerm,
    Operator,
    ScanPlan,
    SetTerm,
    Truncation,
    WordTerm,
    YearTerm,
)
from gateway.testing import FakeCatalogue, FakeResultSet
from tests.gateway.test_catalogue import Env, due_in, open_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """The seeded catalogue of ``test_catalogue`` on a running Store."""
    yield from open_env(tmp_path)


@pytest.fixture
def catalogue(env: Env) -> EmbeddedCatalogue:
    """The embedded catalogue on the env's store."""
    return EmbeddedCatalogue(env.store)


async def names(env: Env, catalogue: EmbeddedCatalogue, found: IResultSet) -> list[str]:
    """The seeded names of a result set's records, in result order."""
    by_id = {v: k for k, v in env.seeded.ids.items()}
    records = await catalogue.fetch(found, 1, found.count)
    return [by_id[r.id] if r is not None else "(gone)" for r in records]


def test_the_catalogues_provide_the_interface(catalogue: EmbeddedCatalogue) -> None:
    """The embedded and the fake catalogue, and their result sets, implement the interfaces."""
    verifyClass(ICatalogue, EmbeddedCatalogue)
    verifyObject(ICatalogue, catalogue)
    verifyObject(ICatalogue, FakeCatalogue())
    verifyObject(IResultSet, FakeResultSet((1, 2)))


@pytest_twisted.ensureDeferred
async def test_search_plans(env: Env, catalogue: EmbeddedCatalogue) -> None:
    """Words, identifiers, years, booleans and earlier result sets, by index name."""
    austen = await catalogue.search(WordTerm("author", "austen"))
    verifyObject(IResultSet, austen)
    assert austen.count == 3
    assert await names(env, catalogue, austen) == ["pride", "sense", "emma"]
    isbn = await catalogue.search(IdentifierTerm("isbn", "9780141439518"))
    assert await names(env, catalogue, isbn) == ["pride"]
    old = await catalogue.search(YearTerm(Comparison.LESS, 1814, 1814))
    assert await names(env, catalogue, old) == ["pride", "sense"]
    both = await catalogue.search(Combine(Operator.AND_NOT, SetTerm("a", austen),
                                          YearTerm(Comparison.WITHIN, 1800, 1812)))
    assert await names(env, catalogue, both) == ["pride", "emma"]
    prefix = await catalogue.search(WordTerm("title", "prej", truncation=Truncation.RIGHT))
    assert await names(env, catalogue, prefix) == ["pride"]
    whole = await catalogue.search(WordTerm("title", "Emma", complete=True))
    assert await names(env, catalogue, whole) == ["emma"]


@pytest_twisted.ensureDeferred
async def test_fetch_reads_live_holdings_and_builds_on_the_reader(
        env: Env, catalogue: EmbeddedCatalogue) -> None:
    """A fetch returns records with their items' live state (a loan shows at once); ``build``
    is applied to each record; temporary items never show."""
    found = await catalogue.search(WordTerm("title", "pride prejudice"))
    [record] = await catalogue.fetch(found, 1, 1)
    assert isinstance(record, CatalogueRecord) and record.local_id == "rec0001"
    assert [i.barcode for i in record.items] == ["B-PRIDE-2", "B-PRIDE-1"]
    assert all(i.available_now for i in record.items)
    due = due_in(21)
    await env.store.write(lambda conn: check_out(
        conn, item_id=env.seeded.item_ids["B-PRIDE-1"], patron_id=env.seeded.patron_id,
        due_at=due, now=due_in(0)))
    [record] = await catalogue.fetch(found, 1, 1)
    assert record is not None
    loaned = {i.barcode: i for i in record.items}["B-PRIDE-1"]
    assert loaned.on_loan and loaned.due_date == due.date().isoformat()
    assert await catalogue.fetch(found, 1, 1, lambda r: r.local_id) == ["rec0001"]


@pytest_twisted.ensureDeferred
async def test_a_deleted_record_leaves_its_position_empty(env: Env,
                                                          catalogue: EmbeddedCatalogue) -> None:
    """Positions are stable: a record deleted since the search comes back as None."""
    from gateway.backends.embedded.records import delete_record

    austen = await catalogue.search(WordTerm("author", "austen"))
    await env.store.write(lambda conn: delete_record(conn, env.seeded.ids["sense"]))
    records = await catalogue.fetch(austen, 1, 3)
    assert [r.local_id if r else None for r in records] == ["rec0001", None, "rec0006"]


@pytest_twisted.ensureDeferred
async def test_scan_and_sort(catalogue: EmbeddedCatalogue, env: Env) -> None:
    """Scan pages of index entries; sorted result sets."""
    page = await catalogue.scan(ScanPlan("title", "pride"), 2, 1, 0)
    assert page.position_of_term == 1
    assert page.entries[0] == IndexEntry("pride", 1, "Pride")
    years = await catalogue.scan(ScanPlan("year", "1813"), 2, 1, 0)
    assert [(e.term, e.records) for e in years.entries] == [("1813", 1), ("1815", 1)]
    austen = await catalogue.search(WordTerm("author", "austen"))
    by_title = await catalogue.sort(austen, [SortKey(SortField.TITLE, descending=True)])
    assert await names(env, catalogue, by_title) == ["sense", "pride", "emma"]
    by_year = await catalogue.sort(austen, [SortKey(SortField.YEAR)])
    assert await names(env, catalogue, by_year) == ["sense", "pride", "emma"]


@pytest_twisted.ensureDeferred
async def test_what_the_embedded_catalogue_cannot_do(catalogue: EmbeddedCatalogue) -> None:
    """Its domain errors: an index it lacks, alternatives inside a phrase, an unreadable
    regular expression, a result set of another catalogue."""
    with pytest.raises(UnsupportedIndex):
        await catalogue.search(WordTerm("shelfmark", "x"))
    with pytest.raises(UnsupportedIndex):
        await catalogue.scan(ScanPlan("shelfmark", "x"), 5, 1, 0)
    with pytest.raises(UnsupportedCombination):
        await catalogue.search(WordTerm("title", "of time", phrase=True,
                                        truncation=Truncation.LEFT))
    with pytest.raises(MalformedTerm):
        await catalogue.search(WordTerm("title", "((", truncation=Truncation.REGEX))
    with pytest.raises(ResultSetUnknown):
        await catalogue.search(SetTerm("other", FakeResultSet((1,))))
    with pytest.raises(ResultSetUnknown):
        await catalogue.fetch(FakeResultSet((1,)), 1, 1)


@pytest_twisted.ensureDeferred
async def test_fetch_reads_in_one_transaction_and_builds_after_it(
        env: Env, catalogue: EmbeddedCatalogue) -> None:
    """A fetch's page, size check and record reads share one read transaction (one snapshot;
    in a worker process one shared-memory read lock); ``build`` runs after it ended."""
    found = await catalogue.search(WordTerm("title", "pride prejudice"))
    await catalogue.fetch(found, 1, 1)  # served inline: opens the reactor's connection
    conn = env.store._inline
    assert conn is not None
    statements: list[str] = []
    during: list[bool] = []

    def build(record: CatalogueRecord) -> str:
        during.append(conn.in_transaction)
        return record.local_id

    conn.set_trace_callback(statements.append)
    try:
        built = await catalogue.fetch(found, 1, 1, build)
    finally:
        conn.set_trace_callback(None)
    assert built == ["rec0001"] and during == [False]
    assert statements[0] == "SAVEPOINT interlend_fetch"
    assert statements[-1] == "RELEASE interlend_fetch"
    assert len(statements) >= 4 and all(s.lstrip().upper().startswith("SELECT")
                                        for s in statements[1:-1])
