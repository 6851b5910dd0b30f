# -*- test-case-name: tests.gateway.test_importers -*-
"""``interlend import-marc``: load MARC files (ISO 2709 or MARCXML) into the embedded catalogue.

Records are matched by their 001 (a re-import updates them) and items, read from 852 and 952
holdings fields, by barcode. A bad record is reported — file, record number, reason — and
skipped; the run goes on. Records are committed in batches (see
:mod:`gateway.backends.embedded.importers.loader`).
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.backends.embedded.importers.loader import (
    DEFAULT_BATCH_SIZE,
    CatalogueLoader,
    StoredRecord,
)
from gateway.backends.embedded.importers.prepare import Prepared, prepared_records
from gateway.storage.deferred_indexes import drop_indexes, restore_indexes

PROGRESS_EVERY = 100

DEFER_MIN_BYTES = 4 << 20
"""Smaller loads keep every index: dropping and building them again costs more than it saves."""

DEFER_BYTES_PER_RECORD = 4096
"""A catalogue is "almost empty" for a load of B bytes when it holds fewer than
B / DEFER_BYTES_PER_RECORD records (a quarter of what the files hold at about 1 KiB a record):
then building its secondary indexes again after the load costs less than keeping them."""


@dataclass
class ImportSummary:
    """Counts for one import run.

    ``records_read`` = ``records_created`` + ``records_updated`` + ``records_skipped``.
    ``items_skipped`` counts holdings fields of imported records that could not become items;
    ``files_failed`` counts files that could not be opened at all.
    """

    files: int = 0
    records_read: int = 0
    records_created: int = 0
    records_updated: int = 0
    records_skipped: int = 0
    items_created: int = 0
    items_updated: int = 0
    items_skipped: int = 0
    seconds: float = 0.0
    files_failed: int = 0

    @property
    def records_per_second(self) -> float:
        """Throughput of the run (records read per second of wall time)."""
        return self.records_read / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when every file was read and no record or item had to be skipped."""
        return not (self.files_failed or self.records_skipped or self.items_skipped)

    def __str__(self) -> str:
        failed = f" ({self.files_failed} unreadable)" if self.files_failed else ""
        return (f"{self.files} file(s){failed}, {self.records_read:,} records read:"
                f" {self.records_created:,} created, {self.records_updated:,} updated,"
                f" {self.records_skipped:,} skipped; items: {self.items_created:,} created,"
                f" {self.items_updated:,} updated, {self.items_skipped:,} skipped;"
                f" {self.seconds:.1f} s ({self.records_per_second:,.0f} records/s)")


def _records_of(path: Path, report: Callable[[str], None], *,
                force_utf8: bool, workers: int | None) -> Iterator[Prepared] | None:
    """The records of ``path``, or None (reported) when the file cannot be read."""
    if not path.exists():
        report(f"{path}: no such file")
        return None
    if path.is_dir():
        report(f"{path}: is a directory, not a MARC file")
        return None
    try:
        records = prepared_records(path, force_utf8=force_utf8, workers=workers)
        first = next(records, None)
    except OSError as exc:
        report(f"{path}: cannot read: {exc.strerror or exc}")
        return None

    if first is None:
        report(f"{path}: no records in the file")

    def chained() -> Iterator[Prepared]:
        if first is not None:
            yield first
        yield from records

    return chained()


def import_marc(conn: sqlite3.Connection, paths: Iterable[Path], *,
                progress: Callable[[int], None] | None = None,
                report: Callable[[str], None],
                force_utf8: bool = False,
                batch_size: int = DEFAULT_BATCH_SIZE,
                workers: int | None = None,
                defer_indexes: bool | None = None) -> ImportSummary:
    """Import the records and items of MARC files into the embedded catalogue.

    ``report`` receives one line per problem (``"books.mrc: record 7: no 001 control number"``),
    in record order, once the record's batch is written;
    ``progress`` the running count of records read, every hundred records and at the end of
    each file. ``force_utf8`` treats ISO 2709 records as UTF-8 whatever leader/09 says.
    ``workers``: processes that read and prepare the records of a large ISO 2709 file while
    this one writes (see :mod:`~gateway.backends.embedded.importers.prepare`; 0: none, None:
    by the file's size and the cores). ``defer_indexes``: drop the catalogue's secondary
    indexes for the load and build them after it (see
    :mod:`gateway.storage.deferred_indexes`; None: for a large load into an almost empty
    catalogue, see :data:`DEFER_BYTES_PER_RECORD`).
    """
    summary = ImportSummary()
    started = time.perf_counter()
    paths = [Path(path) for path in paths]
    if defer_indexes is None:
        defer_indexes = _almost_empty(conn, paths)
    try:
        if defer_indexes:
            drop_indexes(conn)
        with CatalogueLoader(conn, batch_size=batch_size) as loader:
            # Records are written a batch at a time: what is said about a record waits until
            # its batch is written, so that report lines keep the order of the records.
            def say(line: str) -> None:
                loader.defer(functools.partial(report, line))

            for path in paths:
                records = _records_of(path, say, force_utf8=force_utf8, workers=workers)
                if records is None:
                    summary.files_failed += 1
                    continue
                summary.files += 1
                try:
                    for read in records:
                        summary.records_read += 1
                        _import_one(loader, path, read, summary, say)
                        if progress is not None and summary.records_read % PROGRESS_EVERY == 0:
                            progress(summary.records_read)
                except OSError as exc:
                    say(f"{path}: read error, rest of the file skipped: {exc.strerror or exc}")
                if progress is not None:
                    progress(summary.records_read)
            # Built again only on a normal end (an interrupted load leaves them to the next
            # opening of the database, which builds them whatever stopped this one), with the
            # loader's page cache, and checkpointed with the load when the loader ends.
            loader.commit()
            restore_indexes(conn)
    finally:
        summary.seconds = time.perf_counter() - started
    return summary


def _almost_empty(conn: sqlite3.Connection, paths: list[Path]) -> bool:
    """True when ``paths`` are a large load into a catalogue that holds few records yet."""
    size = 0
    for path in paths:
        try:
            size += path.stat().st_size if path.is_file() else 0
        except OSError:
            continue
    if size < DEFER_MIN_BYTES:
        return False
    bound = size // DEFER_BYTES_PER_RECORD
    held = conn.execute("SELECT count(*) FROM (SELECT 1 FROM records LIMIT ?)",
                        (bound,)).fetchone()[0]
    return bool(held < bound)


def _import_one(loader: CatalogueLoader, path: Path, read: Prepared, summary: ImportSummary,
                report: Callable[[str], None]) -> None:
    where = f"{path}: record {read.number}"
    if read.error is not None:
        summary.records_skipped += 1
        report(f"{where}: {read.error}")
        return
    if read.local_id:
        where += f" ({read.local_id})"
    for note in read.notes:
        report(f"{where}: {note}")

    def done(stored: StoredRecord | None, error: Exception | None) -> None:
        if error is not None:
            summary.records_skipped += 1
            report(f"{where}: {error}, record skipped")
            return
        assert stored is not None
        for note in read.skipped:
            report(f"{where}: {note}")
        for barcode, previous in stored.moved:
            report(f"{where}: item {barcode!r} moved here from record id {previous}")
        summary.items_skipped += len(read.skipped)
        summary.items_created += stored.items_created
        summary.items_updated += stored.items_updated
        if stored.created:
            summary.records_created += 1
        else:
            summary.records_updated += 1

    if read.refused is not None:
        done(None, ValueError(read.refused))
        return
    try:
        loader.add(read.record, read.items, marc=read.marc, done=done, fields=read.fields)
    except ValueError as exc:
        done(None, exc)
