"""Running the daemon for real: where start-up says to go, reload through `interlend reload`
(what changed, refusals visible to the caller, to /healthz and /metrics, never a secret),
logs fit for journald (priorities, quiet admin GETs)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.daemon import REPO, start_daemon

INTERLEND = [sys.executable, "-m", "gateway.daemon.cli"]
DEMO = (REPO / "config" / "interlend.toml").read_text()
NEW_PEER = """
[[peers]]
name = "openrs"
ncip_agency_ids = ["OPENRS"]
auth = { kind = "bearer", token = "openrs-token-0123456789" }
"""


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*INTERLEND, *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={**os.environ, **(env or {})})


def _admin(daemon, path: str) -> bytes:
    with urllib.request.urlopen(daemon.admin_url + path, timeout=10) as response:
        return response.read()


def test_startup_says_where_to_go_without_twisted_noise(tmp_path: Path) -> None:
    """One line each for the NCIP URL with its path, the Z39.50 address with a database and
    the dashboard URL; none of Twisted's per-port lines, at start or at stop."""
    d = start_daemon(tmp_path)
    try:
        d.wait_for(r"dashboard: ")
        ports = d.ports
        assert d.stop() == 0
    finally:
        d.kill()
    text = "\n".join(d.lines)
    assert f"NCIP: POST to http://127.0.0.1:{ports['ncip']}/ncip" in text
    assert f"Z39.50: 127.0.0.1:{ports['z3950']}/Default" in text
    assert f"dashboard: http://127.0.0.1:{ports['admin']}/" in text
    for noise in ("starting on", "Starting factory", "Stopping factory", "Port", "Closed)"):
        assert noise not in text, noise


def test_reload_reports_its_outcome(tmp_path: Path) -> None:
    """`interlend reload` (the unit's ExecReload): a good file is applied and what changed is
    printed and logged; a bad file is refused before any signal (exit 1); a file the daemon
    itself refuses fails the command too, shows in /healthz and /metrics; no secret is ever
    printed or logged."""
    run = tmp_path / "run"
    run.mkdir()
    d = start_daemon(tmp_path, env={"RUNTIME_DIRECTORY": str(run)})
    reload = ["reload", "--pid", str(d.process.pid), "--runtime-directory", str(run)]
    try:
        d.config_path.write_text(DEMO.replace('secret = "demo-crosslink-secret"',
                                              'secret = "rotated-secret-42"') + NEW_PEER)
        done = _cli(*reload, "-c", str(d.config_path))
        assert done.returncode == 0, done.stderr
        assert "peer openrs added" in done.stdout
        assert "peer crosslink changed: auth" in done.stdout
        d.wait_for(r"reload: peer openrs added")
        health = d.admin_health()
        assert health["reload"]["outcome"] == "applied" and health["reload"]["generation"] == 1

        d.config_path.write_text(DEMO + "[bogus]\n")
        refused = _cli(*reload, "-c", str(d.config_path))
        assert refused.returncode == 1
        assert "bogus: unknown key" in refused.stderr and "nothing signalled" in refused.stderr
        assert d.admin_health()["reload"]["generation"] == 1          # the daemon was not asked

        duplicate = DEMO + NEW_PEER + NEW_PEER.replace('"openrs"', '"openrs2"').replace(
            '"OPENRS"', '"OPENRS2"')
        staged = run / "staged-config.toml"
        staged.chmod(0o600)
        staged.write_text(duplicate)                     # as if the file changed under it
        by_daemon = _cli(*reload)
        assert by_daemon.returncode == 1
        openrs = DEMO.count("[[peers]]")               # the index NEW_PEER gets
        assert f"the same token is already used by peers[{openrs}]" in by_daemon.stderr
        assert "refused by the daemon" in by_daemon.stderr
        health = d.admin_health()
        assert health["reload"]["outcome"] == "refused" and health["reload"]["errors"]
        metrics = _admin(d, "/metrics").decode()
        assert "interlend_config_reloads_failed_total 1.0" in metrics
        # the figures read from the database on a scrape are there too
        for family in ("interlend_rs_requests", "interlend_overdue_loans",
                       "interlend_peer_last_exchange_timestamp_seconds", "interlend_build_info",
                       "process_resident_memory_bytes", "interlend_database_size_bytes"):
            assert f"# TYPE {family} " in metrics, family
        assert d.stop() == 0
    finally:
        d.kill()
    everything = "\n".join(d.lines) + done.stdout + refused.stderr + by_daemon.stderr
    for secret in ("openrs-token-0123456789", "rotated-secret-42", "demo-crosslink-secret"):
        assert secret not in everything


def test_admin_gets_are_not_logged_at_info(tmp_path: Path) -> None:
    """Dashboard views and scrapes are routine: logged at debug only."""
    for level, expected in (("info", False), ("debug", True)):
        work = tmp_path / level
        work.mkdir()
        d = start_daemon(work, extra_args=["--log-level", level])
        try:
            for _ in range(3):
                _admin(d, "/metrics")
            _admin(d, "/healthz")
            assert d.stop() == 0
        finally:
            d.kill()
        logged = [line for line in d.lines if "/metrics" in line and "admin GET" in line]
        assert bool(logged) is expected, (level, logged)


def test_priorities_under_journald(tmp_path: Path) -> None:
    """With $JOURNAL_STREAM naming its stdout (as systemd sets it), every line starts with its
    syslog priority: errors <3>, information <6>, so `journalctl -p err` selects errors. The
    same daemon without it writes plain lines."""
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    config = tmp_path / "interlend.toml"
    config.write_text(DEMO)
    args = [*INTERLEND, "serve", "-c", str(config),
            "--z3950-listen", f"tcp:{port}:interface=127.0.0.1",
            "--ncip-listen", "tcp:0:interface=127.0.0.1",
            "--admin-listen", "tcp:0:interface=127.0.0.1"]
    try:
        for journald in (True, False):
            out = tmp_path / f"out-{journald}.log"
            with open(out, "w") as stream:
                stat = os.fstat(stream.fileno())
                env = {**os.environ}
                env.pop("JOURNAL_STREAM", None)
                if journald:
                    env["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
                database = ["--database", str(tmp_path / f"{journald}.sqlite3")]
                status = subprocess.run([*args, *database], stdout=stream, stderr=subprocess.STDOUT,
                                        env=env, cwd=REPO, timeout=60).returncode
            assert status == 1
            lines = out.read_text().splitlines()
            errors = [line for line in lines if "cannot listen" in line]
            infos = [line for line in lines if "migrated to schema version" in line]
            assert errors and infos
            if journald:
                assert all(line.startswith("<3>") for line in errors), errors
                assert all(line.startswith("<6>") for line in infos), infos
                assert all(re.match(r"<\d>", line) for line in lines), lines
            else:
                assert not any(re.match(r"<\d>", line) for line in lines), lines
    finally:
        blocker.close()


def test_json_lines_carry_the_event(tmp_path: Path) -> None:
    """JSON: message rendered, level a word, logger, the event's own fields, a failure's
    traceback as text; nothing of Twisted's (log_*)."""
    import io

    from twisted.logger import Logger, LogPublisher

    from gateway.daemon.logs import make_observer

    stream = io.StringIO()
    publisher = LogPublisher(make_observer(stream, log_format="json", level="debug",
                                           syslog_prefix=False))
    log = Logger(namespace="gateway.test", observer=publisher)
    log.warn("peer {peer} refused: {reason}", peer="reshare", reason="wrong secret")
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.failure("it broke for {peer}", peer="tipasa")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "peer reshare refused: wrong secret"
    assert (first["level"], first["logger"]) == ("warn", "gateway.test")
    assert (first["peer"], first["reason"]) == ("reshare", "wrong secret")
    assert second["level"] == "critical" and "ZeroDivisionError" in second["traceback"]
    assert not [key for record in (first, second) for key in record if key.startswith("log_")]
