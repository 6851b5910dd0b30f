# -*- test-case-name: tests.gateway.test_catalogue,tests.gateway.test_embedded_catalogue -*-
"""Query plans (:mod:`gateway.domain.query`) compiled to SQL over the embedded catalogue.

A plan is first made ready for this catalogue without touching the database (:func:`prepare`:
index names become FTS5 columns or identifier kinds, terms are folded and split as the index
was), so what this catalogue cannot do fails fast with its domain error; it is then compiled
into one SQL statement (:func:`compile_plan`) that a reader thread runs. Every term becomes a
sub-select of record ids; AND/OR/NOT become ``INTERSECT``/``UNION``/``EXCEPT``; a result set
becomes its own statement (or its ids, a JSON array read with ``json_each``, once sorted).
Temporary (borrowed) records are not in the word index; the outer statement drops them from
other plans through the partial index ``records_temporary``, and keeps only records that
existed when the search ran (``id <=`` the highest id then), so later additions never shift a
result set's positions; hits are in record id order, so results are deterministic.

:func:`run_plan` does not read every hit of a word search (the FTS5 index yields its rowids in
order): it counts them inside SQLite (the FTS5 vocabulary's document count for a single word,
``count(*)`` otherwise; see :func:`_count`) and reads the first page of ids only;
:meth:`Hits.page` reads later pages on demand (keyset: ``id > last id read``, ordered by id, so
the FTS5 index serves the order and the ``LIMIT`` stops it early). Other plans (boolean
combinations, identifiers, years, whole fields, result sets) are read whole, as their
statements cannot stream in id order.

Access paths:

* words (title, author, subject, any...) go to the FTS5 table ``records_fts``; user text is
  folded and split by :func:`gateway.backends.embedded.indexing.tokenize` (as the index was)
  and every token is double-quoted, so no FTS5 syntax can be injected;
* identifiers (ISBN, ISSN, OCLC, local number) are looked up in ``record_identifiers`` through
  its primary key (kind, value): one index seek per normalised form;
* years of publication compare ``records.pub_year`` (indexed);
* whole titles are looked up as folded whole titles in ``record_identifiers`` (kind
  ``title``); whole authors compare ``records.author`` through its NOCASE index;
* local numbers compare ``records.local_id`` through its NOCASE index (schema migration 9);
* left truncation and masking expand the term against the FTS vocabulary
  (``records_fts_vocab_col``/``_row``) first, at most :data:`MAX_EXPANSION` words; FTS5
  phrases and whole-field comparisons cannot hold such alternatives
  (:class:`~gateway.domain.catalogue.UnsupportedCombination`).

Boolean plans compile to flat compound SELECTs (:func:`_compile_boolean`), so a chain of
hundreds of operators neither recurses nor nests deeply; operands nested past
:data:`MAX_NESTING` are evaluated first.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from zope.interface import implementer

try:
    import re2  # google-re2: linear-time matching for regular-expression terms
except ImportError:  # pragma: no cover - a dependency; without it such terms are refused
    re2 = None

from gateway.backends.embedded.identifiers import search_forms
from gateway.backends.embedded.indexing import fold, tokenize
from gateway.backends.embedded.indexing import words as folded_words
from gateway.domain.catalogue import (
    IResultSet,
    MalformedTerm,
    ResourcesExhausted,
    ResultSetUnknown,
    UnsupportedCombination,
    UnsupportedIndex,
    UnsupportedTruncation,
)
from gateway.domain.query import (
    Combine,
    Comparison,
    IdentifierTerm,
    Operator,
    Plan,
    SetTerm,
    Truncation,
    WordTerm,
    YearTerm,
)
from gateway.storage.store import NotNow

MAX_EXPANSION = 1000
"""Most vocabulary words a left-truncated or masked term may expand to (else
:class:`~gateway.domain.catalogue.ResourcesExhausted`)."""

MAX_REGEX = 64
"""Longest regular expression accepted, to bound matching cost."""

REGEX_MEMORY = 1 << 20
"""Bytes RE2 may use to compile one regular expression (a larger automaton is refused)."""

VOCABULARY_CHUNK = 2048
"""Vocabulary words matched by one RE2 call (see :func:`_regex_vocabulary`)."""

MAX_COMPOUND = 250
"""Most operands in one compound SELECT (SQLite allows 500)."""

MAX_NESTING = 8
"""Deepest nesting of parentheses in one boolean statement: a deeper operand is evaluated
first, on its own, and its ids given to the statement. SQLite 3.40's parser stack overflows
past 11, and the statement is wrapped again to count and to page it."""

FIRST_PAGE = 10
"""Ids a streamed search reads at once, for the Present (or piggy-backed records) that follows."""

HELD_IDS = 256
"""Most record ids a result set keeps in memory (a window of consecutive positions): a larger
result set is counted inside SQLite and read a page at a time by keyset (``id >`` the last id
read), so a saved result set of 100,000 hits holds no more than this."""



# -- this catalogue's indexes ------------------------------------------------------------------

WORD_COLUMNS: dict[str, str | None] = {
    "title": "title", "series": "series", "author": "author", "personal": "personal",
    "corporate": "corporate", "conference": "conference", "subject": "subject",
    "publisher": "publisher", "any": None, "anywhere": None,
}
"""Word index → FTS5 column (None = every column); see
:mod:`gateway.backends.embedded.indexing` for which fields feed which column."""

IDENTIFIER_KINDS: dict[str, tuple[str, ...]] = {
    "isbn": ("isbn",),
    "issn": ("issn",),
    "lccn": ("lccn",),
    "local_id": ("local",),
    "language": ("language",),
    "standard_identifier": ("isbn", "issn", "oclc", "local"),
    "oclc": ("oclc",),
}
"""Identifier index → ``record_identifiers`` kinds searched (``local``: ``records.local_id``)."""

_YEAR_OPERATORS = {Comparison.LESS: "<", Comparison.LESS_OR_EQUAL: "<=", Comparison.EQUAL: "=",
                   Comparison.GREATER_OR_EQUAL: ">=", Comparison.GREATER: ">",
                   Comparison.NOT_EQUAL: "<>", Comparison.WITHIN: "BETWEEN"}
_SET_OPERATORS = {Operator.AND: "INTERSECT", Operator.OR: "UNION", Operator.AND_NOT: "EXCEPT"}
_MASKS = (Truncation.HASH_MASK, Truncation.Z3958_MASK)
_NONE, _RIGHT, _REGEX = Truncation.NONE, Truncation.RIGHT, Truncation.REGEX
_EXPANDING = frozenset(t for t in Truncation if t.expands)
_ANY_IDENTIFIERS = IDENTIFIER_KINDS["standard_identifier"]
"""What the ``any`` index also looks a term up as."""


# -- the plan, made ready for SQL --------------------------------------------------------------

Sql = tuple[str, list[object]]
"""An SQL statement and its parameters."""


@dataclass(frozen=True, slots=True)
class WordSearch:
    """A word search in the FTS index."""

    column: str | None
    tokens: tuple[str, ...]
    phrase: bool            # tokens adjacent, in order
    first_in_field: bool    # the phrase starts the field
    truncation: Truncation
    complete: bool          # the whole field equals the term
    raw: str                # the term as given, for complete-field matches
    with_identifiers: bool  # "any": also look the term up as an identifier


@dataclass(frozen=True)
class IdentifierSearch:
    """An exact (or right-truncated) identifier lookup."""

    kinds: tuple[str, ...]
    term: str
    right_truncated: bool


@dataclass(frozen=True)
class YearSearch:
    """A comparison on the year of publication: ``op`` is an SQL operator."""

    op: str
    low: int
    high: int


@dataclass(frozen=True)
class SetSearch:
    """The members of an existing result set: the statement selecting them."""

    name: str
    members: Sql


@dataclass(frozen=True)
class Compound:
    """A boolean operation on two operands."""

    op: str  # INTERSECT | UNION | EXCEPT
    left: Access
    right: Access


Access = WordSearch | IdentifierSearch | YearSearch | SetSearch | Compound
"""A plan ready to compile."""

_ACCESS = (WordSearch, IdentifierSearch, YearSearch, SetSearch, Compound)


def prepare(plan: Plan | Access) -> Access:
    """The plan in this catalogue's terms; its domain error when it asks for what this
    catalogue cannot do. The tree is walked without recursion (brokers send long chains)."""
    if isinstance(plan, _ACCESS):
        return plan
    done: list[Access] = []
    pending: list[tuple[Plan, bool]] = [(plan, False)]
    while pending:
        node, operands_done = pending.pop()
        if not isinstance(node, Combine):
            done.append(_prepare_term(node))
        elif operands_done:
            right = done.pop()
            done[-1] = Compound(_SET_OPERATORS[node.operator], done[-1], right)
        else:
            pending += ((node, True), (node.right, False), (node.left, False))
    return done[0]


def _prepare_term(term: Plan) -> Access:
    if isinstance(term, WordTerm):
        return _prepare_words(term)
    if isinstance(term, IdentifierTerm):
        kinds = IDENTIFIER_KINDS.get(term.index)
        if kinds is None:
            raise UnsupportedIndex(term.index)
        return IdentifierSearch(kinds, term.text.strip(), term.right_truncated)
    if isinstance(term, YearTerm):
        return YearSearch(_YEAR_OPERATORS[term.comparison], term.low, term.high)
    if isinstance(term, SetTerm):
        if not isinstance(term.result_set, Hits):
            raise ResultSetUnknown(term.name)
        return SetSearch(term.name, term.result_set.members)
    raise TypeError(f"not a query plan: {term!r}")


def _prepare_words(term: WordTerm) -> WordSearch:
    if term.index not in WORD_COLUMNS:
        raise UnsupportedIndex(term.index)
    if term.truncation is _REGEX:
        tokens = tuple(fold(term.text).split())  # regular expressions: one per word
    else:
        tokens = tokenize(term.text, keep_masks=term.truncation in _MASKS)
    word = WordSearch(
        column=WORD_COLUMNS[term.index],
        tokens=tokens,
        phrase=term.phrase,
        first_in_field=term.first_in_field,
        truncation=term.truncation,
        complete=term.complete,
        raw=term.text,
        with_identifiers=term.index == "any",
    )
    if term.truncation in _EXPANDING and (word.complete or word.first_in_field
                                    or (word.phrase and len(tokens) > 1)):
        # Left truncation and masking expand words through the vocabulary; FTS5 phrases and
        # whole-field comparisons cannot hold such alternatives.
        raise UnsupportedCombination(f"{term.truncation.value} truncation with a phrase,"
                                     " position or complete field")
    return word


# -- compiling to SQL -------------------------------------------------------------------------

NOTHING: Sql = ("SELECT NULL AS id WHERE 0", [])


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def _vocabulary_matches(conn: sqlite3.Connection, column: str | None, token: str,
                        truncation: Truncation) -> list[str]:
    """Vocabulary words matching a left-truncated or masked token (for an OR in FTS5)."""
    if truncation is _REGEX:
        matches = _regex_vocabulary(conn, column, compile_regex(token))
    else:
        pattern = _glob(token, truncation)
        clauses: list[str] = ["term GLOB ?"]
        params: list[object] = [pattern]
        prefix = re.match(r"[^*?\[]*", pattern)
        if prefix and prefix.group(0):  # a literal prefix bounds the vocabulary read
            clauses += ["term >= ?", "term < ?"]
            params += [prefix.group(0), prefix.group(0) + "\U0010ffff"]
        matches = _vocabulary(conn, column, " AND ".join(clauses), params)
    if len(matches) > MAX_EXPANSION:
        raise ResourcesExhausted(f"{token} matches more than {MAX_EXPANSION} words")
    return matches


def compile_regex(token: str) -> Any:
    """A regular-expression term compiled by RE2, whose matching time is linear in the text,
    anchored to whole lines (to match a vocabulary of one word a line at once).

    Python's ``re`` backtracks: one crafted pattern held the interpreter for minutes. RE2 has
    no backreferences or look-around, so a pattern using them is refused (125), as is one
    longer than :data:`MAX_REGEX` or needing more than :data:`REGEX_MEMORY` to compile.
    """
    if len(token) > MAX_REGEX:
        raise MalformedTerm(f"regular expression longer than {MAX_REGEX} characters")
    if re2 is None:
        raise UnsupportedTruncation("regular expressions are not available")
    options = re2.Options()
    options.log_errors = False      # an anonymous client must not be able to write to stderr
    options.max_mem = REGEX_MEMORY
    options.never_capture = True
    options.never_nl = True         # a match never spans two words of the vocabulary
    try:
        re2.compile(token, options)  # a valid expression alone, hence safe inside a group
        return re2.compile(f"(?m)^(?:{token})$", options)
    except re2.error:
        raise MalformedTerm(f"unsupported regular expression: {token}") from None


def _glob(token: str, truncation: Truncation) -> str:
    escaped = "".join(f"[{c}]" if c in "*?[]" else c for c in token.replace("#", "\0"))
    if truncation is Truncation.HASH_MASK:     # '#' = any sequence of characters
        escaped = escaped.replace("\0", "*")
    elif truncation is Truncation.Z3958_MASK:  # '?' any sequence, '#' one character
        escaped = escaped.replace("[?]", "*").replace("\0", "?")
    else:
        escaped = escaped.replace("\0", "[#]")
    if truncation in (Truncation.LEFT, Truncation.BOTH):
        escaped = "*" + escaped
    if truncation is Truncation.BOTH:
        escaped += "*"
    return escaped


def _regex_vocabulary(conn: sqlite3.Connection, column: str | None, regex: Any) -> list[str]:
    """Up to MAX_EXPANSION + 1 vocabulary words (of ``column``, or any) ``regex`` matches.

    The words are read :data:`VOCABULARY_CHUNK` at a time and matched a chunk (one word a
    line) per RE2 call, not one Python call per word from SQLite: the interpreter lock is held
    for short stretches, so the reactor keeps answering while a reader scans the vocabulary.
    """
    table = "records_fts_vocab_row" if column is None else "records_fts_vocab_col"
    sql, params = f"SELECT term FROM {table}", []
    if column is not None:
        sql, params = sql + " WHERE col = ?", [column]
    cursor = conn.execute(sql, params)
    matches: list[str] = []
    while len(matches) <= MAX_EXPANSION:
        rows = cursor.fetchmany(VOCABULARY_CHUNK)
        if not rows:
            break
        text = "\n".join(row[0] for row in rows)
        matches += [word for word in (m.group(0) for m in regex.finditer(text)) if word]
    cursor.close()
    return matches[:MAX_EXPANSION + 1]


def _vocabulary(conn: sqlite3.Connection, column: str | None, condition: str,
                params: list[object]) -> list[str]:
    """Up to MAX_EXPANSION + 1 vocabulary words (of ``column``, or any) meeting ``condition``."""
    table = "records_fts_vocab_row" if column is None else "records_fts_vocab_col"
    where = [condition]
    if column is not None:
        where.append("col = ?")
        params = [*params, column]
    sql = f"SELECT term FROM {table} WHERE {' AND '.join(where)} LIMIT {MAX_EXPANSION + 1}"
    return [row[0] for row in conn.execute(sql, params)]


def _fts_expression(conn: sqlite3.Connection, term: WordSearch) -> str | None:
    """The FTS5 MATCH expression for a word term, or None when nothing can match."""
    tokens = list(term.tokens)
    if not tokens:
        return None
    if term.truncation in _EXPANDING:
        parts = []
        for token in tokens:
            plain = term.truncation in _MASKS and not any(c in token for c in "#?")
            if plain:
                parts.append(_quote(token))
                continue
            words = _vocabulary_matches(conn, term.column, token, term.truncation)
            if not words:
                return None
            parts.append("(" + " OR ".join(_quote(w) for w in words) + ")")
        body = " AND ".join(parts)
    elif term.phrase or term.complete or term.first_in_field:
        body = _quote(" ".join(tokens)) + (" *" if term.truncation is _RIGHT else "")
        if term.first_in_field:
            body = "^ " + body
    else:
        right = " *" if term.truncation is _RIGHT else ""
        body = " AND ".join(_quote(t) + right for t in tokens)
    if term.column is not None:
        return "{" + term.column + "} : (" + body + ")"
    return body


_CLEAN = re.compile(r"[\s/:;,.=]+$")


def field_value(text: str) -> str:
    """A term as a whole field is stored (spaces collapsed, trailing punctuation dropped)."""
    return _CLEAN.sub("", " ".join(text.split()))


def _word_sql(conn: sqlite3.Connection, term: WordSearch) -> Sql:
    parts = _word_parts(conn, term)
    return " UNION ALL ".join(sql for sql, _ in parts), [p for _, ps in parts for p in ps]


def _word_parts(conn: sqlite3.Connection, term: WordSearch) -> list[Sql]:
    """Disjoint statements whose ids together are the term's hits (UNION ALL of them)."""
    if term.complete and term.column == "title":  # folded whole titles (complete_titles)
        return [_identifier_sql(IdentifierSearch(("title",), folded_words(term.raw),
                                                 term.truncation is _RIGHT))]
    if term.complete and term.column == "author":
        value = field_value(term.raw)
        if term.truncation is _RIGHT:
            return [(f"SELECT id FROM records WHERE {term.column} >= ? COLLATE NOCASE"
                     f" AND {term.column} < ? COLLATE NOCASE", [value, value + "\U0010ffff"])]
        return [(f"SELECT id FROM records WHERE {term.column} = ? COLLATE NOCASE", [value])]
    expression = _fts_expression(conn, term)
    words: Sql = (("SELECT rowid AS id FROM records_fts WHERE records_fts MATCH ?", [expression])
                  if expression is not None else NOTHING)
    if term.complete and term.column == "subject":
        heading = field_value(term.raw).lower()
        words = (f"SELECT w.id FROM ({words[0]}) w JOIN records r ON r.id = w.id WHERE instr("
                 "char(10) || lower(r.subjects) || char(10), char(10) || ? || char(10)) > 0",
                 [*words[1], heading])
    if term.with_identifiers and term.truncation is _NONE:
        # The identifier hits the words lack: with UNION ALL, SQLite merges them in id order
        # without first collecting every word hit, as UNION would.
        ident = _identifier_sql(IdentifierSearch(_ANY_IDENTIFIERS, term.raw.strip(), False))
        return [words, (f"SELECT i.id FROM ({ident[0]}) i WHERE NOT EXISTS"
                        f" (SELECT 1 FROM ({words[0]}) w WHERE w.id = i.id)",
                        [*ident[1], *words[1]])]
    return [words]


def _identifier_sql(term: IdentifierSearch) -> Sql:
    selects: list[str] = []
    params: list[object] = []
    for kind in term.kinds:
        for form in dict.fromkeys(search_forms(kind, term.term)):
            if not form:
                continue
            if kind == "local":  # case-insensitive, as Zebra's word index compares them
                if term.right_truncated:
                    selects.append("SELECT id FROM records WHERE local_id >= ? COLLATE NOCASE"
                                   " AND local_id < ? COLLATE NOCASE")
                    params += [form, form + "\U0010ffff"]
                else:
                    selects.append("SELECT id FROM records WHERE local_id = ? COLLATE NOCASE")
                    params.append(form)
            elif kind == "title" and not term.right_truncated:
                selects.append("SELECT DISTINCT record_id AS id FROM record_identifiers"
                               " WHERE kind = ? AND value = ?")
                params += [kind, form]
            elif term.right_truncated:
                selects.append("SELECT DISTINCT record_id AS id FROM record_identifiers"
                               " WHERE kind = ? AND value >= ? AND value < ?")
                params += [kind, form, form + "\U0010ffff"]
            else:
                selects.append("SELECT record_id AS id FROM record_identifiers"
                               " WHERE kind = ? AND value = ?")
                params += [kind, form]
    if not selects:
        return NOTHING
    return " UNION ".join(selects), params


def _compile(conn: sqlite3.Connection, plan: Access) -> Sql:
    if isinstance(plan, WordSearch):
        return _word_sql(conn, plan)
    if isinstance(plan, IdentifierSearch):
        return _identifier_sql(plan)
    if isinstance(plan, YearSearch):
        if plan.op == "BETWEEN":
            return ("SELECT id FROM records INDEXED BY records_year WHERE pub_year BETWEEN ? AND ?",
                    [plan.low, plan.high])
        if plan.op == "<>":  # the index cannot help; and a record without a year never matches
            return "SELECT id FROM records WHERE pub_year <> ?", [plan.low]
        return (f"SELECT id FROM records INDEXED BY records_year WHERE pub_year {plan.op} ?",
                [plan.low])
    if isinstance(plan, SetSearch):
        return plan.members
    return _compile_boolean(conn, plan)


@dataclass
class _Chain:
    """Operands combined left to right, ``((o1 op1 o2) op2 o3) ...``: one compound SELECT
    (SQLite's compound operators are left-associative and of equal precedence).
    ``nesting``: the deepest operand's count of statements nested in one another."""

    operands: list[Sql]
    ops: list[str]
    nesting: int

    def render(self) -> Sql:
        sql = self.operands[0][0] + "".join(
            f" {op} {operand[0]}" for op, operand in zip(self.ops, self.operands[1:],
                                                          strict=True))
        return sql, [p for _, params in self.operands for p in params]


def _compile_boolean(conn: sqlite3.Connection, plan: Compound) -> Sql:
    """A boolean plan as one statement of flat compound SELECTs: a chain of operators (left-deep,
    or the same associative operator in any shape) stays flat, so long broker queries neither
    nest deeply nor recurse. Operands nested deeper than :data:`MAX_NESTING` are evaluated
    first (:func:`_nested`)."""
    done: list[_Chain] = []
    pending: list[tuple[Access, bool]] = [(plan, False)]
    while pending:
        node, operands_done = pending.pop()
        if not isinstance(node, Compound):
            sql, params = _operand_sql(conn, node)
            done.append(_Chain([(f"SELECT id FROM ({sql})", params)], [], _depth(sql) + 1))
        elif not operands_done:
            pending += ((node, True), (node.right, False), (node.left, False))
        else:
            right = done.pop()
            done[-1] = _combine(conn, node.op, done[-1], right)
    return done[0].render()


def _operand_sql(conn: sqlite3.Connection, plan: Access) -> Sql:
    """A boolean operand's statement. The compound operators remove duplicates anyway, so an
    "any" term's identifier hits are a plain UNION, without the NOT EXISTS that keeps its own
    count exact (compiling that hundreds of times is what made long "any" chains slow)."""
    if (isinstance(plan, WordSearch) and plan.with_identifiers
            and plan.truncation is _NONE):
        parts = [_word_parts(conn, replace(plan, with_identifiers=False))[0],
                 _identifier_sql(IdentifierSearch(_ANY_IDENTIFIERS, plan.raw.strip(), False))]
        return " UNION ".join(sql for sql, _ in parts), [p for _, ps in parts for p in ps]
    return _compile(conn, plan)


def _combine(conn: sqlite3.Connection, op: str, left: _Chain, right: _Chain) -> _Chain:
    """``left op right`` as one chain: the right operand's own chain is spliced in when that
    keeps the meaning (one operand, or the same UNION/INTERSECT throughout), else nested."""
    if len(right.operands) == 1 or (op != "EXCEPT" and all(o == op for o in right.ops)):
        operands, nesting = right.operands, right.nesting
    else:
        inner = _nested(conn, right)
        operands, nesting = inner.operands, inner.nesting
    chain = _Chain(left.operands + operands, left.ops + [op] * len(operands),
                   max(left.nesting, nesting))
    return _nested(conn, chain) if len(chain.operands) > MAX_COMPOUND else chain


def _depth(sql: str) -> int:
    """How deeply parentheses nest in ``sql`` (our statements hold no literal text)."""
    deepest = level = 0
    for char in sql:
        if char == "(":
            level += 1
            deepest = max(deepest, level)
        elif char == ")":
            level -= 1
    return deepest


def _nested(conn: sqlite3.Connection, chain: _Chain) -> _Chain:
    """The chain as a single operand: a subquery, or its ids once evaluated (past
    :data:`MAX_NESTING`, within the search's read transaction)."""
    sql, params = chain.render()
    if chain.nesting + 1 > MAX_NESTING:
        ids = [row[0] for row in conn.execute(sql, params)]
        sql, params = ids_sql(ids)
        return _Chain([(f"SELECT id FROM ({sql})", params)], [], _depth(sql) + 1)
    return _Chain([(f"SELECT id FROM ({sql})", params)], [], chain.nesting + 1)


def ids_sql(record_ids: Sequence[int]) -> Sql:
    """A statement selecting the given ids (a result set read whole, or sorted)."""
    return "SELECT value AS id FROM json_each(?)", [json.dumps(list(record_ids))]


def compile_plan(conn: sqlite3.Connection, plan: Plan | Access, bound: int) -> Sql:
    """The members statement: matching non-temporary record ids up to ``bound``, unordered."""
    plan = prepare(plan)
    inner, params = _compile(conn, plan)
    if _words_only(plan):  # the word index holds no temporary record
        return f"SELECT id FROM ({inner}) WHERE id <= ?", [*params, bound]
    # Excluding temporary records (borrowed items in flight) through their partial index is
    # much cheaper than looking every hit up in ``records``.
    return (f"SELECT id FROM ({inner}) WHERE id <= ? AND id NOT IN"
            " (SELECT id FROM records WHERE temporary = 1)", [*params, bound])


def _words_only(plan: Access) -> bool:
    """Whether the plan reads the word index alone (no identifiers, no whole title/author)."""
    return (isinstance(plan, WordSearch)
            and not (plan.complete and plan.column in ("title", "author"))
            and not (plan.with_identifiers and plan.truncation is _NONE))


def _streams(plan: Access) -> bool:
    """Whether the plan's ids come from the FTS5 index alone, in id order (see the docstring)."""
    return isinstance(plan, WordSearch) and not (plan.complete and plan.column is not None)


RESULT_SET_BYTES = 2048
"""What a result set costs besides its ids and statement (objects, dictionary slots)."""

ID_BYTES = 40
"""What one record id held in a list costs (the int object and its slot)."""


@implementer(IResultSet)
@dataclass
class Hits:
    """A search's hits (this catalogue's result set): the exact count and the ids read last, a
    window in result order.

    ``members`` selects every hit (unordered); ``streamed`` says the ids are read from it a
    page at a time, else ``ids`` holds them all. A streamed set keeps at most
    :data:`HELD_IDS` ids: those at positions ``offset + 1`` … ``offset + len(ids)``. One
    operation at a time uses a result set (the association queues requests), so the window
    needs no lock.
    """

    count: int
    members: Sql
    ids: list[int] = field(default_factory=list)
    streamed: bool = False
    offset: int = 0

    @classmethod
    def of(cls, record_ids: Sequence[int]) -> Hits:
        """Hits that are all known (a sorted result set, a test's)."""
        return cls(len(record_ids), ids_sql(record_ids), list(record_ids))

    @property
    def held_bytes(self) -> int:
        """The most memory these hits can hold: the window (or all the ids) and the statement
        selecting them."""
        ids = HELD_IDS if self.streamed else len(self.ids)
        sql, params = self.members
        return (RESULT_SET_BYTES + ID_BYTES * ids + len(sql)
                + sum(len(p) for p in params if isinstance(p, str)))

    def page_is_bounded(self, start: int, count: int) -> bool:
        """Whether :meth:`page` reads at most ``count`` rows: the ids are known, or the id
        before the page is (keyset, no ``OFFSET`` to walk)."""
        return not self.streamed or start == 1 or \
            self.offset < start - 1 <= self.offset + len(self.ids)

    def page(self, conn: sqlite3.Connection, start: int, count: int) -> list[int]:
        """The ids at positions ``start`` (1-based) to ``start + count - 1``, at most the last.

        Positions outside the window come from ``members``: after the id before ``start``
        when the window holds it (the window then extends, trimmed to :data:`HELD_IDS`);
        otherwise after the nearest id known before them, skipping the rest (``OFFSET``),
        and not kept.
        """
        end = min(start - 1 + count, self.count)
        held_end = self.offset + len(self.ids)
        if not self.streamed or (self.offset < start and end <= held_end):
            return self.ids[start - 1 - self.offset:end - self.offset]
        extends = start - 1 >= self.offset and start - 1 <= held_end
        if start == 1 or (extends and start - 1 > self.offset):
            after, skip = (self.ids[start - 2 - self.offset] if start > 1 else 0), 0
        elif start - 1 > held_end and self.ids:
            after, skip = self.ids[-1], start - 1 - held_end
        else:                                         # before the window: from the start
            after, skip, extends = 0, start - 1, False
        sql, params = self.members
        rows = conn.execute(f"SELECT id FROM ({sql}) WHERE id > ? ORDER BY id LIMIT ? OFFSET ?",
                            [*params, after, end - start + 1, skip])
        fetched = [row[0] for row in rows]
        if not extends:
            return fetched
        # Extends the window (the page starts inside it or right after it).
        kept = self.ids[:start - 1 - self.offset] + fetched
        drop = max(0, len(kept) - HELD_IDS)
        self.ids, self.offset = kept[drop:], self.offset + drop
        return fetched


class WordCounts:
    """Word hit counts kept for as long as the catalogue stays as it was when they were made.

    Counting a word's hits walks its whole FTS5 doclist, the one search cost that grows with
    the catalogue. The count of a word statement
    is a function of the word index alone, and the index changes only with a record, which
    moves the catalogue generation (schema migration 4's triggers, kept by every writer), so a
    count is reused while the generation it was made at is current. Least recently used
    statements are dropped past ``size``. Reader threads share one instance.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._counts: OrderedDict[tuple[str, tuple[Any, ...]], tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def count(self, conn: sqlite3.Connection, statement: Sql, generation: int, *,
              cached_only: bool = False) -> int:
        """The statement's ``count`` at ``generation``, read in the caller's transaction.

        ``cached_only``: raise :class:`NotNow` instead of counting (a read on the reactor).
        """
        key = (statement[0], tuple(statement[1]))
        with self._lock:
            kept = self._counts.get(key)
            if kept is not None and kept[0] == generation:
                self._counts.move_to_end(key)
                return kept[1]
        if cached_only:
            raise NotNow("word count not cached")
        value = int(conn.execute(*statement).fetchone()[0])
        with self._lock:
            self._counts[key] = (generation, value)
            self._counts.move_to_end(key)
            while len(self._counts) > self._size:
                self._counts.popitem(last=False)
        return value


def bounded(plan: Access) -> bool:
    """Whether the plan can run on the reactor (:func:`run_plan` with ``bounded_only``): one
    plain word, whose hits stream from the FTS5 index a page at a time and whose count is a
    single cached statement. Anything else (booleans, truncation, phrases, whole fields,
    identifiers, years) may read an unbounded number of rows."""
    return (isinstance(plan, WordSearch) and len(plan.tokens) == 1
            and plan.truncation is _NONE
            and not (plan.complete or plan.first_in_field or plan.with_identifiers))


def run_plan(conn: sqlite3.Connection, plan: Plan | Access, first: int = FIRST_PAGE,
             counts: WordCounts | None = None, *, bounded_only: bool = False) -> Hits:
    """Run a planned query on a (reader) connection: its count and its first ``first`` ids.

    The highest record id, the count and the first page are read in one transaction, so they
    agree; word counts come from ``counts`` when it has them for this generation of the
    catalogue. :class:`MalformedTerm` if FTS5 rejects the expression. ``bounded_only`` (a
    :func:`bounded` plan, on the reactor): :class:`NotNow` rather than count what ``counts``
    lacks.
    """
    plan = prepare(plan)
    conn.execute("SAVEPOINT interlend_search")  # a read transaction, nested if one is open
    try:
        bound = conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()[0]
        members = compile_plan(conn, plan, bound)
        if not _streams(plan):
            ids = [row[0] for row in conn.execute(f"{members[0]} ORDER BY id LIMIT ?",
                                                  [*members[1], HELD_IDS + 1])]
            if len(ids) <= HELD_IDS:
                return Hits(len(ids), members, ids)
            # Too many to hold: counted inside SQLite, then read by keyset (Hits.page).
            total = conn.execute(*_count_sql(members)).fetchone()[0]
            return Hits(total, members, ids[:HELD_IDS], streamed=True)
        assert isinstance(plan, WordSearch)
        hits = Hits(_count(conn, plan, counts, bounded_only), members, streamed=True)
        hits.page(conn, 1, first)
        return hits
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc).lower():
            raise MalformedTerm(str(exc)) from None
        raise
    finally:
        conn.execute("RELEASE interlend_search")


def _count(conn: sqlite3.Connection, term: WordSearch, counts: WordCounts | None,
           cached_only: bool = False) -> int:
    """The number of the term's hits (within the search's transaction): its disjoint parts
    counted one by one, less the temporary records among the identifier hits (the word index
    holds no temporary record).

    ``count(*)`` straight over a part lets SQLite count FTS5 rows without a per-row filter
    (about twice as fast as filtering each member), and a single word is counted from the FTS5
    vocabulary (:func:`_word_count_sql`). Every record is within the bound in this
    transaction.
    """
    words, *others = _word_parts(conn, term)
    word_count = _word_count_sql(term, words)
    if counts is None:
        if cached_only:
            raise NotNow("no word counts")
        total = conn.execute(*word_count).fetchone()[0]
    else:
        generation = conn.execute("SELECT value FROM catalogue_generation").fetchone()[0]
        total = counts.count(conn, word_count, generation, cached_only=cached_only)
    temporaries = [(f"SELECT count(*) FROM records t INDEXED BY records_temporary WHERE"
                    f" t.temporary = 1 AND EXISTS (SELECT 1 FROM ({sql}) x WHERE x.id = t.id)",
                    params) for sql, params in others]
    return (total + sum(conn.execute(*_count_sql(part)).fetchone()[0] for part in others)
            - sum(conn.execute(*count).fetchone()[0] for count in temporaries))


def _count_sql(part: Sql) -> Sql:
    return f"SELECT count(*) FROM ({part[0]})", part[1]


def _word_count_sql(term: WordSearch, words: Sql) -> Sql:
    """A statement counting the rows of ``words`` (the term's FTS5 hits).

    For one plain word, the FTS5 vocabulary's document count of that word (in the term's
    column): it reads the word's doclist without a row per hit. A vocabulary term is what the
    tokenizer makes, so when the word is one it matches exactly the rows counted; when it is
    not (no row), ``count(*)`` decides.
    """
    plain = (len(term.tokens) == 1 and term.truncation is _NONE
             and not term.first_in_field
             and not term.complete)
    count = _count_sql(words)
    if not plain:
        return count
    if term.column is None:
        vocabulary: Sql = ("SELECT doc FROM records_fts_vocab_row WHERE term = ?",
                           [term.tokens[0]])
    else:  # NULL for no row at all; 0 for a word found in other columns only
        vocabulary = ("SELECT sum(CASE WHEN col = ? THEN doc ELSE 0 END)"
                      " FROM records_fts_vocab_col WHERE term = ?", [term.column, term.tokens[0]])
    # COALESCE stops at its first non-NULL argument: count(*) runs only for an unknown word.
    return (f"SELECT coalesce(({vocabulary[0]}), ({count[0]}))", [*vocabulary[1], *count[1]])


__all__ = [
    "FIRST_PAGE",
    "HELD_IDS",
    "Access",
    "Hits",
    "Sql",
    "WordCounts",
    "bounded",
    "compile_plan",
    "compile_regex",
    "field_value",
    "ids_sql",
    "prepare",
    "run_plan",
]
