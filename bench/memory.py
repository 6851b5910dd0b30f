"""Memory and start-up: time from process start to READY=1 (caught on our own NOTIFY_SOCKET, a
datagram socket), and the daemon's resident memory (VmRSS from /proc/PID/status) idle, then with
N idle Z39.50 associations (Init done) and M idle NCIP keep-alive connections (one LookupUser
answered on each) held open.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

from bench import servers
from bench.ncip_load import lookup_user_body
from bench.z3950_load import LoadError, _connect, build_requests, check_init

LOOPBACK = "127.0.0.1"


def start_with_ready(workdir: Path, database: Path, timeout: float = 120.0,
                     ) -> tuple[servers.Managed, float | None]:
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
                                        wait=False)
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


async def _hold(z_port: int, n_port: int, associations: int, ncip: int, rss: Any,
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
    loaded = rss()
    for conn in z_conns:
        conn.abort()
    for writer in writers:
        writer.transport.abort()
    return {"associations_requested": associations, "associations_open": open_z,
            "associations_failed": z_failed, "association_errors": z_errors,
            "ncip_requested": ncip, "ncip_open": len(writers) - n_failed,
            "ncip_failed": n_failed, "rss_loaded_kib": loaded}


def measure(workdir: Path, database: Path, *, associations: int = 1000, ncip: int = 100,
            settle: float = 2.0) -> dict[str, Any]:
    """READY time, idle RSS, RSS with the connections held; stops the daemon afterwards."""
    servers.raise_fd_limit(associations + ncip + 2048)
    gateway, ready = start_with_ready(workdir, database)
    try:
        time.sleep(0.5)
        idle = gateway.rss_kib()
        result = asyncio.run(_hold(gateway.ports["z3950"], gateway.ports["ncip"], associations,
                                   ncip, gateway.rss_kib, settle))
        status = Path(f"/proc/{gateway.pid}/status").read_text()
        hwm = next((int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("VmHWM:")), 0)
        result.update({"ready_s": round(ready, 3) if ready is not None else None,
                       "rss_idle_kib": idle, "rss_peak_kib": hwm, "pid": gateway.pid,
                       "database": str(database), "database_bytes": os.path.getsize(database)})
        return result
    finally:
        gateway.stop()
