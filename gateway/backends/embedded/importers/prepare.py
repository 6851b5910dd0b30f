# -*- test-case-name: tests.gateway.test_import_parallel -*-
"""What the importer does to a record before the loader writes it, and doing it in worker
processes for a large ISO 2709 file.

Reading a record (cutting the file, decoding ISO 2709 into pymarc fields) and extracting what
the database needs (search fields, identifiers, the word index's folded words, the items of
852/952 fields, the stored bytes) is about half of an import's CPU; the other half is the
loader's SQL. In one process the two take turns on one core. For a large ISO 2709 file
:func:`prepared_records` hands pieces of the file to worker processes, which return
:class:`Prepared` records, while this process writes the previous ones: the file is still read
here, in order (bounded: only a few pieces are in flight), and every write, commit and report
line happens here exactly as in the sequential path, so the database, the counts and the
report are the same (``tests.gateway.test_import_parallel`` compares them). The workers never
touch the database; should the importer die, they die with it (``PR_SET_PDEATHSIG``, or a
watch on the parent).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import pymarc

from gateway.backends.embedded.importers.holdings import extract_light_items
from gateway.backends.embedded.importers.loader import check_record_items
from gateway.backends.embedded.importers.marcfiles import (
    LightRead,
    RecordRead,
    detect_format,
    iso2709_chunks,
    read_light,
    read_records,
)
from gateway.backends.embedded.records import (
    ItemData,
    LightField,
    RecordFields,
    extract_light_fields,
    light_fields,
)
from gateway.processes import die_with_parent

PARALLEL_MIN_BYTES = 4 << 20
"""Smaller files are prepared in this process: starting a worker costs more than it saves."""

CHUNKS_PER_TASK = 500
"""Records (file pieces) per task handed to a worker: large enough that the hand-over is a
small share of the work, small enough that the writer never waits long for the first ones."""

TASKS_IN_FLIGHT = 3
"""Tasks per worker submitted ahead: what bounds the memory a large file takes."""


@dataclass
class Prepared:
    """One record of a file, ready for :meth:`CatalogueLoader.add`, or why it is not.

    ``error``: the record could not be read (nothing else is set); ``refused``: it was read
    but cannot be stored (no 001, an unknown item status...), reported as skipped; otherwise
    ``fields`` and ``marc`` are what the loader writes and ``items`` its items. ``notes`` are
    the reader's remarks, ``skipped`` the holdings fields that could not become items.
    (Not frozen: a worker numbers its records from 1 and the importer renumbers them in place.)
    """

    number: int
    error: str | None = None
    notes: tuple[str, ...] = ()
    local_id: str = ""
    items: tuple[ItemData, ...] = ()
    skipped: tuple[str, ...] = ()
    fields: RecordFields | None = None
    marc: bytes | None = None
    refused: str | None = None
    record: pymarc.Record | None = None  # kept in-process only (workers do not send it back)


def prepare(read: RecordRead | LightRead) -> Prepared:
    """Everything the loader needs from ``read``, computed once (in whichever process)."""
    record: pymarc.Record | None = None
    notes: tuple[str, ...] = ()
    if isinstance(read, LightRead):
        fields: list[LightField] = read.fields
        control = next((entry[1] for entry in fields if entry[0] == "001"), None)
    else:
        record = read.record
        if record is None:
            return Prepared(read.number, error=read.error or "unreadable record")
        notes = read.notes
        field_001 = record.get("001")
        control = field_001.data if field_001 is not None else None
        fields = light_fields(record)  # read once, for both extractors
    local_id = control.strip() if control else ""
    holdings = extract_light_items(fields)
    try:
        extracted = extract_light_fields(fields)
        check_record_items(holdings.items)
        marc = read.marc if read.marc is not None or record is None else record.as_marc()
    except ValueError as exc:  # what the loader would have refused (reported, record skipped)
        return Prepared(read.number, notes=notes, local_id=local_id,
                        skipped=holdings.skipped, refused=str(exc))
    return Prepared(read.number, None, notes, local_id, holdings.items, holdings.skipped,
                    extracted, marc, record=record)


def default_workers() -> int:
    """Worker processes for a large file: one fewer than the cores (the writer has one),
    at most 3 (the writer cannot take more)."""
    return max(0, min(3, (os.cpu_count() or 1) - 1))


def prepared_records(path: Path, *, force_utf8: bool = False,
                     workers: int | None = None) -> Iterator[Prepared]:
    """The records of ``path``, in order, prepared (see :func:`prepare`); in ``workers``
    processes (default :func:`default_workers`) for an ISO 2709 file of at least
    :data:`PARALLEL_MIN_BYTES`. Raises OSError if the file cannot be read."""
    count = default_workers() if workers is None else workers
    if detect_format(path) != "iso2709":
        for read in read_records(path, force_utf8=force_utf8):
            yield prepare(read)
        return
    if count < 1 or (workers is None and path.stat().st_size < PARALLEL_MIN_BYTES):
        for one in read_light(iso2709_chunks(path), force_utf8=force_utf8):
            yield prepare(one)
        return
    yield from _in_workers(path, force_utf8, count)


def _in_workers(path: Path, force_utf8: bool, workers: int) -> Iterator[Prepared]:
    chunks = iso2709_chunks(path)
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_started,
                               initargs=(os.getpid(),))
    pending: deque[Future[list[Prepared]]] = deque()

    def submit() -> None:
        batch = list(islice(chunks, CHUNKS_PER_TASK))  # read here: an OSError is the caller's
        if batch:
            pending.append(pool.submit(_prepare_chunks, batch, force_utf8))

    try:
        for _ in range(workers * TASKS_IN_FLIGHT):
            submit()
        done = 0
        while pending:
            batch = pending.popleft().result()
            submit()
            for prepared in batch:
                prepared.number += done
                yield prepared
            done += len(batch)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _prepare_chunks(chunks: list[bytes], force_utf8: bool) -> list[Prepared]:
    """A worker's task: the records of consecutive file pieces, numbered from 1."""
    prepared = [prepare(read) for read in read_light(chunks, force_utf8=force_utf8)]
    for one in prepared:
        one.record = None  # pymarc objects stay here: the importer needs none of them
    return prepared


def _worker_started(parent: int) -> None:
    """A worker ends when the importer does, however it ends (a killed import leaves none)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the importer's to handle
    if die_with_parent(signal.SIGKILL):
        if os.getppid() == parent:
            return
        os._exit(1)  # the parent died before the call

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
