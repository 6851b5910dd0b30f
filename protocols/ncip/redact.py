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
    rb"(<(?:\w+:)?(?:AuthenticationInputData|FromAgencyAuthentication|FromSystemAuthentication)"
    rb"\b[^>]*>)[^<]*"
)


def _replace(element: etree._Element, text: str) -> None:
    if len(element):  # most redacted elements are leaves
        del element[:]
    element.text = text


def _any_namespace(names: frozenset[str]) -> tuple[str, ...]:
    # lxml's "{*}name" matches the local name in any namespace or none: the filtering runs in
    # C, instead of a Python local_name() call per element of the document.
    return tuple(f"{{*}}{name}" for name in sorted(names))


_SECRET_TAGS = _any_namespace(SECRET_ELEMENTS)
_PERSONAL_TAGS = _any_namespace(SECRET_ELEMENTS | PERSONAL_ELEMENTS | IDENTIFIER_ELEMENTS)


def redact(
    raw: bytes | etree._Element,
    *,
    personal: bool = False,
    pseudonymize: Callable[[str], str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    in_place: bool = False,
) -> bytes:
    """Return a redacted copy of an NCIP body (bytes) or parsed tree.

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
    # Collected first: replacing an element's content detaches its descendants, and a match
    # among them no longer matters (it is not serialized), exactly as with a full walk.
    for element in list(root.iter(*(_PERSONAL_TAGS if personal else _SECRET_TAGS))):
        name = element.tag.rpartition("}")[2]  # local name (iter() yields elements only)
        if name in SECRET_ELEMENTS:
            _replace(element, SECRET_PLACEHOLDER)
        elif name in PERSONAL_ELEMENTS:
            _replace(element, PERSONAL_PLACEHOLDER)
        else:  # an identifier element, personal mode
            value = (element.text or "").strip()
            _replace(element, pseudonymize(value) if pseudonymize else PERSONAL_PLACEHOLDER)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)
