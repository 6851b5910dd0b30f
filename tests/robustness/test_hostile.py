"""Hostile input against a real daemon, on each listener where it applies.

Every test runs its attack while a probe client (tests/robustness/helpers.Probe) keeps making
normal requests (NCIP LookupUser and a Z39.50 search, alternately) and samples the daemon's
RSS. Common assertions (:func:`under_attack`): RSS growth (peak during the attack and after it)
under 50 MB, probe p99 under 100 ms with no failed probe request, no traceback in the log, the
daemon alive; no open or read of a marker file (inotify; the XXE test points its entities at
it); each test also checks that the attack shows in the log and in /metrics.

The daemon's limits are the defaults except: total connection caps raised to 2,500 (so that
1,000 attack connections from 25 addresses do not lock the probe out), short idle/Init
timeouts (so the tests can watch the daemon close idle connections within seconds), and a
1 MiB NCIP body limit so that the 100,000-deep XML document reaches the parser (with the
default 256 KiB limit it is refused with 413 before parsing, also tested).
"""

from __future__ import annotations

import itertools
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from protocols.z3950 import codec
from protocols.z3950.errors import CloseReason
from tests import workflow_fixtures as wf
from tests.daemon import Daemon
from tests.robustness.helpers import (
    Attacker,
    FileWatch,
    MiB,
    Probe,
    Z3950Client,
    attacker_address,
    closed_by_peer,
    config,
    connect_from,
    launch,
    metric,
    raise_nofile,
    rss_kib,
    tracebacks,
    wait_until,
)

pytestmark = pytest.mark.slow

MEMORY_LIMIT_KIB = 50 * 1024
P99_LIMIT = 0.100
MIN_PROBES = 100
MARKER = Path(tempfile.mkdtemp(prefix="interlend-marker-")) / "marker-secret.txt"
"""A file no attack may get the daemon to open: watched (inotify) during every attack and
the target of the XXE attempts."""
MARKER.write_text("MARKER-7f3a9c-SECRET\n")
FIGURES: dict[str, str] = {}

HOSTILE_CONFIG = config(
    z3950="max_connections = 2500\ninit_timeout = 4.0\nidle_timeout = 6.0\n"
          "max_connections_per_peer = 50\n",  # the NCIP default; Z39.50's is 250
    ncip="max_connections = 2500\nidle_timeout = 4.0\nmax_body_size = 1048576\n")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    raise_nofile(8192)
    d = launch(tmp_path_factory.mktemp("hostile"), HOSTILE_CONFIG)
    # warm-up: first use of each code path (parsers, reader threads, result sets) and
    # refused documents, before any baseline is taken
    with Probe(d) as probe:
        probe.collect(30)
        for body in (ncip_doc("P100", '<!DOCTYPE NCIPMessage [<!ENTITY x "y">]>'),
                     ncip_doc("<a>" * 300)):
            attacker(d).post(body)
        z3950_attack(d, b"\xb4\x80" + b"\xa0\x80" * 200, after_init=True)
    yield d
    d.kill()
    shutil.rmtree(MARKER.parent, ignore_errors=True)
    for name, figure in FIGURES.items():
        print(f"{name}: {figure}")


@contextmanager
def under_attack(daemon: Daemon, name: str) -> Iterator[Probe]:
    """Run the body as an attack: probe latency, sample RSS, then assert the common limits."""
    baseline = rss_kib(daemon.process.pid)
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], rss_kib(daemon.process.pid))
            except (OSError, AssertionError):
                return
            stop.wait(0.05)   # sampling period, not a synchronisation

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    watch = FileWatch(MARKER)
    try:
        with Probe(daemon) as probe:
            yield probe
            probe.collect(MIN_PROBES)
        opened = watch.events()
    finally:
        watch.close()
    stop.set()
    sampler.join(5)
    after = rss_kib(daemon.process.pid)
    FIGURES[name] = (f"RSS {baseline} KiB -> peak {peak[0]} / after {after} KiB "
                     f"(+{(peak[0] - baseline) / 1024:.1f} MB peak); {probe.summary()}")
    print(f"\n{name}: {FIGURES[name]}")
    assert opened == 0, f"{MARKER} was opened or read during the attack"
    assert not probe.failures, probe.failures[:5]
    assert probe.p99 < P99_LIMIT, probe.summary()
    assert peak[0] - baseline < MEMORY_LIMIT_KIB and after - baseline < MEMORY_LIMIT_KIB
    assert daemon.process.poll() is None
    assert not tracebacks(daemon), tracebacks(daemon)[:5]


def ncip_doc(inner: str, doctype: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>{doctype}'
            f'<NCIPMessage xmlns="{wf.NS}" version="http://www.niso.org/schemas/ncip/v2_02/'
            f'ncip_v2_02.xsd"><LookupUser><InitiationHeader><FromAgencyId><AgencyId>RESHARE'
            f'</AgencyId></FromAgencyId><ToAgencyId><AgencyId>OURLIB</AgencyId></ToAgencyId>'
            f'</InitiationHeader><UserId><UserIdentifierValue>{inner}</UserIdentifierValue>'
            f'</UserId></LookupUser></NCIPMessage>').encode()


def syntax_errors(daemon: Daemon) -> float:
    return metric(daemon, "interlend_requests_total", protocol="ncip",
                  outcome="Invalid Message Syntax Error")


def protocol_errors(daemon: Daemon) -> float:
    return metric(daemon, "interlend_requests_total", protocol="z3950", service="close",
                  outcome="protocolError")


_attackers: dict[int, Attacker] = {}


def attacker(daemon: Daemon) -> Attacker:
    if id(daemon) not in _attackers:
        _attackers[id(daemon)] = Attacker(daemon)
    return _attackers[id(daemon)]


def assert_invalid_syntax(daemon: Daemon, body: bytes, timeout: float = 10) -> bytes:
    started = time.monotonic()
    status, reply = attacker(daemon).post(body, timeout=timeout)
    assert status == 200 and wf.problem(reply) == "Invalid Message Syntax Error", reply[:300]
    assert time.monotonic() - started < 2.0
    return reply


# -- XML ----------------------------------------------------------------------------------------

def test_xml_external_entities_read_no_file_and_open_no_connection(daemon: Daemon,
                                                                   tmp_path: Path) -> None:
    """XXE by file:// (general entity, external DTD, parameter entity) and by http:// to a
    loopback listener: each gets Invalid Message Syntax Error; inotify sees no open/read of the
    marker file; the listener gets no connection; the refusals are logged ("DOCTYPE refused")
    and counted under interlend_requests{protocol="ncip",outcome="Invalid Message Syntax
    Error"}. (Z39.50 carries no XML: not applicable there.)"""
    marker = MARKER
    watch = FileWatch(marker)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/evil.dtd"
    uri = marker.as_uri()
    bodies = [
        ncip_doc("&x;", f'<!DOCTYPE NCIPMessage [<!ENTITY x SYSTEM "{uri}">]>'),
        ncip_doc("P100", f'<!DOCTYPE NCIPMessage SYSTEM "{uri}">'),
        ncip_doc("P100", f'<!DOCTYPE NCIPMessage [<!ENTITY % p SYSTEM "{uri}"> %p;]>'),
        ncip_doc("&x;", f'<!DOCTYPE NCIPMessage [<!ENTITY x SYSTEM "{url}">]>'),
        ncip_doc("P100", f'<!DOCTYPE NCIPMessage SYSTEM "{url}">'),
        ncip_doc("P100", f'<!DOCTYPE NCIPMessage [<!ENTITY % p SYSTEM "{url}"> %p;]>'),
        ncip_doc(f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{uri}" '
                 'parse="text"/>'),
    ]
    before = syntax_errors(daemon)
    try:
        def attack() -> None:
            for body in bodies[:-1]:
                reply = assert_invalid_syntax(daemon, body)
                assert b"MARKER" not in reply
            status, reply = attacker(daemon).post(bodies[-1])   # XInclude is not processed
            assert status == 200 and b"MARKER" not in reply

        with under_attack(daemon, "XXE") as probe:
            rounds = probe.repeat(attack)
        assert watch.events() == 0, "the marker file was opened or read"
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        watch.close()
        listener.close()
    assert not any("MARKER-7f3a9c" in line for line in daemon.lines)
    assert syntax_errors(daemon) - before >= 6 * rounds
    assert any("DOCTYPE refused" in line for line in daemon.lines)


def test_entity_bombs(daemon: Daemon) -> None:
    """Billion laughs (10 levels x 10) and quadratic blow-up (a 60 KB entity referenced 3,000
    times: ~180 MB if expanded): Invalid Message Syntax Error within 2 s each, memory bounded,
    other clients unaffected, counted and logged."""
    laughs = '<!ENTITY lol0 "lol">' + "".join(
        '<!ENTITY lol{} "{}">'.format(i, f"&lol{i - 1};" * 10) for i in range(1, 11))
    billion = ncip_doc("&lol10;", f"<!DOCTYPE NCIPMessage [{laughs}]>")
    quadratic = ncip_doc("&a;" * 3000, f'<!DOCTYPE NCIPMessage [<!ENTITY a "{"A" * 60_000}">]>')
    before = syntax_errors(daemon)
    with under_attack(daemon, "entity bombs") as probe:
        rounds = probe.repeat(lambda: (assert_invalid_syntax(daemon, billion),
                                       assert_invalid_syntax(daemon, quadratic)))
    assert syntax_errors(daemon) - before >= 2 * rounds
    assert any("DOCTYPE refused" in line for line in daemon.lines)


def test_deep_xml_nesting(daemon: Daemon) -> None:
    """100,000-deep XML nesting (700 KB, under this daemon's 1 MiB body limit so it reaches
    the parser): Invalid Message Syntax Error, no recursion blow-up, counted; with a body over
    the limit the same document is refused with 413 before parsing."""
    deep = ("<a>" * 100_000) + ("</a>" * 100_000)
    body = ncip_doc(deep)
    assert len(body) < MiB
    before = syntax_errors(daemon)
    with under_attack(daemon, "100,000-deep XML") as probe:
        rounds = probe.repeat(lambda: assert_invalid_syntax(daemon, body))
    assert syntax_errors(daemon) - before >= rounds
    status, _ = attacker(daemon).post(ncip_doc(deep * 2))   # 1.4 MB: over the limit
    assert status == 413


# -- bodies and BER -------------------------------------------------------------------------

def _stream(sock: socket.socket, total: int, deadline: float) -> int:
    """Send up to ``total`` bytes in 1 MiB chunks; return how many went before the peer cut
    us off (or the deadline passed)."""
    chunk = b"<" * MiB
    sent = 0
    sock.settimeout(2)
    try:
        while sent < total and time.monotonic() < deadline:
            sock.sendall(chunk)
            sent += len(chunk)
    except (TimeoutError, BrokenPipeError, ConnectionResetError):
        pass
    return sent


def test_100mb_bodies(daemon: Daemon) -> None:
    """A 100 MB NCIP body (declared by Content-Length, and again chunked) and a 100 MB Z39.50
    PDU: the NCIP listener answers 413 as soon as the headers (or the first MiB of chunks) say
    so and closes, the Z39.50 listener drops the connection on the declared length; the
    client cannot push more than a few MB (socket buffers) before being cut off; counted in
    interlend_ncip_bodies_too_large and logged."""
    too_large = metric(daemon, "interlend_ncip_bodies_too_large_total")
    hundred = 100 * MiB
    with under_attack(daemon, "100 MB bodies"):
        for chunked in (False, True):
            sock = connect_from(daemon.ports["ncip"], attacker_address(300))
            head = (b"POST /ncip HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
                    + (b"Transfer-Encoding: chunked\r\n\r\n" if chunked
                       else b"Content-Length: %d\r\n\r\n" % hundred))
            sock.sendall(head)
            if chunked:
                sent = 0
                try:
                    while sent < hundred:
                        sock.sendall(b"%x\r\n%s\r\n" % (MiB, b"<" * MiB))
                        sent += MiB
                except (BrokenPipeError, ConnectionResetError):
                    pass
            else:
                sent = _stream(sock, hundred, time.monotonic() + 20)
            try:
                answer = sock.recv(200)
            except ConnectionResetError:
                answer = b"(reset)"
            sock.close()
            assert sent < 20 * MiB, f"the daemon read {sent} bytes"
            assert answer.startswith(b"HTTP/1.1 413") or answer == b"(reset)", answer
        sock = connect_from(daemon.ports["z3950"], attacker_address(301))
        sock.sendall(b"\xb4\x84" + hundred.to_bytes(4, "big"))
        sent = _stream(sock, hundred, time.monotonic() + 20)
        sock.close()
        assert sent < 20 * MiB
    assert metric(daemon, "interlend_ncip_bodies_too_large_total") - too_large >= 2
    assert any("body over" in line and "413" in line for line in daemon.lines)
    assert any("Z39.50 framing error" in line for line in daemon.lines)


_z3950_sources = itertools.count()


def z3950_attack(daemon: Daemon, payload: bytes, *, after_init: bool) -> None:
    """Send ``payload``; expect Close(protocolError) after Init (or a plain close before it)
    and the connection closed by the daemon within 2 s."""
    source = attacker_address(400 + next(_z3950_sources) % 50)   # under the per-host rate
    client = Z3950Client(daemon.ports["z3950"], source=source, init=after_init)
    try:
        client.sock.sendall(payload)
        if after_init:
            reply = client.receive()
            assert reply is not None and codec.pdu_arm(reply) == "close"
            assert codec.read_close(reply).reason == CloseReason.protocolError
        assert closed_by_peer(client.sock, 2.0)
    finally:
        client.close()


@pytest.mark.parametrize("name,payload", [
    ("10,000-deep BER nesting", b"\xb4\x80" + b"\xa0\x80" * 10_000),
    ("10,000-deep definite BER nesting",
     b"".join(b"\xa0\x84" + (4 * (10_000 - i)).to_bytes(4, "big") for i in range(10_000))),
    ("BER length 2^63", b"\xb4\x88\x80\x00\x00\x00\x00\x00\x00\x00"),
    ("BER length 2^64-1", b"\xb4\x88" + b"\xff" * 8),
    ("PDU declaring 1 GB, sending 10 bytes", b"\xb4\x84\x40\x00\x00\x00" + b"\x83\x01\x00" * 3
     + b"\x00"),
])
def test_hostile_ber(daemon: Daemon, name: str, payload: bytes) -> None:
    """10,000-deep BER nesting (indefinite and definite lengths), lengths of 2^63 and 2^64-1,
    and a PDU declaring 1 GB that sends 10 bytes: each, before and after Init, is refused at
    once (Close(protocolError) after Init, a plain close before; closed within 2 s, not held
    waiting for the rest), counted under interlend_requests{protocol="z3950",service="close",
    outcome="protocolError"} and logged as a framing error."""
    before = protocol_errors(daemon)

    def before_and_after_init() -> None:
        z3950_attack(daemon, payload, after_init=True)
        z3950_attack(daemon, payload, after_init=False)

    with under_attack(daemon, name) as probe:
        rounds = probe.repeat(before_and_after_init)
    assert protocol_errors(daemon) - before >= 2 * rounds
    assert any("Z39.50 framing error" in line for line in daemon.lines)


# -- connections ------------------------------------------------------------------------------

def hold_connections(port: int, count: int, hosts: int, first: bytes,
                     offset: int = 0) -> list[socket.socket]:
    """``count`` connections spread over ``hosts`` loopback source addresses, each sent
    ``first`` (a partial request) and then left idle."""
    socks = []
    for n in range(count):
        sock = connect_from(port, attacker_address(offset + n % hosts))
        if first:
            sock.sendall(first)
        socks.append(sock)
    return socks


def open_connections(daemon: Daemon, listener: str) -> float:
    return metric(daemon, "interlend_open_connections", listener=listener)


def refused(daemon: Daemon, listener: str) -> float:
    return metric(daemon, "interlend_refused_connections_total", listener=listener)


@pytest.mark.parametrize("listener,partial", [
    ("ncip", b"POST /ncip HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n<NCIPMess"),
    ("z3950", b"\xb4\x52\x83\x01\x00\x84\x03"),
])
def test_slowloris(daemon: Daemon, listener: str, partial: bytes) -> None:
    """1,000 slow half-open connections (a partial request, then silence) from 25 addresses
    (40 each, under the 50 per address configured), plus 100 more from one address: the 1,000 are
    held while other clients are served (p99 < 100 ms), the one address gets no more than its
    50 (the rest refused, counted in interlend_refused_connections and logged), and the
    daemon's timeouts close every held connection by themselves (Init timeout on Z39.50, HTTP
    idle timeout on NCIP)."""
    port = daemon.ports[listener]
    name = "z39.50" if listener == "z3950" else "ncip"
    refused_before = refused(daemon, listener)
    socks: list[socket.socket] = []
    try:
        with under_attack(daemon, f"slowloris {listener}") as probe:
            socks = hold_connections(port, 1000, 25, partial, offset=500)
            wait_until(lambda: open_connections(daemon, listener) >= 1000, 20,
                       "1,000 held connections")
            extra = hold_connections(port, 100, 1, partial, offset=600)
            socks += extra
            wait_until(lambda: refused(daemon, listener) - refused_before >= 50, 20,
                       "refusals over the per-address cap")
            # a refused connection counts as open until its close is processed: wait for those
            wait_until(lambda: 1050 <= open_connections(daemon, listener) <= 1051, 10,
                       "1,050 held connections and the probe's (the rest refused and closed)")
            probe.collect(MIN_PROBES)     # measured while all of them are held
        assert any(f"{name}: connection from {attacker_address(600)} refused" in line
                   for line in daemon.lines)
        wait_until(lambda: open_connections(daemon, listener) <= 1, 30,
                   "the daemon's timeouts to close the held connections")
    finally:
        for sock in socks:
            sock.close()


def test_idle_associations(daemon: Daemon) -> None:
    """1,000 idle Z39.50 associations (Init done, then silence) from 25 addresses: other
    clients keep being served (p99 < 100 ms), memory bounded, and the idle timeout ends each
    with Close(lackOfActivity), counted under interlend_requests{protocol="z3950",
    service="close",outcome="lackOfActivity"} and logged."""
    before = metric(daemon, "interlend_requests_total", protocol="z3950", service="close",
                    outcome="lackOfActivity")
    clients: list[Z3950Client] = []
    try:
        with under_attack(daemon, "1,000 idle associations") as probe:
            for n in range(1000):
                clients.append(Z3950Client(daemon.ports["z3950"],
                                           source=attacker_address(700 + n % 25)))
            assert metric(daemon, "interlend_z3950_associations") >= 1000
            probe.collect(MIN_PROBES)
        reply = clients[0].receive()       # the first one times out first
        assert reply is not None and codec.read_close(reply).reason == CloseReason.lackOfActivity
        wait_until(lambda: metric(daemon, "interlend_requests_total", protocol="z3950",
                                  service="close", outcome="lackOfActivity") - before >= 1000,
                   30, "idle timeouts")
        assert any("idle: closing" in line for line in daemon.lines)
    finally:
        for client in clients:
            client.close()
