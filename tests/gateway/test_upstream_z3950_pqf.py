"""Query plans written as PQF for an upstream, per LMS profile; ``[backend.z3950]`` checked
with its paths; the association pool's limits (with a Clock: what real targets cannot time)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from gateway.backends.upstream.z3950.backend import backend
from gateway.backends.upstream.z3950.pool import AssociationPool, PoolLimits, UpstreamDown
from gateway.backends.upstream.z3950.pqf_writer import PlanWriter, uses_for
from gateway.backends.upstream.z3950.settings import SettingsError, read_settings
from gateway.domain.catalogue import (
    SortField,
    UnsupportedCombination,
    UnsupportedIndex,
    UnsupportedSort,
)
from gateway.domain.query import (
    Combine,
    Comparison,
    IdentifierTerm,
    Operator,
    Plan,
    ScanPlan,
    SetTerm,
    Truncation,
    WordTerm,
    YearTerm,
)
from gateway.z3950.query import plan_query
from protocols.z3950.pqf import parse_pqf, to_pqf


def pqf(plan: Plan, profile: str = "koha", **overrides: int) -> str:
    return to_pqf(PlanWriter(uses_for(profile, overrides), lambda h: None).query(plan))


@pytest.mark.parametrize(("plan", "written"), [
    (WordTerm("title", "dune"), "@attr 1=4 @attr 4=2 dune"),
    (WordTerm("title", "dune messiah"), '@attr 1=4 @attr 4=6 "dune messiah"'),
    (WordTerm("title", "dune messiah", phrase=True), '@attr 1=4 @attr 4=1 "dune messiah"'),
    (WordTerm("author", "herbert", first_in_field=True), "@attr 1=1003 @attr 3=1 @attr 4=2 "
                                                         "herbert"),
    (WordTerm("title", "dune", complete=True), "@attr 1=4 @attr 4=1 @attr 6=3 dune"),
    (WordTerm("subject", "comput", truncation=Truncation.RIGHT), "@attr 1=21 @attr 4=2 "
                                                                 "@attr 5=1 comput"),
    (WordTerm("any", "c#t", truncation=Truncation.HASH_MASK), "@attr 1=1016 @attr 4=2 "
                                                              "@attr 5=101 c#t"),
    (WordTerm("conference", "ifla"), "@attr 1=3 @attr 4=2 ifla"),
    (WordTerm("corporate", "meridian"), "@attr 1=2 @attr 4=2 meridian"),
    (WordTerm("anywhere", "x"), "@attr 1=1016 @attr 4=2 x"),
    (IdentifierTerm("isbn", "978192"), "@attr 1=7 978192"),
    (IdentifierTerm("isbn", "978192", right_truncated=True), "@attr 1=7 @attr 5=1 978192"),
    (YearTerm(Comparison.GREATER, 2000, 2000), "@attr 1=31 @attr 2=5 @attr 4=109 2000"),
    (YearTerm(Comparison.WITHIN, 1990, 1999), "@and @attr 1=31 @attr 2=4 @attr 4=109 1990 "
                                              "@attr 1=31 @attr 2=2 @attr 4=109 1999"),
    (Combine(Operator.AND_NOT, WordTerm("title", "a"), IdentifierTerm("local_id", "7")),
     "@not @attr 1=4 @attr 4=2 a @attr 1=12 7"),
])
def test_plans_written_for_koha(plan: Plan, written: str) -> None:
    assert pqf(plan) == written
    parse_pqf(written)   # what we send is PQF a target reads


def test_standard_profile_and_overrides() -> None:
    """Other profiles send the standard numbers; a configured override wins, 0 removes."""
    assert pqf(WordTerm("conference", "x"), "generic-marc") == "@attr 1=1006 @attr 4=2 x"
    assert pqf(WordTerm("anywhere", "x"), "evergreen") == "@attr 1=1035 @attr 4=2 x"
    assert pqf(WordTerm("title", "x"), title=1099) == "@attr 1=1099 @attr 4=2 x"
    with pytest.raises(UnsupportedIndex):
        pqf(WordTerm("title", "x"), title=0)


def test_what_the_upstream_cannot_do_is_a_domain_error() -> None:
    with pytest.raises(UnsupportedCombination):
        pqf(YearTerm(Comparison.NOT_EQUAL, 2000, 2000))
    with pytest.raises(UnsupportedCombination):
        pqf(SetTerm("other", object()))
    assert PlanWriter.sort_use(SortField.LOCAL_ID) == 12
    with pytest.raises(UnsupportedSort):
        PlanWriter.sort_use("nope")  # type: ignore[arg-type]


def test_a_result_set_reference_is_its_query() -> None:
    writer = PlanWriter(uses_for("koha"), lambda handle: parse_pqf("@attr 1=4 dune").root)
    assert to_pqf(writer.query(Combine(Operator.AND, SetTerm("1", object()),
                                       WordTerm("author", "herbert")))) == \
        "@and @attr 1=4 dune @attr 1=1003 @attr 4=2 herbert"


def test_broker_queries_round_trip_to_the_same_use() -> None:
    """A broker's Bib-1 query read into a plan and written for Koha keeps its Use."""
    for use in (4, 21, 1003, 1016, 7, 8, 12):
        plan = plan_query(parse_pqf(f"@attr 1={use} word"), {})
        assert to_pqf(PlanWriter(uses_for("koha"), lambda h: None).query(plan)).startswith(
            f"@attr 1={use} ")


def test_scan_terms() -> None:
    writer = PlanWriter(uses_for("koha"), lambda h: None)
    assert to_pqf(_q(writer.scan_term(ScanPlan("title", "du")))) == "@attr 1=4 du"
    assert to_pqf(_q(writer.scan_term(ScanPlan("title", "du", whole_field=True)))) == \
        "@attr 1=4 @attr 4=1 @attr 6=3 du"


def _q(term: Any) -> Any:
    from protocols.z3950.pqf import Query
    return Query(term)


# -- settings --------------------------------------------------------------------------------


def test_settings_defaults_and_every_problem_with_its_path() -> None:
    settings = read_settings({"host": "zebra.example.org"})
    assert (settings.port, settings.database, settings.profile.name, settings.pool_size) == \
        (210, "biblios", "koha", 8)
    with pytest.raises(SettingsError) as caught:
        read_settings({"port": 0, "pool_size": "8", "record_syntax": "sutrs", "password": "x",
                       "profile": {"name": "nosuch"}, "uses": {"titel": 4, "title": -1},
                       "colour": "blue"})
    assert sorted(caught.value.problems) == sorted([
        "backend.z3950.colour: unknown key (known: backoff_initial, backoff_max, charset, "
        "connect_timeout, database, host, idle_timeout, max_waiting, password, pool_size, "
        "port, present_chunk, profile, record_syntax, request_timeout, "
        "result_sets_per_association, user, uses)",
        "backend.z3950.port: must be between 1 and 65535",
        "backend.z3950.pool_size: must be an integer",
        "backend.z3950.host: required (the upstream Z39.50 target's host name)",
        "backend.z3950.record_syntax: must be one of usmarc, xml, opac",
        "backend.z3950.password: given without backend.z3950.user",
        "backend.z3950.profile.name: 'nosuch' is not one of koha, evergreen, polaris, "
        "symphony, generic-marc, alma, sierra, folio, generic-opac",
        "backend.z3950.uses.titel: unknown index (known: any, anywhere, author, conference, "
        "corporate, isbn, issn, language, lccn, local_id, oclc, personal, publisher, series, "
        "standard_identifier, subject, title, year)",
        "backend.z3950.uses.title: must be a Use attribute number (0: not supported)",
    ])
    assert backend.settings_problems({"host": "h", "port": "210"}, "backend.z3950") == [
        "backend.z3950.port: must be an integer"]


def test_settings_profile_table_with_temporary_items() -> None:
    settings = read_settings({"host": "h", "profile": {
        "name": "koha", "temporary": {"item_types": ["ILL"]}}})
    assert settings.profile.temporary.item_types


# -- the pool ---------------------------------------------------------------------------------


class FakeAssociation:
    def __init__(self, clock: Clock) -> None:
        self.closed = False
        self.last_used = clock.seconds()

    def close(self) -> None:
        self.closed = True


def test_pool_bounds_in_flight_waits_reuses_and_closes_idle() -> None:
    clock = Clock()
    opened: list[Deferred[Any]] = []

    def opener() -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        opened.append(d)
        return d

    pool = AssociationPool(clock, opener, PoolLimits(size=2, max_waiting=1, idle_timeout=60))
    first, second, third = pool.acquire(), pool.acquire(), pool.acquire()
    assert len(opened) == 2 and not third.called           # two in flight, one waits
    refused = pool.acquire()
    failures: list[Any] = []
    refused.addErrback(failures.append)
    assert failures and failures[0].check(UpstreamDown)
    one: Any = FakeAssociation(clock)
    two: Any = FakeAssociation(clock)
    opened[0].callback(one)
    opened[1].callback(two)
    pool.release(cast(Any, first).result)
    assert id(third.result) == id(one)                       # the waiter gets it
    pool.release(one)
    pool.release(two)
    assert pool.state()["idle"] == 2
    again = pool.acquire(prefer=two)
    assert id(again.result) == id(two)                       # the one holding a result set
    pool.release(two)
    clock.advance(61)
    assert (one.closed, two.closed, pool.state()["idle"]) == (True, True, 0)
    assert second.called
    # a request waits for a free association at most its time
    busy = [pool.acquire(), pool.acquire()]
    assert len(opened) == 4
    waiting = pool.acquire(wait=5)
    clock.advance(5)
    late: list[Any] = []
    waiting.addErrback(late.append)
    assert late and late[0].check(UpstreamDown) and not pool.waiting
    assert "free within 5 s" in str(late[0].value)
    assert all(not d.called for d in busy)
