"""AcceptItem (durable) CPU per request by thread, two source trees alternated in one run.

``python -m bench.accept_threads BEFORE AFTER [--rounds N] [--connections 1,16,64]``: each tree
serves a copy of one demo database (as :mod:`bench.compare_trees`, with the bench's
``[gateway] workers``); wrk POSTs AcceptItem with a new RequestId each, and the CPU each side
spends per request is read from ``/proc`` and split: the primary's reactor thread, its other
threads (the writer, readers), and its worker processes. The writer's group commit is read from
``/metrics``: commits, jobs per commit and the mean batch time (BEGIN to COMMIT returned, the
fsync included). On a shared machine CPU per request is the figure that compares; rates and
batch times move with the load.

``--brief``: instead, the writer-thread CPU of one temporary item's brief record
(``create_brief_record``, in one open transaction) in each tree, alternated.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import ncip_load, servers
from bench.compare_trees import cpu, demo_database, main_thread_cpu, start, tree_cpu

_BRIEF = """
import statistics, sys, tempfile, time
from pathlib import Path
from gateway.backends.embedded import operations as ops
from gateway.storage.store import open_database
conn = open_database(Path(tempfile.mkdtemp()) / "brief.sqlite3")
brief = ops.BriefRecord(title="[ILL] Borrowed for the benchmark", author="Bench, Load")
conn.execute("BEGIN IMMEDIATE")
runs = []
for run in range(5):
    started = time.thread_time()
    for n in range(2000):
        ops.create_brief_record(conn, f"ill-{run}-{n}", brief)
    runs.append((time.thread_time() - started) / 2000 * 1e6)
conn.execute("ROLLBACK")
print(statistics.median(runs))
"""


def brief_cpu(tree: Path) -> float:
    """Median CPU microseconds of one brief record in ``tree`` (a process of its own)."""
    done = subprocess.run([sys.executable, "-c", _BRIEF], cwd=tree, check=True,
                          env={"PYTHONPATH": str(tree)}, capture_output=True, text=True)
    return float(done.stdout.strip())


def writer_figures(admin_port: int) -> tuple[float, float, float]:
    """The writer's commits, jobs and commit seconds so far (``/metrics``)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics",
                                  timeout=10).read().decode()

    def value(name: str) -> float:
        match = re.search(rf"^{name}(?:_total)? ([0-9.e+-]+)$", text, re.M)
        return float(match.group(1)) if match else 0.0
    return (value("interlend_writer_commits"), value("interlend_writer_jobs"),
            value("interlend_writer_commit_seconds"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--brief", action="store_true")
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    if args.brief:
        figures: dict[str, list[float]] = {name: [] for name in trees}
        for rnd in range(args.rounds):
            for name in (trees if rnd % 2 == 0 else reversed(trees)):
                figures[name].append(brief_cpu(trees[name]))
                print(f"r{rnd} {name:6} create_brief_record {figures[name][-1]:.1f} µs CPU",
                      flush=True)
        b, a = (statistics.median(figures[n]) for n in trees)
        print(f"median before {b:.1f} µs, after {a:.1f} µs ({a / b:.3f}x)")
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="interlend-accept-"))
    db = scratch / "demo.sqlite3"
    demo_database(trees["before"], db, 2000)
    servers.raise_fd_limit()
    gateways: dict[str, servers.Managed] = {}
    rows: dict[tuple[int, str], list[tuple[float, ...]]] = {}
    connections = [int(c) for c in args.connections.split(",")]
    try:
        for name, tree in trees.items():
            copy = scratch / f"{name}.sqlite3"
            shutil.copy(db, copy)
            gateways[name] = start(tree, scratch / name, copy)
        for rnd in range(args.rounds):
            for conc in connections:
                for name in (trees if rnd % 2 == 0 else reversed(trees)):
                    gw = gateways[name]
                    pid, admin = gw.pid, gw.ports["admin"]
                    script = ncip_load.lua_script(
                        ncip_load.accept_item_body(), unique_tag=f"at-{rnd}-{conc}-{name}")
                    t0, p0, m0 = tree_cpu(pid), cpu(pid), main_thread_cpu(pid)
                    w0 = writer_figures(admin)
                    wrk = ncip_load.run_wrk(f"http://127.0.0.1:{gw.ports['ncip']}/ncip", script,
                                            connections=conc, seconds=args.seconds,
                                            service="AcceptItem", target=name)
                    w1 = writer_figures(admin)
                    done = max(1, wrk.data.get("requests", 0))
                    total = (tree_cpu(pid) - t0) / done * 1e3
                    primary = (cpu(pid) - p0) / done * 1e3
                    reactor = (main_thread_cpu(pid) - m0) / done * 1e3
                    commits = max(1.0, w1[0] - w0[0])
                    batch = (w1[1] - w0[1]) / commits
                    batch_ms = (w1[2] - w0[2]) / commits * 1e3
                    rows.setdefault((conc, name), []).append(
                        (wrk.rate, total, primary, reactor, batch, batch_ms))
                    print(f"r{rnd} c={conc:<3} {name:6} {wrk.rate:8.1f}/s CPU ms/request: "
                          f"total {total:.3f}, primary {primary:.3f} (reactor {reactor:.3f}, "
                          f"other threads {primary - reactor:.3f}), workers "
                          f"{total - primary:.3f} | {batch:.1f} jobs/commit, batch "
                          f"{batch_ms:.2f} ms | failures {wrk.failures}", flush=True)
                    time.sleep(0.3)
        print("\nmedians over rounds:")
        for conc in connections:
            for name in trees:
                m = [statistics.median(r[i] for r in rows[(conc, name)]) for i in range(6)]
                print(f"c={conc:<3} {name:6} {m[0]:8.1f}/s total {m[1]:.3f} primary {m[2]:.3f} "
                      f"(reactor {m[3]:.3f}, other {m[2] - m[3]:.3f}) workers "
                      f"{m[1] - m[2]:.3f} ms/request; {m[4]:.1f} jobs/commit, {m[5]:.2f} ms")
            pairs = zip(rows[(conc, "before")], rows[(conc, "after")], strict=True)
            ratios = [(a[1] / b[1], a[2] / b[2]) for b, a in pairs]
            print(f"c={conc:<3} after/before, median of per-round ratios: total "
                  f"{statistics.median(r[0] for r in ratios):.3f}, primary "
                  f"{statistics.median(r[1] for r in ratios):.3f}")
    finally:
        for gw in gateways.values():
            gw.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
