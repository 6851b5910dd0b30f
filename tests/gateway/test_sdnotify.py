# -*- test-case-name: tests.gateway.test_sdnotify -*-
"""The notify protocol helper, on a real datagram socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from gateway.daemon.sdnotify import notify, watchdog_interval


def test_notify_without_socket_is_a_no_op() -> None:
    """Run by hand (no NOTIFY_SOCKET), notify does nothing and says so."""
    assert notify("READY=1", {}) is False


def test_notify_sends_one_datagram(tmp_path: Path) -> None:
    """The state string arrives as one datagram on the socket path."""
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": str(path)})
        assert sock.recv(100) == b"READY=1\nSTATUS=x"


def test_notify_to_missing_socket_does_not_raise(tmp_path: Path) -> None:
    """A stale NOTIFY_SOCKET is logged, never fatal."""
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_watchdog_interval() -> None:
    """Half of WATCHDOG_USEC, only for our own pid."""
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2000000",
                              "WATCHDOG_PID": str(os.getpid())}) == 1.0


def test_passed_socket_checks() -> None:
    """A systemd: endpoint whose socket was not passed is named in words (Twisted says only
    ``KeyError: 'ncip'``); passed ones, and other endpoint kinds, are fine."""
    from gateway.daemon.sdnotify import endpoint_problem, inherited_sockets

    passed = inherited_sockets({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2",
                                "LISTEN_FDNAMES": "z3950:ncip"})
    none = inherited_sockets({})
    assert endpoint_problem("systemd:domain=INET6:name=ncip", passed) is None
    assert endpoint_problem("systemd:domain=INET:index=1", passed) is None
    assert endpoint_problem("tcp:2100", none) is None
    problem = endpoint_problem("systemd:domain=INET6:name=ncip", none)
    assert problem is not None and "no socket named 'ncip' was passed by systemd" in problem
    assert "(passed: none)" in problem
    problem = endpoint_problem("systemd:domain=INET6:name=admin", passed)
    assert problem is not None and "(passed: ncip, z3950)" in problem
    problem = endpoint_problem("systemd:domain=INET:index=2", passed)
    assert problem is not None and "no socket at index 2" in problem and "2 passed" in problem
    # another process's LISTEN_PID: not ours to use
    other = inherited_sockets({"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "ncip"})
    assert endpoint_problem("systemd:domain=INET6:name=ncip", other) is not None
