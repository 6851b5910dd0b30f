"""Serving Z39.50 and NCIP from worker processes (``[gateway] workers = 2``), with the real
daemon.

Two workers serve the primary's listening sockets; the primary accepts only while no worker
is ready. To be sure a worker answered, a test stops the primary (SIGSTOP): once it runs again
(SIGCONT) the worker's shipped audit rows and counters reach the writer and ``/metrics``, and
a request the worker forwarded is answered.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.config import ConfigErrors, parse_config
from gateway.workers.ncip_routing import answered_here
from gateway.workers.sharing import shared_cap, shared_rate
from protocols.z3950 import client as origin
from protocols.z3950 import codec
from tests import workflow_fixtures as wf
from tests.daemon import REPO, Daemon, start_daemon
from tests.z3950_clients import (
    YAZ_CLIENT,
    Bib,
    Raw,
    need,
    seed_catalogue,
    steps,
    yaz_client,
)

pytestmark = pytest.mark.slow

CORPUS = (
    Bib("wk-001", "Rivers of the north", "Aalto, Aino", "2001", items=("WK-1",)),
    Bib("wk-002", "The north wind", "Berg, Bo", "1999", items=("WK-2",)),
)
DEMO = (REPO / "config" / "interlend.toml").read_text()
TWO = DEMO.replace("[gateway]\n", "[gateway]\nworkers = 2\n", 1)


def start(tmp_path: Path, config: str = TWO) -> Daemon:
    need(("yaz-client", YAZ_CLIENT))
    database = tmp_path / "interlend.sqlite3"
    seed_catalogue(database, CORPUS)
    daemon = start_daemon(tmp_path, config, database=database)
    daemon.wait_for(r"worker 1 \(pid \d+\) ready")
    daemon.wait_for(r"worker 2 \(pid \d+\) ready")
    return daemon


@contextmanager
def primary_paused(daemon: Daemon) -> Iterator[None]:
    """The primary stopped (SIGSTOP): only the worker takes connections meanwhile."""
    daemon.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        daemon.signal(signal.SIGCONT)


def search(tmp_path: Path, port: int, auth: str | None = None) -> str:
    """One yaz-client session: find, show; what it printed."""
    return yaz_client(tmp_path, port, ["find @attr 1=4 north", "show 1"], auth=auth)


def audit_count(daemon: Daemon, operation: str) -> int:
    conn = sqlite3.connect(f"file:{daemon.database}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM audit WHERE protocol = 'z3950' AND "
                                "operation = ?", (operation,)).fetchone()[0])
    finally:
        conn.close()


def wait_until(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def reloads(daemon: Daemon) -> int:
    """How many reloads the worker has logged."""
    return sum(1 for line in list(daemon.lines)
               if re.search(r"worker \d+: configuration reloaded", line))


def metric(daemon: Daemon, pattern: str) -> float:
    """The sum of the ``/metrics`` samples whose line matches ``pattern``."""
    with urllib.request.urlopen(daemon.admin_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if not line.startswith("#") and re.search(pattern, line))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start(tmp_path_factory.mktemp("workers"))
    try:
        yield running
    finally:
        running.kill()


def test_both_processes_answer_and_their_rows_and_counts_reach_the_primary(
        daemon: Daemon, tmp_path: Path) -> None:
    """yaz-client search + present answered by a worker while the primary is paused, and by
    the workers with the primary running; every search has its audit row in the primary's
    database and is counted in its ``/metrics``; ``/healthz`` lists both workers, and its
    connection counts add the workers' open associations."""
    port = daemon.ports["z3950"]
    before = audit_count(daemon, "search")
    with primary_paused(daemon):
        by_worker = steps(search(tmp_path, port))
    assert by_worker[1].find(r"Search was a (success)") and by_worker[1].hits == 2
    assert "north" in by_worker[2].text
    for _ in range(3):
        answered = steps(search(tmp_path, port))
        assert answered[1].hits == 2
    wait_until(lambda: audit_count(daemon, "search") == before + 4)
    wait_until(lambda: metric(daemon, r'^interlend_requests_total\{.*protocol="z3950".*'
                                      r'service="search"') >= before + 4)
    assert metric(daemon, r'^interlend_requests_total\{.*protocol="z3950".*'
                          r'service="search"') == before + 4
    workers = daemon.admin_health()["workers"]
    assert workers["count"] == 2 and all(w["ready"] for w in workers["running"])
    held = Raw(port)  # an association held open is counted by the primary within a second
    try:
        init = held.ask(origin.init_request())
        assert init is not None and codec.pdu_arm(init) == "initResponse"
        wait_until(lambda: daemon.admin_health()["connections"]["z3950"] == 1)
    finally:
        held.close()


def test_reload_reaches_the_worker(daemon: Daemon, tmp_path: Path) -> None:
    """SIGHUP with ``require_auth``: both workers log it, and a worker refuses an Init without
    credentials and takes the peer's."""
    port = daemon.ports["z3950"]
    daemon.config_path.write_text(TWO.replace("[z3950]\n", "[z3950]\nrequire_auth = true\n", 1))
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: reloads(daemon) == 2)  # both workers
    try:
        with primary_paused(daemon):
            refused = steps(search(tmp_path, port))
            accepted = steps(search(tmp_path, port, auth="reshare/demo-z-pass"))
        assert refused[0].find(r"Connection (rejected)"), refused[0].lines
        assert accepted[0].find(r"Connection (accepted)"), accepted[0].lines
        assert accepted[1].hits == 2
    finally:
        daemon.config_path.write_text(TWO)
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: reloads(daemon) == 4)


def test_a_killed_worker_is_started_again(daemon: Daemon, tmp_path: Path) -> None:
    """SIGKILL to the worker: logged, started again (a new pid), serving again."""
    old = daemon.admin_health()["workers"]["running"][0]["pid"]
    os.kill(old, signal.SIGKILL)
    daemon.wait_for(rf"worker 1 \(pid {old}\) ended unexpectedly")
    line = daemon.wait_for(rf"worker 1 \(pid (?!{old}\b)\d+\) ready")
    new = int(re.search(r"pid (\d+)", line).group(1))  # type: ignore[union-attr]
    assert new != old
    with primary_paused(daemon):
        answered = steps(search(tmp_path, daemon.ports["z3950"]))
    assert answered[1].hits == 2
    assert daemon.admin_health()["workers"]["restarts"] == 1


def test_stop_drains_the_worker(tmp_path: Path) -> None:
    """SIGTERM with an association open on the worker: it gets Close(shutdown), its audit rows
    are written, both processes exit and the primary exits 0."""
    daemon = start(tmp_path)
    try:
        port = daemon.ports["z3950"]
        before = audit_count(daemon, "search")
        with primary_paused(daemon):
            client = Raw(port)
            init = client.ask(origin.init_request())
            assert init is not None and codec.pdu_arm(init) == "initResponse"
            found = client.ask(origin.search_request("@attr 1=4 north"))
            assert found is not None and int(codec.pdu_body(found)["resultCount"]) == 2
        worker = daemon.admin_health()["workers"]["running"][0]["pid"]
        assert daemon.stop() == 0
        close = client.receive()
        assert close is not None and codec.pdu_arm(close) == "close", "\n".join(daemon.lines)
        client.close()
        assert audit_count(daemon, "search") == before + 1
        with pytest.raises(ProcessLookupError):
            os.kill(worker, 0)
    finally:
        daemon.kill()


def test_the_primary_serves_while_no_worker_is_ready(daemon: Daemon) -> None:
    """Both workers killed: until one is ready again, the primary takes the connections
    itself (an association opened then is the primary's, not a worker's)."""
    pids = [w["pid"] for w in daemon.admin_health()["workers"]["running"]]
    ended = len([line for line in daemon.lines if "ended unexpectedly" in line])
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len([line for line in daemon.lines
                            if "ended unexpectedly" in line]) == ended + 2)
    held = Raw(daemon.ports["z3950"])
    try:
        init = held.ask(origin.init_request())
        assert init is not None and codec.pdu_arm(init) == "initResponse"
        health = daemon.admin_health()
        assert health["connections"]["z3950"] == 1
        assert all(w["connections"]["z3950"] == 0 for w in health["workers"]["running"])
    finally:
        held.close()
    wait_until(lambda: len(daemon.admin_health()["workers"]["running"]) == 2 and all(
        w["ready"] for w in daemon.admin_health()["workers"]["running"]))


def test_workers_die_with_the_primary(tmp_path: Path) -> None:
    """SIGKILL to the primary (no chance to stop anything): its workers end too
    (PR_SET_PDEATHSIG, and the end of their pipe)."""
    daemon = start(tmp_path)
    try:
        pids = [w["pid"] for w in daemon.admin_health()["workers"]["running"]]
        assert len(pids) == 2
        daemon.kill()

        def gone(pid: int) -> bool:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return True
            return state == "Z"  # ended, not yet reaped by whoever adopted it

        wait_until(lambda: all(gone(pid) for pid in pids))
    finally:
        daemon.kill()


# -- NCIP -----------------------------------------------------------------------------------------


def test_ncip_lookup_in_the_worker_accept_item_forwarded_exactly_once(tmp_path: Path) -> None:
    """LookupUser answered by the worker alone (primary paused), its audit row written by the
    primary; AcceptItem taken by the worker while the primary is paused is forwarded and
    answered once the primary runs (durably done: the request is in the database); its retry
    gets the same reply and creates nothing more; a PIN check is forwarded (the lock-out
    writes) and answered."""
    database = tmp_path / "interlend.sqlite3"
    wf.seed_database(database)
    config = wf.CONFIG.replace("[gateway]\n", "[gateway]\nworkers = 2\n", 1)
    daemon = start_daemon(tmp_path, config, database=database)
    try:
        daemon.wait_for(r"worker 1 \(pid \d+\) ready")
        with primary_paused(daemon):
            status, body = daemon.post(wf.reshare_lookup_user("P100"), timeout=15)
        assert status == 200 and b"LookupUserResponse" in body and b"Alice" in body, body
        assert b"Problem" not in body

        accept = wf.reshare_accept_item("RS-WK-1", "P100", barcode="WK-B-1")
        answers: list[tuple[int, bytes]] = []
        with primary_paused(daemon):
            sender = threading.Thread(target=lambda: answers.append(
                daemon.post(accept, timeout=30)))
            sender.start()
            time.sleep(0.5)  # the worker has taken the connection and forwarded the request
            assert not answers
        sender.join(30)
        status, first = answers[0]
        assert status == 200 and b"AcceptItemResponse" in first and b"Problem" not in first
        assert daemon.post(accept) == (200, first)
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            assert conn.execute("SELECT count(*) FROM rs_requests WHERE broker_request_id = "
                                "'RS-WK-1'").fetchone()[0] == 1
        finally:
            conn.close()

        pin = wf.ncip2("LookupUser", [wf._rs_header(), ("AuthenticationInput", [
            ("AuthenticationInputData", "P100"), ("AuthenticationDataFormatType", "text"),
            ("AuthenticationInputType", "Barcode Id")]), ("AuthenticationInput", [
                ("AuthenticationInputData", "1234"), ("AuthenticationDataFormatType", "text"),
                ("AuthenticationInputType", "PIN")])])
        status, checked = daemon.post(pin)
        assert status == 200 and b"LookupUserResponse" in checked, checked

        def lookups() -> int:
            conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
            try:
                return int(conn.execute("SELECT count(*) FROM audit WHERE protocol = 'ncip' "
                                        "AND operation = 'LookupUser'").fetchone()[0])
            finally:
                conn.close()

        wait_until(lambda: lookups() == 2)
        assert metric(daemon, r'^interlend_requests_total\{.*protocol="ncip".*'
                              r'service="LookupUser"') == 2
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_requests_are_classified_safely() -> None:
    """Only lookups without AuthenticationInput stay in a worker; anything unclear goes to
    the primary."""
    assert answered_here(wf.reshare_lookup_user("P100"))
    assert answered_here(wf.ncip2("LookupItem", [wf._rs_header()], style="default"))
    assert not answered_here(wf.reshare_accept_item("R1", "P100"))
    assert not answered_here(wf.ncip2("LookupVersion", [wf._rs_header()]))
    assert not answered_here(wf.ncip2("LookupUser", [wf._rs_header(), ("AuthenticationInput", [
        ("AuthenticationInputData", "1234")])]))
    sneaky = wf.ncip2("CheckOutItem", [wf._rs_header()], stray="<!-- <LookupUser> -->")
    assert not answered_here(sneaky)
    assert not answered_here(b"<LookupUser/>")  # no message element: the primary decides
    assert not answered_here("<NCIPMessage><LookupUser/>".encode("utf-16"))


# -- settings (no daemon) ---------------------------------------------------------------------


@pytest.mark.parametrize(("value", "error"), [
    (0, 'gateway.workers: must be between 1 and 64, or "auto"'),
    (65, 'gateway.workers: must be between 1 and 64, or "auto"'),
    ("many", "gateway.workers: must be an integer"),
])
def test_workers_setting_is_validated_with_its_path(value: object, error: str) -> None:
    with pytest.raises(ConfigErrors) as raised:
        parse_config({"gateway": {"workers": value}})
    assert any(line.startswith(error) for line in raised.value.errors), raised.value.errors


def test_workers_default_and_auto() -> None:
    assert parse_config({}).gateway.workers == 1
    assert parse_config({"gateway": {"workers": 3}}).gateway.workers == 3
    assert parse_config({"gateway": {"workers": "auto"}}).gateway.workers == len(
        os.sched_getaffinity(0))


def test_caps_are_shared_out_never_exceeded() -> None:
    for cap in (1, 2, 7, 1000):
        for processes in (1, 2, 3, 8):
            share = shared_cap(cap, processes)
            assert share >= 1
            assert share * processes <= max(cap, processes)
    assert shared_cap(1000, 1) == 1000 and shared_cap(1000, 2) == 500
    assert shared_rate(0.0, 2) == 0.0 and shared_rate(10.0, 4) == 2.5


def test_only_plain_sockets_are_shared_with_workers() -> None:
    """A worker adopts the bare socket: a TLS listener must stay with the primary (a worker
    would otherwise speak plain text on it); admin, SRU and OAI are never shared."""
    from gateway.daemon.gateway import Gateway, Listener

    assert Gateway._shared(Listener("z3950", "tcp:2100:interface=127.0.0.1"))
    assert Gateway._shared(Listener("ncip", "systemd:domain=INET6:name=ncip"))
    assert Gateway._shared(Listener("ncip", "unix:/run/interlend/ncip.sock"))
    assert not Gateway._shared(Listener("z3950", "ssl:2101:privateKey=k.pem"))
    assert not Gateway._shared(Listener("admin", "tcp:8081"))
    assert not Gateway._shared(Listener("sru", "tcp:8082"))
