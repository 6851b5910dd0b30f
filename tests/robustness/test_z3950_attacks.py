"""Issue 12, the Z39.50 points: each attack of the security review replayed over the network
against a real daemon (loopback only, bounded in time and volume), asserting the fixed
behaviour.

* point 1: backtracking regular expressions (truncation 102) and 10 KB terms do not freeze the
  daemon: ``/healthz`` answers within 100 ms while ten of each run; a search past
  ``operation_time_limit`` answers Bib-1 31; SIGTERM is honoured at once whatever a reader does;
* point 2: terms over ``max_term_length``/``max_term_words`` get Bib-1 11/5; NCIP lookups do
  not wait behind catalogue work (catalogue readers are a pool of their own);
* point 4: 50 associations from one address each saving 10 result sets of 20,000 hits, and
  50 half-sent 4 MiB PDUs: RSS stays under the unit's MemoryMax and returns near its start;
  the memory budget answers Close(resources) when spent;
* point 6: a PDU trickled one byte at a time is cut at ``pdu_timeout`` from its first byte;
* point 11: Scan with a huge step is Bib-1 206 with no traceback; repeated malformed PDUs
  log at most the rate limit;
* point 13: ``allow_from`` recognises IPv4 clients of a dual-stack (IPv6) listener.

The catalogue is the workflow seed plus 20,000 generated records, every one holding the words
``a`` and ``common`` and a 24-letter word of ``a``s (what a backtracking engine chokes on).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pymarc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.backends.embedded.records import upsert_record
from gateway.storage.store import open_database
from protocols.z3950 import client as origin
from protocols.z3950 import codec
from protocols.z3950.ber import BERFramer
from protocols.z3950.errors import CloseReason
from tests import workflow_fixtures as wf
from tests.daemon import REPO, Daemon, start_daemon
from tests.robustness.helpers import (
    MiB,
    Z3950Client,
    attacker_address,
    closed_by_peer,
    config,
    connect_from,
    raise_nofile,
    rss_kib,
    tracebacks,
    wait_until,
)

pytestmark = pytest.mark.slow

RECORDS = 20_000
BACKTRACKING = "(a|aa)*(a|aa)*(a|aa)*(a|aa)*(a|aa)*c"
"""36 characters: with a backtracking engine, minutes per 24-letter word of ``a``s."""
TEN_KB = '"' + "a " * 5000 + '"'
"""A 10 KB term of 5,000 repeated words (16 s of FTS5 work on this catalogue, unbounded)."""


def _memory_max_kib() -> int:
    """The unit's MemoryMax, in KiB."""
    text = (REPO / "systemd" / "interlend.service").read_text()
    value = re.search(r"^MemoryMax=(\d+)([KMG]?)$", text, re.M)
    assert value is not None, "no MemoryMax in systemd/interlend.service"
    in_bytes = int(value.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[value.group(2)]
    return in_bytes // 1024


def seed_big(path: Path) -> None:
    """The workflow seed plus RECORDS generated records."""
    wf.seed_database(path)
    conn = open_database(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for n in range(RECORDS):
            record = pymarc.Record(force_utf8=True)
            record.add_field(pymarc.Field(tag="001", data=f"g{n:06d}"))
            record.add_field(pymarc.Field(
                tag="100", indicators=pymarc.Indicators("1", " "),
                subfields=[pymarc.Subfield("a", f"Writer{n % 500}, Anna")]))
            record.add_field(pymarc.Field(
                tag="245", indicators=pymarc.Indicators("1", "0"),
                subfields=[pymarc.Subfield(
                    "a", f"A common study w{n} {'a' * 24}{n % 997} part {n % 50}")]))
            upsert_record(conn, record)
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("z3950-attacks") / "catalogue.sqlite3"
    seed_big(path)
    return path


def _launch(tmp_path: Path, catalogue: Path, z3950: str = "", gateway: str = "",
            **kwargs) -> Daemon:
    database = tmp_path / "interlend.sqlite3"
    database.write_bytes(catalogue.read_bytes())
    return start_daemon(tmp_path, config(z3950=z3950, gateway=gateway), database=database,
                        **kwargs)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, catalogue: Path) -> Iterator[Daemon]:
    """Default limits, except short PDU and Init deadlines and room for many connections."""
    raise_nofile(4096)
    d = _launch(tmp_path_factory.mktemp("defaults"), catalogue,
                z3950="max_connections = 2500\npdu_timeout = 3.0\ninit_timeout = 30.0\n")
    yield d
    d.kill()


# -- client helpers -----------------------------------------------------------------------------

def search(client: Z3950Client, query: str, name: str = "1") -> tuple[int | None, int | None]:
    """(hit count, None) or (None, Bib-1 diagnostic code)."""
    reply = client.ask(codec.encode_pdu(origin.search_request(query, result_set_name=name)))
    assert reply is not None and codec.pdu_arm(reply) == "searchResponse", reply
    body = codec.pdu_body(reply)
    diagnostics = origin.read_diagnostics(body)
    if diagnostics:
        return None, diagnostics[0].condition
    return int(body["resultCount"]), None


def healthz_ms(daemon: Daemon) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(daemon.base_url + "/healthz", timeout=10) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def lookup_item_ms(daemon: Daemon) -> float:
    body = wf.ncip2("LookupItem", [wf._rs_header(), wf.item_id("LEND-001", wf.AGENCY)])
    started = time.perf_counter()
    status, reply = daemon.post(body, timeout=30)
    elapsed = (time.perf_counter() - started) * 1000
    assert status == 200 and wf.problem(reply) is None, reply[:400]
    return elapsed



class ServiceProbe:
    """Timings (ms) taken in a loop on a thread while the body runs: /healthz, an NCIP
    LookupItem and, with ``inits``, a new Z39.50 Init. The first three rounds are a warm-up
    whose timings are dropped."""

    def __init__(self, daemon: Daemon, *, inits: bool = False) -> None:
        self.daemon = daemon
        self.with_inits = inits
        self.health: list[float] = []
        self.lookups: list[float] = []
        self.inits: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.health.append(healthz_ms(self.daemon))
            self.lookups.append(lookup_item_ms(self.daemon))
            if self.with_inits:
                began = time.perf_counter()
                RawClient(self.daemon.ports["z3950"], "127.0.0.1").sock.close()
                self.inits.append((time.perf_counter() - began) * 1000)
            self._stop.wait(0.02)   # probe pacing, not a synchronisation

    def __enter__(self) -> ServiceProbe:
        self._thread.start()
        wait_until(lambda: len(self.health) >= 3, 20, "probe warm-up")
        self.health.clear()
        self.lookups.clear()
        self.inits.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

def cpu_seconds(daemon: Daemon) -> float:
    """User and system CPU time of the daemon so far."""
    fields = Path(f"/proc/{daemon.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_all(jobs: list, timeout: float) -> list:
    """Run each callable in its own thread; their results (or exceptions), in order."""
    results: list = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except Exception as exc:  # noqa: BLE001 - asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "attack threads still running"
    return results


INIT = codec.encode_pdu(origin.init_request())


class RawClient:
    """A Z39.50 connection sending pre-encoded PDUs and returning raw replies (little Python
    work, so that probes in this process measure the daemon, not this interpreter's lock)."""

    def __init__(self, port: int, source: str) -> None:
        self.sock = connect_from(port, source, timeout=60)
        self._framer = BERFramer()
        self._frames: list[bytes] = []
        self.ask(INIT)

    def ask(self, request: bytes) -> bytes:
        self.sock.sendall(request)
        while not self._frames:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self._frames.extend(self._framer.feed(chunk))
        return self._frames.pop(0)


def one_search(daemon: Daemon, request: bytes, source: int
               ) -> tuple[int | None, int | None, float]:
    """Init, then one pre-encoded search: (hits, diagnostic, seconds)."""
    client = RawClient(daemon.ports["z3950"], attacker_address(source))
    try:
        started = time.monotonic()
        reply = client.ask(request)
        elapsed = time.monotonic() - started
    finally:
        client.sock.close()
    body = codec.pdu_body(codec.decode_pdu(reply))
    diagnostics = origin.read_diagnostics(body)
    if diagnostics:
        return None, diagnostics[0].condition, elapsed
    return int(body["resultCount"]), None, elapsed


def search_pdu(query: str) -> bytes:
    return codec.encode_pdu(origin.search_request(query, result_set_name="1"))


# -- point 1 and 2: no query freezes the daemon ---------------------------------------------------

def test_regex_and_10kb_terms_do_not_freeze_the_daemon(daemon: Daemon) -> None:
    """Ten backtracking regular expressions (truncation 102, 36 characters) and ten 10 KB
    terms of 5,000 words, at once: /healthz answers every time within 100 ms, an NCIP
    LookupItem and a new Z39.50 Init within 250 ms while they run; each regex search
    answers (RE2: the vocabulary matched in linear time) and each 10 KB term gets Bib-1 11
    at once."""
    regex = f'@attr 1=4 @attr 5=102 "{BACKTRACKING}"'
    with ServiceProbe(daemon, inits=True) as probe:
        health, lookups, inits = probe.health, probe.lookups, probe.inits
        regex_pdu, ten_kb_pdu = search_pdu(regex), search_pdu(TEN_KB)
        jobs = [lambda n=n: one_search(daemon, regex_pdu, 10 + n) for n in range(10)]
        jobs += [lambda n=n: one_search(daemon, ten_kb_pdu, 30 + n) for n in range(10)]
        results = run_all(jobs, timeout=60)
        wait_until(lambda: len(health) >= 10, 20, "probe requests during the attack")
    for result in results:
        assert not isinstance(result, Exception), result
    for count, diagnostic, seconds in results[:10]:
        assert diagnostic is None and count is not None and count >= 1, (count, diagnostic)
        assert seconds < 10
    for _, diagnostic, seconds in results[10:]:
        assert diagnostic == 11 and seconds < 2
    print(f"\n/healthz: {len(health)} requests, max {max(health):.1f} ms; LookupItem max "
          f"{max(lookups):.1f} ms; new Z39.50 Init max {max(inits):.1f} ms; regex searches "
          f"max {max(r[2] for r in results[:10]):.2f} s")
    assert max(health) < 100, health
    assert max(lookups) < 250, lookups
    assert max(inits) < 250, inits
    assert daemon.process.poll() is None and not tracebacks(daemon)


def test_term_limits_answer_diagnostics(daemon: Daemon) -> None:
    """Past max_term_length (1024 characters) Bib-1 11; past max_term_words (32) Bib-1 5, also
    inside a boolean query; a 2 MiB term is refused at once; the limits themselves pass."""
    client = Z3950Client(daemon.ports["z3950"], source=attacker_address(60))
    try:
        assert search(client, '"' + "x" * 1025 + '"') == (None, 11)
        assert search(client, '@and common "' + "a " * 33 + '"') == (None, 5)
        assert search(client, '"' + "common " * 32 + '"')[0] == RECORDS
        started = time.monotonic()
        assert search(client, '"' + "a " * MiB + '"') == (None, 11)
        assert time.monotonic() - started < 5
    finally:
        client.close()


@pytest.fixture(scope="module")
def budget_daemon(tmp_path_factory: pytest.TempPathFactory, catalogue: Path) -> Iterator[Daemon]:
    """Term limits raised so that the 10 KB term reaches SQLite: only the time budget (1 s)
    bounds it."""
    d = _launch(tmp_path_factory.mktemp("budget"), catalogue,
                z3950="max_term_length = 20000\nmax_term_words = 10000\n"
                      "operation_time_limit = 1.0\n")
    yield d
    d.kill()


def test_time_budget_answers_31_and_lookups_do_not_wait(budget_daemon: Daemon) -> None:
    """Ten 10 KB searches of 5,000 words (16 s each unbounded), with only the time budget to
    stop them: each answers Bib-1 31 (resources exhausted) within its budget plus its wait
    for the catalogue reader; meanwhile NCIP LookupItem keeps answering at once
    (it used to take 14 s behind two such searches: median under 50 ms, none over 1 s), and
    /healthz within 250 ms."""
    daemon = budget_daemon
    with ServiceProbe(daemon) as probe:
        health, lookups = probe.health, probe.lookups
        started = time.monotonic()
        ten_kb_pdu = search_pdu(TEN_KB)
        results = run_all(
            [lambda n=n: one_search(daemon, ten_kb_pdu, 70 + n) for n in range(10)], timeout=60)
        elapsed = time.monotonic() - started
    for result in results:
        assert not isinstance(result, Exception), result
        assert result[1] == 31, result
    print(f"\nten 10 KB searches: all Bib-1 31 in {elapsed:.1f} s; /healthz max "
          f"{max(health):.1f} ms; LookupItem max {max(lookups):.1f} ms over {len(lookups)}")
    assert elapsed < 10 * 1.0 + 5          # ten budgets on the catalogue reader, plus slack
    # The catalogue reader is busy in SQLite for the whole attack (on a 2-core machine shared
    # with other work): the reactor and the NCIP readers answer, within bounds looser than
    # test 1's. Behind the catalogue queue (one shared pool), a lookup would wait for
    # seconds: ten 1 s searches queued.
    assert max(health) < 250, health
    assert statistics.median(lookups) < 50 and max(lookups) < 1000, lookups
    assert not tracebacks(daemon)


def test_sigterm_is_honoured_while_readers_are_busy(tmp_path: Path, catalogue: Path) -> None:
    """With a 60 s time budget and both catalogue readers deep in 10 KB searches, SIGTERM
    stops the daemon within its grace period (2 s here) instead of waiting for them."""
    daemon = _launch(tmp_path, catalogue,
                     z3950="max_term_length = 20000\nmax_term_words = 10000\n"
                           "operation_time_limit = 60.0\n",
                     gateway="shutdown_grace = 2.0\ncatalogue_readers = 2\n")
    clients = []
    try:
        for n in range(4):
            client = Z3950Client(daemon.ports["z3950"], source=attacker_address(90 + n))
            client.sock.sendall(codec.encode_pdu(origin.search_request(TEN_KB,
                                                                      result_set_name="1")))
            clients.append(client)
        before = cpu_seconds(daemon)
        wait_until(lambda: cpu_seconds(daemon) - before >= 1.0, 30,
                   "the searches to be running in SQLite")
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        status = daemon.process.wait(timeout=30)
        elapsed = time.monotonic() - started
        print(f"\nSIGTERM with busy readers: exited {status} after {elapsed:.2f} s")
        assert status == 0
        assert elapsed < 2.0 + 3.0
    finally:
        for client in clients:
            client.close()
        daemon.kill()


# -- point 4: memory -----------------------------------------------------------------------------

class RssSampler:
    """The daemon's peak RSS while the body runs (sampled every 50 ms in a thread)."""

    def __init__(self, daemon: Daemon) -> None:
        self.pid = daemon.process.pid
        self.peak = rss_kib(self.pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (OSError, AssertionError):
                return
            self._stop.wait(0.05)   # sampling period, not a synchronisation

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def half_sent_pdu(sock: socket.socket, size: int) -> None:
    """Send all of a PDU declaring ``size`` bytes of content but its last 16 bytes."""
    header = b"\xb6\x84" + size.to_bytes(4, "big")
    sock.sendall(header + b"\x04\x84" + (size - 6).to_bytes(4, "big"))
    chunk = b"\0" * 65536
    left = size - 6 - 16
    while left > 0:
        sock.sendall(chunk[:min(left, len(chunk))])
        left -= len(chunk)


def test_memory_stays_under_memory_max(daemon: Daemon) -> None:
    """The memory attack of issue 12, point 4, from single addresses: 50 associations each
    saving 10 result sets of 20,000 hits (boolean searches, which used to be read whole), then
    50 associations each sending all but the end of a 4 MiB PDU. RSS stays under the unit's
    MemoryMax throughout (and within the memory budget plus 64 MiB of its start); the
    budget refuses the PDUs past it with Close(resources); once the clients leave, RSS comes
    back within 48 MiB of where it started."""
    memory_max = _memory_max_kib()
    port = daemon.ports["z3950"]
    warm = Z3950Client(port, source=attacker_address(199))
    assert search(warm, "@or common w1")[0] == RECORDS
    warm.close()
    baseline = rss_kib(daemon.process.pid)
    savers: list[socket.socket] = []
    holders: list[socket.socket] = []
    closed_for_resources = 0
    with RssSampler(daemon) as sampler:
        try:
            requests = [codec.encode_pdu(origin.search_request(
                f"@or common w{k}", result_set_name=f"s{k}")) for k in range(10)]
            for _ in range(50):
                client = RawClient(port, attacker_address(200))
                savers.append(client.sock)
                for request in requests:
                    body = codec.pdu_body(codec.decode_pdu(client.ask(request)))
                    assert int(body["resultCount"]) == RECORDS
            saved_peak = sampler.peak
            for _ in range(50):
                sock = connect_from(port, attacker_address(201), timeout=60)
                holders.append(sock)
                sock.sendall(INIT)
                BERFramer().feed(sock.recv(65536))
                try:
                    half_sent_pdu(sock, 4 * MiB - 64)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            for sock in holders:
                framer = BERFramer()
                sock.settimeout(10)
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, TimeoutError):
                    continue
                frames = framer.feed(data) if data else []
                if frames and codec.read_close(codec.decode_pdu(frames[0])).reason == \
                        CloseReason.resources:
                    closed_for_resources += 1
        finally:
            for sock in savers + holders:
                sock.close()
    print(f"\nRSS {baseline} KiB at start, {saved_peak} KiB with 500 saved result sets, peak"
          f" {sampler.peak} KiB (MemoryMax {memory_max} KiB); {closed_for_resources} of 50"
          " half-sent PDUs closed for resources")
    assert sampler.peak < memory_max
    assert saved_peak - baseline < 32 * 1024
    assert sampler.peak - baseline < 128 * 1024 + 64 * 1024
    assert closed_for_resources >= 10
    wait_until(lambda: rss_kib(daemon.process.pid) - baseline < 48 * 1024, 30,
               "RSS to come back near its start")
    print(f"RSS after the clients left: {rss_kib(daemon.process.pid)} KiB")
    # the budget is visible to the sysadmin, and given back in full once the clients are gone
    wait_until(lambda: _metric(daemon, "interlend_z3950_memory_budget_used_bytes") == 0, 30,
               "the memory budget given back")
    assert _metric(daemon, "interlend_z3950_memory_budget_refusals_total") >= \
        closed_for_resources
    assert any("memory budget spent" in line for line in daemon.lines)
    assert daemon.process.poll() is None and not tracebacks(daemon)


def _metric(daemon: Daemon, name: str) -> float:
    """One unlabelled sample of the admin listener's ``/metrics``."""
    with urllib.request.urlopen(daemon.admin_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def _drain(sock: socket.socket, replies: dict[int, bytes], key: int) -> bool:
    """Read what the daemon sent without waiting; True when it closed the connection."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
            replies[key] = replies.get(key, b"") + data
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


# -- point 6: a whole PDU within its deadline ------------------------------------------------------

def test_trickled_pdus_are_cut_at_the_pdu_deadline(daemon: Daemon) -> None:
    """40 connections trickling a search PDU one byte every 2 s (after Init), and 10 trickling
    their Init, with a 3 s pdu_timeout and the default 900 s idle timeout: every one is closed
    within 3 s of its first byte plus slack (Close(lackOfActivity) after Init), although bytes
    keep arriving; the closes are logged within the log rate limit, not once each."""
    port = daemon.ports["z3950"]
    request = search_pdu("common")
    socks: list[tuple[socket.socket, bool]] = []
    first = len(daemon.lines)
    try:
        for n in range(50):
            sock = connect_from(port, attacker_address(300 + n % 10), timeout=10)
            after_init = n < 40
            if after_init:
                sock.sendall(INIT)
                assert BERFramer().feed(sock.recv(65536))
            socks.append((sock, after_init))
        started = time.monotonic()
        closed: dict[int, float] = {}
        replies: dict[int, bytes] = {}
        sent = 0
        while len(closed) < len(socks) and time.monotonic() - started < 12:
            for i, (sock, _) in enumerate(socks):
                if i not in closed:
                    try:
                        sock.sendall(request[sent:sent + 1])
                    except (BrokenPipeError, ConnectionResetError):
                        closed[i] = time.monotonic() - started
            sent += 1
            # one byte every 2 s per connection: the attack's own pace, not a synchronisation
            threading.Event().wait(2.0)
            for i, (sock, _) in enumerate(socks):
                if i not in closed and _drain(sock, replies, i):
                    closed[i] = time.monotonic() - started
        assert sent < len(request)    # the PDU was never complete
        assert len(closed) == len(socks), f"{len(socks) - len(closed)} still open"
        assert max(closed.values()) < 3.0 + 2.0 + 2.0, closed
        for i, (_, after_init) in enumerate(socks):
            if after_init:
                assert i in replies, f"connection {i}: closed without Close"
                reply = codec.decode_pdu(BERFramer().feed(replies[i])[0])
                assert codec.read_close(reply).reason == CloseReason.lackOfActivity
        print(f"\n50 trickling connections closed after {min(closed.values()):.1f} to "
              f"{max(closed.values()):.1f} s, {sent} bytes each")
    finally:
        for sock, _ in socks:
            sock.close()
    # at most the rate limit (10 a minute, shared with earlier tests on this daemon), never
    # one line per connection
    lines = [line for line in daemon.lines[first:] if "not complete within" in line]
    assert len(lines) <= 11, lines



# -- point 11: Scan steps and log volume --------------------------------------------------------

def scan_diagnostics(reply) -> list[int]:
    body = codec.pdu_body(reply)
    if int(body["scanStatus"]) != 6:
        return []
    return [codec.Diagnostic.from_asn1(rec["defaultFormat"]).condition
            for rec in body["entries"]["nonsurrogateDiagnostics"]]


def test_scan_with_a_huge_step_and_repeated_errors_log_within_limits(daemon: Daemon) -> None:
    """Scan with step sizes 2^62 and max_scan_step + 1, 30 times each: every one answers
    Bib-1 206 on a working association, with no traceback and no line in the log; then 60
    connections each sending a malformed PDU: each is closed, but at most the rate limit of
    "framing error" lines (10 a minute, plus one noting those dropped) reaches the log."""
    first = len(daemon.lines)
    client = Z3950Client(daemon.ports["z3950"], source=attacker_address(350))
    try:
        for step in (2**62, 101) * 30:
            reply = client.ask(codec.encode_pdu(origin.scan_request(
                "@attr 1=4 common", number_of_terms=10, step_size=step)))
            assert reply is not None and scan_diagnostics(reply) == [206]
        reply = client.ask(codec.encode_pdu(origin.scan_request("@attr 1=4 common",
                                                               number_of_terms=3)))
        assert reply is not None and int(codec.pdu_body(reply)["scanStatus"]) == 0
    finally:
        client.close()
    assert daemon.lines[first:] == [], daemon.lines[first:][:5]
    for n in range(60):
        sock = connect_from(daemon.ports["z3950"], attacker_address(360 + n % 20))
        sock.sendall(INIT + b"\xb4\x88" + b"\xff" * 8)
        assert closed_by_peer(sock, 5.0)
        sock.close()
    framing = [line for line in daemon.lines[first:] if "framing error" in line]
    print(f"\n60 malformed PDUs: {len(framing)} log lines")
    assert 1 <= len(framing) <= 12, framing
    assert not tracebacks(daemon)
    assert not [line for line in daemon.lines if "critical" in line.lower()]


# -- point 13: IPv4 clients of a dual-stack listener ----------------------------------------------

PEER = """
[[peers]]
name = "zpeer"
ncip_agency_ids = ["ZPEER"]
auth = { kind = "shared-secret", secret = "zpeer-secret" }
allow_from = ["127.0.0.1/32"]
z3950_user = "zuser"
z3950_password = "zpass"
"""


def test_allow_from_sees_ipv4_clients_of_an_ipv6_listener(tmp_path: Path) -> None:
    """On an IPv6 listener (bound to ::ffff:127.0.0.1, so loopback only), an IPv4 client
    arrives as ::ffff:127.0.0.1: a peer whose allow_from is 127.0.0.1/32 is accepted from
    127.0.0.1 (it used to be refused: the mapped address matched no IPv4 network) and still
    refused from 127.0.0.2; the audit log names the plain IPv4 address."""
    wf.seed_database(tmp_path / "interlend.sqlite3")
    daemon = start_daemon(tmp_path, config(z3950="require_auth = true\n") + PEER,
                          database=tmp_path / "interlend.sqlite3",
                          extra_args=["--z3950-listen", r"tcp6:0:interface=\:\:ffff\:127.0.0.1"])
    try:
        line = daemon.wait_for(r"Z39\.50: \[\S*ffff:127\.0\.0\.1\]:\d+")
        found = re.search(r"ffff:127\.0\.0\.1\]:(\d+)", line)
        assert found is not None
        port = int(found.group(1))
        outcomes = {}
        for source in ("127.0.0.1", "127.0.0.2"):
            sock = connect_from(port, source)
            try:
                sock.sendall(codec.encode_pdu(origin.init_request(
                    authentication=codec.Authentication("open", "zuser", "zpass"))))
                reply = codec.decode_pdu(BERFramer().feed(sock.recv(65536))[0])
                outcomes[source] = bool(codec.pdu_body(reply)["result"])
            finally:
                sock.close()
        assert outcomes == {"127.0.0.1": True, "127.0.0.2": False}
    finally:
        daemon.stop()
    with open_database(tmp_path / "interlend.sqlite3") as conn:
        remotes = {row[0] for row in conn.execute(
            "SELECT remote FROM audit WHERE protocol = 'z3950'")}
    assert "127.0.0.1" in remotes and not any(r.startswith("::ffff:") for r in remotes)
