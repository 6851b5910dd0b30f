"""The Z39.50 load client: asyncio, loopback only, bounded in count and time.

A *cycle* (``docs/z3950.md`` section 12) on a fresh TCP connection: connect, InitRequest (v1-v3,
1 MiB message sizes), SearchRequest (``@attr 1=4 <term>``, no piggy-backed records:
smallSetUpperBound 0, largeSetLowerBound 1, mediumSetPresentNumber 0), PresentRequest of one
record (OPAC by default), Close(finished), wait for the server's Close (or EOF), close the socket.
The *kept-open* variant opens one association per worker and repeats Search + Present.

Requests are built once with the project's codec (:mod:`protocols.z3950.codec`) and sent as
pre-encoded bytes; responses are cut with :class:`protocols.z3950.ber.BERFramer` and checked
with a small TLV reader (PDU type, searchStatus/resultCount, numberOfRecordsReturned, records
present) so the client spends as little CPU as possible on the shared cores.
:func:`verify_cycle` decodes one whole cycle with pyasn1 (:func:`decode_pdu`) as a correctness
check before a run.

Run alone: ``python -m bench.z3950_load --port 9999 --concurrency 8 --cycles 2000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocols.z3950 import oids
from protocols.z3950.ber import BERFramer
from protocols.z3950.client import (
    init_request,
    present_request,
    read_diagnostics,
    read_records,
    search_request,
)
from protocols.z3950.codec import close, decode_pdu, encode_pdu, pdu_arm, pdu_body

LOOPBACK = "127.0.0.1"
OPTIONS = ("search", "present", "delSet", "scan", "sort", "namedResultSets")

# PDU tags as the first two octets of a frame: [n] IMPLICIT SEQUENCE, context class, constructed.
TAG_INIT_RESPONSE = 21
TAG_SEARCH_RESPONSE = 23
TAG_PRESENT_RESPONSE = 25
TAG_CLOSE = 48

class LoadError(Exception):
    """A cycle failed: wrong PDU, zero hits, no record, a diagnostic, a timeout."""


# -- a small BER TLV reader -----------------------------------------------------------------------

def _tlv(buf: bytes, pos: int) -> tuple[int, int, bool, int, int]:
    """(tag class, tag number, constructed, value start, value end) of the TLV at ``pos``.

    Definite lengths only (BERFramer rewrites indefinite ones).
    """
    first = buf[pos]
    cls = first >> 6
    constructed = bool(first & 0x20)
    number = first & 0x1F
    pos += 1
    if number == 0x1F:
        number = 0
        while True:
            octet = buf[pos]
            pos += 1
            number = (number << 7) | (octet & 0x7F)
            if not octet & 0x80:
                break
    length = buf[pos]
    pos += 1
    if length & 0x80:
        count = length & 0x7F
        if count == 0:
            raise LoadError("indefinite length in a framed PDU")
        length = int.from_bytes(buf[pos:pos + count], "big")
        pos += count
    return cls, number, constructed, pos, pos + length


def pdu_fields(frame: bytes) -> tuple[int, dict[int, tuple[int, int, bool]]]:
    """The PDU's tag number and its top-level context-tagged fields: tag -> (start, end, cons)."""
    cls, number, _c, start, end = _tlv(frame, 0)
    fields: dict[int, tuple[int, int, bool]] = {}
    pos = start
    while pos < end:
        fcls, fnum, fcons, vstart, vend = _tlv(frame, pos)
        if fcls == 2:
            fields[fnum] = (vstart, vend, fcons)
        pos = vend
    return number, fields


def _int(frame: bytes, span: tuple[int, int, bool]) -> int:
    return int.from_bytes(frame[span[0]:span[1]], "big", signed=True)


def check_init(frame: bytes) -> None:
    tag, fields = pdu_fields(frame)
    if tag != TAG_INIT_RESPONSE:
        raise LoadError(f"expected InitResponse, got PDU tag {tag}")
    result = fields.get(12)
    if result is None or frame[result[0]] == 0:
        raise LoadError("Init refused")


def check_search(frame: bytes) -> int:
    tag, fields = pdu_fields(frame)
    if tag != TAG_SEARCH_RESPONSE:
        raise LoadError(f"expected SearchResponse, got PDU tag {tag}")
    status = fields.get(22)
    if status is None or frame[status[0]] == 0:
        raise LoadError("search failed (searchStatus false)")
    hits = _int(frame, fields[23]) if 23 in fields else 0
    if hits <= 0:
        raise LoadError("zero hits")
    return hits


def check_present(frame: bytes) -> int:
    tag, fields = pdu_fields(frame)
    if tag != TAG_PRESENT_RESPONSE:
        raise LoadError(f"expected PresentResponse, got PDU tag {tag}")
    returned = _int(frame, fields[24]) if 24 in fields else 0
    if returned < 1 or 28 not in fields:  # [28] responseRecords
        raise LoadError("no record returned")
    # a surrogate diagnostic instead of the record is [2] inside NamePlusRecord's record [1]
    return len(frame)


# -- requests -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Requests:
    """Pre-encoded request PDUs for one run."""

    init: bytes
    search: bytes
    present: bytes
    close: bytes
    query: str
    syntax: str


def build_requests(term: str = "computer", *, use: int = 4, syntax: str = "opac",
                   database: str = "Default") -> Requests:
    """Encode the cycle's PDUs once with the project's codec."""
    oid = _syntax_oid(syntax)
    query = f"@attr 1={use} {term}"
    return Requests(
        init=encode_pdu(init_request(options=OPTIONS, implementation_id="interlend-bench",
                                     implementation_name="Interlend bench load client",
                                     implementation_version="1")),
        search=encode_pdu(search_request(query, database_names=(database,),
                                         result_set_name="1", small_set_upper_bound=0,
                                         large_set_lower_bound=1, medium_set_present_number=0,
                                         replace_indicator=True)),
        present=encode_pdu(present_request(result_set_id="1", start=1, count=1,
                                           preferred_record_syntax=oid)),
        close=encode_pdu(close()),
        query=query,
        syntax=syntax,
    )


def _syntax_oid(syntax: str) -> oids.Oid:
    return {"opac": oids.OPAC, "usmarc": oids.USMARC, "xml": oids.XML}[syntax]


# -- the connection -------------------------------------------------------------------------------

class _Z3950Conn(asyncio.Protocol):
    """One TCP connection: send a PDU, await the next whole PDU (or EOF)."""

    def __init__(self) -> None:
        self.framer = BERFramer()
        self.transport: asyncio.Transport | None = None
        self.frames: list[bytes] = []
        self.waiter: asyncio.Future[bytes | None] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.framer.feed(data)
        except Exception as exc:  # noqa: BLE001 - report as a failed cycle
            self._fail(LoadError(f"framing: {exc}"))
            return
        if frames:
            self.frames.extend(frames)
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(self.frames.pop(0))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def request(self, data: bytes | None, timeout: float) -> bytes | None:
        """Send ``data`` (if any) and return the next PDU, or None at EOF."""
        assert self.transport is not None
        if data is not None:
            self.transport.write(data)
        if self.frames:
            return self.frames.pop(0)
        if self.closed:
            return None
        self.waiter = asyncio.get_running_loop().create_future()
        return await asyncio.wait_for(self.waiter, timeout)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def _connect(host: str, port: int, timeout: float) -> _Z3950Conn:
    loop = asyncio.get_running_loop()
    _transport, conn = await asyncio.wait_for(
        loop.create_connection(_Z3950Conn, host, port), timeout)
    return conn


async def one_cycle(host: str, port: int, reqs: Requests, timeout: float = 10.0) -> None:
    """One full cycle on a fresh connection; raise LoadError (or OSError) on any failure."""
    conn = await _connect(host, port, timeout)
    try:
        frame = await conn.request(reqs.init, timeout)
        if frame is None:
            raise LoadError("EOF after Init")
        check_init(frame)
        frame = await conn.request(reqs.search, timeout)
        if frame is None:
            raise LoadError("EOF after Search")
        check_search(frame)
        frame = await conn.request(reqs.present, timeout)
        if frame is None:
            raise LoadError("EOF after Present")
        check_present(frame)
        frame = await conn.request(reqs.close, timeout)
        if frame is not None and pdu_fields(frame)[0] != TAG_CLOSE:
            raise LoadError("expected Close")
    finally:
        if not conn.closed:
            conn.abort()


# -- runs -----------------------------------------------------------------------------------------

@dataclass
class LoadResult:
    """What one load run measured."""

    mode: str
    concurrency: int
    completed: int = 0
    errors: int = 0
    wall: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    first_errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.completed / self.wall if self.wall > 0 else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode, "concurrency": self.concurrency, "completed": self.completed,
                "errors": self.errors, "wall_s": round(self.wall, 3),
                "rate": round(self.rate, 1), "p50_ms": round(self.percentile(50), 3),
                "p95_ms": round(self.percentile(95), 3), "p99_ms": round(self.percentile(99), 3),
                "first_errors": self.first_errors[:3]}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (0 for an empty list)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


async def _run(host: str, port: int, reqs: Requests, *, concurrency: int, max_cycles: int,
               max_seconds: float, keepalive: bool, timeout: float) -> LoadResult:
    result = LoadResult("kept-open" if keepalive else "cycle", concurrency)
    budget = [max_cycles]
    started = time.perf_counter()
    deadline = started + max_seconds
    clock = time.perf_counter

    def take() -> bool:
        if budget[0] <= 0 or clock() >= deadline:
            return False
        budget[0] -= 1
        return True

    def failed(exc: BaseException) -> None:
        result.errors += 1
        if len(result.first_errors) < 5:
            result.first_errors.append(f"{type(exc).__name__}: {exc}")

    async def cycle_worker() -> None:
        consecutive = 0
        while take():
            t0 = clock()
            try:
                await one_cycle(host, port, reqs, timeout)
            except (TimeoutError, LoadError, OSError) as exc:
                failed(exc)
                consecutive += 1
                if consecutive >= 50:  # the server is gone: stop this worker
                    return
                continue
            consecutive = 0
            result.latencies_ms.append((clock() - t0) * 1000)
            result.completed += 1

    async def keepalive_worker() -> None:
        try:
            conn = await _connect(host, port, timeout)
            frame = await conn.request(reqs.init, timeout)
            if frame is None:
                raise LoadError("EOF after Init")
            check_init(frame)
        except (TimeoutError, LoadError, OSError) as exc:
            failed(exc)
            return
        try:
            while take():
                t0 = clock()
                try:
                    frame = await conn.request(reqs.search, timeout)
                    if frame is None:
                        raise LoadError("EOF after Search")
                    check_search(frame)
                    frame = await conn.request(reqs.present, timeout)
                    if frame is None:
                        raise LoadError("EOF after Present")
                    check_present(frame)
                except (TimeoutError, LoadError, OSError) as exc:
                    failed(exc)
                    return
                result.latencies_ms.append((clock() - t0) * 1000)
                result.completed += 1
            try:
                await conn.request(reqs.close, 2.0)
            except (TimeoutError, LoadError, OSError):
                pass
        finally:
            conn.abort()

    worker = keepalive_worker if keepalive else cycle_worker
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))),
                           max_seconds + timeout + 5)
    result.wall = clock() - started
    return result


def run_load(port: int, reqs: Requests, *, concurrency: int = 1, max_cycles: int = 1000,
             max_seconds: float = 10.0, keepalive: bool = False, host: str = LOOPBACK,
             timeout: float = 10.0) -> LoadResult:
    """Run ``concurrency`` workers until ``max_cycles`` cycles or ``max_seconds`` are spent."""
    if host not in (LOOPBACK, "localhost", "::1"):
        raise ValueError("the load client only targets loopback")
    return asyncio.run(_run(host, port, reqs, concurrency=concurrency, max_cycles=max_cycles,
                            max_seconds=max_seconds, keepalive=keepalive, timeout=timeout))


# -- a correctness check with the full decoder ----------------------------------------------------

def verify_cycle(port: int, reqs: Requests, host: str = LOOPBACK,
                 timeout: float = 10.0) -> dict[str, Any]:
    """One cycle whose responses are all decoded with pyasn1; returns what came back."""

    async def go() -> dict[str, Any]:
        conn = await _connect(host, port, timeout)
        out: dict[str, Any] = {}
        try:
            for name, data in (("init", reqs.init), ("search", reqs.search),
                               ("present", reqs.present), ("close", reqs.close)):
                frame = await conn.request(data, timeout)
                if frame is None:
                    out[name] = None
                    break
                pdu = decode_pdu(frame, framed=True)
                body = pdu_body(pdu)
                out[name] = pdu_arm(pdu)
                if name == "search":
                    out["hits"] = int(body["resultCount"])
                    out["search_diagnostics"] = [str(d) for d in read_diagnostics(body)]
                if name == "present":
                    records = read_records(body)
                    out["records"] = len(records)
                    out["record_types"] = [type(r).__name__ for r in records]
                    out["present_diagnostics"] = [str(d) for d in read_diagnostics(body)]
                    out["record_bytes"] = len(frame)
        finally:
            conn.abort()
        return out

    return asyncio.run(go())


def yaz_client_check(port: int, query: str, *, syntax: str = "opac",
                     database: str = "Default", timeout: float = 30.0) -> dict[str, Any]:
    """A yaz-client session: open, find ``query``, show record 1 in ``syntax``, close.

    ``ok`` when the hit count is above zero and a record came back (no diagnostic).
    """
    commands = (f"open tcp:{LOOPBACK}:{port}/{database}\nfind {query}\nformat {syntax}\n"
                "show 1\nclose\nquit\n")
    with tempfile.NamedTemporaryFile("w", suffix=".yaz", delete=False) as handle:
        handle.write(commands)
        name = handle.name
    try:
        done = subprocess.run(["yaz-client", "-f", name], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ok": False, "summary": f"yaz-client failed: {exc}"}
    finally:
        Path(name).unlink(missing_ok=True)
    text = done.stdout + done.stderr
    hits_match = re.search(r"Number of hits: (\d+)", text)
    hits = int(hits_match.group(1)) if hits_match else 0
    record = re.search(r"Record type: (\S+)", text)
    diagnostic = re.search(r"\[(\d+)\] [^\n]*", text)
    ok = hits > 0 and record is not None and not (diagnostic and not record)
    summary = (f"{hits} hits, record type {record.group(1) if record else 'none'}"
               + (f", diagnostic {diagnostic.group(0)[:80]}" if diagnostic else ""))
    return {"ok": ok, "hits": hits, "record_type": record.group(1) if record else None,
            "summary": summary, "output_tail": text[-600:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.z3950_load")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--term", default="computer")
    parser.add_argument("--use", type=int, default=4)
    parser.add_argument("--syntax", default="opac", choices=("opac", "usmarc", "xml"))
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keepalive", action="store_true")
    args = parser.parse_args(argv)
    reqs = build_requests(args.term, use=args.use, syntax=args.syntax)
    print(json.dumps(verify_cycle(args.port, reqs)))
    result = run_load(args.port, reqs, concurrency=args.concurrency, max_cycles=args.cycles,
                      max_seconds=args.seconds, keepalive=args.keepalive)
    print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
