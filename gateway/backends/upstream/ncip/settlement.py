# -*- test-case-name: tests.gateway.upstream_ncip.test_settlement -*-
"""Settling the outbox with the LMS when the daemon starts, without waiting for brokers.

A row left ``pending`` (Interlend died during the LMS call, or the LMS's answer was lost or an
HTTP 500 page) does not say whether the LMS made the change. At start-up, and then with a
growing delay while any is left that the LMS may yet settle, each is asked of the LMS as its
profile allows: resent with the same upstream RequestId where the LMS deduplicates or the
service is safe to repeat (a "this is already done" Problem then counts as done); for an
AcceptItem the LMS must not see twice, the item it names is looked up (LookupItem) where the
LMS has that service: found means the LMS made it, unknown means it did not. The outcome is
recorded in the row (``answered``: the broker's retry is answered from it as it would have
been; ``abandoned``: nothing was made and the retry asks afresh). Nothing here makes a second
temporary item, hold or loan. A row the profile gives no safe way to settle (an AcceptItem to
NCIPServer, which has neither deduplication nor LookupItem) stays ``pending`` for staff,
counted in ``/healthz`` and ``/metrics``.

A row ``answered`` whose unit did commit (its upstream audit row is in the database) but whose
``committed`` mark was lost with the process is marked ``committed``. A row ``answered`` whose
unit did not commit needs nothing from the LMS: the broker's retry commits it from the answer.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from gateway.backends.upstream.ncip.client import UpstreamCallFailed
from gateway.backends.upstream.ncip.outbox import OutboxRow
from gateway.backends.upstream.ncip.unit import ItemLocks, Unit
from protocols.ncip.upstream import (
    UpstreamRequest,
    read_reply,
    request_item_id,
    write_request,
)

if TYPE_CHECKING:
    from gateway.backends.upstream.ncip.circulation import Upstream
    from gateway.storage.store import Store

log = Logger()

FIRST_DELAY = 5.0
MAX_DELAY = 300.0


@dataclass
class SettlementState:
    """For ``/healthz``: what the last pass left and when the next one runs."""

    passes: int = 0          # completed passes
    settled: int = 0
    left: int = 0
    staff: int = 0           # rows no pass can settle: staff decide
    next_in: float | None = None
    last_error: str = ""
    settled_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"passes": self.passes, "settled": self.settled, "left": self.left,
                "for_staff": self.staff, "next_in_seconds": self.next_in,
                "last_error": self.last_error}


def lock_for(row: OutboxRow) -> str:
    """The lock a broker's retry of the row's unit takes before settling the row itself."""
    return f"outbox:{row.id}"


class Settlement:
    """Settles open outbox rows with the LMS (see the module docstring)."""

    def __init__(self, store: Store, upstream: Upstream, locks: ItemLocks) -> None:
        self.store = store
        self.up = upstream
        self.locks = locks
        self.state = SettlementState()
        self._delay = FIRST_DELAY
        self._call: Any = None
        self._running: Deferred[bool] | None = None

    def start(self) -> None:
        """The first pass as soon as the reactor runs."""
        self._call = self.up.reactor.callLater(0, self._pass)

    def stop(self) -> None:
        """No further passes."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _pass(self) -> None:
        self._call = None
        if not self.store.running:         # the daemon is still starting: shortly
            self._call = self.up.reactor.callLater(0.5, self._pass)
            return
        self._running = Deferred.fromCoroutine(self.settle_once())
        self._running.addCallbacks(self._after, self._failed)

    def _after(self, retry: bool) -> None:
        self.state.next_in = None
        if retry:
            self.state.next_in = self._delay
            self._call = self.up.reactor.callLater(self._delay, self._pass)
            self._delay = min(self._delay * 2, MAX_DELAY)
        else:
            self._delay = FIRST_DELAY

    def _failed(self, failure: Any) -> None:
        log.failure("outbox settlement pass failed", failure)
        self.state.last_error = str(failure.value)
        self._after(True)

    async def settle_once(self) -> bool:
        """One pass over the open rows; True if some may yet be settled by another pass."""
        rows = await deferToThread(self.up.outbox.open_rows)
        retry, left, staff = False, 0, 0
        for row in rows:
            outcome = await self._settle(row)
            if outcome == "retry":
                retry = True
                left += 1
            elif outcome == "staff":
                staff += 1
                left += 1
            elif outcome == "settled":
                self.state.settled += 1
                self.state.settled_ids.append(row.id)
        # counted once the pass is over: /healthz never shows a pass without its outcome
        self.state.passes += 1
        self.state.left, self.state.staff = left, staff
        return retry

    async def _settle(self, row: OutboxRow) -> str:
        """One row: ``settled``, ``waiting`` (answered; the broker's retry commits it),
        ``staff`` or ``retry``."""
        holder = Unit(self.locks)
        await self.locks.acquire(lock_for(row), holder)
        try:
            fresh = await deferToThread(self.up.outbox.find, row.unit, row.seq)
            if fresh is None or fresh.state not in ("pending", "answered"):
                return "settled"        # a broker's retry settled it meanwhile
            if fresh.state == "answered":
                if await self._committed_here(fresh):
                    await deferToThread(self.up.outbox.committed, fresh.unit)
                    return "settled"
                return "waiting"
            return await self._ask_lms(fresh)
        finally:
            self.locks.release_all(holder)

    async def _committed_here(self, row: OutboxRow) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "SELECT 1 FROM audit WHERE protocol = 'ncip-upstream' AND broker_request_id = ?"
                " LIMIT 1", (row.upstream_id,)).fetchone() is not None
        found: bool = await self.store.read(read)
        return found

    async def _ask_lms(self, row: OutboxRow) -> str:
        profile, outbox = self.up.profile, self.up.outbox
        resend = row.service not in profile.never_resend or profile.dedups_request_id
        try:
            if resend:
                status, data = await self.up.client.post(row.request)
                reply = read_reply(status, data, self.up.tz)
                if reply.kind != "problem" and not reply.ok:
                    self.state.last_error = f"{row.service} {row.upstream_id}: {reply.kind}"
                    return "retry"                      # a 500 page again: still unknown
                await deferToThread(outbox.answered, row.unit, row.seq, status, data)
                if reply.kind == "problem" and not profile.is_already_done(row.service, reply):
                    await deferToThread(outbox.abandon, row.unit, row.seq)
                log.info("outbox: {service} {id} settled at start-up by a resend ({kind})",
                         service=row.service, id=row.upstream_id, kind=reply.kind)
                return "settled"
            item = request_item_id(row.request)
            if row.service != "AcceptItem" or not profile.supports("LookupItem") or not item:
                log.warn("outbox: {service} {id} for {unit}: the LMS's answer was lost and "
                         "{profile} gives no safe way to ask; staff settle it",
                         service=row.service, id=row.upstream_id, profile=profile.name,
                         unit=row.unit.split("#")[0])
                return "staff"
            lookup = write_request(UpstreamRequest("LookupItem", self.up.from_agency,
                                                   self.up.to_agency, item_id=item),
                                   profile.shape)
            status, data = await self.up.client.post(lookup)
            reply = read_reply(status, data, self.up.tz)
            if reply.ok:        # the LMS has the item: its LookupItem answer stands for it
                await deferToThread(outbox.answered, row.unit, row.seq, status, data)
            elif reply.kind == "problem":                # unknown there: nothing was made
                await deferToThread(outbox.abandon, row.unit, row.seq)
            else:
                self.state.last_error = f"LookupItem {item}: {reply.kind}"
                return "retry"
            log.info("outbox: AcceptItem {id} settled at start-up by LookupItem {item} "
                     "({kind})", id=row.upstream_id, item=item, kind=reply.kind)
            return "settled"
        except UpstreamCallFailed as e:
            self.state.last_error = str(e)
            return "retry"
