"""CQL read into the domain query plan (gateway.sru.query), and SRU diagnostics for the rest."""

from __future__ import annotations

import pytest

from gateway.domain.catalogue import (
    CatalogueUnavailable,
    MalformedTerm,
    SortField,
    SortKey,
    TimeBudgetExceeded,
    UnsupportedIndex,
)
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
from gateway.sru.diagnostics import sru_error
from gateway.sru.query import PROFILE, plan_cql, plan_scan, sort_keys
from protocols.sru import parse, parse_scan_clause, resolve, resolve_clause
from protocols.sru.diagnostics import Diagnostic, SRUError


def plan(text: str, sets: dict[str, object] | None = None) -> object:
    return plan_cql(resolve(parse(text), PROFILE).root, sets)


@pytest.mark.parametrize(("cql", "expected"), [
    ("river", WordTerm("any", "river")),
    ("cql.serverChoice = river", WordTerm("any", "river")),
    ("dc.title=river", WordTerm("title", "river")),
    ('dc.title="river time"', WordTerm("title", "river time")),
    ('dc.title all "river time"', WordTerm("title", "river time")),
    ('dc.title adj "river time"', WordTerm("title", "river time", phrase=True)),
    ('dc.title == "the river of time"',
     WordTerm("title", "the river of time", phrase=True, complete=True)),
    ('dc.publisher == "test press"', WordTerm("publisher", "test press", phrase=True)),
    ('dc.title="^the river"', WordTerm("title", "the river", first_in_field=True)),
    ("dc.title=riv*", WordTerm("title", "riv", truncation=Truncation.RIGHT)),
    ("dc.title=*ver", WordTerm("title", "ver", truncation=Truncation.LEFT)),
    ("dc.title=*ive*", WordTerm("title", "ive", truncation=Truncation.BOTH)),
    ("dc.title=r?ver", WordTerm("title", "r#ver", truncation=Truncation.Z3958_MASK)),
    ("dc.title=r*r", WordTerm("title", "r?r", truncation=Truncation.Z3958_MASK)),
    (r"dc.title=riv\*", WordTerm("title", "riv*")),
    ("bath.name=zander", WordTerm("author", "zander")),
    ("bath.personalName=zander", WordTerm("personal", "zander")),
    ("bath.corporateName=acme", WordTerm("corporate", "acme")),
    ("dc.subject=rivers", WordTerm("subject", "rivers")),
    ("bath.isbn=0262011530", IdentifierTerm("isbn", "0262011530")),
    ("bath.isbn=978013*", IdentifierTerm("isbn", "978013", True)),
    ("bath.issn==0028-0836", IdentifierTerm("issn", "0028-0836")),
    ("bath.lccn=85012345", IdentifierTerm("lccn", "85012345")),
    ("dc.identifier=0262011530", IdentifierTerm("standard_identifier", "0262011530")),
    ("interlend.oclc=12345", IdentifierTerm("oclc", "12345")),
    ("rec.id=cl-001", IdentifierTerm("local_id", "cl-001")),
    ("dc.language=eng", IdentifierTerm("language", "eng")),
    ("dc.date=2001", YearTerm(Comparison.EQUAL, 2001, 2001)),
    ("dc.date<2001", YearTerm(Comparison.LESS, 2001, 2001)),
    ("dc.date>=2001", YearTerm(Comparison.GREATER_OR_EQUAL, 2001, 2001)),
    ("dc.date<>2001", YearTerm(Comparison.NOT_EQUAL, 2001, 2001)),
    ('dc.date within "2000 1990"', YearTerm(Comparison.WITHIN, 1990, 2000)),
    ("dc.date=199*", YearTerm(Comparison.WITHIN, 1990, 1999)),
    ("dc.title =/ignoreCase river", WordTerm("title", "river")),
])
def test_clauses(cql: str, expected: object) -> None:
    assert plan(cql) == expected


def test_booleans_left_associative() -> None:
    assert plan("a and b or c not d") == Combine(
        Operator.AND_NOT,
        Combine(Operator.OR, Combine(Operator.AND, WordTerm("any", "a"), WordTerm("any", "b")),
                WordTerm("any", "c")),
        WordTerm("any", "d"))
    assert plan("a and (b or c)") == Combine(
        Operator.AND, WordTerm("any", "a"),
        Combine(Operator.OR, WordTerm("any", "b"), WordTerm("any", "c")))


def test_any_and_masked_all_split_into_words() -> None:
    assert plan('dc.title any "river ocean"') == Combine(
        Operator.OR, WordTerm("title", "river"), WordTerm("title", "ocean"))
    assert plan('dc.title = "riv* ocean"') == Combine(
        Operator.AND, WordTerm("title", "riv", truncation=Truncation.RIGHT),
        WordTerm("title", "ocean"))


def test_prefix_assignment_and_result_set() -> None:
    assert plan('>x="info:srw/cql-context-set/1/dc-v1.1" x.title=river') == \
        WordTerm("title", "river")
    handle = object()
    assert plan('cql.resultSetId="s1" and river', {"s1": handle}) == Combine(
        Operator.AND, SetTerm("s1", handle), WordTerm("any", "river"))


@pytest.mark.parametrize(("cql", "diagnostic"), [
    ("foo.title=river", Diagnostic.UNSUPPORTED_CONTEXT_SET),
    ("dc.format=book", Diagnostic.UNSUPPORTED_INDEX),
    ("dc.title<river", Diagnostic.UNSUPPORTED_RELATION),
    ("dc.date any 2001", Diagnostic.UNSUPPORTED_RELATION),
    ("dc.title =/respectCase river", Diagnostic.UNSUPPORTED_RELATION_MODIFIER),
    ("dc.title=river prox dc.title=time", Diagnostic.PROXIMITY_NOT_SUPPORTED),
    ("dc.title=river and/foo dc.title=time", Diagnostic.UNSUPPORTED_BOOLEAN_MODIFIER),
    ('dc.title=""', Diagnostic.EMPTY_TERM_UNSUPPORTED),
    ("bath.isbn=97*13", Diagnostic.MASKING_CHARACTER_IN_UNSUPPORTED_POSITION),
    ("dc.date=19*9", Diagnostic.MASKING_CHARACTER_IN_UNSUPPORTED_POSITION),
    ("dc.date=soon", Diagnostic.TERM_IN_INVALID_FORMAT),
    ('dc.date within "1990"', Diagnostic.UNSUPPORTED_COMBINATION_OF_RELATION_AND_TERM),
    ("dc.title=*", Diagnostic.MASKED_WORDS_TOO_SHORT),
    ("bath.isbn=^123", Diagnostic.ANCHORING_CHARACTER_NOT_SUPPORTED),
    ('cql.resultSetId="gone"', Diagnostic.RESULT_SET_DOES_NOT_EXIST),
    ("river sortBy dc.subject", Diagnostic.UNSUPPORTED_PATH_FOR_SORT),
    ("river sortBy dc.title dc.date rec.id dc.creator", Diagnostic.TOO_MANY_SORT_KEYS),
])
def test_refused_with_diagnostic(cql: str, diagnostic: Diagnostic) -> None:
    with pytest.raises(SRUError) as caught:
        query = resolve(parse(cql), PROFILE)
        plan_cql(query.root, {})
        sort_keys(query)
    assert caught.value.diagnostic is diagnostic


def test_sort_keys() -> None:
    query = resolve(parse("river sortBy dc.date/sort.descending dc.title"), PROFILE)
    assert sort_keys(query) == [SortKey(SortField.YEAR, True), SortKey(SortField.TITLE)]
    with pytest.raises(SRUError) as caught:
        sort_keys(resolve(parse("river sortBy dc.title/sort.respectCase"), PROFILE))
    assert caught.value.diagnostic is Diagnostic.UNSUPPORTED_CASE


def test_scan_clauses() -> None:
    assert plan_scan(resolve_clause(parse_scan_clause("dc.title=riv"), PROFILE)) == \
        ScanPlan("title", "riv")
    assert plan_scan(resolve_clause(parse_scan_clause('dc.creator=="Zan"'), PROFILE)) == \
        ScanPlan("author", "Zan", whole_field=True)
    with pytest.raises(SRUError) as caught:
        plan_scan(resolve_clause(parse_scan_clause("dc.publisher=x"), PROFILE))
    assert caught.value.diagnostic is Diagnostic.UNSUPPORTED_INDEX


def test_catalogue_errors_map_to_diagnostics() -> None:
    assert sru_error(UnsupportedIndex("oclc")).diagnostic is Diagnostic.UNSUPPORTED_INDEX
    assert sru_error(UnsupportedIndex("oclc")).details == "oclc"
    assert sru_error(TimeBudgetExceeded()).diagnostic is \
        Diagnostic.SYSTEM_TEMPORARILY_UNAVAILABLE
    assert sru_error(CatalogueUnavailable()).diagnostic is \
        Diagnostic.SYSTEM_TEMPORARILY_UNAVAILABLE
    # an internal error's text never reaches the client
    try:
        try:
            raise ValueError("sqlite: no such column secret_col")
        except ValueError as inner:
            raise MalformedTerm("sqlite: no such column secret_col") from inner
    except MalformedTerm as error:
        mapped = sru_error(error)
    assert mapped.diagnostic is Diagnostic.TERM_IN_INVALID_FORMAT
    assert "secret_col" not in mapped.details


def test_explained_indexes_are_the_searchable_ones() -> None:
    """Every index the profile announces plans (no index explain lists is refused)."""
    for name, capability in PROFILE.indexes.items():
        if name == "cql.resultsetid":
            continue
        relation = "=" if "=" in capability.relations else sorted(capability.relations)[0]
        term = "2001" if name.endswith("date") else "x1"
        plan(f"{name} {relation} {term}")
