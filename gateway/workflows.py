# -*- test-case-name: tests.gateway.test_workflows -*-
"""Resource-sharing workflows: what each state-changing NCIP request does, exactly once.

Each request runs as one job of the store's writer: the idempotency check, every circulation
change, the request tracking, the rendered reply, its idempotency record and its audit row commit
in one transaction before the reply leaves. A repeat of a request that succeeded (same peer,
service and RequestId) gets the stored reply and changes nothing; a repeat that arrives while the
first is still in flight waits for it and gets the same reply. Requests without a RequestId are
idempotent by state: checking out an item already on loan to the same patron returns that loan,
checking in an item not on loan is answered per the peer's setting, deleting a deleted item is
``Unknown Item``.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred

from gateway.audit import AuditEntry, audit_time, insert_entry
from gateway.backends import operations as ops
from gateway.backends import queries
from gateway.backends.base import (
    DuplicateRequest,
    Item,
    ItemAlreadyCheckedOut,
    ItemNotAvailable,
    ItemNotCheckedOut,
    ItemNotRenewable,
    NeededDataMissing,
    NotTemporaryItem,
    Patron,
    PatronBlocked,
    RequestAlreadyProcessed,
    UnknownItem,
    UnknownPatron,
    UnknownRecord,
    UnknownRequest,
)
from gateway.config import Peer
from gateway.ncip_handlers import RECORD_ID_CODES
from gateway.ncip_service import PREFIX_STYLES, NcipCall, Rendered
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


@dataclass(frozen=True)
class _Step:
    """What a workflow's writer job needs besides the connection."""

    call: NcipCall
    now: datetime
    tz: ZoneInfo
    started: float
    request_body: str | None = None  # as the audit row keeps it, redacted before the job


class Workflows:
    """The state-changing NCIP services on the embedded circulation system."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self._in_flight: dict[tuple[str, str, str], list[Deferred[Any]]] = {}

    def register(self, handlers: dict[str, Any]) -> None:
        """Add the workflow services to an NCIP service's handler table."""
        simple = {
            "AcceptItem": (self._accept_item, "request_id"),
            "CheckOutItem": (self._check_out_item, "request_id"),
            "CheckInItem": (self._check_in_item, "request_id"),
            "RenewItem": (self._renew_item, None),
            "DeleteItem": (self._delete_item, None),
            "RequestItem": (self._request_item, "request_id"),
            "CancelRequestItem": (self._cancel_request_item, "request_id"),
            "CreateItem": (self._create_item, None),   # idempotent by state: see there
            "CreateUserFiscalTransaction": (self._fiscal_transaction, None),
            "LookupRequest": (self._lookup_request, None),
        }
        for service, (step, key_field) in simple.items():
            handlers[service] = self._handler(step, key_field, writes=service != "LookupRequest")
        for service in m.NOTIFICATIONS:
            handlers[service] = self._handler(self._notification, "request_id")

    # -- the exactly-once machinery ---------------------------------------------------------

    def _handler(self, step: Callable[[sqlite3.Connection, _Step], NCIPResponse],
                 key_field: str | None, writes: bool = True) -> Callable[[NcipCall], Any]:
        async def handle(call: NcipCall) -> Rendered:
            return await self._run(call, step, key_field, writes)
        return handle

    async def _run(self, call: NcipCall, step: Callable[[sqlite3.Connection, _Step], NCIPResponse],
                   key_field: str | None, writes: bool) -> Rendered:
        message = call.envelope.message
        key_value = None
        if key_field == "request_id":
            key_value = _value(getattr(message, "request_id", None))
        elif key_field == "item_id":
            key_value = _value(getattr(message, "item_id", None))
        if call.envelope.service == "CreateUserFiscalTransaction":
            fiscal = getattr(message, "fiscal_transaction", None)
            key_value = (_value(getattr(fiscal, "request_id", None))
                         or getattr(fiscal, "reference_id", None))
        key = (call.peer.name, call.envelope.service, key_value) if key_value else None
        if key is not None and key in self._in_flight:
            waiter: Deferred[Rendered] = Deferred()
            self._in_flight[key].append(waiter)
            return await waiter
        # The request's audit body does not depend on the outcome: redacted here, not in the
        # writer job, so that the writer's serial batch (and its commit) does less.
        request_body = self.gateway.audit.ncip_body(
            call.body, call.tree.take() if call.tree is not None else None) if writes else None
        if key is not None:
            self._in_flight[key] = []
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
            for waiter in self._in_flight.pop(key, []) if key else []:
                waiter.errback(error)
            raise
        for waiter in self._in_flight.pop(key, []) if key else []:
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
             key: tuple[str, str, str] | None) -> Rendered:
        """Runs in the writer thread: replay, or change + reply + idempotency + audit."""
        if key is not None:
            row = conn.execute("SELECT response FROM idempotency WHERE peer = ? AND service = ?"
                               " AND key = ?", key).fetchone()
            stored = (self.gateway.audit.open_reply(conn, key, row[0]) if row is not None
                      else None)
            if stored is not None:
                return Rendered(stored, audited=False)
        call = context.call
        response = step(conn, context)
        reply_tree: list[Any] = []
        reply = self._render(response, call, reply_tree)
        if key is not None:
            conn.execute("INSERT INTO idempotency (peer, service, key, response, created_at)"
                         " VALUES (?, ?, ?, ?, ?)",
                         (*key, self.gateway.audit.seal_reply(key, reply), ops.iso(context.now)))
        insert_entry(conn, self._audit_entry(call, response, reply, context,
                                             reply_tree[0] if reply_tree else None))
        return Rendered(reply, audited=True)

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
            response_body=audit.ncip_body(reply, reply_tree), time=audit_time(context.now))

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
        if patron is None:
            raise UnknownPatron(element="UserIdentifierValue", value=identifier)
        return patron

    def _institutional_patron(self, conn: sqlite3.Connection, call: NcipCall,
                              user: UserId | None) -> Patron:
        """The borrowing library's patron: as named, or created from the peer's template."""
        if user is not None and user.value:
            existing = queries.find_patron(conn, user.value)
            if existing is not None:
                return existing
        header = call.envelope.message.header
        agency = (user.value if user is not None and user.value else None) or (
            header.from_agency.value if header and header.from_agency else call.peer.name)
        template = call.peer.institutional_patron
        prefix, _, suffix = template.partition("{agency}")
        if agency.startswith(prefix) and agency.endswith(suffix) and len(agency) > len(
                prefix + suffix):
            barcode = agency
            agency = agency[len(prefix):len(agency) - len(suffix) or None]
        else:
            barcode = template.format(agency=agency)
        return ops.ensure_institutional_patron(conn, barcode=barcode, peer=call.peer.name,
                                               agency=agency)

    def _pickup(self, peer: Peer, location: str | None) -> str:
        if location:
            for code, ours in peer.pickup_locations.items():
                if code.casefold() == location.strip().casefold():
                    return ours
        return peer.default_pickup_location or (location or "").strip()

    def _item(self, conn: sqlite3.Connection, item_id: ItemId | None) -> Item:
        barcode = _value(item_id)
        if not barcode:
            raise NeededDataMissing(element="ItemId")
        item = queries.item_by_barcode(conn, barcode)
        if item is None:
            raise UnknownItem(element="ItemIdentifierValue", value=barcode)
        return item

    def _user_id(self, patron: Patron, sent: UserId | None) -> UserId:
        return UserId(value=patron.barcode,
                      agency=(sent.agency if sent is not None else None) or self._agency(),
                      type=sent.type if sent is not None else None)

    def _request_id(self, sent: RequestId | None, value: str | None = None) -> RequestId:
        if value is not None:
            return RequestId(value=value, agency=self._agency())
        assert sent is not None
        return RequestId(value=sent.value, agency=sent.agency, type=sent.type)

    # -- borrower side ----------------------------------------------------------------------

    def _accept_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """A borrowed item arrived: brief record, temporary item, hold (or loan) for the patron."""
        message = s.call.envelope.message
        assert isinstance(message, m.AcceptItem)
        peer = s.call.peer
        broker_id = _value(message.request_id)
        if not broker_id:
            raise NeededDataMissing(element="RequestId")
        patron = self._patron(conn, message.user_id)
        if patron.is_blocked() or patron.is_expired(s.now.astimezone(s.tz).date()):
            raise PatronBlocked(element="UserIdentifierValue", value=patron.barcode)
        existing = ops.find_rs_request(conn, peer=peer.name, role="borrower",
                                       broker_request_id=broker_id)
        if existing is not None:
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
        barcode = self._temporary_barcode(conn, peer, broker_id, _value(message.item_id))
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
            renewable=int(not message.renewal_not_permitted))
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
        """Borrower: the patron takes the temporary item. Lender: our item ships."""
        message = s.call.envelope.message
        assert isinstance(message, m.CheckOutItem)
        item = self._item(conn, message.item_id)
        if item.temporary:
            patron = self._patron(conn, message.user_id, message)
        else:
            patron = self._institutional_patron(conn, s.call, message.user_id)
        if patron.is_blocked() or patron.is_expired(s.now.astimezone(s.tz).date()):
            raise PatronBlocked(element="UserIdentifierValue", value=patron.barcode)
        loan = queries.open_loan(conn, item.id)
        if loan is not None and loan.patron_id != patron.id:
            raise ItemAlreadyCheckedOut(element="ItemIdentifierValue", value=item.barcode)
        role = "borrower" if item.temporary else "lender"
        rs = ops.find_rs_request(conn, peer=s.call.peer.name, role=role,
                                 broker_request_id=_value(message.request_id), item_id=item.id)
        if loan is None:
            if item.temporary:
                lender_due = queries.parse_time(rs["due_at"]) if rs is not None else None
                due = self._borrowed_due(lender_due, s)
            else:
                due = self._due_in(self.gateway.config.circulation.loan_period_days, s)
                desired = self._as_due(message.desired_date_due, s)
                if desired is not None:
                    due = min(due, desired)
            loan = ops.check_out(conn, item_id=item.id, patron_id=patron.id, due_at=due,
                                 now=s.now)
            if not item.temporary:
                self._settle_lender_holds(conn, item, patron, s.now)
            if rs is None and not item.temporary:
                number = ops.next_request_number(conn)
                ops.create_rs_request(
                    conn, peer=s.call.peer.name, role="lender",
                    broker_request_id=_value(message.request_id), our_request_id=f"L-{number}",
                    state="shipped", step="shipped", now=s.now, item_id=item.id,
                    item_barcode=item.barcode, patron_id=patron.id)
            elif rs is not None:
                step = "checked_out" if item.temporary else "shipped"
                ops.advance_rs_request(conn, rs["id"], state=step, step=step, now=s.now,
                                       item_id=item.id, item_barcode=item.barcode)
        return CheckOutItemResponse(item_id=ItemId(value=item.barcode, agency=self._agency()),
                                    user_id=self._user_id(patron, message.user_id),
                                    date_due=loan.due_at.astimezone(s.tz),
                                    renewal_count=loan.renewals or None)

    def _settle_lender_holds(self, conn: sqlite3.Connection, item: Item, patron: Patron,
                             now: datetime) -> None:
        """The institutional patron's hold on this record is fulfilled by the item shipped."""
        for hold in queries.holds_of_patron(conn, patron.id):
            if hold.record_id == item.record_id and hold.item_id in (None, item.id):
                ops.set_hold_status(conn, hold.id, "fulfilled", now)
                break

    def _check_in_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """The item came back: end the loan; delete a temporary item if the peer asks."""
        message = s.call.envelope.message
        assert isinstance(message, m.CheckInItem)
        peer = s.call.peer
        barcode = _value(message.item_id)
        if barcode and queries.item_by_barcode(conn, barcode) is None:
            done = ops.latest_rs_request(conn, peer=peer.name, role="borrower",
                                         item_barcode=barcode)
            if (done is not None and done["item_id"] is None and peer.delete_on_checkin
                    and done["checked_in_at"] is not None):
                # A repeat of the check-in that deleted this peer's temporary item: answer
                # as the first time (the patron is named when the item had been lent).
                patron = queries.patron_by_id(conn, done["patron_id"]) \
                    if done["checked_out_at"] and done["patron_id"] else None
                return CheckInItemResponse(
                    item_id=ItemId(value=barcode, agency=self._agency()),
                    user_id=self._user_id(patron, message.user_id) if patron else None)
        item = self._item(conn, message.item_id)
        loan = queries.open_loan(conn, item.id)
        role = "borrower" if item.temporary else "lender"
        rs = ops.find_rs_request(conn, peer=peer.name, role=role,
                                 broker_request_id=_value(message.request_id), item_id=item.id)
        patron_id = loan.patron_id if loan is not None else None
        if loan is None:
            # A repeat of a check-in this peer made: name the same patron as the first reply
            # did (only the patron of this peer's own request, never anyone else's).
            last = ops.latest_rs_request(conn, peer=peer.name, role=role, item_id=item.id)
            returned_to = ops.last_returned_loan_patron(conn, item.id)
            if (last is not None and last["checked_in_at"] is not None
                    and returned_to is not None and returned_to == last["patron_id"]):
                patron_id = returned_to
        # Delete on check-in only the peer's own temporary items, never another peer's.
        deletes = item.temporary and peer.delete_on_checkin and item.owning_peer == peer.name
        if loan is None and peer.checkin_not_on_loan == "problem" and not deletes:
            raise ItemNotCheckedOut(element="ItemIdentifierValue", value=item.barcode)
        if loan is not None:
            ops.check_in(conn, item_id=item.id, now=s.now,
                         status="in_transit" if item.temporary else "available")
        if rs is not None:
            ops.advance_rs_request(conn, rs["id"], state="returned", step="returned", now=s.now)
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
        return CheckInItemResponse(item_id=ItemId(value=item.barcode, agency=self._agency()),
                                   user_id=user)

    def _renew_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """A new due date within local policy and the lender's limit."""
        message = s.call.envelope.message
        assert isinstance(message, m.RenewItem)
        item = self._item(conn, message.item_id)
        loan = queries.open_loan(conn, item.id)
        if loan is None:
            raise ItemNotCheckedOut(element="ItemIdentifierValue", value=item.barcode)
        settings = self.gateway.config.circulation
        desired = self._as_due(message.desired_date_due, s)
        if item.temporary:
            rs = ops.find_rs_request(conn, peer=s.call.peer.name, role="borrower",
                                     broker_request_id=_value(message.request_id),
                                     item_id=item.id)
            if rs is not None and not rs["renewable"]:
                raise ItemNotRenewable(element="ItemIdentifierValue", value=item.barcode)
            limit = queries.parse_time(rs["due_at"]) if rs is not None else None
            new_due = self._due_in(settings.borrowed_loan_period_days, s)
        else:
            if queries.active_holds_of_item(conn, item.id):
                raise ItemNotRenewable(element="ItemIdentifierValue", value=item.barcode)
            limit = None
            new_due = self._due_in(settings.loan_period_days, s)
        if desired is not None:
            new_due = min(new_due, desired)
        if limit is not None:
            new_due = min(new_due, limit)
        if new_due > loan.due_at:
            # Local policy limits renewals of every loan, ours and borrowed; a repeat that
            # would not move the date (a retried renewal) is answered without counting.
            if loan.renewals >= settings.max_renewals:
                raise ItemNotRenewable(element="ItemIdentifierValue", value=item.barcode)
            loan = ops.renew(conn, loan, new_due)
        patron = queries.patron_by_id(conn, loan.patron_id)
        return RenewItemResponse(item_id=ItemId(value=item.barcode, agency=self._agency()),
                                 user_id=self._user_id(patron, message.user_id) if patron
                                 else None, date_due=loan.due_at.astimezone(s.tz),
                                 renewal_count=loan.renewals or None)

    def _delete_item(self, conn: sqlite3.Connection, s: _Step) -> NCIPResponse:
        """Remove a temporary item, its brief record and holds; never a real item."""
        message = s.call.envelope.message
        assert isinstance(message, m.DeleteItem)
        barcode = _value(message.item_id)
        if not barcode:
            raise NeededDataMissing(element="ItemId")
        item = queries.item_by_barcode(conn, barcode)
        if item is not None and item.temporary and item.owning_peer != s.call.peer.name:
            # Another peer's borrowed item (e.g. a colliding request id): not this peer's to
            # remove.
            raise NotTemporaryItem(element="ItemIdentifierValue", value=barcode)
        rs = ops.find_rs_request(conn, peer=s.call.peer.name, role="borrower",
                                 item_id=item.id) if item else None
        ops.delete_temporary_item(conn, barcode, s.now)
        if rs is not None:
            ops.advance_rs_request(conn, rs["id"], state="completed", step="completed",
                                   now=s.now)
        return DeleteItemResponse(item_id=ItemId(value=barcode, agency=self._agency()))

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
        item_id = None
        barcode = _value(fiscal.item_id)
        if barcode:
            found = queries.item_by_barcode(conn, barcode)
            item_id = found.id if found else None
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
        broker_id = _value(message.request_id)
        if not broker_id:
            raise NeededDataMissing(element="RequestId")
        if ops.find_rs_request(conn, peer=peer.name, role="lender",
                               broker_request_id=broker_id) is not None:
            raise DuplicateRequest(element="RequestIdentifierValue", value=broker_id)
        patron = self._institutional_patron(conn, s.call, message.user_id)
        if patron.is_blocked():
            raise PatronBlocked(element="UserIdentifierValue", value=patron.barcode)
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
                              item_barcode=item.barcode if item else None, patron_id=patron.id)
        return RequestItemResponse(
            user_id=self._user_id(patron, message.user_id), request_type=request_type,
            request_scope_type=scope, request_id=self._request_id(None, our_id),
            item_id=ItemId(value=item.barcode, agency=self._agency()) if item else None)

    def _choose_item(self, conn: sqlite3.Connection,
                     message: m.RequestItem) -> tuple[Item | None, int]:
        """The item asked for, or the best available item of the record asked for."""
        if message.item_ids:
            item = self._item(conn, message.item_ids[0])
            if item.temporary:
                raise UnknownItem(element="ItemIdentifierValue", value=item.barcode)
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
        if message.item_id is not None and message.item_id.value:
            item = queries.item_by_barcode(conn, message.item_id.value)
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
        return CancelRequestItemResponse(
            user_id=self._user_id(patron, message.user_id),
            request_id=self._request_id(None, rs["our_request_id"]),
            item_id=ItemId(value=rs["item_barcode"], agency=self._agency())
            if rs["item_barcode"] and not request_value else None)

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
        item = queries.item_by_barcode(conn, _value(message.item_id) or "")
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
            ops.advance_rs_request(conn, rs["id"], state=step, step=step, now=s.now)
        return NotificationResponse(service=service)


def _value(identifier: Any) -> str | None:
    value = getattr(identifier, "value", None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _money(minor_units: int, exponent: int = 2) -> str:
    """NCIP MonetaryValue (minor units) as a decimal string: 1250 → "12.50"."""
    sign = "-" if minor_units < 0 else ""
    units = abs(minor_units)
    return f"{sign}{units // 10**exponent}.{units % 10**exponent:0{exponent}d}"

