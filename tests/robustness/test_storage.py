"""Storage failures: a full filesystem, a read-only filesystem, a database locked by another
process, a WAL deleted under the running daemon, and a corrupt configuration on SIGHUP.

The filesystem tests mount a small tmpfs for the database (root only; they skip with the
reason where mounting is not permitted)."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import workflow_fixtures as wf
from tests.daemon import Daemon, start_daemon
from tests.robustness.helpers import (
    Z3950Client,
    config,
    launch,
    release_locker,
    start_locker,
    tracebacks,
    wait_until,
)

pytestmark = pytest.mark.slow

STORAGE_CONFIG = config(gateway="busy_timeout = 1.0\n",
                        ncip="max_requests_per_second_per_peer = 0\n"
                             "max_connection_rate_per_peer = 0\n")


def lookup_item(barcode: str) -> bytes:
    return wf.ncip2("LookupItem", [wf._rs_header(), wf.item_id(barcode, wf.RS),
                                   ("ItemElementType", "Bibliographic Description")])


def health(daemon: Daemon) -> tuple[int, dict]:
    """The NCIP listener's /healthz status code, and the admin listener's details."""
    status, _ = daemon.get("/healthz")
    return status, daemon.admin_health()


def accept(daemon: Daemon, rid: str) -> str | None:
    """AcceptItem for a new request id; the Problem type, or None on success."""
    status, reply = daemon.post(wf.reshare_accept_item(rid, "P100", barcode=rid), timeout=30)
    assert status == 200, (status, reply)
    return wf.problem(reply)


def reads_still_work(daemon: Daemon) -> None:
    """LookupUser, LookupItem and a Z39.50 search are answered normally."""
    status, reply = daemon.post(wf.reshare_lookup_user("P100"))
    assert status == 200 and wf.problem(reply) is None, reply
    status, reply = daemon.post(lookup_item("LEND-001"))
    assert status == 200 and wf.problem(reply) is None, reply
    client = Z3950Client(daemon.ports["z3950"])
    try:
        assert client.search("pattern") == 1
    finally:
        client.close()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs mounted for this test (skips where mounting is not permitted)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs these as root)")
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs",
                           str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(path: Path) -> int:
    """Write zeros to ``path`` until the filesystem is full; return the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as handle:
        for size in (1 << 20, 1 << 12, 1):
            block = b"\0" * size
            while True:
                try:
                    handle.write(block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                written += size
    return written


def test_full_filesystem(small_fs: Path, tmp_path: Path) -> None:
    """The database on a 16 MB tmpfs, then the filesystem filled up: state-changing requests
    get NCIP `Temporary Processing Failure` (HTTP 200); LookupUser, LookupItem and Z39.50
    searches keep working; /healthz answers 503 "degraded" with the database error; the log
    says "database commit failed: database or disk is full". When the filler file is removed
    the next AcceptItem succeeds and /healthz is ok again, with no restart."""
    daemon = launch(tmp_path, STORAGE_CONFIG, database=small_fs / "interlend.sqlite3")
    try:
        assert accept(daemon, "FULL-0") is None
        filler = small_fs / "filler"
        fill(filler)
        problems = []
        for n in range(1, 300):            # the WAL may have room left: write until it is full
            problems.append(accept(daemon, f"FULL-{n}"))
            if problems[-1] is not None:
                break
        assert problems[-1] == "Temporary Processing Failure", problems[-5:]
        failed = f"FULL-{len(problems)}"
        assert accept(daemon, f"{failed}-again") == "Temporary Processing Failure"
        reads_still_work(daemon)
        status, state = health(daemon)
        assert status == 503 and state["status"] == "degraded"
        assert "full" in (state["database"]["last_error"] or "")
        assert any("database commit failed" in line and "full" in line for line in daemon.lines)
        filler.unlink()
        assert accept(daemon, failed) is None            # the failed request, resent
        wait_until(lambda: health(daemon)[0] == 200, 10, "/healthz ok again")
        assert not tracebacks(daemon), "\n".join(daemon.lines[-80:])
    finally:
        daemon.kill()
    conn = sqlite3.connect(small_fs / "interlend.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM rs_requests WHERE broker_request_id = ?",
                        (failed,)).fetchone()[0] == 1
    conn.close()


def _refused_at_start(tmp_path: Path, database: Path) -> None:
    daemon = start_daemon(tmp_path, STORAGE_CONFIG, database=database, wait=False)
    try:
        assert daemon.process.wait(30) == 1
        line = daemon.wait_for(r"start-up failed")
        assert "readonly" in line or "read-only" in line or "cannot open" in line, line
        assert not tracebacks(daemon)
    finally:
        daemon.kill()


def test_read_only_database(small_fs: Path, tmp_path: Path) -> None:
    """Behaviour chosen: a database the daemon cannot write is refused at start-up -- the
    daemon logs one "start-up failed: ..." line naming the problem and exits with status 1
    (systemd shows the failure) rather than serving without an audit log. Tested with the
    database directory on a read-only filesystem, and with only the database file made
    read-only (a read-only bind mount of the file, since root ignores file modes). A
    database that becomes unwritable while running is handled like a full disk
    (test_full_filesystem: Temporary Processing Failure, reads served, /healthz degraded,
    recovery without restart); a writable filesystem cannot be remounted read-only under
    an open database (EBUSY), so that case is not reproduced separately."""
    database = small_fs / "interlend.sqlite3"
    wf.seed_database(database)
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        _refused_at_start(tmp_path, database)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    subprocess.run(["mount", "--bind", str(database), str(database)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(database)], check=True)
        _refused_at_start(tmp_path, database)
    finally:
        subprocess.run(["umount", str(database)], capture_output=True)
    daemon = launch(tmp_path, STORAGE_CONFIG, database=database)   # writable again: fine
    try:
        assert accept(daemon, "RO-1") is None
    finally:
        daemon.kill()



def test_database_locked_by_another_process(tmp_path: Path) -> None:
    """Another process holds BEGIN EXCLUSIVE on the database: state-changing requests wait
    the configured busy_timeout (1 s here) and get `Temporary Processing Failure`; reads
    (WAL readers are not blocked) keep working; the log says "database commit failed:
    database is locked" and /healthz is degraded. Once the lock is released the resent
    request succeeds."""
    daemon = launch(tmp_path, STORAGE_CONFIG)
    locker = start_locker(daemon.database)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        assert accept(daemon, "LOCK-1") == "Temporary Processing Failure"
        reads_still_work(daemon)
        assert health(daemon)[0] == 503
        assert any("database commit failed" in line and "locked" in line
                   for line in daemon.lines)
        release_locker(locker)
        assert locker.wait(10) == 0
        assert accept(daemon, "LOCK-1") is None
        wait_until(lambda: health(daemon)[0] == 200, 10, "/healthz ok again")
        assert not tracebacks(daemon)
    finally:
        locker.kill()
        daemon.kill()


def test_wal_deleted_while_running(tmp_path: Path) -> None:
    """Behaviour chosen (new): the writer checks after every commit that the -wal file still
    exists. If it was deleted (by hand or a clean-up job), SQLite would keep writing into the
    unlinked file -- lost at the next crash -- and connections opened later would create a
    second WAL (reads then failed: "vtable constructor failed"). Now the writer logs an error
    ("WAL file ... was deleted while running"), checkpoints into the main database *before*
    that commit's replies leave, reopens its connection (a fresh WAL) and makes every reader
    reconnect. Proven by: AcceptItems after the deletion succeed, reads work, the WAL exists
    again; then SIGKILL and a restart on the same file: every acknowledged AcceptItem is there
    and integrity_check is ok."""
    daemon = launch(tmp_path, STORAGE_CONFIG)
    wal = Path(str(daemon.database) + "-wal")
    try:
        assert accept(daemon, "WAL-0") is None
        reads_still_work(daemon)
        assert wal.exists()
        wal.unlink()
        assert accept(daemon, "WAL-1") is None
        daemon.wait_for(r"WAL file .* was deleted while running")
        assert wal.exists()
        for n in range(2, 6):
            assert accept(daemon, f"WAL-{n}") is None
        reads_still_work(daemon)
        reads_still_work(daemon)
        assert not tracebacks(daemon)
    finally:
        daemon.kill()                                  # SIGKILL, no clean checkpoint
    conn = sqlite3.connect(daemon.database)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    found = {row[0] for row in conn.execute("SELECT broker_request_id FROM rs_requests "
                                            "WHERE broker_request_id LIKE 'WAL-%'")}
    conn.close()
    assert found == {f"WAL-{n}" for n in range(6)}
    daemon = launch(tmp_path, STORAGE_CONFIG, database=daemon.database)
    try:
        assert accept(daemon, "WAL-6") is None
        assert wal.exists() and health(daemon)[0] == 200
    finally:
        daemon.kill()


@pytest.mark.parametrize("corruption", [
    pytest.param(b"\xff\xfe\x00garbage\x80\x81" * 50, id="binary"),
    pytest.param(b"[gateway\nagency_id = \"X\n", id="truncated-toml"),
    pytest.param(None, id="deleted"),
])
def test_corrupt_configuration_on_sighup(tmp_path: Path, corruption: bytes | None) -> None:
    """A configuration file that is binary garbage (not UTF-8), truncated TOML or deleted,
    followed by SIGHUP: the daemon logs "reload refused, <file>: not valid TOML ..." / "cannot
    read" and "configuration not reloaded: 1 error(s); keeping the old one", keeps serving
    with the old configuration (NCIP and Z39.50), stays healthy, and logs no traceback.
    (Before the fix, non-UTF-8 bytes raised UnicodeDecodeError out of tomllib: a traceback
    on reload and a crash of `interlend check-config`.)"""
    daemon = launch(tmp_path, STORAGE_CONFIG)
    try:
        if corruption is None:
            daemon.config_path.unlink()
        else:
            daemon.config_path.write_bytes(corruption)
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(r"configuration not reloaded: 1 error\(s\); keeping the old one")
        assert any("reload refused" in line and ("not valid TOML" in line
                                                 or "cannot read" in line)
                   for line in daemon.lines)
        assert health(daemon)[0] == 200
        reads_still_work(daemon)
        assert accept(daemon, "CFG-1") is None
        assert not tracebacks(daemon)
    finally:
        daemon.kill()
