"""Smoke test of the benchmark suite: the Z39.50 load client completes a few cycles against
yaz-ztest, and the report writer produces Markdown and JSON. Seconds, not minutes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import report, servers
from bench.ncip_load import accept_item_body, lua_script
from bench.z3950_load import build_requests, check_search, pdu_fields, run_load, verify_cycle


@pytest.fixture
def ztest(tmp_path: Path):
    if shutil.which("yaz-ztest") is None:
        pytest.skip("yaz-ztest not installed (Debian package yaz)")
    server = servers.start_ztest(tmp_path / "ztest")
    yield server
    server.stop()
    assert not server.alive()


@pytest.mark.slow
def test_load_client_cycles_against_yaz_ztest(ztest: servers.Managed) -> None:
    reqs = build_requests("computer")
    decoded = verify_cycle(ztest.port, reqs)
    assert decoded["search"] == "searchResponse" and decoded["hits"] > 0
    assert decoded["records"] == 1 and decoded["close"] == "close"
    result = run_load(ztest.port, reqs, concurrency=2, max_cycles=10, max_seconds=10)
    assert (result.completed, result.errors) == (10, 0), result.first_errors
    kept = run_load(ztest.port, reqs, concurrency=2, max_cycles=10, max_seconds=10,
                    keepalive=True)
    assert (kept.completed, kept.errors) == (10, 0), kept.first_errors
    assert 0 < result.percentile(50) <= result.percentile(99)


def test_tlv_reader_reads_a_search_response() -> None:
    from protocols.z3950.codec import encode_pdu, search_response

    frame = encode_pdu(search_response(result_count=7))
    tag, fields = pdu_fields(frame)
    assert tag == 23 and 22 in fields
    assert check_search(frame) == 7


def test_accept_item_script_makes_unique_request_ids() -> None:
    script = lua_script(accept_item_body(), unique_tag="T1")
    assert "function request()" in script and "@@REQUEST_ID@@" not in script
    assert 'wrk.format("POST"' in script


def test_report_writer_produces_markdown(tmp_path: Path) -> None:
    runs = [{"target": t, "repeat": r, "mode": "cycle", "concurrency": 1, "rate": rate,
             "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "errors": 0}
            for r, (g, z) in enumerate([(100.0, 50.0), (120.0, 60.0)])
            for t, rate in (("gateway", g), ("yaz-ztest fork", z))]
    ratio = report.ratios(runs, numerator="gateway", denominator="yaz-ztest fork",
                          keys=("mode", "concurrency"))
    cycle = ratio[("cycle", 1)]
    assert cycle is not None
    assert cycle["median"] == pytest.approx(2.0)
    results = {
        "meta": {"mode": "quick", "started": "now", "runtime_s": 1.0, "cores": 2},
        "targets": [{"description": "Z39.50 cycles ≥ 1.0× yaz-ztest fork", "met": True,
                     "measured": "2.00×"}],
        "z3950": {"description": "d", "aggregate": {"cycle| 1|gateway": {
            "rate": report.mmm([100, 120]), "p50_ms": report.mmm([1.0]),
            "p95_ms": report.mmm([2.0]), "p99_ms": report.mmm([3.0]), "errors": 0}},
            "ratios": {"cycle| 1|yaz-ztest fork": ratio[("cycle", 1)]}},
        "notes": ["a note"],
    }
    md, js = report.write(results, tmp_path)
    text = md.read_text()
    assert text.startswith("# Interlend benchmark report")
    assert "| Z39.50 cycles ≥ 1.0× yaz-ztest fork | 2.00× | **met** |" in text
    assert "110 (100–120)" in text and "2.00×" in text
    assert json.loads(js.read_text())["meta"]["mode"] == "quick"


def test_report_lists_what_each_change_bought(tmp_path: Path) -> None:
    curated = tmp_path / "performance_pass.toml"
    curated.write_text('[[change]]\ncommit = "abc1234"\nchange = "a faster thing"\n'
                       'measure = "ops/s"\nbefore = "10"\nafter = "20"\ncommand = "run it"\n')
    lines = report._performance_pass(curated)
    assert lines[0] == "## Performance pass: what each change bought"
    assert "| `abc1234` | a faster thing | ops/s | 10 | 20 | `run it` |" in lines
    assert report._performance_pass(tmp_path / "absent.toml") == []
    assert report._performance_pass()  # the committed file parses and has entries


def _tiny_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quick mode shrunk to seconds: a few hundred records, one client, half-second runs,
    OAI pages of 100 (so the harvest follows resumption tokens)."""
    from bench import __main__ as suite

    tiny = dict(suite.MODES["quick"], sru_catalogue=200, sru_clients=[1], sru_seconds=0.5,
                oai_records=300, oai_baseline=300, oai_page_size=100)
    monkeypatch.setitem(suite.MODES, "quick", tiny)


@pytest.mark.slow
def test_sru_section_against_zebrasrv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import __main__ as suite
    from bench import sru_load

    missing = sru_load.missing_tools()
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian packages idzebra-2.0, yaz)")
    if not servers.ZEBRA_RECIPE.exists():
        pytest.skip(f"zebra-demo recipe absent ({servers.ZEBRA_RECIPE})")
    _tiny_modes(monkeypatch)
    out = tmp_path / "out"
    assert suite.main(["--quick", "--only", "sru", "--out", str(out),
                       "--scratch", str(tmp_path / "scratch")]) == 0
    sru = json.loads((out / "report.json").read_text())["sru"]
    assert sru["hits"]["gateway"] > 0 and sru["hits"]["gateway"] == sru["hits"]["zebrasrv"]
    rows = {(r["target"], r["clients"]): r for r in sru["runs"]}
    assert set(rows) == {("gateway", 1), ("zebrasrv", 1)}
    assert all(r["rate"] > 0 and r["errors"] == 0 for r in rows.values())
    ratio = sru["ratios"][" 1"]["median"]
    assert ratio == pytest.approx(rows["gateway", 1]["rate"] / rows["zebrasrv", 1]["rate"])
    text = (out / "report.md").read_text()
    assert "## SRU searchRetrieve" in text and f"| 1 | {ratio:.2f}× |" in text
    verdict = "**met**" if ratio > 0.36 else "**not met**"  # its first report: 0.36x
    assert (f"| SRU searchRetrieve, gateway / zebrasrv's SRU, 1 client: better than first "
            f"report (0.36×) | {ratio:.2f}× | {verdict} |") in text


@pytest.mark.slow
def test_oai_section_harvests_every_record(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import __main__ as suite

    _tiny_modes(monkeypatch)
    out = tmp_path / "out"
    assert suite.main(["--quick", "--only", "oai", "--out", str(out),
                       "--scratch", str(tmp_path / "scratch")]) == 0
    oai = json.loads((out / "report.json").read_text())["oai"]
    harvests = {h["prefix"]: h for h in oai["harvests"]}
    assert set(harvests) == {"marc21_holdings", "oai_dc"}
    for h in harvests.values():
        assert h["records"] == 300 and h["pages"] == 3 and h["records_per_second"] > 0
    assert oai["baseline_in_process_marcxml"]["records"] == 300
    assert oai["ratio_listrecords_marc21_holdings_to_baseline"] > 0
    assert oai["daemon_rss_growth_kib"] == (oai["daemon_rss_kib_after"]
                                            - oai["daemon_rss_kib_before"])
    text = (out / "report.md").read_text()
    assert "## OAI-PMH ListRecords" in text and "| marc21_holdings | 300 |" in text
    assert "quick mode: 300 records, not 100,000" in text
