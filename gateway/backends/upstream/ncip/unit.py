# -*- test-case-name: tests.gateway.upstream_ncip.test_writer_free -*-
"""One unit of work of the upstream NCIP backend, run so that the store's writer is never held
during an LMS call.

The workflow steps are synchronous (``work(changes, books)``), and the LMS is on the network.
A unit is therefore *run again* until it needs nothing more from the LMS: a run that reaches a
call whose answer it does not have yet raises :class:`NeedsUpstream` out of ``work``; the
store rolls that run back (its pre-call checks kept nothing), the outbox row of a change being
already durable in its own file; the call is made on the reactor with the writer free; and the
unit runs again, now given the answer at the same point. The last run (the one that needs
nothing) commits the mirror rows, the broker's reply, its idempotency record and the audit rows
of both legs in one transaction. The workflow code is deterministic given the same database
state and the same answers; :class:`ItemLocks` keeps the state it depends on from being changed
by another unit between the runs (two units never change one LMS item at the same time).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

if TYPE_CHECKING:
    from gateway.domain.model import BriefRecord
    from gateway.storage.audit_log import AuditEntry
    from protocols.ncip.upstream import UpstreamReply


class NeedsUpstream(BaseException):
    """Raised out of a run of ``work`` (a BaseException, so that no ``except Exception`` of the
    workflow code takes it for a failure): the run is rolled back and the unit waits for
    ``lock`` or for the LMS's answer to ``body``, then runs again."""

    def __init__(self, *, body: bytes = b"", service: str = "", seq: int = 0,
                 how: str = "read", upstream_id: str = "", lock: str | None = None) -> None:
        super().__init__(service or lock or "read")
        self.body = body
        self.upstream_id = upstream_id
        self.service = service
        self.seq = seq
        self.how = how          # "read", "sent" (a new change) or "resent" (after a lost answer)
        self.lock = lock


@dataclass(frozen=True)
class Answer:
    """The LMS's answer to the n-th change of a unit (or why there was none)."""

    service: str
    how: str
    upstream_id: str
    request: bytes
    status: int = 0
    data: bytes = b""
    error: BaseException | None = None
    reply: UpstreamReply | None = None      # ``data`` read (once, on the reactor)


@dataclass
class Unit:
    """One unit of work: what its runs share (the answers got so far, the locks held) and what
    each run starts afresh (the change counter, the temporary items pending, the audit legs)."""

    locks: ItemLocks
    key: str = field(default_factory=lambda: f"anonymous:{uuid.uuid4()}")
    answers: dict[int, Answer] = field(default_factory=dict)
    reads: dict[bytes, UpstreamReply | BaseException] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    seen_releases: int = 0
    runs: int = 0
    # per run
    seq: int = 0
    pending: dict[int, tuple[str, BriefRecord | None, str]] = field(default_factory=dict)
    briefs: dict[int, BriefRecord] = field(default_factory=dict)
    legs: list[AuditEntry] = field(default_factory=list)

    def begin_run(self) -> None:
        """A new run: counters and per-run notes reset; answers and locks kept."""
        self.runs += 1
        self.seq = 0
        self.pending = {}
        self.briefs = {}
        self.legs = []
        self.seen_releases = self.locks.releases

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def upstream_id(self, seq: int) -> str:
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:16]
        return f"IL-{digest}-{seq}"

    def claim(self, lock: str) -> bool:
        """From the writer thread: the lock is ours now, or the run must stop for it."""
        if lock in self.held:
            return True
        if self.locks.try_claim(lock, self, self.seen_releases):
            self.held.add(lock)
            return True
        return False


class ItemLocks:
    """Which unit is changing which LMS item (or request) now; at most one at a time.

    Claimed without waiting from the writer thread when nobody holds the lock and it was last
    released before the claiming run began (so the run saw every change made under it);
    otherwise the unit waits on the reactor and runs again once it holds the lock. Released
    when the unit's commit is done. ``releases`` counts releases; ``_released_at`` says when
    each lock was last released (forgotten in bulk past ``KEEP``: then ``_floor`` stands for
    them all).
    """

    KEEP = 10_000

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owners: dict[str, Unit] = {}
        self._waiters: dict[str, list[tuple[Unit, Deferred[None]]]] = {}
        self._released_at: dict[str, int] = {}
        self._floor = 0
        self.releases = 0

    def try_claim(self, lock: str, unit: Unit, seen_releases: int) -> bool:
        """Claim a free lock if the run that asks saw the latest state (see the class)."""
        with self._mutex:
            if lock in self._owners:
                return False
            if self._released_at.get(lock, self._floor) > seen_releases:
                return False
            self._owners[lock] = unit
            return True

    def acquire(self, lock: str, unit: Unit) -> Deferred[None]:
        """On the reactor: fires once ``unit`` holds ``lock``."""
        d: Deferred[None] = Deferred()
        with self._mutex:
            owner = self._owners.get(lock)
            if owner is None or owner is unit:
                self._owners[lock] = unit
                unit.held.add(lock)
                d.callback(None)
            else:
                self._waiters.setdefault(lock, []).append((unit, d))
        return d

    def release_all(self, unit: Unit) -> None:
        """On the reactor: the unit is done (committed or failed); its locks pass on."""
        handed: list[Deferred[None]] = []
        with self._mutex:
            self.releases += 1
            if len(self._released_at) > self.KEEP:
                self._released_at.clear()
                self._floor = self.releases
            for lock in unit.held:
                self._released_at[lock] = self.releases
                if self._owners.get(lock) is not unit:
                    continue
                waiting = self._waiters.get(lock)
                if waiting:
                    successor, d = waiting.pop(0)
                    if not waiting:
                        del self._waiters[lock]
                    self._owners[lock] = successor
                    successor.held.add(lock)
                    handed.append(d)
                else:
                    del self._owners[lock]
            unit.held.clear()
        for d in handed:
            d.callback(None)

    def held_count(self) -> int:
        """Locks held now (for tests and /healthz)."""
        with self._mutex:
            return len(self._owners)


def lock_name(item_id: str | None, request_id: str | None, user_id: str | None) -> str:
    """What a change is about, as far as two units must not change it at once."""
    if item_id:
        return f"item:{item_id}"
    if request_id:
        return f"request:{request_id}"
    return f"user:{user_id or ''}"
