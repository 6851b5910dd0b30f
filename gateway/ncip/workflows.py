# -*- test-case-name: tests.gateway.test_workflows -*-
"""Resource-sharing workflows: what each state-changing NCIP request does, exactly once.

Each request runs as one job of the store's writer: the idempotency check, every circulation
change, the request tracking, the rendered reply, its idempotency record and its audit row commit
in one transaction before the reply leaves. A repeat of a request that succeeded -- same peer,
service and RequestId *and* the same item, user and dates (its fingerprint) -- gets the stored
reply and changes nothing; a repeat that arrives while the first is still in flight waits for it
and gets the same reply. A different request under the same RequestId (one per volume) is a new
operation; the same RequestId and item for another patron is a ``Duplicate Request`` that says
so. CheckInItem, DeleteItem and RenewItem without a RequestId are keyed by the item they name
(until the item starts a new life: created, or lent again); checking out an item already on loan
to the same patron returns that loan (or, with another DesiredDateDue, renews it).

A peer acts only on what is its own (temporary items it brought in, found by our barcode or by
its own ItemId; our items lent to or requested for its institutional patron; its requests);
anything else is ``Unknown Item``, as if it did not exist.
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred

from gateway.audit import AuditEntry, audit_time, insert_entry
from gateway.backends.embedded import operations as ops
from gateway.backends.embedded import queries
from gateway.config import Peer
from gateway.domain.model import (
    ConflictingRequest,
    DuplicateRequest,
    Item,
    ItemAlreadyCheckedOut,
    ItemNotAvailable,
    ItemNotCheckedOut,
    ItemNotRenewable,
    Loan,
    MaximumRenewalsExceeded,
    NeededDataMissing,
    Patron,
    PatronBlocked,
    RequestAlreadyProcessed,
    UnknownItem,
    UnknownPatron,
    UnknownRecord,
    UnknownRequest,
)
from gateway.ncip.lookups import RECORD_ID_CODES
from gateway.ncip.service import PREFIX_STYLES, NcipCall, Rendered, audit_notes
from protocols.ncip import messages as m
from protocols.ncip.model import ItemId, RequestId, UserId
from protocols.ncip.responses import (
    AcceptItemResponse,
    CancelRequestItemResponse,
    CheckInItemResponse,
    CheckOutItemResponse,
    CreateItemResponse,
    CreateUserFiscalTransactionResponse,
    DeleteItemResponse,
    LookupRequestResponse,
    NCIPResponse,
    NotificationResponse,
    RenewItemResponse,
    RequestItemResponse,
)
from protocols.ncip.writer import render_response

CIRCULATE_ACTIONS = ("Circulate", "Circulate And Notify")
HOLD_ACTIONS = ("Hold For Pickup", "Hold For Pickup And Notify", "Accept For Loan")
# Services brokers send without a RequestId: a repeat is recognised by the item it names.
ITEM_KEYED = frozenset({"CheckInItem", "DeleteItem", "RenewItem"})


@dataclass(frozen=True)
class _Step:
    """What a workflow's writer job needs besides the connection."""

    call: NcipCall
    now: datetime
    tz: ZoneInfo
    started: float
    request_body: str | None = None  # as the audit row keeps it, redacted before the job
    renewed_names: list[str] = field(default_factory=list)  # item names starting a new life


@dataclass(frozen=True)
class _Key:
    """A state-changing request's replay key: ``key`` = its RequestId (or ``item:<ItemId>``)
    plus its fingerprint; the parts beside it find a conflicting reuse of the RequestId."""

    peer: str
    service: str
    key: str
    request: str
    item: str | None
    user: str | None  # keyed hash of the UserId value, never the value


class Workflows:
    """The state-changing NCIP services on the embedded circulation system."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self._in_flight: dict[tuple[str, str, str], list[Deferred[Any]]] = {}

    def register(self, handlers: dict[str, Any]) -> None:
        """Add the workflow services to an NCIP service's handler table."""
        simple = {
            "AcceptItem": self._accept_item,
            "CheckOutItem": self._check_out_item,
            "CheckInItem": self._check_in_item,
            "RenewItem": self._renew_item,
            "DeleteItem": self._delete_item,
            "RequestItem": self._request_item,
            "CancelRequestItem": self._cancel_request_item,
            "CreateItem": self._create_item,   # idempotent by state: see there
            "CreateUserFiscalTransaction": self._fiscal_transaction,
            "LookupRequest": self._lookup_request,
        }
        for service, step in simple.items():
            handlers[service] = self._handler(step, writes=service != "LookupRequest")
        for service in m.NOTIFICATIONS:
            handlers[service] = self._handler(self._notification)

    # -- the exactly-once machinery ---------------------------------------------------------

    def _handler(self, step: Callable[[sqlite3.Connection, _Step], NCIPResponse],
                 writes: bool = True) -> Callable[[NcipCall], Any]:
        async def handle(call: NcipCall) -> Rendered:
            return await self._run(call, step, writes)
        return handle

    def _replay_key(self, call: NcipCall) -> _Key | None:
        """What makes this request a repeat: its RequestId (or, for the services brokers send
        without one, the item it names) and the fingerprint of what it asks for."""
        service = call.envelope.service
        message = call.envelope.message
        fiscal = getattr(message, "fiscal_transaction", None)
        if service == "CreateUserFiscalTransaction":
            request = (_value(getattr(fiscal, "request_id", None))
                       or getattr(fiscal, "reference_id", None))
        elif service in ("CreateItem", "LookupRequest"):
            return None
        else:
            request = _value(getattr(message, "request_id", None))
        item = _value(getattr(message, "item_id", None))
        if not request:
            if service not in ITEM_KEYED or not item:
                return None
            request = f"item:{item}"
        user = _value(getattr(message, "user_id", None))
        parts: list[str] = [service, request, item or "",
                            str(getattr(getattr(message, "item_id", None), "type", None) or ""),
                            user or ""]
        parts += [_value(i) or "" for i in getattr(message, "item_ids", ())]
        parts += [f"{b.code}={b.identifier}" for b in getattr(message, "bibliographic_ids", ())]
        for name in ("requested_action_type", "request_type", "request_scope_type",
                     "desired_date_due", "date_for_return", "pickup_expiry_date",
                     "pickup_location", "date_due"):
            parts.append(f"{name}={getattr(message, name, None) or ''}")
        if fiscal is not None and fiscal.amount is not None:
            parts.append(f"amount={fiscal.amount.value} {fiscal.amount.currency or ''}")
        if service == "RenewItem" and getattr(message, "desired_date_due", None) is None:
            # A renewal without a date: a retry the same day is a repeat, a later one is not.
            day = datetime.fromtimestamp(self.gateway.reactor.seconds(), timezone.utc)
            parts.append(day.astimezone(ZoneInfo(self.gateway.config.gateway.timezone))
                         .date().isoformat())
        digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]
        user_key = None
        if user:   # never the id itself (patron_ref keeps it in clear when so configured)
            ref = self.gateway.audit.patron_ref(user) or ""
            user_key = hashlib.sha256(ref.encode("utf-8")).hexdigest()[:32]
        return _Key(call.peer.name, service, f"{request}#{digest}", request, item, user_key)

    async def _run(self, call: NcipCall, step: Callable[[sqlite3.Connection, _Step], NCIPResponse],
                   writes: bool) -> Rendered:
        key = self._replay_key(call) if writes else None
        flight = (key.peer, key.service, key.key) if key is not None else None
        if flight is not None and flight in self._in_flight:
            waiter: Deferred[Rendered] = Deferred()
            self._in_flight[flight].append(waiter)
            return await waiter
        # The request's audit body does not depend on the outcome: redacted here, not in the
        # writer job, so that the writer's serial batch (and its commit) does less.
        request_body = self.gateway.audit.ncip_body(
            call.body, call.tree.take() if call.tree is not None else None) if writes else None
        if flight is not None:
            self._in_flight[flight] = []
        config = self.gateway.config
        tz = ZoneInfo(config.gateway.timezone)
        now = datetime.fromtimestamp(self.gateway.reactor.seconds(), timezone.utc)
        context = _Step(call, now, tz, time.monotonic(), request_body)
        try:
            if writes:
                result = await self.gateway.store.write(
                    lambda conn: self._job(conn, context, step, key))
            else:
                result = await self.gateway.store.read(
                    lambda conn: Rendered(self._render(step(conn, context), call), False))
        except BaseException as error:
            for waiter in self._in_flight.pop(flight, []) if flight else []:
                waiter.errback(error)
            raise
        for waiter in self._in_flight.pop(flight, []) if flight else []:
            waiter.callback(Rendered(result.reply, audited=False))
        return result

    def _render(self, response: NCIPResponse, call: NcipCall,
                keep_tree: list[Any] | None = None) -> bytes:
        return render_response(response, call.envelope,
                               prefix_style=PREFIX_STYLES[call.peer.namespace_style],
                               local_agency=self.gateway.config.gateway.agency_id,
                               keep_tree=keep_tree)

    def _job(self, conn: sqlite3.Connection, context: _Step,
             step: Callable[[sqlite3.Connection, _Step], NCIPResponse],
             key: _Key | None) -> Rendered:
        """Runs in the writer thread: replay, or change + reply + idempotency + audit."""
        if key is not None:
            ident = (key.peer, key.service, key.key)
            row = conn.execute("SELECT response FROM idempotency WHERE peer = ? AND service = ?"
                               " AND key = ?", ident).fetchone()
            stored = (self.gateway.audit.open_reply(conn, ident, row[0]) if row is not None
                      else None)
            if stored is not None:
                return Rendered(stored, audited=False)
            self._check_conflict(conn, key)
        call = context.call
        response = step(conn, context)
        reply_tree: list[Any] = []
        reply = self._render(response, call, reply_tree)
        for name in context.renewed_names:
            # The item starts a new life under this name (created, or lent again): a stored
            # check-in, renewal or delete of its previous life is no answer for it any more.
            conn.execute("DELETE FROM idempotency WHERE peer = ? AND request_key = ?",
                         (call.peer.name, f"item:{name}"))
        if key is not None:
            conn.execute("INSERT INTO idempotency (peer, service, key, response, created_at,"
                         " request_key, item_key, user_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (key.peer, key.service, key.key,
                          self.gateway.audit.seal_reply((key.peer, key.service, key.key), reply),
                          ops.iso(context.now), key.request, key.item, key.user))
        insert_entry(conn, self._audit_entry(call, response, reply, context,
                                             reply_tree[0] if reply_tree else None))
        return Rendered(reply, audited=True)

    def _check_conflict(self, conn: sqlite3.Connection, key: _Key) -> None:
        """A RequestId already used for this item on behalf of another patron is refused, by
        name: a different request is never answered with the first one's reply."""
        if key.item is None or key.user is None or key.request.startswith("item:"):
            return
        other = conn.execute(
            "SELECT 1 FROM idempotency WHERE peer = ? AND request_key = ? AND service = ?"
            " AND item_key = ? AND user_key IS NOT NULL AND user_key != ? LIMIT 1",
            (key.peer, key.request, key.service, key.item, key.user)).fetchone()
        if other is not None:
            raise ConflictingRequest(
                f"RequestId {key.request} already names item {key.item} for another patron",
                element="RequestIdentifierValue", value=key.request)

    def _audit_entry(self, call: NcipCall, response: NCIPResponse, reply: bytes,
                     context: _Step, reply_tree: Any = None) -> AuditEntry:
        audit = self.gateway.audit
        message = call.envelope.message
        body = call.body
        our_request = getattr(response, "request_id", None)
        item = getattr(response, "item_id", None) or getattr(message, "item_id", None)
        return AuditEntry(
            protocol="ncip", operation=call.envelope.service, outcome="success",
            peer=call.peer.name, remote=call.context.remote_host,
            dialect=call.envelope.dialect.name.lower(),
            broker_request_id=_value(getattr(message, "request_id", None)),
            our_request_id=_value(our_request) if call.envelope.service == "RequestItem"
            else None,
            item_barcode=_value(item), patron_hash=audit.patron_ref(
                _value(getattr(message, "user_id", None))),
            duration_us=int((time.monotonic() - context.started) * 1_000_000),
            request_size=len(body), response_size=len(reply),
            request_body=context.request_body,
            response_body=audit.ncip_body(reply, reply_tree), time=audit_time(context.now),
            notes=audit_notes(call.envelope))

    # -- helpers ----------------------------------------------------------------------------

    def _agency(self) -> str:
        return self.gateway.config.gateway.agency_id

    def _end_of_day(self, day: date, tz: ZoneInfo) -> datetime:
        return datetime.combine(day, datetime.max.time().replace(microsecond=0), tz)

    def _due_in(self, days: int, s: _Step) -> datetime:
        return self._end_of_day(s.now.astimezone(s.tz).date() + timedelta(days=days), s.tz)

    def _as_due(self, value: datetime | date | None, s: _Step) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value
        return self._end_of_day(value, s.tz)

    def _patron(self, conn: sqlite3.Connection, user: UserId | None,
                message: Any = None) -> Patron:
        identifier = _value(user)
        if identifier is None and message is not None and hasattr(message, "authentication"):
            identifier = message.authentication("Barcode Id", "Barcode", "User Id", "Username")
        if not identifier:
            raise NeededDataMissing(element="UserId")
        patron = queries.find_patron(conn, identifier)
        # NCIP 1 (INN-Reach) may name the patron by its local barcode, a VisibleUserId in
        # UserOptionalFields, while its UniqueUserId is another system's id.
        for other in getattr(message, "user_ids", ()) if patron is None else ():
            patron = queries.find_patron(conn, other.value)
            if patron is not None:
                break
        if patron is None:
            raise UnknownPatron(element="UserIdentifierValue", value=identifier)
        return patron

    def _institutional_patron(self, conn: sqlite3.Connection, call: NcipCall,
                              user: UserId | None, *, strict: bool = False) -> Patron:
        """The borrowing library's patron: as named, or created from the peer's template.

        Only this peer's institutional patrons (or a patron record in the template's form
        that no peer owns) qualify: a local patron or another peer's institutional patron is
        ``Unknown User``, as one that does not exist. ``strict`` (RequestItem): a name that is
        neither in the template's form nor one of the peer's agency ids is ``Unknown User``
        instead of a new institutional patron.
        """
        peer = call.peer
        template = peer.institutional_patron
        prefix, slot, suffix = template.partition("{agency}")

        def in_form(value: str) -> bool:
            if not slot:
                return value == template
            return (value.startswith(prefix) and value.endswith(suffix)
                    and len(value) > len(prefix + suffix))

        def usable(patron: Patron) -> bool:
            return patron.institutional_peer == peer.name or (
                patron.institutional_peer is None and in_form(patron.barcode))

        header = call.envelope.message.header
        from_agency = header.from_agency.value if header and header.from_agency else None
        value = _value(user)
        if value is not None:
            existing = queries.find_patron(conn, value)
            if existing is not None:
                if usable(existing):
                    return existing
                raise UnknownPatron(element="UserIdentifierValue", value=value)
            if strict and not in_form(value) and value not in (
                    *peer.ncip_agency_ids, from_agency):
                raise UnknownPatron(element="UserIdentifierValue", value=value)
        agency = value or from_agency or peer.name
        if in_form(agency) and slot:
            barcode = agency
            agency = agency[len(prefix):len(agency) - len(suffix) or None]
        else:
            barcode = template.format(agency=agency) if slot else template
        existing = queries.find_patron(conn, barcode, kinds=("barcode",))
        if existing is not None and not usable(existing):
            raise UnknownPatron(element="UserIdentifierValue", value=value or barcode)
        return ops.ensure_institutional_patron(conn, barcode=barcode, peer=peer.name,
                                               agency=agency)

    def _pickup(self, peer: Peer, location: str | None) -> str:
        if location:
            for code, ours in peer.pickup_locations.items():
                if code.casefold() == location.strip().casefold():
                    return ours
        return peer.default_pickup_location or (location or "").strip()

    def _find_item(self, conn: sqlite3.Connection, s: _Step, item_id: ItemId | None, *,
                   lend: bool = False) -> Item:
        """The item the peer names (our barcode, its own ItemId for a temporary item it brought
        in, or its request id) and may act on. Anything else is ``Unknown Item``, exactly as
        an item that does not exist: a peer learns nothing of what is not its own."""
        value = _value(item_id)
        if not value:
            raise NeededDataMissing(element="ItemId")
        peer = s.call.peer
        item = ops.item_named(conn, peer=peer.name, value=value,
                              by_request=_names_request(item_id))
        if item is None or not self._may_act_on(conn, peer, item, lend=lend):
            raise UnknownItem(element="ItemIdentifierValue", value=value)
        return item

    def _may_act_on(self, conn: sqlite3.Connection, peer: Peer, item: Item, *,
                    lend: bool = False) -> bool:
        """A temporary item this peer brought in; one of our items on loan to this peer's
        institutional patron or held by a request of this peer; with ``lend``, also one of
        our items nobody else has or is waiting for."""
        if item.temporary:
            return item.owning_peer == peer.name
        loan = queries.open_loan(conn, item.id)
        if loan is not None:
            return self._own_institution(conn, peer, loan.patron_id)
        if ops.find_rs_request(conn, peer=peer.name, role="lender", item_id=item.id) is not None:
            return True
        return lend and all(self._own_institution(conn, peer, hold.patron_id)
                            for hold in queries.active_holds_of_item(conn, item.id))

    def _own_institution(self, conn: sqlite3.Connection, peer: Peer, patron_id: int) -> bool:
        patron = queries.patron_by_id(conn, patron_id)
        return patron is not None and patron.institutional_peer == peer.name

    def _user_id(self, patron: Patron, sent: UserId | None) -> UserId:
        """The UserId a reply gives back: the one the peer sent, as sent (Tipasa matches its
        own institution symbol, not our patron's barcode); else the patron's barcode."""
        return UserId(value=_value(sent) or patron.barcode,
                      agency=(sent.agency if sent is not None else None) or self._agency(),
                      type=sent.type if sent is not None else None)

    def _request_id(self, sent: RequestId | None, value: str | None = None) -> RequestId:
        if value is not None:
            return RequestId(value=value, agency=self._agency())
        assert sent is not None
        return RequestId(value=sent.value, agency=sent.agency, type=sent.type)

    # -- borrower side ----------------------------------------------------------------------

    def _volume(self, conn: sqlite3.Connection, peer: Peer, role: str, broker_id: str,
                broker_item: str | None, patron: Patron) -> sqlite3.Row | None:
        """The tracked request this RequestId already names for this ItemId (one volume), or
        None; the same RequestId and ItemId for another patron is a conflict, said by name."""
        existing = ops.find_volume(conn, peer=peer.name, role=role,
                                   broker_request_id=broker_id, broker_item_id=broker_item)
        if existing is not None and existing["patron_id"] != patron.id:
            raise ConflictingRequest(
                f"RequestId {broker_id} already names item {broker_item or '(none)'}"
                " for another patron", element="RequestIdentifierValue", value=broker_id)
        return existing

    def _accept_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """A borrowed item arrived: brief record, temporary item, hold (or loan) for the patron."""
        message = s.call.envelope.message
        assert isinstance(message, m.AcceptItem)
        peer = s.call.peer
        broker_id = _value(message.request_id)
        if not broker_id:
            raise NeededDataMissing(element="RequestId")
        broker_item = _value(message.item_id)
        patron = self._patron(conn, message.user_id, message)
        if patron.is_blocked() or patron.is_expired(s.now.astimezone(s.tz).date()):
            raise PatronBlocked(element="UserIdentifierValue", value=_value(message.user_id))
        # One RequestId names one volume per ItemId (ReShare's multi-volume loans).
        existing = self._volume(conn, peer, "borrower", broker_id, broker_item, patron)
        if existing is not None:
            if existing["item_id"] is not None:
                # The same volume accepted again (its stored reply gone): the same answer.
                return AcceptItemResponse(
                    request_id=self._request_id(message.request_id),
                    item_id=ItemId(value=existing["item_barcode"], agency=self._agency()))
            raise DuplicateRequest(element="RequestIdentifierValue", value=broker_id)
        action = message.requested_action_type
        circulate = action is not None and action.is_one_of(*CIRCULATE_ACTIONS)
        bib = message.bibliographic
        title = (bib.title if bib and bib.title else "") or "[no title]"
        if peer.title_prefix:
            title = f"{peer.title_prefix} {title}"
        number = ops.next_request_number(conn)
        record_id = ops.create_brief_record(conn, f"ill-{peer.name}-{number}", ops.BriefRecord(
            title=title, author=(bib.author or "") if bib else "",
            publisher=(bib.publisher or "") if bib else "",
            date=(bib.publication_date or "") if bib else "",
            isbn=(bib.isbn or "") if bib else ""))
        barcode = self._temporary_barcode(conn, peer, broker_id, broker_item)
        s.renewed_names.extend(name for name in (barcode, broker_item) if name)
        pickup = self._pickup(peer, message.pickup_location)
        item_db_id = ops.create_temporary_item(
            conn, barcode=barcode, record_id=record_id, peer=peer.name, location=pickup,
            call_number=(message.item.call_number or "") if message.item else "")
        lender_due = self._as_due(message.date_for_return, s)
        expires = self._as_due(message.pickup_expiry_date, s) or self._due_in(
            self.gateway.config.circulation.pickup_period_days, s)
        rs_id = ops.create_rs_request(
            conn, peer=peer.name, role="borrower", broker_request_id=broker_id,
            our_request_id=f"B-{number}", state="awaiting_pickup", step="accepted",
            also_stamped=("received",), now=s.now, item_id=item_db_id, item_barcode=barcode,
            patron_id=patron.id, due_at=ops.iso(lender_due) if lender_due else None,
            renewable=int(not message.renewal_not_permitted), broker_item_id=broker_item)
        if circulate:
            due = self._borrowed_due(lender_due, s)
            ops.check_out(conn, item_id=item_db_id, patron_id=patron.id, due_at=due, now=s.now)
            ops.advance_rs_request(conn, rs_id, state="checked_out", step="checked_out",
                                   now=s.now)
        else:
            ops.place_hold(conn, patron_id=patron.id, record_id=record_id, item_id=item_db_id,
                           pickup_location=pickup, now=s.now, pickup_expires=expires)
        fiscal = message.fiscal_transaction
        if fiscal is not None and fiscal.amount is not None and fiscal.amount.value:
            ops.add_fee(conn, patron_id=patron.id, peer=peer.name,
                        amount=_money(fiscal.amount.value),
                        currency=str(fiscal.amount.currency or ""),
                        fee_type=str(fiscal.transaction_type or "Interlibrary Loan Fee"),
                        item_id=item_db_id, now=s.now)
        # The barcode we chose: staff see it on the item, and we answer to it as to the
        # broker's own ItemId (which is what brokers keep sending).
        return AcceptItemResponse(request_id=self._request_id(message.request_id),
                                  item_id=ItemId(value=barcode, agency=self._agency()))

    def _temporary_barcode(self, conn: sqlite3.Connection, peer: Peer, request_id: str,
                           lender_barcode: str | None) -> str:
        """The barcode per the peer's policy, made unique against every live item."""
        if peer.temporary_barcode == "lender-barcode" and lender_barcode:
            base = lender_barcode
        elif peer.temporary_barcode == "prefixed":
            base = f"{peer.code}-{lender_barcode or request_id}"
        else:
            base = request_id
        suffix = peer.code or peer.name
        candidates = itertools.chain((base, f"{base}-{suffix}"),
                                     (f"{base}-{suffix}-{n}" for n in range(2, 100)))
        for candidate in candidates:  # built one at a time: the first is nearly always free
            if not ops.barcode_in_use(conn, candidate):
                return candidate
        raise DuplicateRequest(element="ItemIdentifierValue", value=base)

    def _borrowed_due(self, lender_due: datetime | None, s: _Step) -> datetime:
        local = self._due_in(self.gateway.config.circulation.borrowed_loan_period_days, s)
        return min(local, lender_due) if lender_due is not None else local

    def _check_out_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """Borrower: the patron takes the temporary item. Lender: our item ships (one call
        per volume under one RequestId; again with a new DesiredDateDue: a renewal)."""
        message = s.call.envelope.message
        assert isinstance(message, m.CheckOutItem)
        item = self._find_item(conn, s, message.item_id, lend=True)
        named = _value(message.item_id) or item.barcode
        if item.temporary:
            patron = self._patron(conn, message.user_id, message)
        else:
            patron = self._institutional_patron(conn, s.call, message.user_id)
        if patron.is_blocked() or patron.is_expired(s.now.astimezone(s.tz).date()):
            raise PatronBlocked(element="UserIdentifierValue", value=_value(message.user_id))
        loan = queries.open_loan(conn, item.id)
        if loan is not None and loan.patron_id != patron.id:
            raise ItemAlreadyCheckedOut(element="ItemIdentifierValue", value=named)
        role = "borrower" if item.temporary else "lender"
        broker_id = _value(message.request_id)
        rs = self._volume_request(conn, s.call.peer, role, broker_id, item)
        desired = self._as_due(message.desired_date_due, s)
        if loan is None:
            if item.temporary:
                lender_due = queries.parse_time(rs["due_at"]) if rs is not None else None
                due = self._borrowed_due(lender_due, s)
            else:
                due = self._due_in(self.gateway.config.circulation.loan_period_days, s)
                if desired is not None:
                    due = min(due, desired)
            loan = ops.check_out(conn, item_id=item.id, patron_id=patron.id, due_at=due,
                                 now=s.now)
            s.renewed_names.extend({named, item.barcode})
            if not item.temporary:
                self._settle_lender_holds(conn, item, patron, s.now)
            if rs is None and not item.temporary:
                number = ops.next_request_number(conn)
                ops.create_rs_request(
                    conn, peer=s.call.peer.name, role="lender", broker_request_id=broker_id,
                    our_request_id=f"L-{number}", state="shipped", step="shipped", now=s.now,
                    item_id=item.id, item_barcode=item.barcode, patron_id=patron.id,
                    broker_item_id=named)
            elif rs is not None:
                step = "checked_out" if item.temporary else "shipped"
                ops.advance_rs_request(conn, rs["id"], state=step, step=step, now=s.now,
                                       item_id=item.id, item_barcode=item.barcode)
        elif desired is not None and desired.astimezone(s.tz).date() != \
                loan.due_at.astimezone(s.tz).date():
            # Checked out again with another date (ILLiad's re-checkout): a renewal.
            loan = self._extend(conn, loan, desired, item, rs, s, named)
        return CheckOutItemResponse(item_id=ItemId(value=named, agency=self._agency()),
                                    user_id=self._user_id(patron, message.user_id),
                                    date_due=loan.due_at.astimezone(s.tz),
                                    renewal_count=loan.renewals or None)

    def _volume_request(self, conn: sqlite3.Connection, peer: Peer, role: str,
                        broker_id: str | None, item: Item) -> sqlite3.Row | None:
        """The tracked request an item's circulation belongs to: under the broker's RequestId,
        the volume with this item, else (lender) one not yet shipped; without a RequestId,
        the peer's open request for the item."""
        if not broker_id:
            return ops.find_rs_request(conn, peer=peer.name, role=role, item_id=item.id)
        volumes = conn.execute("SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND"
                               " broker_request_id = ? ORDER BY id",
                               (peer.name, role, broker_id)).fetchall()
        for row in volumes:
            if row["item_id"] == item.id:
                return row
        if role == "lender":
            for row in volumes:
                if row["shipped_at"] is None and row["cancelled_at"] is None:
                    return row
            return None
        return ops.find_rs_request(conn, peer=peer.name, role=role, item_id=item.id)

    def _settle_lender_holds(self, conn: sqlite3.Connection, item: Item, patron: Patron,
                             now: datetime) -> None:
        """The institutional patron's hold on this record is fulfilled by the item shipped."""
        for hold in queries.holds_of_patron(conn, patron.id):
            if hold.record_id == item.record_id and hold.item_id in (None, item.id):
                ops.set_hold_status(conn, hold.id, "fulfilled", now)
                break

    def _check_in_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """The item came back: end the loan (or, never picked up, its hold); delete a
        temporary item if the peer asks."""
        message = s.call.envelope.message
        assert isinstance(message, m.CheckInItem)
        peer = s.call.peer
        value = _value(message.item_id)
        if not value:
            raise NeededDataMissing(element="ItemId")
        found = ops.item_named(conn, peer=peer.name, value=value,
                               by_request=_names_request(message.item_id))
        if found is None:
            done = conn.execute(
                "SELECT * FROM rs_requests WHERE peer = ? AND role = 'borrower' AND"
                " (item_barcode = ? OR broker_item_id = ?) ORDER BY id DESC LIMIT 1",
                (peer.name, value, value)).fetchone()
            if (done is not None and done["item_id"] is None and peer.delete_on_checkin
                    and done["checked_in_at"] is not None):
                # A repeat of the check-in that deleted this peer's temporary item (its
                # stored reply gone): answer as the first time.
                patron = queries.patron_by_id(conn, done["patron_id"]) \
                    if done["checked_out_at"] and done["patron_id"] else None
                return CheckInItemResponse(
                    item_id=ItemId(value=value, agency=self._agency()),
                    user_id=self._user_id(patron, message.user_id) if patron else None)
        item = self._find_item(conn, s, message.item_id)
        loan = queries.open_loan(conn, item.id)
        role = "borrower" if item.temporary else "lender"
        rs = self._volume_request(conn, peer, role, _value(message.request_id), item)
        patron_id = loan.patron_id if loan is not None else None
        unclaimed = [hold for hold in queries.active_holds_of_item(conn, item.id)
                     if item.temporary] if loan is None else []
        if loan is None and not unclaimed:
            # A repeat of a check-in this peer made: name the same patron as the first reply
            # did (only the patron of this peer's own request, never anyone else's).
            last = ops.latest_rs_request(conn, peer=peer.name, role=role, item_id=item.id)
            returned_to = ops.last_returned_loan_patron(conn, item.id)
            if (last is not None and last["checked_in_at"] is not None
                    and returned_to is not None and returned_to == last["patron_id"]):
                patron_id = returned_to
        # Delete on check-in only the peer's own temporary items (no other reach here).
        deletes = item.temporary and peer.delete_on_checkin
        if (loan is None and not unclaimed and peer.checkin_not_on_loan == "problem"
                and not deletes):
            raise ItemNotCheckedOut(element="ItemIdentifierValue", value=value)
        if loan is not None:
            ops.check_in(conn, item_id=item.id, now=s.now,
                         status="in_transit" if item.temporary else "available")
        elif unclaimed:
            # Never picked up: the hold ends, the item goes back to the lender.
            for hold in unclaimed:
                ops.set_hold_status(conn, hold.id, "cancelled", s.now)
            conn.execute("UPDATE items SET status = 'in_transit', updated_at = ? WHERE id = ?",
                         (ops.iso(s.now), item.id))
        if rs is not None:
            reason = {"end_reason": "not picked up"} if unclaimed else {}
            ops.advance_rs_request(conn, rs["id"], state="returned", step="returned", now=s.now,
                                   **reason)
            ops.advance_rs_request(conn, rs["id"], state="checked_in", step="checked_in",
                                   now=s.now)
        if deletes:
            ops.delete_temporary_item(conn, item.barcode, s.now)
            if rs is not None:
                ops.advance_rs_request(conn, rs["id"], state="completed", step="completed",
                                       now=s.now)
        elif not item.temporary and rs is not None:
            ops.advance_rs_request(conn, rs["id"], state="completed", step="completed",
                                   now=s.now)
        user = None
        if patron_id is not None:
            patron = queries.patron_by_id(conn, patron_id)
            user = self._user_id(patron, message.user_id) if patron else None
        return CheckInItemResponse(item_id=ItemId(value=value, agency=self._agency()),
                                   user_id=user)

    def _renew_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """A new due date: the DesiredDateDue (the lending peer's new date) or a loan period
        from today, within local policy and the lender's limit; a renewal that cannot move
        the date is a Problem, never a success with the old date."""
        message = s.call.envelope.message
        assert isinstance(message, m.RenewItem)
        item = self._find_item(conn, s, message.item_id)
        named = _value(message.item_id) or item.barcode
        loan = queries.open_loan(conn, item.id)
        if loan is None:
            raise ItemNotCheckedOut(element="ItemIdentifierValue", value=named)
        rs = self._volume_request(conn, s.call.peer, "borrower" if item.temporary
                                  else "lender", _value(message.request_id), item)
        loan = self._extend(conn, loan, self._as_due(message.desired_date_due, s), item, rs, s,
                            named)
        patron = queries.patron_by_id(conn, loan.patron_id)
        return RenewItemResponse(item_id=ItemId(value=named, agency=self._agency()),
                                 user_id=self._user_id(patron, message.user_id) if patron
                                 else None, date_due=loan.due_at.astimezone(s.tz),
                                 renewal_count=loan.renewals or None)

    def _extend(self, conn: sqlite3.Connection, loan: Loan, desired: datetime | None,
                item: Item, rs: sqlite3.Row | None, s: _Step, named: str) -> Loan:
        """Renew a loan: to ``desired`` when given (a date the lending peer sets is also
        the lender's new limit), else by a loan period from today; never past the loan
        period from today. Refused unless the date moves later."""
        settings = self.gateway.config.circulation
        if loan.renewals >= settings.max_renewals:
            raise MaximumRenewalsExceeded(element="ItemIdentifierValue", value=named)
        if item.temporary:
            if rs is not None and not rs["renewable"]:
                raise ItemNotRenewable(element="ItemIdentifierValue", value=named)
            limit = queries.parse_time(rs["due_at"]) if rs is not None else None
            if desired is not None:
                limit = desired   # the lending peer's own new date
            new_due = self._due_in(settings.borrowed_loan_period_days, s)
        else:
            if queries.active_holds_of_item(conn, item.id):
                raise ItemNotRenewable(element="ItemIdentifierValue", value=named)
            limit = desired
            new_due = self._due_in(settings.loan_period_days, s)
        if limit is not None:
            new_due = min(new_due, limit)
        if new_due <= loan.due_at:
            raise ItemNotRenewable(element="ItemIdentifierValue", value=named)
        if item.temporary and rs is not None and desired is not None:
            conn.execute("UPDATE rs_requests SET due_at = ? WHERE id = ?",
                         (ops.iso(desired), rs["id"]))
        return ops.renew(conn, loan, new_due)

    def _delete_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """Remove a temporary item this peer brought in, its brief record and holds. A real
        item, another peer's or one that does not exist are all ``Unknown Item``."""
        message = s.call.envelope.message
        assert isinstance(message, m.DeleteItem)
        value = _value(message.item_id)
        if not value:
            raise NeededDataMissing(element="ItemId")
        item = ops.item_named(conn, peer=s.call.peer.name, value=value)
        if item is None or not item.temporary or item.owning_peer != s.call.peer.name:
            raise UnknownItem(element="ItemIdentifierValue", value=value)
        rs = ops.find_rs_request(conn, peer=s.call.peer.name, role="borrower", item_id=item.id)
        ops.delete_temporary_item(conn, item.barcode, s.now)
        if rs is not None:
            ops.advance_rs_request(conn, rs["id"], state="completed", step="completed",
                                   now=s.now)
        return DeleteItemResponse(item_id=ItemId(value=value, agency=self._agency()))

    def _create_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """A temporary item record without a hold (OCLC circulation toolkit's CreateItem)."""
        message = s.call.envelope.message
        assert isinstance(message, m.CreateItem)
        barcode = _value(message.item_id)
        if not barcode:
            raise NeededDataMissing(element="ItemId")
        peer = s.call.peer
        existing = queries.item_by_barcode(conn, barcode)
        if existing is not None:
            # A repeat while this peer's temporary item exists gets the same answer; keyed on
            # state, not on the barcode for ever, so the same lender barcode can be created
            # again once the item is deleted (a later loan of the same copy).
            if existing.temporary and existing.owning_peer == peer.name:
                return CreateItemResponse(item_id=ItemId(value=barcode, agency=self._agency()))
            raise DuplicateRequest(element="ItemIdentifierValue", value=barcode)
        bib = message.item.bibliographic if message.item else None
        title = (bib.title if bib and bib.title else "") or "[no title]"
        record_id = ops.create_brief_record(
            conn, f"ill-{peer.name}-item-{barcode}", ops.BriefRecord(
                title=f"{peer.title_prefix} {title}".strip(),
                author=(bib.author or "") if bib else "", isbn=(bib.isbn or "") if bib else ""))
        s.renewed_names.append(barcode)
        ops.create_temporary_item(conn, barcode=barcode, record_id=record_id, peer=peer.name,
                                  location=peer.default_pickup_location,
                                  call_number=(message.item.call_number or "")
                                  if message.item else "")
        return CreateItemResponse(item_id=ItemId(value=barcode, agency=self._agency()))

    def _fiscal_transaction(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """Record a fee against the patron (no payment processing)."""
        message = s.call.envelope.message
        assert isinstance(message, m.CreateUserFiscalTransaction)
        patron = self._patron(conn, message.user_id, message)
        fiscal = message.fiscal_transaction
        if fiscal is None or fiscal.amount is None or fiscal.amount.value is None:
            raise NeededDataMissing(element="Amount")
        # Fees only on the peer's own requests: a patron this peer has brought an item in
        # for (or its own institutional patron), an item it may act on.
        peer = s.call.peer
        if patron.institutional_peer != peer.name and conn.execute(
                "SELECT 1 FROM rs_requests WHERE peer = ? AND patron_id = ? LIMIT 1",
                (peer.name, patron.id)).fetchone() is None:
            raise UnknownPatron(element="UserIdentifierValue",
                                value=_value(message.user_id))
        item_id = None
        if _value(fiscal.item_id):
            item_id = self._find_item(conn, s, fiscal.item_id).id
        fee_id = ops.add_fee(conn, patron_id=patron.id, peer=s.call.peer.name,
                             amount=_money(fiscal.amount.value),
                             currency=str(fiscal.amount.currency or ""),
                             fee_type=str(fiscal.transaction_type or ""), item_id=item_id,
                             now=s.now)
        return CreateUserFiscalTransactionResponse(
            user_id=self._user_id(patron, message.user_id), reference_id=f"FEE-{fee_id}",
            reference_agency=self._agency())

    # -- lender side ------------------------------------------------------------------------

    def _request_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """A hold (or page) on our item for the borrowing library's institutional patron."""
        message = s.call.envelope.message
        assert isinstance(message, m.RequestItem)
        peer = s.call.peer
        broker_id = _value(message.request_id)   # optional (DCB): we assign our own
        broker_item = _value(message.item_ids[0]) if message.item_ids else None
        patron = self._institutional_patron(conn, s.call, message.user_id, strict=True)
        if broker_id:
            if self._volume(conn, peer, "lender", broker_id, broker_item, patron) is not None:
                raise DuplicateRequest(element="RequestIdentifierValue", value=broker_id)
        if patron.is_blocked():
            raise PatronBlocked(element="UserIdentifierValue", value=_value(message.user_id))
        item, record_id = self._choose_item(conn, message)
        request_type = str(message.request_type or "Hold")
        scope = str(message.request_scope_type or ("Item" if message.item_ids
                                                   else "Bibliographic Item"))
        if item is None and request_type.casefold() in ("loan", "page"):
            raise ItemNotAvailable(element="BibliographicRecordIdentifier")
        number = ops.next_request_number(conn)
        ops.place_hold(conn, patron_id=patron.id, record_id=record_id,
                       item_id=item.id if item else None,
                       pickup_location=self._pickup(peer, message.pickup_location), now=s.now,
                       pickup_expires=self._as_due(message.pickup_expiry_date, s))
        our_id = f"L-{number}"
        ops.create_rs_request(conn, peer=peer.name, role="lender", broker_request_id=broker_id,
                              our_request_id=our_id, state="filled" if item else "requested",
                              step="accepted" if item else "requested",
                              now=s.now, item_id=item.id if item else None,
                              item_barcode=item.barcode if item else None, patron_id=patron.id,
                              broker_item_id=broker_item)
        return RequestItemResponse(
            user_id=self._user_id(patron, message.user_id), request_type=request_type,
            request_scope_type=scope, request_id=self._request_id(None, our_id),
            item_id=ItemId(value=item.barcode, agency=self._agency()) if item else None)

    def _choose_item(self, conn: sqlite3.Connection,
                     message: m.RequestItem) -> tuple[Item | None, int]:
        """The item asked for, or the best available item of the record asked for."""
        if message.item_ids:
            value = _value(message.item_ids[0])
            item = queries.item_by_barcode(conn, value) if value else None
            if not value:
                raise NeededDataMissing(element="ItemId")
            if item is None or item.temporary:
                raise UnknownItem(element="ItemIdentifierValue", value=value)
            return item, item.record_id
        record_id = None
        for bib_id in message.bibliographic_ids:
            kind = RECORD_ID_CODES.get((bib_id.code or "sysnumber").casefold(), "local")
            record_id = queries.record_by_identifier(conn, kind, bib_id.identifier)
            if record_id is not None:
                break
        if record_id is None:
            if not message.bibliographic_ids:
                raise NeededDataMissing(element="BibliographicId")
            raise UnknownRecord(element="BibliographicRecordIdentifier",
                                value=message.bibliographic_ids[0].identifier)
        items = [i for i in queries.items_of_records(conn, [record_id])[record_id]
                 if not i.temporary]
        available = [i for i in items if i.status == "available" and not i.active_holds]
        return (available[0] if available else None), record_id

    def _cancel_request_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """Cancel a lender-side hold, found by our request id, the broker's, or the item."""
        message = s.call.envelope.message
        assert isinstance(message, m.CancelRequestItem)
        peer = s.call.peer
        request_value = _value(message.request_id)
        item = None
        if _value(message.item_id):
            item = ops.item_named(conn, peer=peer.name, value=_value(message.item_id) or "")
        rs = ops.find_rs_request(conn, peer=peer.name, role="lender",
                                 our_request_id=request_value, broker_request_id=request_value,
                                 item_id=item.id if item else None)
        if rs is None and item is not None and not request_value:
            # By ItemId only: a repeat of a cancel already made is answered as the first was.
            last = ops.latest_rs_request(conn, peer=peer.name, role="lender", item_id=item.id)
            if last is not None and last["cancelled_at"] is not None:
                rs = last
        if rs is None:
            raise UnknownRequest(element="RequestIdentifierValue", value=request_value)
        if rs["shipped_at"] is not None or rs["completed_at"] is not None:
            raise RequestAlreadyProcessed(element="RequestIdentifierValue",
                                          value=rs["our_request_id"])
        if rs["cancelled_at"] is None:
            hold_id = self._hold_of_request(conn, rs)
            if hold_id is not None:
                ops.set_hold_status(conn, hold_id, "cancelled", s.now)
            ops.advance_rs_request(conn, rs["id"], state="cancelled", step="cancelled",
                                   now=s.now)
        patron = queries.patron_by_id(conn, rs["patron_id"])
        assert patron is not None
        # lib-ncip-client reads the ItemId of the reply: always name the item when known.
        named = _value(message.item_id) or rs["broker_item_id"] or rs["item_barcode"]
        return CancelRequestItemResponse(
            user_id=self._user_id(patron, message.user_id),
            request_id=self._request_id(None, rs["our_request_id"]),
            item_id=ItemId(value=named, agency=self._agency()) if named else None)

    def _hold_of_request(self, conn: sqlite3.Connection, rs: sqlite3.Row) -> int | None:
        """The active hold a lender request placed (None if it has none left).

        An institutional patron has many holds, each placed by its own request; no column
        links the two, so match what RequestItem wrote in one step: the same patron, the same
        item (or none, for a record-level hold), placed when the request was made. Requests
        made in the same second correspond to their holds in creation order.
        """
        holds = conn.execute(
            "SELECT id, status FROM holds WHERE patron_id = ? AND placed_at = ? AND item_id IS ?"
            " ORDER BY id", (rs["patron_id"], rs["requested_at"], rs["item_id"])).fetchall()
        siblings = [row[0] for row in conn.execute(
            "SELECT id FROM rs_requests WHERE patron_id = ? AND role = 'lender' AND"
            " requested_at = ? AND item_id IS ? ORDER BY id",
            (rs["patron_id"], rs["requested_at"], rs["item_id"]))]
        index = siblings.index(rs["id"]) if rs["id"] in siblings else len(holds)
        if index < len(holds) and holds[index]["status"] == "active":
            return holds[index]["id"]
        return None

    def _lookup_request(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """The state of a tracked request."""
        message = s.call.envelope.message
        assert isinstance(message, m.LookupRequest)
        value = _value(message.request_id)
        item = ops.item_named(conn, peer=s.call.peer.name, value=_value(message.item_id) or "")
        rs = None
        for role in ("lender", "borrower"):
            rs = rs or ops.find_rs_request(conn, peer=s.call.peer.name, role=role,
                                           our_request_id=value, broker_request_id=value,
                                           item_id=item.id if item else None)
        if rs is None:
            raise UnknownRequest(element="RequestIdentifierValue", value=value)
        patron = queries.patron_by_id(conn, rs["patron_id"]) if rs["patron_id"] else None
        status = {"cancelled": "Cancelled", "completed": "Completed"}.get(
            rs["state"], "In Process")
        return LookupRequestResponse(
            request_id=self._request_id(None, rs["our_request_id"]),
            item_id=ItemId(value=rs["item_barcode"]) if rs["item_barcode"] else None,
            user_id=self._user_id(patron, None) if patron else None,
            request_type="Hold" if rs["role"] == "lender" else "Loan",
            request_scope_type="Item", request_status=status)

    def _notification(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """NCIP 1 notifications: track the step they report; acknowledge (idempotently)."""
        message = s.call.envelope.message
        assert isinstance(message, m.Notification)
        service = s.call.envelope.service
        steps = {"ItemShipped": "shipped", "ItemReceived": "received",
                 "ItemCheckedOut": "checked_out", "ItemCheckedIn": "checked_in",
                 "ItemRequestCancelled": "cancelled", "ItemRenewed": None,
                 "ItemRequested": "requested"}
        broker_id = _value(message.request_id)
        item = queries.item_by_barcode(conn, _value(message.item_id) or "")
        rs = None
        # By the broker's request id first (either role); by item only when the message has
        # no request id, or reports a step of an existing request: a new ItemRequested for an
        # item another request of this peer still holds is a new request, not that one.
        for role in ("lender", "borrower"):
            rs = rs or ops.find_rs_request(conn, peer=s.call.peer.name, role=role,
                                           broker_request_id=broker_id)
        if rs is None and item is not None and not (service == "ItemRequested" and broker_id):
            for role in ("lender", "borrower"):
                rs = rs or ops.find_rs_request(conn, peer=s.call.peer.name, role=role,
                                               item_id=item.id)
        step = steps.get(service)
        if rs is None and service == "ItemRequested" and broker_id:
            number = ops.next_request_number(conn)
            patron = self._institutional_patron(conn, s.call, message.user_id)
            if item is not None and not item.temporary:
                # A request for one of our items (docs/ncip.md §13): hold it for the
                # borrowing library, as RequestItem does.
                ops.place_hold(conn, patron_id=patron.id, record_id=item.record_id,
                               item_id=item.id, now=s.now,
                               pickup_location=self._pickup(s.call.peer,
                                                            message.pickup_location))
            ops.create_rs_request(conn, peer=s.call.peer.name, role="lender",
                                  broker_request_id=broker_id, our_request_id=f"L-{number}",
                                  state="requested", step="requested", now=s.now,
                                  item_id=item.id if item else None,
                                  item_barcode=item.barcode if item else None,
                                  patron_id=patron.id)
        elif rs is not None and step is not None:
            if (service == "ItemRequestCancelled" and rs["role"] == "lender"
                    and rs["shipped_at"] is None and rs["cancelled_at"] is None):
                hold_id = self._hold_of_request(conn, rs)
                if hold_id is not None:
                    ops.set_hold_status(conn, hold_id, "cancelled", s.now)
            # The step happened when the message says (DateShipped...), never in the future.
            event = message.date_event
            when = min(event, s.now) if isinstance(event, datetime) else s.now
            due = self._as_due(message.date_due, s)
            extra = {"due_at": ops.iso(due)} if due is not None else {}
            ops.advance_rs_request(conn, rs["id"], state=step, step=step, now=when, **extra)
        elif rs is not None and service == "ItemRenewed" and message.date_due is not None:
            due = self._as_due(message.date_due, s)
            assert due is not None
            conn.execute("UPDATE rs_requests SET due_at = ? WHERE id = ?",
                         (ops.iso(due), rs["id"]))
        return NotificationResponse(service=service)


def _value(identifier: Any) -> str | None:
    value = getattr(identifier, "value", None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _names_request(item_id: ItemId | None) -> bool:
    """True when an ItemId names the item by a request id (Tipasa's "ILL Request Id")."""
    kind = getattr(item_id, "type", None)
    return kind is not None and "request" in str(kind).casefold()


def _money(minor_units: int, exponent: int = 2) -> str:
    """NCIP MonetaryValue (minor units) as a decimal string: 1250 → "12.50"."""
    sign = "-" if minor_units < 0 else ""
    units = abs(minor_units)
    return f"{sign}{units // 10**exponent}.{units % 10**exponent:0{exponent}d}"

