# -*- test-case-name: tests.gateway.test_upstream_sru_cql -*-
"""A domain query plan written as CQL for an upstream SRU server.

Pure: a :data:`~gateway.domain.query.Plan` and the server's index names in, CQL text out. The
tree is built with :mod:`protocols.sru.cql`'s nodes and written by its ``to_cql``, so terms are
quoted the way CQL reads them back. What the server cannot be asked (an index it has no name
for, a regular expression, words anchored to the start of a field) raises the domain error the
services map to a diagnostic, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.domain.catalogue import (
    ResultSetUnknown,
    UnsupportedCombination,
    UnsupportedIndex,
    UnsupportedTruncation,
)
from gateway.domain.query import (
    YEAR_INDEX,
    Comparison,
    IdentifierTerm,
    Operator,
    Plan,
    SetTerm,
    Truncation,
    WordTerm,
    YearTerm,
)
from protocols.sru.cql import Boolean, BooleanNode, Query, Relation, SearchClause, to_cql

__all__ = ["DEFAULT_INDEXES", "QueryText", "scan_clause", "write_cql"]

DEFAULT_INDEXES: Mapping[str, str] = {
    "title": "dc.title",
    "author": "dc.creator",
    "personal": "bath.personalName",
    "corporate": "bath.corporateName",
    "conference": "bath.conferenceName",
    "subject": "dc.subject",
    "publisher": "dc.publisher",
    "any": "cql.serverChoice",
    "anywhere": "cql.serverChoice",
    "isbn": "bath.isbn",
    "issn": "bath.issn",
    "local_id": "rec.id",
    "language": "dc.language",
    "standard_identifier": "dc.identifier",
    YEAR_INDEX: "dc.date",
}
"""Domain index -> CQL index in the standard context sets (dc, bath, rec, cql), the names
YAZ/Zebra-based SRU servers (Koha's among them) map out of the box. Indexes without a standard
name (``series``, ``lccn``, ``oclc``) are searched only when the configuration names them."""

_MASK_CHARACTERS = "*?^\\"
_OPERATORS = {Operator.AND: "and", Operator.OR: "or", Operator.AND_NOT: "not"}


def _escape(word: str) -> str:
    """A word with CQL's masking characters taken literally."""
    return "".join("\\" + c if c in _MASK_CHARACTERS else c for c in word)


def _masked_word(word: str, truncation: Truncation) -> str:
    """One word with the plan's truncation written as CQL masks (``*`` any, ``?`` one)."""
    if truncation is Truncation.REGEX:
        raise UnsupportedTruncation("regular expressions cannot be written in CQL")
    if truncation is Truncation.HASH_MASK:
        return "*".join(_escape(part) for part in word.split("#"))
    if truncation is Truncation.Z3958_MASK:
        out = []
        for c in word:
            out.append("*" if c == "?" else "?" if c == "#" else _escape(c))
        return "".join(out)
    text = _escape(word)
    if truncation in (Truncation.LEFT, Truncation.BOTH):
        text = "*" + text
    if truncation in (Truncation.RIGHT, Truncation.BOTH):
        text = text + "*"
    return text


def _index(indexes: Mapping[str, str], name: str) -> str:
    cql_name = indexes.get(name)
    if not cql_name:
        raise UnsupportedIndex(f"the upstream SRU server has no index for {name!r}")
    return cql_name


def _words(term: WordTerm, indexes: Mapping[str, str], phrase_relation: str) -> Query:
    index = _index(indexes, term.index)
    if term.first_in_field:
        raise UnsupportedCombination("words anchored to the start of a field cannot be "
                                     "written in CQL for this server")
    words = term.text.split()
    if not words:
        raise UnsupportedCombination("an empty term")
    text = " ".join(_masked_word(w, term.truncation) for w in words)
    if term.complete:
        return SearchClause(text, index, Relation("exact"))
    if term.phrase and len(words) > 1:
        return SearchClause(text, index, Relation(phrase_relation))
    return SearchClause(text, index, Relation("all"))


def _identifier(term: IdentifierTerm, indexes: Mapping[str, str]) -> Query:
    index = _index(indexes, term.index)
    text = _escape(term.text.strip()) + ("*" if term.right_truncated else "")
    return SearchClause(text, index, Relation("="))


def _year(term: YearTerm, indexes: Mapping[str, str]) -> Query:
    index = _index(indexes, YEAR_INDEX)
    if term.comparison is Comparison.WITHIN:
        return BooleanNode(SearchClause(str(term.low), index, Relation(">=")), Boolean("and"),
                           SearchClause(str(term.high), index, Relation("<=")))
    return SearchClause(str(term.low), index, Relation(term.comparison.value))


def _tree(plan: Plan, indexes: Mapping[str, str], phrase_relation: str) -> Query:
    if isinstance(plan, WordTerm):
        return _words(plan, indexes, phrase_relation)
    if isinstance(plan, IdentifierTerm):
        return _identifier(plan, indexes)
    if isinstance(plan, YearTerm):
        return _year(plan, indexes)
    if isinstance(plan, SetTerm):
        query = getattr(plan.result_set, "query", None)
        if not isinstance(query, QueryText):
            raise ResultSetUnknown(plan.name)
        return query.tree
    return BooleanNode(_tree(plan.left, indexes, phrase_relation),
                       Boolean(_OPERATORS[plan.operator]),
                       _tree(plan.right, indexes, phrase_relation))


class QueryText:
    """A written query: its CQL tree (reused when a later plan names its result set)."""

    def __init__(self, tree: Query) -> None:
        self.tree = tree
        self.text = to_cql(tree)

    def __str__(self) -> str:
        return self.text


def write_cql(plan: Plan, indexes: Mapping[str, str], *, phrase_relation: str = "=") -> QueryText:
    """The CQL query for ``plan`` with the server's index names (domain index -> CQL index).

    ``phrase_relation`` is how the server is asked for adjacent words (``=`` in CQL 1.1,
    ``adj`` from 1.2). Raises :class:`UnsupportedIndex` and the other domain errors for what
    cannot be asked; a :class:`SetTerm` must name a result set this writer made.
    """
    return QueryText(_tree(plan, indexes, phrase_relation))


def scan_clause(index: str, text: str, indexes: Mapping[str, str]) -> str:
    """The ``scanClause`` for browsing domain ``index`` from ``text`` on."""
    return to_cql(SearchClause(text, _index(indexes, index), Relation("=")))


