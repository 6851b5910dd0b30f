"""Resolving parsed CQL against what the catalogue supports: names, prefixes, diagnostics."""

from __future__ import annotations

import pytest

from protocols.sru.cql import Boolean, BooleanNode, Modifier, Relation, SearchClause, SortKey, parse
from protocols.sru.diagnostics import Diagnostic, SRUError
from protocols.sru.profile import (
    CQLProfile,
    IndexCapability,
    ProximityCapability,
    resolve,
    resolve_clause,
)

WORDS = IndexCapability(relations=frozenset({"=", "any", "all", "adj", "=="}),
                        relation_modifiers=frozenset({"relevant", "stem"}), sortable=True)
EXACT = IndexCapability(relations=frozenset({"=", "=="}), masking=False)
PROFILE = CQLProfile(
    indexes={
        "cql.serverchoice": WORDS,
        "dc.title": WORDS,
        "dc.creator": WORDS,
        "bath.isbn": EXACT,
        "dc.date": IndexCapability(relations=frozenset({"=", "<", ">", "<=", ">="}),
                                   sortable=True),
    },
    proximity=ProximityCapability(units=frozenset({"word"}), max_distance=5, unordered=False),
    max_sort_keys=2,
)


def resolved(text: str, profile: CQLProfile = PROFILE) -> SearchClause | BooleanNode:
    root = resolve(parse(text), profile).root
    assert isinstance(root, (SearchClause, BooleanNode))
    return root


def diagnostic_of(text: str, profile: CQLProfile = PROFILE) -> Diagnostic:
    with pytest.raises(SRUError) as caught:
        resolve(parse(text), profile)
    return caught.value.diagnostic


def test_bare_term_gets_server_choice_and_equals() -> None:
    """A bare term searches C{cql.serverchoice} with C{=}."""
    assert resolved("fish") == SearchClause("fish", "cql.serverchoice", Relation("="))


def test_names_become_canonical() -> None:
    """Prefixes, relation names and modifiers come out lower case, C{cql.} dropped."""
    assert resolved("DC.Title CQL.ANY/CQL.Relevant fish") == SearchClause(
        "fish", "dc.title", Relation("any", (Modifier("relevant"),)))


def test_assigned_prefix_maps_to_the_profiles_name() -> None:
    """C{>x="<dc URI>"} makes C{x.title} the profile's C{dc.title}."""
    text = '>x="info:srw/cql-context-set/1/dc-v1.1" x.title = frog'
    assert resolved(text) == SearchClause("frog", "dc.title", Relation("="))


def test_default_context_set_assignment() -> None:
    """C{>"<dc URI>"} makes unprefixed indexes Dublin Core within its scope only."""
    root = resolved('(>"info:srw/cql-context-set/1/dc-v1.1" title = a) and serverChoice = b')
    assert root == BooleanNode(SearchClause("a", "dc.title", Relation("=")), Boolean("and"),
                               SearchClause("b", "cql.serverchoice", Relation("=")))


def test_prefix_scope_ends_with_its_parentheses() -> None:
    """An assignment inside parentheses does not leak to the rest of the query."""
    text = '(>x="info:srw/cql-context-set/1/dc-v1.1" x.title = a) and x.title = b'
    assert diagnostic_of(text) is Diagnostic.UNSUPPORTED_CONTEXT_SET


@pytest.mark.parametrize(
    ("text", "diagnostic"),
    [
        ("zz.title = a", Diagnostic.UNSUPPORTED_CONTEXT_SET),
        ('>z="http://unknown/" z.title = a', Diagnostic.UNSUPPORTED_CONTEXT_SET),
        ("dc.subject = a", Diagnostic.UNSUPPORTED_INDEX),
        ("title = a", Diagnostic.UNSUPPORTED_INDEX),
        ("dc.title within a", Diagnostic.UNSUPPORTED_RELATION),
        ("dc.title dc.any a", Diagnostic.UNSUPPORTED_RELATION),
        ("bath.isbn any 1", Diagnostic.UNSUPPORTED_RELATION),
        ("dc.title =/locale=fr a", Diagnostic.UNSUPPORTED_RELATION_MODIFIER),
        ("dc.title =/dc.stem a", Diagnostic.UNSUPPORTED_RELATION_MODIFIER),
        ('dc.title = ""', Diagnostic.EMPTY_TERM_UNSUPPORTED),
        ("bath.isbn = 123*", Diagnostic.MASKING_CHARACTER_NOT_SUPPORTED),
        ("dc.title = ^frog", Diagnostic.ANCHORING_CHARACTER_NOT_SUPPORTED),
        ("dc.title = fr^og", Diagnostic.ANCHORING_CHARACTER_IN_UNSUPPORTED_POSITION),
        ("a and/x b", Diagnostic.UNSUPPORTED_BOOLEAN_MODIFIER),
        ("a prox/unit=sentence b", Diagnostic.UNSUPPORTED_PROXIMITY_UNIT),
        ("a prox/distance>2 b", Diagnostic.UNSUPPORTED_PROXIMITY_RELATION),
        ("a prox/distance<9 b", Diagnostic.UNSUPPORTED_PROXIMITY_DISTANCE),
        ("a prox/distance<x b", Diagnostic.UNSUPPORTED_PROXIMITY_DISTANCE),
        ("a prox/unordered b", Diagnostic.UNSUPPORTED_PROXIMITY_ORDERING),
        ("a prox/scope b", Diagnostic.UNSUPPORTED_COMBINATION_OF_PROXIMITY_MODIFIERS),
        ("a sortBy dc.creator dc.date dc.title", Diagnostic.TOO_MANY_SORT_KEYS),
        ("a sortBy bath.isbn", Diagnostic.UNSUPPORTED_PATH_FOR_SORT),
        ("a sortBy dc.nothing", Diagnostic.UNSUPPORTED_INDEX),
        ("a sortBy dc.date/sort.missingOmit", Diagnostic.UNSUPPORTED_MISSING_VALUE_ACTION),
        ("a sortBy dc.date/sort.unicode", Diagnostic.UNSUPPORTED_SORT_SEQUENCE),
    ],
)
def test_unsupported_features_carry_their_diagnostic(text: str, diagnostic: Diagnostic) -> None:
    """Each feature the profile lacks is refused with its own standard diagnostic."""
    assert diagnostic_of(text) is diagnostic


def test_booleans_and_proximity_off() -> None:
    """A profile without C{not} or C{prox} refuses them (37, 39)."""
    narrow = CQLProfile(indexes=PROFILE.indexes, booleans=frozenset({"and"}))
    assert diagnostic_of("a or b", narrow) is Diagnostic.UNSUPPORTED_BOOLEAN_OPERATOR
    assert diagnostic_of("a prox b", narrow) is Diagnostic.PROXIMITY_NOT_SUPPORTED
    assert diagnostic_of("a sortBy dc.date", narrow) is Diagnostic.SORT_NOT_SUPPORTED


def test_proximity_resolved() -> None:
    """Supported C{prox} modifiers come back without their C{prox.} prefix."""
    root = resolved("a prox/prox.unit=Word/distance<=2/ordered b")
    assert isinstance(root, BooleanNode)
    assert root.operator == Boolean("prox", (Modifier("unit", "=", "word"),
                                             Modifier("distance", "<=", "2"),
                                             Modifier("ordered")))


def test_sort_keys_resolved() -> None:
    """Sort keys get canonical indexes and bare modifier names."""
    query = resolve(parse("a sortBy DC.Date/sort.Descending/sort.ignoreCase"), PROFILE)
    assert query.sort_keys == (SortKey("dc.date", (Modifier("descending"),
                                                   Modifier("ignorecase"))),)


def test_long_chain_resolves_without_recursion() -> None:
    """The resolver walks a long left spine iteratively."""
    text = " and ".join(["a"] * 64)
    root = resolve(parse(text), PROFILE).root
    depth = 0
    while isinstance(root, BooleanNode):
        root, depth = root.left, depth + 1
    assert depth == 63


def test_scan_clause_resolution() -> None:
    """A scan clause resolves like a search clause, prefix assignments included."""
    from protocols.sru.cql import parse_scan_clause

    clause = parse_scan_clause('>x="info:srw/cql-context-set/1/dc-v1.1" x.title = frog')
    assert resolve_clause(clause, PROFILE) == SearchClause("frog", "dc.title", Relation("="))
