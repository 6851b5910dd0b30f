# -*- test-case-name: tests.gateway.test_systemd -*-
"""The shipped systemd units and the README's install steps, replayed as far as this machine
allows without systemd as PID 1: ``systemd-analyze verify`` and ``security``, the service's
command run as an unprivileged uid reading its configuration the way systemd hands it over
(a credential), and the socket-activated listeners with ``systemd-socket-activate`` standing
in for PID 1."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "interlend.service"
UNITS = [UNIT, REPO / "systemd" / "interlend.socket", REPO / "systemd" / "interlend-ncip.socket"]
INTERLEND = Path(sys.executable).with_name("interlend")
SERVICE_UID = 61234
"""A uid in systemd's DynamicUser range (61184-65519) that no account uses here."""


def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _install_steps() -> list[str]:
    """The shell lines of the README's service install block."""
    section = _readme_section("Running as a service")
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "no ```sh block in 'Running as a service'"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def _unit_value(key: str, text: str | None = None) -> str:
    text = UNIT.read_text() if text is None else text
    match = re.search(rf"^{key}=(.*)$", text, re.MULTILINE)
    assert match, f"{key}= missing"
    return match.group(1)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_service_hardening_score() -> None:
    """systemd-analyze security scores the unit 2.0 or lower (OK)."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_service_unit_settings() -> None:
    """Type=notify with a watchdog, a dynamic user and systemd-managed directories; the
    configuration comes in as a credential (a root-only file the dynamic user could not
    read), and reload goes through `interlend reload`, which waits for the outcome."""
    text = UNIT.read_text()
    for line in ("Type=notify", "DynamicUser=yes", "User=interlend", "StateDirectory=interlend",
                 "RuntimeDirectory=interlend",
                 "LoadCredential=interlend.toml:/etc/interlend/interlend.toml"):
        assert line in text
    assert re.search(r"^WatchdogSec=\d+", text, re.MULTILINE)
    assert _unit_value("ExecStart").startswith(
        "/usr/local/bin/interlend serve --config ${CREDENTIALS_DIRECTORY}/interlend.toml")
    reload = _unit_value("ExecReload")
    assert reload.startswith("+/usr/local/bin/interlend reload --pid $MAINPID")
    assert "--config /etc/interlend/interlend.toml" in reload


def test_socket_units_name_their_descriptors() -> None:
    """The socket units bind 210 and 8080 and name the descriptors the production
    configuration listens on, and it listens on nothing else for Z39.50 and NCIP."""
    z3950 = (REPO / "systemd" / "interlend.socket").read_text()
    ncip = (REPO / "systemd" / "interlend-ncip.socket").read_text()
    assert "ListenStream=210" in z3950 and "FileDescriptorName=z3950" in z3950
    assert "ListenStream=8080" in ncip and "FileDescriptorName=ncip" in ncip
    from gateway.config import load_config

    production = load_config(REPO / "config" / "interlend.production.toml")
    assert production.z3950.listen == ("systemd:domain=INET6:name=z3950",)
    assert production.ncip.listen == ("systemd:domain=INET6:name=ncip",)


def test_readme_install_steps_match_the_units() -> None:
    """The README's install block: the configuration root-only, every unit copied and
    enabled, the man page the unit's Documentation= names installed where man finds it."""
    steps = _install_steps()
    config_step = next(s for s in steps if "/etc/interlend/interlend.toml" in s)
    assert re.search(r"install .*-m 0?600 .*-o root", config_step), config_step
    copied = next(s for s in steps if "/etc/systemd/system" in s)
    for unit in UNITS:
        assert f"systemd/{unit.name}" in copied
    enabled = next(s for s in steps if "systemctl enable" in s)
    for unit in UNITS:
        assert unit.name in enabled
    documentation = _unit_value("Documentation")
    assert documentation == "man:interlend(1)"
    assert any("interlend manpage" in s and "/usr/local/share/man/man1/interlend.1" in s
               for s in steps)


def test_readme_cli_alias_matches_the_unit() -> None:
    """The documented way to run the CLI against the service's database uses the unit's own
    user, state directory and credential (so it sees the same file with the same owner)."""
    section = _readme_section("Operations")
    alias = next(line for line in section.splitlines() if line.startswith("alias interlend-svc"))
    assert "systemd-run" in alias and "-p DynamicUser=yes" in alias
    for key in ("User", "StateDirectory", "LoadCredential"):
        assert f"-p {key}={_unit_value(key)}" in alias, key
    assert alias.rstrip("'").endswith("/usr/local/bin/interlend")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the three units as shipped (binary path pointed at this
    virtualenv's interlend), including Documentation=man:interlend(1) once the man page is
    installed as the README says (generated by `interlend manpage`)."""
    units = tmp_path / "units"
    units.mkdir()
    for unit in UNITS:
        (units / unit.name).write_text(
            unit.read_text().replace("/usr/local/bin/interlend", str(INTERLEND)))
    man = tmp_path / "man" / "man1"
    man.mkdir(parents=True)
    page = subprocess.run([str(INTERLEND), "manpage"], capture_output=True, text=True,
                          check=True).stdout
    (man / "interlend.1").write_text(page)
    result = subprocess.run(["systemd-analyze", "verify", *(str(units / u.name) for u in UNITS)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "MANPATH": str(tmp_path / "man")})
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    without_page = subprocess.run(["systemd-analyze", "verify", str(units / UNIT.name)],
                                  capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "MANPATH": str(tmp_path / "nothing")})
    assert "man interlend(1)" in without_page.stderr  # the check does look for the page


def _production_config(database: Path, admin: str = "tcp:0:interface=127.0.0.1") -> str:
    text = (REPO / "config" / "interlend.production.toml").read_text()
    text = text.replace('"/var/lib/interlend/interlend.sqlite3"', json.dumps(str(database)))
    text = text.replace('"tcp:8081:interface=127.0.0.1"', json.dumps(admin))
    return re.sub(r'"change-me[a-z-]*"', lambda m: json.dumps(f"s3cret-{m.start()}"), text)


@pytest.fixture
def service_root() -> Iterator[Path]:
    """A directory the service's uid can reach (pytest's own tmp_path sits in a 0700
    directory of root's)."""
    root = Path(tempfile.mkdtemp(prefix="interlend-service-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _as_service_user(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The files as systemd sets them up for the unit: /etc/interlend/interlend.toml root-only
    0600; the credential copy in a directory only the service's uid can read; the state
    directory owned by that uid."""
    etc = tmp_path / "etc"
    credentials = tmp_path / "credentials"
    state = tmp_path / "state"
    for directory in (etc, credentials, state):
        directory.mkdir()
    config = etc / "interlend.toml"
    config.write_text(_production_config(state / "interlend.sqlite3"))
    config.chmod(0o600)
    shutil.copy(config, credentials / "interlend.toml")
    for path in (credentials, credentials / "interlend.toml", state):
        os.chown(path, SERVICE_UID, SERVICE_UID)
    (credentials / "interlend.toml").chmod(0o400)
    credentials.chmod(0o500)
    tmp_path.chmod(0o755)
    return config, credentials, state


def _setpriv() -> list[str]:
    return ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups",
            "--"]


needs_root_and_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv (util-linux) to run as the service's unprivileged uid")


@needs_root_and_setpriv
def test_service_user_reads_its_config_as_a_credential(service_root: Path) -> None:
    """As the dynamic user: the root-only file is refused with one clear line (that is why
    the unit uses LoadCredential); the credential copy checks out, found through
    $CREDENTIALS_DIRECTORY without -c, as ExecStart and `systemd-run` see it."""
    config, credentials, _ = _as_service_user(service_root)
    refused = subprocess.run([*_setpriv(), str(INTERLEND), "check-config", "-c", str(config)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "cannot read: Permission denied" in refused.stderr and "Traceback" not in \
        refused.stderr
    env = {"PATH": os.environ["PATH"], "CREDENTIALS_DIRECTORY": str(credentials)}
    checked = subprocess.run([*_setpriv(), str(INTERLEND), "check-config"], capture_output=True,
                             text=True, timeout=60, env=env)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"{credentials}/interlend.toml: OK")
    # ...and nobody else: another unprivileged uid can read neither
    other = ["setpriv", f"--reuid={SERVICE_UID + 1}", f"--regid={SERVICE_UID + 1}",
             "--clear-groups", "--"]
    for path in (config, credentials / "interlend.toml"):
        denied = subprocess.run([*other, str(INTERLEND), "check-config", "-c", str(path)],
                                capture_output=True, text=True, timeout=60)
        assert denied.returncode == 2 and "Permission denied" in denied.stderr


def _free_port() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        return probe.getsockname()[1]


def _get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate (Debian systemd) not installed")
def test_socket_activated_service(service_root: Path) -> None:
    """The unit's ExecStart, verbatim but for paths, behind `systemd-socket-activate` passing
    two sockets named as the socket units name them (and, as root, run as the unprivileged
    service uid reading its credential): the daemon serves NCIP and Z39.50 on the passed
    sockets, says where to go, and stops cleanly on SIGTERM."""
    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback (the production endpoints are domain=INET6)")
    if os.geteuid() == 0 and shutil.which("setpriv"):
        _, credentials, state = _as_service_user(service_root)
        prefix = _setpriv()
    else:
        credentials, state = service_root / "credentials", service_root / "state"
        credentials.mkdir()
        state.mkdir()
        (credentials / "interlend.toml").write_text(_production_config(state / "x.sqlite3"))
        prefix = []
    exec_start = _unit_value("ExecStart").replace("/usr/local/bin/interlend", str(INTERLEND))
    command = exec_start.replace("${CREDENTIALS_DIRECTORY}", str(credentials)).split()
    command = [c for c in command if c not in ("--log-format", "json")]  # text, to read here
    z3950, ncip = _free_port(), _free_port()
    process = subprocess.Popen(
        ["systemd-socket-activate", "-l", f"[::1]:{z3950}", "-l", f"[::1]:{ncip}",
         "--fdname=z3950:ncip", "-E", f"CREDENTIALS_DIRECTORY={credentials}",
         "-E", "PYTHONUNBUFFERED=1", "--", *prefix, *command],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        status, body = 0, b""
        while time.monotonic() < deadline:   # the first connection makes it start the daemon
            try:
                status, body = _get(f"http://[::1]:{ncip}/healthz", timeout=20)
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200, body
        # the public health says ok only; where each passed socket listens is in the output
        assert json.loads(body)["status"] == "ok"
        with socket.create_connection(("::1", z3950), timeout=10) as conn:
            from protocols.z3950 import client, codec

            conn.sendall(codec.encode_pdu(client.init_request()))
            assert conn.recv(1)[:1] == b"\xb5"          # [APPLICATION 21] InitResponse
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert f"NCIP: POST to http://[::1]:{ncip}/ncip" in output
        assert f"Z39.50: [::1]:{z3950}/Default" in output
        assert "Traceback" not in output
        if prefix:
            assert (state / "interlend.sqlite3").stat().st_uid == SERVICE_UID
            # the CLI as the service's user, configured by the credential (what the README's
            # systemd-run alias sets up): it reads the service's database, creates nothing
            report = subprocess.run(
                [*prefix, str(INTERLEND), "requests", "--format", "json"], capture_output=True,
                text=True, timeout=60,
                env={"PATH": os.environ["PATH"], "CREDENTIALS_DIRECTORY": str(credentials)})
            assert report.returncode == 0 and report.stderr == "", report.stderr
            assert sorted(p.name for p in state.iterdir()) == ["interlend.sqlite3",
                                                               "interlend.sqlite3.key"]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_systemd_endpoint_without_systemd_says_so(tmp_path: Path) -> None:
    """Started by hand with the production endpoints, the daemon names the socket that was not
    passed and how to get it, one line each, instead of Twisted's bare ``KeyError: 'ncip'``."""
    config = tmp_path / "interlend.toml"
    config.write_text(_production_config(tmp_path / "x.sqlite3"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    result = subprocess.run([str(INTERLEND), "serve", "-c", str(config)], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if "cannot listen" in line]
    assert len(lines) == 2
    assert "no socket named 'ncip' was passed by systemd" in result.stdout
    assert "KeyError" not in result.stdout and "Traceback" not in result.stdout
