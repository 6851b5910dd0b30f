# -*- test-case-name: tests.protocols.test_z3950_pqf -*-
"""Type-1 (RPN) query model, PQF parser and printer, and conversion to and from pyasn1.

The model is a few frozen dataclasses:

* L{Attribute} C{(attrset, type, value)}: attrset an OID or C{None} (= the query's set),
  value an C{int} (numeric), a C{str} (complex string) or a tuple of them (complex list);
* L{Term} (a search term with its attributes), L{ResultSetRef} (C{@set name});
* L{And}, L{Or}, L{AndNot} (binary operators);
* L{Query}: the root node plus the query's attribute set (bib-1 by default).

PQF (YAZ's Prefix Query Format) as used by yaz-client and brokers::

    @attr 1=7 0262011530
    @attrset bib-1 @and @attr 1=4 "pride and prejudice" @attr 1=1003 austen
    @or @attr bib-1 1=12 rec0003 @set default

Attributes written before an operator apply to every term below it (as in YAZ).
Parse errors raise L{PQFError}; an RPN construct the model lacks (proximity, type-101
result-set-plus-attributes) raises L{QueryConversionError} on conversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from pyasn1.type import univ

from . import oids
from .asn1 import AttributeElement, Operand, RPNQuery, RPNStructure
from .charset import TermDecoder
from .errors import PQFError, QueryConversionError

__all__ = [
    "And",
    "AndNot",
    "Attribute",
    "Node",
    "Or",
    "Query",
    "ResultSetRef",
    "Term",
    "parse_pqf",
    "to_pqf",
    "query_to_rpn",
    "query_from_rpn",
    "term_from_apt",
    "fill_apt",
    "fill_attributes",
    "attribute_from_asn1",
    "MAX_QUERY_DEPTH",
]

MAX_QUERY_DEPTH = 100
"""Deepest operator nesting accepted (parser and converters), to stay clear of recursion limits."""

AttributeValue = int | str | tuple[int | str, ...]


class Attribute(NamedTuple):
    """One attribute: C{(attrset OID or None, type, value)}; e.g. C{(None, 1, 4)} = title."""

    attrset: oids.Oid | None
    type: int
    value: AttributeValue


@dataclass(frozen=True)
class Term:
    """A search term with its attributes.

    @ivar value: the term as text (decoded from the wire; encoded as UTF-8 on output).
    @ivar kind: the Term CHOICE arm: C{"general"} (OCTET STRING, the usual),
        C{"numeric"}, C{"characterString"} or C{"null"}.
    """

    value: str
    attributes: tuple[Attribute, ...] = ()
    kind: str = "general"

    def attribute(self, type_: int) -> AttributeValue | None:
        """Return the value of the first attribute of C{type_} (e.g. 1 = Use), or None."""
        for attr in self.attributes:
            if attr.type == type_:
                return attr.value
        return None


@dataclass(frozen=True)
class ResultSetRef:
    """A reference to an existing result set (C{@set name})."""

    name: str


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class AndNot:
    left: Node
    right: Node


Node = Term | ResultSetRef | And | Or | AndNot

_OPERATORS: dict[str, type[And] | type[Or] | type[AndNot]] = {
    "@and": And,
    "@or": Or,
    "@not": AndNot,
}
_OPERATOR_NAMES = {And: "@and", Or: "@or", AndNot: "@not"}


@dataclass(frozen=True)
class Query:
    """A type-1 query: the root node and the default attribute set (bib-1 unless given)."""

    root: Node
    attribute_set: oids.Oid = oids.BIB1_ATTRSET

    def terms(self) -> list[Term]:
        """Return every L{Term} in the query, left to right."""
        out: list[Term] = []
        stack: list[Node] = [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, Term):
                out.append(node)
            elif isinstance(node, (And, Or, AndNot)):
                stack.append(node.right)
                stack.append(node.left)
        return out


# --------------------------------------------------------------------------------------
# Parser


class _Token(NamedTuple):
    text: str
    quoted: bool
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        start = i
        if ch == '"':
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise PQFError("unterminated quoted term", start)
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    buf.append(text[i + 1])
                    i += 2
                    continue
                if ch == '"':
                    i += 1
                    break
                buf.append(ch)
                i += 1
            tokens.append(_Token("".join(buf), True, start))
            continue
        while i < n and not text[i].isspace() and text[i] != '"':
            i += 1
        tokens.append(_Token(text[start:i], False, start))
    return tokens


def _attrset(name: str, pos: int) -> oids.Oid:
    try:
        return oids.resolve_oid(name)
    except ValueError:
        raise PQFError(f"unknown attribute set {name!r}", pos) from None


def _attr_value(text: str) -> AttributeValue:
    parts = text.split(",")
    values: list[int | str] = [int(p) if _is_int(p) else p for p in parts]
    if len(values) == 1:
        return values[0]
    return tuple(values)


def _is_int(text: str) -> bool:
    return text.isdigit() or (text[:1] == "-" and text[1:].isdigit())


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.end = len(text)

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, what: str) -> _Token:
        tok = self.peek()
        if tok is None:
            raise PQFError(f"expected {what}, found end of query", self.end)
        self.i += 1
        return tok

    def parse(self) -> Query:
        attrset = oids.BIB1_ATTRSET
        tok = self.peek()
        if tok is not None and not tok.quoted and tok.text == "@attrset":
            self.i += 1
            name = self.take("attribute set name")
            attrset = _attrset(name.text, name.pos)
        root = self.structure((), 0)
        extra = self.peek()
        if extra is not None:
            raise PQFError(f"unexpected {extra.text!r} after the query", extra.pos)
        return Query(root, attrset)

    def structure(self, inherited: tuple[Attribute, ...], depth: int) -> Node:
        if depth > MAX_QUERY_DEPTH:
            tok = self.peek()
            raise PQFError("query nested too deeply", tok.pos if tok else self.end)
        attrs = list(inherited)
        while True:
            tok = self.take("a term, @attr, @set or an operator")
            if tok.quoted or not tok.text.startswith("@"):
                return Term(tok.text, tuple(attrs))
            word = tok.text
            if word == "@attr":
                attrs.append(self.attribute())
                continue
            if word == "@set":
                name = self.take("result set name")
                return ResultSetRef(name.text)
            op = _OPERATORS.get(word)
            if op is not None:
                left = self.structure(tuple(attrs), depth + 1)
                right = self.structure(tuple(attrs), depth + 1)
                return op(left, right)
            if word == "@attrset":
                raise PQFError("@attrset is only allowed at the start of the query", tok.pos)
            if word in ("@prox", "@term"):
                raise PQFError(f"{word} is not supported", tok.pos)
            raise PQFError(f"unknown operator {word!r}", tok.pos)

    def attribute(self) -> Attribute:
        tok = self.take("type=value after @attr")
        attrset: oids.Oid | None = None
        if "=" not in tok.text:
            attrset = _attrset(tok.text, tok.pos)
            tok = self.take("type=value after @attr set")
        type_text, sep, value_text = tok.text.partition("=")
        if not sep or not type_text.isdigit() or not value_text:
            raise PQFError(f"bad attribute {tok.text!r} (want type=value)", tok.pos)
        return Attribute(attrset, int(type_text), _attr_value(value_text))


def parse_pqf(text: str) -> Query:
    """Parse a PQF string into a L{Query}.

    @raise PQFError: syntax error, unknown attribute set or operator, or too deep.
    """
    return _Parser(text).parse()


# --------------------------------------------------------------------------------------
# Printer


def _quote(text: str) -> str:
    if text and not text.startswith("@") and not any(c.isspace() or c in '"\\' for c in text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _set_name(oid: oids.Oid) -> str:
    return oids.oid_name(oid) or oids.oid_to_dotted(oid)


def _attr_text(attr: Attribute) -> str:
    value = attr.value
    if isinstance(value, tuple):
        value_text = ",".join(str(v) for v in value)
    else:
        value_text = str(value)
    prefix = f"@attr {_set_name(attr.attrset)} " if attr.attrset is not None else "@attr "
    return f"{prefix}{attr.type}={value_text}"


def to_pqf(query: Query) -> str:
    """Render C{query} as PQF; C{parse_pqf(to_pqf(q)) == q} for string-typed terms."""
    parts: list[str] = []
    if tuple(query.attribute_set) != oids.BIB1_ATTRSET:
        parts.append(f"@attrset {_set_name(query.attribute_set)}")
    stack: list[Node] = [query.root]
    while stack:
        node = stack.pop()
        if isinstance(node, Term):
            parts.extend(_attr_text(a) for a in node.attributes)
            parts.append(_quote(node.value))
        elif isinstance(node, ResultSetRef):
            parts.append(f"@set {_quote(node.name)}")
        else:
            parts.append(_OPERATOR_NAMES[type(node)])
            stack.append(node.right)
            stack.append(node.left)
    return " ".join(parts)


# --------------------------------------------------------------------------------------
# pyasn1 conversion


def fill_attributes(target: univ.SequenceOf, attributes: tuple[Attribute, ...]) -> None:
    """Append AttributeElements for C{attributes} to an (empty) AttributeList in place."""
    for raw in attributes:
        attr = Attribute(*raw)
        elem = AttributeElement()
        if attr.attrset is not None:
            elem["attributeSet"] = tuple(attr.attrset)
        elem["attributeType"] = attr.type
        value = attr.value
        if isinstance(value, int):
            elem["attributeValue"]["numeric"] = value
        else:
            items = value if isinstance(value, tuple) else (value,)
            lst = elem["attributeValue"]["complex"]["list"]
            for item in items:
                son = lst.componentType.clone()
                if isinstance(item, int):
                    son["numeric"] = item
                else:
                    son["string"] = item.encode("utf-8")
                lst.append(son)
        target.append(elem)


def _fill_term(target: univ.Choice, term: Term, charset: str) -> None:
    if term.kind == "general":
        target["general"] = term.value.encode(charset)
    elif term.kind == "numeric":
        target["numeric"] = int(term.value)
    elif term.kind == "characterString":
        target["characterString"] = term.value.encode(charset)
    elif term.kind == "null":
        target["null"] = ""
    else:
        raise QueryConversionError(f"unsupported term kind {term.kind!r}")


def fill_apt(target: univ.Sequence, term: Term, charset: str = "utf-8") -> None:
    """Fill an AttributesPlusTerm (as used in RPN and ScanRequest) from a L{Term}."""
    fill_attributes(target["attributes"], term.attributes)
    _fill_term(target["term"], term, charset)


def _fill_structure(target: RPNStructure, node: Node, charset: str, depth: int) -> None:
    if depth > MAX_QUERY_DEPTH:
        raise QueryConversionError("query nested too deeply")
    if isinstance(node, Term):
        fill_apt(target["op"]["attrTerm"], node, charset)
    elif isinstance(node, ResultSetRef):
        target["op"]["resultSet"] = node.name.encode(charset)
    else:
        op = target["rpnRpnOp"]
        _fill_structure(op["rpn1"], node.left, charset, depth + 1)
        _fill_structure(op["rpn2"], node.right, charset, depth + 1)
        arm = {And: "and", Or: "or", AndNot: "and-not"}[type(node)]
        op["op"][arm] = ""


def query_to_rpn(query: Query, charset: str = "utf-8", target: RPNQuery | None = None) -> RPNQuery:
    """Build the pyasn1 RPNQuery for C{query} (terms encoded in C{charset}).

    Pass C{target} (e.g. C{search["query"]["type-1"]}) to fill a correctly tagged component
    in place.
    """
    rpn = RPNQuery() if target is None else target
    rpn["attributeSet"] = tuple(query.attribute_set)
    _fill_structure(rpn["rpn"], query.root, charset, 0)
    return rpn


def attribute_from_asn1(elem: univ.Sequence, decoder: TermDecoder) -> Attribute:
    """Convert one decoded AttributeElement to an L{Attribute} (complex strings decoded)."""
    aset = elem["attributeSet"]
    attrset = tuple(aset) if aset.isValue else None
    val = elem["attributeValue"]
    value: AttributeValue
    if val.getName() == "numeric":
        value = int(val["numeric"])
    else:
        items: list[int | str] = []
        for son in val["complex"]["list"]:
            if son.getName() == "numeric":
                items.append(int(son["numeric"]))
            else:
                items.append(decoder.decode(son["string"].asOctets()))
        if len(items) == 1 and isinstance(items[0], str):
            value = items[0]
        else:
            value = tuple(items)
    return Attribute(attrset, int(elem["attributeType"]), value)


def term_from_apt(apt: univ.Sequence, decoder: TermDecoder | None = None) -> Term:
    """Convert an AttributesPlusTerm into a L{Term} (bytes decoded with C{decoder})."""
    dec = decoder or TermDecoder()
    attrs = tuple(attribute_from_asn1(e, dec) for e in apt["attributes"])
    term = apt["term"]
    kind = term.getName()
    if kind == "general":
        return Term(dec.decode(term["general"].asOctets()), attrs)
    if kind == "numeric":
        return Term(str(int(term["numeric"])), attrs, "numeric")
    if kind == "characterString":
        return Term(dec.decode(term["characterString"].asOctets()), attrs, "characterString")
    if kind == "null":
        return Term("", attrs, "null")
    raise QueryConversionError(f"unsupported term type {kind}")


def _node_from_asn1(struct: univ.Choice, decoder: TermDecoder, depth: int) -> Node:
    if depth > MAX_QUERY_DEPTH:
        raise QueryConversionError("query nested too deeply")
    if struct.getName() == "op":
        operand: Operand = struct["op"]
        arm = operand.getName()
        if arm == "attrTerm":
            return term_from_apt(operand["attrTerm"], decoder)
        if arm == "resultSet":
            return ResultSetRef(decoder.decode(operand["resultSet"].asOctets()))
        raise QueryConversionError("result-set-plus-attributes operands are not supported")
    op = struct["rpnRpnOp"]
    left = _node_from_asn1(op["rpn1"], decoder, depth + 1)
    right = _node_from_asn1(op["rpn2"], decoder, depth + 1)
    name = op["op"].getName()
    if name == "and":
        return And(left, right)
    if name == "or":
        return Or(left, right)
    if name == "and-not":
        return AndNot(left, right)
    raise QueryConversionError("proximity operators are not supported")


def query_from_rpn(rpn: RPNQuery, decoder: TermDecoder | None = None) -> Query:
    """Convert a decoded pyasn1 RPNQuery to a L{Query}.

    @raise QueryConversionError: proximity, type-101 operands or unknown term types.
    """
    dec = decoder or TermDecoder()
    root = _node_from_asn1(rpn["rpn"], dec, 0)
    return Query(root, tuple(rpn["attributeSet"]))
