# -*- test-case-name: tests.protocols.test_ncip_corpus -*-
"""Test doubles: a canned responder that answers any parsed request plausibly.

Used by the corpus replay test and handy for gateway tests that need a well-formed NCIP
answer without a backend. Not for production use: it echoes identifiers and invents ids.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .messages import (
    AcceptItem,
    CancelRequestItem,
    CheckInItem,
    CheckOutItem,
    CreateItem,
    CreateUserFiscalTransaction,
    DeleteItem,
    Envelope,
    LookupItem,
    LookupItemSet,
    LookupRequest,
    LookupUser,
    LookupVersion,
    Notification,
    RenewItem,
    RequestItem,
)
from .model import BibliographicDescription, ItemId, PersonalName, RequestId, UserId
from .problems import NCIPProblem, ProblemType
from .responses import (
    AcceptItemResponse,
    BibInformation,
    BlockOrTrap,
    CancelRequestItemResponse,
    CheckInItemResponse,
    CheckOutItemResponse,
    CreateItemResponse,
    CreateUserFiscalTransactionResponse,
    DeleteItemResponse,
    HoldingsSet,
    ItemInformation,
    LookupItemResponse,
    LookupItemSetResponse,
    LookupRequestResponse,
    LookupUserResponse,
    LookupVersionResponse,
    NCIPResponse,
    NotificationResponse,
    RenewItemResponse,
    RequestItemResponse,
    UserAddress,
    UserPrivilege,
)

FIXED_DUE = datetime(2030, 1, 31, 23, 59, 59, tzinfo=UTC)
"""The due date the canned responder hands out."""

_UNKNOWN_USER = UserId(value="unknown")
_UNKNOWN_ITEM = ItemId(value="unknown")


def canned_response(envelope: Envelope, agency: str = "LOCAL") -> NCIPResponse | NCIPProblem:
    """A plausible success for the typed services, C{Unsupported Service} for the rest."""
    m = envelope.message
    if isinstance(m, LookupVersion):
        return LookupVersionResponse(services=("LookupUser", "AcceptItem", "CheckOutItem"))
    if isinstance(m, LookupUser):
        user = m.user_id or UserId(
            value=m.authentication("Barcode Id", "User Id", "Username") or "x"
        )
        return LookupUserResponse(
            user_id=UserId(value=user.value, agency=agency, type=user.type or None),
            name=PersonalName(given="Ada", surname="Lovelace"),
            addresses=(UserAddress.email("ada@example.org"),),
            privileges=(
                UserPrivilege(agency=agency, privilege_type="PROFILE", status="ACTIVE"),
                UserPrivilege(agency=agency, privilege_type="STATUS", status="ACTIVE"),
            ),
            blocks=(BlockOrTrap(agency=agency, block_type="Block Interlibrary Loan"),),
            user_ids=(UserId(value=user.value, agency=agency, type="Barcode"),),
        )
    if isinstance(m, LookupItem):
        return LookupItemResponse(
            item_id=m.item_id or (None if m.request_id else _UNKNOWN_ITEM),
            request_id=m.request_id,
            bibliographic=BibliographicDescription(title="A title", author="An author"),
            circulation_status="Available On Shelf",
            call_number="QA76 .A1",
            location="Main Library",
            date_due=FIXED_DUE,
        )
    if isinstance(m, LookupItemSet):
        ids = m.bibliographic_ids or (None,)
        return LookupItemSetResponse(
            bibs=tuple(
                BibInformation(
                    bibliographic_id=bib_id,
                    holdings=(
                        HoldingsSet(
                            call_number="QA76 .A1",
                            items=(
                                ItemInformation(
                                    item_id=ItemId(value="b1"),
                                    circulation_status="On Loan",
                                    date_due=FIXED_DUE,
                                ),
                            ),
                        ),
                    ),
                )
                for bib_id in ids
            )
        )
    if isinstance(m, LookupRequest):
        return LookupRequestResponse(
            request_id=m.request_id,
            item_id=m.item_id or (None if m.request_id else _UNKNOWN_ITEM),
            user_id=m.user_id,
            request_type="Hold",
            request_status="In Process",
        )
    if isinstance(m, AcceptItem):
        request = m.request_id or RequestId(value="unknown")
        return AcceptItemResponse(
            request_id=request, item_id=m.item_id or ItemId(value=request.value)
        )
    if isinstance(m, CheckOutItem):
        return CheckOutItemResponse(
            item_id=m.item_id or _UNKNOWN_ITEM,
            user_id=m.user_id or _UNKNOWN_USER,
            date_due=FIXED_DUE,
        )
    if isinstance(m, CheckInItem):
        return CheckInItemResponse(item_id=m.item_id or _UNKNOWN_ITEM, user_id=m.user_id)
    if isinstance(m, RenewItem):
        return RenewItemResponse(
            item_id=m.item_id or _UNKNOWN_ITEM, user_id=m.user_id, date_due=FIXED_DUE
        )
    if isinstance(m, RequestItem):
        return RequestItemResponse(
            request_id=RequestId(value="hold-1", agency=agency),
            item_id=m.item_id,
            user_id=m.user_id or _UNKNOWN_USER,
            request_type=m.request_type or "Hold",
            request_scope_type=m.request_scope_type or "Bibliographic Item",
        )
    if isinstance(m, CancelRequestItem):
        return CancelRequestItemResponse(
            request_id=m.request_id,
            item_id=m.item_id or (None if m.request_id else _UNKNOWN_ITEM),
            user_id=m.user_id or _UNKNOWN_USER,
        )
    if isinstance(m, CreateItem):
        return CreateItemResponse(item_id=m.item_id or ItemId(value="new-1"))
    if isinstance(m, DeleteItem):
        return DeleteItemResponse(item_id=m.item_id or _UNKNOWN_ITEM)
    if isinstance(m, CreateUserFiscalTransaction):
        return CreateUserFiscalTransactionResponse(
            user_id=m.user_id or _UNKNOWN_USER, reference_id="fee-1", reference_agency=agency
        )
    if isinstance(m, Notification):
        return NotificationResponse(service=m.service)
    return NCIPProblem(ProblemType.UNSUPPORTED_SERVICE, element=envelope.service)
