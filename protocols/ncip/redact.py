# -*- test-case-name: tests.protocols.test_ncip_redact -*-
"""Redact NCIP bodies before they reach the audit store or a log line.

Secrets (C{AuthenticationInputData}, agency/system authentication) are always removed.
With C{personal=True}, names, addresses, e-mail, dates of birth and user identifiers are
replaced by a placeholder, or by C{pseudonymize(value)} for identifiers when given (so the
audit trail can still correlate one patron's messages without storing the barcode).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

from lxml import etree

from .problems import NCIPSyntaxError
from .safexml import DEFAULT_MAX_BYTES, parse_xml

SECRET_PLACEHOLDER = "***"
PERSONAL_PLACEHOLDER = "[redacted]"

SECRET_ELEMENTS = frozenset(
    {"AuthenticationInputData", "FromAgencyAuthentication", "FromSystemAuthentication"}
)
PERSONAL_ELEMENTS = frozenset(
    {
        "GivenName",
        "Surname",
        "Prefix",
        "Initials",
        "Suffix",
        "UnstructuredPersonalUserName",
        "OrganizationName",
        "ElectronicAddressData",
        "UnstructuredAddressData",
        "Line1",
        "Line2",
        "Street",
        "HouseName",
        "PostOfficeBox",
        "PostalCode",
        "Locality",
        "DateOfBirth",
    }
)
IDENTIFIER_ELEMENTS = frozenset({"UserIdentifierValue", "VisibleUserIdentifier"})

_SECRET_TEXT = re.compile(
    rb"(<(?:\w+:)?(?:AuthenticationInputData|FromAgencyAuthentication|FromSystemAuthentication"
    rb"|\w*(?i:pin|password|passwd|passcode|secret|token|credential)\w*)\b[^>]*>)[^<]*"
)

SECRET_WORDS = frozenset(
    {"pin", "pins", "password", "passwd", "pwd", "passcode", "passphrase", "secret", "token",
     "credential", "credentials"}
)
"""Words that make an element or attribute name a secret by meaning, wherever it is (an
``Ext`` with ``<UserPIN>``, ``<pinCode>``, a ``password=""`` attribute), in any case."""

_NAME_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

_NONE, _SECRET, _PERSONAL, _IDENTIFIER = range(4)
_PLACEHOLDERS = frozenset({SECRET_PLACEHOLDER, PERSONAL_PLACEHOLDER})
_KINDS: dict[str, int] = {}


def secret_name(name: str) -> bool:
    """True when an element or attribute name says it holds a secret (``UserPIN``,
    ``pin_code``, ``Password``; not ``Shipping`` or ``Spinner``)."""
    return name in SECRET_ELEMENTS or any(
        word.lower() in SECRET_WORDS for word in _NAME_WORDS.findall(name))


def _kind(tag: str) -> int:
    """What an element or attribute name (``{namespace}local`` or local) holds; cached."""
    kind = _KINDS.get(tag)
    if kind is None:
        if len(_KINDS) > 4096:  # names come from requests: keep the cache bounded
            _KINDS.clear()
        name = tag.rpartition("}")[2]
        kind = _KINDS[tag] = (
            _SECRET if secret_name(name) else _PERSONAL if name in PERSONAL_ELEMENTS
            else _IDENTIFIER if name in IDENTIFIER_ELEMENTS else _NONE)
    return kind


def _replace(element: etree._Element, text: str) -> None:
    if len(element):  # most redacted elements are leaves
        del element[:]
    element.text = text


def _hide(text: str | None, secrets: list[str]) -> str | None:
    """``text`` with every secret value in it replaced (a whole value, or inside a longer text
    when the secret is long enough not to be a coincidence)."""
    if not text:
        return text
    for secret in secrets:
        if text.strip() == secret:
            return SECRET_PLACEHOLDER
        if len(secret) >= 4 and secret in text:
            text = text.replace(secret, SECRET_PLACEHOLDER)
    return text


_ATTRIBUTES = etree.XPath("//@*")
_AUTH_INPUT_FIELDS = frozenset({"AuthenticationInputType", "AuthenticationDataFormatType"})


def _hide_everywhere(root: etree._Element, found: list[str]) -> None:
    """Remove secret values wherever else they appear: texts, tails, attributes, comments
    (never inside a placeholder or a pseudonym just written)."""
    for node in root.iter():
        if node.text and node.text not in _PLACEHOLDERS:
            node.text = _hide(node.text, found)
        node.tail = _hide(node.tail, found)
        if isinstance(node.tag, str):
            for attribute, value in node.attrib.items():
                hidden = _hide(value, found)
                if hidden != value:
                    node.attrib[attribute] = hidden


def redact(
    raw: bytes | etree._Element,
    *,
    personal: bool = False,
    pseudonymize: Callable[[str], str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    in_place: bool = False,
) -> bytes:
    """Return a redacted copy of an NCIP body (bytes) or parsed tree.

    Secrets are found by meaning: the standard authentication elements, any element or
    attribute whose name says PIN, password, secret or token (see L{SECRET_WORDS}), and any
    child of an C{AuthenticationInput} other than its type and format. Each secret value is
    then removed wherever else it appears in the body (text, attributes, comments).

    @param raw: the request/response bytes, or an element (not modified unless C{in_place}).
    @param personal: also replace names, addresses, e-mail, birth dates and user ids.
    @param pseudonymize: with C{personal}, turn user ids into stable tokens instead of the
        placeholder (e.g. a keyed hash).
    @param in_place: redact the element given in C{raw} itself instead of a copy (for a
        throwaway tree: the caller must not use it afterwards except to discard it).
    @return: UTF-8 XML bytes. Bodies we cannot parse lose their secrets by pattern, and
        with C{personal} are replaced by a placeholder comment altogether.
    """
    if isinstance(raw, etree._Element):
        root = raw if in_place else copy.deepcopy(raw)
    else:
        try:
            root = parse_xml(raw, max_bytes=max_bytes).root
        except NCIPSyntaxError:
            if personal:
                return b"<!-- unparseable body withheld -->"
            return _SECRET_TEXT.sub(rb"\1" + SECRET_PLACEHOLDER.encode(), bytes(raw)[:max_bytes])
    secrets: list[str] = []
    # Collected first: replacing an element's content detaches its descendants, and a match
    # among them no longer matters (it is not serialized), exactly as with a full walk.
    marked: list[tuple[etree._Element, int]] = []
    for element in root.iter(etree.Element):  # element names classified once, then cached
        kind = _KINDS.get(element.tag)
        if kind is None:
            kind = _kind(element.tag)
        if kind == _SECRET or (personal and kind != _NONE):
            marked.append((element, kind))
    for auth in root.iter("{*}AuthenticationInput"):  # a PIN in a non-standard child
        for child in auth.iterchildren(etree.Element):
            if child.tag.rpartition("}")[2] not in _AUTH_INPUT_FIELDS:
                marked.append((child, _SECRET))
    for attribute in _ATTRIBUTES(root):  # most NCIP bodies have none
        if _kind(attribute.attrname) == _SECRET:
            secrets.append(attribute.strip())
            attribute.getparent().set(attribute.attrname, SECRET_PLACEHOLDER)
    for element, kind in marked:
        if kind == _SECRET:
            value = "".join(element.itertext()).strip()
            if value and value != SECRET_PLACEHOLDER:
                secrets.append(value)
            _replace(element, SECRET_PLACEHOLDER)
        elif not personal:
            continue
        elif kind == _PERSONAL:
            _replace(element, PERSONAL_PLACEHOLDER)
        else:  # an identifier element, personal mode
            value = (element.text or "").strip()
            _replace(element, pseudonymize(value) if pseudonymize else PERSONAL_PLACEHOLDER)
    out = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    found = sorted(set(secrets) - {""}, key=len, reverse=True)
    if any(_serialized(secret) in out or not _PLAIN.isdisjoint(secret)
           for secret in found):  # echoed somewhere (rare), or not findable as text
        _hide_everywhere(root, found)
        out = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return out


_PLAIN = frozenset("\"'\t\r\n")
"""Characters serialized differently in attributes: a secret with one is always looked for."""


def _serialized(secret: str) -> bytes:
    """How a secret's value looks in the serialized body (as text, or in an attribute when it
    has none of the characters escaped there only)."""
    return secret.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").encode(
        "utf-8")
