# -*- test-case-name: tests.gateway.upstream_ncip.test_upstream_interlend -*-
"""A second Interlend (embedded backend) as the library's NCIP responder, answering in each
dialect: ns1 prefix (its ``illiad`` peer), default namespace (``relais``) and NCIP 1 without a
namespace (``innreach``). ReShare's borrowing flow goes through the first Interlend to it over
real HTTP; the upstream's circulation tables are checked after every step, and every step is
retried as after a client time-out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import workflow_fixtures as wf
from tests.daemon import Daemon
from tests.gateway.test_broker_clients import ReShare
from tests.gateway.upstream_ncip.peers import backend_config, lms_counts, start_gateway

pytestmark = pytest.mark.slow

DIALECTS = [("generic-ncip2", "01XXX_INST"), ("xc-toolkit", "Relais"),
            ("generic-ncip2:none", "zv010"), ("generic-ncip1", "zv010")]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The library's 'LMS': an Interlend on the seeded workflow database."""
    launch: Callable[..., Daemon]
    for launch in wf.launched_daemons(tmp_path_factory):
        yield launch("upstream-lms")


def _counts(d: Daemon) -> dict[str, int]:
    return lms_counts(d.database)


def _step(d: Daemon, lms: Daemon, body: bytes) -> bytes:
    reply = wf.call(d, body)
    after = _counts(lms)
    assert wf.call(d, body) == reply, "a retried step got another reply"
    assert _counts(lms) == after, "a retried step changed the LMS"
    return reply


@pytest.mark.parametrize("profile,agency", DIALECTS, ids=[p for p, _ in DIALECTS])
def test_reshare_borrowing_through_interlend_to_an_upstream_interlend(
        upstream: Daemon, tmp_path: Path, profile: str, agency: str) -> None:
    url = upstream.base_url + "/ncip"
    profile, _, namespace = profile.partition(":")   # NCIP 2 without a namespace: "none"
    extra = f'namespace = "{namespace}"' if namespace else ""
    d = start_gateway(tmp_path, backend_config(url, profile, agency, wf.AGENCY, extra))
    try:
        rid = f"RS-UP-{profile}-{namespace}"
        start = _counts(upstream)
        user = _step(d, upstream, wf.reshare_lookup_user("P100"))
        assert ReShare.ok(user), user
        assert b"Alice" in user
        unknown = wf.call(d, wf.reshare_lookup_user("NOBODY"))
        assert [p["type"] for p in ReShare.problems(unknown)] == ["Unknown User"]

        accepted = _step(d, upstream, wf.reshare_accept_item(rid, "P100",
                                                             barcode=f"{rid}-V1"))
        assert ReShare.ok(accepted), accepted
        assert _counts(upstream) == {**start, "items": start["items"] + 1,
                                     "holds": start["holds"] + 1}
        out = _step(d, upstream, wf.reshare_check_out(f"{rid}-V1", "P100"))
        assert ReShare.ok(out), out
        assert _counts(upstream) == {"items": start["items"] + 1, "holds": start["holds"],
                                     "loans": start["loans"] + 1}
        loan = wf.one(upstream.database, "SELECT p.barcode FROM loans l JOIN patrons p ON"
                      " p.id = l.patron_id WHERE l.returned_at IS NULL ORDER BY l.id DESC")
        assert loan is not None and loan["barcode"] == "P100"
        back = _step(d, upstream, wf.reshare_check_in(f"{rid}-V1"))
        assert ReShare.ok(back), back
        assert _counts(upstream) == {"items": start["items"] + 1, "holds": start["holds"],
                                     "loans": start["loans"]}
        # a blocked patron: the upstream's User Blocked comes back as User Blocked
        blocked = wf.call(d, wf.reshare_accept_item(f"{rid}-B", "P200", barcode=f"{rid}-B1"))
        assert [p["type"] for p in ReShare.problems(blocked)] == ["User Blocked"], blocked
        assert _counts(upstream)["items"] == start["items"] + 1
    finally:
        d.kill()
        print("\n".join(d.lines[-30:]))


def test_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bench.upstream_ncip`` measures both paths and prints the ratio."""
    from bench.upstream_ncip import main

    assert main(["--requests", "5", "--concurrency", "2"]) == 0
    out = capsys.readouterr().out
    assert "LookupUser   ratio" in out and "AcceptItem   ratio" in out


def _login(patron: str, pin: str) -> bytes:
    return wf.ncip2("LookupUser", [
        wf.header("RESHARE", secret=wf.RESHARE_SECRET, profile="EZBORROW"),
        ("AuthenticationInput", [("AuthenticationInputData", patron),
                                 ("AuthenticationInputType", "Barcode Id")]),
        ("AuthenticationInput", [("AuthenticationInputData", pin),
                                 ("AuthenticationInputType", "PIN")]),
        ("UserElementType", "Name Information")])


def test_pins_stay_ours_and_lock_out_applies(upstream: Daemon, tmp_path: Path) -> None:
    """The LMS is asked who the patron is, never for the PIN: the PIN is checked against the
    gateway's own (imported) hash, and wrong PINs lock the patron out as with the embedded
    backend."""
    from tests.gateway.upstream_ncip.peers import FaultProxy

    proxy = FaultProxy(upstream.base_url + "/ncip")
    d = start_gateway(tmp_path, backend_config(proxy.url, "generic-ncip2", "01XXX_INST",
                                               wf.AGENCY).replace(
        "[ncip]\n", "[ncip]\nauth_failures_before_lockout = 3\n"))
    try:
        good = wf.call(d, _login("P100", "1234"))
        assert wf.problem(good) is None and b"Alice" in good
        for _ in range(3):
            assert wf.problem(wf.call(d, _login("P100", "9999"))) == \
                "User Authentication Failed"
        locked = wf.call(d, _login("P100", "1234"))
        assert wf.problem(locked) is not None              # locked out, right PIN or not
        assert proxy.calls and all(b"1234" not in c and b"9999" not in c
                                   for c in proxy.calls)
        # a patron whose PIN we do not hold cannot log in, whatever the LMS says
        assert wf.problem(wf.call(d, _login("P101", "0000"))) == "User Authentication Failed"
    finally:
        d.kill()
        proxy.close()


def test_kill_9_during_the_lms_call_then_resend_with_the_same_request_id(
        upstream: Daemon, tmp_path: Path) -> None:
    """Interlend is killed while the LMS (an upstream Interlend, which deduplicates by
    RequestId) has applied an AcceptItem but not yet answered: the outbox row stays
    ``pending``. The broker's retry after the restart resends the recorded request, same
    upstream RequestId: the LMS answers from its own books and has exactly one item."""
    import sqlite3
    import threading

    from tests.gateway.upstream_ncip.peers import FaultProxy

    proxy = FaultProxy(upstream.base_url + "/ncip", slow_seconds=4.0)
    database = tmp_path / "interlend.sqlite3"
    wf.seed_database(database)
    config = backend_config(proxy.url, "generic-ncip2", "01XXX_INST", wf.AGENCY)
    start = _counts(upstream)
    accept = wf.reshare_accept_item("RS-PEND-1", "P100", barcode="RS-PEND-1-V1")
    d = start_gateway(tmp_path, config, database=database)
    try:
        proxy.mode, proxy.only = "slow", b"AcceptItem"
        threading.Thread(target=lambda: _swallow(d, accept), daemon=True).start()
        deadline = time.monotonic() + 10
        while _counts(upstream)["items"] == start["items"] and time.monotonic() < deadline:
            time.sleep(0.05)
        d.kill()                                  # the LMS did it; we never heard
    finally:
        d.kill()
    assert _counts(upstream)["items"] == start["items"] + 1
    outbox = database.with_name(database.name + ".ncip-outbox")
    conn = sqlite3.connect(outbox)
    [(state, first_id)] = conn.execute("SELECT state, upstream_id FROM outbox").fetchall()
    conn.close()
    assert state == "pending"
    proxy.mode = "forward"
    d = start_gateway(tmp_path, config, database=database)
    try:
        retry = wf.call(d, accept)
        assert ReShare.ok(retry), retry
        assert _counts(upstream)["items"] == start["items"] + 1      # exactly one
        resent = [c for c in proxy.calls if b"AcceptItem" in c]
        assert len(resent) == 2 and resent[0] == resent[1]            # same bytes, same id
        assert first_id.encode() in resent[1]
    finally:
        d.kill()
        proxy.close()


def _swallow(d: Daemon, body: bytes) -> None:
    try:
        d.post(body, timeout=20)
    except OSError:
        pass
