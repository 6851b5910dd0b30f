# -*- test-case-name: tests.gateway.test_http -*-
"""The NCIP HTTP layer: routing, methods, the time budget, and body limits over real sockets."""

from __future__ import annotations

import io
import socket
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyRequest

from gateway.listeners.ncip_http import NcipRequestContext, NcipResource
from tests.daemon import start_daemon


class RecordingHandler:
    """Answers with a fixed body, or never (``hang``), and remembers what it saw."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.seen: list[tuple[bytes, NcipRequestContext]] = []

    def handle(self, body: bytes, context: NcipRequestContext) -> Deferred[bytes]:
        self.seen.append((body, context))
        return Deferred() if self.hang else succeed(b"<reply/>")

    def timeout_reply(self, body: bytes, context: NcipRequestContext) -> bytes:
        return b"<timeout/>"


class FakeRequest(DummyRequest):
    """Twisted's stand-in request, with the two attributes the tests set (and NcipResource
    reads) declared: DummyRequest leaves them untyped."""

    path: bytes
    content: io.BytesIO


def render(resource: NcipResource, request: FakeRequest) -> bytes | int:
    """``resource.render(request)``: DummyRequest is Twisted's stand-in for a Request, but is
    not typed as one."""
    return resource.render(cast(Request, request))


def make(handler: RecordingHandler, clock: Clock) -> NcipResource:
    return NcipResource(handler, path="/ncip", request_timeout=25.0,
                        health=lambda: {"status": "ok"}, clock=clock)


def post(resource: NcipResource, path: bytes, body: bytes,
         headers: dict[bytes, bytes] | None = None) -> FakeRequest:
    request = FakeRequest(path.strip(b"/").split(b"/"))
    request.method = b"POST"
    request.path = path
    request.content = io.BytesIO(body)
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    result = render(resource, request)
    assert result == NOT_DONE_YET
    return request


def test_post_reaches_handler_with_context() -> None:
    """A POST to the NCIP path is answered 200 application/xml with the handler's bytes."""
    handler, clock = RecordingHandler(), Clock()
    request = post(make(handler, clock), b"/ncip", b"<x/>",
                   {b"authorization": b"Bearer abc", b"content-type": b"text/plain"})
    assert request.finished and b"".join(request.written) == b"<reply/>"
    assert request.responseCode == 200
    assert request.responseHeaders.getRawHeaders(b"content-type") == [
        b"application/xml; charset=utf-8"]
    body, context = handler.seen[0]
    assert body == b"<x/>" and context.bearer_token == "abc" and context.url_token is None


def test_url_token_path() -> None:
    """/ncip/<token> passes the token; deeper paths are not ours."""
    handler, clock = RecordingHandler(), Clock()
    resource = make(handler, clock)
    post(resource, b"/ncip/s3cr3t", b"<x/>")
    assert handler.seen[0][1].url_token == "s3cr3t"
    request = FakeRequest([b"ncip", b"a", b"b"])
    request.method, request.path = b"POST", b"/ncip/a/b"
    assert render(resource, request) == b"not found\n" and request.responseCode == 404


def test_request_over_budget_gets_timeout_reply() -> None:
    """A handler that does not answer within the budget: the timeout reply, still HTTP 200."""
    handler, clock = RecordingHandler(hang=True), Clock()
    resource = make(handler, clock)
    request = post(resource, b"/ncip", b"<x/>")
    assert not request.finished and resource.in_flight == 1
    clock.advance(24.9)
    assert not request.finished
    clock.advance(0.2)
    assert request.finished and b"".join(request.written) == b"<timeout/>"
    assert request.responseCode == 200 and resource.in_flight == 0


def test_wait_idle_fires_when_requests_finish() -> None:
    """wait_idle (graceful stop) fires once the last request in flight is answered."""
    handler, clock = RecordingHandler(hang=True), Clock()
    resource = make(handler, clock)
    post(resource, b"/ncip", b"<x/>")
    idle = resource.wait_idle()
    assert not idle.called
    clock.advance(30)
    assert idle.called


def test_other_methods_are_405() -> None:
    """GET, PUT and friends on the NCIP path get 405 with Allow: POST."""
    resource = make(RecordingHandler(), Clock())
    for method in (b"GET", b"PUT", b"DELETE"):
        request = FakeRequest([b"ncip"])
        request.method, request.path = method, b"/ncip"
        render(resource, request)
        assert request.responseCode == 405
        assert request.responseHeaders.getRawHeaders(b"allow") == [b"POST"]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    d = start_daemon(tmp_path_factory.mktemp("http"))
    yield d
    d.kill()


def _raw(port: int, data: bytes, read_until_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)


@pytest.mark.slow
def test_declared_oversize_body_is_refused_before_it_is_sent(daemon) -> None:
    """Content-Length over the limit: 413 from the headers alone, the body never read."""
    reply = _raw(daemon.ports["ncip"], b"POST /ncip HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 104857600\r\n\r\n<NCIPMessage>")
    assert reply.startswith(b"HTTP/1.1 413")


@pytest.mark.slow
def test_streamed_oversize_body_is_cut_off(daemon) -> None:
    """A chunked body that passes the limit gets 413 and the connection is closed."""
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
    try:
        reply = _raw(daemon.ports["ncip"], b"POST /ncip HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + body)
    except ConnectionResetError:  # closed while we were still sending: also a refusal
        reply = b"HTTP/1.1 413"
    assert reply.startswith(b"HTTP/1.1 413")
    assert daemon.health()["status"] == "ok"


@pytest.mark.slow
def test_ncip_reply_is_xml_with_status_200(daemon) -> None:
    """Even a body that is not XML gets HTTP 200 with an NCIP Problem."""
    status, body = daemon.post(b"this is not xml")
    assert status == 200
    assert b"Invalid Message Syntax Error" in body


def test_requests_over_the_rate_get_429() -> None:
    """More NCIP requests a second from one address than allowed: 429 with Retry-After."""
    handler, clock = RecordingHandler(), Clock()
    resource = NcipResource(handler, path="/ncip", request_timeout=25.0,
                            health=lambda: {"status": "ok"}, clock=clock,
                            max_requests_per_second=2.0)
    codes = []
    for _ in range(6):
        request = FakeRequest([b"ncip"])
        request.method, request.path, request.content = b"POST", b"/ncip", io.BytesIO(b"<x/>")
        render(resource, request)
        codes.append(request.responseCode or 200)
    assert codes == [200] * 4 + [429] * 2
    assert resource.rate_limited == 2 and len(handler.seen) == 4
    clock.advance(1)
    request = FakeRequest([b"ncip"])
    request.method, request.path, request.content = b"POST", b"/ncip", io.BytesIO(b"<x/>")
    render(resource, request)
    assert request.responseCode in (None, 200)


# -- the arrival deadline (issue 12 point 6) ------------------------------------------------


def _channel(clock: Clock, handler: RecordingHandler, arrival: float = 2.0) -> tuple[Any, Any]:
    """A GatewaySite channel on a StringTransport, with ``clock`` as its reactor."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from gateway.listeners.ncip_http import GatewaySite

    site = GatewaySite(make(handler, clock), max_body_size=1024, idle_timeout=3.0,
                       request_arrival_timeout=arrival, reactor=clock)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
    protocol.makeConnection(transport)
    return protocol, transport


REQUEST = (b"POST /ncip HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n<a>b</a>")


def test_trickled_request_gets_408_at_the_deadline() -> None:
    """Bytes every second keep the idle timeout (3 s) from firing, but the request must have
    arrived 2 s after its first byte: then 408 and the connection closes."""
    clock, handler = Clock(), RecordingHandler()
    protocol, transport = _channel(clock, handler)
    for byte in REQUEST[:3]:       # at 0, 0.5 and 1 s
        protocol.dataReceived(bytes([byte]))
        clock.advance(0.5)
    assert not transport.disconnecting and transport.value() == b""
    protocol.dataReceived(REQUEST[3:4])
    clock.advance(0.5)             # 2 s after the first byte
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert transport.disconnecting and handler.seen == []
    assert protocol.factory.arrival_timeouts == 1


def test_keep_alive_requests_share_one_deadline_timer() -> None:
    """Requests arriving whole, one after another on a keep-alive connection, schedule no
    timer each (the deadline's timer is armed once); a request whose first byte comes after
    that timer was armed is still cut exactly at its own deadline, not the earlier one."""
    clock, handler = Clock(), RecordingHandler()
    protocol, transport = _channel(clock, handler)
    protocol.dataReceived(REQUEST)
    armed = len(clock.getDelayedCalls())
    for _ in range(20):          # (times in binary fractions: exact sums)
        protocol.dataReceived(REQUEST)
        clock.advance(0.0625)
    assert len(clock.getDelayedCalls()) == armed and len(handler.seen) == 21
    clock.advance(0.5)           # the timer was armed 1.75 s ago: it fires 0.25 s from now
    protocol.dataReceived(REQUEST[:5])
    clock.advance(1.75)          # past the first timer, before this request's deadline
    assert not transport.disconnecting and b"408" not in transport.value()
    clock.advance(0.25)          # 2 s after this request's first byte
    assert transport.value().count(b"HTTP/1.1 408 ") == 1 and transport.disconnecting
    assert protocol.factory.arrival_timeouts == 1


def test_a_lowered_deadline_applies_to_the_next_request() -> None:
    """A reload lowering ``request_arrival_timeout`` moves the timer armed for the old one:
    the next request is cut at its new, earlier deadline."""
    clock, handler = Clock(), RecordingHandler()
    protocol, transport = _channel(clock, handler, arrival=8.0)
    protocol.dataReceived(REQUEST)               # arms the timer for 8 s
    protocol.factory.request_arrival_timeout = 1.0
    protocol.dataReceived(REQUEST[:5])
    clock.advance(0.75)
    assert b"408" not in transport.value()
    clock.advance(0.25)
    assert transport.value().count(b"HTTP/1.1 408 ") == 1


def test_deadline_is_per_request_not_per_connection() -> None:
    """Requests that each arrive at once are served on one connection for longer than the
    deadline; time spent answering does not count."""
    clock, handler = Clock(), RecordingHandler()
    protocol, transport = _channel(clock, handler)
    for _ in range(5):
        protocol.dataReceived(REQUEST)
        clock.advance(1.5)
    assert len(handler.seen) == 5 and not transport.disconnecting
    assert transport.value().count(b"HTTP/1.1 200 ") == 5
