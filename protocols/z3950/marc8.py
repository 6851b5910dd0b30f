# -*- test-case-name: tests.protocols.test_z3950_charset -*-
"""MARC-8, the MARC 21 character set, as a Python codec (``"marc-8"``, also ``"marc8"``).

Encoding (text to MARC-8) follows the MARC 21 specification for record exchange: ASCII in G0 and
ANSEL in G1 by default, other sets (Greek, Cyrillic, Hebrew, Arabic, their extended sets,
subscripts, superscripts, Greek symbols, and the multibyte East Asian set EACC) designated by
escape sequences when a character needs them; combining marks come *before* their base
character, as MARC-8 writes them; a character MARC-8 lacks becomes the MARC 21 lossless
numeric character reference ``&#xXXXX;``. Every encoded string ends in the default state, so
fields and subfields can be concatenated freely. The character tables are pymarc's
(``pymarc.marc8_mapping``, the Library of Congress code tables); decoding is pymarc's
``MARC8ToUnicode`` (never fails: unknown bytes become spaces).

Importing this module registers the codec and the ``"marc-ncr"`` error handler (characters a
single-byte charset lacks become ``&#xXXXX;`` there too).
"""

from __future__ import annotations

import codecs
import unicodedata
from functools import lru_cache

from pymarc import marc8_mapping
from pymarc.marc8 import MARC8ToUnicode

__all__ = ["NCR_ERRORS", "decode", "encode"]

ESC = 0x1B
ASCII, ANSEL, CJK = 0x42, 0x45, 0x31
_G1_SETS = frozenset({0x45, 0x51, 0x34})  # ANSEL, extended Cyrillic, extended Arabic
_SHORT_G0 = frozenset({0x62, 0x67, 0x70})  # subscripts, Greek symbols, superscripts: ESC F
_ORDER = (ASCII, ANSEL, 0x53, 0x4E, 0x51, 0x32, 0x33, 0x34, 0x62, 0x70, 0x67, CJK)
"""Character sets in order of preference when a character is in several."""

NCR_ERRORS = "marc-ncr"
"""The error handler that writes an unencodable character as ``&#xXXXX;``."""


@lru_cache(maxsize=1)
def _table() -> dict[str, tuple[int, int, bool]]:
    """Character -> (character set, code, combining)."""
    table: dict[str, tuple[int, int, bool]] = {}
    for charset in _ORDER:
        for code, (point, combining) in sorted(marc8_mapping.CODESETS[charset].items()):
            if charset == ASCII and code < 0x20:
                continue  # control characters are not text
            table.setdefault(chr(point), (charset, code, bool(combining)))
    return table


def _ncr(char: str) -> str:
    return f"&#x{ord(char):04X};"


def encode(text: str) -> bytes:
    """``text`` in MARC-8 (combining marks before their base; ``&#xXXXX;`` for the rest)."""
    table = _table()
    out = bytearray()
    g0, g1 = ASCII, ANSEL

    def put(char: str) -> None:
        nonlocal g0, g1
        found = table.get(char)
        if found is None:
            for c in _ncr(char):
                put(c)
            return
        charset, code, _ = found
        if char == " " and g0 != CJK:
            out.append(0x20)  # the space is 0x20 in every single-byte G0 set
            return
        if charset in _G1_SETS:
            if g1 != charset:
                out.extend((ESC, 0x29, charset))
                g1 = charset
            out.append(code)
            return
        if g0 != charset:
            if charset == CJK:
                out.extend((ESC, 0x24, CJK))
            elif charset in _SHORT_G0:
                out.extend((ESC, charset))
            else:
                out.extend((ESC, 0x28, charset))
            g0 = charset
        if charset == CJK:
            out.extend((code >> 16, (code >> 8) & 0xFF, code & 0xFF))
        else:
            out.append(code)

    for base, marks in _clusters(text):
        if base not in table:
            decomposed = unicodedata.normalize("NFD", base)
            if len(decomposed) > 1 and all(c in table for c in decomposed):
                base, marks = decomposed[0], list(decomposed[1:]) + marks
        for mark in marks:
            put(mark)
        put(base)
    if g0 != ASCII:
        out.extend((ESC, 0x28, ASCII))
    if g1 != ANSEL:
        out.extend((ESC, 0x29, ANSEL))
    return bytes(out)


def _clusters(text: str) -> list[tuple[str, list[str]]]:
    """Base characters with the combining marks that follow them."""
    table = _table()
    clusters: list[tuple[str, list[str]]] = []
    for char in unicodedata.normalize("NFC", text):
        known = table.get(char)
        combining = known[2] if known is not None else unicodedata.combining(char) != 0
        if combining and clusters:
            clusters[-1][1].append(char)
        else:
            clusters.append((char, []))
    return clusters


def decode(data: bytes) -> str:
    """MARC-8 bytes as text (NFC); unknown bytes become spaces."""
    return str(MARC8ToUnicode(quiet=True).translate(bytes(data)))


class _Codec(codecs.Codec):
    def encode(self, input: str, errors: str = "strict") -> tuple[bytes, int]:
        return encode(input), len(input)

    def decode(self, input: bytes, errors: str = "strict") -> tuple[str, int]:  # noqa: A002
        return decode(bytes(input)), len(input)


def _search(name: str) -> codecs.CodecInfo | None:
    if name.replace("-", "").replace("_", "") != "marc8":
        return None
    codec = _Codec()
    return codecs.CodecInfo(name="marc-8", encode=codec.encode,
                            decode=codec.decode)  # type: ignore[arg-type]


def _ncr_errors(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    bad = error.object[error.start:error.end]
    return "".join(_ncr(c) for c in bad), error.end


codecs.register(_search)
codecs.register_error(NCR_ERRORS, _ncr_errors)
