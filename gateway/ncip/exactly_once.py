# -*- test-case-name: tests.gateway.ncip.test_exactly_once,tests.gateway.test_replay_keys -*-
"""Exactly once: each state-changing NCIP request changes the circulation system once.

A request runs as one unit of work of the circulation system (:meth:`ICirculation.transact`):
the replay check, every circulation change, the request tracking, the rendered reply, its
idempotency record and its audit row commit together before the reply leaves. A repeat of a
request that succeeded -- same peer, service and RequestId *and* the same item, user and dates
(its fingerprint) -- gets the stored reply and changes nothing; a repeat that arrives while the
first is still in flight waits for it and gets the same reply. A different request under the
same RequestId (one per volume) is a new operation; the same RequestId and item for another
patron is a ``Duplicate Request`` that says so. CheckInItem, DeleteItem and RenewItem without a
RequestId are keyed by the item they name (until the item starts a new life: created, or lent
again).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from gateway.audit import AuditLog, audit_time
from gateway.domain.books import Books, ReplayKey
from gateway.domain.circulation import ICirculation, ICirculationChanges
from gateway.domain.model import ConflictingRequest
from gateway.ncip.service import (
    ConfiguredHost,
    NcipCall,
    Reply,
    audit_entry,
    identifier_value,
    write_reply,
)
from gateway.ncip.step import Step
from protocols.ncip.responses import NCIPResponse

# Services brokers send without a RequestId: a repeat is recognised by the item it names.
ITEM_KEYED = frozenset({"CheckInItem", "DeleteItem", "RenewItem"})
# What of a request, besides its ids, makes it another request (its fingerprint).
FINGERPRINTED = ("requested_action_type", "request_type", "request_scope_type",
                 "desired_date_due", "date_for_return", "pickup_expiry_date", "pickup_location",
                 "date_due")

StepFunction = Callable[[Step], NCIPResponse]


class Host(ConfiguredHost, Protocol):
    """What the exactly-once machinery reads from the gateway."""

    @property
    def reactor(self) -> IReactorTime:
        """The clock that dates each request."""

    @property
    def audit(self) -> AuditLog:
        """The audit log: hashes patron ids, seals replies, redacts bodies."""


def replay_key(call: NcipCall, today: date, patron_ref: Callable[[str], str | None]
               ) -> ReplayKey | None:
    """What makes this request a repeat: its RequestId (or, for the services brokers send
    without one, the item it names) and the fingerprint of what it asks for. ``today`` (the
    library's date) keys a RenewItem without a date: a retry the same day is a repeat, a later
    one is not. ``patron_ref`` hashes the UserId: the key never holds the id itself."""
    service = call.envelope.service
    message = call.envelope.message
    fiscal = getattr(message, "fiscal_transaction", None)
    if service == "CreateUserFiscalTransaction":
        request = (identifier_value(getattr(fiscal, "request_id", None))
                   or getattr(fiscal, "reference_id", None))
    elif service in ("CreateItem", "LookupRequest"):
        return None
    else:
        request = identifier_value(getattr(message, "request_id", None))
    item = identifier_value(getattr(message, "item_id", None))
    if not request:
        if service not in ITEM_KEYED or not item:
            return None
        request = f"item:{item}"
    user = identifier_value(getattr(message, "user_id", None))
    parts: list[str] = [service, request, item or "",
                        str(getattr(getattr(message, "item_id", None), "type", None) or ""),
                        user or ""]
    parts += [identifier_value(i) or "" for i in getattr(message, "item_ids", ())]
    parts += [f"{b.code}={b.identifier}" for b in getattr(message, "bibliographic_ids", ())]
    parts += [f"{name}={getattr(message, name, None) or ''}" for name in FINGERPRINTED]
    if fiscal is not None and fiscal.amount is not None:
        parts.append(f"amount={fiscal.amount.value} {fiscal.amount.currency or ''}")
    if service == "RenewItem" and getattr(message, "desired_date_due", None) is None:
        parts.append(today.isoformat())
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]
    user_key = None
    if user:   # never the id itself (patron_ref keeps it in clear when so configured)
        ref = patron_ref(user) or ""
        user_key = hashlib.sha256(ref.encode("utf-8")).hexdigest()[:32]
    return ReplayKey(call.peer.name, service, f"{request}#{digest}", request, item, user_key)


class ExactlyOnce:
    """Runs workflow steps exactly once on a circulation system, with their books."""

    def __init__(self, host: Host, circulation: ICirculation) -> None:
        self.host = host
        self.circulation = circulation
        self._in_flight: dict[tuple[str, str, str], list[Deferred[Reply]]] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.host.reactor.seconds(), timezone.utc)

    def _tz(self) -> ZoneInfo:
        return ZoneInfo(self.host.config.gateway.timezone)

    def replay_key(self, call: NcipCall,
                   refs: Callable[[str], str | None] | None = None) -> ReplayKey | None:
        """This request's replay key now (see :func:`replay_key`; ``refs``: the exchange's
        :meth:`AuditLog.patron_refs`)."""
        today = self._now().astimezone(self._tz()).date()
        return replay_key(call, today, refs or self.host.audit.patron_ref)

    def _step(self, call: NcipCall, changes: ICirculationChanges, books: Books,
              now: datetime) -> Step:
        config = self.host.config
        return Step(call, changes, books, now, self._tz(), config.gateway.agency_id,
                    config.circulation)

    def read(self, call: NcipCall, step: StepFunction) -> Deferred[NCIPResponse]:
        """A read-only step (LookupRequest) on one consistent view."""
        now = self._now()
        return self.circulation.inspect(
            lambda changes, books: step(self._step(call, changes, books, now)))

    async def change(self, call: NcipCall, step: StepFunction) -> Reply:
        """A state-changing step, exactly once: the reply comes written, its audit row
        committed with it (or, for a repeat, the stored reply, to be audited as answered)."""
        refs = self.host.audit.patron_refs()  # the exchange's patron, hashed once
        key = self.replay_key(call, refs)
        flight = key.ident if key is not None else None
        if flight is not None and flight in self._in_flight:
            waiter: Deferred[Reply] = Deferred()
            self._in_flight[flight].append(waiter)
            return await waiter
        # The request's audit body does not depend on the outcome: redacted here, not in the
        # unit of work, so that the writer's serial batch (and its commit) does less.
        request_body = self.host.audit.ncip_body(
            call.body, call.tree.take() if call.tree is not None else None, refs=refs)
        if flight is not None:
            self._in_flight[flight] = []
        now, started = self._now(), time.monotonic()
        try:
            result = await self.circulation.transact(
                lambda changes, books: self._unit(call, step, key, changes, books, now,
                                                  started, request_body, refs))
        except BaseException as error:
            for waiter in self._in_flight.pop(flight, []) if flight else []:
                waiter.errback(error)
            raise
        for waiter in self._in_flight.pop(flight, []) if flight else []:
            waiter.callback(Reply(result.body))
        return result

    def _unit(self, call: NcipCall, step: StepFunction, key: ReplayKey | None,
              changes: ICirculationChanges, books: Books, now: datetime, started: float,
              request_body: str | None,
              refs: Callable[[str | None], str | None] | None = None) -> Reply:
        """The unit of work: replay, or change + reply + idempotency + audit."""
        audit = self.host.audit
        if key is not None:
            stored = books.replies.replay(key, lambda sealed: audit.open_sealed(key.ident,
                                                                                sealed))
            if stored is not None:
                return Reply(stored)
            if (key.item is not None and key.user is not None
                    and not key.request.startswith("item:") and books.replies.conflicts(key)):
                # A RequestId already used for this item on behalf of another patron is
                # refused, by name: a different request never gets the first one's reply.
                raise ConflictingRequest(
                    f"RequestId {key.request} already names item {key.item} for another"
                    " patron", element="RequestIdentifierValue", value=key.request)
        context = self._step(call, changes, books, now)
        response = step(context)
        reply = write_reply(response, call.envelope, call.peer, context.agency)
        for name in context.renewed_names:
            # The item starts a new life under this name (created, or lent again): a stored
            # check-in, renewal or delete of its previous life is no answer for it any more.
            books.replies.forget_item(call.peer.name, name)
        if key is not None:
            books.replies.keep(key, audit.seal_reply(key.ident, reply.body), now)
        books.audit(audit_entry(
            audit, body=call.body, reply=reply.body, outcome="success", envelope=call.envelope,
            peer=call.peer, remote=call.context.remote_host,
            duration_us=int((time.monotonic() - started) * 1_000_000),
            request_body=request_body,
            response_body=audit.ncip_body(reply.body, reply.tree, refs=refs),
            time=audit_time(now), response=response, refs=refs))
        return Reply(reply.body, reply.tree, audited=True)
