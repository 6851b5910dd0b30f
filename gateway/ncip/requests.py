# -*- test-case-name: tests.gateway.ncip.test_workflow_rules -*-
"""Workflow steps for requests: the lender side's RequestItem and CancelRequestItem,
LookupRequest, and the NCIP 1 notifications that report a request's steps.

Each step runs inside one unit of work (:mod:`gateway.ncip.exactly_once`).
"""

from __future__ import annotations

from datetime import datetime

from gateway.domain.books import TrackedRequest
from gateway.domain.model import (
    DuplicateRequest,
    Item,
    ItemNotAvailable,
    NeededDataMissing,
    PatronBlocked,
    RequestAlreadyProcessed,
    UnknownItem,
    UnknownRecord,
    UnknownRequest,
)
from gateway.ncip.lookups import RECORD_ID_CODES
from gateway.ncip.service import identifier_value
from gateway.ncip.step import Step
from protocols.ncip import messages as m
from protocols.ncip.model import ItemId
from protocols.ncip.responses import (
    CancelRequestItemResponse,
    LookupRequestResponse,
    NCIPResponse,
    NotificationResponse,
    RequestItemResponse,
)

# The request step each NCIP 1 notification reports (None: it reports none).
NOTIFIED_STEPS = {"ItemShipped": "shipped", "ItemReceived": "received",
                  "ItemCheckedOut": "checked_out", "ItemCheckedIn": "checked_in",
                  "ItemRequestCancelled": "cancelled", "ItemRenewed": None,
                  "ItemRequested": "requested"}


def request_item(s: Step) -> NCIPResponse:
    """A hold (or page) on our item for the borrowing library's institutional patron."""
    message = s.message
    assert isinstance(message, m.RequestItem)
    broker_id = identifier_value(message.request_id)   # optional (DCB): we assign our own
    broker_item = identifier_value(message.item_ids[0]) if message.item_ids else None
    patron = s.institutional_patron(message.user_id, strict=True)
    if broker_id and s.volume("lender", broker_id, broker_item, patron) is not None:
        raise DuplicateRequest(element="RequestIdentifierValue", value=broker_id)
    if patron.is_blocked():
        raise PatronBlocked(element="UserIdentifierValue",
                            value=identifier_value(message.user_id))
    item, record_id = _choose_item(s, message)
    request_type = str(message.request_type or "Hold")
    scope = str(message.request_scope_type or ("Item" if message.item_ids
                                               else "Bibliographic Item"))
    if item is None and request_type.casefold() in ("loan", "page"):
        raise ItemNotAvailable(element="BibliographicRecordIdentifier")
    number = s.books.requests.next_number()
    s.changes.place_hold(patron_id=patron.id, record_id=record_id,
                         item_id=item.id if item else None,
                         pickup_location=s.pickup(message.pickup_location), now=s.now,
                         pickup_expires=s.as_due(message.pickup_expiry_date))
    our_id = f"L-{number}"
    s.books.requests.create(
        peer=s.peer.name, role="lender", broker_request_id=broker_id, our_request_id=our_id,
        state="filled" if item else "requested", step="accepted" if item else "requested",
        now=s.now, item_id=item.id if item else None,
        item_barcode=item.barcode if item else None, patron_id=patron.id,
        broker_item_id=broker_item)
    return RequestItemResponse(
        user_id=s.user_id(patron, message.user_id), request_type=request_type,
        request_scope_type=scope, request_id=s.our_request_id(our_id),
        item_id=s.item_id(item.barcode) if item else None)


def _choose_item(s: Step, message: m.RequestItem) -> tuple[Item | None, int]:
    """The item asked for, or the best available item of the record asked for."""
    if message.item_ids:
        value = identifier_value(message.item_ids[0])
        if not value:
            raise NeededDataMissing(element="ItemId")
        item = s.changes.item_by_barcode(value)
        if item is None or item.temporary:
            raise UnknownItem(element="ItemIdentifierValue", value=value)
        return item, item.record_id
    record_id = None
    for bib_id in message.bibliographic_ids:
        kind = RECORD_ID_CODES.get((bib_id.code or "sysnumber").casefold(), "local")
        record_id = s.changes.record_by_identifier(kind, bib_id.identifier)
        if record_id is not None:
            break
    if record_id is None:
        if not message.bibliographic_ids:
            raise NeededDataMissing(element="BibliographicId")
        raise UnknownRecord(element="BibliographicRecordIdentifier",
                            value=message.bibliographic_ids[0].identifier)
    items = [i for i in s.changes.items_of_record(record_id) if not i.temporary]
    available = [i for i in items if i.status == "available" and not i.active_holds]
    return (available[0] if available else None), record_id


def cancel_request_item(s: Step) -> NCIPResponse:
    """Cancel a lender-side hold, found by our request id, the broker's, or the item."""
    message = s.message
    assert isinstance(message, m.CancelRequestItem)
    peer = s.peer.name
    request_value = identifier_value(message.request_id)
    item_value = identifier_value(message.item_id)
    item = s.item_named(item_value) if item_value else None
    request = s.books.requests.find(peer=peer, role="lender", our_request_id=request_value,
                                    broker_request_id=request_value,
                                    item_id=item.id if item else None)
    if request is None and item is not None and not request_value:
        # By ItemId only: a repeat of a cancel already made is answered as the first was.
        last = s.books.requests.latest(peer=peer, role="lender", item_id=item.id)
        if last is not None and last.cancelled_at is not None:
            request = last
    if request is None:
        raise UnknownRequest(element="RequestIdentifierValue", value=request_value)
    if request.shipped_at is not None or request.completed_at is not None:
        raise RequestAlreadyProcessed(element="RequestIdentifierValue",
                                      value=request.our_request_id)
    if request.cancelled_at is None:
        _cancel_hold(s, request)
        s.books.requests.advance(request.id, state="cancelled", step="cancelled", now=s.now)
    assert request.patron_id is not None
    patron = s.changes.patron_by_id(request.patron_id)
    assert patron is not None
    # lib-ncip-client reads the ItemId of the reply: always name the item when known.
    named = item_value or request.broker_item_id or request.item_barcode
    return CancelRequestItemResponse(
        user_id=s.user_id(patron, message.user_id),
        request_id=s.our_request_id(request.our_request_id),
        item_id=s.item_id(named) if named else None)


def _cancel_hold(s: Step, request: TrackedRequest) -> None:
    """The hold a lender request placed, cancelled (if it has one left)."""
    hold_id = s.hold_of_request(request)
    if hold_id is not None:
        s.changes.set_hold_status(hold_id, "cancelled", s.now)


def lookup_request(s: Step) -> NCIPResponse:
    """The state of a tracked request (read only)."""
    message = s.message
    assert isinstance(message, m.LookupRequest)
    value = identifier_value(message.request_id)
    item = s.item_named(identifier_value(message.item_id) or "")
    request = None
    for role in ("lender", "borrower"):
        request = request or s.books.requests.find(
            peer=s.peer.name, role=role, our_request_id=value, broker_request_id=value,
            item_id=item.id if item else None)
    if request is None:
        raise UnknownRequest(element="RequestIdentifierValue", value=value)
    patron = s.changes.patron_by_id(request.patron_id) if request.patron_id else None
    status = {"cancelled": "Cancelled", "completed": "Completed"}.get(
        request.state, "In Process")
    return LookupRequestResponse(
        request_id=s.our_request_id(request.our_request_id),
        item_id=ItemId(value=request.item_barcode) if request.item_barcode else None,
        user_id=s.user_id(patron, None) if patron else None,
        request_type="Hold" if request.role == "lender" else "Loan",
        request_scope_type="Item", request_status=status)


def notification(s: Step) -> NCIPResponse:
    """NCIP 1 notifications: track the step they report; acknowledge (idempotently)."""
    message = s.message
    assert isinstance(message, m.Notification)
    service = s.call.envelope.service
    broker_id = identifier_value(message.request_id)
    item = s.changes.item_by_barcode(identifier_value(message.item_id) or "")
    request = _notified_request(s, service, broker_id, item)
    step = NOTIFIED_STEPS.get(service)
    if request is None and service == "ItemRequested" and broker_id:
        _requested(s, message, broker_id, item)
    elif request is not None and step is not None:
        if (service == "ItemRequestCancelled" and request.role == "lender"
                and request.shipped_at is None and request.cancelled_at is None):
            _cancel_hold(s, request)
        # The step happened when the message says (DateShipped...), never in the future.
        event = message.date_event
        when = min(event, s.now) if isinstance(event, datetime) else s.now
        s.books.requests.advance(request.id, state=step, step=step, now=when,
                                 due_at=s.as_due(message.date_due))
    elif request is not None and service == "ItemRenewed" and message.date_due is not None:
        due = s.as_due(message.date_due)
        assert due is not None
        s.books.requests.set_due(request.id, due)
    return NotificationResponse(service=service)


def _notified_request(s: Step, service: str, broker_id: str | None,
                      item: Item | None) -> TrackedRequest | None:
    """The request a notification reports on: by the broker's request id first (either
    role); by item only when the message has no request id, or reports a step of an existing
    request: a new ItemRequested for an item another request of this peer still holds is a
    new request, not that one."""
    requests = s.books.requests
    found = None
    for role in ("lender", "borrower"):
        found = found or requests.find(peer=s.peer.name, role=role,
                                       broker_request_id=broker_id)
    if found is None and item is not None and not (service == "ItemRequested" and broker_id):
        for role in ("lender", "borrower"):
            found = found or requests.find(peer=s.peer.name, role=role, item_id=item.id)
    return found


def _requested(s: Step, message: m.Notification, broker_id: str, item: Item | None) -> None:
    """ItemRequested for a request we do not know: a new lender request (and, for one of
    our items, a hold on it for the borrowing library, as RequestItem places)."""
    number = s.books.requests.next_number()
    patron = s.institutional_patron(message.user_id)
    if item is not None and not item.temporary:
        # A request for one of our items (docs/ncip.md §13).
        s.changes.place_hold(patron_id=patron.id, record_id=item.record_id, item_id=item.id,
                             now=s.now, pickup_location=s.pickup(message.pickup_location))
    s.books.requests.create(
        peer=s.peer.name, role="lender", broker_request_id=broker_id,
        our_request_id=f"L-{number}", state="requested", step="requested", now=s.now,
        item_id=item.id if item else None, item_barcode=item.barcode if item else None,
        patron_id=patron.id)
