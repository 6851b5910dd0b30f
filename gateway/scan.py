# -*- test-case-name: tests.gateway.test_catalogue -*-
"""Z39.50 Scan: browse the word lists (title, author, subject, any) or whole titles/authors.

Word lists come from the FTS5 vocabulary tables of schema migration 2 (``records_fts_vocab_col``
per column, ``records_fts_vocab_row`` for *any*), so a scan reads a few vocabulary entries, not
the records. Counts are numbers of records; temporary (borrowed) records are not in the word
index (schema migration 5), so they are never counted or listed. A phrase scan (structure 1/3
or complete field) on title or author lists whole field values through the NOCASE indexes
instead.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from gateway.search import (
    COMPLETENESS,
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
    """Scan entries in term order, with the 1-based position the scan term has (or would have)."""

    def __init__(self, entries: list[ScanEntry], *, position_of_term: int) -> None:
        super().__init__(entries)
        self.position_of_term = position_of_term


@dataclass(frozen=True)
class ScanPlan:
    """What to browse: a word list (``column`` None = any) or whole ``field`` values."""

    start: str
    column: str | None = None
    field: str | None = None


def plan_scan(term: Term, attribute_set: oids.Oid = oids.BIB1_ATTRSET) -> ScanPlan:
    """Check the scan term's attributes (title/author/subject/any only) and plan the browse."""
    check_attributes(term, attribute_set)
    use = use_of(term)
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


def run_scan(conn: sqlite3.Connection, plan: ScanPlan, count: int, preferred_position: int,
             step_size: int) -> ScanResult:
    """Up to ``count`` entries around the start term, every ``step_size + 1``-th term."""
    stride = step_size + 1
    want_before, want_after = preferred_position - 1, count - preferred_position + 1
    if plan.field is not None:
        after = _fields(conn, plan, False, want_after * stride)
        before = _fields(conn, plan, True, want_before * stride) if want_before else []
    else:
        after = _words(conn, plan, False, want_after * stride)
        before = _words(conn, plan, True, want_before * stride) if want_before else []
    after = after[::stride][:want_after]
    before = before[stride - 1::stride][:want_before]
    return ScanResult(list(reversed(before)) + after, position_of_term=len(before) + 1)
