# -*- test-case-name: tests.gateway.test_reports -*-
"""Rows for people and for other programs: aligned tables, CSV and JSON."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import IO, Any


def write_rows(rows: list[dict[str, Any]], fmt: str, out: IO[str],
               columns: Sequence[str] | None = None, *, header: bool = True) -> None:
    """Write ``rows`` as ``table``, ``csv``, ``json`` (an array) or ``lines`` (JSON lines).

    ``header=False`` leaves out the CSV header line (for rows continuing a table).
    """
    if columns is None:
        columns = list(rows[0]) if rows else []
    if fmt == "json":
        json.dump([{c: row.get(c) for c in columns} for row in rows], out, indent=2,
                  default=str)
        out.write("\n")
    elif fmt == "lines":
        for row in rows:
            out.write(json.dumps({c: row.get(c) for c in columns}, default=str) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
        if header:
            writer.writeheader()
        writer.writerows({c: csv_cell(row.get(c)) for c in columns} for row in rows)
    else:
        if not rows:
            out.write("(no rows)\n")
            return
        cells = [[_cell(row.get(c)) for c in columns] for row in rows]
        widths = [max(len(str(c)), *(len(line[i]) for line in cells))
                  for i, c in enumerate(columns)]
        out.write("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
        for line in cells:
            out.write("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() + "\n")


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a string beginning with ``=``, ``+``,
    ``-``, ``@``, tab or CR (a formula, from unauthenticated input) gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` safe for a terminal: control and format characters (escape sequences, CR,
    newlines, bidirectional overrides) written as visible ``\\xNN``/``\\uNNNN`` escapes, so
    a stored value can neither forge a row nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = printable(str(value))
    return text if len(text) <= 60 else text[:57] + "..."
