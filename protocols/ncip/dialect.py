# -*- test-case-name: tests.protocols.test_ncip_parse -*-
"""Tell the NCIP dialects apart by namespace and structure, never by the C{version} string.

- NCIP 2 in the NCIP namespace, with a prefix (C{ns1:}) or as the default namespace;
- NCIP 2 element names with no namespace at all (FOLIO test inputs);
- NCIP 1: no namespace, C{<Scheme>/<Value>} children and C{Unique*}/C{VisibleUserId} ids;
- C{NCIPVersionMessage} (LookupVersion, its own little schema).
"""

from __future__ import annotations

from enum import Enum

from lxml import etree

from .codes import NCIP2_NS
from .problems import NCIPSyntaxError


class Dialect(Enum):
    """The major protocol shape of a message (and of the reply it gets)."""

    NCIP2 = "ncip2"
    NCIP1 = "ncip1"
    VERSION = "version"


class PrefixStyle(Enum):
    """How NCIP 2 elements are namespaced; per-peer choice for replies."""

    NS1 = "ns1"
    """C{<ns1:NCIPMessage xmlns:ns1="...">} (XC toolkit, Alma, FOLIO); a request may use
    another prefix, which a reply in the request's style repeats."""
    DEFAULT = "default-namespace"
    """C{<NCIPMessage xmlns="...">} (ILLiad, Koha, DCB)."""
    NONE = "none"
    """No namespace at all (FOLIO test inputs; also every NCIP 1 message)."""


_V1_MARKERS = frozenset(
    {"UniqueAgencyId", "UniqueUserId", "UniqueItemId", "UniqueRequestId", "VisibleUserId"}
)
_ROOTS = frozenset({"NCIPMessage", "NCIPVersionMessage"})


def local_name(element: etree._Element) -> str:
    """The local part of an element's tag (C{""} for comments and the like)."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def namespace(element: etree._Element) -> str | None:
    """The namespace URI of an element, or None."""
    tag = element.tag
    if isinstance(tag, str) and tag.startswith("{"):
        return tag[1:].partition("}")[0]
    return None


def _looks_like_ncip1(root: etree._Element) -> bool:
    for element in root.iter():
        name = local_name(element)
        if name in _V1_MARKERS:
            return True
        if name == "Value" and namespace(element) is None:
            return True
    return False


def classify(root: etree._Element) -> tuple[Dialect, PrefixStyle, str | None]:
    """Return (dialect, prefix style, prefix) of a parsed document.

    @raise NCIPSyntaxError: the root is not an NCIP message root, or in a foreign namespace.
    """
    name = local_name(root)
    uri = namespace(root)
    if name not in _ROOTS:
        raise NCIPSyntaxError("root is not NCIPMessage")
    if uri == NCIP2_NS:
        style = PrefixStyle.DEFAULT if root.prefix is None else PrefixStyle.NS1
        return Dialect.NCIP2, style, root.prefix
    if uri is not None:
        raise NCIPSyntaxError("foreign namespace")
    if name == "NCIPVersionMessage":
        return Dialect.VERSION, PrefixStyle.NONE, None
    if _looks_like_ncip1(root):
        return Dialect.NCIP1, PrefixStyle.NONE, None
    return Dialect.NCIP2, PrefixStyle.NONE, None


def version_attribute(root: etree._Element) -> str | None:
    """The root's C{version} attribute, qualified or not (kept for logs; never trusted)."""
    for key, value in root.attrib.items():
        if key.rpartition("}")[2] == "version":
            return str(value)
    return None
