# -*- test-case-name: tests.gateway.test_z3950_query,tests.gateway.test_embedded_catalogue -*-
"""Query plans: what a catalogue search (or scan) asks for, free of any protocol and of SQL.

A plan is built from a Z39.50 type-1 query (:mod:`gateway.z3950.query`; later from CQL) and run
by a catalogue (:class:`gateway.domain.catalogue.ICatalogue`), which may compile it to SQL (the
embedded backend) or write it again as PQF or CQL for an upstream catalogue. Indexes are named
(:data:`WORD_INDEXES`, :data:`IDENTIFIER_INDEXES`, :data:`YEAR_INDEX`); terms keep the text as
given, because how words are folded and split is the catalogue's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

WORD_INDEXES = frozenset({
    "title", "series", "author", "personal", "corporate", "conference", "subject", "publisher",
    "any", "anywhere",
})
"""Word indexes. ``author`` holds every name; ``personal``, ``corporate`` and ``conference``
one kind of name each; ``any`` every word index plus an exact identifier lookup;
``anywhere`` every word index alone."""

IDENTIFIER_INDEXES = frozenset({
    "isbn", "issn", "lccn", "oclc", "local_id", "language", "standard_identifier",
})
"""Identifier indexes, looked up whole (or right-truncated). ``standard_identifier`` is any of
ISBN, ISSN, OCLC number and local number."""

YEAR_INDEX = "year"
"""The year of publication."""

WHOLE_FIELD_INDEXES = frozenset({"title", "author", "subject"})
"""Word indexes that can also be matched as a whole field (:attr:`WordTerm.complete`)."""


class Truncation(Enum):
    """How a term's words may be extended when matched."""

    NONE = "none"
    RIGHT = "right"              # ``comput`` matches ``computer``
    LEFT = "left"                # ``puter`` matches ``computer``
    BOTH = "both"
    HASH_MASK = "hash-mask"      # ``#`` inside a word: any characters
    Z3958_MASK = "z39.58-mask"   # ``?`` any characters, ``#`` one character (Z39.58)
    REGEX = "regex"              # every word is a regular expression

    @property
    def expands(self) -> bool:
        """Whether a word may stand for several index words other than by its prefix."""
        return self not in (Truncation.NONE, Truncation.RIGHT)


class Comparison(Enum):
    """How a year compares (the names CQL uses)."""

    LESS = "<"
    LESS_OR_EQUAL = "<="
    EQUAL = "="
    GREATER_OR_EQUAL = ">="
    GREATER = ">"
    NOT_EQUAL = "<>"
    WITHIN = "within"            # low <= year <= high


class Operator(Enum):
    """A boolean operator between two plans."""

    AND = "and"
    OR = "or"
    AND_NOT = "not"


@dataclass(frozen=True)
class WordTerm:
    """Words searched in a word index (:data:`WORD_INDEXES`)."""

    index: str
    text: str                          # the term as given
    phrase: bool = False               # the words adjacent, in order
    first_in_field: bool = False       # the words start the field
    truncation: Truncation = Truncation.NONE
    complete: bool = False             # the whole field equals the term


@dataclass(frozen=True)
class IdentifierTerm:
    """An identifier looked up in an identifier index (:data:`IDENTIFIER_INDEXES`)."""

    index: str
    text: str
    right_truncated: bool = False


@dataclass(frozen=True)
class YearTerm:
    """The year of publication compared with ``low`` (``WITHIN``: between ``low`` and
    ``high``, both included; otherwise ``high == low``)."""

    comparison: Comparison
    low: int
    high: int


@dataclass(frozen=True)
class SetTerm:
    """The members of an earlier result set of the same catalogue (its handle)."""

    name: str
    result_set: object


@dataclass(frozen=True)
class Combine:
    """A boolean operation on two plans."""

    operator: Operator
    left: Plan
    right: Plan


Plan = WordTerm | IdentifierTerm | YearTerm | SetTerm | Combine
"""A search: a term, a result set, or a boolean combination of plans."""


@dataclass(frozen=True)
class ScanPlan:
    """What to browse: the index (word, identifier or year) from ``text`` on; ``whole_field``
    lists whole field values (titles, authors) instead of words."""

    index: str
    text: str
    whole_field: bool = False


__all__ = [
    "IDENTIFIER_INDEXES",
    "WHOLE_FIELD_INDEXES",
    "WORD_INDEXES",
    "YEAR_INDEX",
    "Combine",
    "Comparison",
    "IdentifierTerm",
    "Operator",
    "Plan",
    "ScanPlan",
    "SetTerm",
    "Truncation",
    "WordTerm",
    "YearTerm",
]
