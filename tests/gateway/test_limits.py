# -*- test-case-name: tests.gateway.test_limits -*-
"""Connection limits per source address and in total."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from gateway.listeners.limits import ConnectionLimitFactory


def connect(factory: ConnectionLimitFactory, host: str):
    address = IPv4Address("TCP", host, 40000)
    protocol = factory.buildProtocol(address)
    if protocol is not None:
        protocol.makeConnection(StringTransport(peerAddress=address))
    return protocol


def test_per_host_and_total_limits() -> None:
    """A host over its share is refused while others still connect, up to the total."""
    factory = ConnectionLimitFactory(Factory.forProtocol(Protocol), max_total=3,
                                     max_per_host=2, name="test", clock=Clock())
    a1, a2 = connect(factory, "192.0.2.1"), connect(factory, "192.0.2.1")
    assert a1 is not None and a2 is not None
    assert connect(factory, "192.0.2.1") is None
    assert connect(factory, "192.0.2.2") is not None
    assert connect(factory, "192.0.2.3") is None  # total reached
    assert factory.refused == 2 and factory.open_connections == 3


def test_closing_frees_the_slot() -> None:
    """When a connection closes its host may connect again."""
    factory = ConnectionLimitFactory(Factory.forProtocol(Protocol), max_total=10,
                                     max_per_host=1, name="test", clock=Clock())
    first = connect(factory, "192.0.2.1")
    assert connect(factory, "192.0.2.1") is None
    first.connectionLost(Failure(ConnectionDone()))
    assert factory.open_connections == 0 and not factory.per_host
    assert connect(factory, "192.0.2.1") is not None


def test_limits_can_change_at_run_time() -> None:
    """A reload that raises the limit admits more connections at once."""
    factory = ConnectionLimitFactory(Factory.forProtocol(Protocol), max_total=1,
                                     max_per_host=1, name="test", clock=Clock())
    connect(factory, "192.0.2.1")
    assert connect(factory, "192.0.2.1") is None
    factory.max_total = factory.max_per_host = 2
    assert connect(factory, "192.0.2.1") is not None


def test_connection_rate_per_host() -> None:
    """Connections arriving faster than the rate are refused; the bucket refills with time."""
    clock = Clock()
    factory = ConnectionLimitFactory(Factory.forProtocol(Protocol), max_total=100,
                                     max_per_host=100, name="test", clock=clock,
                                     max_rate_per_host=5.0)
    accepted = [connect(factory, "192.0.2.1") is not None for _ in range(15)]
    assert accepted.count(True) == 10  # the burst is twice the rate
    assert connect(factory, "192.0.2.2") is not None  # other hosts are unaffected
    clock.advance(1.0)
    assert [connect(factory, "192.0.2.1") is not None for _ in range(6)].count(True) == 5


def test_rate_limiter_forgets_idle_hosts() -> None:
    """The limiter's memory stays bounded under a flood of distinct addresses."""
    from gateway.listeners.limits import RateLimiter

    clock = Clock()
    limiter = RateLimiter(10.0, 20.0, clock)
    for n in range(10_005):
        limiter.allow(f"198.51.{n // 256}.{n % 256}")
    clock.advance(5)
    limiter.allow("192.0.2.9")
    assert len(limiter._buckets) < 100


class _Recording(Protocol):
    def __init__(self) -> None:
        self.reasons: list[Failure] = []

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reasons.append(reason)


def test_the_listeners_own_protocol_gets_the_connection() -> None:
    """No wrapper between transport and protocol; losing the connection frees the slot once
    and reaches the protocol's own connectionLost with its reason, every time it is called."""
    wrapped = Factory.forProtocol(_Recording)
    factory = ConnectionLimitFactory(wrapped, max_total=10, max_per_host=1, name="test",
                                     clock=Clock())
    protocol = connect(factory, "192.0.2.1")
    assert type(protocol) is _Recording and protocol.factory is wrapped
    assert isinstance(protocol.transport, StringTransport)
    reason = Failure(ConnectionDone())
    protocol.connectionLost(reason)
    protocol.connectionLost(reason)
    assert protocol.reasons == [reason, reason]
    assert factory.open_connections == 0 and not factory.per_host
    assert connect(factory, "192.0.2.1") is not None and factory.open_connections == 1


def test_start_and_stop_reach_the_listeners_factory() -> None:
    """Listening starts and stops the wrapped factory (the Z39.50 and HTTP factories' hooks)."""
    calls: list[str] = []

    class Wrapped(Factory):
        def startFactory(self) -> None:
            calls.append("start")

        def stopFactory(self) -> None:
            calls.append("stop")

    factory = ConnectionLimitFactory(Wrapped(), max_total=1, max_per_host=1, name="test",
                                     clock=Clock())
    factory.doStart()
    factory.doStop()
    assert calls == ["start", "stop"]
