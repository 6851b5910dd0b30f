"""Seed PDUs for the Z39.50 fuzzers: the captured sessions in ../shared and PDUs built with
our own codec, plus a small structure-aware mutator shared by the harnesses and the tests."""

from __future__ import annotations

import os
import random
from pathlib import Path

from protocols.z3950 import client, codec
from protocols.z3950.errors import CloseReason

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INTERLEND_SHARED", REPO.parent / "shared"))


def captured_pdus(shared: Path | None = None) -> list[bytes]:
    """Every PDU of the captured ``*.hex`` sessions (both directions); [] without ../shared."""
    base = (shared or SHARED) / "z3950" / "fixtures"
    out: list[bytes] = []
    if not base.is_dir():
        return out
    for path in sorted(base.glob("*.hex")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                out.append(bytes.fromhex(parts[2]))
    return out


def built_pdus() -> list[bytes]:
    """Requests and responses built with the codec (definite lengths)."""
    pdus = [
        client.init_request(),
        client.init_request(reference_id=b"REF-1", preferred_message_size=100_000,
                           exceptional_record_size=100_000),
        client.search_request("river", result_set_name="1"),
        client.search_request("@attr 1=4 @and river water", result_set_name="default"),
        client.present_request(result_set_id="1", start=1, count=5),
        client.scan_request("river"),
        client.delete_result_set_request(result_sets=["1"]),
        codec.close(CloseReason.finished),
        codec.close(CloseReason.protocolError, diagnostic_information="x"),
    ]
    out = []
    for pdu in pdus:
        try:
            out.append(pdu if isinstance(pdu, bytes) else codec.encode_pdu(pdu))
        except Exception:  # noqa: BLE001 - a builder whose signature moved: skip the seed
            continue
    return out


def all_seeds(shared: Path | None = None) -> list[bytes]:
    return captured_pdus(shared) + built_pdus()


_INTERESTING_LENGTHS = [b"\x80", b"\x81\xff", b"\x84\x7f\xff\xff\xff", b"\x84\x40\x00\x00\x00",
                        b"\x88\xff\xff\xff\xff\xff\xff\xff\xff", b"\x88\x80" + b"\x00" * 7,
                        b"\x89" + b"\xff" * 9, b"\x00", b"\x7f"]


def mutate(data: bytes, rng: random.Random, seeds: list[bytes] | None = None) -> bytes:
    """One to four random edits: bit flips, byte sets, inserts, deletes, duplicated or spliced
    slices, and BER-aware edits (length octets replaced by huge/indefinite/odd forms)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(9)
        n = len(buf)
        if kind == 0 and n:
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and n:
            buf[rng.randrange(n)] = rng.choice((0x00, 0x80, 0xff, 0x1f, 0x3f, 0x7f, 0xa0, 0x30))
        elif kind == 2:
            i = rng.randrange(n + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
        elif kind == 3 and n > 1:
            i = rng.randrange(n)
            del buf[i:i + rng.randint(1, min(16, n - i))]
        elif kind == 4 and n > 1:
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 32))
            k = rng.randrange(n + 1)
            buf[k:k] = buf[i:j]
        elif kind == 5 and n > 2:
            # replace a length octet (after a tag) with an interesting length form
            i = rng.randrange(1, n)
            buf[i:i + 1] = rng.choice(_INTERESTING_LENGTHS)
        elif kind == 6 and seeds:
            other = rng.choice(seeds)
            i = rng.randrange(n + 1)
            j = rng.randrange(len(other) + 1)
            buf = buf[:i] + other[j:]
        elif kind == 7 and n:
            del buf[rng.randrange(n):]           # truncation
        else:
            i = rng.randrange(n + 1)
            buf[i:i] = bytes([rng.choice((0x30, 0xa0, 0xbf, 0x3f)), 0x80]) * rng.randint(1, 50)
    return bytes(buf)
