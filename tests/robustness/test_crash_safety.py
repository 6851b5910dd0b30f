"""Crash safety: SIGKILL under concurrent state-changing load, then restart on the same file."""

from __future__ import annotations

import http.client
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import workflow_fixtures as wf
from tests.robustness.helpers import config, launch, wait_until

pytestmark = pytest.mark.slow

CLIENTS = 16
ROUNDS = 20
ACKS_PER_ROUND = 24

CRASH_CONFIG = config(ncip="max_requests_per_second_per_peer = 0\n"
                           "max_connection_rate_per_peer = 0\n")


@dataclass
class Client:
    """One broker: runs AcceptItem -> CheckOutItem -> CheckInItem for request ids
    C<n>-<k>, k = 0, 1, ...; a request left unanswered by a crash is resent first next time."""

    number: int
    k: int = 0
    step: int = 0
    acked: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def rid(self) -> str:
        return f"C{self.number}-{self.k}"

    def body(self) -> tuple[str, bytes]:
        patron = "P100" if self.number % 2 else "P101"
        rid = self.rid
        if self.step == 0:
            return "AcceptItem", wf.reshare_accept_item(rid, patron, barcode=rid)
        if self.step == 1:
            return "CheckOutItem", wf.reshare_check_out(rid, patron)
        return "CheckInItem", wf.reshare_check_in(rid)

    def run(self, port: int, stop: threading.Event, unanswered: list[int]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        while not stop.is_set():
            service, body = self.body()
            try:
                conn.request("POST", "/ncip", body, {"Content-Type": "application/xml"})
                response = conn.getresponse()
                reply = response.read()
            except (OSError, http.client.HTTPException):
                unanswered.append(self.number)   # killed meanwhile: resend after the restart
                return
            problem = wf.problem(reply) if response.status == 200 else f"HTTP {response.status}"
            if problem is not None:
                self.problems.append(f"{service} {self.rid}: {problem}")
                return
            self.acked.append((service, self.rid))
            self.step = (self.step + 1) % 3
            if self.step == 0:
                self.k += 1


def integrity(database: Path) -> str:
    conn = sqlite3.connect(database)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def check_acknowledged(database: Path, clients: list[Client]) -> None:
    """Every acknowledged change is there in full, and nothing exists twice."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        for client in clients:
            for service, rid in client.acked:
                item = conn.execute("SELECT id FROM items WHERE barcode = ?", (rid,)).fetchone()
                assert item is not None, f"{service} {rid}: temporary item missing"
                item_id = item[0]
                assert conn.execute("SELECT count(*) FROM rs_requests WHERE broker_request_id = ?",
                                    (rid,)).fetchone()[0] == 1, rid
                assert conn.execute("SELECT count(*) FROM holds WHERE item_id = ?",
                                    (item_id,)).fetchone()[0] == 1, f"{rid}: holds"
                audit = conn.execute("SELECT count(*) FROM audit WHERE operation = ? AND "
                                     "(broker_request_id = ? OR item_barcode = ?)",
                                     (service, rid, rid)).fetchone()[0]
                assert audit >= 1, f"{service} {rid}: no audit row"
                loans = conn.execute("SELECT count(*), count(returned_at) FROM loans "
                                     "WHERE item_id = ?", (item_id,)).fetchone()
                assert loans[0] <= 1, f"{rid}: duplicate loans {loans}"
                if service == "CheckOutItem":
                    assert loans[0] == 1, f"{rid}: acknowledged loan missing"
                if service == "CheckInItem":
                    assert loans == (1, 1), f"{rid}: acknowledged check-in missing {loans}"
        assert conn.execute("SELECT count(*) FROM (SELECT broker_request_id FROM rs_requests "
                            "GROUP BY broker_request_id HAVING count(*) > 1)").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM (SELECT item_id FROM holds WHERE item_id IS "
                            "NOT NULL GROUP BY item_id HAVING count(*) > 1)").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM (SELECT item_id FROM loans "
                            "GROUP BY item_id HAVING count(*) > 1)").fetchone()[0] == 0
    finally:
        conn.close()


def test_sigkill_under_load_20_times(tmp_path: Path) -> None:
    """20 rounds: 16 concurrent brokers run the borrower flow (AcceptItem, CheckOutItem,
    CheckInItem) over NCIP; once at least 24 replies of the round are in, the daemon gets
    SIGKILL with requests in flight; PRAGMA integrity_check must be "ok"; it is restarted on
    the same database. Every request that received a success reply is present in full
    (temporary item, one hold, one rs_request, the loan or its return, an audit row); every
    client first resends its unanswered request (same bytes) and gets a success, and nothing
    exists twice (rs_requests, holds, loans per item)."""
    database = tmp_path / "interlend.sqlite3"
    clients = [Client(n) for n in range(CLIENTS)]
    total_killed_in_flight = 0
    started = time.monotonic()
    for round_number in range(ROUNDS):
        daemon = launch(tmp_path, CRASH_CONFIG, database=database)
        try:
            stop = threading.Event()
            unanswered: list[int] = []
            before = sum(len(c.acked) for c in clients)
            threads = [threading.Thread(target=c.run, args=(daemon.ports["ncip"], stop,
                                                            unanswered), daemon=True)
                       for c in clients]
            for t in threads:
                t.start()

            def round_done(before: int = before) -> bool:
                acked = sum(len(c.acked) for c in clients) - before
                return acked >= ACKS_PER_ROUND or any(c.problems for c in clients)

            wait_until(round_done, 30, "replies in this round")
        finally:
            daemon.kill()                          # SIGKILL, requests in flight
        stop.set()
        for t in threads:
            t.join(30)
        assert not any(c.problems for c in clients), [c.problems for c in clients]
        total_killed_in_flight += len(unanswered)
        assert integrity(database) == "ok", f"round {round_number}"
        check_acknowledged(database, clients)
    daemon = launch(tmp_path, CRASH_CONFIG, database=database)
    try:
        # a last round without a kill: every pending request is resent and succeeds
        for client in clients:
            service, body = client.body()
            status, reply = daemon.post(body)
            assert status == 200 and wf.problem(reply) is None, (service, reply)
            client.acked.append((service, client.rid))
    finally:
        daemon.kill()
    check_acknowledged(database, clients)
    acked = sum(len(c.acked) for c in clients)
    print(f"\n{ROUNDS} kills, {acked} acknowledged requests, {total_killed_in_flight} "
          f"unanswered and resent, {time.monotonic() - started:.1f}s")
    assert total_killed_in_flight >= ROUNDS     # the kills did land with requests in flight
