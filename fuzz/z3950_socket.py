"""Socket fuzzer: random and mutated Z39.50 PDUs against a running Interlend daemon.

Each connection sends (usually) a valid Init, then a few random or mutated PDUs seeded from the
captured sessions and the codec, half-closes and reads until the daemon closes. Afterwards a
normal yaz-client session must succeed and the daemon's RSS must be back within 10% of where it
started (after a warm-up). :func:`blast` is shared with tests/robustness/test_fuzz_socket.py.

Usage (see fuzz/README.md):
    python fuzz/z3950_socket.py --pdus 100000                 # starts its own daemon
    python fuzz/z3950_socket.py --port 2100 --pid 1234 --pdus 100000   # an existing one
"""

from __future__ import annotations

import argparse
import random
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.seeds import all_seeds, mutate  # noqa: E402
from protocols.z3950 import client, codec  # noqa: E402

INIT = codec.encode_pdu(client.init_request())


@dataclass
class BlastResult:
    pdus: int = 0
    connections: int = 0
    replies_bytes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _one_connection(port: int, rng: random.Random, seeds: list[bytes], per_connection: int,
                    result: BlastResult, lock: threading.Lock) -> None:
    chunks: list[bytes] = []
    if rng.random() < 0.7:
        chunks.append(INIT)
    for _ in range(per_connection):
        roll = rng.random()
        if roll < 0.1:
            chunks.append(rng.randbytes(rng.randint(1, 200)))
        elif roll < 0.25:
            chunks.append(rng.choice(seeds))          # valid PDUs too: real operations run
        else:
            data = rng.choice(seeds)
            for _ in range(rng.randint(1, 3)):
                data = mutate(data, rng, seeds)
            chunks.append(data)
    received = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"".join(chunks))
            sock.shutdown(socket.SHUT_WR)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                received += len(data)
        error = None
    except OSError as e:  # reset by the daemon after a protocol error: expected
        error = type(e).__name__
    with lock:
        result.connections += 1
        result.pdus += len(chunks)
        result.replies_bytes += received
        if error:
            result.errors[error] = result.errors.get(error, 0) + 1


def blast(port: int, pdus: int, *, seed: int = 1, threads: int = 4, per_connection: int = 8,
          seconds: float = 600.0, seeds: list[bytes] | None = None) -> BlastResult:
    """Send about ``pdus`` PDUs over many connections from ``threads`` threads, bounded by
    ``seconds``; return what was sent."""
    seeds = seeds or all_seeds()
    result = BlastResult()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        while time.monotonic() < deadline:
            with lock:
                if result.pdus >= pdus:
                    return
            _one_connection(port, rng, seeds, per_connection, result, lock)

    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()) + 15)
    result.seconds = time.monotonic() - started
    return result


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


FUZZ_LIMITS = """
[z3950]
max_connections_per_peer = 200
max_connection_rate_per_peer = 100000.0
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pdus", type=int, default=100_000)
    parser.add_argument("--port", type=int)
    parser.add_argument("--pid", type=int)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=60_000)
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    daemon = None
    if args.port is None:
        from tests import workflow_fixtures as wf
        from tests.daemon import start_daemon

        tmp = Path(tempfile.mkdtemp(prefix="interlend-fuzz-"))
        wf.seed_database(tmp / "interlend.sqlite3")
        daemon = start_daemon(tmp, wf.CONFIG + FUZZ_LIMITS)
        port, pid = daemon.ports["z3950"], daemon.process.pid
    else:
        port, pid = args.port, args.pid
    try:
        # warm-up: SQLite page caches, the WAL index and the audit table grow to a plateau over
        # the first ~60,000 PDUs (measured: +12 MB, then < 1 MB per further 20,000)
        blast(port, args.warmup, seed=args.seed + 99, threads=args.threads, seconds=600)
        before = rss_kib(pid) if pid else None
        result = blast(port, args.pdus, seed=args.seed, threads=args.threads,
                       seconds=args.seconds)
        after = rss_kib(pid) if pid else None
        print(f"pdus={result.pdus} connections={result.connections} "
              f"seconds={result.seconds:.1f} rate={result.pdus / result.seconds:.0f}/s "
              f"client_errors={result.errors}")
        ok = True
        if before and after is not None:
            growth = 100 * (after - before) / before
            print(f"rss_kib before={before} after={after} growth={growth:.1f}%")
            ok = after <= before * 1.10
        if daemon is not None:
            alive = daemon.process.poll() is None
            tracebacks = [line for line in daemon.lines if "Traceback" in line]
            print(f"daemon alive={alive} traceback_lines={len(tracebacks)}")
            ok = ok and alive and not tracebacks
        import shutil
        import subprocess
        if shutil.which("yaz-client"):
            script = Path(tempfile.mkdtemp()) / "s.txt"
            script.write_text(f"open tcp:127.0.0.1:{port}/Default\nfind @attr 1=4 pattern\n"
                              "show 1\nclose\nquit\n")
            out = subprocess.run(["yaz-client", "-f", str(script)], capture_output=True,
                                 text=True, timeout=60, stdin=subprocess.DEVNULL).stdout
            hits = "Number of hits: 1" in out
            print(f"yaz-client session after fuzzing: {'ok' if hits else 'FAILED'}")
            ok = ok and hits
        return 0 if ok else 1
    finally:
        if daemon is not None:
            daemon.kill()


if __name__ == "__main__":
    sys.exit(main())
