# -*- test-case-name: tests.gateway.test_indexing -*-
"""What the word index holds. Words are folded and split as every query's words are
(:func:`gateway.domain.text.fold`, :func:`~gateway.domain.text.tokenize`, in Python, for every
script alike); the FTS5 table stores the folded words separated by spaces and its
``ascii`` tokenizer only splits them again on those spaces, so a query word (folded by the
same function) and an indexed word are equal exactly when their folded forms are.

The columns (:data:`WORD_COLUMNS`) follow Zebra's MARC 21 profile: every name (1XX, 7XX, 8XX
and 245 $c) is an author; titles are 245, 130, 210, 222, 240, 242, 243, 246, 247, 730, 740, the
title parts of 6XX/7XX/8XX name-title fields and the series (440, 490, 800-830), which also have
their own column.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.backends.embedded.identifiers import normalise_lccn
from gateway.domain.text import fold, tokenize, words  # noqa: F401 - the index's words

WORD_COLUMNS = ("title", "author", "subject", "anywords", "personal", "corporate",
                "conference", "series", "publisher")
"""The FTS5 columns, in table order (schema migration 9)."""

_TITLE, _AUTHOR, _SUBJECT, _ANY, _PERSONAL, _CORPORATE, _CONFERENCE, _SERIES, _PUBLISHER = \
    range(len(WORD_COLUMNS))

# -- what goes in each column --------------------------------------------------------------------

_NAME_COLUMN = {"100": _PERSONAL, "700": _PERSONAL, "800": _PERSONAL,
                "110": _CORPORATE, "710": _CORPORATE, "810": _CORPORATE,
                "111": _CONFERENCE, "711": _CONFERENCE, "811": _CONFERENCE}
_NAME_CODES = {_PERSONAL: "abcdq", _CORPORATE: "abcdgn", _CONFERENCE: "acdegnq"}
_NAME_TITLE_CODES = "fklmnoprst"          # the title part of a name/title field, from $t on
_UNIFORM_TITLE_CODES = "adfgklmnoprst"    # 130, 240, 243, 730, 830
_TITLE_CODES = {
    "130": _UNIFORM_TITLE_CODES, "240": _UNIFORM_TITLE_CODES, "243": _UNIFORM_TITLE_CODES,
    "730": _UNIFORM_TITLE_CODES, "210": "ab", "222": "ab", "242": "abnp", "245": "abfgknps",
    "246": "abfgnp", "247": "abfgnp", "740": "anp", "440": "anp", "490": "a",
    "830": _UNIFORM_TITLE_CODES,
}
_SERIES_TAGS = frozenset(("440", "490", "830", "800", "810", "811"))
_SUBJECT_TAGS = frozenset(("600", "610", "611", "630", "650", "651", "655"))
_SUBJECT_NAME_TITLE = frozenset(("600", "610", "611"))
_OTHER_TAGS = frozenset(("250", "500", "505", "520"))
_PUBLICATION_TAGS = frozenset(("260", "264"))


def index_texts(fields: Iterable[Sequence[Any]]) -> tuple[str, ...]:
    """The text of each :data:`WORD_COLUMNS` column of a record, as written in the record.

    ``fields`` are ``(tag, data, subfields, ...)`` tuples (see
    :data:`gateway.backends.embedded.records.LightField`).
    """
    columns: list[list[str]] = [[] for _ in WORD_COLUMNS]
    for entry in fields:
        tag, data, pairs = entry[0], entry[1], entry[2]
        if data is not None or not pairs:
            continue
        name_column = _NAME_COLUMN.get(tag)
        if name_column is not None:
            codes = _NAME_CODES[name_column]
            at_title = False
            name, title = [], []
            for code, value in pairs:
                if code == "t":
                    at_title = True
                if at_title:
                    if code in _NAME_TITLE_CODES:
                        title.append(value)
                elif code in codes:
                    name.append(value)
            if name:
                text = " ".join(name)
                columns[_AUTHOR].append(text)
                columns[name_column].append(text)
            if title:
                columns[_TITLE].append(" ".join(title))
                if tag in _SERIES_TAGS:
                    columns[_SERIES].append(" ".join(title))
            continue
        title_codes = _TITLE_CODES.get(tag)
        if title_codes is not None:
            text = " ".join([v for c, v in pairs if c in title_codes])
            columns[_TITLE].append(text)
            if tag in _SERIES_TAGS:
                columns[_SERIES].append(text)
            if tag == "245":
                columns[_AUTHOR] += [v for c, v in pairs if c == "c"]
        elif tag == "720":
            columns[_AUTHOR] += [v for c, v in pairs if c == "a"]
        elif tag in _SUBJECT_TAGS:
            columns[_SUBJECT].append(" ".join([v for c, v in pairs if c in "abcdvxyz"]))
            if tag in _SUBJECT_NAME_TITLE:
                columns[_TITLE] += [v for c, v in pairs if c == "t"]
        elif tag in _PUBLICATION_TAGS:
            columns[_PUBLISHER] += [v for c, v in pairs if c == "b"]
        elif tag in _OTHER_TAGS:
            columns[_ANY].append(" ".join([v for c, v in pairs if c in "abcdefghnpv"]))
    return tuple("\n".join(texts) for texts in columns)


_COMPLETE_TITLE_TAGS = frozenset(("130", "240", "242", "245", "246", "247", "730", "740"))


def complete_titles(fields: Iterable[Sequence[Any]]) -> list[str]:
    """The whole titles a complete-field title search (1=4 6=3) matches, folded: for each
    title field its $a alone (as Zebra's phrase index holds it), $a with $b (the subtitle) and
    the whole title."""
    found: dict[str, None] = {}
    for entry in fields:
        tag, data, pairs = entry[0], entry[1], entry[2]
        if data is not None or tag not in _COMPLETE_TITLE_TAGS:
            continue
        folded = [(c, words(v)) for c, v in pairs]
        for codes in ("a", "ab", _TITLE_CODES[tag]):
            text = " ".join([v for c, v in folded if c in codes and v])
            if text:
                found[text] = None
    return list(found)


def index_words(fields: Iterable[Sequence[Any]]) -> tuple[str, ...]:
    """The folded words of each :data:`WORD_COLUMNS` column (what ``records_fts`` stores)."""
    return tuple(words(text) for text in index_texts(fields))


def stored_fields(marc: bytes) -> list[tuple[str, str | None, list[tuple[str, str]]]]:
    """The fields of a stored (UTF-8 ISO 2709) record as ``(tag, data, subfields)`` tuples.

    Used to re-index stored records (schema migration 9) and to find how a record writes a
    scanned word; a malformed record gives the fields read before the fault.
    """
    fields: list[tuple[str, str | None, list[tuple[str, str]]]] = []
    try:
        base = int(marc[12:17])
        directory = marc[24:base - 1]
        for start in range(0, len(directory) - 11, 12):
            entry = directory[start:start + 12]
            tag = entry[:3].decode("ascii", "replace")
            length, offset = int(entry[3:7]), int(entry[7:12])
            body = marc[base + offset:base + offset + length].rstrip(b"\x1e").decode(
                "utf-8", "replace")
            if tag < "010" and tag.isdigit():
                fields.append((tag, body, []))
                continue
            pairs = [(chunk[:1], chunk[1:]) for chunk in body.split("\x1f")[1:] if chunk]
            fields.append((tag, None, pairs))
    except ValueError:
        pass
    return fields


def register_functions(conn: Any) -> None:
    """Give ``conn`` the SQL functions schema migration 9 re-indexes stored records with:
    ``interlend_index_words(marc, column)`` (the folded words of column number ``column``) and
    ``interlend_index_identifiers(marc)`` (a JSON array of the record's ``[kind, value]``
    identifiers of the kinds that migration adds)."""
    last: list[Any] = [None, ()]

    def index_words_of(marc: bytes, column: int) -> str:
        if last[0] is not marc and last[0] != marc:  # one parse for the nine columns of a row
            last[:] = [marc, index_words(stored_fields(marc))]
        return str(last[1][column])

    def identifiers_of(marc: bytes) -> str:
        found: list[list[str]] = []
        fields = stored_fields(marc)
        for tag, data, pairs in fields:
            if tag == "008" and data and len(data) >= 38 and data[35:38].strip():
                found.append(["language", data[35:38].strip().lower()])
            elif tag == "010":
                found += [["lccn", lccn] for code, value in pairs
                          if code == "a" and (lccn := normalise_lccn(value))]
        found += [["title", title] for title in complete_titles(fields)]
        return json.dumps(found)

    conn.create_function("interlend_index_words", 2, index_words_of)
    conn.create_function("interlend_index_identifiers", 1, identifiers_of)


# -- scan terms as the record writes them -----------------------------------------------------


@functools.cache
def _written_word() -> re.Pattern[str]:
    """A written word: letters/digits with any combining marks among them (BMP marks)."""
    marks = "".join(chr(c) for c in range(0x300, 0x10000)
                    if unicodedata.category(chr(c)) in ("Mn", "Mc", "Me")
                    and not 0xD800 <= c < 0xE000)
    return re.compile("(?:[^\\W_]|[" + re.escape(marks) + "])+")


def written_forms(text: str) -> dict[str, str]:
    """Each folded word of ``text`` with the first form the text writes it in (NFC)."""
    forms: dict[str, str] = {}
    for match in _written_word().finditer(unicodedata.normalize("NFC", text)):
        for word in tokenize(match.group(0)):
            forms.setdefault(word, match.group(0))
    return forms


__all__ = [
    "WORD_COLUMNS",
    "complete_titles",
    "register_functions",
    "stored_fields",
    "fold",
    "index_texts",
    "index_words",
    "tokenize",
    "words",
    "written_forms",
]
