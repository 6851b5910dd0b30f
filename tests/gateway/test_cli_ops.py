"""The command line as a sysadmin meets it: read-only reports that refuse a missing database,
usage errors that list the valid values, a quiet end when piped into ``head``, one line for a
locked database, and ``check-config`` catching what would fail at start (never a secret)."""

from __future__ import annotations

import io
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigErrors, load_config, parse_config
from gateway.daemon.cli import main
from gateway.storage.store import open_database

REPO = Path(__file__).resolve().parents[2]
DEMO = (REPO / "config" / "interlend.toml").read_text()


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(args), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def _config(tmp_path: Path, extra: str = "", text: str = DEMO) -> Path:
    path = tmp_path / "interlend.toml"
    path.write_text(text.replace("[gateway]\n", f"[gateway]\n{extra}", 1))
    return path


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A migrated database with one request of a peer no longer configured."""
    path = tmp_path / "interlend.sqlite3"
    open_database(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO rs_requests (peer, role, our_request_id, state) "
                 "VALUES ('oldpeer', 'lender', 'L-1', 'shipped')")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("command", [["stats"], ["requests"], ["audit"],
                                     ["requests", "show", "L-1"]])
def test_read_only_commands_refuse_a_missing_database(tmp_path: Path,
                                                      command: list[str]) -> None:
    """Run from the wrong directory they used to create an empty database and print zeros."""
    missing = tmp_path / "nowhere" / "interlend.sqlite3"
    status, out, err = cli(*command, "-c", str(_config(tmp_path)), "--database", str(missing))
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and str(missing) in err and "no such database" in err
    assert not missing.exists() and not missing.parent.exists()


def test_unknown_peer_state_and_since_are_usage_errors(tmp_path: Path,
                                                       database: Path) -> None:
    config = str(_config(tmp_path))
    common = ["-c", config, "--database", str(database)]
    status, _, err = cli("stats", "--peer", "nobody", *common)
    configured = [p.name for p in load_config(Path(config)).peers]
    valid = "valid: " + ", ".join(sorted({"oldpeer", *configured}))
    assert status == 2 and "--peer 'nobody'" in err and valid in err
    status, _, err = cli("requests", "--peer", "nobody", *common)
    assert status == 2 and valid in err
    status, _, err = cli("audit", "--peer", "nobody", *common)
    assert status == 2 and valid in err
    status, _, err = cli("requests", "--state", "lost", *common)
    assert status == 2 and "--state 'lost'" in err
    assert "awaiting_pickup" in err and "checked_out" in err and "cancelled" in err
    status, _, err = cli("stats", "--since", "last tuesday", *common)
    assert status == 2 and "--since 'last tuesday'" in err and "YYYY-MM-DD" in err
    # valid ones still work: a configured peer, a peer only in the history, a state
    assert cli("stats", "--peer", "RESHARE", *common)[0] == 0
    status, out, _ = cli("requests", "--peer", "oldpeer", "--state", "shipped", *common)
    assert status == 0 and "L-1" in out
    assert cli("stats", "--since", "2026-01-01", *common)[0] == 0


def test_requests_show_into_head_ends_quietly(tmp_path: Path, database: Path) -> None:
    """`interlend requests show ID | head -1`: the reader goes away mid-output; no
    BrokenPipeError traceback, exit 0."""
    conn = sqlite3.connect(database)
    conn.executemany(
        "INSERT INTO audit (protocol, operation, outcome, peer, our_request_id, time) "
        "VALUES ('ncip', 'RequestItem', 'success', 'oldpeer', 'L-1', ?)",
        [(f"2026-01-01T00:00:{n % 60:02d}.{n:06d}+00:00",) for n in range(20000)])
    conn.commit()
    conn.close()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.daemon.cli", "requests", "show", "L-1", "-c",
         str(_config(tmp_path)), "--database", str(database)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert process.stdout is not None and process.stderr is not None
    assert b"L-1" in process.stdout.readline()
    process.stdout.close()
    error = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert error == b""


def test_import_and_sweep_against_a_locked_database(tmp_path: Path, database: Path) -> None:
    """Another process holds the database: one line naming it and the lock, exit 1."""
    config = str(_config(tmp_path, "busy_timeout = 0.2\n"))
    patrons = tmp_path / "patrons.csv"
    patrons.write_text("barcode,username,pin,given_name,family_name,email,status,"
                       "patron_group,expires\nP900,p900,1234,Ann,Lee,a@example.org,active,"
                       "adult,2030-01-01\n")
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for command in (["import", "patrons", str(patrons)], ["sweep", "--remove"]):
            done = subprocess.run([sys.executable, "-m", "gateway.daemon.cli", *command,
                                   "-c", config, "--database", str(database)],
                                  capture_output=True, text=True, timeout=60, cwd=REPO)
            assert done.returncode == 1, done.stderr
            assert "Traceback" not in done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and str(database) in lines[0] and "locked" in lines[0]
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# -- check-config: what would fail at start --------------------------------------------------

def test_check_config_catches_port_clashes(tmp_path: Path) -> None:
    text = DEMO.replace('listen = ["tcp:8080:interface=127.0.0.1"]',
                        'listen = ["tcp:8081"]')
    status, _, err = cli("check-config", "-c", str(_config(tmp_path, text=text)))
    assert status == 2
    assert "admin.listen[0]: 'tcp:8081:interface=127.0.0.1' uses the same port as " \
           "ncip.listen[0]" in err
    # different interfaces on one port are fine; port 0 never clashes
    text = DEMO.replace('listen = ["tcp:8080:interface=127.0.0.1"]',
                        'listen = ["tcp:8081:interface=127.0.0.2", "tcp:0"]')
    assert cli("check-config", "-c", str(_config(tmp_path, text=text)))[0] == 0


def test_check_config_catches_an_unusable_database_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = _config(tmp_path)
    status, _, err = cli("check-config", "-c", str(config), "--database",
                         str(blocker / "sub" / "interlend.sqlite3"))
    assert status == 2 and "does not exist and cannot be created" in err
    status, _, err = cli("check-config", "-c", str(config), "--database", str(tmp_path))
    assert status == 2 and "is a directory" in err
    # a directory that does not exist yet but will be created at start is fine
    assert cli("check-config", "-c", str(config), "--database",
               str(tmp_path / "new" / "interlend.sqlite3"))[0] == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to check as an unprivileged user")
def test_check_config_catches_a_read_only_database_directory(tmp_path: Path) -> None:
    """As the service's user, a database directory owned by root is not writable."""
    root = Path(__import__("tempfile").mkdtemp(prefix="interlend-check-"))
    try:
        root.chmod(0o755)
        (root / "state").mkdir(mode=0o755)
        config = root / "interlend.toml"
        config.write_text(DEMO)
        config.chmod(0o644)
        done = subprocess.run(
            ["setpriv", "--reuid=61234", "--regid=61234", "--clear-groups", "--",
             sys.executable, "-m", "gateway.daemon.cli", "check-config", "-c", str(config),
             "--database", str(root / "state" / "interlend.sqlite3")],
            capture_output=True, text=True, timeout=60, cwd=REPO)
        assert done.returncode == 2
        assert f"directory {root / 'state'} is not writable by this user" in done.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_check_config_catches_placeholder_secrets() -> None:
    """The shipped production example still has its placeholders: each is named by its path,
    never shown; the demo configuration has none."""
    status, _, err = cli("check-config", "-c",
                         str(REPO / "config" / "interlend.production.toml"))
    assert status == 2
    paths = re.findall(r"^  (\S+): still the example placeholder", err, re.MULTILINE)
    assert paths == ["admin.password", "peers[0].auth.secret", "peers[0].z3950_password",
                     "peers[1].auth.token"]
    assert "change-me-admin" not in err and "change-me-too" not in err
    assert cli("check-config", "-c", str(REPO / "config" / "interlend.toml"))[0] == 0


def test_errors_never_echo_a_secret() -> None:
    """A duplicate token, or a secret of the wrong type, is reported without its value (it
    would land in journald on a reload)."""
    raw = {"admin": {"password": 12345678},
           "peers": [{"name": "a", "auth": {"kind": "bearer", "token": "tok-SECRET-1"}},
                     {"name": "b", "auth": {"kind": "bearer", "token": "tok-SECRET-1"}},
                     {"name": "c", "z3950_user": "c", "z3950_password": 987654321}]}
    with pytest.raises(ConfigErrors) as caught:
        parse_config(raw, "x.toml")
    text = str(caught.value)
    assert "peers[1].auth.token: the same token is already used by peers[0]" in text
    assert "admin.password" in text and "peers[2].z3950_password" in text
    for secret in ("tok-SECRET-1", "12345678", "987654321"):
        assert secret not in text
