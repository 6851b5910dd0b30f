# -*- test-case-name: tests.gateway.test_daemon -*-
"""The Z39.50 listener: a Twisted protocol that frames BER PDUs and hands them to an association.

Until the association layer lands, every association is refused politely: the framer reads the
first PDU (with all its limits), the connection is logged and closed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from protocols.z3950.ber import BERFramer
from protocols.z3950.errors import Z3950ProtocolError

log = Logger()


class Z3950Protocol(Protocol):
    """One Z39.50 association over one TCP connection."""

    def __init__(self, factory: Z3950Factory) -> None:
        self.factory = factory
        settings = factory.gateway.config.z3950
        self._framer = BERFramer(max_pdu_size=settings.max_pdu_size,
                                 max_depth=settings.max_nesting_depth)

    def connectionMade(self) -> None:
        self.factory.associations.add(self)

    def dataReceived(self, data: bytes) -> None:
        try:
            pdus = self._framer.feed(data)
        except Z3950ProtocolError as e:
            log.info("Z39.50 protocol error from {peer}: {error}", peer=self._peer(), error=e)
            self.transport.loseConnection()
            return
        if pdus:
            log.info("Z39.50 association from {peer}: service not implemented yet",
                     peer=self._peer())
            self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.associations.discard(self)

    def _peer(self) -> str:
        return str(getattr(self.transport.getPeer(), "host", "?"))


class Z3950Factory(Factory):
    """Builds associations; knows them all, for a graceful stop."""

    noisy = False

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.associations: set[Z3950Protocol] = set()

    def buildProtocol(self, addr: Any) -> Z3950Protocol:
        return Z3950Protocol(self)

    def wait_idle(self) -> Deferred[None]:
        """Fires when no operation is in progress (none can be, yet)."""
        return succeed(None)

    def close_all(self) -> None:
        """Close every open association."""
        for association in list(self.associations):
            association.transport.loseConnection()
