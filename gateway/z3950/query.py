# -*- test-case-name: tests.gateway.test_z3950_query,tests.gateway.test_catalogue -*-
"""Bib-1 type-1 (RPN) queries, scan terms and sort keys read into protocol-free plans.

What a Z39.50 request means here: its Bib-1 attributes are checked and turned into a
:mod:`gateway.domain.query` plan without touching any catalogue, so a bad attribute fails at
once with its diagnostic (:class:`~gateway.z3950.diagnostics.Bib1Error`, chosen by
:class:`~protocols.z3950.diagnostics.Bib1` name). What a plan needs of a particular catalogue
(an index it lacks, a truncation inside a phrase) is the catalogue's to refuse.

Bib-1 support (anything else is the official diagnostic, with the value as addinfo):

======================  =======================================================================
Use (1)                 1, 1002, 1003 every name (``author``); 1004 personal, 1005 (2)
                        corporate, 1006 (3) conference names; 4 title; 5 series; 21 subject;
                        1018 publisher; 1016 any (words in every index, plus an exact
                        identifier lookup), 1035 anywhere (words only); 7 ISBN; 8 ISSN; 9 LCCN;
                        12 local number; 54 language; 1007 standard identifier (ISBN, ISSN,
                        OCLC, local); 1211 OCLC; 30, 31 year. Absent: 1016. Names such as
                        ``title`` also work. Other → 114
Relation (2)            3 (default) and 102 everywhere; 1, 2, 4, 5, 6 on 1=31 → 117 otherwise
Position (3)            3 any (default); 1 and 2 first in field → 119 otherwise
Structure (4)           text: 6 word list (default: words ANDed), 2 word, 101/102/105/106 as
                        word list; 1 phrase, 107/108/109/110 phrase; 3 key = whole field.
                        1=31: 4 year (default), 5, 100, 1, 2, 3, 6, 108, 109 → 118 otherwise
Truncation (5)          100 none (default); 1 right (years: ``199`` is 1990-1999); 2 left,
                        3 both, 101 ``#`` = any characters, 104 ``?`` any characters and ``#``
                        one, 102/103 regular expression per word (words only) → 120 otherwise
Completeness (6)        1 (default); 2 and 3 whole field → 122 otherwise
Combinations            expansion (2, 3, 101-104) with a phrase, position 1 or a whole field
                        → 123; types other than 1-6 → 113; another attribute set → 121
Operators               at most ``max_operators`` (``z3950.max_query_operators``) → 6
======================  =======================================================================

Several words with no structure attribute are a word list (all words, in any order), where
Zebra searches a phrase: brokers send author and title words in varying orders, and
``@attr 4=1`` asks for a phrase.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

from gateway.domain.catalogue import SortField, SortKey
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
from gateway.domain.text import fold, tokenize
from gateway.z3950.diagnostics import Bib1Error
from protocols.z3950 import oids
from protocols.z3950.codec import SortKeyInfo
from protocols.z3950.diagnostics import Bib1
from protocols.z3950.pqf import And, AndNot, Attribute, Node, Or, Query, ResultSetRef, Term

MAX_OPERATORS = 1000
"""Most boolean operators in one query (else diagnostic 6); ``z3950.max_query_operators``."""

# -- access points -----------------------------------------------------------------------------

WORD_INDEXES: dict[int, str] = {
    1: "author",        # personal name (every name, as before)
    2: "corporate",     # corporate name
    3: "conference",    # conference name
    4: "title",         # every title: 245, variant, uniform, added, series
    5: "series",        # title-series: 440, 490, 800-830
    21: "subject",
    1002: "author",     # name
    1003: "author",     # author: 1XX, 7XX, 8XX names and 245 $c
    1004: "personal",   # author-name personal: 100, 700, 800
    1005: "corporate",  # author-name corporate: 110, 710, 810
    1006: "conference",  # author-name conference: 111, 711, 811
    1018: "publisher",  # 260/264 $b
    1016: "any",        # every word index, and the identifiers
    1035: "anywhere",   # every word index
}
"""Use attribute → word index."""

IDENTIFIER_INDEXES: dict[int, str] = {
    7: "isbn",
    8: "issn",
    9: "lccn",
    12: "local_id",
    54: "language",
    1007: "standard_identifier",
    1211: "oclc",
}
"""Use attribute → identifier index."""

DATE_USES = frozenset({30, 31})

USE_NAMES: dict[str, int] = {
    "personal-name": 1, "title": 4, "isbn": 7, "issn": 8, "local-number": 12,
    "subject-heading": 21, "subject": 21, "date-of-publication": 31, "date": 31, "author": 1003,
    "author-name-personal": 1004, "identifier-standard": 1007, "any": 1016,
    "oclc-number": 1211, "corporate-name": 2, "conference-name": 3, "title-series": 5,
    "lc-card-number": 9, "lccn": 9, "code-language": 54, "name": 1002,
    "author-name-corporate": 1005, "author-name-conference": 1006, "publisher": 1018,
    "anywhere": 1035,
}
"""String Use values accepted (YAZ allows ``@attr 1=title``), case-insensitive."""

SUPPORTED_USES = frozenset(WORD_INDEXES) | frozenset(IDENTIFIER_INDEXES) | DATE_USES

# Bib-1 attribute types.
USE, RELATION, POSITION, STRUCTURE, TRUNCATION, COMPLETENESS = 1, 2, 3, 4, 5, 6

TEXT_STRUCTURES = frozenset({1, 2, 3, 6, 101, 102, 105, 106, 107, 108, 109, 110})
DATE_STRUCTURES = frozenset({1, 2, 3, 4, 5, 6, 100, 101, 105, 108, 109, 110})
PHRASE_STRUCTURES = frozenset({1, 3, 107, 108, 109, 110})
"""Structures whose words must be adjacent (phrase); the others AND their words."""

TRUNCATIONS: dict[int, Truncation] = {
    100: Truncation.NONE, 1: Truncation.RIGHT, 2: Truncation.LEFT, 3: Truncation.BOTH,
    101: Truncation.HASH_MASK, 102: Truncation.REGEX, 103: Truncation.REGEX,
    104: Truncation.Z3958_MASK,
}
"""Truncation attribute → how words extend."""

_POSITIONS = frozenset({1, 2, 3})
_COMPLETENESSES = frozenset({1, 2, 3})
_TRUNCATION_CODES = frozenset(TRUNCATIONS)
"""The values :func:`plan_term` allows, built once (not per term)."""

# Diagnostics and truncations plan_term names for every term, read once: an Enum member read
# through its class costs more than the rest of a bounded attribute check.
_BAD_RELATION = Bib1.UNSUPPORTED_RELATION_ATTRIBUTE
_BAD_POSITION = Bib1.UNSUPPORTED_POSITION_ATTRIBUTE
_BAD_COMPLETENESS = Bib1.UNSUPPORTED_COMPLETENESS_ATTRIBUTE
_BAD_TRUNCATION = Bib1.UNSUPPORTED_TRUNCATION_ATTRIBUTE
_BAD_STRUCTURE = Bib1.UNSUPPORTED_STRUCTURE_ATTRIBUTE
_EXPANDING = frozenset(t for t in Truncation if t.expands)

_COMPARISONS = {1: Comparison.LESS, 2: Comparison.LESS_OR_EQUAL, 3: Comparison.EQUAL,
                4: Comparison.GREATER_OR_EQUAL, 5: Comparison.GREATER, 6: Comparison.NOT_EQUAL}
_OPERATORS = {And: Operator.AND, Or: Operator.OR, AndNot: Operator.AND_NOT}


# -- attributes -------------------------------------------------------------------------------

def _numeric(term: Term, type_: int, code: Bib1) -> int | None:
    value = term.attribute(type_)
    if value is None:
        return None
    if isinstance(value, int):
        return value
    raise Bib1Error(code, str(value))


def check_attributes(term: Term, attribute_set: oids.Oid) -> None:
    """Only bib-1 attributes of types 1-6 are understood (121, 113 otherwise)."""
    default = tuple(attribute_set)
    for attr in term.attributes:
        attrset = tuple(attr.attrset) if attr.attrset is not None else default
        if attrset != oids.BIB1_ATTRSET:
            raise Bib1Error(Bib1.UNSUPPORTED_ATTRIBUTE_SET, oids.oid_to_dotted(attrset))
        if not 1 <= attr.type <= 6:
            raise Bib1Error(Bib1.UNSUPPORTED_ATTRIBUTE_TYPE, str(attr.type))


def use_of(term: Term) -> int:
    """The term's Use attribute as a number (default 1016, any); 114 when unsupported."""
    value = term.attribute(USE)
    if value is None:
        return 1016
    if isinstance(value, str):
        use = USE_NAMES.get(value.strip().lower())
        if use is None:
            raise Bib1Error(Bib1.UNSUPPORTED_USE_ATTRIBUTE, value)
        return use
    if isinstance(value, tuple):
        raise Bib1Error(Bib1.UNSUPPORTED_USE_ATTRIBUTE, ",".join(str(v) for v in value))
    if value not in SUPPORTED_USES:
        raise Bib1Error(Bib1.UNSUPPORTED_USE_ATTRIBUTE, str(value))
    return value


def numeric_attribute(term: Term, type_: int, allowed: frozenset[int], code: Bib1,
                      default: int | None = None) -> int | None:
    """The term's attribute of ``type_`` (or ``default``); diagnostic ``code`` if not allowed."""
    value = _numeric(term, type_, code)
    if value is None:
        return default
    if value not in allowed:
        raise Bib1Error(code, str(value))
    return value


# -- search terms -----------------------------------------------------------------------------

def plan_term(term: Term, attribute_set: oids.Oid) -> Plan:
    """Check a term's bib-1 attributes and say what to search."""
    check_attributes(term, attribute_set)
    use = use_of(term)
    relation = _numeric(term, RELATION, _BAD_RELATION)
    position = numeric_attribute(term, POSITION, _POSITIONS, _BAD_POSITION, 3)
    completeness = numeric_attribute(term, COMPLETENESS, _COMPLETENESSES, _BAD_COMPLETENESS, 1)
    truncation = numeric_attribute(term, TRUNCATION, _TRUNCATION_CODES, _BAD_TRUNCATION, 100)
    value = term.value
    if use in DATE_USES:
        numeric_attribute(term, STRUCTURE, DATE_STRUCTURES, _BAD_STRUCTURE, 4)
        if truncation == 1 and relation in (None, 3):
            return _plan_year_prefix(value)
        if truncation != 100:
            raise Bib1Error(_BAD_TRUNCATION, str(truncation))
        return _plan_year(value, 3 if relation is None else relation)
    if relation not in (None, 3, 102):
        raise Bib1Error(_BAD_RELATION, str(relation))
    if use in IDENTIFIER_INDEXES:
        numeric_attribute(term, STRUCTURE, TEXT_STRUCTURES, _BAD_STRUCTURE, 3)
        if truncation not in (100, 1):
            raise Bib1Error(_BAD_TRUNCATION, str(truncation))
        return IdentifierTerm(IDENTIFIER_INDEXES[use], value.strip(), truncation == 1)
    structure = numeric_attribute(term, STRUCTURE, TEXT_STRUCTURES, _BAD_STRUCTURE, 6)
    word = WordTerm(
        index=WORD_INDEXES[use],
        text=value,
        phrase=structure in PHRASE_STRUCTURES,
        first_in_field=position in (1, 2),
        truncation=TRUNCATIONS[truncation if truncation is not None else 100],
        complete=completeness in (2, 3) or structure == 3,
    )
    if word.truncation in _EXPANDING and (word.complete or word.first_in_field
                                          or (word.phrase and _several_words(word))):
        # Left truncation and masking stand for alternative words: a phrase, a position or
        # a whole field cannot hold them.
        raise Bib1Error(Bib1.UNSUPPORTED_ATTRIBUTE_COMBINATION,
                        f"truncation {truncation} with a phrase, position or complete field")
    return word


def _several_words(word: WordTerm) -> bool:
    """Whether the term holds more than one word (a regular expression: one per word)."""
    if word.truncation is Truncation.REGEX:
        return len(fold(word.text).split()) > 1
    masks = word.truncation in (Truncation.HASH_MASK, Truncation.Z3958_MASK)
    return len(tokenize(word.text, keep_masks=masks)) > 1


_YEAR = re.compile(r"^\s*(\d{1,4})\s*$")
_YEAR_RANGE = re.compile(r"^\s*(\d{1,4})\s*-\s*(\d{1,4})\s*$")
_YEAR_IN_TEXT = re.compile(r"^\s*\D*(\d{4})")


def _plan_year_prefix(value: str) -> YearTerm:
    """Right truncation on a year: ``199`` is 1990-1999 (as a word index of years would)."""
    digits = value.strip()
    if not digits.isdigit() or len(digits) > 4:
        raise Bib1Error(Bib1.ILLEGAL_TERM_VALUE, value)
    scale = 10 ** (4 - len(digits))
    return YearTerm(Comparison.WITHIN, int(digits) * scale, int(digits) * scale + scale - 1)


def _plan_year(value: str, relation: int) -> YearTerm:
    comparison = _COMPARISONS.get(relation)
    if comparison is None:
        raise Bib1Error(Bib1.UNSUPPORTED_RELATION_ATTRIBUTE, str(relation))
    span = _YEAR_RANGE.match(value)
    if span is not None and comparison is Comparison.EQUAL:
        low, high = sorted((int(span.group(1)), int(span.group(2))))
        return YearTerm(Comparison.WITHIN, low, high)
    single = _YEAR.match(value) or _YEAR_IN_TEXT.match(value)
    if single is None:
        raise Bib1Error(Bib1.ILLEGAL_TERM_VALUE, value)
    year = int(single.group(1))
    return YearTerm(comparison, year, year)


# -- whole queries ----------------------------------------------------------------------------

def plan_query(query: Query, result_sets: Mapping[str, object], *,
               max_operators: int = MAX_OPERATORS) -> Plan:
    """Plan the whole query; raises :class:`Bib1Error` for anything unsupported.

    ``result_sets`` maps each result set name to the catalogue's handle for it (``@set``).
    A query of more than ``max_operators`` boolean operators is refused with diagnostic 6. The
    tree is walked without recursion, so its shape (a left-deep chain of brokers' ORs, say)
    does not matter.
    """
    if tuple(query.attribute_set) != oids.BIB1_ATTRSET:
        raise Bib1Error(Bib1.UNSUPPORTED_ATTRIBUTE_SET,
                        oids.oid_to_dotted(tuple(query.attribute_set)))
    operators = 0
    pending: list[Node] = [query.root]
    while pending:
        node = pending.pop()
        if isinstance(node, (And, Or, AndNot)):
            operators += 1
            if operators > max_operators:
                raise Bib1Error(Bib1.TOO_MANY_BOOLEAN_OPERATORS,
                                f"more than {max_operators} boolean operators")
            pending += (node.left, node.right)
    return _plan_tree(query.root, query.attribute_set, result_sets)


def _plan_tree(root: Node, attribute_set: oids.Oid, result_sets: Mapping[str, object]) -> Plan:
    """Plan every node, operands before their operator, left to right (the first bad term
    from the left gives the diagnostic)."""
    planned: list[Plan] = []
    pending: list[tuple[Node, bool]] = [(root, False)]
    while pending:
        node, operands_done = pending.pop()
        if isinstance(node, Term):
            planned.append(plan_term(node, attribute_set))
        elif isinstance(node, ResultSetRef):
            if node.name not in result_sets:
                raise Bib1Error(Bib1.RESULT_SET_DOES_NOT_EXIST, node.name)
            planned.append(SetTerm(node.name, result_sets[node.name]))
        elif type(node) not in _OPERATORS:
            raise Bib1Error(Bib1.MALFORMED_QUERY, type(node).__name__)
        elif operands_done:
            right = planned.pop()
            planned[-1] = Combine(_OPERATORS[type(node)], planned[-1], right)
        else:
            assert isinstance(node, (And, Or, AndNot))
            pending += ((node, True), (node.right, False), (node.left, False))
    return planned[0]


def check_terms(node: Node, max_length: int, max_words: int | None) -> None:
    """Refuse a query (or scan term) whose terms are longer than ``max_length`` characters
    (Bib-1 11) or hold more than ``max_words`` words (Bib-1 5), before any planning: a term's
    cost in a word index grows with both."""
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, (And, Or, AndNot)):
            pending += (item.left, item.right)
        elif isinstance(item, Term):
            if len(item.value) > max_length:
                raise Bib1Error(Bib1.TERM_TOO_LONG,
                                f"a term is longer than {max_length} characters")
            if max_words is not None and _more_words(item.value, max_words):
                raise Bib1Error(Bib1.TOO_MANY_ARGUMENT_WORDS,
                                f"a term has more than {max_words} words")


_WORD = re.compile(r"[^\W_]+")


def _more_words(text: str, limit: int) -> bool:
    """Whether ``text`` holds more than ``limit`` words (counted up to ``limit + 1`` only)."""
    if len(text) <= 2 * limit:  # words need a separator between them: at most ⌈len/2⌉ of them
        return False
    return next(itertools.islice(_WORD.finditer(text), limit, None), None) is not None


# -- scan -------------------------------------------------------------------------------------

def plan_scan(term: Term, attribute_set: oids.Oid = oids.BIB1_ATTRSET) -> ScanPlan:
    """Check the scan term's attributes and say what to browse (114 for a use not listed)."""
    check_attributes(term, attribute_set)
    use = use_of(term)
    if use in IDENTIFIER_INDEXES:
        return ScanPlan(IDENTIFIER_INDEXES[use], term.value)
    if use in DATE_USES:
        return ScanPlan("year", term.value)
    if use not in WORD_INDEXES:
        raise Bib1Error(Bib1.UNSUPPORTED_USE_ATTRIBUTE, str(term.attribute(USE)))
    index = WORD_INDEXES[use]
    structure = numeric_attribute(term, STRUCTURE, TEXT_STRUCTURES,
                                  Bib1.UNSUPPORTED_STRUCTURE_ATTRIBUTE)
    completeness = numeric_attribute(term, COMPLETENESS, frozenset({1, 2, 3}),
                                     Bib1.UNSUPPORTED_COMPLETENESS_ATTRIBUTE)
    whole = structure in PHRASE_STRUCTURES or completeness in (2, 3)
    return ScanPlan(index, term.value, whole_field=whole and index in ("title", "author"))


# -- sort -------------------------------------------------------------------------------------

SORT_FIELDS = {"title": SortField.TITLE, "author": SortField.AUTHOR, "date": SortField.YEAR,
               "year": SortField.YEAR, "date-of-publication": SortField.YEAR,
               "local-number": SortField.LOCAL_ID}
"""Sort field names (``sortfield``) accepted."""

SORT_USES = {4: SortField.TITLE, 1: SortField.AUTHOR, 1003: SortField.AUTHOR,
             1004: SortField.AUTHOR, 31: SortField.YEAR, 12: SortField.LOCAL_ID}
"""Use attributes a sort key may name."""


def sort_keys(keys: Sequence[SortKeyInfo]) -> list[SortKey]:
    """The sort keys of a Sort request: no key or an unknown one → 207 (cannot sort according
    to sequence); a relation other than ascending (0) or descending (1) → 214."""
    if not keys:
        raise Bib1Error(Bib1.CANNOT_SORT, "no sort keys")
    return [SortKey(_sort_field(key), _sort_descending(key)) for key in keys]


def _sort_field(key: SortKeyInfo) -> SortField:
    if key.sort_field is not None:
        text = key.sort_field.strip().lower()
        if text.startswith("1="):
            try:
                return _sort_use(Term("", (Attribute(None, USE, int(text[2:])),)))
            except ValueError:
                raise Bib1Error(Bib1.CANNOT_SORT, key.sort_field) from None
        field = SORT_FIELDS.get(text)
        if field is None:
            raise Bib1Error(Bib1.CANNOT_SORT, key.sort_field)
        return field
    return _sort_use(Term("", key.attributes))


def _sort_use(term: Term) -> SortField:
    value = term.attribute(USE)
    try:
        use = use_of(term) if value is not None else None
    except Bib1Error:
        use = None
    field = SORT_USES.get(use) if use is not None else None
    if field is None:
        raise Bib1Error(Bib1.CANNOT_SORT, str(value))
    return field


def _sort_descending(key: SortKeyInfo) -> bool:
    if key.relation not in (0, 1):
        raise Bib1Error(Bib1.SORT_ILLEGAL_RELATION, str(key.relation))
    return key.relation == 1


__all__ = [
    "MAX_OPERATORS",
    "check_attributes",
    "check_terms",
    "numeric_attribute",
    "plan_query",
    "plan_scan",
    "plan_term",
    "sort_keys",
    "use_of",
]
