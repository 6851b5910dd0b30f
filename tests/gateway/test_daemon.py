# -*- test-case-name: tests.gateway.test_daemon -*-
"""``interlend serve`` as a real process: healthz, SIGHUP reload, SIGTERM, systemd notify."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.daemon import REPO, start_daemon

pytestmark = pytest.mark.slow

DEFAULT_CONFIG = (REPO / "config" / "interlend.toml").read_text()


@pytest.fixture
def daemon(tmp_path: Path):
    d = start_daemon(tmp_path)
    yield d
    d.kill()


def test_healthz_reports_database_and_listeners(daemon) -> None:
    """GET /healthz on the NCIP listener answers 200 and says ok, nothing more; the admin
    listener's /healthz has the store and the listeners."""
    status, body = daemon.get("/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    state = daemon.admin_health()
    assert state["status"] == "ok" and state["state"] == "running"
    assert state["database"]["writer"] == "running"
    assert state["database"]["path"] == str(daemon.database)
    protocols = sorted(entry["protocol"] for entry in state["listeners"])
    assert protocols == ["admin", "ncip", "sru", "z3950"]
    assert all(entry["state"] == "listening" for entry in state["listeners"])


def test_unknown_path_and_wrong_method(daemon) -> None:
    """Other paths are 404; GET on the NCIP path is 405 with Allow: POST."""
    assert daemon.get("/nothing-here")[0] == 404
    assert daemon.get("/ncip")[0] == 405


def test_sighup_reloads_peers_and_keeps_connections(daemon) -> None:
    """SIGHUP applies a new peer list; an open keep-alive connection survives it."""
    connection = http.client.HTTPConnection("127.0.0.1", daemon.ports["ncip"], timeout=10)
    connection.request("GET", "/healthz")
    assert connection.getresponse().read()
    daemon.config_path.write_text(DEFAULT_CONFIG + '\n[[peers]]\nname = "relais"\n'
                                  'ncip_agency_ids = ["RELAIS"]\n'
                                  'auth = { kind = "shared-secret", secret = "relais-s" }\n')
    daemon.signal(signal.SIGHUP)
    peers = DEFAULT_CONFIG.count("[[peers]]") + 1
    daemon.wait_for(rf"configuration reloaded from .*: {peers} peer\(s\)")
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    connection.close()


def test_sighup_with_invalid_file_keeps_old_configuration(daemon) -> None:
    """A broken file on SIGHUP logs every error and the daemon carries on as before."""
    daemon.config_path.write_text(DEFAULT_CONFIG.replace('path = "/ncip"', 'path = "ncip"')
                                  + "\n[bogus]\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(r"configuration not reloaded: 2 error\(s\)")
    assert any("ncip.path: must start with '/'" in line for line in daemon.lines)
    assert any("bogus: unknown key" in line for line in daemon.lines)
    assert daemon.health()["status"] == "ok"
    assert daemon.get("/ncip")[0] == 405  # the old path still serves


def test_sigterm_exits_cleanly(daemon) -> None:
    """SIGTERM stops the listeners, closes the store and exits 0."""
    assert daemon.stop() == 0
    daemon.wait_for(r"\bstopped\b")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", daemon.ports["ncip"]), timeout=2)


def test_systemd_notify_messages(tmp_path: Path) -> None:
    """READY=1 after the listeners, WATCHDOG=1 from a timer, RELOADING=1, STOPPING=1."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    d = start_daemon(tmp_path, env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
    try:
        def receive_until(wanted: str) -> list[str]:
            seen = []
            while True:
                message = sock.recv(4096).decode()
                seen.append(message)
                if wanted in message.split("\n"):
                    return seen

        first = receive_until("READY=1")
        assert any("MAINPID=" in m for m in first)
        assert d.ports, "READY=1 must come after the listeners are up"
        receive_until("WATCHDOG=1")
        d.signal(signal.SIGHUP)
        reload_messages = receive_until("READY=1")
        assert "RELOADING=1" in reload_messages
        d.signal(signal.SIGTERM)
        receive_until("STOPPING=1")
        assert d.process.wait(timeout=20) == 0
    finally:
        d.kill()
        sock.close()


def test_notify_to_abstract_socket(tmp_path: Path) -> None:
    """An abstract-namespace NOTIFY_SOCKET (leading @) works too."""
    name = f"interlend-test-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(20)
    d = start_daemon(tmp_path, env={"NOTIFY_SOCKET": "@" + name})
    try:
        assert "READY=1" in sock.recv(4096).decode().split("\n")
    finally:
        d.kill()
        sock.close()


def test_port_in_use_fails_with_clear_error(tmp_path: Path) -> None:
    """Only some listeners bind: start-up fails with exit 1, one line per failed listener
    naming its endpoint, one summary line, and no traceback (it used to end in an
    ``Unhandled error in Deferred ... AttributeError``)."""
    blockers, ports = [], []
    for _ in range(2):
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        blockers.append(blocker)
        ports.append(blocker.getsockname()[1])
    d = start_daemon(tmp_path, wait=False,
                     extra_args=["--ncip-listen", f"tcp:{ports[0]}:interface=127.0.0.1",
                                 "--z3950-listen", f"tcp:{ports[1]}:interface=127.0.0.1"])
    try:
        assert d.process.wait(timeout=30) == 1
        d.wait_for(r"start-up failed: 2 of 6 listener")  # with the demo's SRU listener
        for port in ports:
            lines = [line for line in d.lines if f"cannot listen on tcp:{port}:" in line]
            assert len(lines) == 1, d.lines
        text = "\n".join(d.lines)
        assert "Traceback" not in text and "Unhandled error" not in text, text
        assert "stopping:" not in text      # nothing was started, nothing to stop
    finally:
        d.kill()
        for blocker in blockers:
            blocker.close()


def test_json_log_format(tmp_path: Path) -> None:
    """--log-format json writes one JSON object per line (for journald)."""
    d = start_daemon(tmp_path, extra_args=["--log-format", "json"], wait=False)
    try:
        d.wait_for(r"ready: agency")
        assert d.stop() == 0
        records = [json.loads(line) for line in d.lines if line.strip()]
        [ready] = [r for r in records if "ready: agency" in r["message"]]
        # the rendered message, the level as a word, the logger and the event's fields;
        # none of Twisted's internals
        assert ready["level"] == "info" and ready["logger"] == "gateway.daemon.gateway"
        assert ready["agency"] == "DEMO" and ready["peers"] == DEFAULT_CONFIG.count("[[peers]]")
        assert not [key for r in records for key in r if key.startswith("log_")]
        assert not [r for r in records if "starting on" in r["message"]
                    or "Starting factory" in r["message"]]
    finally:
        d.kill()
