# -*- test-case-name: tests.protocols.test_sru_cql -*-
"""CQL (Contextual Query Language, 1.1 and 1.2) parsed into immutable value types, and printed.

The gateway's SRU service will call L{parse} on the C{query} (and L{parse_scan_clause} on the
C{scanClause}) parameter, hand the tree to L{protocols.sru.profile.resolve} to check it against
what the catalogue supports, and map the resolved tree onto the same query plan as Z39.50.

The grammar is the LoC/OASIS one: search clauses C{index relation[/modifiers] term} or a bare
term, the booleans C{and}, C{or}, C{not} and C{prox} (left-associative, equal precedence, with
modifiers), parentheses, prefix assignments (C{>dc="uri"} or C{>"uri"}) scoping over the query
that follows them, and a trailing C{sortBy} with modifiers. Keywords are case-insensitive;
quoted terms keep their backslash escapes except C{\\"}, so masking (C{*}, C{?}) and anchoring
(C{^}) are read later by L{masked}.

Hostile input is bounded: the query length, the nesting depth of parentheses and prefix
assignments and the number of boolean operators are limited (so the tree is never deeper than
Python's recursion can walk), and every failure is an L{SRUError} with the standard
diagnostic. The well-known PyPI parser (C{cql-parser}) was considered: its own README calls
prefix handling unfinished, its nodes are mutable and its errors carry no diagnostic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from .diagnostics import Diagnostic, SRUError

__all__ = [
    "MAX_BOOLEANS",
    "MAX_DEPTH",
    "MAX_QUERY_LENGTH",
    "MAX_TERM_LENGTH",
    "Boolean",
    "BooleanNode",
    "CQLQuery",
    "Mask",
    "MaskedTerm",
    "Modifier",
    "PrefixAssignment",
    "PrefixedQuery",
    "Query",
    "Relation",
    "SearchClause",
    "SortKey",
    "clauses",
    "masked",
    "parse",
    "parse_scan_clause",
    "to_cql",
]

MAX_QUERY_LENGTH = 4096
"""Default cap on the characters in a query; real broker queries are under 300."""

MAX_DEPTH = 32
"""Default cap on nested parentheses and prefix assignments."""

MAX_BOOLEANS = 64
"""Default cap on boolean operators in one query (each adds a level to the tree)."""

MAX_TERM_LENGTH = 1024
"""Default cap on the characters in one term, index or modifier value."""

COMPARITOR_SYMBOLS = frozenset({"=", "==", "<>", "<", ">", "<=", ">="})
BOOLEANS = frozenset({"and", "or", "not", "prox"})
_SORTBY = "sortby"
_SPECIAL = frozenset('()=<>"/')
_WORD_RUN = re.compile(r'[^\s()=<>"/]+')


@dataclass(frozen=True, slots=True)
class Modifier:
    """C{/name}, or C{/name<comparitor>value}: on a relation, a boolean or a sort key."""

    name: str
    comparitor: str | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Relation:
    """A comparitor symbol (C{=}, C{<=} ...) or a named relation (C{any}, C{cql.adj} ...)."""

    name: str
    modifiers: tuple[Modifier, ...] = ()


@dataclass(frozen=True, slots=True)
class SearchClause:
    """C{index relation term}; a bare term has C{index} and C{relation} C{None}.

    C{term} is the text between the quotes (or the unquoted word) with C{\\"} read as C{"};
    other backslash escapes stay, for L{masked} to read.
    """

    term: str
    index: str | None = None
    relation: Relation | None = None


@dataclass(frozen=True, slots=True)
class Boolean:
    """C{and}, C{or}, C{not} or C{prox} (lower case), with its modifiers."""

    name: str
    modifiers: tuple[Modifier, ...] = ()


@dataclass(frozen=True, slots=True)
class BooleanNode:
    """C{left <boolean> right}."""

    left: Query
    operator: Boolean
    right: Query


@dataclass(frozen=True, slots=True)
class PrefixAssignment:
    """C{>prefix="uri"}, or C{>"uri"} (C{prefix} C{None}: the default context set)."""

    uri: str
    prefix: str | None = None


@dataclass(frozen=True, slots=True)
class PrefixedQuery:
    """Prefix assignments and the query they scope over."""

    assignments: tuple[PrefixAssignment, ...]
    query: Query


Query: TypeAlias = SearchClause | BooleanNode | PrefixedQuery


@dataclass(frozen=True, slots=True)
class SortKey:
    """One C{sortBy} key: an index and its modifiers (C{sort.descending} ...)."""

    index: str
    modifiers: tuple[Modifier, ...] = ()


@dataclass(frozen=True, slots=True)
class CQLQuery:
    """A whole query: the tree, and the sort keys of a trailing C{sortBy}."""

    root: Query
    sort_keys: tuple[SortKey, ...] = ()


# -- lexer --------------------------------------------------------------------------------------


class _Kind(Enum):
    WORD = "word"  # charString1
    QUOTED = "quoted"  # charString2
    SYMBOL = "symbol"  # ( ) / and comparitor symbols
    END = "end"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str
    position: int

    def is_symbol(self, *texts: str) -> bool:
        return self.kind is _Kind.SYMBOL and self.text in texts

    @property
    def keyword(self) -> str | None:
        """The lower-cased keyword an unquoted word spells, if any."""
        if self.kind is _Kind.WORD:
            lowered = self.text.lower()
            if lowered in BOOLEANS or lowered == _SORTBY:
                return lowered
        return None


def _tokens(text: str, max_term: int) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "()/":
            tokens.append(_Token(_Kind.SYMBOL, char, i))
            i += 1
        elif char in "<>=":
            two = text[i : i + 2]
            symbol = two if two in ("<=", ">=", "<>", "==") else char
            tokens.append(_Token(_Kind.SYMBOL, symbol, i))
            i += len(symbol)
        elif char == '"':
            start, i = i, i + 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise SRUError(Diagnostic.INVALID_QUOTES, f"unterminated quote at {start}")
                if text[i] == "\\" and i + 1 < n:
                    pair = text[i : i + 2]
                    chars.append('"' if pair == '\\"' else pair)
                    i += 2
                elif text[i] == '"':
                    i += 1
                    break
                else:
                    chars.append(text[i])
                    i += 1
            tokens.append(_Token(_Kind.QUOTED, _checked_term("".join(chars), start, max_term),
                                 start))
        else:
            match = _WORD_RUN.match(text, i)
            assert match is not None  # the character at i is neither space nor special
            start, i = i, match.end()
            tokens.append(_Token(_Kind.WORD, _checked_term(match.group(), start, max_term),
                                 start))
    tokens.append(_Token(_Kind.END, "", n))
    return tokens


def _checked_term(term: str, position: int, max_term: int) -> str:
    if len(term) > max_term:
        raise SRUError(Diagnostic.TOO_MANY_CHARACTERS_IN_TERM, f"term at {position}")
    trailing = len(term) - len(term.rstrip("\\"))
    if trailing % 2:
        raise SRUError(Diagnostic.QUERY_SYNTAX_ERROR, f"dangling escape at {position}")
    return term


# -- parser -------------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the token list; recursion only at parentheses, bounded."""

    def __init__(self, tokens: list[_Token], max_depth: int, max_booleans: int) -> None:
        self._tokens = tokens
        self._at = 0
        self._max_depth = max_depth
        self._booleans_left = max_booleans

    @property
    def _token(self) -> _Token:
        return self._tokens[self._at]

    def _advance(self) -> _Token:
        token = self._token
        if token.kind is not _Kind.END:
            self._at += 1
        return token

    def _fail(self, what: str) -> SRUError:
        token = self._token
        found = "end of query" if token.kind is _Kind.END else repr(token.text)
        if token.is_symbol("(", ")"):
            return SRUError(Diagnostic.INVALID_PARENTHESES, f"{what}, found {found} at "
                            f"{token.position}")
        return SRUError(Diagnostic.QUERY_SYNTAX_ERROR,
                        f"{what}, found {found} at {token.position}")

    def _term(self, what: str) -> str:
        """Any word or quoted string, keywords included (as the grammar's C{term})."""
        token = self._token
        if token.kind in (_Kind.WORD, _Kind.QUOTED):
            self._advance()
            return token.text
        raise self._fail(f"expected {what}")

    def sorted_query(self) -> CQLQuery:
        root = self.query(depth=0)
        sort_keys: tuple[SortKey, ...] = ()
        if self._token.keyword == _SORTBY:
            self._advance()
            sort_keys = self._sort_keys()
        if self._token.kind is not _Kind.END:
            raise self._fail("expected a boolean operator or the end of the query")
        return CQLQuery(root, sort_keys)

    def query(self, depth: int) -> Query:
        """C{cqlQuery}: prefix assignments, then a left-associative boolean chain."""
        if depth > self._max_depth:
            raise SRUError(Diagnostic.INVALID_PARENTHESES,
                           f"nesting deeper than {self._max_depth}")
        assignments: list[PrefixAssignment] = []
        while self._token.is_symbol(">"):
            self._advance()
            first = self._term("a prefix or a context set URI")
            if self._token.is_symbol("="):
                self._advance()
                assignments.append(PrefixAssignment(self._term("a context set URI"), first))
            else:
                assignments.append(PrefixAssignment(first))
        if assignments:
            return PrefixedQuery(tuple(assignments), self.query(depth + 1))
        node = self._search_clause(depth)
        while self._token.keyword in BOOLEANS:
            if self._booleans_left == 0:
                raise SRUError(Diagnostic.TOO_MANY_BOOLEAN_OPERATORS,
                               f"more than the limit at {self._token.position}")
            self._booleans_left -= 1
            name = self._advance().text.lower()
            operator = Boolean(name, self._modifiers())
            node = BooleanNode(node, operator, self._search_clause(depth))
        return node

    def _search_clause(self, depth: int) -> Query:
        if self._token.is_symbol("("):
            self._advance()
            inner = self.query(depth + 1)
            if not self._token.is_symbol(")"):
                raise SRUError(Diagnostic.INVALID_PARENTHESES,
                               f"missing ')' at {self._token.position}")
            self._advance()
            return inner
        first = self._term("a search term or '('")
        token = self._token
        if token.kind is _Kind.SYMBOL and token.text in COMPARITOR_SYMBOLS:
            self._advance()
            relation = Relation(token.text, self._modifiers())
        elif token.kind is _Kind.WORD and token.keyword is None:
            self._advance()
            relation = Relation(token.text, self._modifiers())
        else:
            return SearchClause(first)
        return SearchClause(self._term("a search term"), first, relation)

    def _modifiers(self) -> tuple[Modifier, ...]:
        modifiers: list[Modifier] = []
        while self._token.is_symbol("/"):
            self._advance()
            name = self._term("a modifier name")
            token = self._token
            if token.kind is _Kind.SYMBOL and token.text in COMPARITOR_SYMBOLS:
                self._advance()
                modifiers.append(Modifier(name, token.text, self._term("a modifier value")))
            else:
                modifiers.append(Modifier(name))
        return tuple(modifiers)

    def _sort_keys(self) -> tuple[SortKey, ...]:
        keys: list[SortKey] = []
        while self._token.kind in (_Kind.WORD, _Kind.QUOTED):
            keys.append(SortKey(self._advance().text, self._modifiers()))
        if not keys:
            raise self._fail("expected a sort key after sortBy")
        return tuple(keys)


def parse(
    text: str,
    *,
    max_length: int = MAX_QUERY_LENGTH,
    max_depth: int = MAX_DEPTH,
    max_booleans: int = MAX_BOOLEANS,
    max_term: int = MAX_TERM_LENGTH,
) -> CQLQuery:
    """Parse a CQL query (with an optional C{sortBy}); raise L{SRUError} if it is not one.

    @param text: the query as received (the C{query} parameter, already URL-decoded).
    @param max_length: characters allowed (diagnostic 12 beyond).
    @param max_depth: nesting of parentheses and prefix assignments allowed (13 beyond).
    @param max_booleans: boolean operators allowed (38 beyond).
    @param max_term: characters allowed in one term (23 beyond).
    """
    if len(text) > max_length:
        raise SRUError(Diagnostic.TOO_MANY_CHARACTERS_IN_QUERY, f"limit is {max_length}")
    if not text.strip():
        raise SRUError(Diagnostic.QUERY_SYNTAX_ERROR, "empty query")
    return _Parser(_tokens(text, max_term), max_depth, max_booleans).sorted_query()


def parse_scan_clause(text: str, *, max_length: int = MAX_QUERY_LENGTH) -> Query:
    """Parse an SRU C{scanClause}: one search clause, after optional prefix assignments.

    The result is a L{SearchClause}, or a L{PrefixedQuery} around one.
    """
    query = parse(text, max_length=max_length)
    node = query.root
    while isinstance(node, PrefixedQuery):
        node = node.query
    if query.sort_keys or not isinstance(node, SearchClause):
        raise SRUError(Diagnostic.QUERY_SYNTAX_ERROR, "a scan clause is a single search clause")
    return query.root


# -- walking and printing -----------------------------------------------------------------------


def clauses(query: Query) -> Iterator[SearchClause]:
    """Every search clause in the tree, left to right."""
    stack: list[Query] = [query]
    while stack:
        node = stack.pop()
        if isinstance(node, SearchClause):
            yield node
        elif isinstance(node, BooleanNode):
            stack.append(node.right)
            stack.append(node.left)
        else:
            stack.append(node.query)


def _quote(term: str) -> str:
    """A term as CQL text: bare when it reads back as itself, else quoted."""
    if (
        term
        and not any(char.isspace() or char in _SPECIAL for char in term)
        and term.lower() not in BOOLEANS
        and term.lower() != _SORTBY
    ):
        return term
    return '"' + term.replace('"', '\\"') + '"'


def _modifiers_text(modifiers: tuple[Modifier, ...]) -> str:
    parts = []
    for modifier in modifiers:
        text = "/" + _quote(modifier.name)
        if modifier.comparitor is not None and modifier.value is not None:
            text += modifier.comparitor + _quote(modifier.value)
        parts.append(text)
    return "".join(parts)


def _query_text(node: Query) -> str:
    if isinstance(node, SearchClause):
        if node.index is None or node.relation is None:
            return _quote(node.term)
        relation = node.relation.name
        if relation not in COMPARITOR_SYMBOLS:
            relation = _quote(relation)
        return (f"{_quote(node.index)} {relation}{_modifiers_text(node.relation.modifiers)} "
                f"{_quote(node.term)}")
    if isinstance(node, BooleanNode):
        right = _query_text(node.right)
        if not isinstance(node.right, SearchClause):
            right = f"({right})"
        left = _query_text(node.left)
        if isinstance(node.left, PrefixedQuery):
            left = f"({left})"
        return f"{left} {node.operator.name}{_modifiers_text(node.operator.modifiers)} {right}"
    assignments = " ".join(
        f">{_quote(a.uri)}" if a.prefix is None else f">{_quote(a.prefix)}={_quote(a.uri)}"
        for a in node.assignments
    )
    return f"{assignments} {_query_text(node.query)}"


def to_cql(query: CQLQuery | Query) -> str:
    """Canonical CQL text for a tree: L{parse} of it gives the same tree back."""
    if isinstance(query, CQLQuery):
        text = _query_text(query.root)
        if query.sort_keys:
            keys = " ".join(_quote(k.index) + _modifiers_text(k.modifiers)
                            for k in query.sort_keys)
            text = f"{text} sortBy {keys}"
        return text
    return _query_text(query)


# -- masking and anchoring ----------------------------------------------------------------------


class Mask(Enum):
    """An unescaped masking character in a term."""

    ANY = "*"  # zero or more characters
    ONE = "?"  # exactly one character


@dataclass(frozen=True, slots=True)
class MaskedTerm:
    """A term read for masking: literal runs and masks, and whether C{^} anchors either end."""

    parts: tuple[str | Mask, ...]
    anchored_start: bool = False
    anchored_end: bool = False

    @property
    def literal(self) -> str:
        """The term's literal characters, masks left out."""
        return "".join(part for part in self.parts if isinstance(part, str))

    @property
    def is_plain(self) -> bool:
        """True when the term has no masking character."""
        return all(isinstance(part, str) for part in self.parts)

    def truncation(self) -> tuple[str, bool, bool] | None:
        """C{(text, left, right)} when the only masks are one C{*} at either end, else None.

        This is what Z39.50 truncation (Bib-1 attribute type 5) can express.
        """
        parts = list(self.parts)
        left = bool(parts) and parts[0] is Mask.ANY
        right = len(parts) > int(left) and parts[-1] is Mask.ANY
        core = parts[int(left) : len(parts) - int(right)]
        if not all(isinstance(part, str) for part in core):
            return None
        return "".join(str(part) for part in core), left, right


_ESCAPABLE = frozenset('*?^\\"')


def masked(term: str, *, strict_escapes: bool = False) -> MaskedTerm:
    """Read a clause's term for masking (C{*}, C{?}) and anchoring (C{^}).

    A backslash makes the next character literal. C{^} anchors only at the very start or end
    (diagnostic 32 elsewhere). With C{strict_escapes}, escaping a character that is not
    special is diagnostic 26, as the specification allows a server to say.
    """
    parts: list[str | Mask] = []
    literal: list[str] = []
    anchored_start = anchored_end = False
    i, n = 0, len(term)
    while i < n:
        char = term[i]
        if char == "\\" and i + 1 < n:
            escaped = term[i + 1]
            if strict_escapes and escaped not in _ESCAPABLE:
                raise SRUError(Diagnostic.NON_SPECIAL_CHARACTER_ESCAPED, repr(term))
            literal.append(escaped)
            i += 2
            continue
        if char in "*?":
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Mask(char))
        elif char == "^":
            if i == 0:
                anchored_start = True
            elif i == n - 1:
                anchored_end = True
            else:
                raise SRUError(Diagnostic.ANCHORING_CHARACTER_IN_UNSUPPORTED_POSITION, repr(term))
        else:
            literal.append(char)
        i += 1
    if literal:
        parts.append("".join(literal))
    return MaskedTerm(tuple(parts), anchored_start, anchored_end)
