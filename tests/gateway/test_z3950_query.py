# -*- test-case-name: tests.gateway.test_z3950_query -*-
"""Bib-1 queries, scan terms and sort keys read into domain plans, and the one table of catalogue
errors to Bib-1 diagnostics: no catalogue, no database, no reactor."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from gateway.domain import catalogue as domain
from gateway.domain.catalogue import SortField, SortKey
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
from gateway.z3950.diagnostics import (
    CATALOGUE_DIAGNOSTICS,
    Bib1Error,
    bib1_error,
    public_addinfo,
)
from gateway.z3950.query import plan_query, plan_scan, sort_keys
from protocols.z3950.codec import SortKeyInfo
from protocols.z3950.diagnostics import Bib1
from protocols.z3950.pqf import Attribute, Node, Or, Query, Term, parse_pqf


def plan(pqf: str, result_sets: dict[str, object] | None = None) -> object:
    """The plan of a PQF query."""
    return plan_query(parse_pqf(pqf), result_sets or {})


def refused(pqf: str) -> tuple[int, str | None]:
    """The diagnostic (code, addinfo) a PQF query is refused with."""
    with pytest.raises(Bib1Error) as info:
        plan(pqf)
    return info.value.code, info.value.addinfo


@pytest.mark.parametrize("pqf, expected", [
    ("@attr 1=4 pride", WordTerm("title", "pride")),
    ("pride", WordTerm("any", "pride")),
    ("@attr 1=1035 pride", WordTerm("anywhere", "pride")),
    ("@attr 1=title pride", WordTerm("title", "pride")),
    ("@attr 1=1003 austen", WordTerm("author", "austen")),
    ("@attr 1=1 austen", WordTerm("author", "austen")),
    ("@attr 1=1004 austen", WordTerm("personal", "austen")),
    ("@attr 1=2 unesco", WordTerm("corporate", "unesco")),
    ("@attr 1=21 fiction", WordTerm("subject", "fiction")),
    ("@attr 1=1018 penguin", WordTerm("publisher", "penguin")),
    ('@attr 1=4 @attr 4=1 "pride and"', WordTerm("title", "pride and", phrase=True)),
    ("@attr 1=4 @attr 4=2 pride", WordTerm("title", "pride")),
    ("@attr 1=4 @attr 3=1 pride", WordTerm("title", "pride", first_in_field=True)),
    ("@attr 1=4 @attr 6=3 pride", WordTerm("title", "pride", complete=True)),
    ("@attr 1=4 @attr 4=3 pride", WordTerm("title", "pride", phrase=True, complete=True)),
    ("@attr 1=4 @attr 5=1 prid", WordTerm("title", "prid", truncation=Truncation.RIGHT)),
    ("@attr 1=4 @attr 5=2 ride", WordTerm("title", "ride", truncation=Truncation.LEFT)),
    ("@attr 1=4 @attr 5=3 rid", WordTerm("title", "rid", truncation=Truncation.BOTH)),
    ("@attr 1=4 @attr 5=101 pr#de", WordTerm("title", "pr#de",
                                             truncation=Truncation.HASH_MASK)),
    ("@attr 1=4 @attr 5=104 pr?de", WordTerm("title", "pr?de",
                                             truncation=Truncation.Z3958_MASK)),
    ("@attr 1=4 @attr 5=102 pr.de", WordTerm("title", "pr.de", truncation=Truncation.REGEX)),
    ("@attr 1=7 0-14-143951-3", IdentifierTerm("isbn", "0-14-143951-3")),
    ("@attr 1=12 @attr 5=1 rec00", IdentifierTerm("local_id", "rec00", right_truncated=True)),
    ("@attr 1=1007 12345", IdentifierTerm("standard_identifier", "12345")),
    ("@attr 1=1211 12345", IdentifierTerm("oclc", "12345")),
    ("@attr 1=31 1813", YearTerm(Comparison.EQUAL, 1813, 1813)),
    ("@attr 1=31 @attr 2=4 1813", YearTerm(Comparison.GREATER_OR_EQUAL, 1813, 1813)),
    ("@attr 1=31 @attr 2=6 1813", YearTerm(Comparison.NOT_EQUAL, 1813, 1813)),
    ("@attr 1=31 1990-1980", YearTerm(Comparison.WITHIN, 1980, 1990)),
    ("@attr 1=31 @attr 5=1 199", YearTerm(Comparison.WITHIN, 1990, 1999)),
    ("@attr 1=30 c1813", YearTerm(Comparison.EQUAL, 1813, 1813)),
])
def test_terms_become_plans(pqf: str, expected: object) -> None:
    """Each Bib-1 access point and attribute becomes its named index and term options."""
    assert plan(pqf) == expected


def test_booleans_and_result_sets() -> None:
    """@and/@or/@not become AND/OR/AND_NOT; @set carries the catalogue's own handle."""
    handle = object()
    assert plan("@and @or a b @not c @set s1", {"s1": handle}) == Combine(
        Operator.AND,
        Combine(Operator.OR, WordTerm("any", "a"), WordTerm("any", "b")),
        Combine(Operator.AND_NOT, WordTerm("any", "c"), SetTerm("s1", handle)))


def test_a_long_chain_is_planned_without_recursion() -> None:
    """A left-deep chain of 1,000 ORs (brokers send such) is planned without recursing."""
    node: Node = Term("x", ())
    for _ in range(1000):
        node = Or(node, Term("x", ()))
    tree = plan_query(Query(node), {})
    depth = 0
    while isinstance(tree, Combine):
        depth, tree = depth + 1, tree.left
    assert depth == 1000 and tree == WordTerm("any", "x")


@pytest.mark.parametrize("pqf, expected", [
    ("@attr 1=9999 foo", (Bib1.UNSUPPORTED_USE_ATTRIBUTE, "9999")),
    ("@attr 1=nosuch foo", (Bib1.UNSUPPORTED_USE_ATTRIBUTE, "nosuch")),
    ("@attr 1=4 @attr 2=1 foo", (Bib1.UNSUPPORTED_RELATION_ATTRIBUTE, "1")),
    ("@attr 1=31 @attr 2=7 1990", (Bib1.UNSUPPORTED_RELATION_ATTRIBUTE, "7")),
    ("@attr 1=4 @attr 4=4 foo", (Bib1.UNSUPPORTED_STRUCTURE_ATTRIBUTE, "4")),
    ("@attr 1=4 @attr 3=7 foo", (Bib1.UNSUPPORTED_POSITION_ATTRIBUTE, "7")),
    ("@attr 1=4 @attr 5=200 foo", (Bib1.UNSUPPORTED_TRUNCATION_ATTRIBUTE, "200")),
    ("@attr 1=7 @attr 5=2 0262011530", (Bib1.UNSUPPORTED_TRUNCATION_ATTRIBUTE, "2")),
    ("@attr 1=4 @attr 6=9 foo", (Bib1.UNSUPPORTED_COMPLETENESS_ATTRIBUTE, "9")),
    ("@attr 1=4 @attr 8=1 foo", (Bib1.UNSUPPORTED_ATTRIBUTE_TYPE, "8")),
    ("@attr exp1 1=1 foo", (Bib1.UNSUPPORTED_ATTRIBUTE_SET, "1.2.840.10003.3.2")),
    ("@attr 1=31 nineteen", (Bib1.ILLEGAL_TERM_VALUE, "nineteen")),
    ("@attr 1=4 @attr 4=1 @attr 5=2 \"of time\"",
     (Bib1.UNSUPPORTED_ATTRIBUTE_COMBINATION,
      "truncation 2 with a phrase, position or complete field")),
    ("@attr 1=4 @attr 3=1 @attr 5=3 foo",
     (Bib1.UNSUPPORTED_ATTRIBUTE_COMBINATION,
      "truncation 3 with a phrase, position or complete field")),
    ("@set nosuch", (Bib1.RESULT_SET_DOES_NOT_EXIST, "nosuch")),
])
def test_unsupported_attributes_are_named_diagnostics(pqf: str, expected: tuple[int, str]
                                                      ) -> None:
    """What Z39.50 asks and this gateway does not plan is refused before any catalogue."""
    assert refused(pqf) == expected


def test_a_masked_single_word_may_be_a_phrase() -> None:
    """One masked word is no phrase of alternatives: structure 1 is accepted with it."""
    assert plan("@attr 1=4 @attr 4=1 @attr 5=101 pr#de") == WordTerm(
        "title", "pr#de", phrase=True, truncation=Truncation.HASH_MASK)


def test_too_many_operators() -> None:
    """More boolean operators than allowed is diagnostic 6."""
    with pytest.raises(Bib1Error) as info:
        plan_query(parse_pqf("@or @or a b c"), {}, max_operators=1)
    assert (info.value.code, info.value.addinfo) == (Bib1.TOO_MANY_BOOLEAN_OPERATORS,
                                                     "more than 1 boolean operators")


@pytest.mark.parametrize("term, expected", [
    (Term("pri", (Attribute(None, 1, 4),)), ScanPlan("title", "pri")),
    (Term("pri", (Attribute(None, 1, 4), Attribute(None, 4, 1))),
     ScanPlan("title", "pri", whole_field=True)),
    (Term("aus", (Attribute(None, 1, 1003), Attribute(None, 6, 3))),
     ScanPlan("author", "aus", whole_field=True)),
    (Term("fic", (Attribute(None, 1, 21), Attribute(None, 4, 1))), ScanPlan("subject", "fic")),
    (Term("978", (Attribute(None, 1, 7),)), ScanPlan("isbn", "978")),
    (Term("18", (Attribute(None, 1, 31),)), ScanPlan("year", "18")),
    (Term("a", ()), ScanPlan("any", "a")),
])
def test_scan_terms_become_scan_plans(term: Term, expected: ScanPlan) -> None:
    """A scan term names its index; phrase or complete field browses whole titles/authors."""
    assert plan_scan(term) == expected


def test_sort_keys() -> None:
    """Sort fields by name or Use attribute; 207 for none or an unknown one, 214 for a
    relation other than ascending or descending."""
    assert sort_keys([SortKeyInfo(sort_field="title"),
                      SortKeyInfo(attributes=(Attribute(None, 1, 31),), relation=1),
                      SortKeyInfo(sort_field="1=1003")]) == [
        SortKey(SortField.TITLE), SortKey(SortField.YEAR, descending=True),
        SortKey(SortField.AUTHOR)]
    for keys, code in (([], Bib1.CANNOT_SORT), ([SortKeyInfo(sort_field="colour")],
                                                Bib1.CANNOT_SORT),
                       ([SortKeyInfo(sort_field="title", relation=2)],
                        Bib1.SORT_ILLEGAL_RELATION)):
        with pytest.raises(Bib1Error) as info:
            sort_keys(keys)
        assert info.value.code == code


# -- the one table ------------------------------------------------------------------------------


def test_every_catalogue_error_has_its_diagnostic() -> None:
    """Each catalogue error class maps to a named Bib-1 diagnostic, its detail as addinfo."""
    errors = [cls for cls in vars(domain).values()
              if isinstance(cls, type) and issubclass(cls, domain.CatalogueError)
              and cls is not domain.CatalogueError]
    expected = {
        domain.UnsupportedIndex: Bib1.UNSUPPORTED_USE_ATTRIBUTE,
        domain.UnsupportedTruncation: Bib1.UNSUPPORTED_TRUNCATION_ATTRIBUTE,
        domain.UnsupportedCombination: Bib1.UNSUPPORTED_ATTRIBUTE_COMBINATION,
        domain.MalformedTerm: Bib1.MALFORMED_SEARCH_TERM,
        domain.UnsupportedSort: Bib1.CANNOT_SORT,
        domain.ResultSetUnknown: Bib1.RESULT_SET_DOES_NOT_EXIST,
        domain.ResourcesExhausted: Bib1.RESOURCES_EXHAUSTED,
        domain.TimeBudgetExceeded: Bib1.RESOURCES_EXHAUSTED,
        domain.CatalogueUnavailable: Bib1.DATABASE_UNAVAILABLE,
    }
    assert set(errors) == set(expected)
    for cls, code in expected.items():
        diagnostic = bib1_error(cls("detail"))
        assert (diagnostic.code, diagnostic.addinfo) == (code, "detail")
        assert isinstance(diagnostic.__cause__, cls)
    assert set(CATALOGUE_DIAGNOSTICS) <= set(expected)


def test_internal_error_texts_stay_internal() -> None:
    """A catalogue error that carries the text of the internal error it came from (a database
    message) reaches the client without addinfo; its own words do."""
    try:
        try:
            raise RuntimeError("fts5: syntax error near \"(\"")
        except RuntimeError as exc:
            raise domain.MalformedTerm(str(exc)) from None
    except domain.MalformedTerm as error:
        assert public_addinfo(bib1_error(error)) is None
    try:
        try:
            re.compile("(")
        except re.error:
            raise domain.MalformedTerm("unsupported regular expression") from None
    except domain.MalformedTerm as error:
        assert public_addinfo(bib1_error(error)) is None
    budget = domain.TimeBudgetExceeded("time limit of 5 s exceeded")
    assert public_addinfo(bib1_error(budget)) == "time limit of 5 s exceeded"
    assert public_addinfo(Bib1Error(Bib1.UNSUPPORTED_USE_ATTRIBUTE, "9999")) == "9999"


def test_the_z3950_side_imports_no_backend_and_no_sqlite() -> None:
    """The Z39.50 catalogue service and its query mapping load without the embedded backend,
    the store or SQLite: they speak to the catalogue through its interface only."""
    code = ("import sys, gateway.z3950.catalogue, gateway.z3950.query;"
            "bad = sorted(m for m in sys.modules if m == 'sqlite3'"
            " or m.startswith(('gateway.backends', 'gateway.storage')));"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
