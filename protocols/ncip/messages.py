# -*- test-case-name: tests.protocols.test_ncip_parse -*-
"""Typed NCIP request messages, as the parser produces them.

One frozen dataclass per service, with every field optional: the parser is lenient and
the gateway decides what is missing (and answers C{Needed Data Missing}). Services the
gateway has no use for come back as L{OtherMessage} with their name, so they can be
answered with C{Unsupported Service}. L{Envelope} wraps a message with what the writer
needs to answer in kind: dialect, prefix style, version string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import ClassVar

from .codes import Code
from .dialect import Dialect, PrefixStyle
from .model import (
    AuthenticationInput,
    BibliographicDescription,
    BibliographicId,
    FiscalTransaction,
    Header,
    ItemId,
    ItemOptionalFields,
    PersonalName,
    RequestId,
    ShippingAddress,
    UserId,
)
from .problems import NCIPProblem

DateValue = datetime | date
"""A parsed NCIP date: aware datetime, or a date for date-only input."""


@dataclass(frozen=True, kw_only=True)
class NCIPRequest:
    """Base of all typed messages: the service name and the initiation header."""

    service: ClassVar[str] = ""
    header: Header | None = None


@dataclass(frozen=True, kw_only=True)
class _AuthenticatedRequest(NCIPRequest):
    """Messages that identify the patron by C{UserId} or C{AuthenticationInput}."""

    user_id: UserId | None = None
    authentication_inputs: tuple[AuthenticationInput, ...] = ()

    def authentication(self, *types: str) -> str | None:
        """The data of the first AuthenticationInput whose type is one of C{types}."""
        for entry in self.authentication_inputs:
            if entry.type is not None and entry.type.is_one_of(*types):
                return entry.data
        return None


@dataclass(frozen=True, kw_only=True)
class LookupVersion(NCIPRequest):
    """Version discovery (C{NCIPVersionMessage}, or DCB's ping inside C{NCIPMessage})."""

    service: ClassVar[str] = "LookupVersion"
    versions: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LookupUser(_AuthenticatedRequest):
    """Patron validation: by id, or by barcode/username plus PIN/password."""

    service: ClassVar[str] = "LookupUser"
    user_element_types: tuple[Code, ...] = ()
    loaned_items_desired: bool = False
    requested_items_desired: bool = False
    user_fiscal_account_desired: bool = False


@dataclass(frozen=True, kw_only=True)
class LookupItem(NCIPRequest):
    """Item lookup by ItemId (ILLiad barcode lookup) or RequestId."""

    service: ClassVar[str] = "LookupItem"
    item_id: ItemId | None = None
    request_id: RequestId | None = None
    item_element_types: tuple[Code, ...] = ()
    current_borrower_desired: bool = False
    current_requesters_desired: bool = False


@dataclass(frozen=True, kw_only=True)
class LookupItemSet(NCIPRequest):
    """Availability of several items or bibs (DCB, ILS-DI)."""

    service: ClassVar[str] = "LookupItemSet"
    item_ids: tuple[ItemId, ...] = ()
    bibliographic_ids: tuple[BibliographicId, ...] = ()
    request_ids: tuple[RequestId, ...] = ()
    item_element_types: tuple[Code, ...] = ()
    maximum_items_count: int | None = None
    next_item_token: str | None = None


@dataclass(frozen=True, kw_only=True)
class LookupRequest(_AuthenticatedRequest):
    """Request status lookup."""

    service: ClassVar[str] = "LookupRequest"
    request_id: RequestId | None = None
    item_id: ItemId | None = None
    request_type: Code | None = None
    request_element_types: tuple[Code, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AcceptItem(NCIPRequest):
    """A borrowed item arrived: create a temporary item and a hold for the patron."""

    service: ClassVar[str] = "AcceptItem"
    request_id: RequestId | None = None
    requested_action_type: Code | None = None
    user_id: UserId | None = None
    item_id: ItemId | None = None
    date_for_return: DateValue | None = None
    indeterminate_loan_period: bool = False
    non_returnable: bool = False
    renewal_not_permitted: bool = False
    item: ItemOptionalFields | None = None
    user_name: PersonalName | None = None
    pickup_location: str | None = None
    pickup_expiry_date: DateValue | None = None
    fiscal_transaction: FiscalTransaction | None = None
    shipping: ShippingAddress | None = None
    user_ids: tuple[UserId, ...] = ()
    """Patron ids in C{UserOptionalFields} (NCIP 1: the local barcode as C{VisibleUserId});
    C{user_id} is the first of them when the message has no C{UserId}/C{UniqueUserId}."""

    @property
    def bibliographic(self) -> BibliographicDescription | None:
        """Shortcut to C{item.bibliographic}."""
        return self.item.bibliographic if self.item else None


@dataclass(frozen=True, kw_only=True)
class CheckOutItem(_AuthenticatedRequest):
    """Lender side "shipped" (to an institutional patron) or a local loan."""

    service: ClassVar[str] = "CheckOutItem"
    item_id: ItemId | None = None
    request_ids: tuple[RequestId, ...] = ()
    desired_date_due: DateValue | None = None
    date_event_occurred: DateValue | None = None
    item_element_types: tuple[Code, ...] = ()
    user_element_types: tuple[Code, ...] = ()

    @property
    def request_id(self) -> RequestId | None:
        """The first RequestId (ReShare may add an external-reference one after it)."""
        return self.request_ids[0] if self.request_ids else None


@dataclass(frozen=True, kw_only=True)
class CheckInItem(NCIPRequest):
    """Return; C{user_id}/C{request_id} are non-standard but sent by ILLiad and Evergreen."""

    service: ClassVar[str] = "CheckInItem"
    item_id: ItemId | None = None
    user_id: UserId | None = None
    request_id: RequestId | None = None
    item_element_types: tuple[Code, ...] = ()
    user_element_types: tuple[Code, ...] = ()
    date_event_occurred: DateValue | None = None


@dataclass(frozen=True, kw_only=True)
class RenewItem(_AuthenticatedRequest):
    """Renewal; C{desired_date_due} is often date-only (ILLiad)."""

    service: ClassVar[str] = "RenewItem"
    item_id: ItemId | None = None
    request_id: RequestId | None = None
    desired_date_due: DateValue | None = None


@dataclass(frozen=True, kw_only=True)
class RequestItem(_AuthenticatedRequest):
    """Lender side: place a hold/page for the borrowing library's institutional patron."""

    service: ClassVar[str] = "RequestItem"
    item_ids: tuple[ItemId, ...] = ()
    bibliographic_ids: tuple[BibliographicId, ...] = ()
    request_id: RequestId | None = None
    request_type: Code | None = None
    request_scope_type: Code | None = None
    item: ItemOptionalFields | None = None
    pickup_location: str | None = None
    pickup_expiry_date: DateValue | None = None
    need_before_date: DateValue | None = None
    earliest_date_needed: DateValue | None = None
    shipping: ShippingAddress | None = None

    @property
    def item_id(self) -> ItemId | None:
        """The first ItemId, if any."""
        return self.item_ids[0] if self.item_ids else None


@dataclass(frozen=True, kw_only=True)
class CancelRequestItem(_AuthenticatedRequest):
    """Cancel a hold placed by RequestItem (by the local hold id) or by item."""

    service: ClassVar[str] = "CancelRequestItem"
    request_id: RequestId | None = None
    item_id: ItemId | None = None
    request_type: Code | None = None
    request_scope_type: Code | None = None


@dataclass(frozen=True, kw_only=True)
class CreateItem(NCIPRequest):
    """Create an item record (OCLC circill)."""

    service: ClassVar[str] = "CreateItem"
    item_id: ItemId | None = None
    request_id: RequestId | None = None
    item: ItemOptionalFields | None = None


@dataclass(frozen=True, kw_only=True)
class DeleteItem(NCIPRequest):
    """Delete a (temporary) item."""

    service: ClassVar[str] = "DeleteItem"
    item_id: ItemId | None = None


@dataclass(frozen=True, kw_only=True)
class CreateUserFiscalTransaction(_AuthenticatedRequest):
    """Charge a fee to a patron (ReShare SLNP, WSILL)."""

    service: ClassVar[str] = "CreateUserFiscalTransaction"
    fiscal_transaction: FiscalTransaction | None = None
    date_event_occurred: DateValue | None = None


@dataclass(frozen=True, kw_only=True)
class Notification(NCIPRequest):
    """Common shape of the seven notification messages (INN-Reach, iNCIPit, DCB, NNCIPP).

    @ivar date_event: the message's own date (DateOfUserRequest, DateShipped, ...).
    """

    user_id: UserId | None = None
    item_id: ItemId | None = None
    request_id: RequestId | None = None
    request_type: Code | None = None
    request_scope_type: Code | None = None
    bibliographic_ids: tuple[BibliographicId, ...] = ()
    item: ItemOptionalFields | None = None
    user_ids: tuple[UserId, ...] = ()
    date_event: DateValue | None = None
    date_due: DateValue | None = None
    date_for_return: DateValue | None = None
    pickup_location: str | None = None
    shipping: ShippingAddress | None = None


@dataclass(frozen=True, kw_only=True)
class ItemRequested(Notification):
    """A patron elsewhere requested one of our items (INN-Reach, Alma v1, DCB)."""

    service: ClassVar[str] = "ItemRequested"


@dataclass(frozen=True, kw_only=True)
class ItemShipped(Notification):
    """An item was shipped."""

    service: ClassVar[str] = "ItemShipped"


@dataclass(frozen=True, kw_only=True)
class ItemReceived(Notification):
    """An item was received."""

    service: ClassVar[str] = "ItemReceived"


@dataclass(frozen=True, kw_only=True)
class ItemCheckedOut(Notification):
    """An item was checked out at the other end."""

    service: ClassVar[str] = "ItemCheckedOut"


@dataclass(frozen=True, kw_only=True)
class ItemCheckedIn(Notification):
    """An item was checked in at the other end."""

    service: ClassVar[str] = "ItemCheckedIn"


@dataclass(frozen=True, kw_only=True)
class ItemRequestCancelled(Notification):
    """A request was cancelled at the other end."""

    service: ClassVar[str] = "ItemRequestCancelled"


@dataclass(frozen=True, kw_only=True)
class ItemRenewed(Notification):
    """A loan was renewed at the other end."""

    service: ClassVar[str] = "ItemRenewed"


@dataclass(frozen=True, kw_only=True)
class OtherMessage(NCIPRequest):
    """Any other service (or a response sent to us): known by name only.

    @ivar name: the message element's local-name, e.g. C{"UpdateUser"}.
    """

    name: str = ""


TYPED_MESSAGES: dict[str, type[NCIPRequest]] = {
    cls.service: cls
    for cls in (
        LookupVersion,
        LookupUser,
        LookupItem,
        LookupItemSet,
        LookupRequest,
        AcceptItem,
        CheckOutItem,
        CheckInItem,
        RenewItem,
        RequestItem,
        CancelRequestItem,
        CreateItem,
        DeleteItem,
        CreateUserFiscalTransaction,
        ItemRequested,
        ItemShipped,
        ItemReceived,
        ItemCheckedOut,
        ItemCheckedIn,
        ItemRequestCancelled,
        ItemRenewed,
    )
}
"""Service name -> message class, for every service the parser types."""

NOTIFICATIONS = frozenset(
    name for name, cls in TYPED_MESSAGES.items() if issubclass(cls, Notification)
)


@dataclass(frozen=True)
class Envelope:
    """A parsed message plus what is needed to answer it in kind.

    @ivar service: the message element's local-name (C{"AcceptItem"}, C{"ItemShippedResponse"}).
    @ivar message: the typed message (L{OtherMessage} for untyped services).
    @ivar dialect: NCIP 1, NCIP 2 or NCIPVersionMessage.
    @ivar prefix_style: how the input was namespaced (pass it to the writer to answer in kind).
    @ivar prefix: the input's namespace prefix, if any (C{"ns1"}).
    @ivar version: the root's C{version} attribute, as sent (never used for detection).
    @ivar notes: parser observations worth auditing (DOCTYPE stripped, encoding mismatch, ...).
    @ivar issues: problems found in content the parser tolerated (e.g. an unparseable date),
        which the gateway may choose to answer with.
    @ivar secrets: PIN/password strings of this request; the writer never echoes them.
    """

    service: str
    message: NCIPRequest
    dialect: Dialect
    prefix_style: PrefixStyle
    prefix: str | None = None
    version: str | None = None
    notes: tuple[str, ...] = ()
    issues: tuple[NCIPProblem, ...] = ()
    secrets: frozenset[str] = field(default=frozenset(), repr=False)

    @property
    def is_response(self) -> bool:
        """True when the message is itself a response (e.g. DCB's RequestItemResponse)."""
        return self.service.endswith("Response")
