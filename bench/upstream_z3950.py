"""``python -m bench.upstream_z3950``: a Z39.50 cycle through Interlend to Koha's Zebra against
the same cycle on Zebra directly, in the same run.

Koha's Zebra (``../shared/lms/koha-zebra``, run in place, its sample records) and the gateway
with ``[backend] catalogue = "z3950"`` in front of it are started on loopback. Each client runs
cycles (connect, Init, Search, Present one USMARC record, Close) and, separately, kept-open
associations (Search + Present), at 1 and 8 clients; the gateway's rate is given as a ratio of
Zebra's direct rate measured in the same run (target: >= 0.8 at 8 clients, where the gateway
reuses its pooled upstream associations while each direct cycle makes Zebra open a session).
Prints a table and, with ``--json``, the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import servers
from bench.z3950_load import build_requests, run_load, verify_cycle

KOHA_ZEBRA = Path("/work/shared/lms/koha-zebra")
QUERY = ("library", 1016)   # Any: 13 of Koha's 30 sample records


def gateway_config(zebra_port: int, pool_size: int) -> str:
    """The bench configuration with the catalogue from Koha's Zebra."""
    text = servers.bench_config()
    text = text.replace('[backend]\nkind = "embedded"\n',
                        '[backend]\nkind = "embedded"\ncatalogue = "z3950"\n', 1)
    return text + (f'\n[backend.z3950]\nhost = "{servers.LOOPBACK}"\nport = {zebra_port}\n'
                   f'database = "biblios"\npool_size = {pool_size}\n')


def start_koha_zebra(workdir: Path) -> tuple[int, Path]:
    """Koha's Zebra on a free loopback port (its own recipe, run in place)."""
    script = KOHA_ZEBRA / "setup-and-run.sh"
    if not script.is_file():
        raise SystemExit(f"{script} not found")
    port = servers.free_port()
    done = subprocess.run(["bash", str(script), str(workdir), str(port)], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"koha-zebra did not start: {done.stderr[-2000:]}")
    return port, workdir


def measure(port: int, database: str, clients: int, seconds: float, keepalive: bool
            ) -> dict[str, Any]:
    reqs = build_requests(QUERY[0], use=QUERY[1], syntax="usmarc", database=database)
    result = run_load(port, reqs, concurrency=clients, max_cycles=10**7, max_seconds=seconds,
                      keepalive=keepalive)
    return {**result.summary(), "rate": result.rate}


def run(seconds: float = 5.0, clients: tuple[int, ...] = (1, 8), pool_size: int = 8
        ) -> list[dict[str, Any]]:
    """Koha's Zebra and the gateway in front of it, measured side by side: one row per mode
    (cycle, kept-open) and client count, with the ratio gateway / Zebra."""
    servers.raise_fd_limit()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="interlend-bench-upstream-") as scratch:
        tmp = Path(scratch)
        zebra_port, zebra_dir = start_koha_zebra(tmp / "zebra")
        try:
            gateway = servers.start_gateway(tmp / "gateway", tmp / "interlend.sqlite3",
                                            config_text=gateway_config(zebra_port, pool_size))
            try:
                direct = verify_cycle(zebra_port, build_requests(
                    QUERY[0], use=QUERY[1], syntax="usmarc", database="biblios"))
                through = verify_cycle(gateway.port, build_requests(
                    QUERY[0], use=QUERY[1], syntax="usmarc", database="Default"))
                if direct["hits"] != through["hits"] or not direct["hits"]:
                    raise SystemExit(f"hit counts differ: Zebra {direct} gateway {through}")
                for keepalive in (False, True):
                    for n in clients:
                        zebra = measure(zebra_port, "biblios", n, seconds, keepalive)
                        ours = measure(gateway.port, "Default", n, seconds, keepalive)
                        rows.append({
                            "mode": "kept-open" if keepalive else "cycle", "clients": n,
                            "zebra_rate": round(zebra["rate"], 1),
                            "gateway_rate": round(ours["rate"], 1),
                            "ratio": round(ours["rate"] / zebra["rate"], 3)
                            if zebra["rate"] else None,
                            "zebra_p50_ms": zebra.get("p50_ms"),
                            "gateway_p50_ms": ours.get("p50_ms"),
                            "errors": zebra["errors"] + ours["errors"]})
            finally:
                gateway.stop()
        finally:
            subprocess.run(["bash", str(KOHA_ZEBRA / "stop.sh"), str(zebra_dir)],
                           capture_output=True, timeout=60)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream_z3950")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--pool-size", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args.seconds, tuple(int(c) for c in args.clients.split(",")), args.pool_size)
    print(f"Z39.50 {QUERY[0]!r} (1={QUERY[1]}) search + present 1 USMARC; "
          f"{args.seconds:g} s each; pool_size {args.pool_size}")
    print(f"{'mode':10} {'clients':>7} {'zebra/s':>9} {'gateway/s':>10} {'ratio':>6} "
          f"{'zebra p50':>10} {'gw p50':>8} {'errors':>6}")
    for row in rows:
        print(f"{row['mode']:10} {row['clients']:7d} {row['zebra_rate']:9.1f} "
              f"{row['gateway_rate']:10.1f} {row['ratio'] or 0:6.2f} "
              f"{row['zebra_p50_ms'] or 0:10.2f} {row['gateway_p50_ms'] or 0:8.2f} "
              f"{row['errors']:6d}")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
