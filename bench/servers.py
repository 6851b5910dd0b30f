"""Servers under test, all on 127.0.0.1 and all stopped by PID: the gateway, yaz-ztest (fork and
``-T``), zebrasrv (the ``z3950/zebra-demo`` recipe, run in place) and the NCIP framework ceiling
(a bare twisted.web resource that parses the body with lxml and returns a constant reply).

Every process started here is recorded in :data:`STARTED`; :func:`stop_all` (registered with
``atexit`` and called by ``python -m bench`` on Ctrl-C or an exception) stops whatever is left.

The ceiling server runs as ``python -m bench.servers ceiling --port 0`` and prints
``ceiling listening on 127.0.0.1:PORT``.
"""

from __future__ import annotations

import atexit
import os
import queue
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
ZEBRA_RECIPE = Path("/work/shared/z3950/zebra-demo/setup-and-run.sh")
_LISTENING = re.compile(r"(z3950|ncip|sru|admin|ceiling) listening on ([\d.:a-f]+):(\d+)")

STARTED: list[Managed] = []


def raise_fd_limit(wanted: int = 8192) -> int:
    """Raise this process's soft RLIMIT_NOFILE (children inherit it); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {LOOPBACK}:{port} after {timeout} s")


def vm_rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB, from /proc/PID/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def tree_rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and of its child processes (the gateway's workers), KiB."""
    total = vm_rss_kib(pid)
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                total += vm_rss_kib(int(child))
            except (OSError, ValueError, RuntimeError):
                pass  # gone meanwhile
    return total


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its child processes (the gateway's workers), the parent first."""
    pids = [pid]
    for children in sorted(Path(f"/proc/{pid}/task").glob("*/children")):
        try:
            pids += [int(child) for child in children.read_text().split()]
        except (OSError, ValueError):
            pass  # gone meanwhile
    return pids


def smaps_kib(pid: int) -> dict[str, int]:
    """One process's memory in KiB from /proc/PID/smaps_rollup: ``rss`` (every resident page
    it maps, shared or not), ``pss`` (each shared page divided by the processes mapping it)
    and ``uss`` (its private pages only: what ending it would free)."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0])
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0),
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def resident_frames(pid: int) -> set[int]:
    """The physical page frames resident in ``pid``'s memory (/proc/PID/pagemap; the frame
    numbers need CAP_SYS_ADMIN: without it they read as 0 and the set is empty)."""
    frames: set[int] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            span = line.split(None, 1)[0]
            if line.rstrip().endswith("[vsyscall]"):
                continue
            low, high = (int(part, 16) for part in span.split("-"))
            first, count = low // (PAGE_KIB * 1024), (high - low) // (PAGE_KIB * 1024)
            pagemap.seek(first * 8)
            data = pagemap.read(count * 8)
            for (entry,) in struct.iter_unpack("<Q", data):
                if entry >> 63 and entry & ((1 << 55) - 1):  # present, frame number known
                    frames.add(entry & ((1 << 55) - 1))
    return frames


def unique_kib(pids: list[int]) -> int | None:
    """Resident memory of the processes ``pids`` with every page counted once however many
    of them map it: the tree's own footprint, whatever other processes on the machine map
    the same libraries (PSS divides those by every process on the machine). None when the
    frame numbers cannot be read (not privileged)."""
    frames: set[int] = set()
    for pid in pids:
        try:
            frames |= resident_frames(pid)
        except OSError:
            pass  # gone meanwhile
    return len(frames) * PAGE_KIB if frames else None


def tree_memory_kib(pid: int) -> dict[str, object]:
    """RSS, PSS and USS summed over ``pid`` and its children, and each process's own.

    Summed RSS counts a page shared by the primary and its workers (the interpreter, shared
    libraries) once per process; summed PSS counts it once in all, divided between them: the
    memory the process tree really takes from the machine (what a cgroup holding just the
    tree would be charged for its mapped pages, were it the only one mapping them). ``unique``:
    the tree's resident pages counted once each (:func:`unique_kib`), which does not depend on
    what else runs on the machine."""
    processes = []
    for member in tree_pids(pid):
        try:
            processes.append({"pid": member, **smaps_kib(member)})
        except (OSError, ValueError):
            pass  # gone meanwhile
    totals: dict[str, object] = {key: sum(int(p[key]) for p in processes)
                                 for key in ("rss", "pss", "uss")}
    totals["unique"] = unique_kib([int(p["pid"]) for p in processes])
    totals["processes"] = processes
    return totals


@dataclass
class Managed:
    """A server process we started (or whose PID we own, for zebrasrv)."""

    name: str
    pid: int
    port: int
    proc: subprocess.Popen[str] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    workdir: Path | None = None
    started_at: float = 0.0
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue, repr=False)

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; by PID only."""
        if self in STARTED:
            STARTED.remove(self)
        if not self.alive():
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except OSError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=0.1)
                    return
                except subprocess.TimeoutExpired:
                    continue
            if not self.alive():
                return
            time.sleep(0.05)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        if self.proc is not None:
            self.proc.wait(timeout=5)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        regex = re.compile(pattern)
        for line in list(self.lines):
            if regex.search(line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"{self.name}: no line matching {pattern!r}:\n"
                                   + "\n".join(self.lines[-30:]))
            try:
                received = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if received is None:
                raise RuntimeError(f"{self.name} exited before {pattern!r}:\n"
                                   + "\n".join(self.lines[-30:]))
            if regex.search(received):
                return received

    def rss_kib(self) -> int:
        """Its resident memory with its children's (a gateway's workers count too)."""
        return tree_rss_kib(self.pid)

    def memory_kib(self) -> dict[str, object]:
        """RSS, PSS and USS of it and its children (:func:`tree_memory_kib`)."""
        return tree_memory_kib(self.pid)


def stop_all() -> None:
    """Stop every server still running (newest first)."""
    for managed in reversed(list(STARTED)):
        try:
            managed.stop(timeout=5)
        except Exception as exc:  # noqa: BLE001 - keep stopping the others
            print(f"bench: could not stop {managed.name} ({managed.pid}): {exc}", file=sys.stderr)


atexit.register(stop_all)


def _pump(managed: Managed) -> None:
    proc = managed.proc
    assert proc is not None and proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        if len(managed.lines) < 5000:
            managed.lines.append(line)
        match = _LISTENING.search(line)
        if match:
            managed.ports[match.group(1)] = int(match.group(3))
        managed._queue.put(line)
    managed._queue.put(None)


def _spawn(name: str, args: list[str], *, cwd: Path | None = None,
           env: dict[str, str] | None = None, port: int = 0, pump: bool = False) -> Managed:
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=cwd, env={**os.environ, **(env or {})}, text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if pump else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if pump else subprocess.DEVNULL)
    managed = Managed(name, proc.pid, port, proc=proc, workdir=cwd, started_at=started)
    STARTED.append(managed)
    if pump:
        threading.Thread(target=_pump, args=(managed,), daemon=True).start()
    return managed


# -- yaz-ztest ------------------------------------------------------------------------------------

def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def start_ztest(workdir: Path, *, threaded: bool = False, port: int | None = None) -> Managed:
    """yaz-ztest in fork mode (default) or ``-T`` threaded mode on 127.0.0.1."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    tag = "T" if threaded else "fork"
    args = ["yaz-ztest", *(["-T"] if threaded else []), "-l", str(workdir / f"ztest-{tag}.log"),
            "-p", str(workdir / f"ztest-{tag}.pid"), f"tcp:{LOOPBACK}:{port}"]
    managed = _spawn(f"yaz-ztest {'-T' if threaded else 'fork'}", args, cwd=workdir, port=port)
    wait_port(port, proc=managed.proc)
    return managed


# -- zebrasrv -------------------------------------------------------------------------------------

def start_zebra(workdir: Path, *, marc_file: Path | None = None, port: int | None = None,
                timeout: float = 600.0) -> Managed:
    """Run the zebra-demo recipe in place (``sh setup-and-run.sh WORKDIR PORT``).

    With ``marc_file`` (ISO 2709, e.g. from ``write_demo_marc``), the file is put in
    ``WORKDIR/records`` first, so the recipe indexes it together with its own three records.
    """
    if not ZEBRA_RECIPE.exists():
        raise RuntimeError(f"zebra recipe not found: {ZEBRA_RECIPE}")
    port = port or free_port()
    (workdir / "records").mkdir(parents=True, exist_ok=True)
    if marc_file is not None:
        shutil.copyfile(marc_file, workdir / "records" / "interlend-demo.mrc")
    done = subprocess.run(["sh", str(ZEBRA_RECIPE), str(workdir), str(port)],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    pid_file = workdir / "zebrasrv.pid"
    pid = 0
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            pid = int(pid_file.read_text().split()[0])
            break
        time.sleep(0.05)
    if done.returncode != 0 or not pid:
        raise RuntimeError(f"zebra recipe failed ({done.returncode}):\n{done.stdout[-2000:]}"
                           f"\n{done.stderr[-2000:]}")
    managed = Managed("zebrasrv", pid, port, workdir=workdir)
    STARTED.append(managed)
    wait_port(port, timeout=20)
    return managed


# -- the gateway ----------------------------------------------------------------------------------

BENCH_WORKERS = 2
"""``[gateway] workers`` for the gateway under the bench (``INTERLEND_BENCH_WORKERS`` overrides
it for one run), where this version of the gateway has the setting. 2: the best measured
(``bench/performance_pass.toml``): faster in 9 of 10 figures at load average 3.7, slower at
Z39.50 c=1; on a machine with no idle core (load 9-11) no gain. With workers the gateway's pid
is the primary (the writer): the profile and memory sections see that process only."""


def bench_workers() -> int:
    """The processes the benched gateway serves Z39.50 from."""
    return int(os.environ.get("INTERLEND_BENCH_WORKERS", BENCH_WORKERS))


def bench_config(limit: int = 4000) -> str:
    """The demo configuration with the per-address limits lifted: every bench client is
    127.0.0.1, so connection caps are raised and rate limits disabled (0), for the settings
    this version of the gateway knows; ``[gateway] workers`` as :func:`bench_workers` says."""
    from dataclasses import fields

    from gateway import config as gconfig

    text = (REPO / "config" / "interlend.toml").read_text()
    wanted = {"max_connections": limit, "max_connections_per_peer": limit,
              "max_connection_rate_per_peer": 0, "max_requests_per_second_per_peer": 0}

    def lines(settings: type) -> str:
        known = {f.name for f in fields(settings)}
        return "".join(f"{k} = {v}\n" for k, v in wanted.items() if k in known)

    z_caps = lines(gconfig.Z3950Settings)
    n_caps = lines(gconfig.NcipSettings)
    text = re.sub(r"(?m)^(databases = .*\n)", lambda m: m.group(1) + z_caps, text, count=1)
    text = re.sub(r'(?m)^(path = "/ncip"\n)', lambda m: m.group(1) + n_caps, text, count=1)
    if "workers" in {f.name for f in fields(gconfig.GatewaySettings)}:
        text = text.replace("[gateway]\n", f"[gateway]\nworkers = {bench_workers()}\n", 1)
    return text


def start_gateway(workdir: Path, database: Path, *, env: dict[str, str] | None = None,
                  prefix: list[str] | None = None, wait: bool = True,
                  config_text: str | None = None, timeout: float = 120.0,
                  log_level: str = "info", repo: Path | None = None) -> Managed:
    """``interlend serve`` on ephemeral loopback ports; ports parsed from "listening on" lines.

    ``prefix`` wraps the command (e.g. a profiler). Waits for the "ready: agency" line.
    ``repo``: the source tree to run the gateway from (default: this one).
    """
    tree = repo or REPO
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "bench-interlend.toml"
    config.write_text(config_text or bench_config())
    args = [*(prefix or [sys.executable]), "-m", "gateway.daemon.cli", "serve", "-c", str(config),
            "--database", str(database),
            "--z3950-listen", f"tcp:0:interface={LOOPBACK}",
            "--ncip-listen", f"tcp:0:interface={LOOPBACK}",
            "--sru-listen", f"tcp:0:interface={LOOPBACK}",
            "--admin-listen", f"tcp:0:interface={LOOPBACK}", "--log-level", log_level]
    environment = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree), **(env or {})}
    managed = _spawn("gateway", args, cwd=tree, env=environment, pump=True)
    if wait:
        try:
            managed.wait_for(r"ncip listening on", timeout=timeout)
            managed.wait_for(r"z3950 listening on", timeout=5)
            managed.wait_for(r"ready: agency", timeout=timeout)
        except RuntimeError:
            managed.stop()
            raise
        managed.port = managed.ports.get("z3950", 0)
    return managed


# -- the NCIP ceiling -----------------------------------------------------------------------------

CEILING_REPLY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ns1:NCIPMessage xmlns:ns1="http://www.niso.org/2008/ncip" '
    b'ns1:version="http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd">'
    b"<ns1:LookupUserResponse><ns1:ResponseHeader><ns1:FromAgencyId><ns1:AgencyId>DEMO"
    b"</ns1:AgencyId></ns1:FromAgencyId><ns1:ToAgencyId><ns1:AgencyId>RESHARE</ns1:AgencyId>"
    b"</ns1:ToAgencyId></ns1:ResponseHeader><ns1:UserId><ns1:UserIdentifierValue>P0002"
    b"</ns1:UserIdentifierValue></ns1:UserId></ns1:LookupUserResponse></ns1:NCIPMessage>")


def ceiling_main(port: int, max_body: int = 256 * 1024) -> None:
    """Serve the framework ceiling: parse the POST body with a hardened lxml parser, reply a
    constant document. Nothing else (no auth, no database, no audit)."""
    from lxml import etree
    from twisted.internet import reactor
    from twisted.internet.address import IPv4Address
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.interfaces import IListeningPort
    from twisted.python.failure import Failure
    from twisted.web import resource, server

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)

    class Ceiling(resource.Resource):
        isLeaf = True

        def render_POST(self, request: server.Request) -> bytes:
            # always set by render time; Twisted types it None (twisted/twisted#12574)
            if request.content is None:
                request.setResponseCode(400)
                return b""
            body = request.content.read(max_body + 1)
            request.setHeader(b"content-type", b"application/xml; charset=utf-8")
            if len(body) > max_body:
                request.setResponseCode(413)
                return b""
            try:
                root = etree.fromstring(body, parser)
            except etree.XMLSyntaxError:
                request.setResponseCode(400)
                return b""
            if not isinstance(root.tag, str) or not root.tag.endswith("NCIPMessage"):
                request.setResponseCode(400)
                return b""
            return CEILING_REPLY

    site = server.Site(Ceiling())
    site.displayTracebacks = False

    def announce(listening: IListeningPort) -> None:
        address = listening.getHost()
        assert isinstance(address, IPv4Address)
        print(f"ceiling listening on {LOOPBACK}:{address.port}", flush=True)

    def give_up(failure: Failure) -> None:
        failure.printTraceback()
        reactor.stop()

    endpoint = serverFromString(reactor, f"tcp:{port}:interface={LOOPBACK}")
    endpoint.listen(site).addCallbacks(announce, give_up)
    reactor.run()


def start_ceiling() -> Managed:
    managed = _spawn("ncip-ceiling", [sys.executable, "-m", "bench.servers", "ceiling",
                                      "--port", "0"], cwd=REPO,
                     env={"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}, pump=True)
    managed.wait_for(r"ceiling listening on", timeout=30)
    managed.port = managed.ports["ceiling"]
    return managed


if __name__ == "__main__":
    import argparse

    cli = argparse.ArgumentParser(prog="python -m bench.servers")
    sub = cli.add_subparsers(dest="command", required=True)
    ceiling = sub.add_parser("ceiling", help="run the NCIP framework ceiling server")
    ceiling.add_argument("--port", type=int, default=0)
    arguments = cli.parse_args()
    if arguments.command == "ceiling":
        ceiling_main(arguments.port)
