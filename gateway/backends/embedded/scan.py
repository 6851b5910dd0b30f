# -*- test-case-name: tests.gateway.test_catalogue -*-
"""Scan: browse the word lists (title, author, subject, any...), whole titles/authors,
identifiers (ISBN, ISSN, LCCN, local number, OCLC, language) and years of publication.

Word lists come from the FTS5 vocabulary tables of schema migration 2 (``records_fts_vocab_col``
per column, ``records_fts_vocab_row`` for *any*), so a scan reads a few vocabulary entries, not
the records. The vocabulary holds folded words
(:func:`gateway.backends.embedded.indexing.fold`); each listed word gets a display term, the
word as a record writes it (the first record holding it, :func:`_written`), as Zebra's ICU
indexes display terms. Counts are numbers of records; temporary (borrowed) records are not in
the word index (schema migration 5), so they are never counted or listed. A whole-field scan
on title or author lists whole field values through the NOCASE indexes instead.

Positions follow Zebra: preferred position 0 lists the terms after the scan term (position 0),
``count + 1`` those before it; :attr:`~gateway.domain.catalogue.ScanPage.ended_early` says the
list ran out before ``count`` terms (scan status partial-5).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from gateway.backends.embedded.identifiers import search_forms
from gateway.backends.embedded.indexing import (
    WORD_COLUMNS,
    index_texts,
    stored_fields,
    tokenize,
    written_forms,
)
from gateway.backends.embedded.search import IDENTIFIER_KINDS, field_value
from gateway.backends.embedded.search import WORD_COLUMNS as COLUMN_OF_INDEX
from gateway.domain.catalogue import IndexEntry, ScanPage, UnsupportedIndex
from gateway.domain.query import YEAR_INDEX, ScanPlan


@dataclass(frozen=True)
class Browse:
    """What to read: a word list (``column`` None = any) or whole ``field`` values, identifier
    ``kinds`` or years, from ``start`` (as the index holds it) on."""

    start: str
    column: str | None = None
    field: str | None = None
    kinds: tuple[str, ...] = ()  # identifier kinds (record_identifiers)
    years: bool = False


def prepare_scan(plan: ScanPlan) -> Browse:
    """The scan in this catalogue's terms (:class:`UnsupportedIndex` for an index it lacks)."""
    if plan.index in IDENTIFIER_KINDS:
        kinds = IDENTIFIER_KINDS[plan.index]
        forms = search_forms(kinds[0], plan.text) if len(kinds) == 1 else [plan.text.strip()]
        return Browse(start=forms[0] if forms else "", kinds=kinds)
    if plan.index == YEAR_INDEX:
        digits = "".join(c for c in plan.text if c.isdigit())[:4]
        return Browse(start=digits, years=True)
    if plan.index not in COLUMN_OF_INDEX:
        raise UnsupportedIndex(plan.index)
    column = COLUMN_OF_INDEX[plan.index]
    if plan.whole_field and column in ("title", "author"):
        return Browse(start=field_value(plan.text), field=column)
    tokens = tokenize(plan.text)
    return Browse(start=tokens[0] if tokens else "", column=column)


def _vocabulary(conn: sqlite3.Connection, plan: Browse, low: str | None, high: str | None,
                limit: int | None) -> list[tuple[str, int]]:
    """Vocabulary (term, records) rows with ``low <= term < high``, ascending."""
    table = "records_fts_vocab_row" if plan.column is None else "records_fts_vocab_col"
    where, params = [], []
    if low is not None:
        where.append("term >= ?")
        params.append(low)
    if high is not None:
        where.append("term < ?")
        params.append(high)
    if plan.column is not None:
        where.append("col = ?")
        params.append(plan.column)
    sql = f"SELECT term, doc FROM {table} WHERE {' AND '.join(where) or '1'} ORDER BY term"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [(row[0], row[1]) for row in conn.execute(sql, params)]


def _lower_bounds(start: str) -> list[str]:
    """Ever wider lower bounds below ``start``: ``ab`` gives ``aa``, ``` `` ``` (before a), ``""``.

    FTS5 vocabularies only read forwards, and reading one costs a pass over each term's
    document list; so the terms before the start are found in small windows ``[bound, start)``
    rather than by reading everything before it.
    """
    bounds = []
    for k in range(len(start), 0, -1):
        code = ord(start[k - 1])
        if code > 0:
            bounds.append(start[:k - 1] + chr(code - 1))
    bounds.append("")
    return bounds


def _entries(rows: list[tuple[str, int]]) -> list[IndexEntry]:
    return [IndexEntry(term, docs) for term, docs in rows if docs > 0]


def _words(conn: sqlite3.Connection, plan: Browse, before: bool, limit: int) -> list[IndexEntry]:
    """Up to ``limit`` word entries from the start term on, or (before) just below it, nearest
    first."""
    if not before:
        return _entries(_vocabulary(conn, plan, plan.start, None, limit))
    entries: list[IndexEntry] = []
    for bound in _lower_bounds(plan.start):
        entries = _entries(_vocabulary(conn, plan, bound, plan.start, None))
        if len(entries) >= limit:
            break
    return list(reversed(entries))[:limit]


def _written(conn: sqlite3.Connection, column: str | None, entries: list[IndexEntry]
             ) -> list[IndexEntry]:
    """The entries with a display term: the word as the first record holding it writes it (the
    term itself stays the folded index word, which searches and scans as it is)."""
    shown = []
    for entry in entries:
        word = str(entry.term)
        match = '"' + word.replace('"', '""') + '"'
        row = conn.execute("SELECT r.marc FROM records_fts f JOIN records r ON r.id = f.rowid"
                           " WHERE records_fts MATCH ? LIMIT 1",
                           ("{" + column + "} : " + match if column else match,)).fetchone()
        written = None
        if row is not None:
            texts = index_texts(stored_fields(bytes(row[0])))
            if column is not None:
                texts = (texts[WORD_COLUMNS.index(column)],)
            for text in texts:
                written = written_forms(text).get(word)
                if written is not None:
                    break
        shown.append(IndexEntry(entry.term, entry.records, written))
    return shown


def _identifiers(conn: sqlite3.Connection, plan: Browse, before: bool,
                 limit: int) -> list[IndexEntry]:
    """Identifier values (as indexed: normalised) with their record counts, nearest first."""
    kinds = ",".join("?" * len(plan.kinds))
    local = plan.kinds == ("local",)
    if local:  # local numbers as written, compared without case (as searched)
        sql = ("SELECT min(local_id), count(*) FROM records WHERE temporary = 0 AND local_id"
               f" {'<' if before else '>='} ? COLLATE NOCASE GROUP BY local_id COLLATE NOCASE"
               f" ORDER BY local_id COLLATE NOCASE {'DESC' if before else 'ASC'} LIMIT ?")
        rows = conn.execute(sql, (plan.start, limit))
    else:
        sql = (f"SELECT value, count(DISTINCT record_id) FROM record_identifiers WHERE kind IN"
               f" ({kinds}) AND value {'<' if before else '>='} ? AND record_id NOT IN"
               " (SELECT id FROM records WHERE temporary = 1) GROUP BY value"
               f" ORDER BY value {'DESC' if before else 'ASC'} LIMIT ?")
        rows = conn.execute(sql, (*plan.kinds, plan.start, limit))
    return [IndexEntry(value, count) for value, count in rows]


def _years(conn: sqlite3.Connection, plan: Browse, before: bool, limit: int) -> list[IndexEntry]:
    """Years of publication with their record counts, nearest first."""
    start = int(plan.start) if plan.start else 0
    rows = conn.execute(
        "SELECT pub_year, count(*) FROM records INDEXED BY records_year WHERE pub_year"
        f" {'<' if before else '>='} ? AND temporary = 0 GROUP BY pub_year"
        f" ORDER BY pub_year {'DESC' if before else 'ASC'} LIMIT ?", (start, limit))
    return [IndexEntry(str(year), count) for year, count in rows]


def _fields(conn: sqlite3.Connection, plan: Browse, before: bool, limit: int) -> list[IndexEntry]:
    column = plan.field
    assert column in ("title", "author")
    order = "DESC" if before else "ASC"
    rows = conn.execute(
        f"SELECT min({column}), count(*) FROM records WHERE temporary = 0 AND {column} <> ''"
        f" AND {column} {'<' if before else '>='} ? COLLATE NOCASE"
        f" GROUP BY {column} COLLATE NOCASE ORDER BY {column} COLLATE NOCASE {order} LIMIT ?",
        (plan.start, limit))
    return [IndexEntry(value, count) for value, count in rows]


def _key(plan: Browse, term: str) -> str:
    """A listed term as compared with the start term."""
    return term.lower() if plan.field is not None or plan.kinds == ("local",) else term


def run_scan(conn: sqlite3.Connection, plan: Browse, count: int, preferred_position: int,
             step_size: int) -> ScanPage:
    """Up to ``count`` entries around the start term, every ``step_size + 1``-th term.

    ``preferred_position`` 0 lists the terms after the start term, ``count + 1`` the terms
    before it (as Zebra does)."""
    stride = step_size + 1
    want_before = min(max(preferred_position - 1, 0), count)
    want_after = count - want_before
    reader = (_fields if plan.field is not None else _identifiers if plan.kinds
              else _years if plan.years else _words)
    skip_start = preferred_position == 0  # the terms after the start term only
    after = reader(conn, plan, False, (want_after + skip_start) * stride) if want_after else []
    if skip_start and after and _key(plan, str(after[0].term)) == _key(plan, plan.start):
        after = after[1:]
    before = reader(conn, plan, True, want_before * stride) if want_before else []
    after = after[::stride][:want_after]
    before = before[stride - 1::stride][:want_before]
    entries = list(reversed(before)) + after
    if plan.field is None and not plan.kinds and not plan.years:
        entries = _written(conn, plan.column, entries)
    position = 0 if skip_start else len(before) + 1
    return ScanPage(tuple(entries), position_of_term=position, ended_early=len(entries) < count)
