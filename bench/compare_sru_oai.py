"""Two source trees side by side for SRU and OAI-PMH: gateway CPU per request, same run.

``python -m bench.compare_sru_oai BEFORE AFTER [--rounds N] [--records N]``: each tree serves a
copy of one demo catalogue built by the BEFORE tree (as :mod:`bench.compare_trees` does, whose
start-up and CPU reading this reuses), with its SRU and OAI-PMH listeners on loopback and the
per-address caps lifted. Each round, in alternating tree order: SRU searchRetrieve (``--query``,
10 records) in MARCXML, Dublin Core and OPAC at 1 and 8 kept-open clients
(:func:`bench.sru_load.run_load`), then a whole OAI-PMH ListRecords harvest in
``marc21_holdings`` and ``oai_dc`` (:func:`bench.oai_harvest.harvest`). The figure that
survives a shared machine is the CPU the gateway process spends per request (per record for
OAI-PMH), read from ``/proc/PID/stat``; rates are printed too. Replies are checked equal
between the trees first (same hit counts, same records).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path

from bench import oai_harvest, servers, sru_load
from bench.compare_trees import cpu, demo_database, start


def _config(text: str) -> str:
    """The bench configuration with SRU and OAI-PMH on loopback, per-address caps lifted."""
    text = re.sub(r'(?m)^(\[sru\][^\n]*\n(?:#[^\n]*\n)*)listen = \[[^\]]*\]',
                  r'\1listen = ["tcp:0:interface=127.0.0.1"]\n'
                  "max_requests_per_second_per_peer = 0", text, count=1)
    text = re.sub(r"(?ms)^\[oai\].*?\n\n", "", text, count=1)
    return text + (
        '\n[oai]\nlisten = ["tcp:0:interface=127.0.0.1"]\nbase_url = "http://127.0.0.1/oai"\n'
        'repository_identifier = "bench.interlend.example"\n'
        'admin_emails = ["bench@interlend.example"]\n'
        "page_size = 500\nmax_requests_per_second_per_peer = 0\n")


def _sru_path(query: str, schema: str) -> str:
    return "/sru?" + urllib.parse.urlencode({
        "version": "1.2", "operation": "searchRetrieve", "query": query,
        "maximumRecords": "10", "recordSchema": schema})


def _fetch(port: int, path: str) -> bytes:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--query", default="dc.title=river")
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    scratch = Path(tempfile.mkdtemp(prefix="interlend-compare-sru-oai-"))
    db = scratch / "demo.sqlite3"
    demo_database(trees["before"], db, args.records)
    servers.raise_fd_limit()
    original = servers.bench_config
    servers.bench_config = lambda limit=4000: _config(original(limit))  # start() reads it
    gateways: dict[str, servers.Managed] = {}
    try:
        for name, tree in trees.items():
            copy = scratch / f"{name}.sqlite3"
            shutil.copy(db, copy)
            gateways[name] = start(tree, scratch / name, copy)
            gateways[name].wait_for(r"sru listening on", timeout=10)
            line = gateways[name].wait_for(r"oai listening on [\d.]+:\d+", timeout=10)
            found = re.search(r"oai listening on [\d.]+:(\d+)", line)
            assert found is not None
            gateways[name].ports["oai"] = int(found.group(1))
        schemas = ("marcxml", "dc", "opac")
        for schema in schemas:
            bodies = {n: _fetch(g.ports["sru"], _sru_path(args.query, schema))
                      for n, g in gateways.items()}
            hits = {n: re.search(rb"numberOfRecords>(\d+)<", b) for n, b in bodies.items()}
            records = {n: b.count(b"<zs:record>") for n, b in bodies.items()}
            counts = {n: h.group(1).decode() if h else None for n, h in hits.items()}
            print(f"sru {schema}: hits {counts} records {records} "
                  f"same bytes: {len(set(bodies.values())) == 1}", flush=True)
        keys: list[str] = []
        rates: dict[tuple[str, str], list[float]] = {}
        cpus: dict[tuple[str, str], list[float]] = {}

        def note(key: str, name: str, rate: float, per: float, extra: str) -> None:
            if key not in keys:
                keys.append(key)
            rates.setdefault((key, name), []).append(rate)
            cpus.setdefault((key, name), []).append(per)
            print(f"r{rnd} {key:28} {name:6} {rate:9.1f}/s cpu {per:.3f} ms {extra}",
                  flush=True)

        for rnd in range(args.rounds):
            order = list(trees) if rnd % 2 == 0 else list(reversed(trees))
            for schema in schemas:
                for clients in (1, 8):
                    for name in order:
                        gw = gateways[name]
                        c0 = cpu(gw.pid)
                        run = sru_load.run_load(name, gw.ports["sru"],
                                                _sru_path(args.query, schema), clients,
                                                args.seconds)
                        per = (cpu(gw.pid) - c0) / max(1, run.completed) * 1000
                        note(f"sru {schema} c={clients}", name, run.rate, per,
                             f"per request, errors {run.errors}")
                        time.sleep(0.3)
            for prefix in ("marc21_holdings", "oai_dc"):
                for name in order:
                    gw = gateways[name]
                    c0 = cpu(gw.pid)
                    result = oai_harvest.harvest(gw.ports["oai"], prefix)
                    per = (cpu(gw.pid) - c0) / max(1, result["records"]) * 1000
                    note(f"oai ListRecords {prefix}", name, result["records_per_second"], per,
                         f"per record, {result['records']} records")
                    time.sleep(0.3)
        print("\nmedians over rounds (CPU per request, per record for OAI-PMH):")
        for key in keys:
            a = statistics.median(rates[(key, "before")])
            b = statistics.median(rates[(key, "after")])
            ca = statistics.median(cpus[(key, "before")])
            cb = statistics.median(cpus[(key, "after")])
            print(f"{key:28} rate before {a:9.1f} after {b:9.1f} ({b / a:.2f}x) | "
                  f"cpu before {ca:.3f} ms after {cb:.3f} ms ({ca / cb:.2f}x less)", flush=True)
    finally:
        servers.bench_config = original
        for gw in gateways.values():
            gw.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
