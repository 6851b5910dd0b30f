"""XML written as text: escaping, and a marker for elements already known to be well-formed.

Pure. Protocol writers that embed a record element (SRU ``recordData``, OAI-PMH ``metadata``)
parse bytes they are handed before writing them, so a malformed rendering fails there instead
of reaching a client. A renderer that writes XML as text by construction (every text and
attribute escaped, no character XML 1.0 cannot carry) returns :class:`WellFormed` instead, and
the writers embed it as it is: one pass, no parse and no re-serialisation.
"""

from __future__ import annotations

import re

__all__ = ["NOT_XML_CHAR", "WellFormed", "attribute", "text", "with_children"]

NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""A character XML 1.0 cannot carry."""


class WellFormed(bytes):
    """One XML element, UTF-8, no declaration, namespaces declared on it: written by a writer
    that guarantees it well-formed, so it may be embedded without a reparse."""

    __slots__ = ()


def text(value: str) -> str:
    """Character data escaped as lxml escapes it (``&``, ``<``, ``>``); the caller makes sure
    ``value`` holds no character :data:`NOT_XML_CHAR` matches."""
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    if "\r" in value:
        value = value.replace("\r", "&#13;")
    return value


def attribute(value: str) -> str:
    """An attribute value (double-quoted) escaped as lxml escapes it."""
    value = text(value)
    if '"' in value:
        value = value.replace('"', "&quot;")
    if "\t" in value or "\n" in value:
        value = value.replace("\t", "&#9;").replace("\n", "&#10;")
    return value


def with_children(head: str, tail: str, children: list[tuple[str, str]]) -> WellFormed | None:
    """``head`` (an open tag declaring every prefix used), one ``<name>text</name>`` per child
    and ``tail``: what lxml writes for that tree; None when there is no child or a text holds a
    character XML cannot carry (build those with lxml, which refuses them)."""
    if not children:
        return None
    parts = [head]
    for name, value in children:
        if NOT_XML_CHAR.search(value):
            return None
        parts.append(f"<{name}>{text(value)}</{name}>")
    parts.append(tail)
    return WellFormed("".join(parts).encode("utf-8"))
