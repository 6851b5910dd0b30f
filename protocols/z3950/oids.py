# -*- test-case-name: tests.protocols.test_z3950_codec -*-
"""Object identifiers a Z39.50 server needs (prefix 1.2.840.10003), with short names.

Values follow YAZ's ``oid.csv`` (``shared/z3950/data/oids.tsv``). OIDs are plain tuples of
ints so they compare and hash cheaply and convert to and from pyasn1
C{ObjectIdentifier} values with C{tuple(oid)} / C{ObjectIdentifier(oid)}.
"""

from __future__ import annotations

__all__ = [
    "Oid",
    "Z3950_PREFIX",
    "oid_from_dotted",
    "oid_name",
    "oid_to_dotted",
    "resolve_oid",
]

Oid = tuple[int, ...]

Z3950_PREFIX: Oid = (1, 2, 840, 10003)


def _z(*arcs: int) -> Oid:
    return Z3950_PREFIX + arcs


# Record syntaxes (class 5).
UNIMARC: Oid = _z(5, 1)
USMARC: Oid = _z(5, 10)
MARC21 = USMARC
EXPLAIN: Oid = _z(5, 100)
SUTRS: Oid = _z(5, 101)
OPAC: Oid = _z(5, 102)
SUMMARY: Oid = _z(5, 103)
GRS1: Oid = _z(5, 105)
ES_TASK_PACKAGE: Oid = _z(5, 106)
XML: Oid = _z(5, 109, 10)
"""text-XML; MARCXML and OPAC-XML travel under it."""
APPLICATION_XML: Oid = _z(5, 109, 11)
JSON: Oid = _z(5, 1000, 81, 3)

# Attribute sets (class 3).
BIB1_ATTRSET: Oid = _z(3, 1)
EXP1_ATTRSET: Oid = _z(3, 2)
EXT1_ATTRSET: Oid = _z(3, 3)
HOLDINGS_ATTRSET: Oid = _z(3, 16)
BIB2_ATTRSET: Oid = _z(3, 18)

# Diagnostic sets and formats (class 4).
BIB1_DIAGSET: Oid = _z(4, 1)
DIAG1_FORMAT: Oid = _z(4, 2)

# Extended services (class 9).
ES_PERSISTENT_RS: Oid = _z(9, 1)
ES_ITEM_ORDER: Oid = _z(9, 4)
ES_UPDATE: Oid = _z(9, 5)

# User information formats (class 10).
USERINFO_SEARCH_RESULT_1: Oid = _z(10, 1)
USERINFO_CHARSET_NEGOTIATION: Oid = _z(10, 2)
USERINFO_1: Oid = _z(10, 3)

# Negotiation record definitions (class 15).
CHARSET_NEGOTIATION_3: Oid = _z(15, 3)
NEGOTIATION_CHARSET_ID: Oid = _z(15, 1000, 81, 1)
"""Index Data's OID for a character set named in a private, externally specified set (YAZ)."""

# Schemas (class 13).
SCHEMA_HOLDINGS: Oid = _z(13, 7)

# ISO 10646 transfer-syntax ("form") OIDs used by charneg-3: 1.0.10646.1.0.form.
ISO10646_UCS2: Oid = (1, 0, 10646, 1, 0, 2)
ISO10646_UCS4: Oid = (1, 0, 10646, 1, 0, 4)
ISO10646_UTF16: Oid = (1, 0, 10646, 1, 0, 5)
ISO10646_UTF8: Oid = (1, 0, 10646, 1, 0, 8)

_NAMES: dict[Oid, str] = {
    UNIMARC: "unimarc",
    USMARC: "usmarc",
    EXPLAIN: "explain",
    SUTRS: "sutrs",
    OPAC: "opac",
    SUMMARY: "summary",
    GRS1: "grs-1",
    ES_TASK_PACKAGE: "es-task-package",
    XML: "xml",
    APPLICATION_XML: "application-xml",
    JSON: "json",
    BIB1_ATTRSET: "bib-1",
    EXP1_ATTRSET: "exp-1",
    EXT1_ATTRSET: "ext-1",
    HOLDINGS_ATTRSET: "holdings",
    BIB2_ATTRSET: "bib-2",
    BIB1_DIAGSET: "bib-1-diag",
    DIAG1_FORMAT: "diag-1",
    ES_PERSISTENT_RS: "es-persistent-result-set",
    ES_ITEM_ORDER: "es-item-order",
    ES_UPDATE: "es-update",
    USERINFO_SEARCH_RESULT_1: "searchresult-1",
    USERINFO_CHARSET_NEGOTIATION: "charset-negotiation",
    USERINFO_1: "userinfo-1",
    CHARSET_NEGOTIATION_3: "charneg-3",
    SCHEMA_HOLDINGS: "holdings-schema",
}

_ALIASES: dict[str, Oid] = {name: oid for oid, name in _NAMES.items()}
_ALIASES.update(
    {
        "marc21": USMARC,
        "text-xml": XML,
        "marcxml": XML,
        "bib1": BIB1_ATTRSET,
        "exp1": EXP1_ATTRSET,
        "ext1": EXT1_ATTRSET,
        "bib2": BIB2_ATTRSET,
        "grs1": GRS1,
    }
)


def oid_to_dotted(oid: Oid) -> str:
    """Return C{oid} in dotted form, e.g. C{"1.2.840.10003.5.102"}."""
    return ".".join(str(arc) for arc in oid)


def oid_from_dotted(text: str) -> Oid:
    """Parse a dotted OID; raise C{ValueError} unless it has at least two numeric arcs."""
    parts = text.strip().split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a dotted OID: {text!r}")
    return tuple(int(p) for p in parts)


def oid_name(oid: Oid) -> str | None:
    """Return the short name of a known OID (C{"opac"}, C{"bib-1"}), or C{None}."""
    return _NAMES.get(tuple(oid))


def resolve_oid(name_or_dotted: str) -> Oid:
    """Resolve a short name (case-insensitive: C{"bib-1"}, C{"usmarc"}) or dotted OID.

    @raise ValueError: unknown name and not a dotted OID.
    """
    oid = _ALIASES.get(name_or_dotted.strip().lower())
    if oid is not None:
        return oid
    return oid_from_dotted(name_or_dotted)
