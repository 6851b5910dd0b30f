# -*- test-case-name: tests.gateway.ncip.test_workflow_rules -*-
"""Workflow steps for loans, on both sides: CheckOutItem, CheckInItem, RenewItem, and the fees
of CreateUserFiscalTransaction.

Checking out an item already on loan to the same patron returns that loan (or, with another
DesiredDateDue, renews it). Each step runs inside one unit of work
(:mod:`gateway.ncip.exactly_once`).
"""

from __future__ import annotations

from datetime import datetime

from gateway.domain.books import TrackedRequest
from gateway.domain.model import (
    Item,
    ItemAlreadyCheckedOut,
    ItemNotCheckedOut,
    ItemNotRenewable,
    Loan,
    MaximumRenewalsExceeded,
    NeededDataMissing,
    Patron,
    UnknownPatron,
)
from gateway.ncip.service import identifier_value
from gateway.ncip.step import Step, money, names_request
from gateway.ncip.temporary_items import remove_temporary_item
from protocols.ncip import messages as m
from protocols.ncip.model import UserId
from protocols.ncip.responses import (
    CheckInItemResponse,
    CheckOutItemResponse,
    CreateUserFiscalTransactionResponse,
    NCIPResponse,
    RenewItemResponse,
)


def _role(item: Item) -> str:
    """Our side of an item's request: a temporary item is borrowed, our own is lent."""
    return "borrower" if item.temporary else "lender"


def check_out_item(s: Step) -> NCIPResponse:
    """Borrower: the patron takes the temporary item. Lender: our item ships (one call
    per volume under one RequestId; again with a new DesiredDateDue: a renewal)."""
    message = s.message
    assert isinstance(message, m.CheckOutItem)
    item = s.find_item(message.item_id, lend=True)
    named = identifier_value(message.item_id) or item.barcode
    patron = (s.patron(message.user_id) if item.temporary
              else s.institutional_patron(message.user_id))
    s.check_may_borrow(patron, message.user_id)
    loan = s.changes.open_loan(item.id)
    if loan is not None and loan.patron_id != patron.id:
        raise ItemAlreadyCheckedOut(element="ItemIdentifierValue", value=named)
    broker_id = identifier_value(message.request_id)
    request = s.volume_request(_role(item), broker_id, item)
    desired = s.as_due(message.desired_date_due)
    if loan is None:
        loan = _lend(s, item, patron, request, desired, broker_id, named)
    elif desired is not None and desired.astimezone(s.tz).date() != \
            loan.due_at.astimezone(s.tz).date():
        # Checked out again with another date (ILLiad's re-checkout): a renewal.
        loan = extend(s, loan, desired, item, request, named)
    return CheckOutItemResponse(item_id=s.item_id(named),
                                user_id=s.user_id(patron, message.user_id),
                                date_due=loan.due_at.astimezone(s.tz),
                                renewal_count=loan.renewals or None)


def _lend(s: Step, item: Item, patron: Patron, request: TrackedRequest | None,
          desired: datetime | None, broker_id: str | None, named: str) -> Loan:
    """A new loan: a borrowed item to our patron, or our item shipped to a peer."""
    if item.temporary:
        due = s.borrowed_due(request.due_at if request is not None else None)
    else:
        due = s.due_in(s.settings.loan_period_days)
        if desired is not None:
            due = min(due, desired)
    loan = s.changes.check_out(item_id=item.id, patron_id=patron.id, due_at=due, now=s.now)
    s.renewed_names.extend({named, item.barcode})
    if not item.temporary:
        _settle_lender_holds(s, item, patron)
    if request is None and not item.temporary:
        number = s.books.requests.next_number()
        s.books.requests.create(
            peer=s.peer.name, role="lender", broker_request_id=broker_id,
            our_request_id=f"L-{number}", state="shipped", step="shipped", now=s.now,
            item_id=item.id, item_barcode=item.barcode, patron_id=patron.id,
            broker_item_id=named)
    elif request is not None:
        step = "checked_out" if item.temporary else "shipped"
        s.books.requests.advance(request.id, state=step, step=step, now=s.now,
                                 item_id=item.id, item_barcode=item.barcode)
    return loan


def _settle_lender_holds(s: Step, item: Item, patron: Patron) -> None:
    """The institutional patron's hold on this record is fulfilled by the item shipped."""
    for hold in s.changes.holds_of_patron(patron.id):
        if hold.record_id == item.record_id and hold.item_id in (None, item.id):
            s.changes.set_hold_status(hold.id, "fulfilled", s.now)
            break


def check_in_item(s: Step) -> NCIPResponse:
    """The item came back: end the loan (or, never picked up, its hold); delete a
    temporary item if the peer asks."""
    message = s.message
    assert isinstance(message, m.CheckInItem)
    peer = s.peer
    value = identifier_value(message.item_id)
    if not value:
        raise NeededDataMissing(element="ItemId")
    if s.item_named(value, by_request=names_request(message.item_id)) is None:
        repeat = _repeat_of_deleting_check_in(s, value, message.user_id)
        if repeat is not None:
            return repeat
    item = s.find_item(message.item_id)
    loan = s.changes.open_loan(item.id)
    role = _role(item)
    request = s.volume_request(role, identifier_value(message.request_id), item)
    patron_id = loan.patron_id if loan is not None else None
    unclaimed = [hold for hold in s.changes.active_holds_of_item(item.id)
                 if item.temporary] if loan is None else []
    if loan is None and not unclaimed:
        patron_id = _patron_of_earlier_check_in(s, item, role)
    # Delete on check-in only the peer's own temporary items (no other reach here).
    deletes = item.temporary and peer.delete_on_checkin
    if (loan is None and not unclaimed and peer.checkin_not_on_loan == "problem"
            and not deletes):
        raise ItemNotCheckedOut(element="ItemIdentifierValue", value=value)
    if loan is not None:
        s.changes.check_in(item_id=item.id, now=s.now,
                           status="in_transit" if item.temporary else "available")
    elif unclaimed:
        # Never picked up: the hold ends, the item goes back to the lender.
        for hold in unclaimed:
            s.changes.set_hold_status(hold.id, "cancelled", s.now)
        s.changes.set_item_status(item.id, "in_transit", s.now)
    if deletes:
        remove_temporary_item(s, item.id, item.barcode)
    if request is not None:
        _checked_in(s, request, not_picked_up=bool(unclaimed),
                    completed=deletes or not item.temporary)
    patron = s.changes.patron_by_id(patron_id) if patron_id is not None else None
    return CheckInItemResponse(item_id=s.item_id(value),
                               user_id=s.user_id(patron, message.user_id) if patron else None)


def _checked_in(s: Step, request: TrackedRequest, *, not_picked_up: bool,
                completed: bool) -> None:
    """A request's item is back: returned and checked in; ``completed`` when nothing more
    will happen to it (our own item home, or the borrowed item deleted)."""
    requests = s.books.requests
    requests.advance(request.id, state="returned", step="returned", now=s.now,
                     end_reason="not picked up" if not_picked_up else None)
    requests.advance(request.id, state="checked_in", step="checked_in", now=s.now)
    if completed:
        requests.advance(request.id, state="completed", step="completed", now=s.now)


def _repeat_of_deleting_check_in(s: Step, value: str,
                                 user: UserId | None) -> NCIPResponse | None:
    """A repeat of the check-in that deleted this peer's temporary item (its stored reply
    gone): the answer of the first time; None when it is not one."""
    done = s.books.requests.latest_borrowed(peer=s.peer.name, name=value)
    if (done is None or done.item_id is not None or not s.peer.delete_on_checkin
            or done.checked_in_at is None):
        return None
    patron = (s.changes.patron_by_id(done.patron_id)
              if done.checked_out_at and done.patron_id else None)
    return CheckInItemResponse(item_id=s.item_id(value),
                               user_id=s.user_id(patron, user) if patron else None)


def _patron_of_earlier_check_in(s: Step, item: Item, role: str) -> int | None:
    """A repeat of a check-in this peer made: the same patron as the first reply named (only
    the patron of this peer's own request, never anyone else's); None if not a repeat."""
    last = s.books.requests.latest(peer=s.peer.name, role=role, item_id=item.id)
    returned_to = s.changes.last_returned_loan_patron(item.id)
    if (last is not None and last.checked_in_at is not None
            and returned_to is not None and returned_to == last.patron_id):
        return returned_to
    return None


def renew_item(s: Step) -> NCIPResponse:
    """A new due date: the DesiredDateDue (the lending peer's new date) or a loan period
    from today, within local policy and the lender's limit; a renewal that cannot move
    the date is a Problem, never a success with the old date."""
    message = s.message
    assert isinstance(message, m.RenewItem)
    item = s.find_item(message.item_id)
    named = identifier_value(message.item_id) or item.barcode
    loan = s.changes.open_loan(item.id)
    if loan is None:
        raise ItemNotCheckedOut(element="ItemIdentifierValue", value=named)
    request = s.volume_request(_role(item), identifier_value(message.request_id), item)
    loan = extend(s, loan, s.as_due(message.desired_date_due), item, request, named)
    patron = s.changes.patron_by_id(loan.patron_id)
    return RenewItemResponse(item_id=s.item_id(named),
                             user_id=s.user_id(patron, message.user_id) if patron else None,
                             date_due=loan.due_at.astimezone(s.tz),
                             renewal_count=loan.renewals or None)


def extend(s: Step, loan: Loan, desired: datetime | None, item: Item,
           request: TrackedRequest | None, named: str) -> Loan:
    """Renew a loan: to ``desired`` when given (a date the lending peer sets is also
    the lender's new limit), else by a loan period from today; never past the loan
    period from today. Refused unless the date moves later."""
    settings = s.settings
    if loan.renewals >= settings.max_renewals:
        raise MaximumRenewalsExceeded(element="ItemIdentifierValue", value=named)
    if item.temporary:
        if request is not None and not request.renewable:
            raise ItemNotRenewable(element="ItemIdentifierValue", value=named)
        limit = request.due_at if request is not None else None
        if desired is not None:
            limit = desired   # the lending peer's own new date
        new_due = s.due_in(settings.borrowed_loan_period_days)
    else:
        if s.changes.active_holds_of_item(item.id):
            raise ItemNotRenewable(element="ItemIdentifierValue", value=named)
        limit = desired
        new_due = s.due_in(settings.loan_period_days)
    if limit is not None:
        new_due = min(new_due, limit)
    if new_due <= loan.due_at:
        raise ItemNotRenewable(element="ItemIdentifierValue", value=named)
    if item.temporary and request is not None and desired is not None:
        s.books.requests.set_due(request.id, desired)
    return s.changes.renew(loan, new_due)


def fiscal_transaction(s: Step) -> NCIPResponse:
    """Record a fee against the patron (no payment processing)."""
    message = s.message
    assert isinstance(message, m.CreateUserFiscalTransaction)
    patron = s.patron(message.user_id)
    fiscal = message.fiscal_transaction
    if fiscal is None or fiscal.amount is None or fiscal.amount.value is None:
        raise NeededDataMissing(element="Amount")
    # Fees only on the peer's own requests: a patron this peer has brought an item in
    # for (or its own institutional patron), an item it may act on.
    peer = s.peer
    if patron.institutional_peer != peer.name and not s.books.requests.any_for_patron(
            peer=peer.name, patron_id=patron.id):
        raise UnknownPatron(element="UserIdentifierValue",
                            value=identifier_value(message.user_id))
    item_id = None
    if identifier_value(fiscal.item_id):
        item_id = s.find_item(fiscal.item_id).id
    fee_id = s.changes.add_fee(patron_id=patron.id, peer=peer.name,
                               amount=money(fiscal.amount.value),
                               currency=str(fiscal.amount.currency or ""),
                               fee_type=str(fiscal.transaction_type or ""), item_id=item_id,
                               now=s.now)
    return CreateUserFiscalTransactionResponse(
        user_id=s.user_id(patron, message.user_id), reference_id=f"FEE-{fee_id}",
        reference_agency=s.agency)
