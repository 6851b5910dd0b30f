"""Memory and start-up: time from process start to READY=1 (caught on our own NOTIFY_SOCKET, a
datagram socket), and the daemon's memory (the primary and its workers) idle, then with N idle
Z39.50 associations (Init done) and M idle NCIP keep-alive connections (one LookupUser answered
on each) held open.

Memory is given three ways, over every process in the tree: RSS summed (``smaps_rollup``),
which counts a page shared by the primary and its workers once per process; PSS summed, which
divides each shared page between all the processes on the machine that map it (so it falls
when other Python processes run: the bench machine is shared); and the tree's unique resident
pages (``/proc/PID/pagemap``, each physical page once however many of the tree's processes
map it): what the daemon really holds in memory, the same on a busy machine as on a quiet
one. The target is judged on the unique figure (on PSS where page frames cannot be read);
RSS and PSS stay in the report.

``python -m bench.memory BEFORE_TREE AFTER_TREE --database DB [--rounds N]``: the same
measure for two source trees, alternated, on one database (a same-run before/after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import servers
from bench.ncip_load import lookup_user_body
from bench.z3950_load import LoadError, _connect, build_requests, check_init

LOOPBACK = "127.0.0.1"
_WORKER_READY = re.compile(r"worker \d+ \(pid \d+\) ready")


def start_with_ready(workdir: Path, database: Path, timeout: float = 120.0,
                     repo: Path | None = None) -> tuple[servers.Managed, float | None]:
    """Start the gateway with NOTIFY_SOCKET; return it and seconds from spawn to READY=1."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "notify.sock"
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.5)
    try:
        t0 = time.perf_counter()
        gateway = servers.start_gateway(workdir, database, env={"NOTIFY_SOCKET": str(path)},
                                        wait=False, repo=repo)
        t0 = gateway.started_at or t0
        ready: float | None = None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline and gateway.alive():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            if b"READY=1" in data.split(b"\n"):
                ready = time.perf_counter() - t0
                break
        gateway.wait_for(r"ncip listening on", timeout=30)
        gateway.wait_for(r"z3950 listening on", timeout=5)
        gateway.port = gateway.ports["z3950"]
        return gateway, ready
    finally:
        sock.close()
        path.unlink(missing_ok=True)


async def _hold(z_port: int, n_port: int, associations: int, ncip: int, memory: Any,
                settle: float) -> dict[str, Any]:
    reqs = build_requests("river")
    z_conns = []
    z_failed = 0
    z_errors: list[str] = []

    async def open_assoc() -> None:
        nonlocal z_failed
        try:
            conn = await _connect(LOOPBACK, z_port, 20)
            z_conns.append(conn)
            frame = await conn.request(reqs.init, 20)
            if frame is None:
                raise LoadError("closed after Init")
            check_init(frame)
        except (TimeoutError, LoadError, OSError) as exc:
            z_failed += 1
            if len(z_errors) < 3:
                z_errors.append(f"{type(exc).__name__}: {exc}")

    for start in range(0, associations, 100):  # 100 at a time, under any listen backlog
        await asyncio.gather(*(open_assoc() for _ in range(start, min(associations,
                                                                       start + 100))))
    body = lookup_user_body().encode("utf-8")
    request = (f"POST /ncip HTTP/1.1\r\nHost: 127.0.0.1:{n_port}\r\n"
               "Content-Type: application/xml; charset=utf-8\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body
    writers = []
    n_failed = 0

    async def open_ncip() -> None:
        nonlocal n_failed
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(LOOPBACK, n_port), 20)
            writers.append(writer)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await asyncio.wait_for(reader.readexactly(length), 20)
            if not head.startswith(b"HTTP/1.1 200"):
                raise LoadError(head.split(b"\r\n")[0].decode())
        except (TimeoutError, LoadError, OSError, asyncio.IncompleteReadError):
            n_failed += 1

    for start in range(0, ncip, 50):
        await asyncio.gather(*(open_ncip() for _ in range(start, min(ncip, start + 50))))
    await asyncio.sleep(settle)
    open_z = sum(1 for c in z_conns if not c.closed)
    loaded = memory()
    for conn in z_conns:
        conn.abort()
    for writer in writers:
        writer.transport.abort()
    return {"associations_requested": associations, "associations_open": open_z,
            "associations_failed": z_failed, "association_errors": z_errors,
            "ncip_requested": ncip, "ncip_open": len(writers) - n_failed,
            "ncip_failed": n_failed, "rss_loaded_kib": loaded["rss"],
            "pss_loaded_kib": loaded["pss"], "uss_loaded_kib": loaded["uss"],
            "unique_loaded_kib": loaded["unique"],
            "processes_loaded": loaded["processes"]}


def wait_workers_ready(gateway: servers.Managed, timeout: float = 60.0) -> None:
    """Wait until every worker the primary started says it is ready (a worker still importing
    would be measured half-grown), judged from the primary's log lines."""
    wanted = servers.bench_workers()
    deadline = time.perf_counter() + timeout
    while wanted > 1 and time.perf_counter() < deadline:
        if sum(1 for line in list(gateway.lines) if _WORKER_READY.search(line)) >= wanted:
            return
        time.sleep(0.1)


def measure(workdir: Path, database: Path, *, associations: int = 1000, ncip: int = 100,
            settle: float = 2.0, repo: Path | None = None) -> dict[str, Any]:
    """READY time, idle memory, memory with the connections held; stops the daemon
    afterwards."""
    servers.raise_fd_limit(associations + ncip + 2048)
    gateway, ready = start_with_ready(workdir, database, repo=repo)
    try:
        wait_workers_ready(gateway)
        time.sleep(0.5)
        idle = gateway.memory_kib()
        result = asyncio.run(_hold(gateway.ports["z3950"], gateway.ports["ncip"], associations,
                                   ncip, gateway.memory_kib, settle))
        status = Path(f"/proc/{gateway.pid}/status").read_text()
        hwm = next((int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("VmHWM:")), 0)
        result.update({"ready_s": round(ready, 3) if ready is not None else None,
                       "rss_idle_kib": idle["rss"], "pss_idle_kib": idle["pss"],
                       "uss_idle_kib": idle["uss"], "unique_idle_kib": idle["unique"],
                       "processes_idle": idle["processes"],
                       "rss_peak_kib": hwm, "pid": gateway.pid,
                       "database": str(database), "database_bytes": os.path.getsize(database)})
        return result
    finally:
        gateway.stop()


KEYS = ("unique_idle_kib", "pss_idle_kib", "uss_idle_kib", "rss_idle_kib", "unique_loaded_kib",
        "pss_loaded_kib", "uss_loaded_kib", "rss_loaded_kib")


def _per_process(processes: list[dict[str, int]]) -> list[tuple[int, int, int]]:
    return [(p["rss"], p["pss"], p["uss"]) for p in processes]


def compare(before: Path, after: Path, database: Path, rounds: int, scratch: Path,
            associations: int, ncip: int) -> dict[str, Any]:
    """:func:`measure` for two trees, alternated (before first in odd rounds); medians."""
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for number in range(rounds):
        order = [("before", before), ("after", after)]
        if number % 2:
            order.reverse()
        for name, tree in order:
            data = measure(scratch / f"{name}-{number}", database, associations=associations,
                           ncip=ncip, repo=tree)
            runs[name].append(data)
            print(f"round {number + 1} {name}: loaded unique {data['unique_loaded_kib']} KiB, "
                  f"RSS {data['rss_loaded_kib']:,} KiB, PSS "
                  f"{data['pss_loaded_kib']:,} KiB, USS {data['uss_loaded_kib']:,} KiB; idle RSS "
                  f"{data['rss_idle_kib']:,}, PSS {data['pss_idle_kib']:,}; per process "
                  f"(rss/pss/uss) {_per_process(data['processes_loaded'])};"
                  f" READY {data['ready_s']} s; open {data['associations_open']}/"
                  f"{data['ncip_open']}", flush=True)
    summary: dict[str, Any] = {}
    for name, data_list in runs.items():
        summary[name] = {key: statistics.median(d[key] for d in data_list)
                         for key in KEYS if all(d.get(key) is not None for d in data_list)}
    return {"rounds": rounds, "database": str(database), **summary,
            "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--database", type=Path, required=True,
                        help="a catalogue (e.g. built by bench.scale.build_catalogue)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--associations", type=int, default=1000)
    parser.add_argument("--ncip", type=int, default=100)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/interlend-bench-memory"))
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    try:
        result = compare(args.before.resolve(), args.after.resolve(), args.database,
                         args.rounds, args.scratch, args.associations, args.ncip)
    finally:
        servers.stop_all()
    for key in KEYS:
        if key not in result["before"] or key not in result["after"]:
            continue
        b, a = result["before"][key], result["after"][key]
        print(f"{key}: before {b / 1024:.1f} MiB, after {a / 1024:.1f} MiB ({a / b:.3f}x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
