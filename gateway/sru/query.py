# -*- test-case-name: tests.gateway.test_sru_query -*-
"""What a CQL query means here: our CQL profile, and resolved CQL read into a domain plan.

:data:`PROFILE` declares what the SRU listener accepts (and what explain announces): the
``cql``, ``dc``, ``bath`` and ``rec`` context sets (plus ``interlend`` for the OCLC number)
mapped to the catalogue's indexes (:mod:`gateway.domain.query`). :func:`plan_cql` turns a query
that :func:`protocols.sru.profile.resolve` accepted into a :data:`~gateway.domain.query.Plan`,
the same plan a Z39.50 query gives, so both protocols find the same records.

Relations on word indexes: ``=`` and ``all`` all words (a word list, as Z39.50's default),
``any`` any word, ``adj`` the words as a phrase, ``==`` (and ``exact``) the whole field where the
index has whole fields (title, author, subject), else a phrase. ``*`` and ``?`` mask: one ``*`` at
either end is truncation, others become Z39.58 masks (``?`` any characters, ``#`` one). ``^``
anchors at the start of the field (both ends: the whole field). Dates take ``<``, ``<=``, ``=``,
``>=``, ``>``, ``<>`` and ``within`` (``"1990 1999"``); ``199*`` is 1990-1999. Identifiers take
``=``, ``==`` and ``exact``, right-truncated with a final ``*``. ``not`` is AND-NOT.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.domain.catalogue import SortField, SortKey
from gateway.domain.query import (
    IDENTIFIER_INDEXES,
    WHOLE_FIELD_INDEXES,
    YEAR_INDEX,
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
from protocols.sru.cql import BooleanNode, CQLQuery, Mask, Query, SearchClause, masked
from protocols.sru.diagnostics import Diagnostic, SRUError
from protocols.sru.profile import WELL_KNOWN_CONTEXT_SETS, CQLProfile, IndexCapability

INTERLEND_CONTEXT_SET = "info:srw/cql-context-set/16/interlend-1.0"
"""Our own context set, for what no public one names (the OCLC number)."""

INDEX_MAP: dict[str, str] = {
    "cql.serverchoice": "any",
    "cql.anywhere": "anywhere",
    "cql.keywords": "any",
    "dc.title": "title",
    "dc.creator": "author",
    "dc.contributor": "author",
    "dc.subject": "subject",
    "dc.publisher": "publisher",
    "dc.identifier": "standard_identifier",
    "dc.language": "language",
    "dc.date": YEAR_INDEX,
    "bath.title": "title",
    "bath.keytitle": "title",
    "bath.seriestitle": "series",
    "bath.name": "author",
    "bath.author": "author",
    "bath.personalname": "personal",
    "bath.corporatename": "corporate",
    "bath.conferencename": "conference",
    "bath.subject": "subject",
    "bath.topicalsubject": "subject",
    "bath.isbn": "isbn",
    "bath.issn": "issn",
    "bath.lccn": "lccn",
    "bath.standardidentifier": "standard_identifier",
    "bath.localnumber": "local_id",
    "bath.publisher": "publisher",
    "bath.date": YEAR_INDEX,
    "rec.id": "local_id",
    "rec.identifier": "local_id",
    "interlend.oclc": "oclc",
    "interlend.localid": "local_id",
}
"""Canonical CQL index (lower case) → the catalogue's index."""

SORT_FIELDS: dict[str, SortField] = {
    "dc.title": SortField.TITLE, "bath.title": SortField.TITLE,
    "dc.creator": SortField.AUTHOR, "bath.name": SortField.AUTHOR,
    "bath.author": SortField.AUTHOR,
    "dc.date": SortField.YEAR, "bath.date": SortField.YEAR,
    "rec.id": SortField.LOCAL_ID, "interlend.localid": SortField.LOCAL_ID,
}
"""Sortable CQL indexes → the catalogue's sort fields."""

SCANNABLE = frozenset({"title", "author", "subject", "any", "isbn", "issn", "lccn", "oclc",
                       "local_id", "standard_identifier", YEAR_INDEX})

_WORD_RELATIONS = frozenset({"=", "==", "all", "any", "adj", "exact"})
_IDENTIFIER_RELATIONS = frozenset({"=", "==", "exact"})
_DATE_RELATIONS = frozenset({"=", "<", "<=", ">", ">=", "<>", "within"})
MAX_SORT_KEYS = 3


def _capability(name: str, index: str) -> IndexCapability:
    if index == YEAR_INDEX:
        relations = _DATE_RELATIONS
    elif index in IDENTIFIER_INDEXES:
        relations = _IDENTIFIER_RELATIONS
    else:
        relations = _WORD_RELATIONS
    return IndexCapability(
        relations=relations, relation_modifiers=frozenset({"ignorecase"}),
        masking=True, anchoring=index in WHOLE_FIELD_INDEXES,
        sortable=name in SORT_FIELDS, scannable=index in SCANNABLE,
        title=name.split(".", 1)[1])


RESULT_SET_INDEX = "cql.resultsetid"
"""``cql.resultSetId = "id"``: the records of a result set kept with ``resultSetTTL``."""

PROFILE = CQLProfile(
    indexes={**{name: _capability(name, index) for name, index in INDEX_MAP.items()},
             RESULT_SET_INDEX: IndexCapability(relations=frozenset({"="}), masking=False,
                                               title="resultSetId")},
    context_sets={**WELL_KNOWN_CONTEXT_SETS, "interlend": INTERLEND_CONTEXT_SET},
    max_sort_keys=MAX_SORT_KEYS,
)
"""Everything a search may use; :func:`protocols.sru.profile.resolve` enforces it."""


# -- clauses -------------------------------------------------------------------------------------

def _mask_text(parts: tuple[str | Mask, ...]) -> str:
    """A masked term in Z39.58 form (``?`` any characters, ``#`` one)."""
    return "".join("?" if part is Mask.ANY else "#" if part is Mask.ONE else part
                   for part in parts)


def plan_clause(clause: SearchClause) -> Plan:
    """One resolved search clause as a plan (SRUError for what the index cannot take)."""
    assert clause.index is not None and clause.relation is not None
    index = INDEX_MAP[clause.index]
    relation = clause.relation.name
    term = masked(clause.term)
    if index == YEAR_INDEX:
        return _plan_date(term.literal if term.is_plain else clause.term, relation, term.is_plain)
    if index in IDENTIFIER_INDEXES:
        return _plan_identifier(index, clause.term, term.parts)
    if not term.literal.strip():
        raise SRUError(Diagnostic.EMPTY_TERM_UNSUPPORTED if term.is_plain
                       else Diagnostic.MASKED_WORDS_TOO_SHORT, clause.index)
    complete = relation in ("==", "exact") and index in WHOLE_FIELD_INDEXES
    phrase = relation in ("adj", "==", "exact")
    first = term.anchored_start
    if term.anchored_start and term.anchored_end:
        complete = True
    if relation == "any" or (relation in ("=", "all") and not term.is_plain):
        words = term_words(clause.term)
        if len(words) > 1:
            operator = Operator.OR if relation == "any" else Operator.AND
            plans = [_word(index, masked(word).parts, False, False, False) for word in words]
            result: Plan = plans[0]
            for plan in plans[1:]:
                result = Combine(operator, result, plan)
            return result
    return _word(index, term.parts, phrase, first, complete)


def term_words(text: str) -> list[str]:
    """The whitespace-separated words of a term, anchors dropped."""
    return [word for word in text.strip("^").split() if word]


def _word(index: str, parts: tuple[str | Mask, ...], phrase: bool, first: bool,
          complete: bool) -> WordTerm:
    plain = all(isinstance(part, str) for part in parts)
    if plain:
        return WordTerm(index, "".join(str(p) for p in parts), phrase=phrase,
                        first_in_field=first, complete=complete)
    probe = masked("".join("*" if p is Mask.ANY else "?" if p is Mask.ONE
                           else _escaped(str(p)) for p in parts))
    truncated = probe.truncation()
    if truncated is not None and truncated[0]:
        text, left, right = truncated
        kind = {(False, True): Truncation.RIGHT, (True, False): Truncation.LEFT,
                (True, True): Truncation.BOTH}[(left, right)]
        return WordTerm(index, text, phrase=phrase, first_in_field=first,
                        truncation=kind, complete=complete)
    if not "".join(str(p) for p in parts if isinstance(p, str)).strip():
        raise SRUError(Diagnostic.MASKED_WORDS_TOO_SHORT, _mask_text(parts))
    return WordTerm(index, _mask_text(parts), phrase=phrase, first_in_field=first,
                    truncation=Truncation.Z3958_MASK, complete=complete)


def _escaped(text: str) -> str:
    return re.sub(r'([*?^\\])', r"\\\1", text)


def _plan_identifier(index: str, text: str, parts: tuple[str | Mask, ...]) -> IdentifierTerm:
    if all(isinstance(part, str) for part in parts):
        value = "".join(str(p) for p in parts).strip()
        if not value:
            raise SRUError(Diagnostic.EMPTY_TERM_UNSUPPORTED, index)
        return IdentifierTerm(index, value)
    if parts[-1] is Mask.ANY and all(isinstance(part, str) for part in parts[:-1]) \
            and len(parts) > 1:
        return IdentifierTerm(index, "".join(str(p) for p in parts[:-1]).strip(), True)
    raise SRUError(Diagnostic.MASKING_CHARACTER_IN_UNSUPPORTED_POSITION, text)


_YEAR = re.compile(r"^\s*(\d{1,4})\s*$")
_YEAR_IN_TEXT = re.compile(r"^\s*\D*(\d{4})")
_YEAR_PREFIX = re.compile(r"^\s*(\d{1,4})\*\s*$")
_COMPARISONS = {"=": Comparison.EQUAL, "<": Comparison.LESS, "<=": Comparison.LESS_OR_EQUAL,
                ">": Comparison.GREATER, ">=": Comparison.GREATER_OR_EQUAL,
                "<>": Comparison.NOT_EQUAL}


def _plan_date(text: str, relation: str, plain: bool) -> YearTerm:
    if relation == "within":
        years = re.findall(r"\d{1,4}", text)
        if len(years) != 2 or not plain:
            raise SRUError(Diagnostic.UNSUPPORTED_COMBINATION_OF_RELATION_AND_TERM, text)
        low, high = sorted(int(year) for year in years)
        return YearTerm(Comparison.WITHIN, low, high)
    if not plain:
        prefix = _YEAR_PREFIX.match(text)
        if prefix is None or relation != "=":
            raise SRUError(Diagnostic.MASKING_CHARACTER_IN_UNSUPPORTED_POSITION, text)
        digits = prefix.group(1)
        scale = 10 ** (4 - len(digits))
        return YearTerm(Comparison.WITHIN, int(digits) * scale, int(digits) * scale + scale - 1)
    single = _YEAR.match(text) or _YEAR_IN_TEXT.match(text)
    if single is None:
        raise SRUError(Diagnostic.TERM_IN_INVALID_FORMAT, text)
    year = int(single.group(1))
    return YearTerm(_COMPARISONS[relation], year, year)


# -- whole queries -------------------------------------------------------------------------------

_OPERATORS = {"and": Operator.AND, "or": Operator.OR, "not": Operator.AND_NOT}


def plan_cql(query: Query, result_sets: Mapping[str, object] | None = None) -> Plan:
    """A resolved query tree as a plan, walked without recursion down the left spine.

    ``result_sets`` maps the ids of result sets kept for the client to the catalogue's
    handles, for ``cql.resultSetId = id`` (diagnostic 51 for an id not kept)."""
    sets = result_sets or {}
    spine: list[BooleanNode] = []
    node = query
    while isinstance(node, BooleanNode):
        spine.append(node)
        node = node.left
    if not isinstance(node, SearchClause):
        raise SRUError(Diagnostic.QUERY_SYNTAX_ERROR, "unresolved query")
    result = _plan_leaf(node, sets)
    for boolean in reversed(spine):
        operator = _OPERATORS.get(boolean.operator.name)
        if operator is None:
            raise SRUError(Diagnostic.UNSUPPORTED_BOOLEAN_OPERATOR, boolean.operator.name)
        result = Combine(operator, result, plan_cql(boolean.right, sets))
    return result


def _plan_leaf(clause: SearchClause, result_sets: Mapping[str, object]) -> Plan:
    if clause.index == RESULT_SET_INDEX:
        handle = result_sets.get(clause.term)
        if handle is None:
            raise SRUError(Diagnostic.RESULT_SET_DOES_NOT_EXIST, clause.term)
        return SetTerm(clause.term, handle)
    return plan_clause(clause)


def sort_keys(query: CQLQuery) -> list[SortKey]:
    """The resolved query's sort keys as the catalogue's."""
    keys = []
    for key in query.sort_keys:
        field = SORT_FIELDS.get(key.index)
        if field is None:
            raise SRUError(Diagnostic.UNSUPPORTED_PATH_FOR_SORT, key.index)
        if any(m.name == "respectcase" for m in key.modifiers):
            raise SRUError(Diagnostic.UNSUPPORTED_CASE, "respectCase")
        descending = any(m.name == "descending" for m in key.modifiers)
        keys.append(SortKey(field, descending))
    return keys


def plan_scan(clause: SearchClause) -> ScanPlan:
    """A resolved scan clause as a scan plan (``==``/``exact``: whole fields)."""
    assert clause.index is not None and clause.relation is not None
    index = INDEX_MAP[clause.index]
    if index not in SCANNABLE:
        raise SRUError(Diagnostic.UNSUPPORTED_INDEX, f"{clause.index} cannot be scanned")
    whole = clause.relation.name in ("==", "exact") and index in WHOLE_FIELD_INDEXES
    return ScanPlan(index, masked(clause.term).literal, whole_field=whole)


__all__ = ["INDEX_MAP", "INTERLEND_CONTEXT_SET", "PROFILE", "plan_clause", "plan_cql",
           "plan_scan", "sort_keys"]
