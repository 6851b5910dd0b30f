"""The SRU HTTP listener: routing, GET/POST, the time budget, rate limit, peers, the audit row,
the body limit over a real socket, and the ``[sru]`` configuration rules."""

from __future__ import annotations

import io
import ipaddress
import socket
from dataclasses import replace
from typing import Any

import pytest
from lxml import etree
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from gateway.config import Config, ConfigErrors, Peer, PeerAuth, SruSettings, parse_config
from gateway.listeners.sru_http import SruResource
from gateway.sru.service import Outcome, SruService
from gateway.storage.audit_log import AuditEntry
from gateway.testing import FakeCatalogue
from tests.daemon import REPO, start_daemon

DIAG = "{http://www.loc.gov/zing/srw/diagnostic/}"


class Recording:
    """A handler answering with a fixed document (or never), remembering its calls."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.seen: list[tuple[list[tuple[str, str]], Peer | None]] = []

    def handle(self, parameters: list[tuple[str, str]], *, peer: Peer | None,
               host: str = "", port: int = 0) -> Deferred[Outcome]:
        self.seen.append((parameters, peer))
        if self.hang:
            return Deferred()
        return succeed(Outcome(b"<ok/>", "searchRetrieve", "ok", "q", 3))


class Audit:
    def __init__(self) -> None:
        self.rows: list[AuditEntry] = []

    def record(self, entry: AuditEntry) -> None:
        self.rows.append(entry)


PEERS = (
    Peer("broker", auth=PeerAuth("url-token", token="s3cret"), holdings_tag="952"),
    Peer("campus", allow_from=(ipaddress.ip_network("192.0.2.0/24"),)),
)


def make(handler: Any, config: Config | None = None, audit: Audit | None = None,
         clock: Clock | None = None) -> SruResource:
    config = config or Config(peers=PEERS)
    return SruResource(handler, config=lambda: config, clock=clock or Clock(), audit=audit,
                       keep_bodies=lambda: True)


def call(resource: SruResource, path: bytes, *, method: bytes = b"GET", body: bytes = b"",
         headers: dict[bytes, bytes] | None = None, host: str = "127.0.0.1") -> Any:
    request: Any = DummyRequest(path.split(b"?")[0].strip(b"/").split(b"/"))
    request.method = method
    request.uri = path
    request.path = path.split(b"?")[0]
    request.content = io.BytesIO(body)
    request.client = type("Address", (), {"host": host, "port": 1234})()
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    request.getClientAddress = lambda: request.client
    result = resource.render(request)
    if result != NOT_DONE_YET:
        request.write(result)
        request.finish()
    return request


def test_get_reaches_handler_and_is_audited() -> None:
    handler, audit = Recording(), Audit()
    request = call(make(handler, audit=audit), b"/sru?version=1.2&query=river")
    assert request.responseCode == 200 and b"".join(request.written) == b"<ok/>"
    assert request.responseHeaders.getRawHeaders(b"content-type") == [
        b"text/xml; charset=utf-8"]
    assert handler.seen == [([("version", "1.2"), ("query", "river")], None)]
    [row] = audit.rows
    assert (row.protocol, row.operation, row.outcome, row.remote, row.notes) == (
        "sru", "searchRetrieve", "ok", "127.0.0.1", "hits=3")
    assert row.request_body == "q"


def test_post_form() -> None:
    handler = Recording()
    call(make(handler), b"/sru?version=1.1", method=b"POST", body=b"query=dc.title%3Driver",
         headers={b"content-type": b"application/x-www-form-urlencoded"})
    assert handler.seen[0][0] == [("version", "1.1"), ("query", "dc.title=river")]


def test_post_other_body_is_a_diagnostic() -> None:
    handler = Recording()
    request = call(make(handler), b"/sru", method=b"POST", body=b"<xml/>",
                   headers={b"content-type": b"text/xml"})
    root = etree.fromstring(b"".join(request.written))
    assert root.findtext(f".//{DIAG}uri") == "info:srw/diagnostic/1/6"
    assert handler.seen == []


def test_routing_and_methods() -> None:
    resource = make(Recording())
    assert call(resource, b"/other").responseCode == 404
    assert call(resource, b"/sru/a/b").responseCode == 404
    refused = call(resource, b"/sru", method=b"DELETE")
    assert refused.responseCode == 405
    assert refused.responseHeaders.getRawHeaders(b"allow") == [b"GET, POST"]
    assert call(resource, b"/healthz").responseCode == 200


def test_peers_by_url_token_and_network() -> None:
    handler = Recording()
    resource = make(handler)
    call(resource, b"/sru/s3cret?query=x")
    call(resource, b"/sru?query=x", host="192.0.2.7")
    call(resource, b"/sru?query=x", host="198.51.100.1")
    assert [peer.name if peer else None for _, peer in handler.seen] == [
        "broker", "campus", None]
    bad = call(resource, b"/sru/wrong?query=x")
    assert etree.fromstring(b"".join(bad.written)).findtext(f".//{DIAG}uri") == \
        "info:srw/diagnostic/1/3"
    assert len(handler.seen) == 3


def test_time_budget_answers_diagnostic_2() -> None:
    clock, audit = Clock(), Audit()
    config = Config(sru=SruSettings(request_timeout=5.0))
    request = call(make(Recording(hang=True), config, audit, clock), b"/sru?query=x")
    assert not request.finished
    clock.advance(5.0)
    assert request.finished
    root = etree.fromstring(b"".join(request.written))
    assert root.findtext(f".//{DIAG}uri") == "info:srw/diagnostic/1/2"
    assert audit.rows[0].outcome == "diagnostic 2"


def test_rate_limit() -> None:
    config = Config(sru=SruSettings(max_requests_per_second_per_peer=1.0))
    resource = make(Recording(), config)
    codes = [call(resource, b"/sru?query=x").responseCode for _ in range(4)]
    assert codes[0] == 200 and codes[-1] == 429


def test_service_with_fake_catalogue_uses_peer_layout() -> None:
    """The peer's holdings layout reaches the MARCXML record (952 for this peer)."""
    config = Config(peers=PEERS)
    service = SruService(FakeCatalogue(), config=lambda: config, clock=Clock())
    outcomes: list[Outcome] = []
    service.handle([("query", "rec.id=rec0001")], peer=PEERS[0]).addCallback(outcomes.append)
    [outcome] = outcomes
    assert outcome.hits == 1 and b'tag="952"' in outcome.body and b'tag="852"' not in outcome.body


def test_config_rules() -> None:
    assert parse_config({}).sru.listen == ()
    config = parse_config({"sru": {"listen": ["tcp:8082"], "path": "/s"}})
    assert config.sru.listen == ("tcp:8082",) and config.sru.path == "/s"
    with pytest.raises(ConfigErrors) as caught:
        parse_config({"sru": {"path": "s", "maximum_records": 0, "default_maximum_records": 5,
                              "listen": ["nonsense:x"], "bogus": 1}})
    text = str(caught.value)
    for path in ("sru.path", "sru.maximum_records", "sru.default_maximum_records",
                 "sru.listen", "sru.bogus"):
        assert path in text


def test_body_limit_over_a_socket(tmp_path: Any) -> None:
    """A POST over ``sru.max_body_size`` gets 413 from the running daemon."""
    text = (REPO / "config" / "interlend.toml").read_text().replace(
        'listen = ["tcp:8082:interface=127.0.0.1"]',
        'listen = ["tcp:0:interface=127.0.0.1"]\nmax_body_size = 1000')
    daemon = start_daemon(tmp_path, text)
    try:
        port = daemon.ports["sru"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /sru HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\n")
            reply = conn.recv(1000)
        assert reply.startswith(b"HTTP/1.1 413")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /sru?operation=explain&version=1.2 HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"explainResponse" in data
    finally:
        daemon.kill()


def test_replace_keeps_sru_settings() -> None:
    config = replace(Config(), sru=SruSettings(listen=("tcp:1",)))
    assert config.sru.listen == ("tcp:1",)
