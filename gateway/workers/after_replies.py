# -*- test-case-name: tests.gateway.test_after_replies -*-
"""Work that waits until the replies written before it have been handed to the kernel.

A worker answers a lookup, then builds its audit row (both bodies redacted: about a fifth of
the lookup's CPU). Twisted buffers a reply and sends it in the reactor's next poll; work put
off with ``callLater(0)`` would still run before that poll (timed calls run first in each
reactor iteration). So work queued in one iteration runs two turns later: the poll between
has sent the replies written before it. Nothing is dropped: :meth:`AfterReplies.flush` runs
what is queued at once (a worker's stop, before its last rows are shipped).

What a client waits for is then the reply alone; the row is built while the client reads it
(at one connection, the broker's next request and this work overlap). Only rows that commit
with nothing go here (lookups, Problems: the primary writes them "soon" anyway); a reply
that reports a change still has its row committed with the change before it is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

log = Logger()


class AfterReplies:
    """Queues thunks; runs each batch once a reactor poll has passed since it was queued."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self._queued: list[Callable[[], None]] = []  # queued since the last turn
        self._ready: list[Callable[[], None]] = []  # queued before the poll now past
        self._call: IDelayedCall | None = None

    def __call__(self, work: Callable[[], None]) -> None:
        self._queued.append(work)
        if self._call is None:
            self._call = self.clock.callLater(0, self._turn)

    @property
    def pending(self) -> int:
        """Thunks not yet run."""
        return len(self._queued) + len(self._ready)

    def _turn(self) -> None:
        ready, self._ready, self._queued = self._ready, self._queued, []
        self._call = self.clock.callLater(0, self._turn) if self._ready else None
        self._run(ready)

    def flush(self) -> None:
        """Run everything queued now (at stop: nothing is left behind)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        work, self._ready, self._queued = self._ready + self._queued, [], []
        self._run(work)

    @staticmethod
    def _run(work: list[Callable[[], None]]) -> None:
        for thunk in work:
            try:
                thunk()
            except Exception:  # one row's failure must not lose the others
                log.failure("work after a reply failed")
