# -*- test-case-name: tests.gateway.ncip.test_workflow_rules -*-
"""Borrower-side workflow steps for the temporary items that stand for borrowed books:
AcceptItem (the item arrives), CreateItem (an item record without a hold), DeleteItem.

Each step runs inside one unit of work (:mod:`gateway.ncip.exactly_once`).
"""

from __future__ import annotations

import itertools

from gateway.domain.model import (
    BriefRecord,
    DuplicateRequest,
    NeededDataMissing,
    UnknownItem,
)
from gateway.ncip.service import identifier_value
from gateway.ncip.step import Step, echo_request_id, money
from protocols.ncip import messages as m
from protocols.ncip.responses import (
    AcceptItemResponse,
    CreateItemResponse,
    DeleteItemResponse,
    NCIPResponse,
)

CIRCULATE_ACTIONS = ("Circulate", "Circulate And Notify")


def accept_item(s: Step) -> NCIPResponse:
    """A borrowed item arrived: brief record, temporary item, hold (or loan) for the patron."""
    message = s.message
    assert isinstance(message, m.AcceptItem)
    broker_id = identifier_value(message.request_id)
    if not broker_id:
        raise NeededDataMissing(element="RequestId")
    assert message.request_id is not None
    broker_item = identifier_value(message.item_id)
    patron = s.patron(message.user_id)
    s.check_may_borrow(patron, message.user_id)
    # One RequestId names one volume per ItemId (ReShare's multi-volume loans).
    existing = s.volume("borrower", broker_id, broker_item, patron)
    if existing is not None:
        if existing.item_id is not None and existing.item_barcode is not None:
            # The same volume accepted again (its stored reply gone): the same answer.
            return AcceptItemResponse(request_id=echo_request_id(message.request_id),
                                      item_id=s.item_id(existing.item_barcode))
        raise DuplicateRequest(element="RequestIdentifierValue", value=broker_id)
    number = s.books.requests.next_number()
    record_id = s.changes.create_brief_record(f"ill-{s.peer.name}-{number}", _brief(s, message))
    barcode = temporary_barcode(s, broker_id, broker_item)
    s.renewed_names.extend(name for name in (barcode, broker_item) if name)
    pickup = s.pickup(message.pickup_location)
    item_id = s.changes.create_temporary_item(
        barcode=barcode, record_id=record_id, peer=s.peer.name, location=pickup,
        call_number=(message.item.call_number or "") if message.item else "")
    lender_due = s.as_due(message.date_for_return)
    request_id = s.books.requests.create(
        peer=s.peer.name, role="borrower", broker_request_id=broker_id,
        our_request_id=f"B-{number}", state="awaiting_pickup", step="accepted",
        also_stamped=("received",), now=s.now, item_id=item_id, item_barcode=barcode,
        patron_id=patron.id, due_at=lender_due, renewable=not message.renewal_not_permitted,
        broker_item_id=broker_item)
    action = message.requested_action_type
    if action is not None and action.is_one_of(*CIRCULATE_ACTIONS):
        s.changes.check_out(item_id=item_id, patron_id=patron.id,
                            due_at=s.borrowed_due(lender_due), now=s.now)
        s.books.requests.advance(request_id, state="checked_out", step="checked_out",
                                 now=s.now)
    else:
        expires = s.as_due(message.pickup_expiry_date) or s.due_in(
            s.settings.pickup_period_days)
        s.changes.place_hold(patron_id=patron.id, record_id=record_id, item_id=item_id,
                             pickup_location=pickup, now=s.now, pickup_expires=expires)
    fiscal = message.fiscal_transaction
    if fiscal is not None and fiscal.amount is not None and fiscal.amount.value:
        s.changes.add_fee(patron_id=patron.id, peer=s.peer.name,
                          amount=money(fiscal.amount.value),
                          currency=str(fiscal.amount.currency or ""),
                          fee_type=str(fiscal.transaction_type or "Interlibrary Loan Fee"),
                          item_id=item_id, now=s.now)
    # The barcode we chose: staff see it on the item, and we answer to it as to the
    # broker's own ItemId (which is what brokers keep sending).
    return AcceptItemResponse(request_id=echo_request_id(message.request_id),
                              item_id=s.item_id(barcode))


def _brief(s: Step, message: m.AcceptItem) -> BriefRecord:
    """The brief record of a borrowed item, its title marked with the peer's prefix."""
    bib = message.bibliographic
    title = (bib.title if bib and bib.title else "") or "[no title]"
    if s.peer.title_prefix:
        title = f"{s.peer.title_prefix} {title}"
    return BriefRecord(title=title, author=(bib.author or "") if bib else "",
                       publisher=(bib.publisher or "") if bib else "",
                       date=(bib.publication_date or "") if bib else "",
                       isbn=(bib.isbn or "") if bib else "")


def temporary_barcode(s: Step, request_id: str, lender_barcode: str | None) -> str:
    """The barcode per the peer's policy, made unique against every live item."""
    peer = s.peer
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
        if not s.changes.barcode_in_use(candidate):
            return candidate
    raise DuplicateRequest(element="ItemIdentifierValue", value=base)


def create_item(s: Step) -> NCIPResponse:
    """A temporary item record without a hold (OCLC circulation toolkit's CreateItem).
    Idempotent by state, not by a stored reply: see below."""
    message = s.message
    assert isinstance(message, m.CreateItem)
    barcode = identifier_value(message.item_id)
    if not barcode:
        raise NeededDataMissing(element="ItemId")
    peer = s.peer
    existing = s.changes.item_by_barcode(barcode)
    if existing is not None:
        # A repeat while this peer's temporary item exists gets the same answer; keyed on
        # state, not on the barcode for ever, so the same lender barcode can be created
        # again once the item is deleted (a later loan of the same copy).
        if existing.temporary and existing.owning_peer == peer.name:
            return CreateItemResponse(item_id=s.item_id(barcode))
        raise DuplicateRequest(element="ItemIdentifierValue", value=barcode)
    bib = message.item.bibliographic if message.item else None
    title = (bib.title if bib and bib.title else "") or "[no title]"
    record_id = s.changes.create_brief_record(
        f"ill-{peer.name}-item-{barcode}", BriefRecord(
            title=f"{peer.title_prefix} {title}".strip(),
            author=(bib.author or "") if bib else "", isbn=(bib.isbn or "") if bib else ""))
    s.renewed_names.append(barcode)
    s.changes.create_temporary_item(
        barcode=barcode, record_id=record_id, peer=peer.name,
        location=peer.default_pickup_location,
        call_number=(message.item.call_number or "") if message.item else "")
    return CreateItemResponse(item_id=s.item_id(barcode))


def delete_item(s: Step) -> NCIPResponse:
    """Remove a temporary item this peer brought in, its brief record and holds. A real
    item, another peer's or one that does not exist are all ``Unknown Item``."""
    message = s.message
    assert isinstance(message, m.DeleteItem)
    value = identifier_value(message.item_id)
    if not value:
        raise NeededDataMissing(element="ItemId")
    item = s.item_named(value)
    if item is None or not item.temporary or item.owning_peer != s.peer.name:
        raise UnknownItem(element="ItemIdentifierValue", value=value)
    request = s.books.requests.find(peer=s.peer.name, role="borrower", item_id=item.id)
    remove_temporary_item(s, item.id, item.barcode)
    if request is not None:
        s.books.requests.advance(request.id, state="completed", step="completed", now=s.now)
    return DeleteItemResponse(item_id=s.item_id(value))


def remove_temporary_item(s: Step, item_id: int, barcode: str) -> None:
    """Delete a temporary item; the requests that named it keep its barcode only."""
    s.books.requests.forget_item(item_id)
    s.changes.delete_temporary_item(barcode, s.now)
