# -*- test-case-name: tests.gateway.test_z3950_limits -*-
"""The Z39.50 listener's defences of issue 12, over StringTransport and a Clock: the deadline
of a whole PDU, the memory budget of partial PDUs, rate-limited log lines, IPv4-mapped client
addresses. The same attacks over the network: tests/robustness/test_z3950_attacks.py."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from gateway.config import Peer
from gateway.listeners.limits import LogLimiter, MemoryBudget, source_address
from gateway.testing import FakeGateway
from protocols.z3950 import client, codec
from protocols.z3950.errors import CloseReason
from tests.gateway.test_z3950_server import Connection, body
from tests.log_observers import log_observer


@pytest.fixture
def logged() -> Any:
    lines: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        fmt = event.get("log_format")
        if fmt:
            lines.append(fmt)

    globalLogPublisher.addObserver(log_observer(observer))
    yield lines
    globalLogPublisher.removeObserver(log_observer(observer))


def _sharing(factory: Any, gateway: FakeGateway) -> Connection:
    """A new connection through an existing factory (one listener, several clients)."""
    conn = Connection(gateway)
    conn.factory = factory
    conn.protocol = factory.buildProtocol(None)
    conn.protocol.makeConnection(conn.transport)
    return conn


def test_trickled_pdu_is_cut_at_its_deadline() -> None:
    """A search PDU sent one byte a second is closed with Close(lackOfActivity) pdu_timeout
    seconds after its first byte, although every byte moved it on; a PDU that arrives whole
    within the deadline is answered and leaves no deadline running."""
    conn = Connection(FakeGateway(pdu_timeout=5.0))
    conn.init()
    request = codec.encode_pdu(client.search_request("river", result_set_name="1"))
    assert body(conn.ask(client.search_request("river", result_set_name="1")))
    assert conn.protocol._pdu_timer is None
    for byte in range(4):
        assert conn.send(request[byte:byte + 1]) == []
        conn.clock.advance(1.0)
    assert not conn.closed
    conn.protocol.dataReceived(request[4:5])
    conn.clock.advance(1.0)
    [close] = conn.take()
    assert codec.read_close(close).reason == CloseReason.lackOfActivity
    assert conn.closed


def test_pdu_deadline_before_init_drops_the_connection() -> None:
    """Before Init (no association yet) an Init trickled past the deadline is simply dropped,
    well before the longer init_timeout."""
    conn = Connection(FakeGateway(pdu_timeout=3.0, init_timeout=60.0))
    init = codec.encode_pdu(client.init_request())
    conn.protocol.dataReceived(init[:3])
    conn.clock.advance(3.0)
    assert conn.closed and conn.take() == []


def test_pdu_deadline_waits_while_an_operation_runs() -> None:
    """Reading is paused while a catalogue call runs; a partial PDU's deadline that falls
    meanwhile starts again rather than cutting the client off for the server's slowness."""
    gateway = FakeGateway(pdu_timeout=2.0)
    gateway.fake_catalogue.hold = True
    conn = Connection(gateway)
    conn.init()
    search = codec.encode_pdu(client.search_request("river", result_set_name="1"))
    conn.protocol.dataReceived(search + search[:3])   # one whole search, one begun
    conn.clock.advance(2.5)                             # the deadline falls during the search
    assert not conn.closed
    gateway.fake_catalogue.held.pop(0).callback(None)
    conn.protocol.dataReceived(search[3:])
    gateway.fake_catalogue.held.pop(0).callback(None)
    conn.clock.advance(10.0)
    assert [codec.pdu_arm(p) for p in conn.take()] == ["searchResponse", "searchResponse"]
    assert conn.protocol._pdu_timer is None


def test_partial_pdus_share_a_memory_budget() -> None:
    """Partial PDUs of every connection are charged to one budget: the connection whose PDU
    would pass it gets Close(resources); closing a connection gives its bytes back."""
    gateway = FakeGateway(memory_budget=100_000, max_pdu_size=70_000)
    first = Connection(gateway)
    second = _sharing(first.factory, gateway)
    for conn in (first, second):
        conn.init()
    header = b"\xb6\x83\x00\xea\x60" + b"\x04\x83\x00\xea\x5b"   # declares 60,000 bytes
    first.send(header + b"\0" * 50_000)
    assert first.factory.memory.used == 50_010
    [close] = second.send(header + b"\0" * 50_000)
    assert codec.read_close(close).reason == CloseReason.resources and second.closed
    first.protocol.connectionLost(None)
    assert first.factory.memory.used == 0
    assert first.factory.memory.refused == 1


def test_framing_errors_are_logged_within_a_rate_limit(logged: list[str]) -> None:
    """100 malformed PDUs from as many connections: each is closed, but at most 10 framing
    lines a minute reach the log; the next line allowed says how many were dropped."""
    gateway = FakeGateway()
    factory = Connection(gateway).factory
    for _ in range(100):
        conn = _sharing(factory, gateway)
        conn.protocol.dataReceived(b"\xb4\x88" + b"\xff" * 8)
        assert conn.closed
    framing = [line for line in logged if "framing error" in line]
    assert len(framing) == 10
    gateway.reactor.advance(60)
    conn = _sharing(factory, gateway)
    conn.protocol.dataReceived(b"\xb4\x88" + b"\xff" * 8)
    assert "similar lines not logged" in logged[-1]


def test_log_limiter_counts_what_it_drops() -> None:
    """LogLimiter: a burst of per_minute lines, then one every 60/per_minute seconds, each
    reporting how many were dropped before it."""
    clock = Clock()
    limiter = LogLimiter(clock, per_minute=2)
    assert [limiter.allow("k") for _ in range(5)] == [0, 0, None, None, None]
    clock.advance(30)
    assert limiter.allow("k") == 3
    assert limiter.allow("other") == 0


def test_memory_budget_take_and_give() -> None:
    budget = MemoryBudget(10)
    assert budget.take(6) and not budget.take(5) and budget.take(4)
    budget.give(10)
    assert budget.used == 0 and budget.refused == 1


@pytest.mark.parametrize("host,plain", [
    ("::ffff:192.0.2.7", "192.0.2.7"), ("::FFFF:10.1.2.3", "10.1.2.3"),
    ("192.0.2.7", "192.0.2.7"), ("2001:db8::1", "2001:db8::1"), ("::ffff:zz", "::ffff:zz"),
])
def test_source_address(host: str, plain: str) -> None:
    assert source_address(host) == plain


def test_allow_from_sees_mapped_ipv4_clients() -> None:
    """A peer allowed from 192.0.2.0/24 logs in from ::ffff:192.0.2.7 (an IPv4 client of a
    dual-stack listener), and not from ::ffff:198.51.100.7."""
    import ipaddress

    peer = Peer(name="zpeer", z3950_user="u", z3950_password="p",
                allow_from=(ipaddress.ip_network("192.0.2.0/24"),))
    outcomes = []
    for host in ("::ffff:192.0.2.7", "::ffff:198.51.100.7"):
        conn = Connection(FakeGateway(peers=[peer], require_auth=True), host=host)
        reply = conn.init(authentication=codec.Authentication("open", "u", "p"))
        outcomes.append(bool(body(reply)["result"]))
    assert outcomes == [True, False]


def test_limits_are_validated_with_their_paths() -> None:
    """The new limits have safe defaults and are checked at start-up like every other key."""
    from gateway.config import ConfigErrors, parse_config

    config = parse_config({})
    assert (config.z3950.max_term_length, config.z3950.max_term_words) == (1024, 32)
    assert config.z3950.memory_budget >= 2 * config.z3950.max_pdu_size
    assert config.gateway.catalogue_readers == 1
    with pytest.raises(ConfigErrors) as errors:
        parse_config({"gateway": {"catalogue_readers": 0},
                      "z3950": {"operation_time_limit": 0, "pdu_timeout": 0,
                                "max_term_words": -1, "memory_budget": 1024,
                                "max_scan_step": "big"}})
    text = str(errors.value)
    for path in ("gateway.catalogue_readers", "z3950.operation_time_limit", "z3950.pdu_timeout",
                 "z3950.max_term_words", "z3950.memory_budget", "z3950.max_scan_step"):
        assert path in text, path
