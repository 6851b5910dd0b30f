# -*- test-case-name: tests.protocols.test_ncip_security -*-
"""Hardened XML reading for NCIP bodies: size cap, DOCTYPE policy, no entities, no network.

One module-level parser with entity resolution, DTD loading and network access off. Before
parsing, the body is checked against a size bound; the standard NCIP 1 DOCTYPE (with no
internal subset, or an empty one as INN-Reach sends) is removed; any other DOCTYPE, and any
entity declaration, is refused. After parsing, a DOCTYPE that slipped through or an entity
reference left in the tree is refused as well. Every refusal is an L{NCIPSyntaxError}, which
the writer answers with C{Invalid Message Syntax Error}. libxml2's own depth limit (256
without C{huge_tree}) makes absurd nesting fail fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from .problems import NCIPSyntaxError

DEFAULT_MAX_BYTES = 256 * 1024
"""Default cap on a request body; real NCIP requests are 0.2-5 KB."""

PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)
"""The only parser NCIP input goes through (lxml parsers are safe to reuse serially)."""

_STANDARD_DOCTYPE = re.compile(
    rb"<!DOCTYPE\s+(?:NCIPMessage|NCIPVersionMessage)\s+"
    rb"(?:PUBLIC\s+(?P<q1>[\"'])(?P<pub>[^\"'<>\[\]]*)(?P=q1)\s*"
    rb"(?:(?P<q2>[\"'])(?P<sys>[^\"'<>\[\]]*)(?P=q2))?"
    rb"|SYSTEM\s+(?P<q3>[\"'])(?P<sys2>[^\"'<>\[\]]*)(?P=q3))"
    rb"\s*(?:\[\s*\])?\s*>"
)
_NCIP_SYSTEM_ID = re.compile(rb"ncip_v1_0?1?\.dtd$|ncip_version\.xsd$", re.I)
_DECLARATION = re.compile(rb"^(\xef\xbb\xbf)?<\?xml[^>]*\?>")
_MARKUP_DECLARATION = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.I)  # as upper() would find
_LATIN1 = re.compile(rb"""encoding\s*=\s*["'](?:iso-8859-1|iso8859-1|latin-?1)["']""", re.I)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._:-]*)["']""")
_UTF8_NAMES = frozenset({b"utf-8", b"utf8"})
_C1 = re.compile(rb"[\x80-\x9f]")


@dataclass(frozen=True)
class XmlDocument:
    """A safely parsed NCIP document.

    @ivar root: the root element.
    @ivar notes: things worth flagging in the audit record (e.g. C{"doctype-stripped"},
        C{"latin1-declared-utf8-sent"}, C{"charset-fallback:windows-1252"}).
    """

    root: etree._Element
    notes: tuple[str, ...] = ()


def _strip_doctype(data: bytes, notes: list[str]) -> bytes:
    if _MARKUP_DECLARATION.search(data) is None:  # the common case, without an upper() copy
        return data
    upper = data.upper()
    if b"<!DOCTYPE" not in upper:
        if b"<!ENTITY" in upper:
            raise NCIPSyntaxError("entity declaration")
        return data
    match = _STANDARD_DOCTYPE.search(data)
    if match is None:
        raise NCIPSyntaxError("DOCTYPE refused")
    public = match["pub"] or b""
    system = match["sys"] or match["sys2"] or b""
    if not (public.startswith(b"-//NISO//NCIP") or _NCIP_SYSTEM_ID.search(system)):
        raise NCIPSyntaxError("DOCTYPE refused")
    rest = data[: match.start()] + data[match.end() :]
    if b"<!DOCTYPE" in rest.upper() or b"<!ENTITY" in rest.upper():
        raise NCIPSyntaxError("DOCTYPE refused")
    notes.append("doctype-stripped")
    return rest


def _fix_encoding(data: bytes, notes: list[str]) -> bytes:
    declaration = _DECLARATION.match(data)
    if declaration is None or not _LATIN1.search(declaration.group(0)):
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    if text.isascii():
        return data
    notes.append("latin1-declared-utf8-sent")
    fixed = _LATIN1.sub(b'encoding="UTF-8"', declaration.group(0))
    return fixed + data[declaration.end() :]


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def declares_latin1(data: bytes) -> bool:
    """Whether a body's XML declaration names ISO-8859-1 (cheap: the declaration only)."""
    declaration = _DECLARATION.match(data)
    return declaration is not None and _LATIN1.search(declaration.group(0)) is not None


def needs_fallback(data: bytes) -> bool:
    """Whether a body's bytes are not what it declares: not UTF-8 while declaring UTF-8 or no
    encoding at all, or declaring ISO-8859-1 while carrying bytes 0x80-0x9F (control
    characters in Latin-1; Windows-1252's quotes, dashes and euro sign) that are not UTF-8.
    Such a body is decoded with the sender's fallback charset (L{parse_xml})."""
    declaration = _DECLARATION.match(data)
    match = _ENCODING.search(declaration.group(0)) if declaration else None
    declared = match.group(1).lower() if match else b""
    if not declared or declared in _UTF8_NAMES:
        return not _utf8(data)
    if _LATIN1.search(declaration.group(0) if declaration else b""):
        return _C1.search(data) is not None and not _utf8(data)
    return False


def _decode_fallback(data: bytes, charset: str, notes: list[str]) -> bytes:
    """The body re-encoded as UTF-8 from ``charset`` (its declaration replaced)."""
    declaration = _DECLARATION.match(data)
    body = data[declaration.end():] if declaration else data
    try:
        text = body.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise NCIPSyntaxError(f"neither UTF-8 nor {charset}") from exc
    notes.append(f"charset-fallback:{charset}")
    return b'<?xml version="1.0" encoding="UTF-8"?>' + text.encode("utf-8")


def parse_xml(raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES, *,
              fallback_charset: str | None = None) -> XmlDocument:
    """Parse an NCIP body under the hardening rules above.

    @param raw: the HTTP body as received.
    @param max_bytes: refuse larger bodies before any parsing.
    @param fallback_charset: how the sender really encodes when its bytes are not what it
        declares (L{needs_fallback}), e.g. C{"windows-1252"} for ILLiad; noted as
        C{"charset-fallback:<charset>"} when used.
    @raise NCIPSyntaxError: the body is too large, not well-formed, or carries a DOCTYPE or
        entities we refuse.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError("parse_xml takes bytes")
    data = bytes(raw)
    if len(data) > max_bytes:
        raise NCIPSyntaxError("body too large")
    if not data.strip():
        raise NCIPSyntaxError("empty body")
    notes: list[str] = []
    data = _strip_doctype(data, notes)
    if fallback_charset and needs_fallback(data):
        data = _decode_fallback(data, fallback_charset, notes)
    data = _fix_encoding(data, notes)
    try:
        root = etree.fromstring(data, PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise NCIPSyntaxError("not well-formed") from exc
    if root is None:
        raise NCIPSyntaxError("no root element")
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None:
        raise NCIPSyntaxError("DOCTYPE slipped through")
    for _ in root.iter(etree.Entity):
        raise NCIPSyntaxError("entity reference")
    return XmlDocument(root=root, notes=tuple(notes))
