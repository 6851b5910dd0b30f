"""``python -m bench.upstream_sru [--seconds S] [--conc 1,8]``: a Z39.50 cycle through
Interlend with the SRU upstream (Koha's Zebra over SRU) against the same cycle on Zebra
directly, in the same run.

A cycle is Init, Search (``@attr 1=4 TERM``), Present of one USMARC record, Close (Koha's Zebra
refuses OPAC; Interlend renders its holdings from the 952 items it read). Prints one line per
target and concurrency (cycles/s, p50/p95 ms) and the ratio through/direct. Starts
``../shared/lms/koha-zebra`` in a scratch directory and stops it, and the gateway, at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import servers
from bench.z3950_load import build_requests, run_load, verify_cycle

REPO = Path(__file__).resolve().parents[1]
KOHA_ZEBRA = REPO.parent / "shared" / "lms" / "koha-zebra"


def sru_config(port: int) -> str:
    """The bench configuration with the catalogue from Zebra's SRU service."""
    text = servers.bench_config()
    table = (f'[backend.sru]\nbase_url = "http://127.0.0.1:{port}/biblios"\n'
             'profile = "koha"\nmax_in_flight = 16\nmax_connections = 16\n')
    return text.replace('[backend]\nkind = "embedded"\n',
                        f'[backend]\nkind = "embedded"\ncatalogue = "sru"\n\n{table}')


def run(seconds: float = 5.0, cycles: int = 5000, conc: tuple[int, ...] = (1, 8),
        term: str = "history", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Koha's Zebra, and the gateway reading it over SRU, measured side by side: per client
    count the cycle rate of each and the ratio through / direct."""
    out: dict[str, Any] = {"term": term, "rows": []}
    with tempfile.TemporaryDirectory(prefix="bench-sru-") as scratch:
        work, zport = Path(scratch) / "zebra", servers.free_port()
        subprocess.run(["bash", str(KOHA_ZEBRA / "setup-and-run.sh"), str(work), str(zport)],
                       check=True, capture_output=True, timeout=300)
        gateway = None
        try:
            gateway = servers.start_gateway(Path(scratch) / "gw", Path(scratch) / "gw.sqlite3",
                                            config_text=sru_config(zport))
            through = build_requests(term, syntax="usmarc", database="Default")
            direct = build_requests(term, syntax="usmarc", database="biblios")
            out["check"] = [verify_cycle(gateway.port, through), verify_cycle(zport, direct)]
            log(f"check: {out['check']}")
            for clients in conc:
                results = {}
                for name, port, reqs in (("zebra direct", zport, direct),
                                         ("interlend -> sru -> zebra", gateway.port, through)):
                    result = run_load(port, reqs, concurrency=clients, max_cycles=cycles,
                                      max_seconds=seconds)
                    results[name] = result
                    log(f"{name:28} conc {clients:3}: {result.rate:8.1f} cycles/s  "
                        f"p50 {result.percentile(50):7.2f} ms  p95 "
                        f"{result.percentile(95):7.2f} ms  errors {result.errors}")
                ratio = results["interlend -> sru -> zebra"].rate / max(
                    results["zebra direct"].rate, 1e-9)
                log(f"ratio through/direct at conc {clients}: {ratio:.2f}x")
                out["rows"].append({
                    "clients": clients, "zebra_rate": round(results["zebra direct"].rate, 1),
                    "gateway_rate": round(results["interlend -> sru -> zebra"].rate, 1),
                    "ratio": round(ratio, 3),
                    "errors": sum(r.errors for r in results.values())})
        finally:
            if gateway is not None:
                gateway.stop()
            subprocess.run(["bash", str(KOHA_ZEBRA / "stop.sh"), str(work)],
                           capture_output=True, timeout=60)
    return out


def available() -> bool:
    """Koha's Zebra recipe and zebrasrv are both here."""
    return (KOHA_ZEBRA / "setup-and-run.sh").is_file() and servers.have("zebrasrv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cycles", type=int, default=5000)
    parser.add_argument("--conc", default="1,8")
    parser.add_argument("--term", default="history")
    args = parser.parse_args(argv)
    if not available():
        print("needs ../shared/lms/koha-zebra and zebrasrv (Debian idzebra-2.0)")
        return 2
    run(args.seconds, args.cycles, tuple(int(c) for c in args.conc.split(",")), args.term)
    return 0


if __name__ == "__main__":
    sys.exit(main())
