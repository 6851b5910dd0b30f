"""Random and mutated Z39.50 PDUs over the socket against a running daemon (bounded; the
long run, 100,000 PDUs, is fuzz/z3950_socket.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.seeds import built_pdus, captured_pdus
from fuzz.z3950_socket import blast
from tests.robustness.helpers import config, launch, metric, rss_kib, tracebacks
from tests.z3950_clients import YAZ_CLIENT, need, steps, yaz_client

pytestmark = pytest.mark.slow

PDUS = 12_000


def test_many_mutated_pdus_then_a_normal_session(tmp_path: Path, shared_dir: Path) -> None:
    """12,000 PDUs (mostly mutated captured/codec-built PDUs, some random bytes, some valid,
    70% of connections after a valid Init) over ~1,400 connections from 4 threads: the daemon
    stays up with no traceback, counts the protocol errors in
    interlend_requests{protocol="z3950",service="close",outcome="protocolError"}, a normal
    yaz-client session (Init, search, present, close) succeeds afterwards, and the RSS is back
    within 10% of a baseline taken after a 2,000-PDU warm-up."""
    need(("yaz-client", YAZ_CLIENT))
    seeds = captured_pdus(shared_dir) + built_pdus()
    daemon = launch(tmp_path, config(z3950="max_connections_per_peer = 200\n"
                                           "max_connection_rate_per_peer = 100000.0\n"))
    try:
        port, pid = daemon.ports["z3950"], daemon.process.pid
        blast(port, 2_000, seed=99, seeds=seeds, seconds=30)              # warm-up
        baseline = rss_kib(pid)
        result = blast(port, PDUS, seed=1, seeds=seeds, seconds=60)
        after = rss_kib(pid)
        growth = (after - baseline) / baseline
        print(f"\n{result.pdus} PDUs over {result.connections} connections in "
              f"{result.seconds:.1f}s; RSS {baseline} -> {after} KiB ({growth:+.1%})")
        assert result.pdus >= PDUS
        assert daemon.process.poll() is None
        assert not tracebacks(daemon), tracebacks(daemon)[:5]
        closes = metric(daemon, "interlend_requests_total", protocol="z3950",
                        outcome="protocolError")
        assert closes > result.connections * 0.3, closes
        assert any("undecodable Z39.50 PDU" in line or "Z39.50 framing error" in line
                   for line in daemon.lines)
        assert max(len(line) for line in daemon.lines) < 2_000   # no schema dumps in the log
        session = steps(yaz_client(tmp_path, port, ["find @attr 1=4 pattern", "show 1",
                                                     "close"]))
        assert session[1].hits == 1, session[1].text
        assert session[2].find(r"^Records: (\d+)") == "1"
        assert growth <= 0.10, f"RSS grew {growth:.1%}"
    finally:
        daemon.kill()
