"""Nothing lost when the database is busy: another process holds the database for 15 seconds
while the daemon serves. Every audit row of that time is written once it is released (the
LookupUser rows, the Z39.50 rows and a failed request's own row), the retry queue shows in
/metrics, and /healthz is ok again within a second of the release with no request needed."""

from __future__ import annotations

import signal
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest

from tests import workflow_fixtures as wf
from tests.daemon import Daemon
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

LOCK_SECONDS = 15.0


def _count(database: Path, sql: str, *params: object) -> int:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


def _metric(admin_url: str, name: str) -> float:
    with urllib.request.urlopen(admin_url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _health(daemon: Daemon) -> int:
    return daemon.get("/healthz", timeout=5)[0]


def test_fifteen_second_lock_loses_no_audit_row(tmp_path: Path) -> None:
    daemon = launch(tmp_path, config(gateway="busy_timeout = 1.0\n",
                                     ncip="max_requests_per_second_per_peer = 0\n"))
    database = daemon.database
    lookups_before = _count(database, "SELECT count(*) FROM audit WHERE operation = ?",
                            "LookupUser")
    searches_before = _count(database, "SELECT count(*) FROM audit WHERE protocol = 'z3950' "
                                       "AND operation = 'search'")
    locker = start_locker(database)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        locked_at = time.monotonic()
        for _ in range(10):
            status, reply = daemon.post(wf.reshare_lookup_user("P100"), timeout=30)
            assert status == 200 and wf.problem(reply) is None, reply
        status, reply = daemon.post(wf.reshare_accept_item("BUSY-1", "P100", barcode="BUSY-1"),
                                    timeout=30)
        assert status == 200 and wf.problem(reply) == "Temporary Processing Failure"
        client = Z3950Client(daemon.ports["z3950"])
        try:
            assert client.search("pattern") == 1
        finally:
            client.close()
        wait_until(lambda: _metric(daemon.admin_url, "interlend_audit_rows_pending") >= 12,
                   10, "rows kept while the database is locked")
        assert _health(daemon) == 503
        assert time.monotonic() - locked_at < LOCK_SECONDS, "the requests took the whole lock"
        # hold the lock for the full 15 seconds
        wait_until(lambda: time.monotonic() - locked_at >= LOCK_SECONDS, LOCK_SECONDS + 5,
                   "the end of the lock")
        assert _health(daemon) == 503
        release_locker(locker)
        assert locker.stdout.readline().strip() == "released"
        released_at = time.monotonic()
        wait_until(lambda: _health(daemon) == 200, 5, "/healthz ok again")
        recovered = time.monotonic() - released_at
        assert recovered <= 1.0, f"/healthz took {recovered:.2f}s to recover"
        wait_until(lambda: _metric(daemon.admin_url, "interlend_audit_rows_pending") == 0, 10,
                   "every kept row written")
        assert _count(database, "SELECT count(*) FROM audit WHERE operation = ?",
                      "LookupUser") == lookups_before + 10
        assert _count(database, "SELECT count(*) FROM audit WHERE broker_request_id = ? AND "
                                "outcome = 'Temporary Processing Failure'", "BUSY-1") == 1
        assert _count(database, "SELECT count(*) FROM audit WHERE protocol = 'z3950' AND "
                                "operation = 'search'") == searches_before + 1
        assert _metric(daemon.admin_url, "interlend_audit_rows_retried_total") >= 12
        assert _metric(daemon.admin_url, "interlend_audit_rows_dropped_total") == 0
        assert _metric(daemon.admin_url, "interlend_audit_write_failures_total") == 0
        assert not [line for line in daemon.lines if "not written" in line]
        assert daemon.admin_health()["database"]["last_error"] is None
        assert daemon.stop() == 0
        assert not tracebacks(daemon), "\n".join(daemon.lines[-60:])
    finally:
        locker.kill()
        daemon.kill()


def test_kept_rows_are_written_on_stop(tmp_path: Path) -> None:
    """SIGTERM while rows are kept and the database is still locked: the stop waits for the
    database (a bounded number of attempts) and writes them before it exits."""
    daemon = launch(tmp_path, config(gateway="busy_timeout = 1.0\n",
                                     ncip="max_requests_per_second_per_peer = 0\n"))
    database = daemon.database
    before = _count(database, "SELECT count(*) FROM audit WHERE operation = 'LookupUser'")
    locker = start_locker(database)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        for _ in range(3):
            status, reply = daemon.post(wf.reshare_lookup_user("P100"), timeout=30)
            assert status == 200 and wf.problem(reply) is None, reply
        wait_until(lambda: _metric(daemon.admin_url, "interlend_audit_rows_pending") >= 3, 10,
                   "rows kept while the database is locked")
        daemon.signal(signal.SIGTERM)
        daemon.wait_for(r"stopping: no new connections")
        release_locker(locker)
        assert locker.stdout.readline().strip() == "released"
        assert daemon.process.wait(timeout=30) == 0
        assert _count(database, "SELECT count(*) FROM audit WHERE operation = 'LookupUser'") \
            == before + 3
        assert not [line for line in daemon.lines if "lost at stop" in line]
        assert not tracebacks(daemon), "\n".join(daemon.lines[-60:])
    finally:
        locker.kill()
        daemon.kill()
