"""Workers on plain TCP listeners each have a socket of their own in one ``SO_REUSEPORT``
group (``gateway/workers/reuseport.py``), with the real daemon (``[gateway] workers = 2``).

The sockets are found as the kernel lists them: the listening sockets of a port in
``/proc/net/tcp`` (by inode), and which process holds which in ``/proc/PID/fd``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor

from gateway.workers import reuseport
from tests.daemon import Daemon
from tests.gateway.test_workers import start, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not reuseport.supported() or not Path("/proc/net/tcp").exists(),
    reason="SO_REUSEPORT groups and /proc/net/tcp are Linux's")]


def listening_inodes(port: int) -> set[int]:
    """Inodes of the sockets listening on ``port`` (IPv4), from ``/proc/net/tcp``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], int(fields[9])
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            inodes.add(inode)
    return inodes


def held(pid: int, inodes: set[int]) -> set[int]:
    """Which of ``inodes`` process ``pid`` holds a descriptor of."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:
            continue
        if match and int(match.group(1)) in inodes:
            found.add(int(match.group(1)))
    return found


def worker_pids(daemon: Daemon) -> dict[int, int]:
    return {w["index"]: w["pid"] for w in daemon.admin_health()["workers"]["running"]}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start(tmp_path_factory.mktemp("reuseport"))
    try:
        yield running
    finally:
        running.kill()


@pytest.mark.parametrize("protocol", ["z3950", "ncip"])
def test_each_worker_serves_a_socket_of_its_own(daemon: Daemon, protocol: str) -> None:
    """Two listening sockets on the port; each worker holds one, not the other's; the primary
    holds both (it keeps them across restarts)."""
    inodes = listening_inodes(daemon.ports[protocol])
    assert len(inodes) == 2
    pids = worker_pids(daemon)
    first, second = held(pids[1], inodes), held(pids[2], inodes)
    assert len(first) == 1 and len(second) == 1 and first != second
    assert held(daemon.process.pid, inodes) == inodes


def test_connections_are_spread_over_both_workers(daemon: Daemon) -> None:
    """32 connections held open: the kernel hands them to both workers (each its share by a
    hash of the addresses; all 32 on one socket would be a 1 in 2^31 chance), none to the
    primary."""
    port = daemon.ports["ncip"]
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(32)]
    try:
        def counted() -> list[int]:
            return [w["connections"]["ncip"]
                    for w in daemon.admin_health()["workers"]["running"]]

        wait_until(lambda: sum(counted()) == 32)
        assert all(count > 0 for count in counted()), counted()
        assert daemon.admin_health()["connections"]["ncip"] == 32
    finally:
        for sock in sockets:
            sock.close()


def test_a_restarted_worker_gets_its_socket_back(daemon: Daemon) -> None:
    """SIGKILL to worker 2: started again, it serves the very socket it had; requests sent
    while it is gone, some on its socket, are all answered."""
    port = daemon.ports["ncip"]
    inodes = listening_inodes(port)
    old = worker_pids(daemon)[2]
    before = held(old, inodes)
    os.kill(old, signal.SIGKILL)
    daemon.wait_for(rf"worker 2 \(pid {old}\) ended unexpectedly")
    for _ in range(8):  # some of these hash to worker 2's socket
        status, _ = daemon.get("/healthz", timeout=10)
        assert status == 200
    daemon.wait_for(rf"worker 2 \(pid (?!{old}\b)\d+\) ready")
    wait_until(lambda: worker_pids(daemon).get(2, old) != old)
    assert listening_inodes(port) == inodes
    assert held(worker_pids(daemon)[2], inodes) == before


@pytest_twisted.ensureDeferred
async def test_groups_are_only_those_opened_here(tmp_path: Path) -> None:
    """A group socket and another one in its group share the port number; a port Twisted
    opened itself is no group (nor would be one systemd passed); other kinds are left to the
    caller; a closed socket is no longer in a group."""
    factory: Any = protocol.ServerFactory.forProtocol(protocol.Protocol)
    plain = reactor.listenTCP(0, factory, interface="127.0.0.1")
    first = reuseport.listen(reactor, "tcp:0:interface=127.0.0.1:backlog=64", factory)
    assert first is not None
    second = reuseport.another(reactor, first)
    try:
        assert not reuseport.in_group(plain)
        assert reuseport.in_group(first) and reuseport.in_group(second)
        assert second.getHost().port == first.getHost().port  # type: ignore[attr-defined]
        assert len(listening_inodes(first.getHost().port)) == 2  # type: ignore[attr-defined]
        assert reuseport.listen(reactor, f"unix:{tmp_path / 's'}", factory) is None
    finally:
        for port in (plain, first, second):
            stopped = port.stopListening()
            if stopped is not None:
                await stopped
    assert not reuseport.in_group(first)
