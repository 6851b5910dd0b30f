"""A large ISO 2709 file is read and prepared in worker processes
(:mod:`gateway.backends.embedded.importers.prepare`) while the importer writes: the database,
the counts and the report lines are those of the one-process import; a killed import leaves a
consistent database (and no worker behind) that a re-run completes; what it loaded is found
over Z39.50 by yaz-client.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.backends.embedded.demo import write_demo_marc
from gateway.backends.embedded.importers import prepare
from gateway.storage.deferred_indexes import DEFERRABLE, dropped_indexes
from gateway.storage.store import open_database
from tests.gateway.test_import_bulk import dump, mixed_file, run_import
from tests.z3950_clients import YAZ_CLIENT, need, yaz_client

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_write_what_one_process_writes(tmp_path: Path, workers: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kind of record (clean UTF-8, MARC-8, odd indicators, truncated, no 001, repeated
    ids and barcodes), cut into small tasks so that numbering crosses task boundaries."""
    monkeypatch.setattr(prepare, "CHUNKS_PER_TASK", 7)
    source = mixed_file(tmp_path / "mixed.mrc")
    damaged = tmp_path / "damaged.mrc"
    good = source.read_bytes()
    # a record cut short glued to the next, and a file ending inside a record
    damaged.write_bytes(good[:3000] + good[3100:] + good[:200])
    one = open_database(tmp_path / "one.db")
    many = open_database(tmp_path / "many.db")
    try:
        alone = run_import(one, [source, damaged], workers=0, batch_size=5)
        shared = run_import(many, [source, damaged], workers=workers, batch_size=5)
        assert alone == shared
        assert alone[0].records_skipped >= 3 and alone[0].records_created >= 60
        assert any("damaged.mrc: record" in line for line in alone[1]), alone[1]
        assert dump(one) == dump(many)
    finally:
        one.close()
        many.close()


def test_small_files_stay_in_process(tmp_path: Path) -> None:
    """Below PARALLEL_MIN_BYTES no worker starts (starting one costs more than it saves)."""
    source = tmp_path / "small.mrc"
    write_demo_marc(source, records=20)
    started: list[int] = []
    original = prepare._in_workers

    def spy(*args: object) -> object:
        started.append(1)
        return original(*args)  # type: ignore[arg-type]

    prepare._in_workers = spy  # type: ignore[assignment]
    try:
        assert len(list(prepare.prepared_records(source))) == 20
    finally:
        prepare._in_workers = original
    assert not started


def _import(database: Path, source: Path, *extra: str) -> subprocess.Popen[str]:
    config = database.parent / "interlend.toml"
    config.write_text((REPO / "config" / "interlend.toml").read_text())
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.daemon.cli", "import", "marc", "-c", str(config),
         "--database", str(database), *extra, str(source)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _processes_naming(text: str) -> list[int]:
    """Processes whose command line holds ``text`` (forked workers keep the importer's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _indexes(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return [tuple(row) for row in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name")]


def _consistent(database: Path) -> int:
    """Check what a (possibly interrupted) import left; return the number of records."""
    conn = sqlite3.connect(database)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.execute("INSERT INTO records_fts (records_fts) VALUES ('integrity-check')")
        records = conn.execute("SELECT count(*) FROM records").fetchone()[0]
        # every record has its word index row, its OAI-PMH row and its local identifier
        assert conn.execute("SELECT count(*) FROM records_fts").fetchone()[0] == records
        assert conn.execute("SELECT count(*) FROM oai_records").fetchone()[0] == records
        assert conn.execute("SELECT count(*) FROM record_identifiers WHERE kind = 'local'"
                            ).fetchone()[0] == records
        assert conn.execute("SELECT count(*) FROM items WHERE record_id NOT IN"
                            " (SELECT id FROM records)").fetchone()[0] == 0
        # the catalogue generation moved with every record written
        assert conn.execute("SELECT value FROM catalogue_generation").fetchone()[0] >= records
        return int(records)
    finally:
        conn.close()


def test_killed_import_is_consistent_and_a_rerun_completes(tmp_path: Path) -> None:
    """SIGKILL in the middle of a parallel import: committed batches only, no worker left;
    the same import run again completes the catalogue, and yaz-client finds its words."""
    source = tmp_path / "demo.mrc"
    write_demo_marc(source, records=16000)
    database = tmp_path / "catalogue.sqlite3"
    first = _import(database, source, "--workers", "1")
    try:
        deadline = time.monotonic() + 120
        committed = 0
        while committed < 5000:  # at least one batch committed, the rest still to come
            try:
                first.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
            assert first.poll() is None, first.stdout.read() if first.stdout else ""
            assert time.monotonic() < deadline, "no batch committed in time"
            try:
                conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)
                committed = conn.execute("SELECT count(*) FROM records").fetchone()[0]
                conn.close()
            except sqlite3.OperationalError:
                committed = 0
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if first.stdout is not None:
            first.stdout.close()
    deadline = time.monotonic() + 10
    while _processes_naming(str(database)) and time.monotonic() < deadline:
        os.sched_yield()
    assert _processes_naming(str(database)) == []  # the workers died with the importer
    interrupted = _consistent(database)
    assert 5000 <= interrupted < 16000 and interrupted % 5000 == 0
    conn = sqlite3.connect(database)
    # a large load into an empty catalogue: its secondary indexes were left out, and noted
    assert dropped_indexes(conn) == sorted(DEFERRABLE)
    conn.close()
    again = _import(database, source, "--workers", "1")
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0, output
    assert f"{16000 - interrupted:,} created, {interrupted:,} updated" in output, output
    assert _consistent(database) == 16000
    fresh = open_database(tmp_path / "fresh.sqlite3")
    conn = sqlite3.connect(database)
    try:  # every index is back, as a new database defines it
        assert dropped_indexes(conn) == []
        assert _indexes(conn) == _indexes(fresh)
    finally:
        conn.close()
        fresh.close()

    need(("yaz-client", YAZ_CLIENT))
    from tests.daemon import start_daemon

    conn = sqlite3.connect(database)
    last, title = conn.execute("SELECT local_id, title FROM records ORDER BY id DESC LIMIT 1"
                               ).fetchone()  # a record the re-run wrote
    expected = conn.execute("SELECT count(*) FROM records_fts WHERE records_fts MATCH ?",
                            ("title:river",)).fetchone()[0]
    conn.close()
    word = re.findall(r"\w+", title)[-1].lower()
    (tmp_path / "serve").mkdir()
    daemon = start_daemon(tmp_path / "serve", database=database)
    try:
        printed = yaz_client(tmp_path, daemon.ports["z3950"],
                             ["find @attr 1=4 river", f"find @attr 1=4 {word}",
                              f"find @attr 1=12 {last}", "show 1"])
        hits = [int(n) for n in re.findall(r"Number of hits: (\d+)", printed)]
        assert hits[0] == expected > 100, printed
        assert hits[1] >= 1 and hits[2] == 1, printed
        assert last in printed, printed
    finally:
        daemon.stop()
