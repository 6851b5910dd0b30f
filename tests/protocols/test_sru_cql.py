"""CQL parsing, printing, masking and the limits that keep hostile queries cheap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.sru.cql import (
    MAX_BOOLEANS,
    Boolean,
    BooleanNode,
    CQLQuery,
    Mask,
    Modifier,
    PrefixAssignment,
    PrefixedQuery,
    Query,
    Relation,
    SearchClause,
    SortKey,
    clauses,
    masked,
    parse,
    parse_scan_clause,
    to_cql,
)
from protocols.sru.diagnostics import Diagnostic, SRUError


def diagnostic_of(text: str, **limits: int) -> Diagnostic:
    with pytest.raises(SRUError) as caught:
        parse(text, **limits)
    return caught.value.diagnostic


def test_bare_term() -> None:
    """A lone word is a bare search clause: no index, no relation."""
    assert parse("fish") == CQLQuery(SearchClause("fish"))


def test_index_relation_term() -> None:
    """C{index relation term} with a symbol or a named relation, keeping the names as written."""
    assert parse("dc.title = fish").root == SearchClause("fish", "dc.title", Relation("="))
    assert parse('dc.title ANY "fish frog"').root == SearchClause(
        "fish frog", "dc.title", Relation("ANY"))
    assert parse("date>=2001").root == SearchClause("2001", "date", Relation(">="))
    assert parse("a<>b").root == SearchClause("b", "a", Relation("<>"))


def test_relation_modifiers() -> None:
    """Relation modifiers, bare or with a comparitor and a value, in order."""
    clause = parse("title =/relevant/cql.string/locale=fr fish").root
    assert clause == SearchClause("fish", "title", Relation("=", (
        Modifier("relevant"), Modifier("cql.string"), Modifier("locale", "=", "fr"))))


def test_booleans_are_left_associative_with_equal_precedence() -> None:
    """C{a or b and c} is C{(a or b) and c}: CQL has no precedence between booleans."""
    root = parse("a or b AND c").root
    assert root == BooleanNode(
        BooleanNode(SearchClause("a"), Boolean("or"), SearchClause("b")),
        Boolean("and"), SearchClause("c"))


def test_parentheses_group() -> None:
    """Parentheses override the left-to-right grouping."""
    root = parse("a or (b and c)").root
    assert root == BooleanNode(
        SearchClause("a"), Boolean("or"),
        BooleanNode(SearchClause("b"), Boolean("and"), SearchClause("c")))


def test_prox_with_modifiers() -> None:
    """C{prox} is a boolean with CQL 1.2 modifiers."""
    root = parse("cat prox/unit=word/distance<=3/ordered hat").root
    assert isinstance(root, BooleanNode)
    assert root.operator == Boolean("prox", (
        Modifier("unit", "=", "word"), Modifier("distance", "<=", "3"), Modifier("ordered")))


def test_quoted_terms_and_escapes() -> None:
    """Quotes hold spaces and specials; C{\\"} is a quote; other escapes are kept for masking."""
    assert parse(r'"say \"hi\" (now)"').root == SearchClause('say "hi" (now)')
    assert parse(r'"a\*b"').root == SearchClause(r"a\*b")
    assert parse('""').root == SearchClause("")


def test_keywords_may_be_terms() -> None:
    """Keywords after a relation or a boolean, or quoted, are terms."""
    assert parse("title = and").root == SearchClause("and", "title", Relation("="))
    assert parse('"or"').root == SearchClause("or")
    root = parse("a and not").root
    assert root == BooleanNode(SearchClause("a"), Boolean("and"), SearchClause("not"))


def test_prefix_assignments() -> None:
    """C{>p="uri"} and C{>"uri"} scope over the query that follows."""
    root = parse('>dc="info:srw/cql-context-set/1/dc-v1.1" >"http://x/" dc.title = a and b').root
    assert root == PrefixedQuery(
        (PrefixAssignment("info:srw/cql-context-set/1/dc-v1.1", "dc"),
         PrefixAssignment("http://x/")),
        BooleanNode(SearchClause("a", "dc.title", Relation("=")), Boolean("and"),
                    SearchClause("b")))


def test_prefix_assignment_inside_parentheses() -> None:
    """A parenthesised query may start with its own prefix assignments."""
    root = parse('a and (>x="u" x.t = b)').root
    assert isinstance(root, BooleanNode)
    assert root.right == PrefixedQuery((PrefixAssignment("u", "x"),),
                                       SearchClause("b", "x.t", Relation("=")))


def test_sortby() -> None:
    """C{sortBy} keys with modifiers end the query; the keyword is case-insensitive."""
    query = parse("dinosaur SORTBY dc.date/sort.descending dc.title")
    assert query.root == SearchClause("dinosaur")
    assert query.sort_keys == (SortKey("dc.date", (Modifier("sort.descending"),)),
                               SortKey("dc.title"))


@pytest.mark.parametrize(
    ("text", "diagnostic"),
    [
        ("", Diagnostic.QUERY_SYNTAX_ERROR),
        ("   ", Diagnostic.QUERY_SYNTAX_ERROR),
        ("a and", Diagnostic.QUERY_SYNTAX_ERROR),
        ("title =", Diagnostic.QUERY_SYNTAX_ERROR),
        ("a b", Diagnostic.QUERY_SYNTAX_ERROR),
        ("a sortBy", Diagnostic.QUERY_SYNTAX_ERROR),
        ("a sortBy b )", Diagnostic.INVALID_PARENTHESES),
        ("a sortBy b/", Diagnostic.QUERY_SYNTAX_ERROR),
        ("a =/ b", Diagnostic.QUERY_SYNTAX_ERROR),
        ("a \\", Diagnostic.QUERY_SYNTAX_ERROR),
        ("(a", Diagnostic.INVALID_PARENTHESES),
        ("a)", Diagnostic.INVALID_PARENTHESES),
        ("()", Diagnostic.INVALID_PARENTHESES),
        ("a and (b or c", Diagnostic.INVALID_PARENTHESES),
        ('"abc', Diagnostic.INVALID_QUOTES),
        ('title = "abc\\"', Diagnostic.INVALID_QUOTES),
        (">dc=", Diagnostic.QUERY_SYNTAX_ERROR),
        ("and or", Diagnostic.QUERY_SYNTAX_ERROR),
    ],
)
def test_syntax_errors_carry_their_diagnostic(text: str, diagnostic: Diagnostic) -> None:
    """Each malformed query fails with the standard diagnostic, never another exception."""
    assert diagnostic_of(text) is diagnostic


def test_error_details_name_the_position() -> None:
    """The details say what was expected and where, for the broker's log."""
    with pytest.raises(SRUError) as caught:
        parse("title = fish frog")
    assert "at 13" in caught.value.details
    assert caught.value.diagnostic.uri == "info:srw/diagnostic/1/10"


def test_limits() -> None:
    """Length, term length, nesting depth and boolean count are bounded, each by its number."""
    assert diagnostic_of("a" * 50, max_length=40) is Diagnostic.TOO_MANY_CHARACTERS_IN_QUERY
    assert diagnostic_of("a" * 50, max_term=40) is Diagnostic.TOO_MANY_CHARACTERS_IN_TERM
    assert diagnostic_of("(" * 5 + "a" + ")" * 5, max_depth=4) is Diagnostic.INVALID_PARENTHESES
    assert parse("(" * 4 + "a" + ")" * 4, max_depth=4).root == SearchClause("a")
    chain = " and ".join(["a"] * 5)
    assert diagnostic_of(chain, max_booleans=3) is Diagnostic.TOO_MANY_BOOLEAN_OPERATORS
    many = parse(">a=b " * 40 + "x", max_depth=4).root
    assert isinstance(many, PrefixedQuery) and len(many.assignments) == 40


def test_deep_input_fails_fast_without_recursion_error() -> None:
    """A megabyte of parentheses or booleans is refused by a limit, not a RecursionError."""
    assert diagnostic_of("(" * 100_000, max_length=10**6) is Diagnostic.INVALID_PARENTHESES
    chain = " and ".join(["a"] * 10_000)
    assert diagnostic_of(chain, max_length=10**6) is Diagnostic.TOO_MANY_BOOLEAN_OPERATORS
    nested = "".join(f'>p{i}="u" (' for i in range(100)) + "a" + ")" * 100
    assert diagnostic_of(nested, max_length=10**6) is Diagnostic.INVALID_PARENTHESES


def test_the_largest_allowed_tree_walks_prints_and_compares() -> None:
    """At the limits the tree still prints, compares and hashes (so the limits are safe)."""
    text = "(" * 30 + " and ".join(["a"] * (MAX_BOOLEANS + 1)) + ")" * 30
    query = parse(text)
    assert parse(to_cql(query)) == query
    assert hash(query) == hash(parse(text))
    assert len(list(clauses(query.root))) == MAX_BOOLEANS + 1


def test_scan_clause() -> None:
    """A scan clause is one clause, possibly after prefix assignments."""
    assert parse_scan_clause("dc.title = frog") == SearchClause("frog", "dc.title",
                                                                Relation("="))
    assert isinstance(parse_scan_clause('>x="u" x.t = a'), PrefixedQuery)
    with pytest.raises(SRUError):
        parse_scan_clause("a and b")
    with pytest.raises(SRUError):
        parse_scan_clause("a sortBy t")


def test_clauses_in_order() -> None:
    """L{clauses} yields search clauses left to right."""
    terms = [c.term for c in clauses(parse("a and (b or c) not d").root)]
    assert terms == ["a", "b", "c", "d"]


def test_printing_is_canonical() -> None:
    """Printed CQL quotes only what needs quotes and parenthesises right-nested booleans."""
    assert to_cql(parse('title any "x y" and/m=1 (b or c) sortby t/sort.descending')) == (
        'title any "x y" and/m=1 (b or c) sortBy t/sort.descending')
    assert to_cql(parse('">" and "sortby"')) == '">" and "sortby"'
    assert to_cql(parse('>dc="http://u/x" t')) == '>dc="http://u/x" t'


def test_masking() -> None:
    """Unescaped C{*} and C{?} are masks; C{\\} escapes; C{^} anchors at either end only."""
    assert masked("fish").is_plain
    assert masked("fi*").parts == ("fi", Mask.ANY)
    assert masked("f?sh").parts == ("f", Mask.ONE, "sh")
    assert masked(r"a\*b\\").parts == ("a*b\\",)
    term = masked("^fish^")
    assert (term.anchored_start, term.anchored_end, term.literal) == (True, True, "fish")
    with pytest.raises(SRUError) as caught:
        masked("fi^sh")
    assert caught.value.diagnostic is Diagnostic.ANCHORING_CHARACTER_IN_UNSUPPORTED_POSITION
    with pytest.raises(SRUError) as caught:
        masked(r"\q", strict_escapes=True)
    assert caught.value.diagnostic is Diagnostic.NON_SPECIAL_CHARACTER_ESCAPED


def test_truncation() -> None:
    """Only a C{*} at either end maps onto Z39.50 truncation; anything else returns None."""
    assert masked("fish*").truncation() == ("fish", False, True)
    assert masked("*fish").truncation() == ("fish", True, False)
    assert masked("*fish*").truncation() == ("fish", True, True)
    assert masked("fish").truncation() == ("fish", False, False)
    assert masked("*").truncation() == ("", True, False)
    assert masked("fi*sh").truncation() is None
    assert masked("fish?").truncation() is None


# -- property tests -----------------------------------------------------------------------------

_WORD = st.text(alphabet="abcXYZ019.:-_*?^", min_size=1, max_size=8)
_TERM = st.one_of(
    _WORD,
    st.text(alphabet='ab "()=<>/ \\*?', max_size=8).map(
        lambda t: t.replace("\\", "\\\\")),  # literal backslashes, always paired
    st.sampled_from(["and", "OR", "sortby", "prox", ""]),
)
_NAME = st.text(alphabet="abcxyz.", min_size=1, max_size=6).filter(
    lambda n: n.lower() not in ("and", "or", "not", "prox", "sortby"))
_MODIFIERS = st.lists(
    st.one_of(st.builds(Modifier, _NAME),
              st.builds(Modifier, _NAME, st.sampled_from(["=", "<", ">="]), _TERM)),
    max_size=2).map(tuple)
_RELATION = st.builds(Relation, st.one_of(st.sampled_from(["=", "==", "<>", "<=", ">"]), _NAME),
                      _MODIFIERS)
_CLAUSE = st.one_of(st.builds(SearchClause, _TERM),
                    st.builds(SearchClause, _TERM, _TERM, _RELATION))
_BOOLEAN = st.builds(Boolean, st.sampled_from(["and", "or", "not", "prox"]), _MODIFIERS)


def _extend(children: st.SearchStrategy[Query]) -> st.SearchStrategy[Query]:
    return st.one_of(
        st.builds(BooleanNode, children, _BOOLEAN, children),
        st.builds(PrefixedQuery,
                  st.lists(st.builds(PrefixAssignment, _TERM,
                                     st.one_of(st.none(), _NAME)), min_size=1, max_size=2)
                  .map(tuple),
                  children.filter(lambda q: not isinstance(q, PrefixedQuery))),
    )


_QUERY = st.recursive(_CLAUSE, _extend, max_leaves=12)
_SORT_KEYS = st.lists(st.builds(SortKey, _TERM, _MODIFIERS), max_size=2).map(tuple)


@settings(max_examples=300, deadline=None)
@given(st.builds(CQLQuery, _QUERY, _SORT_KEYS))
def test_print_then_parse_is_identity(query: CQLQuery) -> None:
    """Any tree the model can hold prints to CQL that parses back to the same tree."""
    assert parse(to_cql(query), max_length=10**6) == query


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='ab ()=<>/"\\*>.andortsby', max_size=60))
def test_arbitrary_text_parses_or_fails_with_a_diagnostic(text: str) -> None:
    """No input makes the parser raise anything but L{SRUError}; what parses reprints stably."""
    try:
        query = parse(text)
    except SRUError as error:
        assert error.diagnostic in Diagnostic
        return
    assert parse(to_cql(query)) == query


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_masked_never_fails_but_for_anchors(term: str) -> None:
    """L{masked} reads any term; only a misplaced C{^} is an error, and literals survive."""
    try:
        result = masked(term)
    except SRUError as error:
        assert error.diagnostic is Diagnostic.ANCHORING_CHARACTER_IN_UNSUPPORTED_POSITION
        return
    if "\\" not in term and "^" not in term:
        assert result.literal == term.replace("*", "").replace("?", "")
