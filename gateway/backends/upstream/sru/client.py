# -*- test-case-name: tests.gateway.test_upstream_sru_faults -*-
"""An SRU 1.1/1.2 client over Twisted's ``Agent``: searchRetrieve, scan and explain by GET.

Connections are kept in an ``HTTPConnectionPool`` (at most ``max_connections`` per server),
at most ``max_in_flight`` requests run at once (the rest wait their turn), and every request
(its wait included) has ``timeout`` seconds on the injected clock: past it the request is
cancelled and fails with :class:`~gateway.domain.catalogue.TimeBudgetExceeded`. A refused or
dropped connection, an HTTP error status or an answer larger than ``max_response_bytes`` is
:class:`~gateway.domain.catalogue.CatalogueUnavailable`. Each call is counted by
:class:`UpstreamState` (the last outcome, successes, failures, latency), which metrics and the
health check read.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from twisted.internet.defer import Deferred, DeferredSemaphore, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from gateway.domain.catalogue import CatalogueError, CatalogueUnavailable, TimeBudgetExceeded

__all__ = ["SruClient", "UpstreamState"]


@dataclass
class UpstreamState:
    """What the gateway knows of the upstream: the last call's outcome and the counts."""

    target: str
    ok: bool | None = None
    """True after a call that got an answer, False after one that did not, None before any."""
    last_error: str | None = None
    last_change: float | None = None
    calls: dict[str, int] = field(default_factory=dict)
    """Calls by ``operation:outcome`` (``searchRetrieve:ok``, ``scan:timeout`` ...)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Total seconds spent per operation."""
    observers: list[Callable[[str, str, float], None]] = field(default_factory=list)

    def record(self, operation: str, outcome: str, seconds: float,
               error: str | None = None, now: float | None = None) -> None:
        """Count one call (ending at ``now`` on the gateway's clock); an answer (even a
        diagnostic) means the upstream is up."""
        key = f"{operation}:{outcome}"
        self.calls[key] = self.calls.get(key, 0) + 1
        self.seconds[operation] = self.seconds.get(operation, 0.0) + seconds
        up = outcome in ("ok", "diagnostic")
        if up != self.ok:
            self.last_change = now
        self.ok = up
        self.last_error = None if up else error
        for observer in self.observers:
            observer(operation, outcome, seconds)

    def health(self) -> dict[str, Any]:
        """The upstream's state as ``/healthz`` shows it."""
        status = "unknown" if self.ok is None else "up" if self.ok else "down"
        out: dict[str, Any] = {"kind": "sru", "target": self.target, "status": status}
        if self.last_error:
            out["last_error"] = self.last_error
        return out


class _Body(Protocol):
    """Collects a response body up to a limit."""

    def __init__(self, limit: int, done: Deferred[bytes]) -> None:
        self.limit = limit
        self.done = done
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        self.size += len(data)
        if self.size > self.limit:
            if self.transport is not None:
                self.transport.stopProducing()  # type: ignore[attr-defined]
            if not self.done.called:
                self.done.errback(CatalogueUnavailable(
                    f"the upstream's answer is larger than {self.limit} bytes"))
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self.done.called:
            return
        if reason.check(ResponseDone):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(CatalogueUnavailable(
                f"the upstream closed the connection mid-answer: {reason.getErrorMessage()}"))


class SruClient:
    """Requests to one SRU base URL; every method fires with the response body (bytes)."""

    def __init__(self, reactor: Any, base_url: str, *, version: str = "1.1",
                 username: str | None = None, password: str | None = None,
                 timeout: float = 10.0, connect_timeout: float = 5.0,
                 max_in_flight: int = 8, max_connections: int = 4,
                 max_response_bytes: int = 16 * 1024 * 1024,
                 state: UpstreamState | None = None) -> None:
        self._clock: IReactorTime = reactor
        self.base_url = base_url
        self.version = version
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.state = state or UpstreamState(base_url)
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = max_connections
        self.pool.cachedConnectionTimeout = 60
        self._agent = Agent(reactor, connectTimeout=connect_timeout, pool=self.pool)
        self._slots = DeferredSemaphore(max_in_flight)
        headers = {b"User-Agent": [b"Interlend upstream SRU client"]}
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
            headers[b"Authorization"] = [f"Basic {token}".encode("ascii")]
        self._headers = headers

    def url(self, operation: str, parameters: Mapping[str, str | int]) -> str:
        """The GET URL of one request (credentials go in a header, never in the URL)."""
        query = urlencode({"version": self.version, "operation": operation,
                           **{k: str(v) for k, v in parameters.items()}})
        separator = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{separator}{query}"

    def search_retrieve(self, query: str, *, start: int = 1, maximum: int = 0,
                        schema: str | None = None,
                        sort_keys: str | None = None) -> Deferred[bytes]:
        """``searchRetrieve`` of ``query`` (CQL), records ``start`` … ``start+maximum-1``."""
        parameters: dict[str, str | int] = {"query": query, "maximumRecords": maximum,
                                            "recordPacking": "xml"}
        if maximum:
            parameters["startRecord"] = start
        if schema:
            parameters["recordSchema"] = schema
        if sort_keys:
            parameters["sortKeys"] = sort_keys
        return self.request("searchRetrieve", parameters)

    def scan(self, clause: str, *, maximum: int, position: int) -> Deferred[bytes]:
        """``scan`` of ``clause`` (``index = term``)."""
        return self.request("scan", {"scanClause": clause, "maximumTerms": maximum,
                                     "responsePosition": position})

    def explain(self) -> Deferred[bytes]:
        """``explain``: the server's ZeeRex record."""
        return self.request("explain", {})

    def request(self, operation: str, parameters: Mapping[str, str | int]) -> Deferred[bytes]:
        """One GET within the time limit, counted in :attr:`state`."""
        started = self._clock.seconds()
        d = self._slots.run(self._get, self.url(operation, parameters))
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            d.cancel()

        timer = self._clock.callLater(self.timeout, expire)

        def stop_timer(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        d.addBoth(stop_timer)

        def done(body: bytes) -> bytes:
            now = self._clock.seconds()
            self.state.record(operation, "ok", now - started, now=now)
            return body

        def failed(failure: Failure) -> Failure:
            now = self._clock.seconds()
            seconds = now - started
            if expired:
                message = f"the upstream SRU server did not answer within {self.timeout:g}s"
                self.state.record(operation, "timeout", seconds, message, now)
                return Failure(TimeBudgetExceeded(message))
            if failure.check(CatalogueError):
                self.state.record(operation, "error", seconds, str(failure.value), now)
                return failure
            message = f"the upstream SRU server cannot be reached: {failure.getErrorMessage()}"
            self.state.record(operation, "unreachable", seconds, message, now)
            return Failure(CatalogueUnavailable(message))

        return d.addCallbacks(done, failed)

    @inlineCallbacks
    def _get(self, url: str) -> Any:
        response: IResponse = yield self._agent.request(
            b"GET", url.encode("ascii"), Headers(self._headers))
        if response.code != 200:
            response.deliverBody(_Discard())
            raise CatalogueUnavailable(f"the upstream SRU server answered HTTP {response.code}")
        if response.length is not None and isinstance(response.length, int) \
                and response.length > self.max_response_bytes:
            response.deliverBody(_Discard())
            raise CatalogueUnavailable(
                f"the upstream's answer is larger than {self.max_response_bytes} bytes")
        done: Deferred[bytes] = Deferred()
        response.deliverBody(_Body(self.max_response_bytes, done))
        body = yield done
        return body

    def close(self) -> Deferred[None]:
        """Close the pooled connections."""
        return self.pool.closeCachedConnections()


class _Discard(Protocol):
    """Reads and drops a body we will not use (so the connection can be reused)."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        return None
