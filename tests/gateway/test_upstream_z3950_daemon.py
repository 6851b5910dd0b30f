"""The daemon with its catalogue upstream (``[backend] catalogue = "z3950"``) when that upstream
is down or slow: brokers get Bib-1 109 within the configured time, NCIP keeps serving, the admin
``/healthz`` shows the upstream's state and ``/metrics`` counts the calls; when the target comes
back, searches find again. The target is YAZ's test server (``yaz-ztest``), really run.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import REPO, Daemon, start_daemon
from tests.gateway.test_upstream_z3950_faults import ZTest
from tests.z3950_clients import YAZ_CLIENT, need, steps, yaz_client


def config(port: int, database: str) -> str:
    text = (REPO / "config" / "interlend.toml").read_text()
    text = text.replace('[backend]\nkind = "embedded"\n',
                        '[backend]\nkind = "embedded"\ncatalogue = "z3950"\n', 1)
    return text + (f'\n[backend.z3950]\nhost = "127.0.0.1"\nport = {port}\n'
                   f'database = "{database}"\nprofile = "generic-marc"\nrequest_timeout = 1.0\n'
                   'connect_timeout = 1.0\nbackoff_initial = 0.2\nbackoff_max = 0.5\n')


def search(tmp_path: Path, daemon: Daemon, query: str) -> tuple[int | None, list[int], float]:
    """yaz-client's hits and diagnostic codes for one search through the daemon, and the
    seconds the whole client run took."""
    started = time.monotonic()
    out = yaz_client(tmp_path, daemon.ports["z3950"], [f"find {query}"])
    took = time.monotonic() - started
    found = [s for s in steps(out) if s.request.startswith("searchRequest")]
    assert found, out[-2000:]
    return found[0].hits, [code for code, _ in found[0].diagnostics], took


def admin(daemon: Daemon, path: str) -> bytes:
    with urllib.request.urlopen(daemon.admin_url + path, timeout=10) as reply:
        return bytes(reply.read())


@pytest.fixture
def ztest(tmp_path: Path) -> Iterator[ZTest]:
    target = ZTest(tmp_path)
    try:
        yield target
    finally:
        target.stop()


def test_down_upstream_is_109_ncip_serves_health_shows_it(
        tmp_path: Path, ztest: ZTest) -> None:
    """Nothing listens where the upstream should: 109 at once; NCIP's health stays ok; the
    admin health has the upstream down with its error; the metrics count the failed call.
    Once the target listens, the same search finds (after the back-off)."""
    need(("yaz-client", YAZ_CLIENT))
    daemon = start_daemon(tmp_path, config(ztest.port, "Default"))
    try:
        hits, diagnostics, took = search(tmp_path, daemon, "@attr 1=4 5")
        assert diagnostics == [109] and took < 5
        status, body = daemon.get("/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok"}
        upstream = daemon.admin_health()["upstream"]["catalogue"]
        [(name, state)] = upstream.items()
        assert name == f"127.0.0.1:{ztest.port}/Default"
        assert state["up"] is False and state["last_error"]
        page = admin(daemon, "/").decode()
        assert "Upstream catalogues" in page and f"127.0.0.1:{ztest.port}/Default" in page
        metrics = admin(daemon, "/metrics").decode()
        assert ('interlend_upstream_calls_total{backend="z3950",operation="search",'
                'outcome="CatalogueUnavailable"} 1.0') in metrics
        ztest.start()
        end = time.monotonic() + 15
        while time.monotonic() < end:
            hits, diagnostics, _ = search(tmp_path, daemon, "@attr 1=4 5")
            if not diagnostics:
                break
        assert (hits, diagnostics) == (5, [])
        state = daemon.admin_health()["upstream"]["catalogue"][name]
        assert state["up"] is True and state["last_error"] is None
        assert 'interlend_upstream_duration_seconds_count{backend="z3950",operation="search"}' \
            in admin(daemon, "/metrics").decode()
    finally:
        daemon.kill()


def test_slow_upstream_is_109_within_the_request_time(tmp_path: Path, ztest: ZTest) -> None:
    """The target takes 4 s over a search, the request time is 1 s: the broker has its
    diagnostic well before the target would have answered."""
    need(("yaz-client", YAZ_CLIENT))
    ztest.start()
    daemon = start_daemon(tmp_path, config(ztest.port, "Default?search-delay=4"))
    try:
        hits, diagnostics, took = search(tmp_path, daemon, "@attr 1=4 5")
        assert diagnostics == [109] and took < 3.5
    finally:
        daemon.kill()
