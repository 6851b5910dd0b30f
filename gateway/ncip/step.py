# -*- test-case-name: tests.gateway.ncip.test_workflow_rules -*-
"""What a workflow step works with: the request, the circulation system and the gateway's books
inside one unit of work, and the rules every step shares (who the patron is, which item a peer
may act on, due dates, the identifiers a reply gives back).

A peer acts only on what is its own (temporary items it brought in, found by our barcode or by
its own ItemId; our items lent to or requested for its institutional patron; its requests);
anything else is ``Unknown Item``, as if it did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config import CirculationSettings, Peer
from gateway.domain.books import Books, TrackedRequest
from gateway.domain.circulation import ICirculationChanges
from gateway.domain.lookups import item_named
from gateway.domain.model import (
    ConflictingRequest,
    Item,
    NeededDataMissing,
    Patron,
    PatronBlocked,
    UnknownItem,
    UnknownPatron,
)
from gateway.ncip.service import NcipCall, identifier_value
from protocols.ncip.model import ItemId, RequestId, UserId

PATRON_ID_TYPES = ("Barcode Id", "Barcode", "User Id", "Username")


@dataclass
class Step:
    """One state-changing request inside its unit of work."""

    call: NcipCall
    changes: ICirculationChanges
    books: Books
    now: datetime
    tz: ZoneInfo
    agency: str
    settings: CirculationSettings
    renewed_names: list[str] = field(default_factory=list)  # item names starting a new life

    @property
    def peer(self) -> Peer:
        """The peer the request came from."""
        return self.call.peer

    @property
    def message(self) -> Any:
        """The request's typed message."""
        return self.call.envelope.message

    # -- dates ------------------------------------------------------------------------------

    def today(self) -> date:
        """Today in the library's time zone."""
        return self.now.astimezone(self.tz).date()

    def end_of_day(self, day: date) -> datetime:
        """The last second of a day in the library's time zone."""
        return datetime.combine(day, datetime.max.time().replace(microsecond=0), self.tz)

    def due_in(self, days: int) -> datetime:
        """The end of the day ``days`` from today."""
        return self.end_of_day(self.today() + timedelta(days=days))

    def as_due(self, value: datetime | date | None) -> datetime | None:
        """A date sent as a due date: a day ends at its last second."""
        if value is None or isinstance(value, datetime):
            return value
        return self.end_of_day(value)

    def borrowed_due(self, lender_due: datetime | None) -> datetime:
        """A borrowed item's due date: the local loan period, never past the lender's."""
        local = self.due_in(self.settings.borrowed_loan_period_days)
        return min(local, lender_due) if lender_due is not None else local

    # -- patrons ----------------------------------------------------------------------------

    def patron(self, user: UserId | None) -> Patron:
        """The local patron the request names (by UserId or AuthenticationInput)."""
        message = self.message
        identifier = identifier_value(user)
        if identifier is None and hasattr(message, "authentication"):
            identifier = message.authentication(*PATRON_ID_TYPES)
        if not identifier:
            raise NeededDataMissing(element="UserId")
        patron = self.changes.find_patron(identifier)
        # NCIP 1 (INN-Reach) may name the patron by its local barcode, a VisibleUserId in
        # UserOptionalFields, while its UniqueUserId is another system's id.
        for other in getattr(message, "user_ids", ()) if patron is None else ():
            patron = self.changes.find_patron(other.value)
            if patron is not None:
                break
        if patron is None:
            raise UnknownPatron(element="UserIdentifierValue", value=identifier)
        return patron

    def check_may_borrow(self, patron: Patron, user: UserId | None) -> None:
        """A blocked or expired patron may not borrow: :class:`PatronBlocked`."""
        if patron.is_blocked() or patron.is_expired(self.today()):
            raise PatronBlocked(element="UserIdentifierValue", value=identifier_value(user))

    def institutional_patron(self, user: UserId | None, *, strict: bool = False) -> Patron:
        """The borrowing library's patron: as named, or created from the peer's template.

        Only this peer's institutional patrons (or a patron record in the template's form
        that no peer owns) qualify: a local patron or another peer's institutional patron is
        ``Unknown User``, as one that does not exist. ``strict`` (RequestItem): a name that is
        neither in the template's form nor one of the peer's agency ids is ``Unknown User``
        instead of a new institutional patron.
        """
        peer = self.peer
        template = peer.institutional_patron
        prefix, slot, suffix = template.partition("{agency}")

        def in_form(value: str) -> bool:
            if not slot:
                return value == template
            return (value.startswith(prefix) and value.endswith(suffix)
                    and len(value) > len(prefix + suffix))

        def usable(patron: Patron) -> bool:
            return patron.institutional_peer == peer.name or (
                patron.institutional_peer is None and in_form(patron.barcode))

        header = self.message.header
        from_agency = header.from_agency.value if header and header.from_agency else None
        value = identifier_value(user)
        if value is not None:
            existing = self.changes.find_patron(value)
            if existing is not None:
                if usable(existing):
                    return existing
                raise UnknownPatron(element="UserIdentifierValue", value=value)
            if strict and not in_form(value) and value not in (
                    *peer.ncip_agency_ids, from_agency):
                raise UnknownPatron(element="UserIdentifierValue", value=value)
        agency = value or from_agency or peer.name
        if in_form(agency) and slot:
            barcode = agency
            agency = agency[len(prefix):len(agency) - len(suffix) or None]
        else:
            barcode = template.format(agency=agency) if slot else template
        existing = self.changes.find_patron(barcode, kinds=("barcode",))
        if existing is not None and not usable(existing):
            raise UnknownPatron(element="UserIdentifierValue", value=value or barcode)
        return self.changes.ensure_institutional_patron(barcode, peer.name, agency)

    def own_institution(self, patron_id: int) -> bool:
        """Whether a patron is this peer's institutional patron."""
        patron = self.changes.patron_by_id(patron_id)
        return patron is not None and patron.institutional_peer == self.peer.name

    # -- items ------------------------------------------------------------------------------

    def item_named(self, value: str, *, by_request: bool = False) -> Item | None:
        """The item the peer names (see :func:`gateway.domain.lookups.item_named`)."""
        return item_named(self.changes, self.books.requests, peer=self.peer.name, value=value,
                          by_request=by_request)

    def find_item(self, item_id: ItemId | None, *, lend: bool = False) -> Item:
        """The item the peer names (our barcode, its own ItemId for a temporary item it brought
        in, or its request id) and may act on. Anything else is ``Unknown Item``, exactly as
        an item that does not exist: a peer learns nothing of what is not its own."""
        value = identifier_value(item_id)
        if not value:
            raise NeededDataMissing(element="ItemId")
        item = self.item_named(value, by_request=names_request(item_id))
        if item is None or not self.may_act_on(item, lend=lend):
            raise UnknownItem(element="ItemIdentifierValue", value=value)
        return item

    def may_act_on(self, item: Item, *, lend: bool = False) -> bool:
        """A temporary item this peer brought in; one of our items on loan to this peer's
        institutional patron or held by a request of this peer; with ``lend``, also one of
        our items nobody else has or is waiting for."""
        if item.temporary:
            return item.owning_peer == self.peer.name
        loan = self.changes.open_loan(item.id)
        if loan is not None:
            return self.own_institution(loan.patron_id)
        if self.books.requests.find(peer=self.peer.name, role="lender",
                                    item_id=item.id) is not None:
            return True
        return lend and all(self.own_institution(hold.patron_id)
                            for hold in self.changes.active_holds_of_item(item.id))

    def pickup(self, location: str | None) -> str:
        """Our pickup location for the one the peer names (its code table, else its default)."""
        peer = self.peer
        if location:
            for code, ours in peer.pickup_locations.items():
                if code.casefold() == location.strip().casefold():
                    return ours
        return peer.default_pickup_location or (location or "").strip()

    # -- tracked requests -------------------------------------------------------------------

    def volume(self, role: str, broker_id: str, broker_item: str | None,
               patron: Patron) -> TrackedRequest | None:
        """The tracked request this RequestId already names for this ItemId (one volume), or
        None; the same RequestId and ItemId for another patron is a conflict, said by name."""
        existing = self.books.requests.find_volume(
            peer=self.peer.name, role=role, broker_request_id=broker_id,
            broker_item_id=broker_item)
        if existing is not None and existing.patron_id != patron.id:
            raise ConflictingRequest(
                f"RequestId {broker_id} already names item {broker_item or '(none)'}"
                " for another patron", element="RequestIdentifierValue", value=broker_id)
        return existing

    def volume_request(self, role: str, broker_id: str | None,
                       item: Item) -> TrackedRequest | None:
        """The tracked request an item's circulation belongs to: under the broker's RequestId,
        the volume with this item, else (lender) one not yet shipped; without a RequestId,
        the peer's open request for the item."""
        requests = self.books.requests
        peer = self.peer.name
        if not broker_id:
            return requests.find(peer=peer, role=role, item_id=item.id)
        volumes = requests.volumes(peer=peer, role=role, broker_request_id=broker_id)
        for request in volumes:
            if request.item_id == item.id:
                return request
        if role == "lender":
            for request in volumes:
                if request.shipped_at is None and request.cancelled_at is None:
                    return request
            return None
        return requests.find(peer=peer, role=role, item_id=item.id)

    def hold_of_request(self, request: TrackedRequest) -> int | None:
        """The active hold a lender request placed (None if it has none left).

        An institutional patron has many holds, each placed by its own request; nothing links
        the two, so match what RequestItem wrote in one step: the same patron, the same item
        (or none, for a record-level hold), placed when the request was made. Requests made
        in the same second correspond to their holds in creation order.
        """
        if request.patron_id is None or request.requested_at is None:
            return None
        holds = self.changes.holds_placed(request.patron_id, request.item_id,
                                          request.requested_at)
        together = self.books.requests.placed_together(request)
        index = together.index(request.id) if request.id in together else len(holds)
        if index < len(holds) and holds[index].status == "active":
            return holds[index].id
        return None

    # -- identifiers in replies -------------------------------------------------------------

    def user_id(self, patron: Patron, sent: UserId | None) -> UserId:
        """The UserId a reply gives back: the one the peer sent, as sent (Tipasa matches its
        own institution symbol, not our patron's barcode); else the patron's barcode."""
        return UserId(value=identifier_value(sent) or patron.barcode,
                      agency=(sent.agency if sent is not None else None) or self.agency,
                      type=sent.type if sent is not None else None)

    def our_request_id(self, value: str) -> RequestId:
        """One of our request ids, under our agency."""
        return RequestId(value=value, agency=self.agency)

    def item_id(self, value: str) -> ItemId:
        """An item id under our agency."""
        return ItemId(value=value, agency=self.agency)


def echo_request_id(sent: RequestId) -> RequestId:
    """The broker's RequestId, given back as sent."""
    return RequestId(value=sent.value, agency=sent.agency, type=sent.type)


def names_request(item_id: ItemId | None) -> bool:
    """True when an ItemId names the item by a request id (Tipasa's "ILL Request Id")."""
    kind = getattr(item_id, "type", None)
    return kind is not None and "request" in str(kind).casefold()


def money(minor_units: int, exponent: int = 2) -> str:
    """NCIP MonetaryValue (minor units) as a decimal string: 1250 → "12.50"."""
    sign = "-" if minor_units < 0 else ""
    units = abs(minor_units)
    return f"{sign}{units // 10**exponent}.{units % 10**exponent:0{exponent}d}"
