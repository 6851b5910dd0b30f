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
from dataclasses import dataclass, field
from pathlib import Path

from bench import servers

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10, help="maximumRecords per request")
    parser.add_argument("--catalogue", type=int, default=2000, help="demo records loaded")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--query", default="dc.title=river")
    args = parser.parse_args(argv)
    for tool in ("zebrasrv", "zebraidx", "yaz-marcdump"):
        if not servers.have(tool):
            print(f"{tool} not installed (Debian packages idzebra-2.0, yaz): nothing to compare")
            return 2
    from gateway.backends.embedded.demo import write_demo_marc

    with tempfile.TemporaryDirectory(prefix="interlend-sru-bench-") as scratch_name:
        scratch = Path(scratch_name)
        try:
            marc = scratch / "demo.mrc"
            write_demo_marc(marc, records=args.catalogue)
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
            gateway.wait_for(r"sru listening on", timeout=10)
            zebra = start_zebra_sru(scratch / "zebra", marc)
            targets = {"gateway": (gateway.ports["sru"], _path("/sru", args.query, args.records)),
                       "zebrasrv": (zebra.port, _path("/Default", args.query, args.records))}
            counts = {name: hits(port, path) for name, (port, path) in targets.items()}
            print(f"query {args.query!r}, {args.records} MARCXML records per response, "
                  f"{args.catalogue:,} demo records; hits: {counts}")
            # Zebra also holds the recipe's own 3 records: equal counts unless they match.
            print(f"{'target':<10} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'errors':>6}")
            for clients in args.clients:
                rates = {}
                for name, (port, path) in targets.items():
                    run = run_load(name, port, path, clients, args.seconds)
                    rates[name] = run.rate
                    print(f"{name:<10} {clients:>7} {run.rate:>9.1f} {run.percentile(50):>8.2f} "
                          f"{run.percentile(99):>8.2f} {run.errors:>6}")
                if rates.get("zebrasrv"):
                    print(f"{'ratio':<10} {clients:>7} {rates['gateway'] / rates['zebrasrv']:>9.2f}"
                          "  (gateway / zebrasrv)")
        finally:
            servers.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
