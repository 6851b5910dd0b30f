# -*- test-case-name: tests.gateway.test_limits -*-
"""Connection limits per source address and in total, for every listener; the memory budget
of the Z39.50 listener; a rate limit for log lines clients can cause.

Twisted's own ``LimitConnectionsByPeer`` is broken in current releases (it indexes an
``IPv4Address``), so this is ours: a factory in front of the listener's own that refuses a
connection over either limit, counts refusals for the metrics and logs them (at most once a minute
per address, so an attack cannot flood the log).

A refused connection is closed at once, unless the listener has a *refuser*: then, while fewer than
``refusal_slots`` refused connections are open, it gets the refuser's protocol, which says no in
the listener's own protocol (Z39.50: an InitResponse with diagnostic 1018) so that clients report
the reason instead of "connection lost". Past the slots, refusals are bare closes again.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

log = Logger()


def address_host(address: IAddress | None) -> str:
    """The host part of a transport address (``"unix"`` for Unix sockets)."""
    return str(getattr(address, "host", None) or "unix")


class RateLimiter:
    """Token buckets per key: ``rate`` events a second on average, bursts up to ``burst``.

    A rate of 0 disables the limit. Idle buckets are forgotten, so memory stays bounded by the
    number of keys active within the last ``burst / rate`` seconds.
    """

    def __init__(self, rate: float, burst: float, clock: Any) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        if self.rate <= 0:
            return True
        now = self._clock.seconds()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) > 10_000:
            self._forget_idle(now)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {key: value for key, value in self._buckets.items()
                         if now - value[1] < full_after}


class ConnectionLimitFactory(Factory):
    """Wraps a factory; refuses connections over ``max_total`` or ``max_per_host``, or
    arriving from one host faster than ``max_rate_per_host`` a second.

    Not a wrapping factory: the accepted connection gets the wrapped factory's own protocol,
    whose ``connectionLost`` is hooked to give the slot back, so the connection's reads and
    writes take no hop through a wrapper (a ``ProtocolWrapper`` cost ~4% of a short Z39.50
    association's CPU).
    """

    def __init__(self, wrapped: Factory[Any], *, max_total: int, max_per_host: int,
                 name: str, clock: Any, max_rate_per_host: float = 0.0,
                 refuser: Callable[[IAddress | None, str], Protocol | None] | None = None,
                 refusal_slots: int = 0) -> None:
        self.wrappedFactory = wrapped
        self.noisy = False
        self.max_total = max_total
        self.max_per_host = max_per_host
        self.rate = RateLimiter(max_rate_per_host, max(1.0, 2 * max_rate_per_host), clock)
        self.name = name
        self._clock = clock
        self.per_host: Counter[str] = Counter()
        self.open_connections = 0  # currently open through this listener
        self.refused = 0
        self.refuser = refuser
        self.refusal_slots = refusal_slots
        self.refusing = 0  # refused connections still open, being answered by the refuser
        self._last_logged: dict[str, float] = {}
        self._log_limiter = LogLimiter(clock, per_minute=30)  # across every address

    def logPrefix(self) -> str:
        return self.wrappedFactory.logPrefix()

    def doStart(self) -> None:
        self.wrappedFactory.doStart()

    def doStop(self) -> None:
        self.wrappedFactory.doStop()

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        host = address_host(addr)
        total = self.open_connections
        if total >= self.max_total or self.per_host[host] >= self.max_per_host:
            self._refuse(host, f"limit reached ({self.per_host[host]} from this host, "
                               f"{total} in total)")
            return self._refusal(addr, (
                f"{total} connections open in total (limit {self.max_total})"
                if total >= self.max_total else
                f"{self.per_host[host]} connections open from this address "
                f"(limit {self.max_per_host})"))
        if not self.rate.allow(host):
            self._refuse(host, f"more than {self.rate.rate:g} connections a second")
            return self._refusal(addr, f"more than {self.rate.rate:g} new connections a second "
                                       "from this address")
        protocol: Any = self.wrappedFactory.buildProtocol(addr)
        if protocol is not None:
            self.per_host[host] += 1
            self.open_connections += 1
            protocol.connectionLost = _Release(partial(self.release, host), protocol)
        return protocol

    def _refusal(self, addr: IAddress | None, why: str) -> Protocol | None:
        """The refuser's protocol for a refused connection while a refusal slot is free (it
        holds the slot until it closes); None (closed at once) otherwise."""
        if self.refuser is None or self.refusing >= self.refusal_slots:
            return None
        protocol: Any = self.refuser(addr, why)
        if protocol is not None:
            self.refusing += 1
            protocol.connectionLost = _Release(self._refusal_closed, protocol)
        return protocol

    def _refusal_closed(self) -> None:
        self.refusing -= 1

    def _refuse(self, host: str, why: str) -> None:
        """Count a refusal; log it at most once a minute per host, and at most 30 lines a
        minute in all (an attack from many addresses)."""
        self.refused += 1
        now = self._clock.seconds()
        if now - self._last_logged.get(host, -3600.0) >= 60:
            if len(self._last_logged) > 10_000:
                self._last_logged = {k: v for k, v in self._last_logged.items() if now - v < 60}
            self._last_logged[host] = now
            dropped = self._log_limiter.allow("refused")
            if dropped is not None:
                log.warn("{listener}: connection from {host} refused: {why}{more}",
                         listener=self.name, host=host, why=why,
                         more=f" ({dropped} similar lines not logged)" if dropped else "")

    def release(self, host: str) -> None:
        """A connection from ``host`` closed: its slot is free."""
        self.open_connections -= 1
        self.per_host[host] -= 1
        if self.per_host[host] <= 0:
            del self.per_host[host]


class _Release:
    """Hooked on a protocol as its ``connectionLost``: frees the connection's slot (calls
    ``release``), unhooks itself and calls the protocol's own (looked up then, as a wrapper
    would)."""

    __slots__ = ("_release", "_protocol")

    def __init__(self, release: Callable[[], None], protocol: Any) -> None:
        self._release = release
        self._protocol = protocol

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        protocol = self._protocol
        del protocol.connectionLost  # once: the protocol's own method answers from now on
        self._release()
        protocol.connectionLost(*args, **kwargs)


def source_address(host: str) -> str:
    """A client address as ``allow_from`` networks and the logs see it: an IPv4-mapped IPv6
    address (``::ffff:a.b.c.d``, what a dual-stack listener reports for an IPv4 client)
    becomes the plain IPv4 address."""
    if not host.startswith("::ffff:") and not host.startswith("::FFFF:"):
        return host  # the common case costs no parsing
    try:
        mapped = ipaddress.IPv6Address(host).ipv4_mapped
    except ValueError:
        return host
    return str(mapped) if mapped is not None else host


class MemoryBudget:
    """Bytes the daemon may hold on behalf of Z39.50 clients, all of them together: saved
    result sets and partially received PDUs. A holder takes its size before keeping it and
    gives it back when it lets go; a take that would pass ``limit`` is refused (the caller
    answers resources exhausted). Any thread may take or give."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes; False (nothing reserved) when the budget cannot hold them."""
        with self._lock:
            if self.used + size > self.limit:
                self.refused += 1
                return False
            self.used += size
            return True

    def give(self, size: int) -> None:
        """Return ``size`` bytes taken earlier."""
        with self._lock:
            self.used -= size


class LogLimiter:
    """Lines of one kind (an event an anonymous client can cause at will: a malformed PDU, an
    idle or slow connection, a failed request) logged at most ``per_minute`` times a minute,
    whatever their source addresses; the next line let through says how many were dropped."""

    def __init__(self, clock: Any, per_minute: float = 10.0) -> None:
        self._rate = RateLimiter(per_minute / 60.0, per_minute, clock)
        self._suppressed: Counter[str] = Counter()

    def allow(self, kind: str) -> int | None:
        """None: drop this line. Otherwise log it, noting the returned number of lines of
        this kind dropped since the last one logged."""
        if not self._rate.allow(kind):
            self._suppressed[kind] += 1
            return None
        return self._suppressed.pop(kind, 0)

