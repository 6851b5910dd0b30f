# -*- test-case-name: tests.protocols.test_ncip_writer,tests.protocols.test_ncip_corpus -*-
"""Write NCIP replies in the request's dialect: schema-valid 2.02 or DTD-shaped NCIP 1.

NCIP 2 replies use the peer's prefix style (C{ns1:}, a default namespace, or no namespace at
all), or by default the request's own style and prefix; NCIP 1 replies use C{<Scheme>/<Value>}
pairs and C{Unique*} ids. The ResponseHeader swaps From and To. Every reply is UTF-8 with a
double-quoted declaration. L{render_response} writes success payloads; L{render_problem} is the
one place that turns an L{NCIPProblem} into bytes, and it never writes a PIN, password or agency
secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from .codes import (
    NCIP1_DOCTYPE,
    NCIP1_VERSION,
    NCIP2_NS,
    NCIP2_VERSION,
    V1_DEFAULT_SCHEMES,
    V1_FALLBACK_SCHEME,
    VERSION_MESSAGE_VERSION,
    SchemeValue,
)
from .dates import format_ncip_datetime
from .dialect import Dialect, PrefixStyle
from .messages import NOTIFICATIONS, Envelope
from .model import BibliographicDescription, BibliographicId, Header, ItemId, RequestId, UserId
from .problems import (
    GENERIC_DETAILS,
    NCIPProblem,
    ProblemType,
    is_messaging_problem,
    problem_scheme,
)
from .redact import (
    IDENTIFIER_ELEMENTS,
    PERSONAL_ELEMENTS,
    PERSONAL_PLACEHOLDER,
    SECRET_ELEMENTS,
    SECRET_PLACEHOLDER,
)
from .responses import (
    AcceptItemResponse,
    CancelRequestItemResponse,
    CheckInItemResponse,
    CheckOutItemResponse,
    CreateItemResponse,
    CreateUserFiscalTransactionResponse,
    DeleteItemResponse,
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
)
from .safexml import DEFAULT_MAX_BYTES

CONTENT_TYPE = "application/xml; charset=utf-8"
"""The Content-Type to send with every NCIP reply."""

NCIP2_SERVICES = frozenset(
    """AcceptItem AgencyCreated AgencyUpdated CancelRecallItem CancelRequestItem CheckInItem
    CheckOutItem CirculationStatusChangeReported CirculationStatusUpdated CreateAgency CreateItem
    CreateUser CreateUserFiscalTransaction DeleteItem DeleteUser ItemCheckedIn ItemCheckedOut
    ItemCreated ItemRecallCancelled ItemRecalled ItemReceived ItemRenewed ItemRequestCancelled
    ItemRequestUpdated ItemRequested ItemShipped ItemUpdated LookupAgency LookupItem LookupItemSet
    LookupRequest LookupUser RecallItem RenewItem ReportCirculationStatusChange RequestItem
    SendUserNotice UndoCheckOutItem UpdateAgency UpdateCirculationStatus UpdateItem
    UpdateRequestItem UpdateUser UserCreated UserFiscalTransactionCreated UserNoticeSent
    UserUpdated""".split()
)
"""The 47 NCIP 2.02 services: each has an C{XxxResponse} element."""

NCIP1_NOTIFICATIONS = frozenset(
    """AgencyCreated AgencyUpdated CirculationStatusChangeReported CirculationStatusUpdated
    ItemCheckedIn ItemCheckedOut ItemCreated ItemRecallCancelled ItemRecalled ItemReceived
    ItemRenewed ItemRequestCancelled ItemRequestUpdated ItemRequested ItemShipped ItemUpdated
    UserCreated UserFiscalTransactionCreated UserNoticeSent UserUpdated""".split()
)
"""NCIP 1 notifications, whose responses carry only C{ResponseHeader, MessagingError*}."""

_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SENSITIVE_ELEMENTS = frozenset(
    {
        "authenticationinputdata",
        "fromagencyauthentication",
        "fromsystemauthentication",
        "password",
        "pin",
    }
)


def _clean(text: str) -> str:
    return _XML_INVALID.sub("", text)


def _text(value: object) -> str:
    """Element content as serialized: characters XML cannot carry dropped, markup escaped
    (as lxml writes it: C{& < >} and carriage return)."""
    text = value if type(value) is str else str(value)
    if text.isascii() and text.isprintable():  # the common case: no control character
        if "&" in text or "<" in text or ">" in text:
            text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return text
    text = _clean(text)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


def _attribute(value: object) -> str:
    """An attribute value as serialized (double-quoted, escaped as lxml writes it)."""
    return (_text(value).replace('"', "&quot;").replace("\n", "&#10;")
            .replace("\t", "&#9;"))


# A reply is built as nested lists and written as text in one pass: creating and filling
# lxml elements cost several times as much (namespace lookup and text checks per element).
# A node: [qualified name, serialized attributes, escaped text or None, *children].
_Node: TypeAlias = list[Any]

_DECLARATIONS = {PrefixStyle.NS1: f' xmlns:ns1="{NCIP2_NS}"',
                 PrefixStyle.DEFAULT: f' xmlns="{NCIP2_NS}" xmlns:ncip="{NCIP2_NS}"'}
# attributes in the NCIP namespace need a prefix: "ncip" along with a default namespace
_ATTRIBUTE_PREFIXES = {PrefixStyle.NS1: "ns1:", PrefixStyle.DEFAULT: "ncip:"}


_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def reply_style(prefix_style: PrefixStyle | None,
                request: Envelope | None) -> tuple[PrefixStyle, str]:
    """The (style, prefix) a reply is written in: the peer's explicit style, else the request's
    own (its prefix, its default namespace, or none), else C{ns1:} when nothing was read."""
    if prefix_style is None:
        if request is None:
            return PrefixStyle.NS1, "ns1"
        prefix = request.prefix if request.prefix_style is PrefixStyle.NS1 else None
        if prefix is None or prefix == "xml" or not _NCNAME.fullmatch(prefix):
            prefix = "ns1"
        return request.prefix_style, prefix
    return prefix_style, "ns1"


class _Builder:
    """Element factory for one dialect and prefix style (and, for a prefixed style, the
    prefix: C{ns1} unless the reply follows a request that used another)."""

    def __init__(self, dialect: Dialect, style: PrefixStyle, local_agency: str | None,
                 prefix: str = "ns1") -> None:
        self.v1 = dialect is Dialect.NCIP1
        namespaced = not self.v1 and style is not PrefixStyle.NONE
        self.style = style if namespaced else PrefixStyle.NONE
        prefixed = self.style is PrefixStyle.NS1
        self.prefix = f"{prefix}:" if prefixed else ""
        self.attribute_prefix = self.prefix if prefixed else _ATTRIBUTE_PREFIXES.get(
            self.style, "")
        self.declaration = (f' xmlns:{prefix}="{NCIP2_NS}"' if prefixed
                            else _DECLARATIONS.get(self.style, ""))
        self.local_agency = local_agency or ""

    def root(self, version: str | None, name: str = "NCIPMessage") -> _Node:
        version = version or (NCIP1_VERSION if self.v1 else NCIP2_VERSION)
        attributes = (f'{self.declaration} {self.attribute_prefix}version='
                      f'"{_attribute(version)}"')
        return [self.prefix + name, attributes, None]

    def sub(self, parent: _Node, name: str, text: object | None = None) -> _Node:
        element = [self.prefix + name, "", None if text is None else _text(text)]
        parent.append(element)
        return element

    def opt(self, parent: _Node, name: str, text: object | None) -> None:
        if text is not None and text != "":
            self.sub(parent, name, str(text))

    def pair(
        self, parent: _Node, name: str, value: str, scheme: str | None = None
    ) -> _Node:
        """A SchemeValuePair: text + Scheme attribute (NCIP 2) or Scheme/Value children (NCIP 1)."""
        if self.v1:
            element = self.sub(parent, name)
            self.sub(element, "Scheme", scheme or V1_DEFAULT_SCHEMES.get(name, V1_FALLBACK_SCHEME))
            self.sub(element, "Value", value)
            return element
        attributes = f' {self.attribute_prefix}Scheme="{_attribute(scheme)}"' if scheme else ""
        element = [self.prefix + name, attributes, _text(str(value))]
        parent.append(element)
        return element

    def opt_pair(self, parent: _Node, name: str, value: str | None) -> None:
        if value:
            self.pair(parent, name, value)

    def agency(self, parent: _Node, value: str | None, scheme: str | None = None) -> None:
        """AgencyId (NCIP 2) or UniqueAgencyId (NCIP 1)."""
        name = "UniqueAgencyId" if self.v1 else "AgencyId"
        self.pair(parent, name, value if value is not None else self.local_agency, scheme)

    def date(self, parent: _Node, name: str, value: Any) -> None:
        if value is not None:
            self.sub(parent, name, format_ncip_datetime(value))

    def user_id(self, parent: _Node, user: UserId) -> None:
        if self.v1:
            element = self.sub(parent, "UniqueUserId")
            self.agency(element, user.agency)
            self.sub(element, "UserIdentifierValue", user.value)
            return
        element = self.sub(parent, "UserId")
        if user.agency:
            self.agency(element, user.agency)
        if user.type:
            self.pair(element, "UserIdentifierType", user.type)
        self.sub(element, "UserIdentifierValue", user.value)

    def item_id(self, parent: _Node, item: ItemId) -> None:
        if self.v1:
            element = self.sub(parent, "UniqueItemId")
            self.agency(element, item.agency)
            self.sub(element, "ItemIdentifierValue", item.value)
            return
        element = self.sub(parent, "ItemId")
        if item.agency:
            self.agency(element, item.agency)
        if item.type:
            self.pair(element, "ItemIdentifierType", item.type)
        self.sub(element, "ItemIdentifierValue", item.value)

    def request_id(self, parent: _Node, request: RequestId) -> None:
        if self.v1:
            element = self.sub(parent, "UniqueRequestId")
            self.agency(element, request.agency)
            self.sub(element, "RequestIdentifierValue", request.value)
            return
        element = self.sub(parent, "RequestId")
        if request.agency:
            self.agency(element, request.agency)
        if request.type:
            self.pair(element, "RequestIdentifierType", request.type)
        self.sub(element, "RequestIdentifierValue", request.value)

    def item_or_request(
        self, parent: _Node, item: ItemId | None, request: RequestId | None
    ) -> None:
        """The C{(ItemId | (RequestId, ItemId?))} choice."""
        if request is not None:
            self.request_id(parent, request)
            if item is not None:
                self.item_id(parent, item)
        elif item is not None:
            self.item_id(parent, item)
        else:
            raise ValueError("an ItemId or a RequestId is required")

    def bibliographic_id(self, parent: _Node, bib: BibliographicId, wrapper: str) -> None:
        element = self.sub(parent, wrapper) if wrapper else parent
        if bib.kind == "item":
            item = self.sub(element, "BibliographicItemId")
            self.sub(item, "BibliographicItemIdentifier", bib.identifier)
            self.opt_pair(item, "BibliographicItemIdentifierCode", bib.code)
            return
        record = self.sub(element, "BibliographicRecordId")
        self.sub(record, "BibliographicRecordIdentifier", bib.identifier)
        if bib.code or not bib.agency:
            self.pair(record, "BibliographicRecordIdentifierCode", bib.code or "Accession Number")
        else:
            self.agency(record, bib.agency)

    def description(self, parent: _Node, bib: BibliographicDescription) -> None:
        element = self.sub(parent, "BibliographicDescription")
        self.opt(element, "Author", bib.author)
        items = [i for i in bib.ids if i.kind == "item"]
        records = [i for i in bib.ids if i.kind == "record"]
        if items:
            self.bibliographic_id(element, items[0], "")
        for record in records[:1] if self.v1 else records:
            self.bibliographic_id(element, record, "")
        self.opt(element, "Edition", bib.edition)
        self.opt(element, "Pagination", bib.pagination)
        self.opt(element, "PlaceOfPublication", bib.place_of_publication)
        self.opt(element, "PublicationDate", bib.publication_date)
        self.opt(element, "Publisher", bib.publisher)
        self.opt(element, "Title", bib.title)
        self.opt_pair(element, "BibliographicLevel", bib.bibliographic_level)
        self.opt_pair(element, "Language", bib.language)
        self.opt_pair(element, "MediumType", bib.medium_type)

    def location(self, parent: _Node, name: str) -> None:
        element = self.sub(parent, "Location")
        self.pair(element, "LocationType", "Permanent Location")
        instance = self.sub(self.sub(element, "LocationName"), "LocationNameInstance")
        self.sub(instance, "LocationNameLevel", "1")
        self.sub(instance, "LocationNameValue", name)

    def item_description(self, parent: _Node, call_number: str | None) -> None:
        if call_number:
            self.sub(self.sub(parent, "ItemDescription"), "CallNumber", call_number)


# response header ----------------------------------------------------------------------------


def _header(
    b: _Builder, parent: _Node, request: Envelope | None, local_agency: str | None
) -> None:
    header: Header | None = request.message.header if request is not None else None
    if header is None and local_agency is None and not b.v1:
        return
    ours = header.to_agency if header else None
    theirs = header.from_agency if header else None
    if ours is None or not ours.value:
        ours = SchemeValue(local_agency or "", ours.scheme if ours else None)
    if theirs is None:
        theirs = SchemeValue("")
    element = b.sub(parent, "ResponseHeader")
    if header is not None and header.to_system is not None:
        b.pair(element, "FromSystemId", header.to_system.value, header.to_system.scheme)
    b.agency(b.sub(element, "FromAgencyId"), ours.value, ours.scheme)
    if header is not None and header.from_system is not None:
        b.pair(element, "ToSystemId", header.from_system.value, header.from_system.scheme)
    b.agency(b.sub(element, "ToAgencyId"), theirs.value, theirs.scheme)


# success payloads ---------------------------------------------------------------------------


def _address(b: _Builder, parent: _Node, address: UserAddress) -> None:
    element = b.sub(parent, "UserAddressInformation")
    b.pair(element, "UserAddressRoleType", address.role)
    if address.electronic_data is not None:
        electronic = b.sub(element, "ElectronicAddress")
        b.pair(electronic, "ElectronicAddressType", address.electronic_type or "mailto")
        b.sub(electronic, "ElectronicAddressData", address.electronic_data)
    else:
        physical = b.sub(element, "PhysicalAddress")
        unstructured = b.sub(physical, "UnstructuredAddress")
        b.pair(unstructured, "UnstructuredAddressType", "Newline-Delimited Text")
        b.sub(unstructured, "UnstructuredAddressData", address.postal or "")
        b.pair(physical, "PhysicalAddressType", address.postal_type)


def _lookup_user(b: _Builder, parent: _Node, r: LookupUserResponse) -> None:
    b.user_id(parent, r.user_id)
    if not b.v1:
        for loan in r.loaned_items:
            element = b.sub(parent, "LoanedItem")
            b.item_id(element, loan.item_id)
            if loan.date_due is not None:
                b.date(element, "DateDue", loan.date_due)
            else:
                b.sub(element, "IndeterminateLoanPeriodFlag")
            if loan.amount is not None:
                amount = b.sub(element, "Amount")
                b.pair(amount, "CurrencyCode", loan.amount.currency or "USD")
                b.sub(amount, "MonetaryValue", str(loan.amount.value or 0))
            b.opt(element, "Title", loan.title)
        for hold in r.requested_items:
            element = b.sub(parent, "RequestedItem")
            b.item_or_request(element, hold.item_id, hold.request_id)
            b.pair(element, "RequestType", hold.request_type)
            b.pair(element, "RequestStatusType", hold.request_status)
            b.date(element, "DatePlaced", hold.date_placed)
            b.opt(element, "PickupLocation", hold.pickup_location)
            b.opt(element, "Title", hold.title)
    name = r.name
    has_name = name is not None and bool(name.surname or name.unstructured or name.given)
    if not (has_name or r.addresses or r.privileges or r.blocks or r.user_ids or r.date_of_birth):
        return
    optional = b.sub(parent, "UserOptionalFields")
    if b.v1:
        for extra in r.user_ids:
            visible = b.sub(optional, "VisibleUserId")
            b.pair(visible, "VisibleUserIdentifierType", extra.type or "Barcode")
            b.sub(visible, "VisibleUserIdentifier", extra.value)
    if has_name and name is not None:
        personal = b.sub(b.sub(optional, "NameInformation"), "PersonalNameInformation")
        unstructured = name.unstructured or " ".join(p for p in (name.given, name.surname) if p)
        if name.surname:
            structured = b.sub(personal, "StructuredPersonalUserName")
            b.opt(structured, "Prefix", name.prefix)
            b.opt(structured, "GivenName", name.given)
            b.opt(structured, "Initials", name.initials)
            b.sub(structured, "Surname", name.surname)
            b.opt(structured, "Suffix", name.suffix)
        b.sub(personal, "UnstructuredPersonalUserName", unstructured)
    for address in r.addresses:
        _address(b, optional, address)
    if r.date_of_birth is not None:
        b.sub(optional, "DateOfBirth", format_ncip_datetime(r.date_of_birth))
    for privilege in r.privileges:
        element = b.sub(optional, "UserPrivilege")
        b.agency(element, privilege.agency)
        b.pair(element, "AgencyUserPrivilegeType", privilege.privilege_type)
        b.date(element, "ValidFromDate", privilege.valid_from)
        b.date(element, "ValidToDate", privilege.valid_to)
        if privilege.status:
            b.pair(
                b.sub(element, "UserPrivilegeStatus"), "UserPrivilegeStatusType", privilege.status
            )
        b.opt(element, "UserPrivilegeDescription", privilege.description)
    for block in r.blocks:
        element = b.sub(optional, "BlockOrTrap")
        b.agency(element, block.agency)
        b.pair(element, "BlockOrTrapType", block.block_type)
        b.date(element, "ValidFromDate", block.valid_from)
        b.date(element, "ValidToDate", block.valid_to)
    if not b.v1:
        for extra in r.user_ids:
            b.user_id(optional, extra)


def _item_optional(
    b: _Builder,
    parent: _Node,
    *,
    bibliographic: BibliographicDescription | None = None,
    circulation_status: str | None = None,
    hold_queue_length: int | None = None,
    call_number: str | None = None,
    location: str | None = None,
    date_due: Any = None,
) -> None:
    if not any(
        v is not None
        for v in (bibliographic, circulation_status, hold_queue_length, call_number, location)
    ) and (b.v1 or date_due is None):
        return
    element = b.sub(parent, "ItemOptionalFields")
    if bibliographic is not None:
        b.description(element, bibliographic)
    b.opt_pair(element, "CirculationStatus", circulation_status)
    if hold_queue_length is not None:
        b.sub(element, "HoldQueueLength", str(hold_queue_length))
    b.item_description(element, call_number)
    if location:
        b.location(element, location)
    if not b.v1:
        b.date(element, "DateDue", date_due)


def _lookup_item(b: _Builder, parent: _Node, r: LookupItemResponse) -> None:
    b.item_or_request(parent, r.item_id, r.request_id)
    _item_optional(
        b,
        parent,
        bibliographic=r.bibliographic,
        circulation_status=r.circulation_status,
        hold_queue_length=r.hold_queue_length,
        call_number=r.call_number,
        location=r.location,
        date_due=r.date_due,
    )


def _lookup_item_set(b: _Builder, parent: _Node, r: LookupItemSetResponse) -> None:
    if not r.bibs:
        raise ValueError("LookupItemSetResponse needs at least one BibInformation")
    for bib in r.bibs:
        element = b.sub(parent, "BibInformation")
        if bib.bibliographic_id is not None:
            b.bibliographic_id(element, bib.bibliographic_id, "BibliographicId")
        if bib.problems or not bib.holdings:
            # the schema wants HoldingsSet+ or Problem+ here
            for problem in bib.problems or (NCIPProblem(ProblemType.UNKNOWN_ITEM),):
                _v2_problem(b, element, problem, "LookupItemSet", frozenset())
            continue
        if bib.bibliographic is not None:
            b.description(element, bib.bibliographic)
        for holdings in bib.holdings:
            h = b.sub(element, "HoldingsSet")
            if holdings.location:
                b.location(h, holdings.location)
            b.opt(h, "CallNumber", holdings.call_number)
            for item in holdings.items:
                info = b.sub(h, "ItemInformation")
                if item.item_id is not None:
                    b.item_id(info, item.item_id)
                b.date(info, "DateDue", item.date_due)
                _item_optional(
                    b,
                    info,
                    circulation_status=item.circulation_status,
                    hold_queue_length=item.hold_queue_length,
                    call_number=item.call_number,
                    location=item.location,
                )
    b.opt(parent, "NextItemToken", r.next_item_token)


def _lookup_request(b: _Builder, parent: _Node, r: LookupRequestResponse) -> None:
    b.item_or_request(parent, r.item_id, r.request_id)
    if r.user_id is not None:
        b.user_id(parent, r.user_id)
    b.opt_pair(parent, "RequestType", r.request_type)
    b.opt_pair(parent, "RequestScopeType", r.request_scope_type)
    b.opt_pair(parent, "RequestStatusType", r.request_status)
    b.opt(parent, "PickupLocation", r.pickup_location)


def _accept_item(b: _Builder, parent: _Node, r: AcceptItemResponse) -> None:
    b.request_id(parent, r.request_id)
    if r.item_id is not None:
        b.item_id(parent, r.item_id)


def _check_out_item(b: _Builder, parent: _Node, r: CheckOutItemResponse) -> None:
    b.item_id(parent, r.item_id)
    b.user_id(parent, r.user_id)
    if r.date_due is not None:
        b.date(parent, "DateDue", r.date_due)
    else:
        b.sub(parent, "IndeterminateLoanPeriodFlag")
    b.opt(parent, "RenewalCount", r.renewal_count)


def _check_in_item(b: _Builder, parent: _Node, r: CheckInItemResponse) -> None:
    b.item_id(parent, r.item_id)
    if r.user_id is not None:
        b.user_id(parent, r.user_id)


def _renew_item(b: _Builder, parent: _Node, r: RenewItemResponse) -> None:
    b.item_id(parent, r.item_id)
    if r.user_id is not None:
        b.user_id(parent, r.user_id)
    b.date(parent, "DateDue", r.date_due)
    b.opt(parent, "RenewalCount", r.renewal_count)


def _request_item(b: _Builder, parent: _Node, r: RequestItemResponse) -> None:
    b.item_or_request(parent, r.item_id, r.request_id)
    b.user_id(parent, r.user_id)
    b.pair(parent, "RequestType", r.request_type)
    b.pair(parent, "RequestScopeType", r.request_scope_type)
    b.date(parent, "DateAvailable", r.date_available)


def _cancel_request_item(b: _Builder, parent: _Node, r: CancelRequestItemResponse) -> None:
    b.item_or_request(parent, r.item_id, r.request_id)
    b.user_id(parent, r.user_id)


def _item_only(
    b: _Builder, parent: _Node, r: CreateItemResponse | DeleteItemResponse
) -> None:
    b.item_id(parent, r.item_id)


def _fiscal(b: _Builder, parent: _Node, r: CreateUserFiscalTransactionResponse) -> None:
    b.user_id(parent, r.user_id)
    reference = b.sub(parent, "FiscalTransactionReferenceId")
    b.agency(reference, r.reference_agency)
    b.sub(reference, "FiscalTransactionIdentifierValue", r.reference_id)


def _nothing(b: _Builder, parent: _Node, r: NotificationResponse) -> None:
    return None


_PAYLOADS: dict[type, Callable[[_Builder, _Node, Any], None]] = {
    LookupUserResponse: _lookup_user,
    LookupItemResponse: _lookup_item,
    LookupItemSetResponse: _lookup_item_set,
    LookupRequestResponse: _lookup_request,
    AcceptItemResponse: _accept_item,
    CheckOutItemResponse: _check_out_item,
    CheckInItemResponse: _check_in_item,
    RenewItemResponse: _renew_item,
    RequestItemResponse: _request_item,
    CancelRequestItemResponse: _cancel_request_item,
    CreateItemResponse: _item_only,
    DeleteItemResponse: _item_only,
    CreateUserFiscalTransactionResponse: _fiscal,
    NotificationResponse: _nothing,
}


def _markup(node: _Node, out: list[str]) -> None:
    """Append the text of ``node`` and its descendants to ``out`` (as lxml would write it)."""
    name, attributes, text = node[0], node[1], node[2]
    if len(node) == 3:  # a leaf
        out.append(f"<{name}{attributes}/>" if text is None
                   else f"<{name}{attributes}>{text}</{name}>")
        return
    out.append(f"<{name}{attributes}>{text or ''}")
    for index in range(3, len(node)):
        _markup(node[index], out)
    out.append(f"</{name}>")


_UNESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&#13;", "\r"), ("&amp;", "&"))
_LXML_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"  # etree.tostring's


def _unescape(text: str | None) -> str:
    """The characters of escaped element content (what a parser gives as ``.text``)."""
    if not text:
        return ""
    if "&" in text:
        for escaped, character in _UNESCAPES:
            text = text.replace(escaped, character)
    return text


_LOCAL_NAMES: dict[str, str] = {}  # qualified name -> local name (the writer's vocabulary)


def _local(node: _Node) -> str:
    name = node[0]
    local = _LOCAL_NAMES.get(name)
    if local is None:
        local = _LOCAL_NAMES[name] = name.rpartition(":")[2]
    return local


class ReplyTree:
    """A reply as the writer built it, kept for the audit log: :meth:`redacted` gives what
    :func:`~protocols.ncip.redact.redact` gives for the reply's bytes (parsed, redacted,
    serialized by lxml), from the nodes -- without parsing the reply back."""

    __slots__ = ("_root",)

    def __init__(self, root: _Node) -> None:
        self._root = root

    def redacted(self, *, personal: bool = False,
                 pseudonymize: Callable[[str], str | None] | None = None,
                 problem_value: Callable[[str, str], str | None] | None = None) -> bytes:
        """The reply redacted as ``redact(reply, personal=..., pseudonymize=...)`` writes it.

        ``problem_value(element, value)``: applied first (as the audit log does to a parsed
        tree) to each Problem's ProblemElement/ProblemValue texts; a non-empty string
        replaces the value, None keeps it."""
        out = [_LXML_DECLARATION]
        _redacted_markup(self._root, out, _PERSONAL_NAMES if personal else SECRET_ELEMENTS,
                         pseudonymize, problem_value)
        return "".join(out).encode("utf-8")


def _redacted_markup(node: _Node, out: list[str], hidden: frozenset[str],
                     pseudonymize: Callable[[str], str | None] | None,
                     problem_value: Callable[[str, str], str | None] | None) -> None:
    """:func:`_markup` as lxml writes the node parsed and redacted: parsed, empty content is
    no text (``<a></a>`` comes back as ``<a/>``)."""
    name = node[0]
    local = _LOCAL_NAMES.get(name) or _local(node)
    if local in hidden:
        replaced = _replacement(local, node[2], pseudonymize)
        out.append(f"<{name}{node[1]}/>" if replaced is None
                   else f"<{name}{node[1]}>{_text(replaced)}</{name}>")
        return
    if local == "Problem" and problem_value is not None:
        node = node[:3] + _problem_hidden(node[3:], problem_value)
    text = node[2]
    if len(node) == 3 and not text:
        out.append(f"<{name}{node[1]}/>")
        return
    out.append(f"<{name}{node[1]}>{text or ''}")
    for index in range(3, len(node)):
        _redacted_markup(node[index], out, hidden, pseudonymize, problem_value)
    out.append(f"</{name}>")


_PERSONAL_NAMES = SECRET_ELEMENTS | PERSONAL_ELEMENTS | IDENTIFIER_ELEMENTS


def _replacement(local: str, text: str | None,
                 pseudonymize: Callable[[str], str | None] | None) -> str | None:
    """The text a redacted element gets (its children are dropped)."""
    if local in SECRET_ELEMENTS:
        return SECRET_PLACEHOLDER
    if local in PERSONAL_ELEMENTS or pseudonymize is None:
        return PERSONAL_PLACEHOLDER
    return pseudonymize(_unescape(text).strip())  # an identifier


def _problem_hidden(children: list[_Node],
                    problem_value: Callable[[str, str], str | None]) -> list[_Node]:
    """A Problem's children with its ProblemValue as ``problem_value`` rewrites it."""
    named = {_local(child): child for child in children}
    element, value = named.get("ProblemElement"), named.get("ProblemValue")
    if element is None or value is None:
        return children
    replaced = problem_value(_unescape(element[2]), _unescape(value[2]))
    if replaced is None:
        return children
    rewritten = [value[0], value[1], _text(replaced), *value[3:]]
    return [rewritten if child is value else child for child in children]


def _serialize(root: _Node, doctype: bool = False,
               keep_tree: list[ReplyTree] | None = None) -> bytes:
    out: list[str] = []
    _markup(root, out)
    body = "".join(out).encode("utf-8")
    if keep_tree is not None and len(body) < DEFAULT_MAX_BYTES:
        keep_tree.append(ReplyTree(root))
    prolog = _DECLARATION + (NCIP1_DOCTYPE.encode("ascii") + b"\n" if doctype else b"")
    return prolog + body + b"\n"


def _dialect(request: Envelope | None) -> Dialect:
    if request is None or request.dialect is Dialect.VERSION:
        return Dialect.NCIP2
    return request.dialect


def _builder(dialect: Dialect, prefix_style: PrefixStyle | None, request: Envelope | None,
             local_agency: str | None) -> _Builder:
    style, prefix = reply_style(prefix_style, request)
    return _Builder(dialect, style, local_agency, prefix)


def _version_message(response: LookupVersionResponse, request: Envelope | None,
                     local_agency: str | None) -> bytes:
    b = _Builder(Dialect.NCIP1, PrefixStyle.NONE, None)  # unqualified names, like NCIP 1
    root = b.root(VERSION_MESSAGE_VERSION, "NCIPVersionMessage")
    element = b.sub(root, "LookupVersionResponse")
    header = request.message.header if request is not None else None
    for name, agency, fallback in (
        ("FromAgencyId", header.to_agency if header else None, local_agency),
        ("ToAgencyId", header.from_agency if header else None, None),
    ):
        unique = b.sub(b.sub(element, name), "UniqueAgencyId")
        b.sub(unique, "Scheme", (agency.scheme or "") if agency else "")
        b.sub(unique, "Value", agency.value if agency and agency.value else fallback or "")
    for version in response.versions:
        b.sub(element, "VersionSupported", version)
    for service in response.services:
        b.sub(element, "ServiceSupported", service)
    return _serialize(root)  # rare: its tree is not kept


def render_response(
    response: NCIPResponse,
    request: Envelope | None = None,
    *,
    prefix_style: PrefixStyle | None = None,
    version: str | None = None,
    local_agency: str | None = None,
    ncip1_doctype: bool = False,
    keep_tree: list[ReplyTree] | None = None,
) -> bytes:
    """Write a success response in the request's dialect.

    @param response: the typed payload (L{LookupUserResponse}, L{AcceptItemResponse}, ...).
    @param request: the parsed request (dialect, header to swap); None means NCIP 2.
    @param prefix_style: NCIP 2 namespace style for this peer; None (the default) answers in
        the request's own style and prefix (C{ns1:} when there is no request).
    @param version: the C{version} attribute to write (defaults per dialect).
    @param local_agency: our agency id, used where the request gave none.
    @param ncip1_doctype: add the standard DOCTYPE to NCIP 1 replies.
    @param keep_tree: if given, the L{ReplyTree} the reply was written from is appended to it
        (to redact it for the audit log without parsing the reply back); nothing is when the
        reply is over the parser's size limit.
    @return: UTF-8 XML bytes.
    """
    if isinstance(response, LookupVersionResponse):
        return _version_message(response, request, local_agency)
    payload = _PAYLOADS.get(type(response))
    if payload is None:
        raise TypeError(f"no writer for {type(response).__name__}")
    dialect = _dialect(request)
    b = _builder(dialect, prefix_style, request, local_agency)
    root = b.root(version)
    name = (
        response.response_element
        if isinstance(response, NotificationResponse)
        else response.element
    )
    element = b.sub(root, name)
    _header(b, element, request, local_agency)
    payload(b, element, response)
    return _serialize(root, ncip1_doctype and b.v1, keep_tree)


# problems -----------------------------------------------------------------------------------


def _scrub(problem: NCIPProblem, secrets: frozenset[str]) -> tuple[str | None, str | None]:
    """(value, detail) safe to write: nothing that is or contains a PIN/password."""
    value, detail = problem.value, problem.detail
    element = (problem.element or "").rpartition("/")[2].casefold()
    if element in _SENSITIVE_ELEMENTS:
        value = None
    for secret in secrets:
        if value is not None and secret in value:
            value = None
        if detail is not None and secret in detail:
            detail = GENERIC_DETAILS.get(problem.problem_type)
    return value, detail


def _v2_problem(
    b: _Builder,
    parent: _Node,
    problem: NCIPProblem,
    service: str | None,
    secrets: frozenset[str],
) -> None:
    value, detail = _scrub(problem, secrets)
    element = b.sub(parent, "Problem")
    b.pair(
        element, "ProblemType", problem.problem_type, problem_scheme(problem.problem_type, service)
    )
    b.opt(element, "ProblemDetail", detail)
    b.opt(element, "ProblemElement", problem.element)
    b.opt(element, "ProblemValue", value)


def _v1_error(
    b: _Builder,
    parent: _Node,
    problem: NCIPProblem,
    service: str | None,
    secrets: frozenset[str],
    kind: str,
) -> None:
    value, _ = _scrub(problem, secrets)
    element = b.sub(parent, kind)
    b.pair(
        element,
        f"{kind}Type",
        problem.problem_type,
        problem_scheme(problem.problem_type, service) or V1_FALLBACK_SCHEME,
    )
    where = b.sub(element, f"{kind}Element")
    b.sub(where, "ElementName", problem.element or service or "NCIPMessage")
    if value is not None:
        b.sub(where, f"{kind}Value", value)


def render_problem(
    problems: NCIPProblem | Sequence[NCIPProblem],
    request: Envelope | None = None,
    *,
    service: str | None = None,
    prefix_style: PrefixStyle | None = None,
    version: str | None = None,
    local_agency: str | None = None,
    message_level: bool = False,
    ncip1_doctype: bool = False,
    keep_tree: list[ReplyTree] | None = None,
) -> bytes:
    """Write one or more Problems as the reply to C{request}: the single error-to-reply path.

    Service-level (C{<XxxResponse><Problem>}) when the service is known; message-level
    (C{Problem} directly under C{NCIPMessage}) when the request could not be parsed
    (C{request=None}), names no NCIP service, is itself a response, or C{message_level} is
    set. NCIP 1 requests get C{ProcessingError}/C{MessagingError} shapes; NCIP 1 has no
    message-level Problem, so those fall back to NCIP 2.

    @param problems: what to report (L{NCIPProblem} or its subclasses).
    @param request: the parsed request, or None if parsing failed.
    @param service: override the service named by the request.
    @param keep_tree: as for L{render_response}.
    @return: UTF-8 XML bytes.
    """
    items = [problems] if isinstance(problems, NCIPProblem) else list(problems)
    if not items:
        raise ValueError("no problems to render")
    secrets = request.secrets if request is not None else frozenset()
    name = service or (request.service if request is not None else None)
    dialect = _dialect(request)
    known = name is not None and (name in NCIP2_SERVICES or name in NOTIFICATIONS)
    if request is not None and request.is_response and service is None:
        known = False
    if message_level or not known or name is None:
        b = _builder(Dialect.NCIP2, prefix_style, request, local_agency)
        root = b.root(version if dialect is Dialect.NCIP2 else None)
        for problem in items:
            _v2_problem(b, root, problem, name, secrets)
        return _serialize(root, keep_tree=keep_tree)
    b = _builder(dialect, prefix_style, request, local_agency)
    root = b.root(version)
    element = b.sub(root, name + "Response")
    _header(b, element, request, local_agency)
    if not b.v1:
        for problem in items:
            _v2_problem(b, element, problem, name, secrets)
        return _serialize(root, keep_tree=keep_tree)
    if name in NCIP1_NOTIFICATIONS:
        for problem in items:
            _v1_error(b, element, problem, name, secrets, "MessagingError")
        return _serialize(root, ncip1_doctype, keep_tree)
    container = b.sub(element, "Problem")
    kind = "MessagingError" if is_messaging_problem(items[0].problem_type) else "ProcessingError"
    for problem in items:
        _v1_error(b, container, problem, name, secrets, kind)
    return _serialize(root, ncip1_doctype, keep_tree)
