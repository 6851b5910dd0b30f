"""Overload: twice the gateway's measured NCIP capacity, then recovery."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from tests import workflow_fixtures as wf
from tests.robustness.helpers import (
    Z3950Client,
    attacker_address,
    launch,
    metric,
    rss_kib,
    tracebacks,
    wait_until,
)

pytestmark = pytest.mark.slow

ADMITTED_P99_FACTOR = 3.0
"""Admitted requests wait at most behind every other admitted connection: with A connections
admitted and capacity C req/s the queueing bound is A / C seconds. Asserted: p99 under 3x that
plus 100 ms (slack for the load generator sharing the 2 cores), and under 2 s in any case."""
RECOVERED_BOUND = 0.100        # seconds, for a normal request once the load has stopped
MEASURE_SECONDS = 1.5
OVERLOAD_SECONDS = 3.0


def http_request(port: int, body: bytes) -> bytes:
    return (b"POST /ncip HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/xml\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (port, len(body), body))


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def closed_loop(port: int, request: bytes, connections: int, seconds: float) -> int:
    """``connections`` keep-alive clients (one per source address) sending back to back for
    ``seconds``; the number of successful replies."""
    done = 0
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(attacker_address(900 + n), 0))
        while time.monotonic() < deadline:
            status, body = await exchange(reader, writer, request)
            assert status == 200 and wf.problem(body) is None, body[:200]
            done += 1
        writer.close()

    await asyncio.gather(*(client(n) for n in range(connections)))
    return done


async def open_loop(port: int, request: bytes, rate: float, seconds: float, hosts: int,
                    per_host: int) -> dict[str, Any]:
    """Requests scheduled at ``rate`` a second for ``seconds`` (open loop), carried by
    ``hosts`` x ``per_host`` keep-alive connections; what happened to each."""
    total = int(rate * seconds)
    start = time.monotonic() + 0.2
    schedule = [start + i / rate for i in range(total)]
    next_index = itertools.count()
    result: dict[str, Any] = {"latency": [], "status": [], "refused_connections": 0, "lost": 0,
                              "late": []}

    async def connection(host: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(attacker_address(950 + host), 0))
        except OSError:
            result["refused_connections"] += 1
            return
        first = True
        while True:
            i = next(next_index)
            if i >= total:
                break
            delay = schedule[i] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)      # the arrival schedule (open loop)
            sent = time.monotonic()
            try:
                status, _ = await asyncio.wait_for(exchange(reader, writer, request), 30)
            except (asyncio.IncompleteReadError, ConnectionError):
                # closed at once by the per-address connection cap: a refused connection
                if first:
                    result["refused_connections"] += 1
                else:
                    result["lost"] += 1
                return
            first = False
            now = time.monotonic()
            result["status"].append(status)
            if status == 200:
                result["latency"].append(now - sent)
                result["late"].append(now - schedule[i])
        writer.close()

    await asyncio.gather(*(connection(h) for h in range(hosts) for _ in range(per_host)))
    result["scheduled"] = total
    return result


async def one_address_burst(port: int, request: bytes, connections: int,
                            seconds: float) -> list[int]:
    """``connections`` keep-alive clients from one address, back to back; the statuses."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    source = attacker_address(990)

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0))
        while time.monotonic() < deadline:
            status, _ = await exchange(reader, writer, request)
            statuses.append(status)
        writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return statuses


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-int(q * 100) * len(ordered) // 10000) - 1)]


def test_twice_capacity_degrades_gracefully_and_recovers(tmp_path: Path) -> None:
    """Capacity is measured first (8 keep-alive clients sending LookupUser back to back for
    1.5 s). Then 2x that rate is offered for 3 s as an open-loop schedule over 4 source
    addresses x 70 connections (default limits: 50 connections per address, 200 requests a
    second per address). Asserted: the excess is refused, not queued without bound -- 80
    connections over the per-address cap are closed at once (interlend_refused_connections)
    and requests over the per-address rate get 429 (interlend_ncip_rate_limited); admitted
    requests (HTTP 200) have p99 latency under 3 x (admitted connections / capacity) + 0.1 s
    (capped at 2 s; ~0.9 s on the reference machine); no request is lost or answered 5xx;
    the daemon does not crash or log a traceback; afterwards, once the requests in flight
    are done, a normal NCIP request and a Z39.50 search each answer within 100 ms. Finally one
    address sending back to back over 8 connections for 1 s gets 429s beyond its 200/s,
    counted in interlend_ncip_rate_limited and logged ("refused with 429")."""
    daemon = launch(tmp_path)
    try:
        port = daemon.ports["ncip"]
        request = http_request(port, wf.reshare_lookup_user("P100"))
        asyncio.run(closed_loop(port, request, 8, 0.5))                       # warm-up
        done = asyncio.run(closed_loop(port, request, 8, MEASURE_SECONDS))
        capacity = done / MEASURE_SECONDS
        rss_before = rss_kib(daemon.process.pid)
        refused_before = metric(daemon, "interlend_refused_connections_total", listener="ncip")
        limited_before = metric(daemon, "interlend_ncip_rate_limited_total")
        started = time.monotonic()
        result = asyncio.run(open_loop(port, request, 2 * capacity, OVERLOAD_SECONDS,
                                       hosts=4, per_host=70))
        took = time.monotonic() - started
        statuses = result["status"]
        admitted = result["latency"]
        counts = {code: statuses.count(code) for code in sorted(set(statuses))}
        p50, p99 = statistics.median(admitted), percentile(admitted, 99)
        refused = metric(daemon, "interlend_refused_connections_total",
                         listener="ncip") - refused_before
        limited = metric(daemon, "interlend_ncip_rate_limited_total") - limited_before
        print(f"\ncapacity {capacity:.0f} req/s; offered {2 * capacity:.0f} req/s for "
              f"{OVERLOAD_SECONDS}s ({result['scheduled']} requests, took {took:.1f}s): "
              f"{counts}, {result['refused_connections']} connections refused "
              f"(metric {refused:.0f}), {limited:.0f} rate-limited; admitted latency p50 "
              f"{p50 * 1000:.0f} ms p99 {p99 * 1000:.0f} ms max {max(admitted) * 1000:.0f} ms; "
              f"RSS {rss_before} -> {rss_kib(daemon.process.pid)} KiB")
        assert daemon.process.poll() is None
        assert result["lost"] == 0
        assert not any(code >= 500 for code in statuses)
        assert result["refused_connections"] == 80 and refused >= 80
        assert set(counts) <= {200, 429}
        assert counts.get(429, 0) == limited
        assert len(admitted) >= capacity * OVERLOAD_SECONDS * 0.5
        admitted_connections = 4 * 70 - result["refused_connections"]
        bound = min(2.0, ADMITTED_P99_FACTOR * admitted_connections / capacity + 0.1)
        print(f"admitted-latency bound {bound * 1000:.0f} ms")
        assert p99 < bound, f"admitted p99 {p99:.3f}s over the bound {bound:.3f}s"
        wait_until(lambda: metric(daemon, "interlend_ncip_requests_in_flight") == 0, 30,
                   "requests in flight to finish")
        began = time.monotonic()
        status, reply = daemon.post(wf.reshare_lookup_user("P101"))
        ncip_latency = time.monotonic() - began
        assert status == 200 and wf.problem(reply) is None
        client = Z3950Client(daemon.ports["z3950"])
        began = time.monotonic()
        assert client.search("pattern") == 1
        z_latency = time.monotonic() - began
        client.close()
        print(f"after the load: NCIP {ncip_latency * 1000:.1f} ms, Z39.50 search "
              f"{z_latency * 1000:.1f} ms")
        assert ncip_latency < RECOVERED_BOUND and z_latency < RECOVERED_BOUND
        assert not tracebacks(daemon)
        assert any("refused" in line for line in daemon.lines)
        # one address over its request rate (200/s by default): 429s, counted and logged
        limited_before = metric(daemon, "interlend_ncip_rate_limited_total")
        statuses = asyncio.run(one_address_burst(port, request, 8, 1.0))
        limited = metric(daemon, "interlend_ncip_rate_limited_total") - limited_before
        print(f"one address, 8 connections back to back for 1 s: "
              f"{ {c: statuses.count(c) for c in set(statuses)} }")
        assert statuses.count(429) > 0 and statuses.count(429) == limited
        assert set(statuses) <= {200, 429}
        assert any("refused with 429" in line for line in daemon.lines)
    finally:
        daemon.kill()
