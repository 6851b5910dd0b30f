# -*- test-case-name: tests.protocols.test_ncip_parse,tests.protocols.test_ncip_corpus -*-
"""Read NCIP bytes into typed messages, by element local-name, in any element order.

Every dialect goes through the same readers: an NCIP 1 C{UniqueUserId} and an NCIP 2
C{UserId} are found by name, a coded value is read from its text or from its C{Value}
child, whitespace is stripped and empty elements count as absent. Unknown elements and
C{Ext} content are ignored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, tzinfo
from typing import Any, TypeAlias

from lxml import etree

from .codes import Code, SchemeValue
from .dates import parse_ncip_date
from .dialect import Dialect, classify, local_name, version_attribute
from .messages import (
    TYPED_MESSAGES,
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
    NCIPRequest,
    Notification,
    OtherMessage,
    RenewItem,
    RequestItem,
)
from .model import (
    Amount,
    AuthenticationInput,
    BibliographicDescription,
    BibliographicId,
    FiscalTransaction,
    Header,
    ItemId,
    ItemOptionalFields,
    Location,
    PersonalName,
    RequestId,
    ShippingAddress,
    UserId,
)
from .problems import NCIPProblem, NCIPSyntaxError, ProblemType
from .safexml import DEFAULT_MAX_BYTES, parse_xml

Element: TypeAlias = etree._Element


_ANY_NS: dict[str, str] = {}


def _any_ns(name: str) -> str:
    """C{{*}name}: lxml matches the local name in any namespace or none, in C."""
    tag = _ANY_NS.get(name)
    if tag is None:
        tag = _ANY_NS[name] = f"{{*}}{name}"
    return tag


def _children(element: Element | None, name: str) -> Iterator[Element]:
    if element is None:
        return iter(())
    return element.iterchildren(_any_ns(name))


class _Index(threading.local):
    """Per thread, while ``parse_request`` reads a message: each element's first child per
    local name, built once per element (the readers ask each element for many names, most
    of them absent). Holding the elements keeps their proxies, hence the keys, stable."""

    kids: dict[Element, dict[str, Element]] | None = None


_INDEX = _Index()


def _kids(element: Element) -> dict[str, Element]:
    kids: dict[str, Element] = {}
    for child in element:
        tag = child.tag
        if type(tag) is str:
            name = tag.rpartition("}")[2]
            if name not in kids:
                kids[name] = child
    return kids


def _child(element: Element | None, *path: str) -> Element | None:
    index = _INDEX.kids
    for name in path:
        if element is None or not len(element):  # a leaf: nothing to look for
            return None
        if index is None:
            element = next(element.iterchildren(_any_ns(name)), None)
        else:
            kids = index.get(element)
            if kids is None:
                kids = index[element] = _kids(element)
            element = kids.get(name)
        if element is None:
            return None
    return element


def _first(element: Element | None, *names: str) -> Element | None:
    """The first direct child having any of C{names} (tried in that order)."""
    for name in names:
        found = _child(element, name)
        if found is not None:
            return found
    return None


def _text(element: Element | None) -> str | None:
    """Stripped text of an element, or of its C{Value} child (NCIP 1); None when empty."""
    if element is None:
        return None
    value = _child(element, "Value")
    source = value if value is not None else element
    text = source.text
    if text is None:
        return None
    text = text.strip()
    return text or None


def _code(element: Element | None) -> Code | None:
    text = _text(element)
    return Code(text) if text is not None else None


def _scheme(element: Element) -> str | None:
    scheme = _child(element, "Scheme")
    if scheme is not None:
        return _text(scheme)
    for key, value in element.attrib.items():
        if key.rpartition("}")[2] == "Scheme":
            return str(value).strip() or None
    return None


def _scheme_value(element: Element | None) -> SchemeValue | None:
    if element is None:
        return None
    text = _text(element)
    return SchemeValue(text or "", _scheme(element))


def _agency_of(container: Element | None) -> SchemeValue | None:
    """The AgencyId/UniqueAgencyId inside C{container} (e.g. FromAgencyId), keeping its Scheme."""
    return _scheme_value(_first(container, "AgencyId", "UniqueAgencyId"))


def _agency_text(container: Element | None) -> str | None:
    agency = _agency_of(container)
    return agency.value or None if agency is not None else None


def _int(text: str | None) -> int | None:
    """An integer from element text, or None when absent or not a number."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _flag(element: Element | None, name: str) -> bool:
    return _child(element, name) is not None


class _Reader:
    """Per-message reading context: time zone for naive dates, and tolerated issues."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.issues: list[NCIPProblem] = []
        self.secrets: set[str] = set()

    def date(self, element: Element | None) -> datetime | date | None:
        text = _text(element)
        if text is None or element is None:
            return None
        try:
            return parse_ncip_date(text, self.tz)
        except ValueError:
            self.issues.append(
                NCIPProblem(ProblemType.INVALID_DATE, element=local_name(element), value=text)
            )
            return None

    def header(self, element: Element | None) -> Header | None:
        if element is None:
            return None
        header = Header(
            from_agency=_agency_of(_child(element, "FromAgencyId")),
            to_agency=_agency_of(_child(element, "ToAgencyId")),
            from_system=_scheme_value(_child(element, "FromSystemId")),
            to_system=_scheme_value(_child(element, "ToSystemId")),
            from_agency_authentication=_text(_child(element, "FromAgencyAuthentication")),
            from_system_authentication=_text(_child(element, "FromSystemAuthentication")),
            on_behalf_of_agency=_agency_of(_child(element, "OnBehalfOfAgency")),
            application_profile=_code(_child(element, "ApplicationProfileType")),
        )
        for secret in (header.from_agency_authentication, header.from_system_authentication):
            if secret:
                self.secrets.add(secret)
        return header

    # identifiers -------------------------------------------------------------------------

    def user_id(self, element: Element | None) -> UserId | None:
        """UserId, UniqueUserId or VisibleUserId directly inside C{element}."""
        for found in _children_any(element, ("UserId", "UniqueUserId", "VisibleUserId")):
            user = self.one_user_id(found)
            if user is not None:
                return user
        return None

    def one_user_id(self, found: Element) -> UserId | None:
        if local_name(found) == "VisibleUserId":
            value = _text(_child(found, "VisibleUserIdentifier"))
            if value is None:
                return None
            return UserId(
                value=value,
                agency=_agency_text(found),
                type=_code(_child(found, "VisibleUserIdentifierType")),
                visible=True,
            )
        value = _text(_child(found, "UserIdentifierValue"))
        if value is None:
            return None
        return UserId(
            value=value,
            agency=_agency_text(found),
            type=_code(_child(found, "UserIdentifierType")),
        )

    def item_ids(self, element: Element | None) -> tuple[ItemId, ...]:
        items = []
        for found in _children_any(element, ("ItemId", "UniqueItemId")):
            value = _text(_child(found, "ItemIdentifierValue"))
            if value is not None:
                items.append(
                    ItemId(
                        value=value,
                        agency=_agency_text(found),
                        type=_code(
                            _first(found, "ItemIdentifierType", "VisibleItemIdentifierType")
                        ),
                    )
                )
        return tuple(items)

    def item_id(self, element: Element | None) -> ItemId | None:
        items = self.item_ids(element)
        return items[0] if items else None

    def request_ids(self, element: Element | None) -> tuple[RequestId, ...]:
        requests = []
        for found in _children_any(element, ("RequestId", "UniqueRequestId")):
            value = _text(_child(found, "RequestIdentifierValue"))
            if value is not None:
                requests.append(
                    RequestId(
                        value=value,
                        agency=_agency_text(found),
                        type=_code(_child(found, "RequestIdentifierType")),
                    )
                )
        return tuple(requests)

    def request_id(self, element: Element | None) -> RequestId | None:
        requests = self.request_ids(element)
        return requests[0] if requests else None

    def authentication_inputs(self, element: Element | None) -> tuple[AuthenticationInput, ...]:
        inputs = []
        for found in _children(element, "AuthenticationInput"):
            data = _text(_child(found, "AuthenticationInputData")) or ""
            entry = AuthenticationInput(
                data=data,
                format=_code(_child(found, "AuthenticationDataFormatType")),
                type=_code(_child(found, "AuthenticationInputType")),
            )
            if entry.is_secret and data:
                self.secrets.add(data)
            inputs.append(entry)
        return tuple(inputs)

    # bibliographic and item data ---------------------------------------------------------

    def bibliographic_id(self, element: Element) -> BibliographicId | None:
        item = _child(element, "BibliographicItemId")
        if item is not None:
            identifier = _text(_child(item, "BibliographicItemIdentifier"))
            if identifier is None:
                return None
            return BibliographicId(
                identifier=identifier,
                code=_code(_child(item, "BibliographicItemIdentifierCode")),
                kind="item",
            )
        record = _child(element, "BibliographicRecordId")
        if record is not None:
            return self.record_id(record)
        # Non-standard (DCB Foundation): BibliographicItemIdentifier(Code) directly.
        identifier = _text(_child(element, "BibliographicItemIdentifier"))
        if identifier is None:
            return None
        return BibliographicId(
            identifier=identifier,
            code=_code(_child(element, "BibliographicItemIdentifierCode")),
            kind="item",
        )

    def record_id(self, record: Element) -> BibliographicId | None:
        identifier = _text(_child(record, "BibliographicRecordIdentifier"))
        if identifier is None:
            return None
        return BibliographicId(
            identifier=identifier,
            code=_code(_child(record, "BibliographicRecordIdentifierCode")),
            agency=_agency_text(record),
            kind="record",
        )

    def bibliographic_ids(self, element: Element | None) -> tuple[BibliographicId, ...]:
        ids = []
        for found in _children_any(element, ("BibliographicId", "UniqueBibliographicId")):
            bib_id = self.bibliographic_id(found)
            if bib_id is not None:
                ids.append(bib_id)
        return tuple(ids)

    def description(self, element: Element | None) -> BibliographicDescription | None:
        if element is None:
            return None
        ids: list[BibliographicId] = []
        for found in _children(element, "BibliographicItemId"):
            identifier = _text(_child(found, "BibliographicItemIdentifier"))
            if identifier is not None:
                ids.append(
                    BibliographicId(
                        identifier=identifier,
                        code=_code(_child(found, "BibliographicItemIdentifierCode")),
                        kind="item",
                    )
                )
        for found in _children(element, "BibliographicRecordId"):
            record = self.record_id(found)
            if record is not None:
                ids.append(record)
        return BibliographicDescription(
            title=_text(_child(element, "Title")),
            author=_text(_child(element, "Author")),
            publisher=_text(_child(element, "Publisher")),
            publication_date=_text(_child(element, "PublicationDate")),
            place_of_publication=_text(_child(element, "PlaceOfPublication")),
            edition=_text(_child(element, "Edition")),
            pagination=_text(_child(element, "Pagination")),
            medium_type=_code(_child(element, "MediumType")),
            language=_code(_child(element, "Language")),
            bibliographic_level=_code(_child(element, "BibliographicLevel")),
            ids=tuple(ids),
        )

    def location(self, element: Element) -> Location:
        names = []
        for instance in _children(_child(element, "LocationName"), "LocationNameInstance"):
            value = _text(_child(instance, "LocationNameValue"))
            if value is None:
                continue
            names.append((_int(_text(_child(instance, "LocationNameLevel"))), value))
        return Location(type=_code(_child(element, "LocationType")), names=tuple(names))

    def item_fields(self, message: Element) -> ItemOptionalFields | None:
        """ItemOptionalFields, plus the same elements sent directly in the message (CreateItem)."""
        optional = _child(message, "ItemOptionalFields")
        sources = [e for e in (optional, message) if e is not None]

        def pick(*path: str) -> Element | None:
            for source in sources:
                found = _child(source, *path)
                if found is not None:
                    return found
            return None

        bib = self.description(pick("BibliographicDescription"))
        locations = tuple(
            self.location(found) for source in sources for found in _children(source, "Location")
        )
        restrictions = tuple(
            code
            for source in sources
            for code in (_code(e) for e in _children(source, "ItemUseRestrictionType"))
            if code is not None
        )
        fields = ItemOptionalFields(
            bibliographic=bib,
            call_number=_text(pick("ItemDescription", "CallNumber")),
            copy_number=_text(pick("ItemDescription", "CopyNumber")),
            circulation_status=_code(pick("CirculationStatus")),
            locations=locations,
            item_use_restrictions=restrictions,
            date_due=self.date(_child(optional, "DateDue")),
        )
        return None if fields == ItemOptionalFields() else fields

    def fiscal(self, element: Element | None) -> FiscalTransaction | None:
        if element is None:
            return None
        amount_element = _child(element, "Amount")
        amount = None
        if amount_element is not None:
            raw = _text(_child(amount_element, "MonetaryValue"))
            value: int | None = None
            if raw is not None:
                try:
                    value = int(raw)
                except ValueError:
                    self.issues.append(
                        NCIPProblem(ProblemType.INVALID_AMOUNT, element="MonetaryValue", value=raw)
                    )
            amount = Amount(value=value, currency=_code(_child(amount_element, "CurrencyCode")))
        details = _child(element, "ItemDetails")
        reference = _child(element, "FiscalTransactionReferenceId")
        return FiscalTransaction(
            action_type=_code(_child(element, "FiscalActionType")),
            transaction_type=_code(_child(element, "FiscalTransactionType")),
            amount=amount,
            description=_text(_child(element, "FiscalTransactionDescription")),
            reference_id=_text(_child(reference, "FiscalTransactionIdentifierValue")),
            payment_method=_code(_child(element, "PaymentMethodType")),
            request_id=self.request_id(element),
            item_id=self.item_id(details),
        )

    def name(self, element: Element | None) -> PersonalName | None:
        personal = _child(element, "NameInformation", "PersonalNameInformation")
        if personal is None:
            return None
        structured = _child(personal, "StructuredPersonalUserName")
        return PersonalName(
            given=_text(_child(structured, "GivenName")),
            surname=_text(_child(structured, "Surname")),
            prefix=_text(_child(structured, "Prefix")),
            initials=_text(_child(structured, "Initials")),
            suffix=_text(_child(structured, "Suffix")),
            unstructured=_text(_child(personal, "UnstructuredPersonalUserName")),
        )

    def shipping(self, element: Element | None) -> ShippingAddress | None:
        info = _child(element, "ShippingInformation")
        if info is None:
            return None
        physical = _child(info, "PhysicalAddress")
        unstructured = _child(physical, "UnstructuredAddress")
        return ShippingAddress(
            unstructured=_text(_child(unstructured, "UnstructuredAddressData")),
            address_type=_code(_child(physical, "PhysicalAddressType")),
            note=_text(_child(info, "ShippingNote")),
        )

    def codes(self, element: Element | None, name: str) -> tuple[Code, ...]:
        return tuple(c for c in (_code(e) for e in _children(element, name)) if c is not None)


def _children_any(element: Element | None, names: tuple[str, ...]) -> Iterator[Element]:
    if element is None:
        return iter(())
    return element.iterchildren(*[_any_ns(name) for name in names])


# per-service readers -------------------------------------------------------------------------


def _authenticated(r: _Reader, m: Element) -> dict[str, Any]:
    return {"user_id": r.user_id(m), "authentication_inputs": r.authentication_inputs(m)}


def _lookup_version(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    if header is None and (_child(m, "FromAgencyId") is not None):
        header = Header(
            from_agency=_agency_of(_child(m, "FromAgencyId")),
            to_agency=_agency_of(_child(m, "ToAgencyId")),
        )
    versions = tuple(t for t in (_text(e) for e in _children(m, "VersionSupported")) if t)
    return LookupVersion(header=header, versions=versions)


def _lookup_user(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    return LookupUser(
        header=header,
        **_authenticated(r, m),
        user_element_types=r.codes(m, "UserElementType"),
        loaned_items_desired=_flag(m, "LoanedItemsDesired"),
        requested_items_desired=_flag(m, "RequestedItemsDesired"),
        user_fiscal_account_desired=_flag(m, "UserFiscalAccountDesired"),
    )


def _lookup_item(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    return LookupItem(
        header=header,
        item_id=r.item_id(m),
        request_id=r.request_id(m),
        item_element_types=r.codes(m, "ItemElementType"),
        current_borrower_desired=_flag(m, "CurrentBorrowerDesired"),
        current_requesters_desired=_flag(m, "CurrentRequestersDesired"),
    )


def _lookup_item_set(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    count = _text(_child(m, "MaximumItemsCount"))
    return LookupItemSet(
        header=header,
        item_ids=r.item_ids(m),
        bibliographic_ids=r.bibliographic_ids(m),
        request_ids=r.request_ids(m),
        item_element_types=r.codes(m, "ItemElementType"),
        maximum_items_count=_int(count),
        next_item_token=_text(_child(m, "NextItemToken")),
    )


def _lookup_request(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    return LookupRequest(
        header=header,
        **_authenticated(r, m),
        request_id=r.request_id(m),
        item_id=r.item_id(m),
        request_type=_code(_child(m, "RequestType")),
        request_element_types=r.codes(m, "RequestElementType"),
    )


def _optional_user_ids(r: _Reader, m: Element) -> tuple[UserId, ...]:
    """Patron ids inside C{UserOptionalFields} (INN-Reach's local barcode, a VisibleUserId)."""
    found = _children_any(_child(m, "UserOptionalFields"), ("UserId", "VisibleUserId"))
    return tuple(u for u in (r.one_user_id(e) for e in found) if u is not None)


def _accept_item(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    optional_users = _optional_user_ids(r, m)
    return AcceptItem(
        header=header,
        request_id=r.request_id(m),
        requested_action_type=_code(_child(m, "RequestedActionType")),
        user_id=r.user_id(m) or (optional_users[0] if optional_users else None),
        user_ids=optional_users,
        item_id=r.item_id(m),
        date_for_return=r.date(_child(m, "DateForReturn")),
        indeterminate_loan_period=_flag(m, "IndeterminateLoanPeriodFlag"),
        non_returnable=_flag(m, "NonReturnableFlag"),
        renewal_not_permitted=_flag(m, "RenewalNotPermitted"),
        item=r.item_fields(m),
        user_name=r.name(_child(m, "UserOptionalFields")),
        pickup_location=_text(_child(m, "PickupLocation")),
        pickup_expiry_date=r.date(_child(m, "PickupExpiryDate")),
        fiscal_transaction=r.fiscal(_child(m, "FiscalTransactionInformation")),
        shipping=r.shipping(m),
    )


def _check_out_item(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    return CheckOutItem(
        header=header,
        **_authenticated(r, m),
        item_id=r.item_id(m),
        request_ids=r.request_ids(m),
        desired_date_due=r.date(_child(m, "DesiredDateDue")),
        date_event_occurred=r.date(_child(m, "MandatedAction", "DateEventOccurred")),
        item_element_types=r.codes(m, "ItemElementType"),
        user_element_types=r.codes(m, "UserElementType"),
    )


def _check_in_item(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    return CheckInItem(
        header=header,
        item_id=r.item_id(m),
        user_id=r.user_id(m),
        request_id=r.request_id(m),
        item_element_types=r.codes(m, "ItemElementType"),
        user_element_types=r.codes(m, "UserElementType"),
        date_event_occurred=r.date(_child(m, "MandatedAction", "DateEventOccurred")),
    )


def _renew_item(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    return RenewItem(
        header=header,
        **_authenticated(r, m),
        item_id=r.item_id(m),
        request_id=r.request_id(m),
        desired_date_due=r.date(_child(m, "DesiredDateDue")),
    )


def _request_item(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    return RequestItem(
        header=header,
        **_authenticated(r, m),
        item_ids=r.item_ids(m),
        bibliographic_ids=r.bibliographic_ids(m),
        request_id=r.request_id(m),
        request_type=_code(_child(m, "RequestType")),
        request_scope_type=_code(_child(m, "RequestScopeType")),
        item=r.item_fields(m),
        pickup_location=_text(_child(m, "PickupLocation")),
        pickup_expiry_date=r.date(_child(m, "PickupExpiryDate")),
        need_before_date=r.date(_child(m, "NeedBeforeDate")),
        earliest_date_needed=r.date(_child(m, "EarliestDateNeeded")),
        shipping=r.shipping(m),
    )


def _cancel_request_item(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    return CancelRequestItem(
        header=header,
        **_authenticated(r, m),
        request_id=r.request_id(m),
        item_id=r.item_id(m),
        request_type=_code(_child(m, "RequestType")),
        request_scope_type=_code(_child(m, "RequestScopeType")),
    )


def _create_item(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    return CreateItem(
        header=header, item_id=r.item_id(m), request_id=r.request_id(m), item=r.item_fields(m)
    )


def _delete_item(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    return DeleteItem(header=header, item_id=r.item_id(m))


def _create_user_fiscal_transaction(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
    return CreateUserFiscalTransaction(
        header=header,
        **_authenticated(r, m),
        fiscal_transaction=r.fiscal(_child(m, "FiscalTransactionInformation")),
        date_event_occurred=r.date(_child(m, "MandatedAction", "DateEventOccurred")),
    )


_EVENT_DATES = (
    "DateOfUserRequest",
    "DateShipped",
    "DateReceived",
    "DateCheckedOut",
    "DateCheckedIn",
    "DateOfCancellation",
    "DateRenewed",
    "DateEventOccurred",
)


def _notification(cls: type[Notification]) -> Any:
    def read(r: _Reader, m: Element, header: Header | None) -> NCIPRequest:
        event = _first(m, *_EVENT_DATES)
        extra = _optional_user_ids(r, m)
        return cls(
            header=header,
            user_id=r.user_id(m),
            item_id=r.item_id(m),
            request_id=r.request_id(m),
            request_type=_code(_child(m, "RequestType")),
            request_scope_type=_code(_child(m, "RequestScopeType")),
            bibliographic_ids=r.bibliographic_ids(m),
            item=r.item_fields(m),
            user_ids=extra,
            date_event=r.date(event),
            date_due=r.date(_child(m, "DateDue")),
            date_for_return=r.date(_child(m, "DateForReturn")),
            pickup_location=_text(_child(m, "PickupLocation")),
            shipping=r.shipping(m),
        )

    return read


_READERS: dict[str, Any] = {
    "LookupVersion": _lookup_version,
    "LookupUser": _lookup_user,
    "LookupItem": _lookup_item,
    "LookupItemSet": _lookup_item_set,
    "LookupRequest": _lookup_request,
    "AcceptItem": _accept_item,
    "CheckOutItem": _check_out_item,
    "CheckInItem": _check_in_item,
    "RenewItem": _renew_item,
    "RequestItem": _request_item,
    "CancelRequestItem": _cancel_request_item,
    "CreateItem": _create_item,
    "DeleteItem": _delete_item,
    "CreateUserFiscalTransaction": _create_user_fiscal_transaction,
}
for _name, _cls in TYPED_MESSAGES.items():
    if issubclass(_cls, Notification):
        _READERS[_name] = _notification(_cls)


def _message_element(root: Element, notes: list[str]) -> Element:
    first = next((child for child in root if local_name(child)), None)
    if first is None:
        raise NCIPSyntaxError("no message element")
    if local_name(first) == "Ext":
        # XC ILS-DI "bc" style: a standard service wrapped in Ext.
        inner = next((c for c in first if local_name(c) in TYPED_MESSAGES), None)
        if inner is not None:
            notes.append("ext-wrapped")
            return inner
        extension = next((c for c in first if local_name(c)), None)
        return extension if extension is not None else first
    return first


def parse_message(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, tz: tzinfo = UTC) -> Envelope:
    """Parse an NCIP request body (any dialect) into an L{Envelope}.

    @param raw: the HTTP body as received.
    @param max_bytes: size cap checked before parsing.
    @param tz: time zone for naive datetimes (the library's zone; default UTC).
    @raise NCIPSyntaxError: the body is not acceptable XML/NCIP; answer it with
        L{protocols.ncip.writer.render_problem}C{(exc, None)}.
    """
    return parse_request(raw, max_bytes=max_bytes, tz=tz)[0]


def parse_request(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES,
                  tz: tzinfo = UTC, fallback_charset: str | None = None
                  ) -> tuple[Envelope, Element]:
    """L{parse_message}, also returning the parsed tree (the parser never modifies it), so a
    caller can reuse it, e.g. to redact the request for the audit log without parsing again.
    C{fallback_charset}: see L{protocols.ncip.safexml.parse_xml}."""
    document = parse_xml(raw, max_bytes, fallback_charset=fallback_charset)
    root = document.root
    outer, _INDEX.kids = _INDEX.kids, {}
    try:
        return _read_request(root, document.notes, tz), root
    finally:
        _INDEX.kids = outer


def _read_request(root: Element, parsed_notes: tuple[str, ...], tz: tzinfo) -> Envelope:
    dialect, style, prefix = classify(root)
    notes = list(parsed_notes)
    element = _message_element(root, notes)
    service = local_name(element)
    reader = _Reader(tz)
    header = reader.header(_first(element, "InitiationHeader", "ResponseHeader"))
    read = _READERS.get(service)
    if dialect is Dialect.VERSION and service != "LookupVersion":
        read = None
    message = (
        read(reader, element, header)
        if read is not None
        else OtherMessage(header=header, name=service)
    )
    return Envelope(
        service=service,
        message=message,
        dialect=dialect,
        prefix_style=style,
        prefix=prefix,
        version=version_attribute(root),
        notes=tuple(notes),
        issues=tuple(reader.issues),
        secrets=frozenset(reader.secrets),
    )
