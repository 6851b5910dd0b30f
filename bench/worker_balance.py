"""How evenly the kernel hands keep-alive connections to the workers: two trees alternated.

``python -m bench.worker_balance BEFORE_TREE AFTER_TREE [--runs N] [--connections C]``: each
tree serves a copy of one demo database with ``[gateway] workers = 2``; each run is a fresh
wrk (new connections) of LookupUser for 2 s. Per run it prints the busier worker's share of
the two workers' CPU (0.50: even; 1.00: one worker got every connection), the rate, p99 and
the gateway's CPU per request (primary and workers, ``/proc``); then medians. On a shared
machine the share and the CPU per request are the figures to read, not the rates.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import urllib.request
from pathlib import Path

from bench import compare_trees, ncip_load, servers


def workers_of(gateway: servers.Managed) -> list[int]:
    """The pids of a gateway's workers, from its ``/healthz``."""
    url = f"http://127.0.0.1:{gateway.ports['admin']}/healthz"
    with urllib.request.urlopen(url, timeout=10) as response:
        health = json.loads(response.read())
    return [worker["pid"] for worker in health["workers"]["running"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    scratch = Path(tempfile.mkdtemp(prefix="interlend-balance-"))
    database = scratch / "demo.sqlite3"
    compare_trees.demo_database(trees["before"], database, 2000)
    servers.raise_fd_limit()
    gateways: dict[str, servers.Managed] = {}
    figures: dict[str, dict[str, list[float]]] = {
        name: {"share": [], "rate": [], "p99": [], "cpu": []} for name in trees}
    script = ncip_load.lua_script(ncip_load.lookup_user_body())
    try:
        for name, tree in trees.items():
            copy = scratch / f"{name}.sqlite3"
            shutil.copy(database, copy)
            gateways[name] = compare_trees.start(tree, scratch / name, copy, workers=2)
        for run in range(args.runs):
            for name in (list(trees) if run % 2 == 0 else list(reversed(trees))):
                gateway = gateways[name]
                pids = workers_of(gateway)
                before = [compare_trees.cpu(pid) for pid in pids]
                total = compare_trees.tree_cpu(gateway.pid)
                wrk = ncip_load.run_wrk(
                    f"http://127.0.0.1:{gateway.ports['ncip']}/ncip", script,
                    connections=args.connections, seconds=args.seconds, service="LookupUser",
                    target=name)
                used = [compare_trees.cpu(pid) - cpu for pid, cpu in zip(pids, before)]
                done = max(1, wrk.data.get("requests", 0))
                row = figures[name]
                row["share"].append(max(used) / max(0.01, sum(used)))
                row["rate"].append(wrk.rate)
                row["p99"].append(wrk.summary()["p99_ms"])
                row["cpu"].append((compare_trees.tree_cpu(gateway.pid) - total) / done * 1e6)
                print(f"r{run} {name:6} busier worker {row['share'][-1]:.2f} of worker CPU, "
                      f"{wrk.rate:7.0f}/s p99 {row['p99'][-1]:.1f} ms, "
                      f"{row['cpu'][-1]:.0f} µs CPU/request", flush=True)
        for name, row in figures.items():
            print(f"{name}: busier-worker share median {statistics.median(row['share']):.2f} "
                  f"max {max(row['share']):.2f}; rate median {statistics.median(row['rate']):.0f}"
                  f" min {min(row['rate']):.0f}/s; p99 median {statistics.median(row['p99']):.1f}"
                  f" max {max(row['p99']):.1f} ms; CPU median "
                  f"{statistics.median(row['cpu']):.0f} µs/request")
    finally:
        for gateway in gateways.values():
            gateway.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
