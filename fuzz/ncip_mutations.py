"""NCIP mutation fuzzer: the real request corpus (../shared/ncip/samples) with elements
dropped, duplicated, reordered, and values replaced with huge, empty, non-UTF-8 or
control-character strings, plus byte-level truncations, sent to a running daemon.

Every reply must be HTTP 200 with a well-formed NCIP body, or a 4xx for transport errors
(413 for bodies over the limit); never a 5xx, a traceback in the log, or a hang.
:func:`mutate_message` and :func:`check_reply` are shared with
tests/robustness/test_fuzz_ncip.py.

Usage (see fuzz/README.md):
    python fuzz/ncip_mutations.py --requests 20000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lxml import etree  # noqa: E402

PLACEHOLDER = "\uE000MUTANT\uE001"


def _replacement(rng: random.Random) -> str | bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return "X" * rng.choice((1_000, 50_000, 200_000))            # huge (may hit the 413)
    if kind == 1:
        return ""                                                   # empty
    if kind == 2:
        return b"\xff\xfe\xc3\x28\xa0\xa1\xed\xa0\x80"              # non-UTF-8 bytes
    if kind == 3:
        return b"\x01\x02\x07\x0b\x0c\x1b\x1f\x7f\x00"               # control characters
    if kind == 4:
        return "&amp;&lt;&#0;&#xD800;&#1114112;"                   # odd/invalid char refs
    return rng.choice(("-1", "99999999999999999999", "2026-13-45T25:61:61Z", "NaN",
                       "\u202e\u0000", "' OR 1=1 --", "../../etc/passwd", "%s%n"))


def mutate_message(body: bytes, rng: random.Random) -> bytes:
    """One mutant of an NCIP message: a tree edit (drop, duplicate, reorder, replace a value)
    or a byte-level edit when the sample does not parse."""
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True,
                                                      load_dtd=False, recover=False))
    except etree.XMLSyntaxError:
        root = None
    if root is None or rng.random() < 0.1:
        data = bytearray(body)
        cut = rng.randrange(len(data) + 1)
        return bytes(data[:cut]) if rng.random() < 0.5 else bytes(data[:cut] + data[cut + 1:])
    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    raws: list[bytes] = []
    for _ in range(rng.randint(1, 3)):
        element = rng.choice(elements)
        parent = element.getparent()
        action = rng.randrange(5)
        if action == 0 and parent is not None:                      # drop
            parent.remove(element)
            elements = [e for e in root.iter() if isinstance(e.tag, str)]
        elif action == 1 and parent is not None:                    # duplicate
            parent.insert(parent.index(element), etree.fromstring(etree.tostring(element)))
            elements = [e for e in root.iter() if isinstance(e.tag, str)]
        elif action == 2 and parent is not None and len(parent) > 1:  # reorder
            children = list(parent)
            rng.shuffle(children)
            parent[:] = children
        else:                                                       # replace a value
            value = _replacement(rng)
            # spliced in after serialisation: lxml refuses control characters, and the
            # character references must reach the daemon unescaped
            element.text = f"{PLACEHOLDER}{len(raws)}."
            raws.append(value if isinstance(value, bytes) else value.encode("utf-8"))
            for child in list(element):
                element.remove(child)
            elements = [e for e in root.iter() if isinstance(e.tag, str)]
            if not elements:
                break
    out = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    for n, raw in enumerate(raws):
        out = out.replace(f"{PLACEHOLDER}{n}.".encode(), raw)
    return out


def post(url: str, body: bytes, timeout: float = 20.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/xml"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check_reply(status: int, reply: bytes) -> str | None:
    """None when the reply is acceptable, else what is wrong with it."""
    if 400 <= status < 500:
        return None
    if status != 200:
        return f"HTTP {status}"
    try:
        root = etree.fromstring(reply)
    except etree.XMLSyntaxError as e:
        return f"reply not well-formed: {e}"
    if etree.QName(root).localname not in ("NCIPMessage", "NCIPVersionMessage"):
        return f"reply root is {root.tag}"
    return None


def run(url: str, bodies: list[bytes], count: int, *, seed: int = 1, threads: int = 8,
        seconds: float = 3600.0) -> tuple[Counter[str], list[str], float]:
    """Send ``count`` mutants (bounded by ``seconds``); return outcomes, problems, slowest."""
    deadline = time.monotonic() + seconds
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    slowest = [0.0]

    def one(n: int) -> None:
        if time.monotonic() > deadline:
            return
        rng = random.Random(seed * 1_000_003 + n)
        body = mutate_message(rng.choice(bodies), rng)
        started = time.monotonic()
        try:
            status, reply = post(url, body)
        except OSError as e:
            problems.append(f"#{n}: {type(e).__name__}: {e}")
            return
        slowest[0] = max(slowest[0], time.monotonic() - started)
        wrong = check_reply(status, reply)
        outcomes[str(status)] += 1
        if wrong:
            problems.append(f"#{n}: {wrong}: {body[:200]!r}")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(count)))
    return outcomes, problems, slowest[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from tests.conftest import SHARED
    from tests.daemon import start_daemon
    from tests.gateway.test_ncip_corpus_http import CATCH_ALL, requests_of, sample_identities
    from tests.ncip_fixtures import seed_database

    samples = requests_of(SHARED)
    agencies, systems = sample_identities(samples)
    tmp = Path(tempfile.mkdtemp(prefix="interlend-ncip-fuzz-"))
    seed_database(tmp / "interlend.sqlite3")
    daemon = start_daemon(tmp, CATCH_ALL.format(agencies=agencies, systems=systems))
    try:
        started = time.monotonic()
        outcomes, problems, slowest = run(daemon.ncip_url, [s.path.read_bytes() for s in samples],
                                          args.requests, seed=args.seed, seconds=args.seconds)
        took = time.monotonic() - started
        tracebacks = [line for line in daemon.lines if "Traceback" in line]
        print(f"requests={sum(outcomes.values())} outcomes={dict(outcomes)} "
              f"problems={len(problems)} tracebacks={len(tracebacks)} "
              f"slowest_s={slowest:.3f} seconds={took:.0f} alive={daemon.process.poll() is None}")
        for line in problems[:20]:
            print("  ", line)
        return 1 if problems or tracebacks or daemon.process.poll() is not None else 0
    finally:
        daemon.kill()


if __name__ == "__main__":
    sys.exit(main())
