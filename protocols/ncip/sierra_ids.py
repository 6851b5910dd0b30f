# -*- test-case-name: tests.protocols.test_ncip_sierra_ids -*-
"""Sierra (and Millennium) record numbers: read in every form people type, checked, written.

A record number is a type letter (``b`` bib, ``i`` item, ``p`` patron, ...), seven digits
(eight in the largest systems: ``width``) and a check digit, shown with a leading dot:
``.b10243641``. The check digit is the sum of the digits weighted 2, 3, 4... from the
rightmost (the weights do not wrap at 7), modulo 11, ``x`` for 10. Staff and
brokers also write it without the dot, without the check digit, or with ``a`` standing for
"any check digit" (Sierra accepts that in searches). ReShare sends Sierra's NCIP responder the
bare digits of a bib id (no ``.b``, no check digit); for items and patrons the weak record key
(type letter and digits) keeps a record number apart from a barcode of the same digits.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TYPES = frozenset("abcegijnopqrtv")   # authority, bib, course, ..., item, ..., patron, ...
WIDTH = 7


class BadCheckDigit(ValueError):
    """A record number whose check digit does not match its digits."""


def check_digit(digits: str) -> str:
    """The check digit of a record number's digits (``x`` for 10)."""
    if not digits.isdigit():
        raise ValueError(f"not a record number: {digits!r}")
    total = sum(int(d) * weight for weight, d in enumerate(reversed(digits), start=2))
    remainder = total % 11
    return "x" if remainder == 10 else str(remainder)


@dataclass(frozen=True)
class RecordNumber:
    """One record: its type letter and its digits (the check digit is derived)."""

    kind: str
    digits: str

    @property
    def full(self) -> str:
        """Sierra's display form: ``.b10243641``."""
        return f".{self.kind}{self.digits}{check_digit(self.digits)}"

    @property
    def key(self) -> str:
        """The weak record key: ``b1024364``."""
        return f"{self.kind}{self.digits}"


def _form(width: int) -> re.Pattern[str]:
    return re.compile(rf"^\.?([a-z])(\d{{{width}}})([0-9xa]?)$", re.I)


def parse(text: str, kind: str | None = None, width: int = WIDTH) -> RecordNumber | None:
    """The record number ``text`` writes, or None when it is not one (a barcode, say).

    ``kind``: the type letter expected here (another letter: not a record number); ``width``:
    the system's digits (a fixed width keeps ``.b10243642`` from reading as an eight-digit
    number without check digit). A check digit that is present and not ``a`` must match
    (else :class:`BadCheckDigit`). Bare digits are a record number only where the field
    says so: :func:`parse_bare`.
    """
    match = _form(width).match(text.strip())
    if match is None:
        return None
    letter, digits, check = match.group(1).lower(), match.group(2), match.group(3).lower()
    if letter not in TYPES or (kind is not None and letter != kind):
        return None
    if check and check != "a" and check != check_digit(digits):
        raise BadCheckDigit(f"{text!r}: check digit {check}, expected {check_digit(digits)}")
    return RecordNumber(letter, digits)


def parse_bare(text: str, kind: str, width: int = WIDTH) -> RecordNumber | None:
    """A record number where the type is known from the context (a bib id field): the
    digits alone are accepted too (``1024364``, ``10243641``)."""
    found = parse(text, kind, width)
    if found is not None:
        return found
    value = text.strip()
    if re.fullmatch(rf"\d{{{width}}}[0-9xa]?", value, re.I):
        return parse(kind + value, kind, width)
    return None


def to_lms(text: str, kind: str, width: int = WIDTH) -> str:
    """``text`` as Sierra's NCIP responder wants it: a bib id as bare digits, an item or
    patron record number as its weak key; anything else (a barcode) unchanged."""
    found = parse_bare(text, kind, width) if kind == "b" else parse(text, kind, width)
    if found is None:
        return text
    return found.digits if kind == "b" else found.key


def canonical(text: str, kind: str, width: int = WIDTH) -> str:
    """``text`` as the gateway keeps it: a record number in Sierra's display form (so each
    way of writing it names the same record), anything else unchanged."""
    found = parse_bare(text, kind, width) if kind == "b" else parse(text, kind, width)
    return found.full if found is not None else text
