# -*- test-case-name: tests.gateway.test_reuseport -*-
"""One listening socket per worker on the same TCP address (``SO_REUSEPORT``).

With one listening socket inherited by every worker, the process that wakes first accepts
every connection queued at that moment (Twisted accepts in a loop): a burst of keep-alive
connections (a broker's pool, the bench's wrk) can land on one worker while the other idles.
With ``SO_REUSEPORT`` each worker has a socket of its own in one group, and the kernel
spreads new connections over the group by a hash of their addresses.

Every socket of the group holds its own queue of connections, so a socket must always have a
process accepting on it: the primary keeps every socket open (a restarted worker gets the
same one back, with the connections queued meanwhile) and accepts on a worker's socket itself
while that worker is not ready (:mod:`gateway.workers.pool`).

Only plain TCP listeners (``tcp:``, ``tcp6:``) form groups: Linux does not spread Unix-socket
connections, and a socket systemd passes was bound without the option (both stay one shared
socket, as before). The kernel admits into a group only sockets of the same user.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory


def supported() -> bool:
    """Whether this platform has ``SO_REUSEPORT`` with load balancing (Linux)."""
    return hasattr(socket, "SO_REUSEPORT") and socket.SO_REUSEPORT is not None


def _open(family: int, address: tuple[Any, ...], backlog: int) -> socket.socket:
    """A non-blocking listening socket in ``address``'s reuse-port group."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # IPV6_V6ONLY left at the system's default, as Twisted leaves it (dual stack on Linux)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def listen(reactor: Any, endpoint: str, factory: Factory) -> IListeningPort | None:
    """Listen on a ``tcp:``/``tcp6:`` endpoint string with a socket that can form a group;
    None when the endpoint is of another kind (the caller listens as usual)."""
    if not supported():
        return None
    server = serverFromString(reactor, endpoint)
    if not isinstance(server, TCP4ServerEndpoint | TCP6ServerEndpoint):
        return None
    v6 = isinstance(server, TCP6ServerEndpoint)
    family = socket.AF_INET6 if v6 else socket.AF_INET
    interface = server._interface or ("::" if v6 else "")
    sock = _open(family, (interface, server._port), server._backlog)
    port: IListeningPort = reactor.adoptStreamPort(sock.fileno(), family, factory)
    sock.close()
    port._interlend_backlog = server._backlog  # type: ignore[attr-defined]
    return port


def in_group(port: IListeningPort) -> bool:
    """Whether ``port`` is a socket this module opened for a group (:func:`listen`,
    :func:`another`), still open. A socket passed by systemd with ``ReusePort=`` is not: its
    group may belong to another user, and it stays one shared socket."""
    return getattr(port, "_interlend_backlog", None) is not None \
        and getattr(port, "socket", None) is not None


def another(reactor: Any, port: IListeningPort) -> IListeningPort:
    """A new socket in ``port``'s group (same address, the actual port number), adopted by
    the reactor for ``port``'s factory: this process accepts on it until told otherwise
    (``stopReading``)."""
    sock = port.socket  # type: ignore[attr-defined]
    backlog = getattr(port, "_interlend_backlog", 50)
    new = _open(sock.family, sock.getsockname(), backlog)
    adopted: IListeningPort = reactor.adoptStreamPort(new.fileno(), new.family,
                                                      port.factory)  # type: ignore[attr-defined]
    new.close()
    adopted._interlend_backlog = backlog  # type: ignore[attr-defined]
    return adopted
