"""``write_now``: replies sent at once over real TCP, everything else through ``write``.

Over a real loopback connection (the reactor's own ``tcp.Server`` transport): a small reply
leaves without the socket ever being registered for writing (and the connection counts as
drained); a reply larger than the kernel
takes at once is finished by Twisted, and a later reply queues behind it, so the peer reads
every byte in order; ``loseConnection`` after it still delivers all. Other transports (a test
transport, TLS) just get ``write``.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.testing import StringTransport

from gateway.listeners.sendnow import drained, write_now

BIG = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than a loopback send buffer takes at once


class Replier(protocol.Protocol):
    """Answers every chunk with the writes the test asks for, then maybe closes."""

    def connectionMade(self) -> None:
        factory: Any = self.factory
        factory.server.callback(self)


class Reader(protocol.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(bytes(self.data))


async def _pair() -> tuple[Any, Reader, Any]:
    server_factory: Any = protocol.Factory.forProtocol(Replier)
    server_factory.server = defer.Deferred()
    port = reactor.listenTCP(0, server_factory, interface="127.0.0.1")
    reader = Reader()
    creator = protocol.ClientCreator(reactor, lambda: reader)
    await creator.connectTCP("127.0.0.1", port.getHost().port)  # type: ignore[attr-defined]
    server = await server_factory.server
    return server, reader, port


@pytest_twisted.ensureDeferred
async def test_small_reply_leaves_at_once() -> None:
    server, reader, port = await _pair()
    try:
        write_now(server.transport, b"reply one")
        assert server.transport not in reactor.getWriters()
        assert server.transport.dataBuffer == b"" and not server.transport._tempDataLen
        assert drained(server.transport)  # closing needs no grace timer
        server.transport.loseConnection()
        assert await reader.closed == b"reply one"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_large_reply_finished_by_twisted_in_order() -> None:
    server, reader, port = await _pair()
    try:
        write_now(server.transport, BIG)
        assert server.transport in reactor.getWriters()
        assert not drained(server.transport)  # a peer that does not read gets the grace timer
        write_now(server.transport, b"tail")  # queued behind what the kernel did not take
        server.transport.loseConnection()
        write_now(server.transport, b"!")  # closing: through write, which still sends it
        data = await reader.closed
        assert len(data) == len(BIG) + 5 and data == BIG + b"tail!"
    finally:
        await port.stopListening()


def test_other_transports_get_write() -> None:
    transport = StringTransport()
    write_now(transport, b"abc")
    write_now(transport, b"")
    assert transport.value() == b"abc"
    assert not drained(transport)  # unknown: the grace timer stays
