"""The admin listener of a real daemon: /metrics, /stats, /rs/statistics, /healthz, the
dashboard page, HTTP Basic authentication and the ``--admin-listen`` override.

Metric values are checked against what the test sent (the broker scenario of
:mod:`tests.audit_fixtures`), parsed with prometheus_client's own exposition parser.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.audit import AuditEntry, audit_time, insert_entry
from gateway.store import open_database
from tests import audit_fixtures as af
from tests.daemon import start_daemon

pytestmark = pytest.mark.slow

NASTY = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(daemon, sent, whether a Z39.50 Init was answered): its database held 3 expired audit rows at start, then it answered the
    scenario and one more Problem (an item barcode full of markup)."""
    tmp = tmp_path_factory.mktemp("admin")
    database = tmp / "interlend.sqlite3"
    af.seed_database(database)
    conn = open_database(database)
    conn.execute("BEGIN IMMEDIATE")
    now = datetime.now(timezone.utc)
    for days in (400, 500, 40):   # two rows past 365 days, one body past 30 days
        insert_entry(conn, AuditEntry(protocol="ncip", operation="LookupVersion",
                                      outcome="success", request_body="<old/>",
                                      time=audit_time(now - timedelta(days=days))))
    conn.execute("COMMIT")
    conn.close()
    running = start_daemon(tmp, af.with_z3950_login(af.config_text(), "rsz", "z-pass-1"))
    try:
        running.wait_for(r"audit retention: 1 bodies older than 30 days cleared, 2 rows older "
                         r"than 365 days deleted")
        conn = open_database(database)
        conn.execute("DELETE FROM audit")   # the scenario's rows are then the only ones
        conn.close()
        sent = af.run_scenario(running)
        status, reply = running.post(af.check_out(NASTY, "PBAR-100"))
        assert status == 200 and af.problem(reply) == "Unknown Item"
        rows = len(sent) + 1
        # One Z39.50 Init (when yaz-client is there and the server answers Init), so that
        # both protocols are counted.
        z3950 = bool(af.z3950_init(running.ports["z3950"], "rsz z-pass-1"))
        af.wait_for_audit_rows(database, rows + z3950)
        yield running, sent, z3950
    finally:
        running.stop()


def _families(daemon: Any) -> dict[str, Any]:
    status, headers, body = af.admin_get(daemon, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def _samples(family: Any, suffix: str = "") -> list[Any]:
    return [s for s in family.samples if s.name == family.name + suffix]


def test_metrics_count_requests_by_protocol_service_peer_outcome(traffic: Any) -> None:
    """``interlend_requests_total`` has one series per (protocol, service, peer, outcome)
    with exactly as many exchanges as the test sent of each kind; every series is named
    ``interlend_...``."""
    daemon, sent, z3950 = traffic
    families = _families(daemon)
    # ours are interlend_...; process_... and python_... are prometheus_client's standard
    # process, platform and GC collectors
    assert all(name.startswith(("interlend_", "process_", "python_")) for name in families)
    assert any(name.startswith("process_") for name in families)
    expected = Counter(("ncip", s.operation, s.peer, s.outcome) for s in sent)
    expected[("ncip", "CheckOutItem", "reshare", "Unknown Item")] += 1      # NASTY
    if z3950:
        expected[("z3950", "init", "reshare", "success")] += 1
    found = {(s.labels["protocol"], s.labels["service"], s.labels["peer"], s.labels["outcome"]):
             s.value for s in _samples(families["interlend_requests"], "_total")}
    assert found == {key: float(n) for key, n in expected.items()}


def test_metrics_latency_histograms(traffic: Any) -> None:
    """``interlend_request_duration_seconds`` is a histogram per (protocol, service): its
    count is the number of exchanges of that service, buckets never decrease, the +Inf bucket
    equals the count and the sum is positive."""
    daemon, sent, z3950 = traffic
    family = _families(daemon)["interlend_request_duration_seconds"]
    assert family.type == "histogram"
    per_service = Counter(s.operation for s in sent)
    per_service["CheckOutItem"] += 1
    if z3950:
        per_service["init"] += 1
    counts = {s.labels["service"]: s.value for s in _samples(family, "_count")}
    assert counts == {service: float(n) for service, n in per_service.items()}
    for service in per_service:
        buckets = [s for s in _samples(family, "_bucket") if s.labels["service"] == service]
        values = [s.value for s in buckets]
        assert values == sorted(values) and buckets[-1].labels["le"] == "+Inf"
        assert values[-1] == counts[service]
        [total] = [s.value for s in _samples(family, "_sum") if s.labels["service"] == service]
        assert total > 0


def test_metrics_connections_writer_and_purges(traffic: Any) -> None:
    """Connection gauges per listener (the scrape's own admin connection is open), refused
    connection counters, the writer's commits and queue, and the retention run at start-up:
    1 body cleared and 2 rows deleted from the database the daemon was given."""
    daemon, sent, z3950 = traffic
    families = _families(daemon)
    open_now = {s.labels["listener"]: s.value
                for s in _samples(families["interlend_open_connections"])}
    assert set(open_now) == {"z3950", "ncip", "admin"} and open_now["admin"] >= 1
    refused = {s.labels["listener"]: s.value
               for s in _samples(families["interlend_refused_connections"], "_total")}
    assert refused == {"z3950": 0.0, "ncip": 0.0, "admin": 0.0}

    def value(name: str, suffix: str = "") -> float:
        [sample] = _samples(families[name], suffix)
        return sample.value

    # Every state-changing exchange is a committed write (plus audit rows, the key, purge).
    changes = sum(1 for s in sent if s.operation != "LookupUser" and
                  s.outcome == "success")
    assert value("interlend_writer_commits", "_total") >= changes
    assert value("interlend_writer_commit_seconds", "_total") > 0
    assert value("interlend_writer_failed_commits", "_total") == 0
    assert value("interlend_writer_queue_depth") == 0
    assert value("interlend_writer_last_commit_seconds") > 0
    assert value("interlend_audit_bodies_purged", "_total") == 1
    assert value("interlend_audit_rows_purged", "_total") == 2
    assert value("interlend_audit_write_failures", "_total") == 0
    assert value("interlend_ncip_requests_in_flight") == 0
    assert value("interlend_z3950_associations") == 0


def test_connection_gauges_follow_open_connections(traffic: Any) -> None:
    """``interlend_open_connections`` counts a connection while it is open, per listener, and
    drops back when it closes (polled with a deadline, never slept on)."""
    daemon, _, _ = traffic

    def open_count(listener: str) -> float:
        [sample] = [s for s in _samples(_families(daemon)["interlend_open_connections"])
                    if s.labels["listener"] == listener]
        return sample.value

    for listener in ("z3950", "ncip"):
        before = open_count(listener)
        client = socket.create_connection(("127.0.0.1", daemon.ports[listener]), timeout=10)
        try:
            af.wait_until(lambda name=listener, n=before: open_count(name) == n + 1)
        finally:
            client.close()
        af.wait_until(lambda name=listener, n=before: open_count(name) == n)


def test_healthz_and_json_endpoints(traffic: Any) -> None:
    """``/healthz`` reports ok with three listening listeners; ``/stats`` and
    ``/rs/statistics`` are JSON (their figures are checked in test_reports); no caching."""
    daemon, sent, z3950 = traffic
    health = af.admin_json(daemon, "/healthz")
    assert health["status"] == "ok" and health["state"] == "running"
    assert sorted(entry["protocol"] for entry in health["listeners"]) == [
        "admin", "ncip", "z3950"]
    for path in ("/stats", "/rs/statistics", "/healthz"):
        status, headers, body = af.admin_get(daemon, path)
        assert status == 200 and headers["content-type"] == "application/json"
        assert headers["cache-control"] == "no-store"
        json.loads(body)
    assert set(af.admin_json(daemon, "/rs/statistics")["requestsByTag"]) == {
        "ACTIVE_LOAN", "ACTIVE_BORROW"}


def test_unknown_paths_and_methods(traffic: Any) -> None:
    """An unknown path is 404; anything but GET/HEAD on a known path is 405 with Allow."""
    daemon, sent, z3950 = traffic
    status, _, _ = af.admin_get(daemon, "/nope")
    assert status == 404
    request = urllib.request.Request(daemon.admin_url + "/stats", data=b"x", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("POST accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 405 and e.headers["allow"] == "GET"


def test_dashboard_page_has_the_data_and_escapes_it(traffic: Any) -> None:
    """``/`` is the dashboard: HTML naming each partner, the requests in flight (RS-L-3 and
    TIP-1, not the completed or cancelled ones), the recent Problems — where an item barcode
    full of markup appears escaped, never as markup — and health."""
    daemon, sent, z3950 = traffic
    status, headers, body = af.admin_get(daemon, "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    for text in ("Audit test library", "reshare", "tipasa", "RS-L-3", "TIP-1", "NOPE-1",
                 "Unknown Item", "Health: <span class=\"ok\">ok</span>"):
        assert text in page, text
    in_flight = page[page.index('id="in-flight"'):page.index('id="problems"')]
    assert "RS-L-3" in in_flight and "TIP-1" in in_flight
    assert "RS-L-1" not in in_flight and "RS-L-2" not in in_flight
    assert NASTY not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


# -- authentication and the listen override -------------------------------------------------------


def test_basic_auth_and_admin_listen_override(tmp_path: Path) -> None:
    """With ``[admin] password`` set every admin path answers 401 (with a Basic challenge)
    without credentials, with a wrong password or a wrong user, and 200 with the configured
    ones. The file's ``[admin] listen`` names a port that is already taken: the daemon still
    starts, because ``--admin-listen`` replaces it for this run, and serves there only."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        config = af.config_text(admin_password="s3cret-admin").replace(
            '[admin]\n', f'[admin]\nlisten = ["tcp:{port}:interface=127.0.0.1"]\n')
        assert f"tcp:{port}" in config
        daemon = start_daemon(tmp_path, config)
        try:
            assert daemon.ports["admin"] != port
            for path in ("/", "/stats", "/rs/statistics", "/metrics", "/healthz"):
                status, headers, _ = af.admin_get(daemon, path)
                assert status == 401 and headers["www-authenticate"] == (
                    'Basic realm="Interlend admin"'), path
                for auth in (("staff", "wrong"), ("admin", "s3cret-admin"), ("staff", "")):
                    assert af.admin_get(daemon, path, auth=auth)[0] == 401, (path, auth)
                status, _, _ = af.admin_get(daemon, path, auth=("staff", "s3cret-admin"))
                assert status == 200, path
            broken = urllib.request.Request(daemon.admin_url + "/stats", headers={
                "Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()})
            try:
                urllib.request.urlopen(broken, timeout=10)
                raise AssertionError("accepted")
            except urllib.error.HTTPError as e:
                assert e.code == 401
            health = af.admin_json(daemon, "/healthz", auth=("staff", "s3cret-admin"))
            [admin] = [entry for entry in health["listeners"] if entry["protocol"] == "admin"]
            assert admin["endpoint"] == "tcp:0:interface=127.0.0.1"
            assert admin["address"] == f"127.0.0.1:{daemon.ports['admin']}"
            # The NCIP listener's own /healthz is not behind the admin password.
            assert daemon.get("/healthz")[0] == 200
        finally:
            daemon.stop()
    finally:
        taken.close()


def test_dashboard_renders_without_any_data() -> None:
    """With no partner, request, Problem or listener yet, the page still renders, saying so
    ("No data yet." for the charts, "None." for the tables), and shows a degraded health."""
    from gateway.dashboard import render_dashboard

    stats = {"partners": [], "totals": {"lent": 0, "borrowed": 0, "net_balance": 0}}
    page = render_dashboard(name="Empty <library>", now=datetime(2030, 1, 1, tzinfo=timezone.utc),
                            stats=stats, in_flight=[], problems=[],
                            health={"status": "degraded"}).decode()
    assert page.count("No data yet.") == 2 and page.count("None.") == 4
    assert "Empty &lt;library&gt;" in page and "as at 2030-01-01 00:00:00 UTC" in page
    assert '<span class="bad">degraded</span>' in page
