# -*- test-case-name: tests.protocols.test_ncip_writer -*-
"""Typed NCIP success responses, which the writer renders in the request's dialect.

Each class names the response element it becomes (C{AcceptItemResponse}, ...); there is no
generic "Response". Failures are not responses: raise L{protocols.ncip.problems.NCIPProblem}
and render it with L{protocols.ncip.writer.render_problem}.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar

from .model import (
    Amount,
    BibliographicDescription,
    BibliographicId,
    ItemId,
    PersonalName,
    RequestId,
    UserId,
)
from .problems import NCIPProblem

DateValue = datetime | date


@dataclass(frozen=True, kw_only=True)
class NCIPResponse:
    """Base of all typed responses; C{element} is the response element's local-name."""

    element: ClassVar[str] = ""


@dataclass(frozen=True)
class UserAddress:
    """One C{UserAddressInformation}: an electronic address (e-mail as C{mailto}, phone as
    C{tel}) or an unstructured postal address."""

    role: str = "Home"
    electronic_type: str | None = None
    electronic_data: str | None = None
    postal: str | None = None
    postal_type: str = "Postal Address"

    @classmethod
    def email(cls, address: str, address_type: str = "mailto") -> UserAddress:
        """An e-mail address (ReShare reads type C{mailto} or C{emailAddress})."""
        return cls(role="Home", electronic_type=address_type, electronic_data=address)

    @classmethod
    def phone(cls, number: str) -> UserAddress:
        """A telephone number (type C{tel})."""
        return cls(role="Home", electronic_type="tel", electronic_data=number)


@dataclass(frozen=True)
class UserPrivilege:
    """C{UserPrivilege}: C{STATUS}=C{ACTIVE}/C{BLOCKED}, C{PROFILE}=patron group, ..."""

    agency: str
    privilege_type: str
    status: str | None = None
    description: str | None = None
    valid_from: DateValue | None = None
    valid_to: DateValue | None = None


@dataclass(frozen=True)
class BlockOrTrap:
    """C{BlockOrTrap}, e.g. C{Block Checkout}."""

    agency: str
    block_type: str
    valid_from: DateValue | None = None
    valid_to: DateValue | None = None


@dataclass(frozen=True)
class LoanedItem:
    """A current loan (NCIP 2 LookupUserResponse only)."""

    item_id: ItemId
    date_due: DateValue | None = None
    title: str | None = None
    amount: Amount | None = None


@dataclass(frozen=True)
class RequestedItem:
    """A current hold (NCIP 2 LookupUserResponse only)."""

    date_placed: DateValue
    request_id: RequestId | None = None
    item_id: ItemId | None = None
    request_type: str = "Hold"
    request_status: str = "In Process"
    pickup_location: str | None = None
    title: str | None = None


@dataclass(frozen=True, kw_only=True)
class LookupVersionResponse(NCIPResponse):
    """Always written as C{NCIPVersionMessage} (the only schema defining it)."""

    element: ClassVar[str] = "LookupVersionResponse"
    versions: tuple[str, ...] = ("http://www.niso.org/2008/ncip", "http://www.niso.org/2001/ncip")
    services: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LookupUserResponse(NCIPResponse):
    """Patron details as brokers parse them (ncip.md section 8)."""

    element: ClassVar[str] = "LookupUserResponse"
    user_id: UserId
    name: PersonalName | None = None
    addresses: tuple[UserAddress, ...] = ()
    privileges: tuple[UserPrivilege, ...] = ()
    blocks: tuple[BlockOrTrap, ...] = ()
    user_ids: tuple[UserId, ...] = ()
    date_of_birth: date | None = None
    loaned_items: tuple[LoanedItem, ...] = ()
    requested_items: tuple[RequestedItem, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LookupItemResponse(NCIPResponse):
    """Item details: bib description, circulation status, location, call number, due date."""

    element: ClassVar[str] = "LookupItemResponse"
    item_id: ItemId | None = None
    request_id: RequestId | None = None
    bibliographic: BibliographicDescription | None = None
    circulation_status: str | None = None
    hold_queue_length: int | None = None
    call_number: str | None = None
    location: str | None = None
    date_due: DateValue | None = None


@dataclass(frozen=True)
class ItemInformation:
    """One item of a LookupItemSet holdings set."""

    item_id: ItemId | None = None
    circulation_status: str | None = None
    call_number: str | None = None
    location: str | None = None
    date_due: DateValue | None = None
    hold_queue_length: int | None = None


@dataclass(frozen=True)
class HoldingsSet:
    """A holdings set: call number and location shared by its items."""

    items: tuple[ItemInformation, ...]
    call_number: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class BibInformation:
    """One bib of a LookupItemSetResponse: its holdings, or the Problems that stand for them
    (an unknown record, a record without items)."""

    holdings: tuple[HoldingsSet, ...]
    bibliographic_id: BibliographicId | None = None
    bibliographic: BibliographicDescription | None = None
    problems: tuple[NCIPProblem, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LookupItemSetResponse(NCIPResponse):
    """Availability by bib (at least one L{BibInformation})."""

    element: ClassVar[str] = "LookupItemSetResponse"
    bibs: tuple[BibInformation, ...]
    next_item_token: str | None = None


@dataclass(frozen=True, kw_only=True)
class LookupRequestResponse(NCIPResponse):
    """Request status."""

    element: ClassVar[str] = "LookupRequestResponse"
    request_id: RequestId | None = None
    item_id: ItemId | None = None
    user_id: UserId | None = None
    request_type: str | None = None
    request_scope_type: str | None = None
    request_status: str | None = None
    pickup_location: str | None = None


@dataclass(frozen=True, kw_only=True)
class AcceptItemResponse(NCIPResponse):
    """The request id echoed and the barcode actually used for the temporary item."""

    element: ClassVar[str] = "AcceptItemResponse"
    request_id: RequestId
    item_id: ItemId | None = None


@dataclass(frozen=True, kw_only=True)
class CheckOutItemResponse(NCIPResponse):
    """Loan made; C{date_due=None} writes C{IndeterminateLoanPeriodFlag}."""

    element: ClassVar[str] = "CheckOutItemResponse"
    item_id: ItemId
    user_id: UserId
    date_due: DateValue | None = None
    renewal_count: int | None = None


@dataclass(frozen=True, kw_only=True)
class CheckInItemResponse(NCIPResponse):
    """Item discharged."""

    element: ClassVar[str] = "CheckInItemResponse"
    item_id: ItemId
    user_id: UserId | None = None


@dataclass(frozen=True, kw_only=True)
class RenewItemResponse(NCIPResponse):
    """Renewed; ILLiad looks for C{<ns1:DateDue>}."""

    element: ClassVar[str] = "RenewItemResponse"
    item_id: ItemId
    user_id: UserId | None = None
    date_due: DateValue | None = None
    renewal_count: int | None = None


@dataclass(frozen=True, kw_only=True)
class RequestItemResponse(NCIPResponse):
    """Hold placed; C{request_id} is the local hold id brokers send back to cancel."""

    element: ClassVar[str] = "RequestItemResponse"
    user_id: UserId
    request_type: str
    request_scope_type: str
    request_id: RequestId | None = None
    item_id: ItemId | None = None
    date_available: DateValue | None = None


@dataclass(frozen=True, kw_only=True)
class CancelRequestItemResponse(NCIPResponse):
    """Hold cancelled."""

    element: ClassVar[str] = "CancelRequestItemResponse"
    user_id: UserId
    request_id: RequestId | None = None
    item_id: ItemId | None = None


@dataclass(frozen=True, kw_only=True)
class CreateItemResponse(NCIPResponse):
    """Item created."""

    element: ClassVar[str] = "CreateItemResponse"
    item_id: ItemId


@dataclass(frozen=True, kw_only=True)
class DeleteItemResponse(NCIPResponse):
    """Item deleted."""

    element: ClassVar[str] = "DeleteItemResponse"
    item_id: ItemId


@dataclass(frozen=True, kw_only=True)
class CreateUserFiscalTransactionResponse(NCIPResponse):
    """Fee charged; the reference id names the new transaction."""

    element: ClassVar[str] = "CreateUserFiscalTransactionResponse"
    user_id: UserId
    reference_id: str
    reference_agency: str | None = None


@dataclass(frozen=True, kw_only=True)
class NotificationResponse(NCIPResponse):
    """The bare acknowledgement of a notification: C{<ItemShippedResponse>} + header.

    @ivar service: the notification answered (C{"ItemShipped"}, ...).
    """

    service: str

    @property
    def response_element(self) -> str:
        """The element name written, e.g. C{ItemShippedResponse}."""
        return self.service + "Response"
