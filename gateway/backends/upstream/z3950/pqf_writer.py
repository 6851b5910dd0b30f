# -*- test-case-name: tests.gateway.test_upstream_z3950_pqf -*-
"""Query plans written as type-1 queries for an upstream target, with its attribute map.

Each LMS profile says which Bib-1 Use attribute its server indexes each of our indexes under
(Koha's Zebra: the use attributes its MARC 21 index definitions feed, see
``../shared/lms/koha-zebra/README.md``). An index the map lacks, or a comparison the upstream
cannot make, is a domain error (a Bib-1 diagnostic to the broker), never a broader search.
Structure, truncation, position and completeness are written as the Bib-1 attributes Zebra
(and YAZ-based servers) read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
from protocols.z3950.pqf import And, AndNot, Attribute, Node, Or, Query, Term

STANDARD_USES: dict[str, int] = {
    "title": 4, "series": 5, "author": 1003, "personal": 1004, "corporate": 1005,
    "conference": 1006, "subject": 21, "publisher": 1018, "any": 1016, "anywhere": 1035,
    "isbn": 7, "issn": 8, "lccn": 9, "local_id": 12, "language": 54,
    "standard_identifier": 1007, "oclc": 1211, "year": 31,
}
"""Our index → the standard Bib-1 Use attribute (what YAZ's test target and most servers take)."""

KOHA_USES: dict[str, int] = {
    **STANDARD_USES,
    "conference": 3,       # Koha feeds 3 Conference-name; 1006 is not indexed
    "corporate": 2,        # 710 and 110 go to 2 Corporate-name; 1005 finds nothing there
    "anywhere": 1016,      # Koha has no 1035; Any covers every word index
}
"""Koha's Zebra (``biblio-koha-indexdefs.xml``): every index above is fed; 1006 and 1035 are
not, and 1005 holds nothing of 110/710 (the README's list of the 148 use attributes it indexes)."""

PROFILE_USES: dict[str, Mapping[str, int]] = {"koha": KOHA_USES}
"""Per LMS profile; a profile not listed uses :data:`STANDARD_USES`."""

SORT_USES: dict[SortField, int] = {
    SortField.TITLE: 4, SortField.AUTHOR: 1003, SortField.YEAR: 31, SortField.LOCAL_ID: 12,
}

_TRUNCATION = {
    Truncation.NONE: 100, Truncation.RIGHT: 1, Truncation.LEFT: 2, Truncation.BOTH: 3,
    Truncation.HASH_MASK: 101, Truncation.Z3958_MASK: 104, Truncation.REGEX: 102,
}
_RELATION = {
    Comparison.LESS: 1, Comparison.LESS_OR_EQUAL: 2, Comparison.EQUAL: 3,
    Comparison.GREATER_OR_EQUAL: 4, Comparison.GREATER: 5,
}
_OPERATOR: dict[Operator, Callable[[Node, Node], Node]] = {
    Operator.AND: And, Operator.OR: Or, Operator.AND_NOT: AndNot,
}


def uses_for(profile: str, overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """The attribute map of an LMS profile, with configured ``overrides`` (0 removes one)."""
    uses = dict(PROFILE_USES.get(profile, STANDARD_USES))
    for index, use in (overrides or {}).items():
        if use:
            uses[index] = use
        else:
            uses.pop(index, None)
    return uses


def _a(type_: int, value: int) -> Attribute:
    return Attribute(None, type_, value)


class PlanWriter:
    """Writes plans (and scan plans, sort keys) with one target's attribute map.

    ``set_query`` gives the query a result set handle was made from: a reference to an earlier
    result set is written as that query, so it runs on whichever association is free.
    """

    def __init__(self, uses: Mapping[str, int],
                 set_query: Callable[[object], Node | None]) -> None:
        self.uses = uses
        self.set_query = set_query

    def use(self, index: str) -> int:
        """The Use attribute of ``index``, or :class:`UnsupportedIndex`."""
        use = self.uses.get(index)
        if use is None:
            raise UnsupportedIndex(index)
        return use

    def query(self, plan: Plan) -> Query:
        """The plan as a type-1 query."""
        return Query(self.node(plan))

    def node(self, plan: Plan) -> Node:
        """One plan node."""
        if isinstance(plan, Combine):
            return _OPERATOR[plan.operator](self.node(plan.left), self.node(plan.right))
        if isinstance(plan, WordTerm):
            return self.word(plan)
        if isinstance(plan, IdentifierTerm):
            attrs = [_a(1, self.use(plan.index))]
            if plan.right_truncated:
                attrs.append(_a(5, 1))
            return Term(plan.text, tuple(attrs))
        if isinstance(plan, YearTerm):
            return self.year(plan)
        if isinstance(plan, SetTerm):
            node = self.set_query(plan.result_set)
            if node is None:
                raise UnsupportedCombination(f"result set {plan.name} is not from this catalogue")
            return node
        raise UnsupportedCombination(f"cannot write {type(plan).__name__}")

    def word(self, term: WordTerm) -> Term:
        """Words: a phrase (4=1), a word list (4=6, words ANDed) or a whole field (6=3)."""
        attrs = [_a(1, self.use(term.index))]
        if term.first_in_field:
            attrs.append(_a(3, 1))
        if term.complete:
            attrs += [_a(4, 1), _a(6, 3)]
        elif term.phrase:
            attrs.append(_a(4, 1))
        else:
            attrs.append(_a(4, 6) if len(term.text.split()) > 1 else _a(4, 2))
        if term.truncation is not Truncation.NONE:
            attrs.append(_a(5, _TRUNCATION[term.truncation]))
        return Term(term.text, tuple(attrs))

    def year(self, term: YearTerm) -> Node:
        """A year compared numerically (Koha's pubdate has a numeric register)."""
        use = self.use("year")
        if term.comparison is Comparison.WITHIN:
            return And(self._year(use, 4, term.low), self._year(use, 2, term.high))
        relation = _RELATION.get(term.comparison)
        if relation is None:
            raise UnsupportedCombination(f"year {term.comparison.value} {term.low}")
        return self._year(use, relation, term.low)

    @staticmethod
    def _year(use: int, relation: int, year: int) -> Term:
        return Term(str(year), (_a(1, use), _a(2, relation), _a(4, 109)))

    def scan_term(self, plan: ScanPlan) -> Term:
        """The start term of a scan: words, or whole fields (complete, 6=3)."""
        attrs = [_a(1, self.use(plan.index))]
        if plan.whole_field:
            attrs += [_a(4, 1), _a(6, 3)]
        return Term(plan.text, tuple(attrs))

    @staticmethod
    def sort_use(field: SortField) -> int:
        """The Use attribute a sort key is sent with."""
        use = SORT_USES.get(field)
        if use is None:
            raise UnsupportedSort(str(getattr(field, "value", field)))
        return use
