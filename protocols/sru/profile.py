# -*- test-case-name: tests.protocols.test_sru_profile -*-
"""What a CQL server supports, and the check that resolves a parsed query against it.

The gateway will declare one L{CQLProfile} (the indexes its catalogue can search, with their
relations and modifiers, the booleans, proximity, sorting) and call L{resolve} on each parsed
query. L{resolve} settles prefix assignments, names every index canonically (C{dc.title}), gives
bare terms the server-choice index and the C{=} relation, and raises the SRU diagnostic for
anything the profile lacks (15, 16, 19, 20, 27, 28, 37, 39-43, 46, 80, 84 ...). The resolved
tree is what the gateway maps onto its query plan. The same profile feeds the explain record
(L{protocols.sru.explain}), so what explain announces is exactly what a search accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .cql import (
    Boolean,
    BooleanNode,
    CQLQuery,
    Modifier,
    PrefixedQuery,
    Query,
    Relation,
    SearchClause,
    SortKey,
    masked,
)
from .diagnostics import Diagnostic, SRUError

__all__ = [
    "BATH_CONTEXT_SET",
    "CQL_CONTEXT_SET",
    "DC_CONTEXT_SET",
    "REC_CONTEXT_SET",
    "SORT_CONTEXT_SET",
    "WELL_KNOWN_CONTEXT_SETS",
    "CQLProfile",
    "IndexCapability",
    "ProximityCapability",
    "resolve",
    "resolve_clause",
]

CQL_CONTEXT_SET = "info:srw/cql-context-set/1/cql-v1.2"
DC_CONTEXT_SET = "info:srw/cql-context-set/1/dc-v1.1"
BATH_CONTEXT_SET = "http://zing.z3950.org/cql/bath/2.0/"
REC_CONTEXT_SET = "info:srw/cql-context-set/2/rec-1.1"
SORT_CONTEXT_SET = "info:srw/cql-context-set/1/sort-v1.0"

WELL_KNOWN_CONTEXT_SETS: Mapping[str, str] = {
    "cql": CQL_CONTEXT_SET,
    "dc": DC_CONTEXT_SET,
    "bath": BATH_CONTEXT_SET,
    "rec": REC_CONTEXT_SET,
    "sort": SORT_CONTEXT_SET,
}
"""The prefixes a query may use without assigning them (lower case)."""

_SERVER_CHOICE = "cql.serverchoice"
_EQUALITY_RELATIONS = frozenset({"=", "==", "<>", "<", ">", "<=", ">="})
_SORT_DIRECTIONS = frozenset({"ascending", "descending"})
_SORT_CASES = frozenset({"ignorecase", "respectcase"})
_SORT_MISSING = frozenset({"missingomit", "missingfail", "missinghigh", "missinglow",
                           "missingvalue"})


@dataclass(frozen=True)
class IndexCapability:
    """One searchable index: its relations and relation modifiers (lower case, no prefix)."""

    relations: frozenset[str] = frozenset({"=", "==", "any", "all", "adj"})
    relation_modifiers: frozenset[str] = frozenset()
    masking: bool = True
    anchoring: bool = False
    empty_term: bool = False
    sortable: bool = False
    scannable: bool = False
    title: str = ""


@dataclass(frozen=True)
class ProximityCapability:
    """What C{prox} may ask: units, distance relations, the largest distance, ordering."""

    units: frozenset[str] = frozenset({"word"})
    relations: frozenset[str] = frozenset({"<", "<=", "="})
    max_distance: int = 10
    ordered: bool = True
    unordered: bool = True


@dataclass(frozen=True)
class CQLProfile:
    """Everything a search may use; C{indexes} keyed by canonical name (C{dc.title})."""

    indexes: Mapping[str, IndexCapability]
    context_sets: Mapping[str, str] = field(default_factory=lambda: dict(WELL_KNOWN_CONTEXT_SETS))
    default_context_set: str = CQL_CONTEXT_SET
    booleans: frozenset[str] = frozenset({"and", "or", "not"})
    proximity: ProximityCapability | None = None
    max_sort_keys: int = 0

    def canonical_prefix(self, uri: str) -> str | None:
        """The prefix this profile names a context set by."""
        for prefix, known in self.context_sets.items():
            if known == uri:
                return prefix
        return None


def resolve(query: CQLQuery, profile: CQLProfile) -> CQLQuery:
    """The query with prefixes settled and every name canonical, or the diagnostic it earns.

    The result has no L{PrefixedQuery}; each clause has an index (C{cql.serverchoice} for a
    bare term) and a relation (C{=} for a bare term), relation and modifier names lower case
    without a C{cql.} prefix. Sort keys are checked and canonicalised the same way.
    """
    scope = _Scope(profile, dict(profile.context_sets), profile.default_context_set)
    root = _resolve_node(query.root, scope)
    keys = tuple(_resolve_sort_key(key, scope) for key in query.sort_keys)
    if keys and len(keys) > profile.max_sort_keys:
        if profile.max_sort_keys == 0:
            raise SRUError(Diagnostic.SORT_NOT_SUPPORTED)
        raise SRUError(Diagnostic.TOO_MANY_SORT_KEYS, f"at most {profile.max_sort_keys}")
    return CQLQuery(root, keys)


def resolve_clause(clause: Query, profile: CQLProfile) -> SearchClause:
    """A scan clause resolved as L{resolve} resolves a search clause."""
    scope = _Scope(profile, dict(profile.context_sets), profile.default_context_set)
    while isinstance(clause, PrefixedQuery):
        scope = scope.with_assignments(clause)
        clause = clause.query
    if not isinstance(clause, SearchClause):
        raise SRUError(Diagnostic.QUERY_SYNTAX_ERROR, "a scan clause is a single search clause")
    return _resolve_clause(clause, scope)


@dataclass(frozen=True)
class _Scope:
    profile: CQLProfile
    prefixes: dict[str, str]
    default_set: str

    def with_assignments(self, node: PrefixedQuery) -> _Scope:
        prefixes = dict(self.prefixes)
        default_set = self.default_set
        for assignment in node.assignments:
            if assignment.prefix is None:
                default_set = assignment.uri
            else:
                prefixes[assignment.prefix.lower()] = assignment.uri
        return _Scope(self.profile, prefixes, default_set)

    def qualify(self, name: str) -> tuple[str, str]:
        """C{(context set URI, lower-case local name)} of a possibly prefixed name."""
        prefix, dot, local = name.rpartition(".")
        if not dot:
            return self.default_set, local.lower()
        uri = self.prefixes.get(prefix.lower())
        if uri is None:
            raise SRUError(Diagnostic.UNSUPPORTED_CONTEXT_SET, prefix)
        return uri, local.lower()

    def index_name(self, name: str) -> str:
        uri, local = self.qualify(name)
        prefix = self.profile.canonical_prefix(uri)
        if prefix is None:
            raise SRUError(Diagnostic.UNSUPPORTED_CONTEXT_SET, uri)
        return f"{prefix}.{local}"

    def cql_name(self, name: str, diagnostic: Diagnostic) -> str:
        """A relation or modifier name, which must be bare or in the CQL context set."""
        if "." not in name:
            return name.lower()
        uri, local = self.qualify(name)
        if uri != CQL_CONTEXT_SET:
            raise SRUError(diagnostic, name)
        return local


def _resolve_node(node: Query, scope: _Scope) -> Query:
    """Resolve iteratively down the left spine, so long boolean chains cost no recursion.

    Each boolean keeps the scope in force where it stands: an assignment inside a
    parenthesised left operand covers that operand only.
    """
    spine: list[tuple[BooleanNode, _Scope]] = []
    while True:
        while isinstance(node, PrefixedQuery):
            scope = scope.with_assignments(node)
            node = node.query
        if not isinstance(node, BooleanNode):
            break
        spine.append((node, scope))
        node = node.left
    result: Query = _resolve_clause(node, scope)
    for boolean, its_scope in reversed(spine):
        operator = _resolve_boolean(boolean.operator, its_scope)
        result = BooleanNode(result, operator, _resolve_node(boolean.right, its_scope))
    return result


def _resolve_clause(clause: SearchClause, scope: _Scope) -> SearchClause:
    profile = scope.profile
    index = _SERVER_CHOICE if clause.index is None else scope.index_name(clause.index)
    capability = profile.indexes.get(index)
    if capability is None:
        raise SRUError(Diagnostic.UNSUPPORTED_INDEX, index)
    relation = clause.relation or Relation("=")
    name = relation.name if relation.name in _EQUALITY_RELATIONS else scope.cql_name(
        relation.name, Diagnostic.UNSUPPORTED_RELATION)
    if name not in capability.relations:
        raise SRUError(Diagnostic.UNSUPPORTED_RELATION, relation.name)
    modifiers = []
    for modifier in relation.modifiers:
        modifier_name = scope.cql_name(modifier.name, Diagnostic.UNSUPPORTED_RELATION_MODIFIER)
        if modifier_name not in capability.relation_modifiers:
            raise SRUError(Diagnostic.UNSUPPORTED_RELATION_MODIFIER, modifier.name)
        modifiers.append(replace(modifier, name=modifier_name))
    if not clause.term and not capability.empty_term:
        raise SRUError(Diagnostic.EMPTY_TERM_UNSUPPORTED, index)
    term = masked(clause.term)
    if not term.is_plain and not capability.masking:
        raise SRUError(Diagnostic.MASKING_CHARACTER_NOT_SUPPORTED, index)
    if (term.anchored_start or term.anchored_end) and not capability.anchoring:
        raise SRUError(Diagnostic.ANCHORING_CHARACTER_NOT_SUPPORTED, index)
    return SearchClause(clause.term, index, Relation(name, tuple(modifiers)))


def _resolve_boolean(operator: Boolean, scope: _Scope) -> Boolean:
    profile = scope.profile
    if operator.name == "prox":
        if profile.proximity is None:
            raise SRUError(Diagnostic.PROXIMITY_NOT_SUPPORTED)
        return Boolean("prox", _proximity_modifiers(operator.modifiers, profile.proximity))
    if operator.name not in profile.booleans:
        raise SRUError(Diagnostic.UNSUPPORTED_BOOLEAN_OPERATOR, operator.name)
    if operator.modifiers:
        raise SRUError(Diagnostic.UNSUPPORTED_BOOLEAN_MODIFIER, operator.modifiers[0].name)
    return operator


def _proximity_modifiers(
    modifiers: tuple[Modifier, ...], capability: ProximityCapability
) -> tuple[Modifier, ...]:
    """Check C{prox} modifiers (CQL 1.2: C{unit=}, C{distance<n}, C{ordered}/C{unordered})."""
    resolved = []
    for modifier in modifiers:
        name = modifier.name.lower().removeprefix("prox.").removeprefix("cql.")
        if name == "unit":
            if modifier.comparitor != "=" or (modifier.value or "").lower() not in capability.units:
                raise SRUError(Diagnostic.UNSUPPORTED_PROXIMITY_UNIT, str(modifier.value))
        elif name == "distance":
            if modifier.comparitor not in capability.relations:
                raise SRUError(Diagnostic.UNSUPPORTED_PROXIMITY_RELATION, str(modifier.comparitor))
            value = modifier.value or ""
            if not value.isdigit() or int(value) > capability.max_distance:
                raise SRUError(Diagnostic.UNSUPPORTED_PROXIMITY_DISTANCE, value)
        elif name in ("ordered", "unordered"):
            if not getattr(capability, name):
                raise SRUError(Diagnostic.UNSUPPORTED_PROXIMITY_ORDERING, name)
        else:
            raise SRUError(Diagnostic.UNSUPPORTED_COMBINATION_OF_PROXIMITY_MODIFIERS, modifier.name)
        resolved.append(Modifier(name, modifier.comparitor,
                                 modifier.value.lower() if name == "unit" and modifier.value
                                 else modifier.value))
    return tuple(resolved)


def _resolve_sort_key(key: SortKey, scope: _Scope) -> SortKey:
    index = scope.index_name(key.index)
    capability = scope.profile.indexes.get(index)
    if capability is None:
        raise SRUError(Diagnostic.UNSUPPORTED_INDEX, index)
    if not capability.sortable:
        raise SRUError(Diagnostic.UNSUPPORTED_PATH_FOR_SORT, index)
    modifiers = []
    for modifier in key.modifiers:
        name = modifier.name.lower().removeprefix("sort.")
        if name in _SORT_DIRECTIONS:
            modifiers.append(Modifier(name))
        elif name in _SORT_CASES:
            modifiers.append(Modifier(name))
        elif name in _SORT_MISSING:
            raise SRUError(Diagnostic.UNSUPPORTED_MISSING_VALUE_ACTION, modifier.name)
        else:
            raise SRUError(Diagnostic.UNSUPPORTED_SORT_SEQUENCE, modifier.name)
    return SortKey(index, tuple(modifiers))
