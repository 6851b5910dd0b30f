# -*- test-case-name: tests.gateway.test_upstream_z3950_pqf -*-
"""A pool of initialised associations to one upstream target, reused across broker searches.

At most ``size`` associations are open, and each carries one request at a time, so at most
``size`` requests are in flight; up to ``max_waiting`` more wait for a free association (within
their caller's time), beyond that they are refused. An association idle longer than
``idle_timeout`` is closed. When connecting or Init fails, the target counts as down for a
back-off time (doubling up to ``backoff_max``) during which requests fail at once, so a dead
upstream costs a broker a quick diagnostic and not a connect timeout each time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred, fail, inlineCallbacks, succeed

from gateway.backends.upstream.z3950.connection import UpstreamAssociation, UpstreamError

if TYPE_CHECKING:
    from collections.abc import Generator

    from twisted.internet.interfaces import IDelayedCall, IReactorTime


class UpstreamDown(UpstreamError):
    """The target failed recently and is in back-off, or refuses more waiting requests."""


@dataclass(frozen=True)
class PoolLimits:
    """How many associations, how long they may idle, how the back-off grows."""

    size: int = 8
    max_waiting: int = 100
    idle_timeout: float = 300.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0


Opener = Callable[[], Deferred[UpstreamAssociation]]
"""Connects to the target and initialises the association (fails with UpstreamError)."""


class AssociationPool:
    """Initialised associations to one target; :meth:`acquire` one, :meth:`release` it."""

    def __init__(self, clock: IReactorTime, opener: Opener, limits: PoolLimits) -> None:
        self.clock = clock
        self.opener = opener
        self.limits = limits
        self.idle: list[UpstreamAssociation] = []
        self.busy: set[UpstreamAssociation] = set()
        self.opening = 0
        self.waiting: deque[Deferred[UpstreamAssociation]] = deque()
        self.down_until = 0.0
        self.backoff = 0.0
        self.last_error: str | None = None
        self.opened = 0
        self._prune_call: IDelayedCall | None = None
        self.stopped = False

    # -- state ---------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """False while the target is in back-off after a failure."""
        return self.clock.seconds() >= self.down_until

    def state(self) -> dict[str, Any]:
        """What ``/healthz`` shows of the target."""
        return {"up": self.up and self.last_error is None,
                "idle": len(self.idle), "busy": len(self.busy), "waiting": len(self.waiting),
                "opened": self.opened, "last_error": self.last_error,
                "retry_in": max(0.0, round(self.down_until - self.clock.seconds(), 3))}

    # -- use -----------------------------------------------------------------------------------

    def acquire(self, prefer: UpstreamAssociation | None = None, wait: float | None = None
                ) -> Deferred[UpstreamAssociation]:
        """An idle association (``prefer`` when it is idle), a new one, or the next one freed
        (within ``wait`` seconds, else :class:`UpstreamDown`)."""
        self._prune()
        if prefer is not None and prefer in self.idle and not prefer.closed:
            self.idle.remove(prefer)
            self.busy.add(prefer)
            return succeed(prefer)
        while self.idle:
            association = self.idle.pop()
            if not association.closed:
                self.busy.add(association)
                return succeed(association)
        if self.stopped:
            return fail(UpstreamDown("the gateway is stopping"))
        if not self.up:
            return fail(UpstreamDown(
                f"upstream down ({self.last_error}); retrying in "
                f"{self.down_until - self.clock.seconds():.1f} s"))
        if len(self.busy) + self.opening < self.limits.size:
            return self._open()
        if len(self.waiting) >= self.limits.max_waiting:
            return fail(UpstreamDown(
                f"{len(self.waiting)} requests already wait for the upstream"))
        waiter: Deferred[UpstreamAssociation] = Deferred(
            lambda d: self.waiting.remove(d) if d in self.waiting else None)
        self.waiting.append(waiter)
        if wait is not None:
            timer = self.clock.callLater(wait, waiter.cancel)

            def stop_timer(result: Any) -> Any:
                if timer.active():
                    timer.cancel()
                return result

            def timed_out(failure: Any) -> Any:
                failure.trap(CancelledError)
                raise UpstreamDown(f"no upstream association free within {wait:g} s")

            waiter.addBoth(stop_timer).addErrback(timed_out)
        return waiter

    def release(self, association: UpstreamAssociation) -> None:
        """Give an association back (a closed one is dropped, and its place reopened for a
        waiting request)."""
        self.busy.discard(association)
        if association.closed or self.stopped:
            self._serve_waiting()
            return
        if self.waiting:
            self.busy.add(association)
            self.waiting.popleft().callback(association)
            return
        self.idle.append(association)
        self._schedule_prune()

    def close(self) -> None:
        """Close every association; later requests fail."""
        self.stopped = True
        for association in [*self.idle, *self.busy]:
            association.close()
        self.idle.clear()
        while self.waiting:
            self.waiting.popleft().errback(UpstreamDown("the gateway is stopping"))
        if self._prune_call is not None and self._prune_call.active():
            self._prune_call.cancel()

    # -- inside --------------------------------------------------------------------------------

    @inlineCallbacks
    def _open(self) -> Generator[Deferred[Any], Any, UpstreamAssociation]:
        self.opening += 1
        try:
            association: UpstreamAssociation = yield self.opener()
        except UpstreamError as e:
            self._failed(str(e))
            raise
        except Exception as e:  # connection refused, DNS, endpoint errors
            self._failed(f"{type(e).__name__}: {e}")
            raise UpstreamError(f"cannot reach the upstream: {e}") from e
        finally:
            self.opening -= 1
        self.opened += 1
        self.backoff = 0.0
        self.last_error = None
        self.busy.add(association)
        return association

    def _failed(self, why: str) -> None:
        self.last_error = why
        self.backoff = min(self.limits.backoff_max,
                           self.backoff * 2 if self.backoff else self.limits.backoff_initial)
        self.down_until = self.clock.seconds() + self.backoff
        while self.waiting:
            self.waiting.popleft().errback(UpstreamDown(f"upstream down ({why})"))

    def _serve_waiting(self) -> None:
        if not self.waiting or self.stopped:
            return
        waiter = self.waiting.popleft()
        self._open().chainDeferred(waiter)

    def _prune(self) -> None:
        now = self.clock.seconds()
        keep = []
        for association in self.idle:
            if association.closed:
                continue
            if now - association.last_used >= self.limits.idle_timeout:
                association.close()
                continue
            keep.append(association)
        self.idle = keep

    def _schedule_prune(self) -> None:
        if self._prune_call is not None and self._prune_call.active():
            return

        def prune() -> None:
            self._prune_call = None
            self._prune()
            if self.idle:
                self._schedule_prune()

        self._prune_call = self.clock.callLater(self.limits.idle_timeout, prune)
