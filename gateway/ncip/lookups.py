# -*- test-case-name: tests.gateway.test_ncip_lookups -*-
"""NCIP lookup services: LookupVersion, LookupUser, LookupItem, LookupItemSet.

Each handler turns a typed request into domain calls and the answer into a typed response;
domain errors propagate to :mod:`gateway.ncip.service`, which maps them to Problems.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from gateway.domain.lookups import Lookups, PatronDetails, today_in
from gateway.domain.model import Item, NeededDataMissing
from gateway.ncip.service import ConfiguredHost, NcipCall
from protocols.ncip.codes import Code
from protocols.ncip.messages import LookupItem, LookupItemSet, LookupUser
from protocols.ncip.model import (
    BibliographicDescription,
    BibliographicId,
    ItemId,
    PersonalName,
    RequestId,
    UserId,
)
from protocols.ncip.problems import NCIPProblem, ProblemType
from protocols.ncip.responses import (
    BibInformation,
    BlockOrTrap,
    HoldingsSet,
    ItemInformation,
    LoanedItem,
    LookupItemResponse,
    LookupItemSetResponse,
    LookupUserResponse,
    LookupVersionResponse,
    RequestedItem,
    UserAddress,
    UserPrivilege,
)

IDENTIFIER_TYPES = ("Barcode Id", "Barcode", "User Id", "Username", "LDAP Username",
                    "Patron Id", "Institution Id Number")
SECRET_TYPES = ("PIN", "Password")
CIRCULATION_STATUS = {
    "available": "Available On Shelf",
    "on_loan": "On Loan",
    "on_hold_shelf": "Available For Pickup",
    "in_transit": "In Transit Between Library Locations",
    "missing": "Missing",
    "withdrawn": "Not Available",
}
RECORD_ID_CODES = {"sysnumber": "local", "bibid": "local", "isbn": "isbn", "issn": "issn",
                   "oclc": "oclc", "oclc number": "oclc"}


class LookupHandlers:
    """The lookup services, registered on an :class:`NcipService`."""

    def __init__(self, gateway: ConfiguredHost, lookups: Lookups,
                 services: Iterable[str]) -> None:
        self.gateway = gateway
        self.lookups = lookups
        self._services = services

    def register(self, handlers: dict[str, Any]) -> None:
        """Add these services to an NCIP service's handler table."""
        handlers.update({"LookupVersion": self.lookup_version, "LookupUser": self.lookup_user,
                         "LookupItem": self.lookup_item, "LookupItemSet": self.lookup_item_set})

    @property
    def agency(self) -> str:
        return self.gateway.config.gateway.agency_id

    async def lookup_version(self, call: NcipCall) -> LookupVersionResponse:
        """The versions we speak and every service we answer."""
        return LookupVersionResponse(services=tuple(sorted(self._services)))

    async def lookup_user(self, call: NcipCall) -> LookupUserResponse:
        """A patron with name, e-mail, privileges and blocks in the form brokers parse."""
        message = call.envelope.message
        assert isinstance(message, LookupUser)
        identifier = (message.user_id.value if message.user_id is not None
                      else message.authentication(*IDENTIFIER_TYPES))
        if not identifier:
            raise NeededDataMissing(element="UserId")
        secret = message.authentication(*SECRET_TYPES)
        details = await self.lookups.patron(
            identifier, peer=call.peer.name, secret=secret,
            loans=message.loaned_items_desired, holds=message.requested_items_desired)
        return self._user_response(details)

    def _user_response(self, details: PatronDetails) -> LookupUserResponse:
        patron = details.patron
        agency = self.agency
        today = today_in(ZoneInfo(self.gateway.config.gateway.timezone))
        expired = patron.is_expired(today)
        blocks = []
        if patron.is_blocked():
            blocks.append(BlockOrTrap(agency=agency, block_type="Block Checkout"))
            blocks.append(BlockOrTrap(agency=agency, block_type="Block Interlibrary Loan"))
        if expired:
            blocks.append(BlockOrTrap(agency=agency, block_type="Patron Expired"))
        privileges = [
            UserPrivilege(agency=agency, privilege_type="STATUS",
                          status="BLOCKED" if blocks else "ACTIVE"),
        ]
        if patron.patron_group:
            privileges.append(UserPrivilege(agency=agency, privilege_type="PROFILE",
                                            status=patron.patron_group,
                                            valid_to=patron.expires))
        user_ids = [UserId(value=patron.barcode, agency=agency, type=Code("Barcode"))]
        if patron.username:
            user_ids.append(UserId(value=patron.username, agency=agency, type=Code("Username")))
        return LookupUserResponse(
            user_id=user_ids[0],
            name=PersonalName(given=patron.given_name or None,
                              surname=patron.family_name or None,
                              unstructured=patron.display_name or None),
            addresses=(UserAddress.email(patron.email),) if patron.email else (),
            privileges=tuple(privileges),
            blocks=tuple(blocks),
            user_ids=tuple(user_ids),
            loaned_items=tuple(
                LoanedItem(item_id=ItemId(value=loan.item_barcode, agency=agency),
                           date_due=loan.due_at, title=loan.title)
                for loan in details.loans),
            requested_items=tuple(
                RequestedItem(date_placed=hold.placed_at,
                              request_id=RequestId(value=str(hold.id), agency=agency),
                              item_id=ItemId(value=hold.item_barcode, agency=agency)
                              if hold.item_barcode else None,
                              pickup_location=hold.pickup_location or None, title=hold.title)
                for hold in details.holds),
        )

    async def lookup_item(self, call: NcipCall) -> LookupItemResponse:
        """An item's bibliographic description, status, location, call number and due date."""
        message = call.envelope.message
        assert isinstance(message, LookupItem)
        if message.item_id is None or not message.item_id.value:
            raise NeededDataMissing(element="ItemId")
        item = await self.lookups.item(message.item_id.value.strip(), call.peer.name)
        return LookupItemResponse(
            item_id=ItemId(value=message.item_id.value.strip(),
                           agency=message.item_id.agency or self.agency),
            bibliographic=describe(item), circulation_status=CIRCULATION_STATUS[item.status],
            hold_queue_length=item.active_holds, call_number=item.call_number or None,
            location=item.location or None, date_due=item.due_at)

    async def lookup_item_set(self, call: NcipCall) -> LookupItemSetResponse:
        """Availability by bibliographic record id (SYSNUMBER, ISBN, OCLC) or by item ids."""
        message = call.envelope.message
        assert isinstance(message, LookupItemSet)
        bibs: list[BibInformation] = []
        wanted = [(bib_id, _record_kind(bib_id)) for bib_id in message.bibliographic_ids]
        found = await self.lookups.records_items(
            [(kind, bib_id.identifier) for bib_id, kind in wanted])
        for (bib_id, _), (_, record_id, items) in zip(wanted, found):
            if record_id is None or not items:
                detail = "No record has this identifier." if record_id is None else \
                    "The record has no items that can be requested."
                bibs.append(BibInformation(holdings=(), bibliographic_id=bib_id, problems=(
                    NCIPProblem(ProblemType.UNKNOWN_ITEM, element="BibliographicRecordIdentifier",
                                value=bib_id.identifier, detail=detail),)))
                continue
            bibs.append(BibInformation(holdings=_holdings(items), bibliographic_id=bib_id,
                                       bibliographic=describe(items[0])))
        for item_id in message.item_ids:
            item = await self.lookups.item(item_id.value)
            bibs.append(BibInformation(holdings=_holdings([item]), bibliographic=describe(item)))
        if not bibs:
            raise NeededDataMissing(element="BibliographicId")
        return LookupItemSetResponse(bibs=tuple(bibs))


def _record_kind(bib_id: BibliographicId) -> str:
    code = (bib_id.code or "sysnumber").casefold()
    return RECORD_ID_CODES.get(code, "local")


def _holdings(items: list[Item]) -> tuple[HoldingsSet, ...]:
    return tuple(
        HoldingsSet(items=(ItemInformation(
            item_id=ItemId(value=item.barcode), circulation_status=CIRCULATION_STATUS[item.status],
            call_number=item.call_number or None, location=item.location or None,
            date_due=item.due_at, hold_queue_length=item.active_holds),),
            call_number=item.call_number or None, location=item.location or None)
        for item in items)


def describe(item: Item) -> BibliographicDescription:
    """The bibliographic description of an item's record."""
    ids = []
    if item.isbn:
        ids.append(BibliographicId(identifier=item.isbn, code=Code("ISBN"), kind="item"))
    ids.append(BibliographicId(identifier=item.local_id, code=Code("SYSNUMBER"), kind="record"))
    return BibliographicDescription(
        title=item.title or None, author=item.author or None, publisher=item.publisher or None,
        publication_date=str(item.pub_year) if item.pub_year else None, ids=tuple(ids))

