# -*- test-case-name: tests.gateway.test_catalogue -*-
"""The catalogue service: bib-1 search, diagnostics, result sets, scan, sort, fetch errors.

A small catalogue is seeded into a temporary database and served by a real :class:`Store` on the
global reactor, exactly as the Z39.50 association uses it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pymarc
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.interfaces import IReactorFromThreads

from gateway.backends.embedded import catalogue as catalogue_module
from gateway.backends.embedded.catalogue import EmbeddedCatalogue
from gateway.backends.embedded.records import (
    ItemData,
    PatronData,
    delete_record,
    upsert_item,
    upsert_patron,
    upsert_record,
)
from gateway.backends.embedded.search import Hits, Sql, WordCounts, compile_plan, run_plan
from gateway.config import Config, Peer, Z3950Settings
from gateway.storage.schema import MIGRATIONS
from gateway.storage.store import Store, open_database
from gateway.z3950.catalogue import Bib1Error, CatalogueService, ResultSet, ScanResult
from gateway.z3950.query import plan_query
from protocols.z3950 import oids
from protocols.z3950.codec import ResponseRecord, SortKeyInfo, SurrogateDiagnostic
from protocols.z3950.pqf import Attribute, Query, Term, parse_pqf

# -- the test catalogue ---------------------------------------------------------------------------


def make_record(local_id: str, title: str, *, author: str | None = None, year: int | None = None,
                isbn: str | None = None, issn: str | None = None, oclc: str | None = None,
                subjects: tuple[str, ...] = (), nonfiling: int = 0,
                extra: tuple[pymarc.Field, ...] = ()) -> pymarc.Record:
    """A small valid MARC 21 record."""
    record = pymarc.Record(force_utf8=True)
    record.leader = pymarc.Leader("00000nam a2200000 a 4500")
    record.add_field(pymarc.Field(tag="001", data=local_id))
    fixed = f"200101s{year or '    '}    xxu           000 1 eng d"
    record.add_field(pymarc.Field(tag="008", data=fixed))
    if isbn:
        record.add_field(_df("020", [("a", isbn)]))
    if issn:
        record.add_field(_df("022", [("a", issn)]))
    if oclc:
        record.add_field(_df("035", [("a", f"(OCoLC){oclc}")]))
    if author:
        record.add_field(_df("100", [("a", author)], "1 "))
    record.add_field(_df("245", [("a", title)], f"1{nonfiling}"))
    if year:
        record.add_field(_df("264", [("a", "London :"), ("b", "Penguin,"), ("c", str(year))], " 1"))
    for subject in subjects:
        parts = subject.split(" -- ")
        record.add_field(_df("650", [("a", parts[0])] + [("x", p) for p in parts[1:]], " 0"))
    for f in extra:
        record.add_field(f)
    return record


def _df(tag: str, pairs: list[tuple[str, str]], indicators: str = "  ") -> pymarc.Field:
    return pymarc.Field(tag=tag, indicators=pymarc.Indicators(*indicators),
                        subfields=[pymarc.Subfield(c, v) for c, v in pairs])


@dataclass
class Seeded:
    """Record ids of the seeded catalogue, by a short name."""

    ids: dict[str, int]
    patron_id: int
    item_ids: dict[str, int]


def seed(conn: sqlite3.Connection) -> Seeded:
    """Insert the test catalogue: six lendable records, one temporary record, items, a patron."""
    ids: dict[str, int] = {}
    items: dict[str, int] = {}
    conn.execute("BEGIN")
    ids["pride"], _ = upsert_record(conn, make_record(
        "rec0001", "Pride and prejudice /", author="Austen, Jane,", year=1813,
        isbn="0-14-143951-3 (pbk.)", oclc="ocm34117863",
        subjects=("Courtship -- Fiction", "England -- Social life and customs -- Fiction")))
    ids["sense"], _ = upsert_record(conn, make_record(
        "rec0002", "Sense and sensibility", author="Austen, Jane", year=1811,
        isbn="9780141439662", subjects=("Sisters -- Fiction",)))
    ids["nature"], _ = upsert_record(conn, make_record(
        "rec0003", "Nature", year=1869, issn="0028-0836", subjects=("Science -- Periodicals",)))
    ids["handbook"], _ = upsert_record(conn, make_record(
        "rec0004", "The computer programmer's handbook", author="Smith, John", year=2001,
        isbn="0262011530", subjects=("Computer programming",), nonfiling=4))
    ids["cafe"], _ = upsert_record(conn, make_record(
        "rec0005", "Café society", author="Müller, Hans", year=1990,
        subjects=("Cafés -- Social aspects",)))
    ids["emma"], _ = upsert_record(conn, make_record(
        "rec0006", "Emma", author="Austen, Jane", year=1815, oclc="12345"))
    ids["borrowed"], _ = upsert_record(conn, make_record(
        "ILL-0001", "Pride of the borrowed lands", author="Lender, Larry", year=1813,
        isbn="0-14-143966-1", oclc="99999", subjects=("Courtship -- Fiction",)), temporary=True)
    for barcode, rid, location, shelving, call, copy in [
            ("B-PRIDE-1", "pride", "Main Library", "Stacks", "PR4034 .P7 1813", "1"),
            ("B-PRIDE-2", "pride", "Branch", "Fiction", "F AUS", "2"),
            ("B-SENSE-1", "sense", "Main Library", "Stacks", "PR4034 .S4", "1"),
            ("B-HAND-1", "handbook", "Main Library", "Reference", "QA76.6 .S6", "1"),
            ("B-EMMA-1", "emma", "Main Library", "Stacks", "PR4034 .E5", "1")]:
        items[barcode], _ = upsert_item(conn, ids[rid], ItemData(
            barcode=barcode, location=location, shelving_location=shelving, call_number=call,
            copy_number=copy, loan_policy="3 weeks"))
    items["ILL-TEMP-1"], _ = upsert_item(conn, ids["borrowed"], ItemData(
        barcode="ILL-TEMP-1", location="Main Library", temporary=True, owning_peer="reshare"))
    # A temporary item hung on a real record must not show either.
    items["ILL-TEMP-2"], _ = upsert_item(conn, ids["pride"], ItemData(
        barcode="ILL-TEMP-2", location="Main Library", temporary=True, owning_peer="reshare"))
    patron_id, _ = upsert_patron(conn, PatronData(barcode="P0001", family_name="Reader"))
    conn.execute("COMMIT")
    return Seeded(ids, patron_id, items)


@dataclass
class Env:
    """The service under test with its store and seeded ids."""

    service: CatalogueService
    store: Store
    seeded: Seeded
    gateway: Any


def make_config(**peers: str) -> Config:
    """A configuration with two databases and peers named after their holdings tag."""
    return Config(z3950=Z3950Settings(databases=("Default", "Books")),
                  peers=tuple(Peer(name=name, holdings_tag=tag) for name, tag in peers.items()))


def open_env(tmp_path: Path) -> Iterator[Env]:
    """A seeded database served by a running Store and a CatalogueService (fixture body)."""
    path = tmp_path / "catalogue.sqlite3"
    conn = open_database(path)
    seeded = seed(conn)
    conn.close()
    store = Store(path, cast(IReactorFromThreads, reactor))  # the global reactor is all of them
    store.start()
    gateway = SimpleNamespace(store=store, reactor=reactor,
                              config=make_config(koha="952", symphony="926", tlc="982",
                                                 folio="852"))
    yield Env(service_for(gateway), store, seeded, gateway)
    pytest_twisted.blockon(store.stop())


def service_for(gateway: Any) -> CatalogueService:
    """The Z39.50 catalogue service over the embedded catalogue, as the daemon builds it."""
    catalogue = EmbeddedCatalogue(
        gateway.store, time_limit=lambda: gateway.config.z3950.operation_time_limit,
        stopping=lambda: getattr(gateway, "state", "running") in ("stopping", "stopped"))
    return CatalogueService(catalogue, config=lambda: gateway.config, clock=gateway.reactor)


def known(name: str, record_ids: Any) -> ResultSet:
    """A result set of known record ids (as a sorted one is)."""
    return ResultSet(name, Hits.of(record_ids))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """A seeded database served by a running Store and a CatalogueService."""
    yield from open_env(tmp_path)


async def hits(env: Env, pqf: str, databases: tuple[str, ...] = ("Default",),
               result_sets: dict[str, ResultSet] | None = None) -> set[str]:
    """The names of the seeded records a PQF query finds."""
    rs = await env.service.search(parse_pqf(pqf), list(databases), peer=None,
                                  result_sets=result_sets or {}, name="default")
    names = {v: k for k, v in env.seeded.ids.items()}
    return {names[i] for i in await all_ids(env, rs)}


async def all_ids(env: Env, rs: ResultSet) -> list[int]:
    """Every record id of a result set, in result order."""
    return await env.store.read(lambda conn: hits_of(rs).page(conn, 1, rs.count))


def hits_of(rs: ResultSet) -> Hits:
    """The embedded catalogue's own result set behind a named one (its ids and statements)."""
    assert isinstance(rs.found, Hits), rs.found
    return rs.found


async def diagnostic(env: Env, pqf: str | Query, databases: tuple[str, ...] = ("Default",)
                     ) -> tuple[int, str | None]:
    """The Bib-1 diagnostic (code, addinfo) a query fails with."""
    query = parse_pqf(pqf) if isinstance(pqf, str) else pqf
    with pytest.raises(Bib1Error) as info:
        await env.service.search(query, list(databases), peer=None, result_sets={},
                                 name="default")
    return info.value.code, info.value.addinfo


# -- use attributes -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_title_word_search_defaults_to_word_list(env: Env) -> None:
    """Bare 1=4 (as ReShare sends it) ANDs the words in any order, case and accents folded."""
    assert await hits(env, '@attr 1=4 "pride and prejudice"') == {"pride"}
    assert await hits(env, '@attr 1=4 "Prejudice PRIDE"') == {"pride"}
    assert await hits(env, "@attr 1=4 cafe") == {"cafe"}
    assert await hits(env, "@attr 1=4 CAFÉ") == {"cafe"}
    assert await hits(env, "@attr 1=4 austen") == set()


@pytest_twisted.ensureDeferred
async def test_author_uses(env: Env) -> None:
    """1=1003 author, 1=1004 author-name personal and 1=1 personal name search the author."""
    for use in (1003, 1004, 1):
        assert await hits(env, f"@attr 1={use} austen") == {"pride", "sense", "emma"}
    assert await hits(env, '@attr 1=1003 "jane austen"') == {"pride", "sense", "emma"}
    assert await hits(env, "@attr 1=1003 muller") == {"cafe"}


@pytest_twisted.ensureDeferred
async def test_subject_search(env: Env) -> None:
    """1=21 searches subject headings, including subdivisions."""
    assert await hits(env, "@attr 1=21 fiction") == {"pride", "sense"}
    assert await hits(env, "@attr 1=21 periodicals") == {"nature"}
    assert await hits(env, '@attr 1=21 @attr 6=3 "Courtship -- Fiction"') == {"pride"}
    assert await hits(env, '@attr 1=21 @attr 6=3 "Courtship"') == set()


@pytest_twisted.ensureDeferred
async def test_any_searches_words_and_identifiers(env: Env) -> None:
    """1=1016 finds words in every column and, like Evergreen adapters expect, identifiers."""
    assert await hits(env, "@attr 1=1016 penguin") == {"pride", "sense", "nature", "handbook",
                                                         "cafe", "emma"}
    assert await hits(env, "@attr 1=1016 sisters") == {"sense"}
    assert await hits(env, "@attr 1=1016 rec0003") == {"nature"}
    assert await hits(env, "@attr 1=1016 0262011530") == {"handbook"}
    assert await hits(env, "science") == {"nature"}  # no Use attribute: any


@pytest_twisted.ensureDeferred
async def test_local_number(env: Env) -> None:
    """1=12 matches the 001 local id exactly, with no other attributes (ReShare's first query)."""
    assert await hits(env, "@attr 1=12 rec0002") == {"sense"}
    assert await hits(env, "@attr 1=12 rec000") == set()
    assert await hits(env, "@attr 1=12 @attr 5=1 rec000") == {
        "pride", "sense", "nature", "handbook", "cafe", "emma"}


@pytest_twisted.ensureDeferred
async def test_isbn_cross_matching(env: Env) -> None:
    """1=7 matches an ISBN in its 10- or 13-digit form, with or without hyphens."""
    for term in ("0141439513", "0-14-143951-3", "9780141439518", "978-0-14-143951-8"):
        assert await hits(env, f'@attr 1=7 "{term}"') == {"pride"}, term
    for term in ("0141439661", "0-14-143966-1", "9780141439662"):
        assert await hits(env, f"@attr 1=7 {term}") == {"sense"}, term
    assert await hits(env, "@attr 1=7 9780262011532") == {"handbook"}
    assert await hits(env, "@attr 1=7 0141439514") == set()  # bad check digit


@pytest_twisted.ensureDeferred
async def test_issn_and_oclc(env: Env) -> None:
    """1=8 ISSN with or without hyphen; 1=1211 OCLC number with or without prefix."""
    assert await hits(env, "@attr 1=8 0028-0836") == {"nature"}
    assert await hits(env, "@attr 1=8 00280836") == {"nature"}
    assert await hits(env, "@attr 1=1211 34117863") == {"pride"}
    assert await hits(env, "@attr 1=1211 (OCoLC)ocm34117863") == {"pride"}
    assert await hits(env, "@attr 1=1211 12345") == {"emma"}


@pytest_twisted.ensureDeferred
async def test_identifier_standard(env: Env) -> None:
    """1=1007 (Bath level 1, with 3=1 4=1) matches ISBN, ISSN, OCLC and local numbers."""
    assert await hits(env, "@attr 1=1007 @attr 3=1 @attr 4=1 9780141439518") == {"pride"}
    assert await hits(env, "@attr 1=1007 0028-0836") == {"nature"}
    assert await hits(env, "@attr 1=1007 34117863") == {"pride"}
    assert await hits(env, "@attr 1=1007 rec0006") == {"emma"}


@pytest_twisted.ensureDeferred
async def test_date_relations(env: Env) -> None:
    """1=31 compares the year of publication with relations 1-6 (3 equal by default)."""
    assert await hits(env, "@attr 1=31 1813") == {"pride"}
    assert await hits(env, "@attr 1=31 @attr 2=3 @attr 4=4 1813") == {"pride"}
    assert await hits(env, "@attr 1=31 @attr 2=1 1813") == {"sense"}
    assert await hits(env, "@attr 1=31 @attr 2=2 1813") == {"pride", "sense"}
    assert await hits(env, "@attr 1=31 @attr 2=4 1990") == {"cafe", "handbook"}
    assert await hits(env, "@attr 1=31 @attr 2=5 1990") == {"handbook"}
    assert await hits(env, "@attr 1=31 @attr 2=6 1813") == {"sense", "nature", "handbook",
                                                              "cafe", "emma"}
    assert await hits(env, "@attr 1=31 1811-1815") == {"pride", "sense", "emma"}
    assert await hits(env, "@attr 1=31 @attr 2=5 1850") == {"nature", "handbook", "cafe"}


# -- structure, position, completeness, truncation ----------------------------------------------


@pytest_twisted.ensureDeferred
async def test_phrase_position_and_completeness(env: Env) -> None:
    """4=1 needs adjacent words in order; 3=1 the start of the field; 6=3 the whole field."""
    assert await hits(env, '@attr 1=4 @attr 4=1 "pride and prejudice"') == {"pride"}
    assert await hits(env, '@attr 1=4 @attr 4=1 "prejudice and pride"') == set()
    assert await hits(env, '@attr 1=4 @attr 4=2 "sensibility"') == {"sense"}
    assert await hits(env, "@attr 1=4 @attr 3=1 society") == set()
    assert await hits(env, "@attr 1=4 @attr 3=1 cafe") == {"cafe"}
    assert await hits(env, '@attr 1=4 @attr 6=3 "pride and prejudice"') == {"pride"}
    assert await hits(env, '@attr 1=4 @attr 6=3 "pride and"') == set()
    assert await hits(env, '@attr 1=4 @attr 6=3 @attr 5=1 "pride and"') == {"pride"}
    assert await hits(env, '@attr 1=1003 @attr 6=3 "austen, jane"') == {"pride", "sense", "emma"}
    # Bath FA-A keyword form.
    assert await hits(env, "@attr 1=4 @attr 2=3 @attr 3=3 @attr 4=2 @attr 5=100 @attr 6=1 "
                           "emma") == {"emma"}


@pytest_twisted.ensureDeferred
async def test_truncation(env: Env) -> None:
    """Right (1), left (2), both (3), none (100), # masking (101), regex (102), Z39.58 (104)."""
    assert await hits(env, "@attr 1=4 @attr 5=1 prej") == {"pride"}
    assert await hits(env, "@attr 1=4 @attr 5=100 prej") == set()
    assert await hits(env, "@attr 1=4 @attr 5=2 udice") == {"pride"}
    assert await hits(env, "@attr 1=4 @attr 5=3 ejud") == {"pride"}
    assert await hits(env, "@attr 1=4 @attr 5=101 pr#ce") == {"pride"}
    assert await hits(env, "@attr 1=4 @attr 5=104 s#ciety") == {"cafe"}
    assert await hits(env, "@attr 1=4 @attr 5=104 hand?") == {"handbook"}
    assert await hits(env, '@attr 1=4 @attr 5=102 "pr.de"') == {"pride"}
    assert await hits(env, '@attr 1=4 @attr 4=1 @attr 5=1 "pride and prej"') == {"pride"}
    assert await hits(env, "@attr 1=4 @attr 5=2 zzzz") == set()


# -- boolean operators and result sets ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_boolean_operators(env: Env) -> None:
    """@and, @or and @not are set operations on record ids."""
    assert await hits(env, "@and @attr 1=1003 austen @attr 1=31 1813") == {"pride"}
    assert await hits(env, "@or @attr 1=12 rec0001 @attr 1=8 0028-0836") == {"pride", "nature"}
    assert await hits(env, "@not @attr 1=1003 austen @attr 1=4 emma") == {"pride", "sense"}
    assert await hits(env, "@and @or @attr 1=4 emma @attr 1=4 nature @not @attr 1=21 science "
                           "@attr 1=4 emma") == {"nature"}


@pytest_twisted.ensureDeferred
async def test_named_result_sets(env: Env) -> None:
    """@set refers to an earlier result set; an unknown name is diagnostic 30."""
    austen = await env.service.search(parse_pqf("@attr 1=1003 austen"), ["Default"], peer=None,
                                      result_sets={}, name="austen")
    assert austen.name == "austen" and austen.count == 3
    sets = {"austen": austen}
    assert await hits(env, "@and @set austen @attr 1=31 1811", result_sets=sets) == {"sense"}
    assert await hits(env, "@set austen", result_sets=sets) == {"pride", "sense", "emma"}
    with pytest.raises(Bib1Error) as info:
        await env.service.search(parse_pqf("@set nosuch"), ["Default"], peer=None,
                                 result_sets=sets, name="x")
    assert (info.value.code, info.value.addinfo) == (30, "nosuch")


@pytest_twisted.ensureDeferred
async def test_results_are_in_record_id_order(env: Env) -> None:
    """Hits come back in ascending record id order, every time."""
    rs = await env.service.search(parse_pqf("@attr 1=1016 penguin"), ["Default"], peer=None,
                                  result_sets={}, name="default")
    ids = await all_ids(env, rs)
    assert ids == sorted(ids)


@pytest_twisted.ensureDeferred
async def test_temporary_records_are_never_found(env: Env) -> None:
    """A borrowed (temporary) record is invisible to every kind of search."""
    for pqf in ("@attr 1=4 borrowed", "@attr 1=12 ILL-0001", "@attr 1=7 0141439661x",
                "@attr 1=1211 99999", "@attr 1=1016 lender", "@attr 1=1003 lender",
                "@attr 1=4 @attr 5=2 rrowed", "@attr 1=1016 ILL-0001",
                "@attr 1=4 @attr 6=3 \"Pride of the borrowed lands\""):
        assert await hits(env, pqf) == set(), pqf
        rs = await env.service.search(parse_pqf(pqf), ["Default"], peer=None, result_sets={},
                                      name="default")
        assert rs.count == 0, pqf
    rs = await env.service.search(parse_pqf("@attr 1=1016 pride"), ["Default"], peer=None,
                                  result_sets={}, name="default")
    assert rs.count == 1  # "Pride of the borrowed lands" is not counted
    assert await hits(env, "@attr 1=21 courtship") == {"pride"}
    assert await hits(env, "@attr 1=31 1813") == {"pride"}


# -- diagnostics ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_database_names(env: Env) -> None:
    """Configured databases match case-insensitively; any other name is 109 with the name."""
    assert await hits(env, "@attr 1=12 rec0001", ("default",)) == {"pride"}
    assert await hits(env, "@attr 1=12 rec0001", ("BOOKS", "Default")) == {"pride"}
    assert await diagnostic(env, "@attr 1=12 rec0001", ("nosuchdb",)) == (109, "nosuchdb")


@pytest_twisted.ensureDeferred
async def test_database_list_is_read_at_call_time(env: Env) -> None:
    """A configuration reload (SIGHUP) changes the accepted databases for the next search."""
    env.gateway.config = Config(z3950=Z3950Settings(databases=("Other",)))
    assert await diagnostic(env, "@attr 1=12 rec0001") == (109, "Default")
    assert await hits(env, "@attr 1=12 rec0001", ("other",)) == {"pride"}


@pytest.mark.parametrize("pqf, expected", [
    ("@attr 1=9999 foo", (114, "9999")),
    ("@attr 1=nosuch foo", (114, "nosuch")),
    ("@attr 1=4 @attr 2=1 foo", (117, "1")),
    ("@attr 1=4 @attr 2=100 foo", (117, "100")),
    ("@attr 1=31 @attr 2=7 1990", (117, "7")),
    ("@attr 1=4 @attr 4=4 foo", (118, "4")),
    ("@attr 1=31 @attr 4=111 1990", (118, "111")),
    ("@attr 1=4 @attr 3=7 foo", (119, "7")),
    ("@attr 1=4 @attr 5=200 foo", (120, "200")),
    ("@attr 1=7 @attr 5=2 0262011530", (120, "2")),
    ("@attr 1=31 @attr 5=2 19", (120, "2")),
    ("@attr 1=4 @attr 6=9 foo", (122, "9")),
    ("@attr 1=4 @attr 6=3 @attr 5=2 foo", (123, None)),
    ("@attr 1=4 @attr 4=1 @attr 5=101 \"pr#de and\"", (123, None)),
    ("@attr 1=4 @attr 3=1 @attr 5=3 foo", (123, None)),
    ("@attr 1=4 @attr 8=1 foo", (113, "8")),
    ("@attr exp1 1=1 foo", (121, "1.2.840.10003.3.2")),
    ("@attrset exp1 @attr 1=1 foo", (121, "1.2.840.10003.3.2")),
    ("@attr 1=31 nineteen", (126, "nineteen")),
    ("@attr 1=4 @attr 5=102 \"((\"", (125, None)),
])
@pytest_twisted.ensureDeferred
async def test_unsupported_attributes(env: Env, pqf: str, expected: tuple[int, str | None]
                                      ) -> None:
    """Unsupported attributes give the official Bib-1 code with the offending value as addinfo."""
    code, addinfo = await diagnostic(env, pqf)
    assert code == expected[0]
    if expected[1] is not None:
        assert addinfo == expected[1]


@pytest_twisted.ensureDeferred
async def test_malformed_queries(env: Env) -> None:
    """A query tree the model cannot hold is 108; something that is not a type-1 query is 107."""
    code, _ = await diagnostic(env, Query(root="not a node"))  # type: ignore[arg-type]
    assert code == 108
    with pytest.raises(Bib1Error) as info:
        await env.service.search("title=foo", ["Default"], peer=None,  # type: ignore[arg-type]
                                 result_sets={}, name="default")
    assert info.value.code == 107


def test_bib1_error_carries_code_and_addinfo() -> None:
    """Bib1Error(code, addinfo) exposes both for the association's diagnostic."""
    error = Bib1Error(114, "9999")
    assert (error.code, error.addinfo) == (114, "9999")
    assert Bib1Error(2).addinfo is None
    assert "114" in str(error)


# -- access paths and threads ---------------------------------------------------------------------


def _plan_of(conn: sqlite3.Connection, pqf: str) -> str:
    sql, params = compile_plan(conn, plan_query(parse_pqf(pqf), {}), 10**9)
    return "\n".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def _table_scans(plan: str) -> list[str]:
    """Plan lines that read a whole table or index (the partial index of temporary records,
    which holds only borrowed items in flight, is expected)."""
    return [line for line in plan.splitlines()
            if line.startswith("SCAN ") and not line.startswith("SCAN (subquery")
            and "VIRTUAL TABLE" not in line and "records_temporary" not in line]


def test_identifier_lookup_uses_the_index(tmp_path: Path) -> None:
    """ISBN/OCLC lookups seek the (kind, value) primary key, local numbers the
    case-insensitive index of local ids: no table scan."""
    conn = open_database(tmp_path / "plan.sqlite3")
    seed(conn)
    for pqf in ("@attr 1=7 0262011530", "@attr 1=1211 34117863", "@attr 1=12 REC0001"):
        plan = _plan_of(conn, pqf)
        if pqf.startswith("@attr 1=12 "):
            assert "USING COVERING INDEX records_local_nocase (local_id=?" in plan, plan
        else:
            assert "SEARCH record_identifiers USING PRIMARY KEY (kind=? AND value=?" in plan, plan
        assert not _table_scans(plan), plan
        assert "USING INDEX records_temporary" in plan, plan


def test_word_search_uses_fts(tmp_path: Path) -> None:
    """Word searches go through the FTS5 index, dates through the year index."""
    conn = open_database(tmp_path / "plan.sqlite3")
    seed(conn)
    plan = _plan_of(conn, "@attr 1=4 pride")
    assert "SCAN records_fts VIRTUAL TABLE INDEX" in plan, plan
    assert not _table_scans(plan), plan
    plan = _plan_of(conn, "@attr 1=31 @attr 2=4 1990")
    assert "records_year" in plan, plan
    plan = _plan_of(conn, '@attr 1=4 @attr 6=3 "Emma"')  # folded whole titles
    assert "SEARCH record_identifiers USING PRIMARY KEY (kind=? AND value=?" in plan, plan


def test_user_terms_cannot_inject_fts_syntax(tmp_path: Path) -> None:
    """FTS5 operators and quotes in a term are plain text, never query syntax."""
    conn = open_database(tmp_path / "plan.sqlite3")
    seed(conn)
    for term in ('"pride" OR "emma"', "NEAR(pride emma)", "title:emma", "pride*", '"', "^emma",
                 "emma) OR (pride", "-emma", "{title}: emma"):
        plan = plan_query(Query(Term(term, (Attribute(None, 1, 4),))), {})
        sql, params = compile_plan(conn, plan, 10**9)
        conn.execute(sql, params).fetchall()  # no FTS5 syntax error


def _spy_run_plan(monkeypatch: pytest.MonkeyPatch) -> list[tuple[threading.Thread, bool]]:
    """Record the thread of every run_plan call and whether it was asked to stay bounded."""
    calls: list[tuple[threading.Thread, bool]] = []
    real = catalogue_module.run_plan

    def spy(conn: sqlite3.Connection, plan: Any, **options: Any) -> Hits:
        calls.append((threading.current_thread(), options.get("bounded_only", False)))
        return real(conn, plan, **options)

    monkeypatch.setattr(catalogue_module, "run_plan", spy)
    return calls


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("pqf", ["@or @attr 1=4 emma @attr 1=4 pride", "@attr 5=1 @attr 1=4 emm",
                                 '@attr 1=4 "pride and"', "@attr 1=7 0141439513",
                                 "@attr 1=1016 emma"])
async def test_an_unbounded_search_runs_on_a_reader_thread(
        env: Env, monkeypatch: pytest.MonkeyPatch, pqf: str) -> None:
    """Booleans, truncation, phrases, identifiers, "any": their SQL never runs on the reactor,
    even when asked twice."""
    calls = _spy_run_plan(monkeypatch)
    for _ in range(2):
        await hits(env, pqf)
    assert calls and all(thread is not threading.main_thread() for thread, _ in calls)


@pytest_twisted.ensureDeferred
async def test_a_word_search_runs_inline_once_its_count_is_cached(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """One word: counted on a reader thread the first time (the inline attempt refuses to
    count), then answered on the reactor thread from the cached count; a new catalogue
    generation sends it back to a reader thread once."""
    calls = _spy_run_plan(monkeypatch)
    main = threading.main_thread()
    assert await hits(env, "@attr 1=4 emma") == {"emma"}
    assert [(t is main, bounded) for t, bounded in calls] == [(True, True), (False, False)]
    calls.clear()
    assert await hits(env, "@attr 1=4 emma") == {"emma"}
    assert [(t is main, bounded) for t, bounded in calls] == [(True, True)]
    calls.clear()
    await env.store.write(lambda conn: conn.execute(
        "UPDATE records SET title = title WHERE id = ?", (env.seeded.ids["pride"],)))
    assert await hits(env, "@attr 1=4 emma") == {"emma"}
    assert [(t is main, bounded) for t, bounded in calls] == [(True, True), (False, False)]


# -- lazy result sets -----------------------------------------------------------------------------


def _austen(conn: sqlite3.Connection, first: int) -> Hits:
    return run_plan(conn, plan_query(parse_pqf("@attr 1=1003 austen"), {}), first)


def test_word_search_counts_and_reads_only_the_first_page(tmp_path: Path) -> None:
    """A word search counts every hit but reads ``first`` ids; later pages come on demand:
    the next page extends the ids read, a page further on is read alone."""
    conn = open_database(tmp_path / "lazy.sqlite3")
    seeded = seed(conn)
    austen = sorted(seeded.ids[k] for k in ("pride", "sense", "emma"))
    hits = _austen(conn, 1)
    assert (hits.count, hits.ids, hits.streamed) == (3, austen[:1], True)
    assert hits.page(conn, 3, 5) == austen[2:]
    assert hits.ids == austen[:1]
    assert hits.page(conn, 2, 1) == austen[1:2]
    assert hits.ids == austen[:2]
    assert hits.page(conn, 1, 3) == austen


def test_a_result_set_keeps_its_positions(tmp_path: Path) -> None:
    """Records added after the search (lendable or temporary) never enter its pages or count."""
    conn = open_database(tmp_path / "lazy.sqlite3")
    seeded = seed(conn)
    hits = _austen(conn, 1)
    for local_id, temporary in (("rec0100", False), ("ILL-0100", True)):
        upsert_record(conn, make_record(local_id, "Persuasion", author="Austen, Jane"),
                      temporary=temporary)
    assert hits.page(conn, 1, 10) == sorted(seeded.ids[k] for k in ("pride", "sense", "emma"))
    assert hits.count == 3
    assert _austen(conn, 10).count == 4


def test_word_counts_stay_exact_after_updates_and_deletes(tmp_path: Path) -> None:
    """The count of a single word (read from the FTS5 vocabulary) is the number of ids read,
    after records are updated and deleted, in any column and for "any"."""
    conn = open_database(tmp_path / "lazy.sqlite3")
    seeded = seed(conn)
    for n in range(30):
        upsert_record(conn, make_record(f"rec1{n:03d}", f"Persuasion {n}",
                                        author="Austen, Jane" if n % 2 else "Brontë, Anne"))
    upsert_record(conn, make_record("rec0006", "Emma revisited", author="Brontë, Anne"))
    delete_record(conn, seeded.ids["sense"])
    upsert_record(conn, make_record("ILL-0002", "Persuasion", author="Austen, Jane"),
                  temporary=True)
    for pqf in ("@attr 1=1003 austen", "@attr 1=4 persuasion", "@attr 1=1016 austen",
                "@attr 1=1003 bronte", "@attr 1=4 emma", "@attr 1=1016 nosuchword",
                "@attr 1=4 austen", "@attr 1=1003 persuasion"):
        hits = run_plan(conn, plan_query(parse_pqf(pqf), {}))
        assert hits.count == len(hits.page(conn, 1, 1000)), pqf
    assert run_plan(conn, plan_query(parse_pqf("@attr 1=1003 austen"), {})).count == 16


def _generation(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT value FROM catalogue_generation").fetchone()[0]


def test_every_record_change_moves_the_catalogue_generation(tmp_path: Path) -> None:
    """Insert, update, delete, temporary records: each moves the generation word counts are
    kept by (the importer's bulk path writes the same table, so the same triggers fire)."""
    conn = open_database(tmp_path / "generation.sqlite3")
    seeded = seed(conn)
    seen = [_generation(conn)]
    upsert_record(conn, make_record("rec0100", "Persuasion", author="Austen, Jane"))
    seen.append(_generation(conn))
    upsert_record(conn, make_record("rec0100", "Persuasion revised", author="Austen, Jane"))
    seen.append(_generation(conn))
    upsert_record(conn, make_record("ILL-0100", "Persuasion"), temporary=True)
    seen.append(_generation(conn))
    delete_record(conn, seeded.ids["emma"])
    seen.append(_generation(conn))
    assert seen == sorted(set(seen)) and seen[0] > 0, seen


def test_word_counts_are_reused_within_a_generation_only(tmp_path: Path) -> None:
    """A kept count answers while the generation holds; a new generation counts again."""
    conn = open_database(tmp_path / "counts.sqlite3")
    seed(conn)
    counts = WordCounts(size=2)
    statement: Sql = ("SELECT count(*) FROM records_fts WHERE records_fts MATCH ?", ['"austen"'])
    assert counts.count(conn, statement, 7) == 3
    conn.execute("INSERT INTO records_fts (rowid, author) VALUES (999, 'Austen')")  # no record
    assert counts.count(conn, statement, 7) == 3
    assert counts.count(conn, statement, 8) == 4
    for word in ("pride", "emma"):  # two more statements push the first out (size 2)
        counts.count(conn, (statement[0], [word]), 8)
    conn.execute("DELETE FROM records_fts WHERE rowid = 999")
    assert counts.count(conn, statement, 8) == 3


def test_temporary_records_stay_out_of_the_word_index(tmp_path: Path) -> None:
    """A borrowed item's record is never in records_fts (so no search or scan pays for it);
    migration 5 takes out those an older database holds; turning lendable re-indexes it."""
    path = tmp_path / "temporary.sqlite3"
    conn = open_database(path)
    seed(conn)
    record_id, _ = upsert_record(conn, make_record("ILL-0100", "Persuasion"), temporary=True)

    def indexed() -> bool:
        return conn.execute("SELECT count(*) FROM records_fts WHERE rowid = ?",
                            (record_id,)).fetchone()[0] == 1

    assert not indexed()
    conn.execute("INSERT INTO records_fts (rowid, title) VALUES (?, 'Persuasion')", (record_id,))
    # As a database from before migration 5: run that migration on it (setting user_version
    # back would re-run every later migration too, and an ALTER TABLE cannot run twice).
    conn.executescript(MIGRATIONS[4])
    conn.close()
    conn = open_database(path)
    assert not indexed()
    assert run_plan(conn, plan_query(parse_pqf("@attr 1=4 persuasion"), {})).count == 0
    upsert_record(conn, make_record("ILL-0100", "Persuasion"))
    assert indexed()
    assert run_plan(conn, plan_query(parse_pqf("@attr 1=4 persuasion"), {})).count == 1


def test_kept_word_counts_follow_every_change(tmp_path: Path) -> None:
    """Searches through one WordCounts stay exact across additions, updates, deletes and
    temporary records: the same counts as without it, and as many as the ids read."""
    conn = open_database(tmp_path / "kept.sqlite3")
    seeded = seed(conn)
    counts = WordCounts()
    queries = ("@attr 1=1003 austen", "@attr 1=4 persuasion", "@attr 1=1016 austen",
               "@attr 1=4 emma")

    def check() -> list[int]:
        found = []
        for pqf in queries:
            plan = plan_query(parse_pqf(pqf), {})
            kept, fresh = run_plan(conn, plan, counts=counts), run_plan(conn, plan)
            assert kept.count == fresh.count == len(kept.page(conn, 1, 1000)), pqf
            found.append(kept.count)
        return found

    assert check() == [3, 0, 3, 1]
    upsert_record(conn, make_record("rec0100", "Persuasion", author="Austen, Jane"))
    assert check() == [4, 1, 4, 1]
    upsert_record(conn, make_record("rec0100", "Emma", author="Austen, Jane"))
    assert check() == [4, 0, 4, 2]
    upsert_record(conn, make_record("ILL-0100", "Persuasion", author="Austen, Jane"),
                  temporary=True)
    assert check() == [4, 0, 4, 2]
    delete_record(conn, seeded.ids["emma"])
    assert check() == [3, 0, 3, 1]


def test_a_non_word_search_reads_every_hit(tmp_path: Path) -> None:
    """Plans that cannot stream in id order (here a boolean) are read whole at search time."""
    conn = open_database(tmp_path / "lazy.sqlite3")
    seeded = seed(conn)
    plan = plan_query(parse_pqf("@or @attr 1=4 emma @attr 1=4 nature"), {})
    hits = run_plan(conn, plan, 1)
    assert not hits.streamed
    assert hits.ids == sorted((seeded.ids["emma"], seeded.ids["nature"]))


def _page_plan(conn: sqlite3.Connection, pqf: str) -> str:
    hits = run_plan(conn, plan_query(parse_pqf(pqf), {}))
    sql, params = hits.members
    page = f"SELECT id FROM ({sql}) WHERE id > ? ORDER BY id LIMIT ? OFFSET ?"
    return "\n".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + page,
                                                      [*params, 0, 10, 0]))


def test_a_page_streams_from_the_fts_index(tmp_path: Path) -> None:
    """A page of a word search reads the FTS5 index in rowid order: no sort of all the hits
    (for "any" too, whose identifier hits are merged in)."""
    conn = open_database(tmp_path / "plan.sqlite3")
    seed(conn)
    for pqf in ("@attr 1=4 pride", "@attr 1=1016 pride", "@attr 1=1003 @attr 5=1 aust"):
        plan = _page_plan(conn, pqf)
        words = plan.split("\nRIGHT\n")[0]  # "any": the identifier hits (a few) are sorted
        assert "SCAN records_fts VIRTUAL TABLE INDEX" in words, plan
        assert "TEMP B-TREE" not in words, plan
        assert not [line for line in _table_scans(plan) if line != "SCAN i"], plan  # i: co-routine
    assert "MERGE (UNION ALL)" in _page_plan(conn, "@attr 1=1016 pride")


@pytest_twisted.ensureDeferred
async def test_a_named_set_is_searched_through_its_statement(env: Env) -> None:
    """@set uses the set's own statement (no list of its ids), and sees only its members."""
    austen = await env.service.search(parse_pqf("@attr 1=1003 austen"), ["Default"], peer=None,
                                      result_sets={}, name="austen")
    assert "json_each" not in hits_of(austen).members[0]
    await env.store.write(lambda conn: upsert_record(
        conn, make_record("rec0100", "Persuasion", author="Austen, Jane", year=1817)))
    sets = {"austen": austen}
    assert await hits(env, "@set austen", result_sets=sets) == {"pride", "sense", "emma"}
    assert await hits(env, "@and @set austen @attr 1=4 emma", result_sets=sets) == {"emma"}


@pytest_twisted.ensureDeferred
async def test_present_reads_pages_past_the_first(env: Env) -> None:
    """Present of positions past the first page builds the right records."""
    rs = await env.service.search(parse_pqf("@attr 1=1003 austen"), ["Default"], peer=None,
                                  result_sets={}, name="default")
    hits_of(rs).ids[1:] = []  # as if the first page had been one id long
    emma = known("emma", (env.seeded.ids["emma"],))
    wanted: dict[str, Any] = dict(syntax=oids.SUTRS, element_set="F", database="Default",
                                  peer=None)
    assert (await env.service.fetch(rs, 3, 1, **wanted)
            == await env.service.fetch(emma, 1, 1, **wanted))


@pytest_twisted.ensureDeferred
async def test_a_small_present_on_a_bounded_page_runs_inline(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Present of up to INLINE_RECORDS records whose page needs no OFFSET runs on the reactor
    thread; a page further on, or more records, on a reader thread."""
    threads: list[bool] = []
    real = catalogue_module.load_records

    def spy(conn: sqlite3.Connection, ids: list[int]) -> Any:
        threads.append(threading.current_thread() is threading.main_thread())
        return real(conn, ids)

    monkeypatch.setattr(catalogue_module, "load_records", spy)
    monkeypatch.setattr(catalogue_module, "INLINE_RECORDS", 2)
    rs = await env.service.search(parse_pqf("@attr 1=1003 austen"), ["Default"], peer=None,
                                  result_sets={}, name="default")
    wanted: dict[str, Any] = dict(syntax=oids.SUTRS, element_set="F", database="Default",
                                  peer=None)
    hits_of(rs).ids[1:] = []  # as if the first page had been one id long
    assert len(await env.service.fetch(rs, 3, 1, **wanted)) == 1  # OFFSET 1: not bounded
    assert len(await env.service.fetch(rs, 1, 3, **wanted)) == 3  # more than 2 records
    assert len(await env.service.fetch(rs, 2, 2, **wanted)) == 2  # extends the ids read
    assert len(await env.service.fetch(rs, 1, 1, **wanted)) == 1  # already read
    assert threads == [False, False, True, True]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(("limit", "value", "inline"), [
    ("INLINE_MARC_BYTES", 10**6, True), ("INLINE_MARC_BYTES", 100, False),
    ("INLINE_ITEMS", 3, True), ("INLINE_ITEMS", 2, False)])
async def test_an_inline_present_keeps_to_its_budget(
        env: Env, monkeypatch: pytest.MonkeyPatch, limit: str, value: int, inline: bool) -> None:
    """Records with more MARC or items than the inline budget are built on a reader thread
    (Pride and Prejudice: three items, one of them temporary), with the same result."""
    threads: list[bool] = []
    real = catalogue_module.load_records

    def spy(conn: sqlite3.Connection, ids: list[int]) -> Any:
        threads.append(threading.current_thread() is threading.main_thread())
        return real(conn, ids)

    wanted: dict[str, Any] = dict(syntax=oids.OPAC, element_set="F", database="Default",
                                  peer=None)
    pride = known("pride", (env.seeded.ids["pride"],))
    expected = await env.service.fetch(pride, 1, 1, **wanted)
    monkeypatch.setattr(catalogue_module, "load_records", spy)
    monkeypatch.setattr(catalogue_module, limit, value)
    assert await env.service.fetch(pride, 1, 1, **wanted) == expected
    assert threads == [inline]


def test_hits_page_is_bounded() -> None:
    """Known ids, or a page that extends the prefix; never one that skips ids (OFFSET)."""
    streamed = Hits(100, ("SELECT 1", []), [1, 2, 3], streamed=True)
    assert streamed.page_is_bounded(1, 3) and streamed.page_is_bounded(4, 10)
    assert streamed.page_is_bounded(2, 50)
    assert not streamed.page_is_bounded(5, 1)
    assert Hits.of([1, 2, 3]).page_is_bounded(3, 1)


@pytest_twisted.ensureDeferred
async def test_a_record_deleted_after_the_search_is_diagnostic_14(env: Env) -> None:
    """A hit deleted since the search leaves a surrogate diagnostic 14, the count unchanged."""
    rs = await env.service.search(parse_pqf("@attr 1=1003 austen"), ["Default"], peer=None,
                                  result_sets={}, name="default")
    hits_of(rs).ids[1:] = []  # the deleted record's position is not read yet

    def delete(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM records WHERE id = ?", (env.seeded.ids["sense"],))
        conn.execute("DELETE FROM records_fts WHERE rowid = ?", (env.seeded.ids["sense"],))
    await env.store.write(delete)
    out = await env.service.fetch(rs, 1, 3, syntax=oids.SUTRS, element_set="F",
                                  database="Default", peer=None)
    assert rs.count == 3
    assert [type(r).__name__ for r in out] == ["ResponseRecord", "ResponseRecord",
                                              "SurrogateDiagnostic"]


# -- scan -----------------------------------------------------------------------------------------


async def scan(env: Env, pqf: str, count: int = 5, position: int = 1, step: int = 0
               ) -> ScanResult:
    """Scan from the term of a PQF string."""
    term = parse_pqf(pqf).root
    assert isinstance(term, Term)
    return await env.service.scan(term, ["Default"], count=count, preferred_position=position,
                                  step_size=step, peer=None)


@pytest_twisted.ensureDeferred
async def test_scan_title_words_with_counts(env: Env) -> None:
    """Title words in order from the start term, each with its record count."""
    entries = await scan(env, "@attr 1=4 p", count=3)
    assert [(e.term, e.occurrences) for e in entries] == [
        ("prejudice", 1), ("pride", 1), ("programmer", 1)]
    assert entries.position_of_term == 1


@pytest_twisted.ensureDeferred
async def test_scan_leaves_out_temporary_records(env: Env) -> None:
    """Words only in borrowed records are not listed; shared words are counted without them."""
    entries = await scan(env, "@attr 1=4 b", count=2)
    assert "borrowed" not in [e.term for e in entries]
    author = await scan(env, "@attr 1=1003 l", count=10)
    assert "lender" not in [e.term for e in author] and "larry" not in [e.term for e in author]
    subject = await scan(env, "@attr 1=21 courtship", count=1)
    assert [(e.term, e.occurrences) for e in subject] == [("courtship", 1)]


@pytest_twisted.ensureDeferred
async def test_scan_preferred_position_and_step(env: Env) -> None:
    """The start term lands at the preferred position; a step skips terms between entries."""
    entries = await scan(env, "@attr 1=4 pride", count=3, position=2)
    assert [e.term for e in entries] == ["prejudice", "pride", "programmer"]
    assert entries.position_of_term == 2
    all_words = [e.term for e in await scan(env, "@attr 1=4 a", count=50)]
    stepped = [e.term for e in await scan(env, "@attr 1=4 a", count=3, step=1)]
    assert stepped == all_words[0:6:2]
    at_start = await scan(env, "@attr 1=4 a", count=3, position=3)
    assert at_start.position_of_term == 1


@pytest_twisted.ensureDeferred
async def test_scan_author_subject_any(env: Env) -> None:
    """Author, subject and any word lists, counted per record."""
    author = await scan(env, "@attr 1=1003 austen", count=1)
    assert [(e.term, e.occurrences) for e in author] == [("austen", 3)]
    subject = await scan(env, "@attr 1=21 fiction", count=1)
    assert [(e.term, e.occurrences) for e in subject] == [("fiction", 2)]
    anywhere = await scan(env, "@attr 1=1016 penguin", count=1)
    assert [(e.term, e.occurrences) for e in anywhere] == [("penguin", 6)]


@pytest_twisted.ensureDeferred
async def test_scan_whole_titles(env: Env) -> None:
    """A phrase scan on titles lists whole titles (temporary ones left out)."""
    entries = await scan(env, '@attr 1=4 @attr 4=1 "p"', count=2)
    assert [(e.term, e.occurrences) for e in entries] == [("Pride and prejudice", 1),
                                                          ("Sense and sensibility", 1)]


@pytest_twisted.ensureDeferred
async def test_scan_diagnostics(env: Env) -> None:
    """Scan on an unsupported access point is 114; a bad position 233; unknown database 109."""
    with pytest.raises(Bib1Error) as info:
        await scan(env, "@attr 1=1032 0262011530")
    assert (info.value.code, info.value.addinfo) == (114, "1032")
    with pytest.raises(Bib1Error) as info:
        await scan(env, "@attr 1=4 a", count=3, position=9)
    assert info.value.code == 233
    with pytest.raises(Bib1Error) as info:
        await env.service.scan(Term("a", (Attribute(None, 1, 4),)), ["nosuch"], count=3,
                               preferred_position=1, step_size=0, peer=None)
    assert (info.value.code, info.value.addinfo) == (109, "nosuch")


# -- sort -----------------------------------------------------------------------------------------


async def sorted_names(env: Env, keys: list[SortKeyInfo]) -> list[str]:
    """Sort every lendable record and return their names in order."""
    lendable = tuple(sorted(v for k, v in env.seeded.ids.items() if k != "borrowed"))
    result = await env.service.sort(known("default", lendable), keys, name="sorted")
    order = await all_ids(env, result)
    assert result.name == "sorted" and sorted(order) == list(lendable)
    names = {v: k for k, v in env.seeded.ids.items()}
    return [names[i] for i in order]


@pytest_twisted.ensureDeferred
async def test_sort_by_title(env: Env) -> None:
    """Title sort ignores a leading article and case; descending reverses it."""
    title = (Attribute(None, 1, 4),)
    assert await sorted_names(env, [SortKeyInfo(title)]) == [
        "cafe", "handbook", "emma", "nature", "pride", "sense"]
    assert await sorted_names(env, [SortKeyInfo(title, relation=1)]) == [
        "sense", "pride", "nature", "emma", "handbook", "cafe"]
    assert await sorted_names(env, [SortKeyInfo(sort_field="title")]) == [
        "cafe", "handbook", "emma", "nature", "pride", "sense"]


@pytest_twisted.ensureDeferred
async def test_sort_by_author_then_date(env: Env) -> None:
    """Several keys: author ascending, then date descending; missing authors sort last."""
    keys = [SortKeyInfo((Attribute(None, 1, 1003),)), SortKeyInfo(sort_field="date", relation=1)]
    assert await sorted_names(env, keys) == ["emma", "pride", "sense", "cafe", "handbook",
                                             "nature"]


@pytest_twisted.ensureDeferred
async def test_sort_by_date(env: Env) -> None:
    """Date ascending and descending (1=31)."""
    date = (Attribute(None, 1, 31),)
    assert await sorted_names(env, [SortKeyInfo(date)]) == [
        "sense", "pride", "emma", "nature", "cafe", "handbook"]
    assert await sorted_names(env, [SortKeyInfo(sort_field="1=31", relation=1)]) == [
        "handbook", "cafe", "nature", "emma", "pride", "sense"]


@pytest_twisted.ensureDeferred
async def test_sort_diagnostics(env: Env) -> None:
    """An unknown sort key is 207 (cannot sort according to sequence); a bad relation 214."""
    rs = known("default", (1, 2))
    for keys, code in (([SortKeyInfo(sort_field="colour")], 207),
                       ([SortKeyInfo((Attribute(None, 1, 9999),))], 207),
                       ([], 207),
                       ([SortKeyInfo(sort_field="title", relation=3)], 214)):
        with pytest.raises(Bib1Error) as info:
            await env.service.sort(rs, keys, name="x")
        assert info.value.code == code


# -- fetch errors ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_fetch_diagnostics(env: Env) -> None:
    """Unknown syntax 239 (addinfo the OID), bad element set 25, start out of range 13."""
    rs = known("default", (env.seeded.ids["pride"],))
    cases: list[tuple[dict[str, Any], int, tuple[int, str]]] = [
        (dict(syntax=(1, 2, 840, 10003, 5, 16383), element_set=None), 1,
         (239, "1.2.840.10003.5.16383")),
        (dict(syntax=oids.USMARC, element_set="Q"), 1, (25, "Q")),
        (dict(syntax=oids.OPAC, element_set="B-9"), 1, (25, "B-9")),
        (dict(syntax=oids.USMARC, element_set="F"), 2, (13, "2")),
        (dict(syntax=oids.USMARC, element_set="F"), 0, (13, "0")),
    ]
    for kwargs, start, expected in cases:
        with pytest.raises(Bib1Error) as info:
            await env.service.fetch(rs, start, 1, database="Default", peer=None, **kwargs)
        assert (info.value.code, info.value.addinfo) == expected


@pytest_twisted.ensureDeferred
async def test_one_bad_record_is_a_surrogate_diagnostic(env: Env) -> None:
    """A record that cannot be built (or was deleted) is diagnostic 14; the others still come."""
    def corrupt(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE records SET marc = X'00313233' WHERE id = ?",
                     (env.seeded.ids["sense"],))
    await env.store.write(corrupt)
    ids = (env.seeded.ids["pride"], env.seeded.ids["sense"], 999999, env.seeded.ids["emma"])
    out = await env.service.fetch(known("default", ids), 1, 4, syntax=oids.USMARC,
                                  element_set="F", database="Default", peer=None)
    assert [type(r).__name__ for r in out] == ["ResponseRecord", "SurrogateDiagnostic",
                                              "SurrogateDiagnostic", "ResponseRecord"]
    assert isinstance(out[1], SurrogateDiagnostic) and out[1].diagnostic.condition == 14
    assert out[1].database == "Default"


@pytest_twisted.ensureDeferred
async def test_fetch_clamps_count_to_the_set(env: Env) -> None:
    """Asking for more records than remain returns the rest."""
    ids = (env.seeded.ids["pride"], env.seeded.ids["sense"])
    out = await env.service.fetch(known("default", ids), 2, 10, syntax=None,
                                  element_set=None, database="Default", peer=None)
    assert len(out) == 1 and isinstance(out[0], ResponseRecord) and out[0].syntax == oids.USMARC


def due_in(days: int) -> datetime:
    """A due date ``days`` from now, as check_out takes it."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


@pytest_twisted.ensureDeferred
async def test_scan_isbn_and_year_indexes(env: Env) -> None:
    """Scan of the ISBN index (both forms, the borrowed record's left out) and of years."""
    isbns = await scan(env, "@attr 1=7 0", count=4)
    assert [(e.term, e.occurrences) for e in isbns] == [
        ("0141439513", 1), ("0141439661", 1), ("0262011530", 1), ("9780141439518", 1)]
    years = await scan(env, "@attr 1=31 1812", count=3)
    assert [(e.term, e.occurrences) for e in years] == [("1813", 1), ("1815", 1), ("1869", 1)]


@pytest_twisted.ensureDeferred
async def test_scan_positions_zero_and_past_the_end(env: Env) -> None:
    """Position 0: the terms after the scan term (which is listed at position 1 otherwise);
    count + 1: the terms before it; a list that runs out is marked ended early."""
    at = await scan(env, "@attr 1=4 pride", count=2, position=1)
    after = await scan(env, "@attr 1=4 pride", count=2, position=0)
    before = await scan(env, "@attr 1=4 pride", count=2, position=3)
    assert [e.term for e in at] == ["pride", "programmer"]
    assert [e.term for e in after] == ["programmer", "s"]
    assert after.position_of_term == 0 and before.position_of_term == 3
    assert [e.term for e in before] == ["nature", "prejudice"]
    assert not at.ended_early
    end = await scan(env, "@attr 1=4 zzz", count=3, position=1)
    assert list(end) == [] and end.ended_early


@pytest_twisted.ensureDeferred
async def test_scan_display_terms_as_written(env: Env) -> None:
    """The folded index word is the term; the display term is the word as written."""
    entries = await scan(env, "@attr 1=1003 muller", count=1)
    assert [(e.term, e.display_term) for e in entries] == [("muller", "Müller")]
