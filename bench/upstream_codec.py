"""``python -m bench.upstream_codec [--calls N]``: CPU per call of the upstream catalogue's
codec steps, each fast path against the path it replaced, measured in the same process.

Koha's Zebra (``../shared/lms/koha-zebra``, run in place) answers the upstream Z39.50 bench's
Search (``@attr 1=1016 library``) and Present (1 USMARC record); its frames are read with
pyasn1 (``client.read_response(codec.decode_pdu(...))``) and with
:mod:`protocols.z3950.fastber_origin`, and the requests built both ways (checked equal first).
Koha's sample MARCXML records (its ``make-sample.py``) are read by pymarc's SAX parse of the
serialised element and by :func:`~gateway.backends.upstream.opac_holdings.marc_from_xml`.
Prints µs of CPU (``time.process_time``) per call and the ratio; CPU time, not wall time, so
the figures survive a busy machine.
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymarc
from lxml import etree

from bench.upstream_z3950 import KOHA_ZEBRA, start_koha_zebra
from gateway.backends.upstream.opac_holdings import marc_from_xml
from protocols.sru.client import PARSER
from protocols.z3950 import client, codec, fastber_origin, oids, pqf
from protocols.z3950.ber import BERFramer

QUERY = pqf.parse_pqf("@attr 1=1016 library")
SEARCH: dict[str, Any] = {"database_names": ("biblios",), "result_set_name": "il0",
          "preferred_record_syntax": oids.USMARC}
PRESENT: dict[str, Any] = {"result_set_id": "il0", "start": 1, "count": 1,
           "preferred_record_syntax": oids.USMARC, "element_set_name": "F"}


def per_call(work: Callable[[], Any], calls: int) -> float:
    """µs of this process's CPU per call of ``work``."""
    started = time.process_time()
    for _ in range(calls):
        work()
    return (time.process_time() - started) / calls * 1e6


def zebra_frames() -> tuple[bytes, bytes]:
    """Koha's Zebra's Search and Present response frames for the bench's query."""
    def exchange(sock: socket.socket, framer: BERFramer, request: bytes) -> bytes:
        sock.sendall(request)
        while True:
            frames = framer.feed(sock.recv(65536))
            if frames:
                return frames[0]

    with tempfile.TemporaryDirectory(prefix="bench-upstream-codec-") as scratch:
        port, workdir = start_koha_zebra(Path(scratch) / "zebra")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                framer = BERFramer()
                exchange(sock, framer, codec.encode_pdu(client.init_request()))
                search = exchange(sock, framer,
                                  codec.encode_pdu(client.search_request(QUERY, **SEARCH)))
                present = exchange(sock, framer,
                                   codec.encode_pdu(client.present_request(**PRESENT)))
        finally:
            subprocess.run(["bash", str(KOHA_ZEBRA / "stop.sh"), str(workdir)],
                           capture_output=True, timeout=60)
    return search, present


def koha_marcxml() -> list[etree._Element]:
    """Koha's sample records as MARCXML elements (parsed as the SRU client parses)."""
    with tempfile.TemporaryDirectory(prefix="bench-upstream-codec-") as scratch:
        out = Path(scratch) / "sample.xml"
        subprocess.run([sys.executable, str(KOHA_ZEBRA / "make-sample.py"), str(out)],
                       capture_output=True, check=True, timeout=60)
        root = etree.parse(str(out), PARSER).getroot()
    return list(root.iter("{*}record"))


def run(calls: int = 2000) -> list[tuple[str, float, float]]:
    """Rows ``(step, µs before, µs after)``."""
    search, present = zebra_frames()
    rows = []
    for name, frame in (("read SearchResponse", search), ("read PresentResponse", present)):
        def slow(frame: bytes = frame) -> Any:
            return client.read_response(codec.decode_pdu(frame, framed=True))

        def fast(frame: bytes = frame) -> Any:
            return fastber_origin.read_response(frame)

        if fast() is None or fast() != slow():
            raise SystemExit(f"{name}: the fast path does not read Zebra's frame as pyasn1")
        rows.append((name, per_call(slow, calls), per_call(fast, calls)))
    steps: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("write SearchRequest", lambda: codec.encode_pdu(client.search_request(QUERY, **SEARCH)),
         lambda: fastber_origin.search_request(QUERY, **SEARCH)),
        ("write PresentRequest", lambda: codec.encode_pdu(client.present_request(**PRESENT)),
         lambda: fastber_origin.present_request(**PRESENT))]
    for name, slow_step, fast_step in steps:
        if slow_step() != fast_step():
            raise SystemExit(f"{name}: the fast encoder's bytes differ")
        rows.append((name, per_call(slow_step, calls), per_call(fast_step, calls)))
    records = koha_marcxml()
    rounds = max(1, calls // (10 * len(records)))

    def old_marcxml() -> None:
        for element in records:
            pymarc.parse_xml_to_array(io.BytesIO(etree.tostring(element)))

    def new_marcxml() -> None:
        for element in records:
            marc_from_xml(element)

    rows.append(("read a MARCXML record", per_call(old_marcxml, rounds) / len(records),
                 per_call(new_marcxml, rounds) / len(records)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream_codec")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    rows = run(args.calls)
    print(f"{'step':24} {'before µs':>10} {'after µs':>10} {'ratio':>7}")
    for name, before, after in rows:
        print(f"{name:24} {before:10.1f} {after:10.1f} {after / before:7.3f}")
    pair_before = sum(b for n, b, _ in rows if "Response" in n or "Request" in n)
    pair_after = sum(a for n, _, a in rows if "Response" in n or "Request" in n)
    print(f"{'Search+Present pair':24} {pair_before:10.1f} {pair_after:10.1f} "
          f"{pair_after / pair_before:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
