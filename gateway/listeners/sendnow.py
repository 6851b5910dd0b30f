"""Replies sent at once: a TCP transport's ``write`` without the trip through the reactor.

Twisted's ``FileDescriptor.write`` only buffers: it registers the socket for writing
(``epoll_ctl``), waits for the next reactor turn to send, then unregisters it (``epoll_ctl``
again). For a request/response protocol whose replies are small and whose send buffer is
almost always empty that is two system calls, one more ``epoll_wait`` wake-up and the Python of
``doWrite`` per reply. :func:`write_now` sends at once when nothing is buffered, and hands
whatever the kernel did not take (or any error) to ``transport.write``, so ordering, back
pressure, error handling and ``loseConnection`` stay Twisted's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp


def write_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, sent at once when ``transport`` is a plain TCP connection
    with nothing buffered; any other transport (TLS, test transports) just gets ``write``."""
    if data and type(transport) is tcp.Server and _idle(transport):
        try:
            sent = transport.socket.send(data)
        except OSError:  # EAGAIN, or a reset: Twisted's doWrite meets it and closes
            sent = 0
        if sent >= len(data):
            return
        data = data[sent:]
    transport.write(data)


def _idle(transport: Any) -> bool:
    """Connected, not closing, nothing buffered, no producer (Twisted's own attributes; a
    Twisted without them gets every write through ``write``)."""
    try:
        return bool(transport.connected and not transport.disconnecting
                    and not transport._writeDisconnected and not transport._tempDataLen
                    and transport.offset == len(transport.dataBuffer)
                    and transport.producer is None)
    except AttributeError:
        return False


def drained(transport: Any) -> bool:
    """True when ``transport`` is a plain TCP connection with nothing left to send: closing it
    (``loseConnection``) then ends at the next reactor turn whatever the peer does, so no
    grace timer is needed to abort a peer that does not read. False when unknown."""
    if type(transport) is not tcp.Server:
        return False
    try:
        return bool(not transport._tempDataLen
                    and transport.offset == len(transport.dataBuffer))
    except AttributeError:
        return False


__all__ = ["drained", "write_now"]
