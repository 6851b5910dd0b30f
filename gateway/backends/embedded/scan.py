# -*- test-case-name: tests.gateway.test_catalogue -*-
"""Z39.50 Scan: browse the word lists (title, author, subject, any...), whole titles/authors,
identifiers (ISBN, ISSN, LCCN, local number, OCLC, language) and years of publication.

Word lists come from the FTS5 vocabulary tables of schema migration 2 (``records_fts_vocab_col``
per column, ``records_fts_vocab_row`` for *any*), so a scan reads a few vocabulary entries, not
the records. The vocabulary holds folded words (:func:`gateway.backends.embedded.indexing.fold`); each listed word
gets a display term, the word as a record writes it (the first record holding it,
:func:`_written`), as Zebra's ICU indexes display terms. Counts are numbers of records;
temporary (borrowed) records are not in the word index (schema migration 5), so they are never
counted or listed. A phrase scan
(structure 1/3 or complete field) on title or author lists whole field values through the
NOCASE indexes instead.

Positions follow Zebra: preferred position 0 lists the terms after the scan term (position 0),
``count + 1`` those before it; :attr:`ScanResult.ended_early` says the list ran out before
``count`` terms (scan status partial-5).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from gateway.backends.embedded.identifiers import search_forms
from gateway.backends.embedded.indexing import (
    WORD_COLUMNS,
    index_texts,
    stored_fields,
    written_forms,
)
from gateway.backends.embedded.search import (
    COMPLETENESS,
    DATE_USES,
    IDENTIFIER_KINDS,
    PHRASE_STRUCTURES,
    STRUCTURE,
    TEXT_COLUMNS,
    TEXT_STRUCTURES,
    Bib1Error,
    check_attributes,
    field_value,
    numeric_attribute,
    tokenize,
    use_of,
)
from protocols.z3950 import oids
from protocols.z3950.codec import ScanEntry
from protocols.z3950.pqf import Term


class ScanResult(list[ScanEntry]):
    """Scan entries in term order, with the 1-based position the scan term has (or would have)
    and whether the term list ended before the entries asked for."""

    def __init__(self, entries: list[ScanEntry], *, position_of_term: int,
                 ended_early: bool = False) -> None:
        super().__init__(entries)
        self.position_of_term = position_of_term
        self.ended_early = ended_early


@dataclass(frozen=True)
class ScanPlan:
    """What to browse: a word list (``column`` None = any) or whole ``field`` values."""

    start: str
    column: str | None = None
    field: str | None = None
    kinds: tuple[str, ...] = ()  # identifier kinds (record_identifiers)
    years: bool = False


def plan_scan(term: Term, attribute_set: oids.Oid = oids.BIB1_ATTRSET) -> ScanPlan:
    """Check the scan term's attributes and plan the browse (114 for a use not listed)."""
    check_attributes(term, attribute_set)
    use = use_of(term)
    if use in IDENTIFIER_KINDS:
        kinds = IDENTIFIER_KINDS[use]
        forms = search_forms(kinds[0], term.value) if len(kinds) == 1 else [term.value.strip()]
        return ScanPlan(start=forms[0] if forms else "", kinds=kinds)
    if use in DATE_USES:
        digits = "".join(c for c in term.value if c.isdigit())[:4]
        return ScanPlan(start=digits, years=True)
    if use not in TEXT_COLUMNS:
        raise Bib1Error(114, str(term.attribute(1)))
    column = TEXT_COLUMNS[use]
    structure = numeric_attribute(term, STRUCTURE, TEXT_STRUCTURES, 118)
    completeness = numeric_attribute(term, COMPLETENESS, frozenset({1, 2, 3}), 122)
    whole = structure in PHRASE_STRUCTURES or completeness in (2, 3)
    if whole and column in ("title", "author"):
        return ScanPlan(start=field_value(term.value), field=column)
    tokens = tokenize(term.value)
    return ScanPlan(start=tokens[0] if tokens else "", column=column)


def _vocabulary(conn: sqlite3.Connection, plan: ScanPlan, low: str | None, high: str | None,
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


def _entries(rows: list[tuple[str, int]]) -> list[ScanEntry]:
    return [ScanEntry(term, docs) for term, docs in rows if docs > 0]


def _words(conn: sqlite3.Connection, plan: ScanPlan, before: bool, limit: int) -> list[ScanEntry]:
    """Up to ``limit`` word entries from the start term on, or (before) just below it, nearest
    first."""
    if not before:
        return _entries(_vocabulary(conn, plan, plan.start, None, limit))
    entries: list[ScanEntry] = []
    for bound in _lower_bounds(plan.start):
        entries = _entries(_vocabulary(conn, plan, bound, plan.start, None))
        if len(entries) >= limit:
            break
    return list(reversed(entries))[:limit]


def _written(conn: sqlite3.Connection, column: str | None, entries: list[ScanEntry]
             ) -> list[ScanEntry]:
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
        shown.append(ScanEntry(entry.term, entry.occurrences, written))
    return shown


def _identifiers(conn: sqlite3.Connection, plan: ScanPlan, before: bool,
                 limit: int) -> list[ScanEntry]:
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
    return [ScanEntry(value, count) for value, count in rows]


def _years(conn: sqlite3.Connection, plan: ScanPlan, before: bool, limit: int) -> list[ScanEntry]:
    """Years of publication with their record counts, nearest first."""
    start = int(plan.start) if plan.start else 0
    rows = conn.execute(
        "SELECT pub_year, count(*) FROM records INDEXED BY records_year WHERE pub_year"
        f" {'<' if before else '>='} ? AND temporary = 0 GROUP BY pub_year"
        f" ORDER BY pub_year {'DESC' if before else 'ASC'} LIMIT ?", (start, limit))
    return [ScanEntry(str(year), count) for year, count in rows]


def _fields(conn: sqlite3.Connection, plan: ScanPlan, before: bool, limit: int) -> list[ScanEntry]:
    column = plan.field
    assert column in ("title", "author")
    order = "DESC" if before else "ASC"
    rows = conn.execute(
        f"SELECT min({column}), count(*) FROM records WHERE temporary = 0 AND {column} <> ''"
        f" AND {column} {'<' if before else '>='} ? COLLATE NOCASE"
        f" GROUP BY {column} COLLATE NOCASE ORDER BY {column} COLLATE NOCASE {order} LIMIT ?",
        (plan.start, limit))
    return [ScanEntry(value, count) for value, count in rows]


def _key(plan: ScanPlan, term: str) -> str:
    """A listed term as compared with the start term."""
    return term.lower() if plan.field is not None or plan.kinds == ("local",) else term


def run_scan(conn: sqlite3.Connection, plan: ScanPlan, count: int, preferred_position: int,
             step_size: int) -> ScanResult:
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
    return ScanResult(entries, position_of_term=position, ended_early=len(entries) < count)
