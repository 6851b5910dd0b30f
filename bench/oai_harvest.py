"""``python -m bench.oai_harvest [--records 100000] [--database PATH]``: OAI-PMH ListRecords rate.

A demo catalogue of ``--records`` records (``interlend demo``, reused when ``--database`` names
one that exists) behind ``interlend serve`` with ``[oai]`` on; one harvester follows every
resumption token of ``ListRecords`` (``marc21_holdings`` and ``oai_dc``) over HTTP keep-alive.

Figures: records per second for the whole harvest; the time of the first and of the last ten
pages (keyset pagination: the last page should cost what the first does); the daemon's resident
memory before and after (constant memory: it must not grow with the harvest). Baseline,
measured in the same run: the same records read from SQLite and rendered to MARCXML in this
process (no HTTP, no provider, no envelope), so the ratio says what the protocol costs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import servers

REPO = Path(__file__).resolve().parents[1]
_TOKEN = re.compile(rb"<resumptionToken[^>]*>([^<]*)</resumptionToken>")
_RECORD = re.compile(rb"<record>")


def _config(page_size: int) -> str:
    text = servers.bench_config()
    text = re.sub(r"(?ms)^\[oai\].*?\n\n", "", text, count=1)
    return text + (
        "\n[oai]\nlisten = [\"tcp:0:interface=127.0.0.1\"]\nbase_url = \"http://127.0.0.1/oai\"\n"
        "repository_identifier = \"bench.interlend.example\"\n"
        "admin_emails = [\"bench@interlend.example\"]\n"
        f"page_size = {page_size}\nmax_requests_per_second_per_peer = 0\n")


def harvest(port: int, prefix: str) -> dict[str, Any]:
    """Follow ListRecords to the end over one keep-alive connection; time every page."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    query = f"verb=ListRecords&metadataPrefix={prefix}"
    records = 0
    pages: list[float] = []
    size = 0
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        conn.request("GET", f"/oai?{query}")
        response = conn.getresponse()
        body = response.read()
        pages.append(time.perf_counter() - t0)
        if response.status != 200 or b"<error" in body[:2000]:
            raise RuntimeError(f"harvest failed: {response.status} {body[:300]!r}")
        size += len(body)
        records += len(_RECORD.findall(body))
        token = _TOKEN.search(body)
        if token is None or not token.group(1):
            break
        query = "verb=ListRecords&resumptionToken=" + quote(token.group(1).decode())
    seconds = time.perf_counter() - started
    conn.close()
    return {"prefix": prefix, "records": records, "seconds": round(seconds, 2),
            "records_per_second": round(records / seconds, 1), "pages": len(pages),
            "first_pages_ms": round(1000 * sum(pages[:10]) / min(10, len(pages)), 1),
            "last_pages_ms": round(1000 * sum(pages[-10:]) / min(10, len(pages)), 1),
            "megabytes": round(size / 1e6, 1)}


def baseline(database: Path, limit: int) -> dict[str, Any]:
    """The same records read and rendered to MARCXML in-process: the ceiling without OAI-PMH."""
    from lxml import etree

    from gateway.backends.embedded.catalogue import load_records
    from gateway.oai.formats import marc21_holdings
    from gateway.z3950.retrieval import Presentation

    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    view = Presentation()
    ids = [r[0] for r in conn.execute("SELECT id FROM records WHERE temporary = 0 ORDER BY id"
                                      " LIMIT ?", (limit,))]
    started = time.perf_counter()
    for start in range(0, len(ids), 500):
        for record in load_records(conn, ids[start:start + 500]).values():
            rendered = marc21_holdings(record, view)
            if not isinstance(rendered, bytes):  # an element from an older tree's renderer
                etree.tostring(rendered)
    seconds = time.perf_counter() - started
    conn.close()
    return {"records": len(ids), "seconds": round(seconds, 2),
            "records_per_second": round(len(ids) / seconds, 1)}


def measure(scratch: Path, *, records: int = 100000, database: Path | None = None,
            page_size: int = 500, baseline_records: int = 20000,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build (or reuse) the demo catalogue, harvest it both ways through the daemon, then the
    in-process baseline. Returns the figures (the benchmark report's ``oai`` section)."""
    scratch.mkdir(parents=True, exist_ok=True)
    database = database or scratch / "oai.sqlite3"
    if not database.exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gateway.daemon.cli", "demo", "--database",
                        str(database), "--records", str(records)], cwd=REPO, check=True,
                       capture_output=True)
        log(f"  oai: demo catalogue of {records:,} records built in "
            f"{time.perf_counter() - t0:.0f} s")
    gateway = servers.start_gateway(scratch / "gw", database, config_text=_config(page_size))
    try:
        line = gateway.wait_for(r"oai listening on [\d.]+:\d+")
        found = re.search(r"oai listening on [\d.]+:(\d+)", line)
        assert found is not None
        port = int(found.group(1))
        rss_before = servers.vm_rss_kib(gateway.pid)
        results = []
        for prefix in ("marc21_holdings", "oai_dc"):
            results.append(harvest(port, prefix))
            log(f"  oai: ListRecords {prefix}: {results[-1]['records']:,} records, "
                f"{results[-1]['records_per_second']:,.0f}/s")
        rss_after = servers.vm_rss_kib(gateway.pid)
    finally:
        gateway.stop()
    base = baseline(database, baseline_records)
    log(f"  oai: in-process baseline {base['records_per_second']:,.0f} records/s")
    return {
        "description": (
            f"One harvester follows every resumption token of ListRecords over HTTP keep-alive "
            f"(page size {page_size}) through `interlend serve` on a demo catalogue of "
            f"{records:,} records; baseline: {base['records']:,} of the same records read from "
            "SQLite and rendered to MARCXML (`marc21_holdings`) in-process, same run."),
        "catalogue_records": records, "page_size": page_size, "harvests": results,
        "baseline_in_process_marcxml": base,
        "ratio_listrecords_marc21_holdings_to_baseline": round(
            results[0]["records_per_second"] / base["records_per_second"], 2),
        "daemon_rss_kib_before": rss_before, "daemon_rss_kib_after": rss_after,
        "daemon_rss_growth_kib": rss_after - rss_before,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=100000)
    parser.add_argument("--database", type=Path)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--baseline-records", type=int, default=20000)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="interlend-oai-bench-"))
    figures = measure(scratch, records=args.records, database=args.database,
                      page_size=args.page_size, baseline_records=args.baseline_records)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
