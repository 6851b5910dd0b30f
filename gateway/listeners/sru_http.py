# -*- test-case-name: tests.gateway.test_sru_http -*-
"""The SRU HTTP listener: GET and POST (form-encoded) on ``[sru] path``, over the SRU service.

Transport concerns only, as the NCIP listener (:mod:`gateway.listeners.ncip_http`, whose site
this reuses: body limit with 413, arrival deadline with 408, idle timeout; connection caps come
from :class:`~gateway.listeners.limits.ConnectionLimitFactory` around it): the path and method,
a request rate per source address (429), a time budget per request (past it the client gets
diagnostic 2 and the late answer is dropped), peer attribution and the audit row. Every SRU
outcome, diagnostics included, is HTTP 200 with an XML body, as SRU wants.

Peers: a URL token (``<path>/<token>``) or bearer token names its peer, which must also allow
the source address (an unknown or refused token is diagnostic 3); without a token a request is
attributed to the one peer whose ``allow_from`` holds the address, or served anonymously (the
catalogue is public; a peer only changes the holdings layout and the audit attribution).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.http import Request

from gateway.config import Config, Peer
from gateway.listeners.limits import RateLimiter
from gateway.listeners.resources import InFlight, url_token
from gateway.ncip.peers import Credentials, PeerError, attribute
from gateway.sru.service import Outcome
from gateway.storage.audit_log import AuditEntry
from protocols.sru import parameters_from_query, search_retrieve_response
from protocols.sru.diagnostics import Diagnostic, SRUError
from protocols.sru.request import RequestLimits, SRURequestError

log = Logger()

XML_CONTENT_TYPE = b"text/xml; charset=utf-8"
FORM_TYPE = b"application/x-www-form-urlencoded"


class SruHandler(Protocol):
    """What the listener needs of the SRU service."""

    def handle(self, parameters: list[tuple[str, str]], *, peer: Peer | None,
               host: str = ..., port: int = ...) -> Deferred[Outcome]: ...


class AuditSink(Protocol):
    """Where audit rows go (an :class:`~gateway.audit.AuditBatch`)."""

    def record(self, entry: AuditEntry) -> None: ...


def _diagnostic_document(error: SRUError) -> bytes:
    return search_retrieve_response(None, version="1.2", diagnostics=[error])


class SruResource(resource.Resource, InFlight):
    """Routes ``<path>`` and ``<path>/<token>`` to the SRU service; ``/healthz``; else 404."""

    isLeaf = True

    def __init__(self, handler: SruHandler, *, config: Callable[[], Config], clock: Any,
                 audit: AuditSink | None = None, keep_bodies: Callable[[], bool] = lambda: False
                 ) -> None:
        super().__init__()
        self._handler = handler
        self._config_now = config
        self._clock = clock
        self._audit = audit
        self._keep_bodies = keep_bodies
        sru = config().sru
        self._path = sru.path.rstrip("/").encode("utf-8") or b"/"
        rate = sru.max_requests_per_second_per_peer
        self.rate = RateLimiter(rate, max(1.0, 2 * rate), clock)
        self.rate_limited = 0
        InFlight.__init__(self)
        self.timed_out = 0

    def render(self, request: Request) -> bytes | int:
        path = request.path.rstrip(b"/") or b"/"
        if path == b"/healthz":
            request.setResponseCode(200)
            request.setHeader(b"content-type", b"application/json")
            return b'{"status": "ok"}\n'
        token = url_token(path, self._path)
        if token is None:
            return self._plain(request, 404, b"not found\n")
        if request.method not in (b"GET", b"POST", b"HEAD"):
            request.setHeader(b"allow", b"GET, POST")
            return self._plain(request, 405, b"SRU requests are sent with GET or POST\n")
        host = str(getattr(request.getClientAddress(), "host", "unix"))
        if not self.rate.allow(host):
            self.rate_limited += 1
            if self.rate_limited % 100 == 1:
                log.warn("SRU requests from {host} over {rate}/s: refused with 429 "
                         "({count} so far)", host=host, rate=self.rate.rate,
                         count=self.rate_limited)
            request.setHeader(b"retry-after", b"1")
            return self._plain(request, 429, b"too many requests\n")
        return self._render_sru(request, token, host)

    @staticmethod
    def _plain(request: Request, code: int, body: bytes) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain")
        return body

    def _parameters(self, request: Request) -> list[tuple[str, str]]:
        """The GET query string, then (for a form POST) the body's fields."""
        limits = RequestLimits()
        uri = request.uri or b""
        query = uri.split(b"?", 1)[1] if b"?" in uri else b""
        pairs = parameters_from_query(query, limits)
        if request.method == b"POST":
            content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip()
            content = request.content
            body = content.read() if content is not None else b""
            if body and content_type.lower() not in (FORM_TYPE, b""):
                raise SRUError(Diagnostic.UNSUPPORTED_PARAMETER_VALUE,
                               "POST body must be application/x-www-form-urlencoded")
            pairs += parameters_from_query(body, limits)
        return pairs

    def _peer(self, request: Request, token: str, host: str) -> Peer | None:
        authorization = request.getHeader(b"authorization") or b""
        bearer = None
        if authorization[:7].lower() == b"bearer ":
            bearer = authorization[7:].strip().decode("utf-8", "replace")
        peers = self._config_now().peers
        creds = Credentials(remote_host=host, url_token=token or None, bearer_token=bearer)
        try:
            return attribute(peers, creds)
        except PeerError as error:
            if token or bearer:
                raise SRUError(Diagnostic.AUTHENTICATION_ERROR) from error
            return None

    def _render_sru(self, request: Request, token: str, host: str) -> int:
        started = time.monotonic()
        peer: Peer | None = None
        self._started()
        finished = False
        gone = [False]
        request.notifyFinish().addErrback(lambda _: gone.__setitem__(0, True))
        length = request.getHeader(b"content-length") or b""
        request_size = len(request.uri or b"") + (int(length) if length.isdigit() else 0)

        def reply(outcome: Outcome) -> None:
            nonlocal finished
            if finished:
                return
            finished = True
            self._done()
            self._record(outcome, peer, host, started, request_size)
            if gone[0]:
                return
            request.setResponseCode(200)
            request.setHeader(b"content-type", XML_CONTENT_TYPE)
            request.setHeader(b"content-length", b"%d" % len(outcome.body))
            if request.method != b"HEAD":
                request.write(outcome.body)
            request.finish()

        def refused(error: SRUError, operation: str = "request") -> Outcome:
            return Outcome(_diagnostic_document(error), operation,
                           f"diagnostic {int(error.diagnostic)}")

        try:
            parameters = self._parameters(request)
            peer = self._peer(request, token, host)
        except SRURequestError as error:
            reply(refused(error))
            return server.NOT_DONE_YET
        except SRUError as error:
            reply(refused(error))
            return server.NOT_DONE_YET

        def failed(failure: Failure) -> None:
            log.failure("SRU handler failed", failure)
            reply(refused(SRUError(Diagnostic.GENERAL_SYSTEM_ERROR)))

        def timed_out() -> None:
            if not finished:
                self.timed_out += 1
                log.warn("SRU request from {peer} exceeded its {budget}s budget",
                         peer=host, budget=budget_seconds)
                reply(refused(SRUError(Diagnostic.SYSTEM_TEMPORARILY_UNAVAILABLE,
                                       "time budget exceeded")))

        budget_seconds = self._config_now().sru.request_timeout
        budget = self._clock.callLater(budget_seconds, timed_out)
        local = request.getHost()
        host_header = (request.getHeader(b"host") or b"").decode("latin-1").rsplit(":", 1)[0]
        d = self._handler.handle(parameters, peer=peer,
                                 host=host_header or str(getattr(local, "host", "localhost")),
                                 port=int(getattr(local, "port", 0) or 0))
        d.addCallback(reply).addErrback(failed)
        d.addBoth(lambda _: budget.cancel() if budget.active() else None)
        return server.NOT_DONE_YET

    def _record(self, outcome: Outcome, peer: Peer | None, host: str, started: float,
                request_size: int) -> None:
        if self._audit is None:
            return
        keep = self._keep_bodies()
        try:
            self._audit.record(AuditEntry(
                protocol="sru", operation=outcome.operation, outcome=outcome.outcome,
                peer=peer.name if peer is not None else None, remote=host,
                duration_us=int((time.monotonic() - started) * 1e6),
                request_size=request_size, response_size=len(outcome.body),
                request_body=outcome.query if keep else None,
                notes=f"hits={outcome.hits}" if outcome.hits is not None else None))
        except Exception:  # noqa: BLE001 - auditing never breaks an exchange
            log.failure("SRU audit row not written")



__all__ = ["SruResource"]
