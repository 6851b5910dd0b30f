"""Shared pieces of the robustness tests: daemon configs with tuned limits, RSS and /metrics
readers, a concurrent latency probe, attacker sockets from other loopback addresses, and a
file-access watcher (inotify) for the "no file is read" checks. Nothing here sleeps to
synchronise: waits poll with deadlines."""

from __future__ import annotations

import ctypes
import ctypes.util
import http.client
import os
import re
import resource
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from protocols.z3950 import client, codec
from protocols.z3950.ber import BERFramer
from tests import workflow_fixtures as wf
from tests.daemon import Daemon, start_daemon

MiB = 1024 * 1024


def raise_nofile(want: int = 8192) -> None:
    """Raise this process's soft open-files limit (towards the hard one) for 1,000+ sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def config(*, z3950: str = "", ncip: str = "", gateway: str = "") -> str:
    """The workflow test configuration with extra keys in [z3950], [ncip] and [gateway]."""
    text = wf.CONFIG.replace('[ncip]\npath = "/ncip"\n', '[ncip]\npath = "/ncip"\n' + ncip)
    if gateway:
        text = text.replace('[gateway]\n', '[gateway]\n' + gateway, 1)
    return text + "\n[z3950]\ndatabases = [\"Default\"]\n" + z3950


def launch(tmp_path: Path, config_text: str | None = None, **kwargs) -> Daemon:
    """Seed a database with the workflow fixtures and start a daemon on it."""
    database = kwargs.pop("database", None) or tmp_path / "interlend.sqlite3"
    if not database.exists():
        wf.seed_database(database)
    return start_daemon(tmp_path, config_text or config(), database=database, **kwargs)


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def metrics(daemon: Daemon) -> dict[str, float]:
    """The daemon's /metrics as {"name{labels}": value} (label order as exposed)."""
    with urllib.request.urlopen(daemon.admin_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metric(daemon: Daemon, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for key, value in metrics(daemon).items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()):
            total += value
    return total


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        threading.Event().wait(0.05)   # poll interval, not a synchronisation
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def tracebacks(daemon: Daemon) -> list[str]:
    return [line for line in daemon.lines if "Traceback" in line]


# -- another process holding the database --------------------------------------------------------

_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
print("released", flush=True)
"""


def start_locker(database: Path) -> subprocess.Popen[str]:
    """A process that takes BEGIN EXCLUSIVE on ``database``, prints ``locked``, and holds it
    until :func:`release_locker` (then rolls back and prints ``released``)."""
    return subprocess.Popen([sys.executable, "-c", _LOCKER, str(database)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def release_locker(locker: subprocess.Popen[str]) -> None:
    """Tell a :func:`start_locker` process to let go of the database."""
    assert locker.stdin is not None
    locker.stdin.write("\n")
    locker.stdin.flush()


# -- attacker sockets ---------------------------------------------------------------------------

def attacker_address(n: int) -> str:
    """A distinct loopback source address per attacker host (127.0.1.x ...)."""
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def connect_from(port: int, source: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when the peer closes (EOF or reset) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([sock], [], [], remaining)
            if ready:
                try:
                    if not sock.recv(65536):
                        return True
                except ConnectionResetError:
                    return True
                except BlockingIOError:
                    continue
    finally:
        sock.setblocking(True)


# -- Z39.50 client ------------------------------------------------------------------------------

class Z3950Client:
    """A blocking Z39.50 client over our codec (Init on connect)."""

    def __init__(self, port: int, source: str = "127.0.0.1", init: bool = True) -> None:
        self.sock = connect_from(port, source, timeout=15)
        self.framer = BERFramer()
        self.pending: list[bytes] = []
        if init:
            reply = self.ask(codec.encode_pdu(client.init_request()))
            assert reply is not None and codec.pdu_arm(reply) == "initResponse"

    def receive(self):
        while not self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.pending.extend(self.framer.feed(chunk))
        return codec.decode_pdu(self.pending.pop(0))

    def ask(self, data: bytes):
        self.sock.sendall(data)
        return self.receive()

    def search(self, term: str = "pattern") -> int:
        reply = self.ask(codec.encode_pdu(client.search_request(term, result_set_name="1")))
        assert reply is not None and codec.pdu_arm(reply) == "searchResponse", reply
        return int(codec.pdu_body(reply)["resultCount"])

    def close(self) -> None:
        self.sock.close()


# -- latency probe ------------------------------------------------------------------------------

@dataclass
class Probe:
    """A normal client measuring latency while an attack runs: alternately an NCIP LookupUser
    (keep-alive HTTP) and a Z39.50 search on one association, from 127.0.0.1, ~20 requests/s."""

    daemon: Daemon
    interval: float = 0.01
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_until(lambda: len(self.latencies) >= 4 or bool(self.failures), 20, "probe warm-up")
        self.latencies.clear()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)

    def _run(self) -> None:
        body = wf.reshare_lookup_user("P100")
        http_conn: http.client.HTTPConnection | None = None
        z: Z3950Client | None = None
        turn = 0
        while not self._stop.is_set():
            turn += 1
            started = time.perf_counter()
            try:
                if turn % 2:
                    if http_conn is None:
                        http_conn = http.client.HTTPConnection("127.0.0.1",
                                                               self.daemon.ports["ncip"],
                                                               timeout=10)
                    http_conn.request("POST", "/ncip", body,
                                      {"Content-Type": "application/xml"})
                    response = http_conn.getresponse()
                    data = response.read()
                    ok = response.status == 200 and wf.problem(data) is None
                else:
                    if z is None:
                        z = Z3950Client(self.daemon.ports["z3950"])
                    ok = z.search() >= 1
                if not ok:
                    self.failures.append(f"turn {turn}: bad reply")
                self.latencies.append(time.perf_counter() - started)
            except Exception as e:  # noqa: BLE001 - recorded, asserted by the test
                self.failures.append(f"turn {turn}: {type(e).__name__}: {e}")
                http_conn = None
                z = None
            self._stop.wait(self.interval)   # pacing of the probe, not a synchronisation
        if z is not None:
            z.close()

    @property
    def count(self) -> int:
        return len(self.latencies)

    def collect(self, n: int, timeout: float = 30.0) -> None:
        """Wait (polling) until the probe has made ``n`` requests during the attack."""
        wait_until(lambda: self.count >= n or bool(self.failures), timeout,
                   f"{n} probe requests")

    def repeat(self, attack: Callable[[], object], n: int = 100, timeout: float = 30.0) -> int:
        """Run ``attack`` at least once and again until the probe made ``n`` requests
        during it (bounded by ``timeout``); return the number of rounds."""
        deadline = time.monotonic() + timeout
        rounds = 0
        while rounds == 0 or (self.count < n and not self.failures
                              and time.monotonic() < deadline):
            attack()
            rounds += 1
        return rounds

    @property
    def p99(self) -> float:
        """Nearest-rank 99th percentile."""
        assert self.latencies, "the probe made no request"
        ordered = sorted(self.latencies)
        return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]

    def summary(self) -> str:
        return (f"{len(self.latencies)} probe requests "
                f"(max {max(self.latencies) * 1000:.1f} ms), p50 "
                f"{statistics.median(self.latencies) * 1000:.1f} ms, p99 {self.p99 * 1000:.1f} ms,"
                f" failures {len(self.failures)}")


# -- file access watcher ------------------------------------------------------------------------

IN_ACCESS, IN_OPEN = 0x001, 0x020


class FileWatch:
    """inotify on one file: did anybody open or read it while we watched?"""

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self._fd, str(path).encode(), IN_ACCESS | IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

    def events(self) -> int:
        """The number of open/access events seen so far."""
        count = 0
        while True:
            try:
                data = os.read(self._fd, 4096)
            except BlockingIOError:
                return count
            offset = 0
            while offset < len(data):
                _, mask, _, length = struct.unpack_from("iIII", data, offset)
                if mask & (IN_ACCESS | IN_OPEN):
                    count += 1
                offset += 16 + length

    def close(self) -> None:
        os.close(self._fd)


class Attacker:
    """Sends NCIP bodies over keep-alive connections from ``hosts`` loopback addresses in
    turn, so the per-address limits (which the attacks are not about) stay out of the way."""

    def __init__(self, daemon: Daemon, hosts: int = 20, offset: int = 100) -> None:
        self.daemon = daemon
        self.sources = [attacker_address(offset + n) for n in range(hosts)]
        self.connections: dict[str, http.client.HTTPConnection] = {}
        self.turn = 0

    def post(self, body: bytes, timeout: float = 20.0) -> tuple[int, bytes]:
        self.turn += 1
        source = self.sources[self.turn % len(self.sources)]
        for attempt in range(2):
            conn = self.connections.get(source)
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.daemon.ports["ncip"],
                                                  timeout=timeout, source_address=(source, 0))
                self.connections[source] = conn
            try:
                try:
                    conn.request("POST", "/ncip", body, {"Content-Type": "application/xml"})
                except (BrokenPipeError, ConnectionResetError):
                    # The daemon may answer (413) and close before the whole body is sent:
                    # its answer is still there to read, as an HTTP client should.
                    pass
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                del self.connections[source]
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()
