"""Query plans written as CQL for the SRU upstream: what each plan becomes, that our CQL
parser reads it back as the same tree, and the domain errors for what CQL cannot ask."""

from __future__ import annotations

import pytest

from gateway.backends.upstream.sru.cql_writer import DEFAULT_INDEXES, scan_clause, write_cql
from gateway.domain.catalogue import (
    ResultSetUnknown,
    UnsupportedCombination,
    UnsupportedIndex,
    UnsupportedTruncation,
)
from gateway.domain.query import (
    Combine,
    Comparison,
    IdentifierTerm,
    Operator,
    SetTerm,
    Truncation,
    WordTerm,
    YearTerm,
)
from protocols.sru import parse, to_cql

T = Truncation


@pytest.mark.parametrize(("plan", "cql"), [
    (WordTerm("title", "gardens"), "dc.title all gardens"),
    (WordTerm("title", "history of"), 'dc.title all "history of"'),
    (WordTerm("title", "history of", phrase=True), 'dc.title = "history of"'),
    (WordTerm("title", "gardens", phrase=True), "dc.title all gardens"),
    (WordTerm("title", "A history", complete=True), 'dc.title exact "A history"'),
    (WordTerm("author", "oka", truncation=T.RIGHT), "dc.creator all oka*"),
    (WordTerm("author", "fo", truncation=T.LEFT), "dc.creator all *fo"),
    (WordTerm("any", "hist lend", truncation=T.BOTH), 'cql.serverChoice all "*hist* *lend*"'),
    (WordTerm("title", "col#r", truncation=T.HASH_MASK), "dc.title all col*r"),
    (WordTerm("title", "col#r?", truncation=T.Z3958_MASK), "dc.title all col?r*"),
    (WordTerm("title", "what*now?"), 'dc.title all what\\*now\\?'),
    (IdentifierTerm("isbn", "9781921010019"), "bath.isbn = 9781921010019"),
    (IdentifierTerm("local_id", "17", right_truncated=True), "rec.id = 17*"),
    (YearTerm(Comparison.GREATER_OR_EQUAL, 2020, 2020), "dc.date >= 2020"),
    (YearTerm(Comparison.NOT_EQUAL, 2020, 2020), "dc.date <> 2020"),
    (YearTerm(Comparison.WITHIN, 2019, 2021), "dc.date >= 2019 and dc.date <= 2021"),
    (Combine(Operator.AND_NOT, WordTerm("title", "a"),
             Combine(Operator.OR, WordTerm("title", "b"), WordTerm("title", "c"))),
     "dc.title all a not (dc.title all b or dc.title all c)"),
])
def test_plans_as_cql(plan: object, cql: str) -> None:
    written = write_cql(plan, DEFAULT_INDEXES)  # type: ignore[arg-type]
    assert str(written) == cql
    assert to_cql(parse(str(written)).root) == cql   # our parser reads back the same tree


def test_adjacency_relation_for_cql_1_2() -> None:
    plan = WordTerm("title", "history of", phrase=True)
    assert str(write_cql(plan, DEFAULT_INDEXES, phrase_relation="adj")) == \
        'dc.title adj "history of"'


def test_a_result_set_is_its_query_again() -> None:
    first = write_cql(WordTerm("title", "gardens"), DEFAULT_INDEXES)

    class Earlier:
        query = first

    plan = Combine(Operator.OR, SetTerm("1", Earlier()), WordTerm("title", "lighthouse"))
    assert str(write_cql(plan, DEFAULT_INDEXES)) == \
        "dc.title all gardens or dc.title all lighthouse"
    with pytest.raises(ResultSetUnknown):
        write_cql(SetTerm("x", object()), DEFAULT_INDEXES)


@pytest.mark.parametrize(("plan", "error"), [
    (WordTerm("series", "practice"), UnsupportedIndex),       # no standard CQL name
    (IdentifierTerm("oclc", "123"), UnsupportedIndex),
    (WordTerm("title", "a.c", truncation=T.REGEX), UnsupportedTruncation),
    (WordTerm("title", "gardens", first_in_field=True), UnsupportedCombination),
])
def test_what_cql_cannot_ask(plan: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        write_cql(plan, DEFAULT_INDEXES)  # type: ignore[arg-type]


def test_configured_names_and_scan() -> None:
    indexes = {**DEFAULT_INDEXES, "series": "bath.seriesTitle", "title": "koha.title"}
    assert str(write_cql(WordTerm("series", "x"), indexes)) == "bath.seriesTitle all x"
    assert scan_clause("title", "gar", indexes) == "koha.title = gar"
    assert scan_clause("title", "a b", indexes) == 'koha.title = "a b"'
