# -*- test-case-name: tests.gateway.test_http -*-
"""The NCIP HTTP listener: twisted.web with a body limit, method checks, a time budget and /healthz.

Transport concerns only. The NCIP body goes to a handler (``gateway.ncip.service``) that returns
the reply bytes; every NCIP-level outcome, errors included, is HTTP 200 with an NCIP body. HTTP
errors are kept for transport problems: 405 for a method other than POST, 413 for a body over the
limit (answered as soon as the headers say so, or as soon as a streamed body passes it).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.http import HTTPChannel, Request, _GenericHTTPChannelProtocol

from gateway.listeners.limits import RateLimiter
from gateway.listeners.resources import InFlight, url_token

log = Logger()

XML_CONTENT_TYPE = b"application/xml; charset=utf-8"


@dataclass(frozen=True)
class NcipRequestContext:
    """What the transport knows about an NCIP request: where it came from and its credentials."""

    remote_host: str
    url_token: str | None
    bearer_token: str | None = None
    content_type: str | None = None


class NcipHandler(Protocol):
    """Turns one NCIP request body into reply bytes (never fails: errors are NCIP Problems)."""

    def handle(self, body: bytes, context: NcipRequestContext) -> Deferred[bytes]: ...

    def timeout_reply(self, body: bytes, context: NcipRequestContext) -> bytes: ...


class LimitedRequest(server.Request):
    """A request that refuses bodies over the site's limit before buffering them."""

    _received = 0
    _rejected = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # NCIP bodies are XML, never HTML form submissions: do not let twisted.web parse the
        # Content-Type (it builds an email.message.EmailMessage per POST, ~14% of a LookupUser)
        # nor fill request.args from the body. Nothing here reads request.args.
        self._parsePOSTFormSubmission = False

    def _site(self) -> GatewaySite:
        """The site this request came in on (its body limit and counters)."""
        channel: Any = self.channel  # a DeadlineChannel: GatewaySite.protocol
        site: GatewaySite = channel.site
        return site

    def gotLength(self, length: int | None) -> None:
        limit = self._site().max_body_size
        if length is not None and length > limit:
            self._reject()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._rejected:
            return
        self._received += len(data)
        if self._received > self._site().max_body_size:
            self._reject()
            return
        super().handleContentChunk(data)

    def _reject(self) -> None:
        """Answer 413 at once and close: the rest of the body is never read or stored."""
        self._rejected = True
        self.content = io.BytesIO()  # type: ignore[assignment]
        site = self._site()
        site.body_too_large += 1
        log.warn("NCIP request body over {limit} bytes from {peer}: refused with 413",
                 limit=site.max_body_size, peer=_host(self.channel.transport))
        body = b"request body too large\n"
        transport = self.channel.transport
        if transport is None:
            return
        transport.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\n"
                        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        transport.loseConnection()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._rejected:
            return
        super().requestReceived(command, path, version)


def _host(transport: Any) -> str:
    try:
        return str(transport.getPeer().host)
    except Exception:
        return "?"


class DeadlineChannel(HTTPChannel):
    """An HTTP channel where each request must arrive whole (request line, headers and body)
    within the site's ``request_arrival_timeout`` of its first byte.

    The idle timeout restarts with every byte, so a client trickling one byte every few
    seconds would hold the connection for ever; this deadline does not move. Time spent
    handling a request (and pipelined bytes buffered meanwhile) does not count.

    The deadline is a time, and its timer is armed once per connection and moved only when it
    fires before the deadline of the request then arriving: requests on a keep-alive
    connection do not each schedule and cancel a timer.
    """

    _arrival: Any = None              # the timer, when armed
    _deadline: float | None = None    # when the request now arriving must be whole
    site: Any  # set by the Site that builds the channel

    def dataReceived(self, data: bytes) -> None:
        if self._deadline is None and data and not self._handlingRequest:
            self._start_arrival()
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        self._stop_arrival()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.requests and not self._handlingRequest:  # a pipelined request half-arrived
            self._start_arrival()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._cancel_arrival()
        super().connectionLost(reason)

    def _start_arrival(self) -> None:
        site = self.site
        limit = site.request_arrival_timeout
        deadline = self._deadline = site.reactor.seconds() + limit
        timer = self._arrival
        if timer is None:
            self._arrival = self.callLater(limit, self._arrival_due)
        elif timer.getTime() > deadline:  # the limit was lowered (a reload)
            timer.reset(limit)

    def _stop_arrival(self) -> None:
        self._deadline = None  # an armed timer finds nothing to do

    def _cancel_arrival(self) -> None:
        self._deadline = None
        if self._arrival is not None:
            if self._arrival.active():
                self._arrival.cancel()
            self._arrival = None

    def _arrival_due(self) -> None:
        """The timer fired: at the deadline of the request arriving, answer 408; before it
        (the timer was armed for an earlier request), wait for the rest."""
        self._arrival = None
        deadline = self._deadline
        if deadline is None:  # nothing arriving: the timer lapses until the next request
            return
        left = deadline - self.site.reactor.seconds()
        if left > 0:
            self._arrival = self.callLater(left, self._arrival_due)
            return
        self._deadline = None
        self._arrival_expired()

    def _arrival_expired(self) -> None:
        """Answer 408 and close: the request never arrived in time."""
        site = self.site
        site.arrival_timeouts += 1
        if site.arrival_timeouts % 100 == 1:  # an anonymous client can repeat this: bounded
            log.warn("NCIP request from {peer} not received within {limit}s: closed with 408 "
                     "({count} so far)", peer=_host(self.transport),
                     limit=site.request_arrival_timeout, count=site.arrival_timeouts)
        body = b"request not received in time\n"
        transport: Any = self.transport
        transport.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
        # Close now and abort if the client does not let go -- as timeoutConnection() does,
        # without its log line per connection (an anonymous client could repeat it at will).
        self.loseConnection()
        self._abortingCall = self.callLater(self.abortTimeout or 15, self._abort_now)

    def _abort_now(self) -> None:
        self._abortingCall = None
        transport: Any = self.transport
        transport.abortConnection()


class GatewaySite(server.Site):
    """A Site with the NCIP body limit, an idle timeout, a deadline for each request to arrive
    and counters for health and metrics."""

    requestFactory = LimitedRequest

    def __init__(self, root: resource.IResource, *, max_body_size: int, idle_timeout: float,
                 request_arrival_timeout: float = 20.0, reactor: Any = None) -> None:
        super().__init__(root, timeout=idle_timeout, reactor=reactor)
        self.max_body_size = max_body_size
        self.request_arrival_timeout = request_arrival_timeout
        self.body_too_large = 0
        self.arrival_timeouts = 0
        self.noisy = False

    def protocol(self) -> Any:
        """The channel with the arrival deadline, in Twisted's HTTP/1.1-or-2 wrapper."""
        return _GenericHTTPChannelProtocol(DeadlineChannel())

    def log(self, request: Request) -> None:
        """Access logging is the audit log's job; keep stdout for events that matter."""


class NcipResource(resource.Resource, InFlight):
    """Routes the NCIP path (and ``<path>/<token>``) and ``/healthz``; everything else is 404."""

    isLeaf = True

    def __init__(self, handler: NcipHandler, *, path: str, request_timeout: float,
                 health: Callable[[], dict[str, Any]], clock: Any,
                 max_requests_per_second: float = 0.0) -> None:
        super().__init__()
        self._handler = handler
        self.rate = RateLimiter(max_requests_per_second, max(1.0, 2 * max_requests_per_second),
                                clock)
        self.rate_limited = 0
        self._path = path.rstrip("/").encode("utf-8") or b"/"
        self._timeout = request_timeout
        self._health = health
        self._clock = clock
        InFlight.__init__(self)

    def render(self, request: Request) -> bytes | int:
        path = request.path.rstrip(b"/") or b"/"
        if path == b"/healthz":
            return self._render_health(request)
        token = url_token(path, self._path)
        if token is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain")
            return b"not found\n"
        if request.method != b"POST":
            request.setResponseCode(405)
            request.setHeader(b"allow", b"POST")
            request.setHeader(b"content-type", b"text/plain")
            return b"NCIP messages are sent with POST\n"
        host = str(getattr(request.getClientAddress(), "host", "unix"))
        if not self.rate.allow(host):
            self.rate_limited += 1
            if self.rate_limited % 100 == 1:
                log.warn("NCIP requests from {host} over {rate}/s: refused with 429 "
                         "({count} so far)", host=host, rate=self.rate.rate,
                         count=self.rate_limited)
            request.setResponseCode(429)
            request.setHeader(b"retry-after", b"1")
            request.setHeader(b"content-type", b"text/plain")
            return b"too many requests\n"
        return self._render_ncip(request, token, host)

    def set_timeout(self, seconds: float) -> None:
        """Change the per-request time budget (on reload); requests in flight keep theirs."""
        self._timeout = seconds

    def _render_health(self, request: Request) -> bytes:
        """ok or degraded, nothing else: anyone can reach this listener, and the database
        path, endpoints and version are for the admin listener's ``/healthz``."""
        ok = self._health().get("status") == "ok"
        request.setResponseCode(200 if ok else 503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return b'{"status": "ok"}\n' if ok else b'{"status": "degraded"}\n'

    def _render_ncip(self, request: Request, token: str, host: str) -> int:
        content = request.content
        body = content.read() if content is not None else b""
        authorization = request.getHeader(b"authorization") or b""
        bearer = None
        if authorization[:7].lower() == b"bearer ":
            bearer = authorization[7:].strip().decode("utf-8", "replace")
        content_type = request.getHeader(b"content-type")
        context = NcipRequestContext(
            remote_host=host, url_token=token or None, bearer_token=bearer,
            content_type=content_type.decode("latin-1") if content_type else None)
        self._started()
        try:
            d = self._handler.handle(body, context)
        except Exception:
            d = fail()
        if d.called and not d.paused:
            # Answered inline (a read served on the reactor): the reply is written at once,
            # with no time budget to arm and cancel and no callbacks to chain.
            outcome: list[bytes | Failure] = []
            d.addBoth(outcome.append)
            self._done()
            data = outcome[0]
            if isinstance(data, Failure):
                log.failure("NCIP handler failed", data)
                data = self._handler.timeout_reply(body, context)
            request.setResponseCode(200)
            request.setHeader(b"content-type", XML_CONTENT_TYPE)
            request.setHeader(b"content-length", b"%d" % len(data))
            request.write(data)
            request.finish()
            return server.NOT_DONE_YET
        return self._answer_later(request, d, body, context)

    def _answer_later(self, request: Request, d: Deferred[bytes], body: bytes,
                      context: NcipRequestContext) -> int:
        """Write the reply when ``d`` fires, or a Temporary Processing Failure when the
        request's time budget runs out first."""
        finished = False
        gone = [False]
        request.notifyFinish().addErrback(lambda _: gone.__setitem__(0, True))

        def reply(data: bytes) -> None:
            nonlocal finished
            if finished:
                return
            finished = True
            self._done()
            if gone[0]:  # the client went away; nobody to answer
                return
            request.setResponseCode(200)
            request.setHeader(b"content-type", XML_CONTENT_TYPE)
            request.setHeader(b"content-length", b"%d" % len(data))
            request.write(data)
            request.finish()

        def failed(failure: Failure) -> None:
            log.failure("NCIP handler failed", failure)
            reply(self._handler.timeout_reply(body, context))

        def timed_out() -> None:
            if not finished:
                log.warn("NCIP request from {peer} exceeded its {budget}s budget",
                         peer=context.remote_host, budget=self._timeout)
                reply(self._handler.timeout_reply(body, context))

        budget = self._clock.callLater(self._timeout, timed_out)
        d.addCallback(reply).addErrback(failed)
        d.addBoth(lambda _: budget.cancel() if budget.active() else None)
        return server.NOT_DONE_YET

