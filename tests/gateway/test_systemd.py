# -*- test-case-name: tests.gateway.test_systemd -*-
"""The shipped systemd units: hardening score, readiness protocol, socket activation."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "interlend.service"


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
    """Type=notify with a watchdog, a dynamic user and systemd-managed directories."""
    text = UNIT.read_text()
    for line in ("Type=notify", "DynamicUser=yes", "StateDirectory=interlend",
                 "ConfigurationDirectory=interlend", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in text
    assert re.search(r"^WatchdogSec=\d+", text, re.MULTILINE)
    assert "interlend serve --config /etc/interlend/interlend.toml" in text


def test_socket_units_name_their_descriptors() -> None:
    """The socket units bind 210 and 8080 and name the descriptors the config refers to."""
    z3950 = (REPO / "systemd" / "interlend.socket").read_text()
    ncip = (REPO / "systemd" / "interlend-ncip.socket").read_text()
    assert "ListenStream=210" in z3950 and "FileDescriptorName=z3950" in z3950
    assert "ListenStream=8080" in ncip and "FileDescriptorName=ncip" in ncip
    production = (REPO / "config" / "interlend.production.toml").read_text()
    assert "systemd:domain=INET6:name=ncip" in production
