# -*- test-case-name: tests.gateway.upstream_ncip.test_faults -*-
"""Exactly once across both legs, with faults: Interlend killed (SIGKILL) between the LMS's
answer and its own commit, the LMS slow past the time limit after applying the change, the LMS
answering 500 with text, the LMS unreachable; then the broker's retry. The LMS (the NCIPServer
peer) is counted after each: exactly one item, hold and loan."""

from __future__ import annotations

import http.client
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import workflow_fixtures as wf
from tests.daemon import Daemon
from tests.gateway.test_broker_clients import ReShare
from tests.gateway.upstream_ncip.peers import (
    JANE,
    KOHA_AGENCY,
    FaultProxy,
    KohaPeer,
    backend_config,
    kill_after,
    koha,
    plus,
    start_gateway,
)

pytestmark = pytest.mark.slow
__all__ = ["koha"]

def _config(url: str) -> str:
    return backend_config(url, "koha-ncipserver", KOHA_AGENCY, "KOHA")


def _post_expecting_death(d: Daemon, body: bytes) -> None:
    """Send; the daemon kills itself before answering."""
    try:
        status, reply = d.post(body)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError):
        pass
    else:
        raise AssertionError(f"the daemon answered ({status}) instead of dying: {reply!r}\n"
                             + "\n".join(d.lines[-20:]))
    d.process.wait(timeout=20)
    assert d.process.returncode == -9


def _outbox(d: Daemon) -> list[tuple[str, str]]:
    conn = sqlite3.connect(d.database.with_name(d.database.name + ".ncip-outbox"))
    try:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT service, state FROM outbox ORDER BY id")]
    finally:
        conn.close()


def _problem(reply: bytes) -> str | None:
    problems = ReShare.problems(reply)
    return problems[0]["type"] if problems else None


@pytest.fixture
def proxy(koha: KohaPeer) -> Iterator[FaultProxy]:
    p = FaultProxy(koha.url, slow_seconds=5.0)
    yield p
    p.close()


def test_kill_9_between_the_lms_answer_and_our_commit(koha: KohaPeer, tmp_path: Path) -> None:
    start = koha.counts()
    database = tmp_path / "interlend.sqlite3"
    wf.seed_database(database)
    accept = wf.reshare_accept_item("RS-KILL-1", JANE, barcode="LENDER-K1")
    d = start_gateway(tmp_path, _config(koha.url), env=kill_after("AcceptItem"), database=database)
    _post_expecting_death(d, accept)
    # Koha did it: one item, one hold; our side committed nothing but the outbox row
    assert koha.counts() == {**start, "items": start["items"] + 1,
                             "holds": start["holds"] + 1}
    assert _outbox(d) == [("AcceptItem", "answered")]

    d = start_gateway(tmp_path, _config(koha.url), env=kill_after("CheckOutItem"),
                      database=database)
    try:
        assert any("outbox: AcceptItem" in line and "reshare|AcceptItem|RS-KILL-1" in line
                   for line in d.lines), d.lines          # staff see it at start-up
        # Koha's answer is in the outbox: nothing to ask the LMS, the broker's retry commits it
        health = d.admin_health()["upstream"]["circulation"]
        assert health["outbox_open"] == 0 and health["outbox_answered"] == 1, health
        retry = wf.call(d, accept)          # the broker's retry: Koha's answer reused
        assert ReShare.ok(retry), retry
        assert koha.counts() == {**start, "items": start["items"] + 1,
                                 "holds": start["holds"] + 1}
        assert wf.call(d, accept) == retry
        out = wf.reshare_check_out("LENDER-K1", JANE, rid="RS-KILL-1")
        _post_expecting_death(d, out)
    finally:
        d.kill()
    assert koha.counts()["loans"] == start["loans"] + 1
    d = start_gateway(tmp_path, _config(koha.url), database=database)
    try:
        done = wf.call(d, out)
        assert ReShare.ok(done), done
        assert wf.call(d, out) == done
        assert koha.counts() == {"items": start["items"] + 1, "holds": start["holds"],
                                 "loans": start["loans"] + 1}   # the hold was filled
        deadline = time.monotonic() + 10  # the committed mark is written after the reply
        while _outbox(d) != [("AcceptItem", "committed"), ("CheckOutItem", "committed")]:
            assert time.monotonic() < deadline, _outbox(d)
            time.sleep(0.1)
    finally:
        d.kill()


def test_slow_lms_then_retry(koha: KohaPeer, proxy: FaultProxy, tmp_path: Path) -> None:
    """The LMS applies the change but answers after our time limit (3 s): the broker gets
    Temporary Processing Failure in time; its retry never makes a second item or loan."""
    start = koha.counts()
    d = start_gateway(tmp_path, _config(proxy.url).replace("timeout = 15", "timeout = 3"))
    try:
        accept = wf.reshare_accept_item("RS-SLOW-1", JANE, barcode="LENDER-S1")
        accept_ok = wf.call(d, accept)
        assert ReShare.ok(accept_ok)
        proxy.mode, proxy.only = "slow", b"CheckOutItem"
        out = wf.reshare_check_out("LENDER-S1", JANE, rid="RS-SLOW-1")
        began = time.monotonic()
        first = wf.call(d, out)
        assert _problem(first) == "Temporary Processing Failure"
        assert time.monotonic() - began < 5.5
        assert d.admin_health()["upstream"]["circulation"]["timeouts"] == 1
        time.sleep(proxy.slow_seconds)       # Koha made the loan meanwhile
        assert koha.counts()["loans"] == start["loans"] + 1
        proxy.mode = "forward"
        second = wf.call(d, out)             # resent: Koha says it is already on loan to Jane
        assert ReShare.ok(second), second
        assert koha.counts()["loans"] == start["loans"] + 1
        assert koha.counts()["items"] == start["items"] + 1

        # AcceptItem is not resent to Koha (it would make a second item): staff settle it
        proxy.mode, proxy.only = "slow", b"AcceptItem"
        accept2 = wf.reshare_accept_item("RS-SLOW-2", JANE, barcode="LENDER-S2")
        assert _problem(wf.call(d, accept2)) == "Temporary Processing Failure"
        time.sleep(proxy.slow_seconds)
        proxy.mode = "forward"
        assert _problem(wf.call(d, accept2)) == "Temporary Processing Failure"
        assert koha.counts()["items"] == start["items"] + 2   # one, never two
    finally:
        d.kill()


def test_500_with_text_and_unreachable_lms(koha: KohaPeer, proxy: FaultProxy,
                                           tmp_path: Path) -> None:
    """An HTTP 500 with a text body and a dead LMS are Temporary Processing Failure for the
    broker (the text is not passed through); /healthz, /metrics and the dashboard show the
    upstream down. A 500 leaves the change's fate unknown, so it is settled like a lost
    answer: CheckOutItem is resent once the LMS is back (Koha then has one loan); AcceptItem,
    which NCIPServer would do twice, is not (Koha has no item from it). A request that never
    reached the LMS (connection refused) is simply made afresh."""
    start = koha.counts()
    d = start_gateway(tmp_path, _config(proxy.url).replace("timeout = 15", "timeout = 3"))
    try:
        accepted = wf.call(d, wf.reshare_accept_item("RS-500-0", JANE, barcode="LENDER-F0"))
        assert ReShare.ok(accepted), accepted
        out = wf.reshare_check_out("LENDER-F0", JANE, rid="RS-500-0")
        proxy.mode, proxy.only = "500", b"CheckOutItem"
        reply = wf.call(d, out)
        assert _problem(reply) == "Temporary Processing Failure"
        assert b"database is locked" not in reply
        accept = wf.reshare_accept_item("RS-500-1", JANE, barcode="LENDER-F1")
        proxy.only = b"AcceptItem"
        assert _problem(wf.call(d, accept)) == "Temporary Processing Failure"
        proxy.mode, proxy.only = "down", None
        began = time.monotonic()
        assert _problem(wf.call(d, out)) == "Temporary Processing Failure"
        assert time.monotonic() - began < 5.5
        assert koha.counts() == plus(start, items=1, holds=1)
        health = d.admin_health()
        assert health["upstream"]["circulation"]["state"] == "down", health
        assert health["status"] == "degraded"
        assert health["upstream"]["circulation"]["errors"] >= 3
        assert health["upstream"]["circulation"]["outbox_open"] == 2       # the two 500s, unsettled
        with urllib.request.urlopen(d.admin_url + "/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'interlend_upstream_ncip_up{profile="koha-ncipserver"} 0.0' in metrics
        assert 'interlend_upstream_ncip_errors_total{profile="koha-ncipserver"}' in metrics
        with urllib.request.urlopen(d.admin_url + "/", timeout=10) as response:
            page = response.read().decode()
        assert "Library system (NCIP, koha-ncipserver)" in page and ">down<" in page

        proxy.mode = "forward"                       # the LMS is back
        done = wf.call(d, out)                       # resent: one loan
        assert ReShare.ok(done), done
        assert koha.counts() == plus(start, items=1, loans=1)
        assert _problem(wf.call(d, accept)) == "Temporary Processing Failure"   # staff
        assert koha.counts()["items"] == start["items"] + 1
        health = d.admin_health()
        assert health["upstream"]["circulation"]["state"] == "up", health
        assert health["status"] == "ok", health
    finally:
        d.kill()


def test_a_refused_connection_is_made_afresh(koha: KohaPeer, tmp_path: Path) -> None:
    """Nothing listening at the LMS's address: Temporary Processing Failure in time; after
    a restart with the LMS reachable the broker's retry succeeds, and Koha has one item. (The
    client marks a refused connection as never sent: see test_recorded_replies.)"""
    from tests.gateway.upstream_ncip.peers import free_port

    port = free_port()
    database = tmp_path / "interlend.sqlite3"
    wf.seed_database(database)
    start = koha.counts()
    config = _config(f"http://127.0.0.1:{port}/").replace("timeout = 15", "timeout = 3")
    d = start_gateway(tmp_path, config, database=database)
    accept = wf.reshare_accept_item("RS-REF-1", JANE, barcode="LENDER-R1")
    try:
        assert _problem(wf.call(d, accept)) == "Temporary Processing Failure"
    finally:
        d.kill()
    d = start_gateway(tmp_path, _config(koha.url), database=database)
    try:
        ok = wf.call(d, accept)
        assert ReShare.ok(ok), ok
        assert koha.counts() == plus(start, items=1, holds=1)
    finally:
        d.kill()


def test_a_retry_while_the_lms_call_is_in_flight_waits(koha: KohaPeer, tmp_path: Path) -> None:
    """The broker resends while the LMS is still working on the first request: the retry
    waits for it and gets the same reply; the LMS is called once."""
    from concurrent.futures import ThreadPoolExecutor

    slow = FaultProxy(koha.url, slow_seconds=2.0)
    start = koha.counts()
    d = start_gateway(tmp_path, _config(slow.url))
    try:
        slow.mode, slow.only = "slow", b"AcceptItem"
        accept = wf.reshare_accept_item("RS-FLIGHT-1", JANE, barcode="LENDER-FL1")
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(wf.call, d, accept)
            time.sleep(0.5)                      # the first is with the LMS now
            second = pool.submit(wf.call, d, accept)
            replies = [first.result(), second.result()]
        assert ReShare.ok(replies[0]) and replies[0] == replies[1]
        assert sum(b"AcceptItem" in c for c in slow.calls) == 1
        assert koha.counts()["items"] == start["items"] + 1
    finally:
        d.kill()
        slow.close()
