# -*- test-case-name: tests.gateway.upstream_ncip.test_settlement -*-
"""The outbox settled with the LMS at start-up, before any broker retries: Interlend is killed
(SIGKILL) while the LMS works on a change (the LMS makes it; Interlend never hears), restarts,
and settles the row by itself -- resent with the same upstream RequestId where the LMS
deduplicates (an upstream Interlend), looked up with LookupItem where AcceptItem must not be
sent twice (xc-toolkit), resent where the service is safe to repeat (CheckOutItem to Koha's
NCIPServer: "already on loan to this borrower"), or left for staff where no safe way exists
(AcceptItem to NCIPServer). The LMS holds exactly one item or loan; the broker's later retry
gets the reply it would have had, without another change in the LMS. An LMS down at start-up is
asked again, with a growing delay, until it answers."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
    koha,
    lms_counts,
    start_gateway,
)

pytestmark = pytest.mark.slow
__all__ = ["koha"]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The library's 'LMS': an Interlend on the seeded workflow database."""
    launch: Callable[..., Daemon]
    for launch in wf.launched_daemons(tmp_path_factory):
        yield launch("upstream-lms")


def _states(database: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(database.with_name(database.name + ".ncip-outbox"))
    try:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT service, state FROM outbox ORDER BY id")]
    finally:
        conn.close()


def _wait(condition: Callable[[], bool], why: Callable[[], Any], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, why()
        time.sleep(0.1)


def _swallow(d: Daemon, body: bytes) -> None:
    try:
        d.post(body, timeout=30)
    except OSError:
        pass


def _kill_during_the_call(d: Daemon, proxy: FaultProxy, body: bytes, service: bytes,
                          changed: Callable[[], bool]) -> None:
    """Send ``body``; once the LMS has made the change (its answer held by the proxy), SIGKILL
    the daemon: the outbox row stays ``pending``."""
    proxy.mode, proxy.only = "slow", service
    threading.Thread(target=lambda: _swallow(d, body), daemon=True).start()
    _wait(changed, lambda: ("the LMS never made the change", d.lines[-20:]))
    d.kill()
    proxy.mode, proxy.only = "forward", None
    proxy.calls.clear()                 # from here: what the LMS is asked after the crash


def _upstream_case(upstream: Daemon, tmp_path: Path, profile: str, agency: str,
                   rid: str, lms_then: str = "forward"
                   ) -> tuple[Daemon, FaultProxy, bytes, dict[str, int]]:
    proxy = FaultProxy(upstream.base_url + "/ncip", slow_seconds=6.0)
    database = tmp_path / "interlend.sqlite3"
    wf.seed_database(database)
    config = backend_config(proxy.url, profile, agency, wf.AGENCY)
    start = lms_counts(upstream.database)
    accept = wf.reshare_accept_item(rid, "P100", barcode=f"{rid}-V1")
    d = start_gateway(tmp_path, config, database=database)
    _kill_during_the_call(d, proxy, accept, b"AcceptItem",
                          lambda: lms_counts(upstream.database)["items"] > start["items"])
    assert _states(database) == [("AcceptItem", "pending")]
    proxy.mode = lms_then
    d = start_gateway(tmp_path, config, database=database)
    return d, proxy, accept, start


@pytest.mark.parametrize("profile,agency,asks", [
    ("generic-ncip2", "01XXX_INST", b"AcceptItem"),     # deduplicates: resent, same id
    ("xc-toolkit", "Relais", b"LookupItem"),            # must not resend: looked up
], ids=["resend", "lookup"])
def test_a_lost_acceptitem_is_settled_at_start_up(upstream: Daemon, tmp_path: Path,
                                                  profile: str, agency: str,
                                                  asks: bytes) -> None:
    rid = f"RS-SETTLE-{profile}"
    d, proxy, accept, start = _upstream_case(upstream, tmp_path, profile, agency, rid)
    try:
        # no broker retry yet: the daemon settles the row with the LMS by itself
        _wait(lambda: _states(d.database) == [("AcceptItem", "answered")],
              lambda: (_states(d.database), d.lines[-20:]))
        asked = list(proxy.calls)
        assert [c for c in asked if asks in c], asked
        if asks == b"LookupItem":
            assert not [c for c in asked if b"AcceptItem" in c]   # never sent twice
        assert lms_counts(upstream.database)["items"] == start["items"] + 1
        health = d.admin_health()["upstream"]["circulation"]
        assert health["outbox_open"] == 0 and health["outbox_answered"] == 1, health
        assert health["settlement"]["settled"] == 1, health

        settled_calls = len(proxy.calls)
        retry = wf.call(d, accept)                  # the broker's retry, answered from it
        assert ReShare.ok(retry), retry
        assert wf.text(retry, "ItemIdentifierValue") == rid
        assert not [c for c in proxy.calls[settled_calls:] if b"AcceptItem" in c]  # no change
        assert wf.call(d, accept) == retry
        assert lms_counts(upstream.database)["items"] == start["items"] + 1
        _wait(lambda: _states(d.database) == [("AcceptItem", "committed")],
              lambda: _states(d.database))
    finally:
        d.kill()
        proxy.close()


def test_an_lms_down_at_start_up_is_asked_again_until_it_answers(
        upstream: Daemon, tmp_path: Path) -> None:
    d, proxy, accept, start = _upstream_case(upstream, tmp_path, "generic-ncip2", "01XXX_INST",
                                             "RS-SETTLE-DOWN", lms_then="down")
    try:
        _wait(lambda: d.admin_health()["upstream"]["circulation"]["settlement"]["passes"] >= 1,
              lambda: d.admin_health())
        health = d.admin_health()["upstream"]["circulation"]
        assert health["outbox_open"] == 1, health              # unsettled, counted
        assert health["settlement"]["left"] == 1 and health["settlement"]["next_in_seconds"]
        assert _states(d.database) == [("AcceptItem", "pending")]
        proxy.mode = "forward"                                   # the LMS is back
        _wait(lambda: _states(d.database) == [("AcceptItem", "answered")],
              lambda: (_states(d.database), d.admin_health()), seconds=40)
        assert d.admin_health()["upstream"]["circulation"]["outbox_open"] == 0
        assert lms_counts(upstream.database)["items"] == start["items"] + 1
        retry = wf.call(d, accept)
        assert ReShare.ok(retry), retry
        assert lms_counts(upstream.database)["items"] == start["items"] + 1
    finally:
        d.kill()
        proxy.close()


def _koha_config(url: str) -> str:
    return backend_config(url, "koha-ncipserver", KOHA_AGENCY, "KOHA")


def test_koha_checkout_resent_acceptitem_left_for_staff(koha: KohaPeer,
                                                        tmp_path: Path) -> None:
    """NCIPServer: a lost CheckOutItem is resent at start-up (Koha: "already on loan to this
    borrower", done: one loan); a lost AcceptItem is not (Koha has no LookupItem and no
    deduplication): it stays counted for staff, and Koha keeps exactly one item."""
    proxy = FaultProxy(koha.url, slow_seconds=6.0)
    database = tmp_path / "interlend.sqlite3"
    wf.seed_database(database)
    start = koha.counts()
    d = start_gateway(tmp_path, _koha_config(proxy.url), database=database)
    try:
        accept = wf.reshare_accept_item("RS-SETTLE-K1", JANE, barcode="LENDER-SK1")
        assert ReShare.ok(wf.call(d, accept))
        out = wf.reshare_check_out("LENDER-SK1", JANE, rid="RS-SETTLE-K1")
        _kill_during_the_call(d, proxy, out, b"CheckOutItem",
                              lambda: koha.counts()["loans"] > start["loans"])
    finally:
        d.kill()
    assert _states(database)[-1] == ("CheckOutItem", "pending")
    d = start_gateway(tmp_path, _koha_config(proxy.url), database=database)
    try:
        _wait(lambda: _states(database)[-1] == ("CheckOutItem", "answered"),
              lambda: (_states(database), d.lines[-20:]))
        assert koha.counts()["loans"] == start["loans"] + 1
        done = wf.call(d, out)
        assert ReShare.ok(done), done
        assert wf.call(d, out) == done
        assert koha.counts() == {"items": start["items"] + 1, "holds": start["holds"],
                                 "loans": start["loans"] + 1}

        accept2 = wf.reshare_accept_item("RS-SETTLE-K2", JANE, barcode="LENDER-SK2")
        _kill_during_the_call(d, proxy, accept2, b"AcceptItem",
                              lambda: koha.counts()["items"] > start["items"] + 1)
    finally:
        d.kill()
    d = start_gateway(tmp_path, _koha_config(proxy.url), database=database)
    try:
        _wait(lambda: d.admin_health()["upstream"]["circulation"]["settlement"]["passes"] >= 1,
              lambda: d.admin_health())
        health = d.admin_health()["upstream"]["circulation"]
        assert health["outbox_open"] == 1 and health["settlement"]["for_staff"] == 1, health
        assert _states(database)[-1] == ("AcceptItem", "pending")
        assert koha.counts()["items"] == start["items"] + 2      # one, never two
        assert ReShare.problems(wf.call(d, accept2))[0]["type"] == \
            "Temporary Processing Failure"
        assert koha.counts()["items"] == start["items"] + 2
    finally:
        d.kill()
        proxy.close()
