"""Two source trees' MARC imports, alternated: wall time, the writing process's CPU and its
decoder workers' CPU, same run, same file.

``python -m bench.compare_import BEFORE AFTER --records N [--rounds R] [--scratch DIR]``:
writes ``N`` demo records as ISO 2709 once (``write_demo_marc``, as the scale section does)
and imports them with ``interlend import marc`` from each tree into a fresh database, the
trees in alternating order each round. Each import is timed end to end (process start-up
included, as ``bench/scale.py`` times it); the CPU the importing process spent (the writer:
every SQLite write) and the CPU of its worker processes (reading and preparing records) come
from ``getrusage`` in that process. On a shared machine the CPU figures are the ones that
compare; the wall-clock rate is what the issue's target reads on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.compare_trees import cli_module

REPO = Path(__file__).resolve().parents[1]

_RUSAGE = (
    "import resource, runpy, sys\n"
    "module = sys.argv.pop(1)\n"
    "try:\n"
    "    runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    s = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    c = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "    print(f'@rusage {s.ru_utime + s.ru_stime:.2f} {c.ru_utime + c.ru_stime:.2f}',"
    " file=sys.stderr)\n"
)


def import_once(tree: Path, marc: Path, database: Path, config: Path) -> dict[str, Any]:
    """One end-to-end import of ``marc`` from ``tree`` into a fresh ``database``."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _RUSAGE, cli_module(tree), "import", "marc", "-c", str(config),
         "--database", str(database), str(marc)],
        cwd=tree, capture_output=True, text=True, timeout=3 * 3600, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{tree}: import failed ({done.returncode}): {done.stderr[-2000:]}")
    found = re.findall(r"@rusage ([\d.]+) ([\d.]+)", done.stderr)
    writer, workers = (float(found[-1][0]), float(found[-1][1])) if found else (0.0, 0.0)
    return {"wall_s": wall, "writer_cpu_s": writer, "workers_cpu_s": workers,
            "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/interlend-compare-import"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from gateway.backends.embedded.demo import write_demo_marc

    args.scratch.mkdir(parents=True, exist_ok=True)
    marc = args.scratch / f"demo-{args.records}.mrc"
    if not marc.exists():
        write_demo_marc(marc, records=args.records)
    config = args.scratch / "interlend.toml"
    config.write_text((REPO / "config" / "interlend.toml").read_text())
    results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for round_number in range(args.rounds):
        order = ["before", "after"] if round_number % 2 == 0 else ["after", "before"]
        for side in order:
            tree = args.before if side == "before" else args.after
            run = import_once(tree.resolve(), marc, args.scratch / f"{side}.sqlite3", config)
            results[side].append(run)
            print(f"round {round_number + 1} {side:6} {args.records / run['wall_s']:8,.0f}"
                  f" records/s  wall {run['wall_s']:7.1f} s  writer CPU"
                  f" {run['writer_cpu_s']:7.1f} s  workers CPU {run['workers_cpu_s']:7.1f} s"
                  f"  load {run['load']:.1f}", flush=True)
    for key in ("wall_s", "writer_cpu_s", "workers_cpu_s"):
        before = statistics.median(run[key] for run in results["before"])
        after = statistics.median(run[key] for run in results["after"])
        print(f"median {key:14} before {before:8.1f}  after {after:8.1f}"
              f"  after/before {after / before if before else 0:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
