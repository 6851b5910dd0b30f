# -*- test-case-name: tests.gateway.test_http,tests.gateway.test_sru_http -*-
"""What the HTTP resources (NCIP, SRU) share: the URL token in a path, the requests in flight."""

from __future__ import annotations

from twisted.internet.defer import Deferred


def url_token(path: bytes, base: bytes) -> str | None:
    """The URL token after ``base`` ('' for ``base`` itself), or None when the path is not
    ``base`` or one segment below it."""
    if path == base:
        return ""
    prefix = base + b"/"
    if path.startswith(prefix) and b"/" not in path[len(prefix):]:
        return path[len(prefix):].decode("utf-8", "replace")
    return None


class InFlight:
    """Requests a listener is answering, and who waits for none to be left (a graceful stop)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._idle_waiters: list[Deferred[None]] = []

    def _started(self) -> None:
        self.in_flight += 1

    def _done(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def wait_idle(self) -> Deferred[None]:
        """Fires when no request is in flight."""
        d: Deferred[None] = Deferred()
        if self.in_flight == 0:
            d.callback(None)
        else:
            self._idle_waiters.append(d)
        return d
