"""The admin listener of a real daemon: /metrics, /stats, /rs/statistics, /healthz, the
dashboard page, HTTP Basic authentication and the ``--admin-listen`` override.

Metric values are checked against what the test sent (the broker scenario of
:mod:`tests.audit_fixtures`), parsed with prometheus_client's own exposition parser.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import socket
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.admin import worklist
from gateway.admin.dashboard import PAGE_SIZE, Listing, render_dashboard
from gateway.audit import AuditEntry, audit_time, insert_entry
from gateway.secrets import keyed_hash, read_key_file
from gateway.storage.store import open_database
from tests import audit_fixtures as af
from tests.daemon import start_daemon

pytestmark = pytest.mark.slow

NASTY = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(daemon, sent, whether a Z39.50 Init was answered): its database held 3 expired audit
    rows at start, then it answered the
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


def _patron_label(daemon: Any, barcode: str) -> str:
    """How the dashboard shows a person: the start of the audit log's keyed hash."""
    key = read_key_file(Path(f"{daemon.database}.key"))
    assert key is not None
    return "#" + keyed_hash(key, barcode)[:10]


def _section(page: str, ident: str) -> str:
    start = page.index(f'<section id="{ident}"')
    return page[start:page.index("</section>", start)]


def test_dashboard_page_has_the_data_and_escapes_it(traffic: Any) -> None:
    """``/`` is the work screen: HTML naming each partner, the open requests (RS-L-3 and
    TIP-1, not the completed or cancelled ones) with title, patron — a person by the start of
    the audit log's keyed hash, never the barcode — partner and state, the Problem of the
    last day where an item barcode full of markup appears escaped, never as markup, and
    health. Times are in the configured zone (Europe/London) and say so."""
    daemon, sent, z3950 = traffic
    status, headers, body = af.admin_get(daemon, "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    for text in ("Audit test library", "reshare", "tipasa", "RS-L-3", "TIP-1", "NOPE-1",
                 "Unknown Item", "Health: <span class=\"ok\">ok</span>",
                 "times in Europe/London"):
        assert text in page, text
    listing = _section(page, "requests")
    rows = re.findall(r"<tr>(.*?)</tr>", listing.split("<tbody>")[1])
    assert len(rows) == 2
    tipasa, reshare = rows   # newest first
    assert ">[ILL] Tipasa book<" in tipasa and _patron_label(daemon, "PBAR-101") in tipasa
    assert "awaiting pickup" in tipasa and ">tipasa<" in tipasa
    assert ">Structure and interpretation<" in reshare and "INST-EAST" in reshare
    assert "Showing 1–2 of 2 open requests" in listing
    assert "RS-L-1" not in listing and "RS-L-2" not in listing
    for barcode in ("PBAR-100", "PBAR-101"):
        assert barcode not in page
    action = _section(page, "action")
    assert "Problems in the last day <span class=\"count\">(2)</span>" in action
    assert NASTY not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_dashboard_filters_and_search(traffic: Any) -> None:
    """The work list's form: every state (closed too), a partner, a role, a search, the
    overdue box; a filter value that is no choice gives an empty list, not an error."""
    daemon, _, _ = traffic

    def listed(query: str) -> list[str]:
        status, _, body = af.admin_get(daemon, "/?" + query)
        assert status == 200
        listing = _section(body.decode(), "requests")
        return re.findall(r'<a href="/requests/\d+">([^<]+)</a>', listing)

    everything = listed("state=all")
    assert len(everything) == 5
    assert len(listed("state=all&role=lender")) == 3
    assert listed("state=all&peer=tipasa") == listed("q=TIP-1") and len(listed("q=TIP-1")) == 1
    assert len(listed("state=cancelled")) == 1
    assert listed("overdue=1") == []
    assert listed("q=Tipasa+book") == listed("q=TIP-1")
    assert listed("q=PBAR-101") == listed("q=TIP-1")   # a patron by the whole barcode
    assert listed("peer=nobody&role=x&page=zz") == []
    assert listed("state=all&sort=oldest") == everything[::-1]
    # due soonest: RS-L-3 (out on loan) before TIP-1 (on the hold shelf, no date yet)
    assert listed("sort=due") == listed("q=RS-L-3") + listed("q=TIP-1")
    status, _, body = af.admin_get(daemon, "/?state=all&role=lender&page=2")
    page = body.decode()   # past the last page: the last page
    assert status == 200 and "Page 1 of 1" in page and "Showing 1–3 of 3 requests" in page


def test_request_page_history_and_exchanges(traffic: Any) -> None:
    """``/requests/<row id>``: the request's facts, every step and every exchange with its
    stored (redacted) bodies, as ``interlend requests show`` has them; an unknown row is a
    404 page, a path that is no row id 404 too."""
    daemon, _, _ = traffic
    [row] = af.query(daemon.database, "SELECT id, our_request_id FROM rs_requests WHERE"
                     " broker_request_id = 'RS-B-1'")
    status, headers, body = af.admin_get(daemon, f"/requests/{row['id']}")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert f"<h1>{row['our_request_id']} · (temporary record removed)</h1>" in page
    steps = re.findall(r'<th scope="row" data-label="step">([^<]+)</th>', page)
    assert steps == ["requested", "accepted", "received", "checked out", "returned",
                     "checked in", "completed"]
    exchanges = _section(page, "exchanges")
    assert re.findall(r'data-label="operation">(\w+)<', exchanges) == [
        "AcceptItem", "CheckOutItem", "CheckInItem", "DeleteItem"]
    assert exchanges.count("<pre>") == 8 and "PBAR-100" not in page
    assert "&lt;AcceptItem" in exchanges or "AcceptItem&gt;" in exchanges
    status, _, body = af.admin_get(daemon, "/requests/999999")
    assert status == 404 and b"There is no request 999999." in body
    assert af.admin_get(daemon, "/requests/RS-B-1")[0] == 404
    assert af.admin_get(daemon, "/requests/")[0] == 404


def test_requests_csv_is_the_current_view(traffic: Any) -> None:
    """``/requests.csv`` with the page's filters: every matching request (all pages), the
    documented columns, patrons as on the page, times with the configured zone's offset."""
    daemon, _, _ = traffic
    status, headers, body = af.admin_get(daemon, "/requests.csv?state=all&role=lender")
    assert status == 200 and headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["content-disposition"] == 'attachment; filename="requests.csv"'
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert tuple(rows[0]) == worklist.CSV_COLUMNS
    assert sorted(r["broker_request_id"] for r in rows) == ["RS-L-1", "RS-L-2", "RS-L-3"]
    assert {r["patron"] for r in rows} == {"INST-EAST"}
    assert all(r["requested_at"].endswith("+00:00") for r in rows)  # London in winter
    open_rows = list(csv.DictReader(io.StringIO(af.admin_get(daemon, "/requests.csv")[2]
                                                .decode())))
    assert sorted(r["broker_request_id"] for r in open_rows) == ["RS-L-3", "TIP-1"]
    [tip] = [r for r in open_rows if r["broker_request_id"] == "TIP-1"]
    assert tip["patron"] == _patron_label(daemon, "PBAR-101") and tip["overdue"] == "no"
    assert tip["title"] == "[ILL] Tipasa book"


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
            for path in ("/", "/stats", "/rs/statistics", "/metrics", "/healthz",
                         "/requests.csv", "/requests/1"):
                status, headers, _ = af.admin_get(daemon, path)
                assert status == 401 and headers["www-authenticate"] == (
                    'Basic realm="Interlend admin"'), path
                for auth in (("staff", "wrong"), ("admin", "s3cret-admin"), ("staff", "")):
                    assert af.admin_get(daemon, path, auth=auth)[0] == 401, (path, auth)
                status, _, _ = af.admin_get(daemon, path, auth=("staff", "s3cret-admin"))
                assert status == (404 if path == "/requests/1" else 200), path  # no request
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


def _empty_actions() -> Any:
    return worklist.ActionItems(worklist.Page([], 0), worklist.Page([], 0), [], 0, [])


def test_dashboard_renders_without_any_data() -> None:
    """With no partner, request, Problem or listener yet, the page still renders, saying so
    ("No data yet." for the charts, "None." for the tables), and shows a degraded health."""
    stats = {"partners": [], "totals": {"lent": 0, "borrowed": 0, "net_balance": 0}}
    page = render_dashboard(
        name="Empty <library>", now=datetime(2030, 1, 1, tzinfo=timezone.utc),
        zone=ZoneInfo("UTC"), stats=stats, actions=_empty_actions(), listing=Listing(),
        page=worklist.Page([], 0), peers=[], states=[], problems=[],
        health={"status": "degraded"}).decode()
    assert page.count("No data yet.") == 2 and page.count(": None.") == 7
    assert "Needs action: nothing now" in page and "No open requests match" in page
    assert "Empty &lt;library&gt;" in page and "as at 2030-01-01 00:00" in page
    assert '<span class="bad">degraded</span>' in page


def test_dashboard_times_are_in_the_configured_zone() -> None:
    """Every time on the page is shown in the configured zone (New York: UTC−5 in winter),
    and the header names the zone."""
    stats = {"partners": [], "totals": {"lent": 0, "borrowed": 0, "net_balance": 0}}
    request = {"id": 7, "our_request_id": "B-7", "broker_request_id": "R-7", "peer": "p",
               "role": "borrower", "state": "checked_out", "overdue": True, "title": "T",
               "patron": "#0123456789", "due_at": "2030-01-01T04:59:59+00:00",
               "age_seconds": 90000}
    problem = {"time": "2030-01-02T17:30:00.000001+00:00", "protocol": "ncip", "peer": "p",
               "operation": "CheckOutItem", "outcome": "Unknown Item",
               "broker_request_id": None, "item_barcode": "X"}
    page = render_dashboard(
        name="L", now=datetime(2030, 1, 2, 18, 0, tzinfo=timezone.utc),
        zone=ZoneInfo("America/New_York"), stats=stats, actions=_empty_actions(),
        listing=Listing(), page=worklist.Page([request], 1), peers=["p"],
        states=["checked_out"], problems=[problem], health={"status": "ok"}).decode()
    assert "as at 2030-01-02 13:00 · times in America/New_York (EST)" in page
    assert "2029-12-31 23:59" in page and "2030-01-02 12:30" in page
    assert "T04:59" not in page and "17:30" not in page
    assert '<span class="tag">overdue</span>' in page and ">1d 1h<" in page


def test_dashboard_listing_addresses() -> None:
    """The work list's address: read leniently (unknown role, bad page: defaults) and
    written back with the filters kept and empty values left out."""
    listing = Listing.from_params({"q": " Dune ", "peer": "reshare", "role": "boss",
                                   "state": "all", "overdue": "1", "page": "x"})
    assert (listing.search, listing.peer, listing.role, listing.page) == ("Dune", "reshare",
                                                                          "", 1)
    assert listing.params(page=3) == "q=Dune&peer=reshare&state=all&overdue=1&page=3"
    assert Listing.from_params({"sort": "due"}).params() == "sort=due"
    assert Listing.from_params({"sort": "drop table"}).order == "newest"
    assert Listing().params() == ""
    query = Listing(state="", page=2).query()
    assert query.open_only and query.offset == PAGE_SIZE and query.limit == PAGE_SIZE
    assert Listing(state="shipped").query(paged=False).limit is None


def test_chart_labels_fit_and_are_named() -> None:
    """A bar chart keeps every label and value inside its drawing (long partner names are
    shortened there, whole in their tooltip and in the chart's description), and is named
    for assistive technology by its title and a description of every value."""
    from gateway.admin.dashboard import _bars

    long_name = "illiad-consortium-of-the-east-and-west"
    svg = _bars("Lent <and> borrowed", [(long_name, [123456.0, 2.0]), ("b", [0.0, 1.0])],
                ["#000", "#fff"], ["lent", "borrowed"], " h")
    width = float(re.search(r'viewBox="0 0 ([\d.]+) ', svg).group(1))
    label_width = float(re.search(r'<rect x="([\d.]+)"', svg).group(1))
    texts = re.findall(r'<text x="([\d.]+)"[^>]*>(?:<title>[^<]*</title>)?([^<]+)</text>', svg)
    for x, text in texts:
        right = float(x) + 7 * len(text)      # 12px text: at most 7px a character
        assert right <= (label_width if float(x) == 0 else width), (text, right, width)
    assert "<title>illiad-consortium-of-the-east-and-west</title>" in svg
    assert 'role="img" aria-labelledby="chart-lent--and--borrowed-t chart-lent--and--' in svg
    assert "<title id=\"chart-lent--and--borrowed-t\">Lent &lt;and&gt; borrowed</title>" in svg
    assert f"{long_name}: lent 123456 h, borrowed 2 h; b: lent 0 h, borrowed 1 h" in svg
