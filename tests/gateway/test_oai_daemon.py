# -*- test-case-name: tests.gateway.test_oai_daemon -*-
"""``interlend serve`` with ``[oai]`` on: the demo catalogue harvested by Sickle (PyPI) end to end,
one audit row per request, and a configuration without the required keys refused."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from tests.daemon import REPO, start_daemon

sickle = pytest.importorskip("sickle", reason="Sickle (PyPI, test extras) is the harvester")

OAI = """
[oai]
listen = ["tcp:0:interface=127.0.0.1"]
base_url = "http://127.0.0.1/oai"
repository_identifier = "demo.interlend.example"
admin_emails = ["ill@demo.interlend.example"]
page_size = 50
"""


def test_daemon_serves_a_full_harvest(tmp_path: Path) -> None:
    """``interlend serve`` with [oai] on: Sickle harvests the whole demo catalogue with
    live availability in 852 $z, the daemon says where the provider is, and a reload that
    changes [oai] is reported and leaves the running provider as it was."""
    database = tmp_path / "interlend.sqlite3"
    subprocess.run([sys.executable, "-m", "gateway.daemon.cli", "demo", "--database",
                    str(database), "--records", "120"], cwd=REPO, check=True,
                   capture_output=True)
    demo = (REPO / "config" / "interlend.toml").read_text()
    config = re.sub(r"^\[oai\].*?\n\n", "", demo, count=1, flags=re.S | re.M) + OAI
    assert config.count("[oai]") == 1
    daemon = start_daemon(tmp_path, config, database=database)
    try:
        line = daemon.wait_for(r"oai listening on [\d.]+:\d+")
        found = re.search(r"oai listening on [\d.]+:(\d+)", line)
        assert found is not None
        port = int(found.group(1))
        url = f"http://127.0.0.1:{port}/oai"
        harvester = sickle.Sickle(url, max_retries=0)
        assert harvester.Identify().deletedRecord == "persistent"
        records = list(harvester.ListRecords(metadataPrefix="marc21_holdings"))
        identifiers = [r.header.identifier for r in records]
        assert len(identifiers) == len(set(identifiers)) >= 100
        assert all(i.startswith("oai:demo.interlend.example:") for i in identifiers)
        marc = "{http://www.loc.gov/MARC21/slim}"
        availability = [
            s.text for r in records for s in etree.fromstring(r.raw.encode()).iter(
                f"{marc}subfield")
            if s.getparent().get("tag") == "852" and s.get("code") == "z"]
        assert "AVAILABLE" in availability
        assert {s.get("code") for r in records[:1] for s in etree.fromstring(
            r.raw.encode()).iter(f"{marc}subfield") if s.getparent().get("tag") == "852"
                and s.get("code") == "a"} == {"a"}
        daemon.wait_for(r"OAI-PMH: http://127\.0\.0\.1:\d+/oai\?verb=Identify")
        # a reload keeps the provider as started, and says so
        daemon.config_path.write_text(config.replace("page_size = 50", "page_size = 7"))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(r"oai settings changed: they take effect after a restart")
        first = harvester.ListIdentifiers(metadataPrefix="oai_dc")
        assert first.oai_response.xml.find(
            ".//{http://www.openarchives.org/OAI/2.0/}resumptionToken").get(
                "completeListSize") == str(len(identifiers))
        assert len(first.oai_response.xml.findall(
            ".//{http://www.openarchives.org/OAI/2.0/}header")) == 50
    finally:
        assert daemon.stop() == 0


def test_oai_without_its_required_keys_is_refused(tmp_path: Path) -> None:
    """[oai] listening without base_url, repository_identifier and admin_emails: each
    reported with its path."""
    path = tmp_path / "bad.toml"
    path.write_text('[oai]\nlisten = ["tcp:0"]\n')
    result = subprocess.run([sys.executable, "-m", "gateway.daemon.cli", "check-config", "-c",
                             str(path)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    for key in ("oai.base_url", "oai.repository_identifier", "oai.admin_emails"):
        assert key in result.stdout + result.stderr
