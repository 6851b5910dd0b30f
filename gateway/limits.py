# -*- test-case-name: tests.gateway.test_limits -*-
"""Connection limits per source address and in total, for every listener.

Twisted's own ``LimitConnectionsByPeer`` is broken in current releases (it indexes an
``IPv4Address``), so this is ours: a wrapping factory that refuses a connection over either
limit by closing it at once, counts refusals for the metrics and logs them (at most once a
minute per address, so an attack cannot flood the log).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

log = Logger()


def address_host(address: IAddress) -> str:
    """The host part of a transport address (``"unix"`` for Unix sockets)."""
    return str(getattr(address, "host", None) or "unix")


class ConnectionLimitFactory(WrappingFactory):
    """Wraps a factory; refuses connections over ``max_total`` or ``max_per_host``."""

    def __init__(self, wrapped: Factory, *, max_total: int, max_per_host: int,
                 name: str, clock: Any) -> None:
        super().__init__(wrapped)
        self.noisy = False
        self.max_total = max_total
        self.max_per_host = max_per_host
        self.name = name
        self._clock = clock
        self.per_host: Counter[str] = Counter()
        self.refused = 0
        self._last_logged: dict[str, float] = {}

    def buildProtocol(self, addr: IAddress) -> Protocol | None:
        host = address_host(addr)
        total = sum(self.per_host.values())
        if total >= self.max_total or self.per_host[host] >= self.max_per_host:
            self.refused += 1
            now = self._clock.seconds()
            if now - self._last_logged.get(host, -3600.0) >= 60:
                self._last_logged[host] = now
                log.warn("{listener}: connection from {host} refused: limit reached "
                         "({count} from this host, {total} in total)", listener=self.name,
                         host=host, count=self.per_host[host], total=total)
            return None
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self.per_host[host] += 1
            protocol._limit_host = host  # type: ignore[attr-defined]
        return protocol

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        host = getattr(p, "_limit_host", None)
        if host is not None:
            self.per_host[host] -= 1
            if self.per_host[host] <= 0:
                del self.per_host[host]
        super().unregisterProtocol(p)

    @property
    def open_connections(self) -> int:
        """Connections currently open through this listener."""
        return sum(self.per_host.values())
