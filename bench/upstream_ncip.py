"""``python -m bench.upstream_ncip [--requests N] [--concurrency C] [--lms-delay MS]``:
LookupUser and AcceptItem through Interlend to an upstream Interlend (circulation ``ncip``,
profile ``generic-ncip2``), against the upstream directly, in the same run.

Both daemons run on 127.0.0.1 from a scratch directory (the workflow test seed and
configuration); the same ReShare-style bodies go to both (AcceptItem with a unique RequestId per
request, so each one makes a real temporary item upstream). Printed: requests/s, p50/p95/max
latency for each path, the ratio through/direct, and the CPU each daemon spent per request on
the through path (``/proc/PID/stat``: the figure that survives a busy machine). Every reply is
checked for a Problem. ``--lms-delay`` puts a proxy between the gateway and the upstream that
holds each answer that long (an LMS across a network; the direct path is not delayed): state-
changing calls then show whether the gateway serialises them behind the LMS.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.compare_trees import cpu
from tests import workflow_fixtures as wf
from tests.daemon import Daemon, start_daemon

# the per-address caps lifted on both daemons, as the bench does for the gateway (every bench
# client is 127.0.0.1; 0 turns a rate limit off)
LIFTED = wf.CONFIG.replace('[ncip]\npath = "/ncip"\n', '[ncip]\npath = "/ncip"\n'
                           "max_connections_per_peer = 4000\nmax_connection_rate_per_peer = 0\n"
                           "max_requests_per_second_per_peer = 0\n", 1)


def _config(url: str) -> str:
    return LIFTED + f"""
[backend]
kind = "embedded"
circulation = "ncip"

[backend.ncip]
url = "{url}"
profile = "generic-ncip2"
from_agency = "01XXX_INST"
to_agency = "{wf.AGENCY}"
timeout = 10
max_in_flight = 8
"""


class _DelayProxy:
    """Forwards POSTs to ``target`` and holds each answer ``delay`` seconds (threads: the calls
    overlap as they would at a real LMS)."""

    def __init__(self, target: str, delay: float) -> None:
        import http.server
        import threading

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = urllib.request.Request(target, data=body, method="POST",
                                                 headers={"Content-Type": "application/xml"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, data = response.status, response.read()
                time.sleep(proxy.delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.delay = delay
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _post(url: str, body: bytes) -> float:
    started = time.perf_counter()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/xml"})
    with urllib.request.urlopen(request, timeout=30) as response:
        reply = response.read()
    if response.status != 200 or b"Problem>" in reply:
        raise RuntimeError(f"unexpected reply: {reply[:400]!r}")
    return time.perf_counter() - started


def _run(url: str, bodies: list[bytes], concurrency: int) -> dict[str, float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(pool.map(lambda b: _post(url, b), bodies))
    elapsed = time.perf_counter() - started
    return {"rps": len(bodies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
            "max_ms": latencies[-1] * 1000}


def measure(requests: int = 200, concurrency: int = 4, lms_delay_ms: float = 0.0
            ) -> dict[str, dict[str, Any]]:
    """Per service: the figures of each path (``direct``, ``through``), their ratio
    (throughput through / direct), the extra p50 latency and the CPU per request each daemon
    spent on the through path, from one run of both daemons."""
    out: dict[str, dict[str, Any]] = {}
    delay: _DelayProxy | None = None
    with tempfile.TemporaryDirectory(prefix="interlend-bench-up-") as scratch:
        base = Path(scratch)
        daemons: list[Daemon] = []
        try:
            (base / "lms").mkdir()
            wf.seed_database(base / "lms" / "interlend.sqlite3")
            lms = start_daemon(base / "lms", LIFTED)
            daemons.append(lms)
            (base / "gw").mkdir()
            wf.seed_database(base / "gw" / "interlend.sqlite3")
            upstream_url = lms.base_url + "/ncip"
            if lms_delay_ms > 0:
                delay = _DelayProxy(upstream_url, lms_delay_ms / 1000)
                upstream_url = delay.url
            gateway = start_daemon(base / "gw", _config(upstream_url))
            daemons.append(gateway)
            paths = {"direct": lms.base_url + "/ncip", "through": gateway.base_url + "/ncip"}
            n, c = requests, concurrency
            bodies: dict[str, Callable[[str], list[bytes]]] = {
                "LookupUser": lambda tag: [wf.reshare_lookup_user("P100")] * n,
                "AcceptItem": lambda tag: [
                    wf.reshare_accept_item(f"BENCH-{tag}-{i}", "P100",
                                           barcode=f"BENCH-{tag}-{i}-V") for i in range(n)],
            }
            for service, make in bodies.items():
                for path in paths:  # one warm-up call per path
                    _post(paths[path], make(f"warm-{path}")[0])
                figures = {"direct": _run(paths["direct"], make("direct"), c)}
                before = cpu(gateway.process.pid), cpu(lms.process.pid)
                figures["through"] = _run(paths["through"], make("through"), c)
                spent = (cpu(gateway.process.pid) - before[0], cpu(lms.process.pid) - before[1])
                out[service] = {
                    **figures,
                    "ratio": figures["through"]["rps"] / figures["direct"]["rps"],
                    "extra_p50_ms": figures["through"]["p50_ms"] - figures["direct"]["p50_ms"],
                    "gateway_cpu_ms": spent[0] / n * 1000,
                    "upstream_cpu_ms": spent[1] / n * 1000}
        finally:
            for d in daemons:
                d.kill()
            if delay is not None:
                delay.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lms-delay", type=float, default=0.0,
                        help="ms the upstream's answers are held on the through path")
    args = parser.parse_args(argv)
    figures = measure(args.requests, args.concurrency, args.lms_delay)
    held = f", its answers held {args.lms_delay:g} ms" if args.lms_delay > 0 else ""
    print(f"{args.requests} requests per run, {args.concurrency} concurrent; Interlend -> "
          f"upstream Interlend (generic-ncip2{held}) against the upstream directly")
    print(f"{'service':<12} {'path':<8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}"
          f" {'max ms':>8}")
    for service, f in figures.items():
        for path in ("direct", "through"):
            p = f[path]
            print(f"{service:<12} {path:<8} {p['rps']:>8.1f} {p['p50_ms']:>8.1f}"
                  f" {p['p95_ms']:>8.1f} {p['max_ms']:>8.1f}")
        print(f"{service:<12} ratio    through/direct throughput {f['ratio']:.2f}, "
              f"p50 +{f['extra_p50_ms']:.1f} ms")
        print(f"{service:<12} cpu      through: gateway {f['gateway_cpu_ms']:.2f} ms/op,"
              f" upstream {f['upstream_cpu_ms']:.2f} ms/op")
    return 0


if __name__ == "__main__":
    sys.exit(main())
