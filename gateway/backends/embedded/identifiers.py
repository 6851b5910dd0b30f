# -*- test-case-name: tests.gateway.test_identifiers -*-
"""Normalisation of standard identifiers (ISBN, ISSN, OCLC numbers) for indexing and matching.

An ISBN is indexed in both its ISBN-10 (where one exists) and ISBN-13 forms, so a search in either
form, with or without hyphens, finds the record.
"""

from __future__ import annotations

import re

_ISBN_CHARS = re.compile(r"[0-9Xx][0-9Xx\- ]{8,16}[0-9Xx]")
_OCLC = re.compile(r"^\s*(?:\(OCoLC\))?\s*(?:ocm|ocn|on)?\s*0*(\d+)\s*$", re.IGNORECASE)


def isbn10_check_digit(first9: str) -> str:
    """The ISBN-10 check character (0-9 or X) for nine digits."""
    total = sum((10 - i) * int(d) for i, d in enumerate(first9))
    check = (11 - total % 11) % 11
    return "X" if check == 10 else str(check)


def isbn13_check_digit(first12: str) -> str:
    """The ISBN-13 (EAN-13) check digit for twelve digits."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def isbn_forms(text: str) -> list[str]:
    """Every valid normalised form of the first ISBN in ``text`` (ISBN-13 first), or ``[]``.

    ``"0-262-01153-0 (hbk.)"`` gives ``["9780262011532", "0262011530"]``. An ISBN with a wrong
    check digit gives no forms: it cannot be matched reliably.
    """
    match = _ISBN_CHARS.search(text or "")
    if not match:
        return []
    digits = re.sub(r"[\- ]", "", match.group(0)).upper()
    if len(digits) == 10 and digits[:9].isdigit() and isbn10_check_digit(digits[:9]) == digits[9]:
        isbn13 = "978" + digits[:9]
        return [isbn13 + isbn13_check_digit(isbn13), digits]
    if len(digits) == 13 and digits.isdigit() and isbn13_check_digit(digits[:12]) == digits[12]:
        forms = [digits]
        if digits.startswith("978"):
            forms.append(digits[3:12] + isbn10_check_digit(digits[3:12]))
        return forms
    return []


def normalise_issn(text: str) -> str | None:
    """``"0317-8471"`` → ``"03178471"``; None when no ISSN-shaped value is present."""
    match = re.search(r"(\d{4})-?(\d{3}[\dXx])", text or "")
    return (match.group(1) + match.group(2)).upper() if match else None


def normalise_oclc(text: str) -> str | None:
    """``"(OCoLC)ocm00012345"`` → ``"12345"``; None for a value that is not an OCLC number."""
    match = _OCLC.match(text or "")
    return match.group(1) if match else None


def normalise_lccn(text: str) -> str | None:
    """An LCCN normalised as the Library of Congress does: ``"n 78-890351"`` → ``"n78890351"``,
    ``"85-2 "`` → ``"85000002"``; blanks go, anything from a ``/`` on goes, and a hyphen is
    dropped with the serial number after it zero-padded to six digits. None when nothing is left.
    """
    value = "".join((text or "").split()).split("/", 1)[0].lower()
    if "-" in value:
        head, _, serial = value.partition("-")
        if serial.isdigit() and len(serial) <= 6:
            value = head + serial.zfill(6)
        else:
            value = head + serial.replace("-", "")
    return value or None


def search_forms(kind: str, term: str) -> list[str]:
    """The index values a search term of identifier ``kind`` should be looked up under."""
    if kind == "isbn":
        forms = isbn_forms(term)
        return forms or [re.sub(r"[\- ]", "", term).upper()]
    if kind == "issn":
        issn = normalise_issn(term)
        return [issn] if issn else [term.strip().upper()]
    if kind == "oclc":
        oclc = normalise_oclc(term)
        return [oclc] if oclc else [term.strip()]
    if kind == "lccn":
        lccn = normalise_lccn(term)
        return [lccn] if lccn else []
    if kind == "language":
        return [term.strip().lower()]
    return [term.strip()]
