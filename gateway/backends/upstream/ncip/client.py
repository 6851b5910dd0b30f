# -*- test-case-name: tests.gateway.upstream_ncip.test_recorded_replies -*-
"""The HTTP leg to the LMS's NCIP responder: a Twisted Agent with a connection pool, a time
limit per call, a bound on calls in flight, and the upstream's health as seen from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

log = Logger()


@implementer(IBodyProducer)
class _Body:
    """A request body from bytes (one write)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:  # noqa: N802 (Twisted's name)
        consumer.write(self.body)
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d

    def pauseProducing(self) -> None:  # noqa: N802
        """Nothing to pause: one write."""

    def stopProducing(self) -> None:  # noqa: N802
        """Nothing to stop: one write."""

    def resumeProducing(self) -> None:  # noqa: N802
        """Nothing to resume: one write."""


def _client_cert_policy(cert: str, key: str) -> Any:
    """HTTPS with our client certificate (the server's checked against the system's CAs)."""
    from pathlib import Path

    from twisted.internet import ssl
    from twisted.web.client import BrowserLikePolicyForHTTPS

    pem = Path(cert).read_bytes() + b"\n" + Path(key).read_bytes()
    client = ssl.PrivateCertificate.loadPEM(pem)

    class _Policy(BrowserLikePolicyForHTTPS):
        def creatorForNetloc(self, hostname: bytes, port: int) -> Any:  # noqa: N802
            return ssl.optionsForClientTLS(hostname.decode("ascii"),
                                           clientCertificate=client)
    return _Policy()


@dataclass
class UpstreamHealth:
    """What the gateway knows of the LMS: state, latency and errors."""

    state: str = "unknown"            # "up", "down" or "unknown" (nothing sent yet)
    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    in_flight: int = 0
    last_error: str = ""
    last_latency_ms: float = 0.0
    latency_ms_total: float = 0.0
    since: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """For /healthz and /metrics."""
        return {"state": self.state, "calls": self.calls, "errors": self.errors,
                "timeouts": self.timeouts, "in_flight": self.in_flight,
                "last_error": self.last_error, "last_latency_ms": round(self.last_latency_ms, 2),
                "mean_latency_ms": round(self.latency_ms_total / self.calls, 2)
                if self.calls else 0.0}


class UpstreamCallFailed(Exception):
    """No HTTP answer from the LMS (refused, reset, timed out): ``timed_out`` says which."""

    def __init__(self, reason: str, *, timed_out: bool = False,
                 unsent: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out
        self.unsent = unsent
        """The request never reached the LMS (no connection could be made)."""


class NcipHttpClient:
    """POSTs NCIP bodies to one URL, at most ``max_in_flight`` at a time, each within
    ``timeout`` seconds (connection, queueing for a slot excluded, and body read)."""

    def __init__(self, reactor: Any, url: str, *, timeout: float, max_in_flight: int,
                 headers: dict[str, str] | None = None, agent: Any = None,
                 tls: tuple[str, str] | None = None) -> None:
        self.reactor = reactor
        self.url = url.encode("ascii")
        self.timeout = timeout
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool._factory.noisy = False  # one log line per connection otherwise
        self.pool.maxPersistentPerHost = max_in_flight
        # Below the usual server keep-alive limits (Apache: 5 s): a POST on a connection the
        # server has just closed cannot be retried safely.
        self.pool.cachedConnectionTimeout = 4
        self.once = HTTPConnectionPool(reactor, persistent=False)
        self.once._factory.noisy = False
        policy = _client_cert_policy(*tls) if tls else None
        self.agent = agent or self._agent(policy, self.pool)
        self.closing_agent = agent or self._agent(policy, self.once)
        self.http10 = False
        """Set once the LMS answers in HTTP/1.0 (NCIPServer's HTTP::Server::PSGI, Python's
        http.server): its connections close after each answer, whatever headers say, so
        they are never pooled from then on."""
        self.slots = DeferredSemaphore(max_in_flight)
        self.headers = {"Content-Type": "application/xml; charset=utf-8",
                        "User-Agent": "Interlend upstream NCIP", **(headers or {})}
        self.health = UpstreamHealth()

    def _agent(self, policy: Any, pool: HTTPConnectionPool) -> Agent:
        if policy is None:
            return Agent(self.reactor, connectTimeout=self.timeout, pool=pool)
        return Agent(self.reactor, policy, connectTimeout=self.timeout, pool=pool)

    def post(self, body: bytes) -> Deferred[tuple[int, bytes]]:
        """The LMS's (status, body), or :class:`UpstreamCallFailed`."""
        return self.slots.run(self._post, body)

    async def _call(self, body: bytes) -> tuple[int, bytes]:
        headers = Headers({k.encode(): [v.encode()] for k, v in self.headers.items()})
        agent = self.closing_agent if self.http10 else self.agent
        response = await agent.request(b"POST", self.url, headers, _Body(body))
        if tuple(response.version[1:]) < (1, 1) and not self.http10:
            self.http10 = True
            log.info("upstream NCIP responder {url} speaks HTTP/1.0: no pooled connections",
                     url=self.url.decode())
            await self.pool.closeCachedConnections()
        data = await readBody(response)
        return int(response.code), bytes(data)

    def _post(self, body: bytes) -> Deferred[tuple[int, bytes]]:
        started = time.monotonic()
        self.health.in_flight += 1
        d = Deferred.fromCoroutine(self._call(body))
        clock: IReactorTime = self.reactor
        expired: list[bool] = []

        def on_timeout(result: Any, timeout: float) -> Any:
            # The cancelled call fails with whatever the Agent makes of the cancellation
            # (ResponseNeverReceived...): remember that it was the time limit.
            expired.append(True)
            return result

        d.addTimeout(self.timeout, clock, onTimeoutCancel=on_timeout)

        def done(result: tuple[int, bytes]) -> tuple[int, bytes]:
            self._record(started, None)
            if result[0] >= 500:
                self.health.errors += 1
                self.health.last_error = f"HTTP {result[0]}"
            return result

        def failed(failure: Any) -> tuple[int, bytes]:
            from twisted.internet.defer import TimeoutError as DeferredTimeout

            timed_out = bool(expired) or failure.check(DeferredTimeout) is not None
            reason = (f"no answer within {self.timeout:g}s" if timed_out
                      else f"{failure.type.__name__}: {failure.getErrorMessage()}"[:200])
            from twisted.internet.error import ConnectError, DNSLookupError

            unsent = failure.check(ConnectError, DNSLookupError) is not None
            self._record(started, reason, timed_out=timed_out)
            raise UpstreamCallFailed(reason, timed_out=timed_out, unsent=unsent)

        d.addCallbacks(done, failed)
        return d

    def _record(self, started: float, error: str | None, *, timed_out: bool = False) -> None:
        h = self.health
        h.in_flight -= 1
        h.calls += 1
        h.last_latency_ms = (time.monotonic() - started) * 1000
        h.latency_ms_total += h.last_latency_ms
        state = "down" if error else "up"
        if state != h.state:
            log.info("upstream NCIP responder {url} is {state}{why}", url=self.url.decode(),
                     state=state, why=f": {error}" if error else "")
            h.state, h.since = state, time.time()
        if error:
            h.errors += 1
            h.timeouts += int(timed_out)
            h.last_error = error

    def close(self) -> Deferred[None]:
        """Close pooled connections (at shutdown, and at the end of tests)."""
        from twisted.internet.defer import gatherResults

        return gatherResults([self.pool.closeCachedConnections(),
                              self.once.closeCachedConnections()]).addCallback(lambda _: None)
