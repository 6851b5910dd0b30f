"""PQF parser and printer, and conversion between the query model and pyasn1 RPNQuery."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder

from protocols.z3950 import oids
from protocols.z3950.asn1 import RPNQuery
from protocols.z3950.errors import PQFError, QueryConversionError
from protocols.z3950.pqf import (
    MAX_QUERY_DEPTH,
    And,
    AndNot,
    Attribute,
    Or,
    Query,
    ResultSetRef,
    Term,
    parse_pqf,
    query_from_rpn,
    query_to_rpn,
    to_pqf,
)


def term_of(query: Query) -> Term:
    """The query's root, which must be a single term."""
    assert isinstance(query.root, Term), query.root
    return query.root


def _rpn_round_trip(query: Query) -> Query:
    """Model -> RPNQuery -> BER -> RPNQuery -> model."""
    data = encoder.encode(query_to_rpn(query))
    value, rest = decoder.decode(data, asn1Spec=RPNQuery())
    assert rest == b""
    return query_from_rpn(value)


def test_broker_queries_parse() -> None:
    """The searches brokers send (1=12, 1=7, 1=4, 1=1211) parse to single terms."""
    assert parse_pqf("@attr 1=7 0262011530") == Query(
        Term("0262011530", (Attribute(None, 1, 7),))
    )
    q = parse_pqf("@attr 1=12 @attr 2=3 rec0003")
    assert q.root == Term("rec0003", (Attribute(None, 1, 12), Attribute(None, 2, 3)))
    assert term_of(q).attribute(1) == 12 and term_of(q).attribute(4) is None
    assert term_of(parse_pqf("@attr 1=1211 34117863")).attribute(1) == 1211


def test_attrset_prefix_and_per_attribute_sets() -> None:
    """@attrset sets the query's set; @attr SET type=value sets one attribute's set."""
    q = parse_pqf("@attrset bib-1 @attr 1=4 title")
    assert q.attribute_set == oids.BIB1_ATTRSET
    q = parse_pqf("@attrset exp-1 @attr bib-1 1=4 @attr 1.2.840.10003.3.2 1=1 x")
    assert q.attribute_set == oids.EXP1_ATTRSET
    assert term_of(q).attributes == (
        Attribute(oids.BIB1_ATTRSET, 1, 4),
        Attribute(oids.EXP1_ATTRSET, 1, 1),
    )


def test_boolean_operators_and_inherited_attributes() -> None:
    """@and/@or/@not nest; attributes before an operator apply to every term below it."""
    q = parse_pqf("@attr 4=1 @and @or a @attr 1=4 b @not c @set prior")
    a = Term("a", (Attribute(None, 4, 1),))
    b = Term("b", (Attribute(None, 4, 1), Attribute(None, 1, 4)))
    c = Term("c", (Attribute(None, 4, 1),))
    assert q.root == And(Or(a, b), AndNot(c, ResultSetRef("prior")))
    assert [t.value for t in q.terms()] == ["a", "b", "c"]


def test_quoted_terms_and_escapes() -> None:
    """Quoted terms keep spaces and @; backslash escapes quotes and backslashes."""
    q = parse_pqf('@attr 1=4 "pride and prejudice"')
    assert q.root == Term("pride and prejudice", (Attribute(None, 1, 4),))
    assert parse_pqf(r'"say \"hi\" \\ back"').root == Term('say "hi" \\ back')
    assert parse_pqf('"@and"').root == Term("@and")
    assert parse_pqf('""').root == Term("")


def test_complex_attribute_values() -> None:
    """Non-numeric values are strings; comma lists are tuples (complex attributes)."""
    q = parse_pqf("@attr 1=title @attr 5=1,2 x")
    assert term_of(q).attributes == (Attribute(None, 1, "title"), Attribute(None, 5, (1, 2)))


@pytest.mark.parametrize(
    "text",
    [
        "@attr 1=7 0262011530",
        '@and @attr 1=4 "pride and prejudice" @attr 1=1003 austen',
        "@or @attr bib-1 1=12 rec0003 @set default",
        "@attrset exp-1 @not @attr 1=title x @attr 5=1,2 y",
        '@and @and a "b c" @or "" "@x"',
        "@attr 1=1016 Zoë",
    ],
)
def test_print_parse_round_trip(text: str) -> None:
    """to_pqf output parses back to the same model, and survives the RPN conversion."""
    query = parse_pqf(text)
    assert parse_pqf(to_pqf(query)) == query
    assert _rpn_round_trip(query) == query


def test_printer_canonical_form() -> None:
    """The printer omits the default bib-1 set and spells other sets by name."""
    assert to_pqf(parse_pqf("@attrset bib-1 @attr 1=4 x")) == "@attr 1=4 x"
    assert to_pqf(Query(Term("x"), oids.EXP1_ATTRSET)) == "@attrset exp-1 x"
    assert to_pqf(Query(Term("x"), (1, 2, 3))) == "@attrset 1.2.3 x"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "end of query"),
        ("@and a", "end of query"),
        ("@attr", "end of query"),
        ("@attr 1 x", "unknown attribute set"),
        ("@attr bib-1 4 x", "bad attribute"),
        ("@attr x=4 y", "bad attribute"),
        ("@attr 1= y", "bad attribute"),
        ("@attr nosuchset 1=4 y", "unknown attribute set"),
        ("@attrset nosuchset y", "unknown attribute set"),
        ("@foo x", "unknown operator"),
        ("@prox 0 1 0 2 k 2 a b", "not supported"),
        ("a b", "unexpected"),
        ('"unterminated', "unterminated"),
        ("@and a @attrset bib-1 b", "only allowed at the start"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    """Malformed PQF raises PQFError with a clear message."""
    with pytest.raises(PQFError) as info:
        parse_pqf(text)
    assert fragment in str(info.value)


def test_deep_nesting_refused_without_recursion_error() -> None:
    """Absurdly deep operator nesting is a PQFError, not a RecursionError."""
    with pytest.raises(PQFError):
        parse_pqf("@and " * 5000 + "a " * 5001)
    ok = "@and " * (MAX_QUERY_DEPTH - 1) + "a " * MAX_QUERY_DEPTH
    assert isinstance(parse_pqf(ok).root, And)


def test_numeric_and_character_string_terms() -> None:
    """Term kinds other than general survive the RPN round trip."""
    for term in (Term("42", kind="numeric"), Term("x y", kind="characterString"),
                 Term("", kind="null")):
        assert _rpn_round_trip(Query(term)) == Query(term)


def test_rpn_wire_form_matches_yaz() -> None:
    """@attr 1=4 computer encodes exactly as yaz-client's RPNQuery."""
    data = encoder.encode(query_to_rpn(parse_pqf("@attr 1=4 computer")))
    assert data == bytes.fromhex(
        "302606072a8648ce130301a01bbf6618bf2c0a30089f7801019f7901049f2d08636f6d7075746572"
    )


def test_prox_in_rpn_is_a_conversion_error() -> None:
    """A proximity operator from the wire raises QueryConversionError."""
    rpn = query_to_rpn(parse_pqf("@and a b"))
    op = rpn["rpn"]["rpnRpnOp"]["op"]
    prox = op["prox"]
    prox["distance"] = 1
    prox["ordered"] = True
    prox["relationType"] = 2
    prox["proximityUnitCode"]["known"] = 2
    value, _ = decoder.decode(encoder.encode(rpn), asn1Spec=RPNQuery())
    with pytest.raises(QueryConversionError):
        query_from_rpn(value)


# typed as the category literal hypothesis expects (a bare ("Cs",) is inferred as tuple[str])
_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
_terms = st.text(st.characters(blacklist_categories=_SURROGATES), max_size=12)
_attrs = st.lists(
    st.builds(Attribute, st.sampled_from([None, oids.BIB1_ATTRSET]), st.integers(1, 6),
              st.integers(0, 2000)),
    max_size=3,
).map(tuple)
_leaf = st.one_of(
    st.builds(Term, _terms, _attrs),
    st.builds(ResultSetRef, st.text(st.characters(blacklist_categories=_SURROGATES), max_size=6)),
)
_nodes = st.recursive(
    _leaf,
    lambda kids: st.one_of(st.builds(And, kids, kids), st.builds(Or, kids, kids),
                           st.builds(AndNot, kids, kids)),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(_nodes)
def test_random_queries_round_trip(root) -> None:
    """Any model prints to PQF that parses back to it, and survives BER."""
    query = Query(root)
    assert parse_pqf(to_pqf(query)) == query
    assert _rpn_round_trip(query) == query
