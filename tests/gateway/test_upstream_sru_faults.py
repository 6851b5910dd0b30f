"""The SRU upstream when the upstream misbehaves: down, slow, garbage, oversize, cut off, and
its own diagnostics; each a domain error within the configured time, counted in the state.

The misbehaving servers are real sockets on loopback (Twisted servers written here for the
one fault each shows); the diagnostics come from Koha's Zebra itself, and the last tests run
the daemon in front of a stopped upstream: the broker gets a Bib-1 diagnostic, NCIP still
answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import Site

from gateway.backends.upstream.sru.catalogue import UpstreamSruCatalogue
from gateway.backends.upstream.sru.client import SruClient
from gateway.backends.upstream.sru.reader import UpstreamGarbage
from gateway.backends.upstream.sru.settings import read_settings
from gateway.domain.catalogue import (
    CatalogueUnavailable,
    SortField,
    SortKey,
    TimeBudgetExceeded,
    UnsupportedCombination,
    UnsupportedIndex,
    UnsupportedSort,
)
from gateway.domain.query import IdentifierTerm, WordTerm
from tests.daemon import start_daemon
from tests.gateway.test_upstream_holdings_koha import (  # noqa: F401 (the fixture)
    KohaZebra,
    koha_zebra,
)
from tests.gateway.test_upstream_sru_koha import sru_config
from tests.z3950_clients import YAZ_CLIENT, need, steps, yaz_client

GARDENS = WordTerm("title", "gardens")


def catalogue(url: str, **settings: Any) -> UpstreamSruCatalogue:
    table = {"base_url": url, "timeout": 0.5, "connect_timeout": 0.5, **settings}
    parsed = read_settings(table, "backend.sru")
    client = SruClient(reactor, parsed.base_url, timeout=parsed.timeout,
                       connect_timeout=parsed.connect_timeout,
                       max_response_bytes=parsed.max_response_bytes)
    return UpstreamSruCatalogue(client, parsed, frozenset(table.get("indexes", {})))


async def failure_of(d: Deferred[Any]) -> BaseException:
    try:
        await d
    except Exception as e:  # what the catalogue raised is the subject of the test
        return e
    raise AssertionError("no failure")


class _Silent(protocol.Protocol):
    """Accepts and never answers (or answers only part of the headers)."""

    def __init__(self, partial: bytes = b"", close: bool = False) -> None:
        self.partial = partial
        self.close = close

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.partial and self.transport is not None:
            self.transport.write(self.partial)
            self.partial = b""
            if self.close:
                self.transport.loseConnection()


def listen(factory: Any) -> tuple[IListeningPort, str]:
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    address: Any = port.getHost()
    return port, f"http://127.0.0.1:{address.port}/db"


class _Answer(Resource):
    isLeaf = True

    def __init__(self, body: bytes, code: int = 200) -> None:
        super().__init__()
        self.body, self.code = body, code

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", b"text/xml")
        return self.body


@pytest.fixture
def ports() -> Iterator[list[IListeningPort]]:
    opened: list[IListeningPort] = []
    yield opened
    for port in opened:
        pytest_twisted.blockon(port.stopListening())


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest_twisted.ensureDeferred
async def test_down_is_unavailable() -> None:
    cat = catalogue(f"http://127.0.0.1:{closed_port()}/db")
    error = await failure_of(cat.search(GARDENS))
    assert isinstance(error, CatalogueUnavailable) and "cannot be reached" in str(error)
    assert cat.health()["status"] == "down"
    assert cat.client.state.calls == {"searchRetrieve:unreachable": 1}


@pytest.mark.parametrize("partial", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 900\r\n\r\n<a"])
@pytest_twisted.ensureDeferred
async def test_slow_is_a_spent_time_budget(ports: list[IListeningPort], partial: bytes) -> None:
    port, url = listen(protocol.ServerFactory.forProtocol(lambda: _Silent(partial)))
    ports.append(port)
    cat = catalogue(url)
    started = time.monotonic()
    error = await failure_of(cat.search(GARDENS))
    elapsed = time.monotonic() - started
    assert isinstance(error, TimeBudgetExceeded), error
    assert 0.4 <= elapsed < 3.0
    assert cat.client.state.calls == {"searchRetrieve:timeout": 1}
    assert cat.health()["status"] == "down"


@pytest_twisted.ensureDeferred
async def test_closed_mid_answer(ports: list[IListeningPort]) -> None:
    port, url = listen(protocol.ServerFactory.forProtocol(lambda: _Silent(
        b"HTTP/1.1 200 OK\r\nContent-Length: 900\r\n\r\n<zs:searchRetrieveResp", close=True)))
    ports.append(port)
    error = await failure_of(catalogue(url).search(GARDENS))
    assert isinstance(error, CatalogueUnavailable) and not isinstance(error, TimeBudgetExceeded)


@pytest.mark.parametrize(("body", "code", "says"), [
    (b"\x00\x01 not xml at all", 200, "not XML"),
    (b"<html><body>Bad gateway</body></html>", 200, "'html'"),
    (b"<searchRetrieveResponse><numberOfRecords>many</numberOfRecords>"
     b"</searchRetrieveResponse>", 200, "not a count"),
    (b"<searchRetrieveResponse/>", 500, "HTTP 500"),
    (b"<x>" + b"a" * 300_000 + b"</x>", 200, "larger than"),
])
@pytest_twisted.ensureDeferred
async def test_garbage_is_unavailable(ports: list[IListeningPort], body: bytes, code: int,
                                      says: str) -> None:
    port, url = listen(Site(_Answer(body, code)))
    ports.append(port)
    cat = catalogue(url, max_response_bytes=100_000)
    error = await failure_of(cat.search(GARDENS))
    assert isinstance(error, CatalogueUnavailable) and says in str(error), error
    assert cat.health()["status"] == "down"


@pytest_twisted.ensureDeferred
async def test_entities_are_not_resolved(ports: list[IListeningPort], tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>'
            '<searchRetrieveResponse><numberOfRecords>1</numberOfRecords><records><record>'
            '<recordData><record xmlns="http://www.loc.gov/MARC21/slim"><leader>00000nam a2200000'
            ' i 4500</leader><controlfield tag="001">&x;</controlfield></record></recordData>'
            '</record></records></searchRetrieveResponse>').encode()
    port, url = listen(Site(_Answer(body)))
    ports.append(port)
    cat = catalogue(url, profile="generic-opac")
    found = await cat.search(GARDENS)
    records = await cat.fetch(found, 1, 1)
    assert all(r is None or b"TOP-SECRET" not in r.marc for r in records)


@pytest_twisted.ensureDeferred
async def test_recovers_after_the_upstream_is_back(koha_zebra: KohaZebra) -> None:  # noqa: F811
    cat = catalogue(f"http://127.0.0.1:{closed_port()}/biblios")
    await failure_of(cat.search(GARDENS))
    assert cat.health()["status"] == "down"
    cat.client.base_url = f"http://127.0.0.1:{koha_zebra.port}/biblios"
    assert (await cat.search(GARDENS)).count == 1
    assert cat.health()["status"] == "up"


@pytest_twisted.ensureDeferred
async def test_upstream_diagnostics(koha_zebra: KohaZebra) -> None:  # noqa: F811
    url = f"http://127.0.0.1:{koha_zebra.port}/biblios"
    cat = catalogue(url, indexes={"title": "dc.nosuchindex"},
                    sort_keys={"title": "dc.title"})
    error = await failure_of(cat.search(GARDENS))
    assert isinstance(error, UnsupportedIndex) and "upstream SRU diagnostic 16" in str(error)
    found = await cat.search(WordTerm("author", "okafor"))
    error = await failure_of(cat.sort(found, [SortKey(SortField.TITLE)]))
    assert isinstance(error, UnsupportedSort) and "upstream SRU diagnostic" in str(error)
    error = await failure_of(cat.sort(found, [SortKey(SortField.YEAR)]))
    assert isinstance(error, UnsupportedSort) and "not configured" in str(error)
    assert cat.health()["status"] == "up"   # a diagnostic is an answer
    assert not isinstance(error, UpstreamGarbage)


def test_broker_gets_a_diagnostic_and_ncip_stays_up(tmp_path: Path) -> None:
    """The daemon in front of an upstream that is down: Bib-1 109 (database unavailable) for
    the search, the admin health shows the upstream down, NCIP still answers."""
    need(("yaz-client", YAZ_CLIENT))
    daemon = start_daemon(tmp_path, sru_config(closed_port(), timeout="1"))
    try:
        output = yaz_client(tmp_path, daemon.ports["z3950"], ["find @attr 1=4 gardens"])
        search = [s for s in steps(output) if s.request.startswith("searchRequest")][0]
        assert [code for code, _ in search.diagnostics] == [109], output
        health = daemon.admin_health()
        assert health["upstream"]["catalogue"]["status"] == "down"
        status, _ = daemon.get("/healthz")
        assert status == 200
        status, body = daemon.post(b"<not-ncip/>")
        assert status in (200, 400) and body  # answered by the NCIP listener
    finally:
        daemon.kill()


@pytest_twisted.ensureDeferred
async def test_index_names_from_the_explain_record(koha_zebra: KohaZebra) -> None:  # noqa: F811
    """``index_source = "explain"``: Koha's explain record lists dc.title but not bath.isbn
    (which its pqf.properties would map), so ISBN searches are refused before asking, unless
    the configuration names the index itself."""
    url = f"http://127.0.0.1:{koha_zebra.port}/biblios"
    cat = catalogue(url, index_source="explain", version="1.2")
    assert (await cat.search(GARDENS)).count == 1
    error = await failure_of(cat.search(IdentifierTerm("isbn", "9781921010019")))
    assert isinstance(error, UnsupportedIndex)
    assert cat.client.state.calls.get("explain:ok") == 1
    named = catalogue(url, index_source="explain", indexes={"isbn": "dc.isbn"})
    assert (await named.search(IdentifierTerm("isbn", "9781921010019"))).count == 1


@pytest_twisted.ensureDeferred
async def test_adjacency_refused_by_koha(koha_zebra: KohaZebra) -> None:  # noqa: F811
    """Koha's CQL has no ``adj``: the server's diagnostic 19 is a domain error, not 0 hits."""
    cat = catalogue(f"http://127.0.0.1:{koha_zebra.port}/biblios", phrase_relation="adj")
    error = await failure_of(cat.search(WordTerm("title", "history of", phrase=True)))
    assert isinstance(error, UnsupportedCombination) and "diagnostic 19" in str(error)


class _Counting(Resource):
    """Answers an empty search; remembers each request's client port."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.client_ports: list[int] = []

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        self.client_ports.append(request.getClientAddress().port)
        return (b"<searchRetrieveResponse><numberOfRecords>4</numberOfRecords>"
                b"</searchRetrieveResponse>")


@pytest_twisted.ensureDeferred
async def test_connections_are_pooled(ports: list[IListeningPort]) -> None:
    counting = _Counting()
    port, url = listen(Site(counting))
    ports.append(port)
    cat = catalogue(url)
    for _ in range(5):
        assert (await cat.search(GARDENS)).count == 4
    assert len(counting.client_ports) == 5 and len(set(counting.client_ports)) == 1
    await cat.client.close()


@pytest_twisted.ensureDeferred
async def test_requests_in_flight_are_bounded(ports: list[IListeningPort]) -> None:
    """With max_in_flight 2, the third search waits its turn (and its wait counts against its
    time): until the first time out, the silent server has seen two connections, not five."""
    seen: list[protocol.Protocol] = []

    def build() -> protocol.Protocol:
        silent = _Silent()
        seen.append(silent)
        return silent

    port, url = listen(protocol.ServerFactory.forProtocol(build))
    ports.append(port)
    cat = catalogue(url, max_in_flight=2)
    parsed = read_settings({"base_url": url, "max_in_flight": 2, "timeout": 0.5},
                           "backend.sru")
    cat.client = SruClient(reactor, url, timeout=0.5, max_in_flight=parsed.max_in_flight)
    searches = [cat.search(GARDENS) for _ in range(5)]
    before_any_timeout = await task.deferLater(reactor, 0.3, lambda: len(seen))
    errors = [await failure_of(d) for d in searches]
    assert all(isinstance(e, TimeBudgetExceeded) for e in errors)
    assert before_any_timeout == 2
