# -*- test-case-name: tests.gateway.upstream_ncip.test_writer_free -*-
"""The store's writer is not held during an LMS call: while one broker's AcceptItem waits on a
slow LMS (an HTTP proxy holding the LMS's answer after the LMS made the change), another
broker's AcceptItem on another item goes through, and its audit rows (both legs) commit. The
held request then completes, each made once in the LMS. Against the NCIPServer (Koha) peer and
an upstream Interlend."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests import workflow_fixtures as wf
from tests.gateway.upstream_ncip.peers import FaultProxy, Lms, each_lms, start_gateway

pytestmark = pytest.mark.slow

TIPASA = {"Authorization": f"Bearer {wf.TIPASA_TOKEN}"}
HELD_SECONDS = 6.0


@pytest.fixture(scope="module", params=["interlend", "koha"])
def lms(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lms]:
    yield from each_lms(request.param, tmp_path_factory)


def _wait_for(condition: Callable[[], bool], what: str,
              why: Callable[[], object] = lambda: "", seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {why()}"
        time.sleep(0.05)


def test_another_brokers_change_commits_while_an_lms_call_is_held(
        lms: Lms, tmp_path: Path) -> None:
    proxy = FaultProxy(lms.url, slow_seconds=HELD_SECONDS)
    d = start_gateway(tmp_path, lms.config().replace(lms.url, proxy.url))
    try:
        start = lms.counts()
        proxy.mode, proxy.only = "slow", b">RS-WFREE-1<"
        held_body = wf.reshare_accept_item("RS-WFREE-1", lms.patron, barcode="LENDER-W1")
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(wf.call, d, held_body)
            _wait_for(lambda: any(b"AcceptItem" in c and b">RS-WFREE-1<" in c
                                  for c in proxy.calls), "the held AcceptItem at the LMS",
                      lambda: (proxy.calls, held.done() and held.result(), d.lines[-30:]))
            began = time.monotonic()
            other = wf.call(d, wf.tipasa_accept_item("TIP-WFREE-2", lms.patron, "NDOSU-W2"),
                            TIPASA)
            took = time.monotonic() - began
            assert wf.problem(other) is None, other
            assert not held.done(), "the held AcceptItem finished first: nothing was proven"
            assert took < HELD_SECONDS - 2, took
            # the other broker's exchange and the LMS exchange it caused are committed
            legs = wf.rows(d.database, "SELECT protocol, operation FROM audit WHERE"
                           " broker_request_id = ? OR notes LIKE ?", "TIP-WFREE-2",
                           "%TIP-WFREE-2%")
            assert sorted((r["protocol"], r["operation"]) for r in legs) == [
                ("ncip", "AcceptItem"), ("ncip-upstream", "AcceptItem")], legs
            # the held one is not: its outbox row is durable and waits for the LMS's answer
            assert wf.rows(d.database, "SELECT id FROM audit WHERE broker_request_id = ?",
                           "RS-WFREE-1") == []
            first = held.result(timeout=60)
        assert wf.problem(first) is None, first
        assert wf.call(d, held_body) == first
        assert lms.counts() == {**start, "items": start["items"] + 2,
                                "holds": start["holds"] + 2}
        assert sum(b"AcceptItem" in c and b">RS-WFREE-1<" in c for c in proxy.calls) == 1
    finally:
        d.kill()
        proxy.close()
