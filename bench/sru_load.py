"""``python -m bench.sru_load``: SRU searchRetrieve against the gateway and Zebra's own SRU.

Both serve the same demo records (``write_demo_marc``): the gateway imports them, Zebra indexes
them with the zebra-demo recipe (run in place; plus its 3 records) and is then served again by
``zebrasrv`` with YAZ's stock CQL-to-PQF mapping (``/usr/share/yaz/etc/pqf.properties``) so it
speaks SRU. Each run: ``--clients`` threads, each on one kept-open HTTP/1.1 connection, send
``searchRetrieve`` GETs (``--query``, ``maximumRecords`` ``--records`` in MARCXML) for
``--seconds``; figures are requests per second and latency percentiles, and the ratio
gateway / Zebra, measured in the same run. Hit counts are checked equal first.
"""

from __future__ import annotations

import argparse
import http.client
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import report, servers

PQF_PROPERTIES = Path("/usr/share/yaz/etc/pqf.properties")


@dataclass
class Run:
    """One timed run against one server."""

    target: str
    clients: int
    completed: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def _path(base_path: str, query: str, records: int) -> str:
    return base_path + "?" + urllib.parse.urlencode({
        "version": "1.2", "operation": "searchRetrieve", "query": query,
        "maximumRecords": str(records), "recordSchema": "marcxml"})


def hits(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    match = re.search(rb"<(?:\w+:)?numberOfRecords>(\d+)<", body)
    if match is None:
        raise RuntimeError(f"no numberOfRecords in {body[:300]!r}")
    return int(match.group(1))


def run_load(target: str, port: int, path: str, clients: int, seconds: float) -> Run:
    run = Run(target, clients)
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        done, failed, lat = 0, 0, []
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or b"numberOfRecords" not in body:
                    failed += 1
                else:
                    done += 1
                    lat.append(time.perf_counter() - t0)
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()
        with lock:
            run.completed += done
            run.errors += failed
            run.latencies += lat

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = time.perf_counter() - started
    return run


def start_zebra_sru(workdir: Path, marc: Path) -> servers.Managed:
    """Index with the zebra-demo recipe, then serve the index again with CQL over SRU."""
    indexed = servers.start_zebra(workdir, marc_file=marc)
    indexed.stop()
    port = servers.free_port()
    config = workdir / "yazgfs-sru.xml"
    config.write_text(
        f"<yazgfs><listen id='z'>tcp:127.0.0.1:{port}</listen>"
        f"<server id='s' listenref='z'><config>{workdir / 'zebra.cfg'}</config>"
        f"<cql2rpn>{PQF_PROPERTIES}</cql2rpn><retrievalinfo>"
        "<retrieval syntax='xml' name='marcxml' identifier='info:srw/schema/1/marcxml-v1.1'>"
        "<backend syntax='usmarc' name='F'><marc inputformat='marc' outputformat='marcxml' "
        "inputcharset='utf-8'/></backend></retrieval></retrievalinfo></server></yazgfs>")
    managed = servers._spawn("zebrasrv (SRU)", ["zebrasrv", "-f", str(config), "-l",
                                                str(workdir / "zebrasrv-sru.log")],
                             cwd=workdir, port=port)
    servers.wait_port(port, proc=managed.proc)
    return managed


def measure(scratch: Path, *, catalogue: int = 2000, clients: list[int] | None = None,
            seconds: float = 5.0, records: int = 10, query: str = "dc.title=river",
            repeats: int = 1, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Load both servers with the same demo records and time them, client counts in turn.

    Returns the figures (the benchmark report's ``sru`` section): the hit counts, one row per
    run (``target``, ``clients``, ``repeat``, ``rate``, latency percentiles, ``errors``) and per
    client count the gateway / zebrasrv ratio, paired by repeat. Every server started is stopped.
    """
    from gateway.backends.embedded.demo import write_demo_marc

    clients = clients or [1, 8]
    section: dict[str, Any] = {
        "description": (
            f"`searchRetrieve` GETs (`{query}`, maximumRecords {records}, MARCXML), each client "
            f"on one kept-open HTTP/1.1 connection, {seconds} s per run; the gateway imports "
            f"{catalogue:,} demo records (`write_demo_marc`), zebrasrv indexes the same file "
            "with the zebra-demo recipe (plus its 3 records) and serves it over SRU with YAZ's "
            "stock CQL-to-PQF mapping."),
        "catalogue": catalogue, "query": query, "records_per_response": records,
        "seconds": seconds, "runs": []}
    scratch.mkdir(parents=True, exist_ok=True)
    started: list[servers.Managed] = []
    try:
        marc = scratch / "demo.mrc"
        write_demo_marc(marc, records=catalogue)
        database = scratch / "gateway.sqlite3"
        config = scratch / "gateway.toml"
        text = servers.bench_config().replace(
            'listen = ["tcp:8082:interface=127.0.0.1"]',
            'listen = ["tcp:0:interface=127.0.0.1"]\nmax_requests_per_second_per_peer = 0'
            "\nmax_connection_rate_per_peer = 0\nmax_connections_per_peer = 4000")
        config.write_text(text)
        subprocess.run([sys.executable, "-m", "gateway.daemon.cli", "import", "marc", "-c",
                        str(config), "--database", str(database), str(marc)],
                       cwd=servers.REPO, check=True, capture_output=True, timeout=3600)
        gateway = servers.start_gateway(scratch / "gw", database, config_text=text)
        started.append(gateway)
        gateway.wait_for(r"sru listening on", timeout=10)
        zebra = start_zebra_sru(scratch / "zebra", marc)
        started.append(zebra)
        targets = {"gateway": (gateway.ports["sru"], _path("/sru", query, records)),
                   "zebrasrv": (zebra.port, _path("/Default", query, records))}
        # Zebra also holds the recipe's own 3 records: equal counts unless they match.
        section["hits"] = {name: hits(port, path) for name, (port, path) in targets.items()}
        log(f"  sru: query {query!r}, {records} MARCXML records per response, {catalogue:,} "
            f"demo records; hits {section['hits']}")
        for rep in range(repeats):
            for count in clients:
                for name, (port, path) in targets.items():
                    run = run_load(name, port, path, count, seconds)
                    row = {"target": name, "clients": count, "repeat": rep,
                           "rate": round(run.rate, 1), "p50_ms": round(run.percentile(50), 2),
                           "p99_ms": round(run.percentile(99), 2), "errors": run.errors}
                    section["runs"].append(row)
                    log(f"  sru r{rep} c={count:<3} {name:<9} {row['rate']:9.1f} req/s "
                        f"p50 {row['p50_ms']:.2f} p99 {row['p99_ms']:.2f} ms "
                        f"errors {row['errors']}")
    finally:
        for managed in started:
            managed.stop()
    finish(section)
    return section


def finish(section: dict[str, Any]) -> None:
    """Aggregates over repeats and gateway / zebrasrv ratios from whatever runs were made."""
    runs = section.get("runs", [])
    section["aggregate"] = {
        f"{count:>2}|{name}": {"rate": report.mmm(r["rate"] for r in rows),
                               "p50_ms": report.mmm(r["p50_ms"] for r in rows),
                               "p99_ms": report.mmm(r["p99_ms"] for r in rows),
                               "errors": sum(r["errors"] for r in rows)}
        for (count, name), rows in report.group(runs, "clients", "target").items()}
    section["ratios"] = {
        f"{count:>2}": stat for (count,), stat in report.ratios(
            runs, numerator="gateway", denominator="zebrasrv", keys=("clients",)).items()}


def missing_tools() -> list[str]:
    """The Debian tools this benchmark needs that are not installed."""
    return [tool for tool in ("zebrasrv", "zebraidx", "yaz-marcdump") if not servers.have(tool)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=10, help="maximumRecords per request")
    parser.add_argument("--catalogue", type=int, default=2000, help="demo records loaded")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--query", default="dc.title=river")
    args = parser.parse_args(argv)
    for tool in missing_tools():
        print(f"{tool} not installed (Debian packages idzebra-2.0, yaz): nothing to compare")
        return 2
    with tempfile.TemporaryDirectory(prefix="interlend-sru-bench-") as scratch_name:
        try:
            section = measure(Path(scratch_name), catalogue=args.catalogue, clients=args.clients,
                              seconds=args.seconds, records=args.records,
                              query=args.query)
        finally:
            servers.stop_all()  # zebrasrv's indexing run too, should the recipe fail midway
    for key, stat in sorted(section["ratios"].items()):
        print(f"ratio c={key.strip():<4} {report.fmt_mmm(stat, 2, 'x')}  (gateway / zebrasrv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
