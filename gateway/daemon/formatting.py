# -*- test-case-name: tests.gateway.test_reports -*-
"""Rows for people and for other programs: aligned tables, CSV and JSON."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import datetime, timezone, tzinfo
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


def local_time(value: str | None, zone: tzinfo, *, seconds: bool = False) -> str:
    """A stored (UTC, ISO 8601) time in ``zone``, short: ``2026-11-29 04:06``.

    Text that is no time is returned as it is; a time without an offset is taken as UTC.
    """
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def age(seconds: float | None) -> str:
    """A duration for people, two units at most: ``3d 4h``, ``5h 10m``, ``12m``, ``40s``."""
    if seconds is None:
        return ""
    total = int(max(0, seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in an ellipsis when cut."""
    if len(text) <= width:
        return text
    return text[:max(0, width - 1)] + "…"


def fit_columns(rows: list[dict[str, Any]], columns: Sequence[str], total: int,
                flexible: str) -> list[dict[str, Any]]:
    """Rows whose ``flexible`` column is shortened so that the aligned table of ``columns``
    (two spaces between columns) is at most ``total`` characters wide, if it can be."""
    if not rows or flexible not in columns:
        return rows
    fixed = sum(max(len(c), *(len(_cell(row.get(c))) for row in rows))
                for c in columns if c != flexible) + 2 * (len(columns) - 1)
    room = max(len(flexible), total - fixed)
    return [{**row, flexible: shorten(_cell(row.get(flexible)), room)} for row in rows]
