# -*- test-case-name: tests.gateway.test_z3950_server -*-
"""Test doubles shipped with the package: a fake catalogue and a fake gateway.

L{FakeCatalogue} implements L{gateway.domain.catalogue.ICatalogue} (search, fetch, scan,
sort) over a few in-memory records, so the Z39.50 catalogue service and listener can be tested
(and the daemon can serve something) without the embedded backend. L{FakeGateway} carries what
L{gateway.listeners.z3950.Z3950Factory} reads from the real L{gateway.daemon.gateway.Gateway}:
C{config}, C{audit}, C{reactor}, C{catalogue} (the service over the fake catalogue).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from gateway.config import Config, Peer, Z3950Settings
from gateway.domain.books import Books, ReplayKey, TrackedRequest
from gateway.domain.catalogue import (
    ICatalogue,
    IndexEntry,
    IResultSet,
    ResultSetUnknown,
    ScanPage,
    SortKey,
    UnsupportedIndex,
)
from gateway.domain.circulation import ICirculation, ICirculationChanges
from gateway.domain.holdings import CatalogueRecord, ItemState
from gateway.domain.model import (
    BriefRecord,
    Hold,
    Item,
    ItemNotCheckedOut,
    Loan,
    NotTemporaryItem,
    Patron,
    PatronDetails,
    UnknownItem,
)
from gateway.domain.query import (
    Combine,
    IdentifierTerm,
    Operator,
    Plan,
    ScanPlan,
    SetTerm,
    WordTerm,
)
from gateway.z3950.catalogue import CatalogueService, ResultSet
from gateway.z3950.diagnostics import Bib1Error

__all__ = ["Bib1Error", "FakeAudit", "FakeCatalogue", "FakeGateway", "FakeRecord",
           "FakeResultSet", "ResultSet", "iso2709", "DEMO_RECORDS"]


@dataclass(frozen=True)
class FakeRecord:
    """One bibliographic record of the fake catalogue, with its items."""

    id: int
    local_id: str
    title: str
    author: str = ""
    isbn: str = ""
    items: tuple[tuple[str, str, bool], ...] = ()  # (barcode, location, available)
    padding: int = 0  # extra bytes in a 500 note, to test message-size packing


DEMO_RECORDS: tuple[FakeRecord, ...] = (
    FakeRecord(1, "rec0001", "Pride and prejudice", "Austen, Jane", "9780141439518",
               (("39000000000011", "MAIN", True), ("39000000000012", "EAST", False))),
    FakeRecord(2, "rec0002", "The computer and the brain", "Von Neumann, John", "0300084730",
               (("39000000000021", "MAIN", True),)),
    FakeRecord(3, "rec0003", "How to program a computer", "Smith, Ann", "0262011530",
               (("39000000000031", "WEST", False),)),
    FakeRecord(4, "rec0004", "Emma", "Austen, Jane", "9780141439587",
               (("39000000000041", "MAIN", True),)),
    FakeRecord(5, "rec0005", "Computer networks", "Tanenbaum, Andrew", "0130661023", ()),
)


def iso2709(fields: Sequence[tuple[str, str]], leader_type: str = "am") -> bytes:
    """Build a minimal ISO 2709 (MARC 21, UTF-8) record from (tag, data) pairs.

    Control fields (00x) take their data as is; data fields take C{"ind1ind2$asubfield..."}
    text where C{$} marks a subfield (encoded as 0x1F).
    """
    directory, body = b"", b""
    for tag, data in fields:
        raw = data.replace("$", "\x1f").encode("utf-8") + b"\x1e"
        directory += f"{tag}{len(raw):04d}{len(body):05d}".encode("ascii")
        body += raw
    directory += b"\x1e"
    base = 24 + len(directory)
    total = base + len(body) + 1
    leader = f"{total:05d}n{leader_type}  22{base:05d} a 4500".encode("ascii")
    leader = leader[:9] + b"a" + leader[10:]  # leader/09 = a: UTF-8
    return leader[:24] + directory + body + b"\x1d"


def _marc(rec: FakeRecord) -> bytes:
    fields = [("001", rec.local_id)]
    if rec.isbn:
        fields.append(("020", f"  $a{rec.isbn}"))
    if rec.author:
        fields.append(("100", f"1 $a{rec.author}"))
    fields.append(("245", f"10$a{rec.title}"))
    if rec.padding:
        fields.append(("500", "  $a" + "x" * rec.padding))
    for barcode, location, _ in rec.items:
        fields.append(("852", f"  $b{location}$p{barcode}"))
    return iso2709(fields)


_WORD_FIELDS = {"title": ("title",), "author": ("author",),
                "any": ("title", "author", "isbn", "local_id"),
                "anywhere": ("title", "author", "isbn", "local_id")}
_IDENTIFIER_FIELDS = {"isbn": "isbn", "local_id": "local_id"}


@implementer(IResultSet)
@dataclass(frozen=True)
class FakeResultSet:
    """A result set of the fake catalogue: its record ids, in order."""

    ids: tuple[int, ...]

    @property
    def count(self) -> int:
        """The number of hits."""
        return len(self.ids)

    @property
    def held_bytes(self) -> int:
        """What the ids would cost held in memory."""
        return 64 + 8 * len(self.ids)


def _items(rec: FakeRecord) -> tuple[ItemState, ...]:
    return tuple(ItemState(barcode, location, "", f"CALL {rec.id}", "",
                           "available" if available else "on_loan", "")
                 for barcode, location, available in rec.items)


@implementer(ICatalogue)
class FakeCatalogue:
    """An in-memory L{ICatalogue} over a few records.

    Searches words in the title, author, any and anywhere indexes, and ISBNs and local ids
    whole; other indexes fail with L{UnsupportedIndex}. Scans list title words. Sorts by
    title. With C{hold=True} each call returns a Deferred kept in C{held} for the test to fire.

    @ivar calls: (method name, arguments) of every call, in order.
    @ivar fail_with: an exception every call then fails with.
    """

    def __init__(self, records: Sequence[FakeRecord] = DEMO_RECORDS, *,
                 hold: bool = False) -> None:
        self.records = {r.id: r for r in records}
        self.hold = hold
        self.held: list[Deferred[Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_with: BaseException | None = None

    # -- helpers --------------------------------------------------------------------------

    def _answer(self, method: str, arguments: dict[str, Any], compute: Any) -> Deferred[Any]:
        self.calls.append((method, arguments))
        if self.fail_with is not None:
            return fail(self.fail_with)
        try:
            value = compute()
        except Exception as exc:  # noqa: BLE001 - surfaced through the Deferred
            return fail(exc)
        if self.hold:
            d: Deferred[Any] = Deferred()
            d.addCallback(lambda _: value)
            self.held.append(d)
            return d
        return succeed(value)

    @staticmethod
    def _words(text: str) -> set[str]:
        return {w.strip(",.").lower() for w in text.split()}

    def _match(self, plan: Plan) -> list[int]:
        if isinstance(plan, SetTerm):
            if not isinstance(plan.result_set, FakeResultSet):
                raise ResultSetUnknown(plan.name)
            return list(plan.result_set.ids)
        if isinstance(plan, WordTerm):
            fields = _WORD_FIELDS.get(plan.index)
            if fields is None:
                raise UnsupportedIndex(plan.index)
            words = self._words(plan.text)
            return [r.id for r in self.records.values()
                    if words <= self._words(" ".join(getattr(r, f) for f in fields))]
        if isinstance(plan, IdentifierTerm):
            name = _IDENTIFIER_FIELDS.get(plan.index)
            if name is None:
                raise UnsupportedIndex(plan.index)
            return [r.id for r in self.records.values()
                    if getattr(r, name).lower() == plan.text.lower()]
        if not isinstance(plan, Combine):
            raise UnsupportedIndex(type(plan).__name__)
        left = self._match(plan.left)
        right = set(self._match(plan.right))
        if plan.operator is Operator.AND:
            return [i for i in left if i in right]
        if plan.operator is Operator.OR:
            return left + sorted(right - set(left))
        return [i for i in left if i not in right]

    def record(self, record_id: int) -> CatalogueRecord | None:
        """A record as L{fetch} reads it: MARC (001, 020, 100, 245, 500) and its items."""
        rec = self.records.get(record_id)
        if rec is None:
            return None
        return CatalogueRecord(rec.id, rec.local_id, _marc(rec), _items(rec))

    # -- the ICatalogue interface ---------------------------------------------------------

    def search(self, plan: Plan) -> Deferred[IResultSet]:
        """The records matching C{plan}, in id order for a term."""
        return self._answer("search", {"plan": plan},
                            lambda: FakeResultSet(tuple(self._match(plan))))

    def fetch(self, result_set: IResultSet, start: int, count: int,
              build: Callable[[CatalogueRecord], Any] | None = None
              ) -> Deferred[list[Any | None]]:
        """Records C{start} (1-based) to C{start + count - 1}, through C{build}."""
        def compute() -> list[Any | None]:
            if not isinstance(result_set, FakeResultSet):
                raise ResultSetUnknown(type(result_set).__name__)
            out: list[Any | None] = []
            for record_id in result_set.ids[start - 1:start - 1 + count]:
                record = self.record(record_id)
                out.append(record if record is None or build is None else build(record))
            return out
        return self._answer("fetch", {"result_set": result_set, "start": start,
                                      "count": count}, compute)

    def scan(self, plan: ScanPlan, count: int, preferred_position: int,
             step_size: int) -> Deferred[ScanPage]:
        """Title words from the plan's term on, with their record counts."""
        def compute() -> ScanPage:
            if plan.index != "title":
                raise UnsupportedIndex(plan.index)
            index: dict[str, int] = {}
            for rec in self.records.values():
                for word in self._words(rec.title):
                    index[word] = index.get(word, 0) + 1
            terms = sorted(index)
            first = next((i for i, t in enumerate(terms) if t >= plan.text.lower()),
                         len(terms))
            begin = max(0, first - (preferred_position - 1))
            entries = tuple(IndexEntry(t, index[t]) for t in terms[begin:begin + count])
            return ScanPage(entries, position_of_term=first - begin + 1,
                            ended_early=len(entries) < count)
        return self._answer("scan", {"plan": plan, "count": count}, compute)

    def sort(self, result_set: IResultSet, keys: Sequence[SortKey]) -> Deferred[IResultSet]:
        """Sort by title (descending when the first key says so)."""
        def compute() -> IResultSet:
            if not isinstance(result_set, FakeResultSet):
                raise ResultSetUnknown(type(result_set).__name__)
            reverse = bool(keys) and keys[0].descending
            ids = sorted(result_set.ids,
                         key=lambda i: self.records[i].title.lower() if i in self.records
                         else "", reverse=reverse)
            return FakeResultSet(tuple(ids))
        return self._answer("sort", {"result_set": result_set, "keys": list(keys)}, compute)


@dataclass
class FakeAudit:
    """Collects audit entries instead of writing them."""

    entries: list[Any] = field(default_factory=list)

    def record(self, entry: Any) -> Deferred[None]:
        self.entries.append(entry)
        return succeed(None)


class FakeGateway:
    """What the Z39.50 listener needs of a gateway: config, audit, reactor (a Clock), and the
    catalogue service (C{catalogue}) over a L{FakeCatalogue} (C{fake_catalogue}, or the
    L{ICatalogue} given)."""

    def __init__(self, *, z3950: Z3950Settings | None = None, peers: Sequence[Peer] = (),
                 reactor: Any = None, catalogue: ICatalogue | None = None,
                 **settings: Any) -> None:
        base = z3950 or Z3950Settings()
        if settings:
            base = replace(base, **settings)
        self.config = Config(z3950=base, peers=tuple(peers))
        self.audit = FakeAudit()
        self.reactor = reactor if reactor is not None else Clock()
        self.metrics = None
        self.fake_catalogue: Any = catalogue if catalogue is not None else FakeCatalogue()
        self.catalogue = CatalogueService(self.fake_catalogue, config=lambda: self.config,
                                          clock=self.reactor)


# -- circulation ----------------------------------------------------------------------------------
# A circulation system in memory (tests: tests.gateway.ncip.test_fake_circulation): ICirculation
# with its unit of work, and the gateway's books.

__all__ += ["DEMO_PATRONS", "FakeBooks", "FakeChanges", "FakeCirculation",
            "FakeCirculationState", "demo_circulation_state"]

T = TypeVar("T")


@dataclass
class _FakeRecord:
    local_id: str
    title: str
    author: str = ""
    publisher: str = ""
    isbn: str = ""
    identifiers: dict[str, set[str]] = field(default_factory=dict)
    temporary: bool = False


@dataclass
class _FakeItem:
    barcode: str
    record_id: int
    location: str = "MAIN"
    call_number: str = ""
    status: str = "available"
    temporary: bool = False
    owning_peer: str | None = None


@dataclass
class _FakeLoan:
    item_id: int
    patron_id: int
    checked_out_at: datetime
    due_at: datetime
    returned_at: datetime | None = None
    renewals: int = 0


@dataclass
class _FakeHold:
    patron_id: int
    record_id: int
    item_id: int | None
    pickup_location: str
    status: str
    placed_at: datetime
    pickup_expires: datetime | None = None


@dataclass
class FakeCirculationState:
    """Everything a :class:`FakeCirculation` knows, copied whole around each unit of work."""

    patrons: dict[int, Patron] = field(default_factory=dict)
    pins: dict[int, str] = field(default_factory=dict)
    records: dict[int, _FakeRecord] = field(default_factory=dict)
    items: dict[int, _FakeItem] = field(default_factory=dict)
    loans: dict[int, _FakeLoan] = field(default_factory=dict)
    holds: dict[int, _FakeHold] = field(default_factory=dict)
    fees: dict[int, tuple[int, str, str, str, str]] = field(default_factory=dict)
    requests: dict[int, TrackedRequest] = field(default_factory=dict)
    replies: dict[tuple[str, str, str], tuple[ReplayKey, bytes]] = field(default_factory=dict)
    audit: list[Any] = field(default_factory=list)
    next_id: int = 1

    def new_id(self) -> int:
        """A fresh row id (one sequence for every kind of row)."""
        self.next_id += 1
        return self.next_id - 1


DEMO_PATRONS: tuple[tuple[Patron, str | None], ...] = (
    (Patron(id=1, barcode="P100", username="alice", given_name="Alice", family_name="Reader",
            email="alice@example.org", status="active", patron_group="staff", expires=None),
     "1234"),
    (Patron(id=2, barcode="P200", username=None, given_name="Bea", family_name="Blocked",
            email="", status="blocked", patron_group="", expires=None), None),
)


def demo_circulation_state(records: Sequence[FakeRecord] = DEMO_RECORDS,
                           patrons: Sequence[tuple[Patron, str | None]] = DEMO_PATRONS,
                           ) -> FakeCirculationState:
    """The fake catalogue's records and items, and a few patrons (with their PINs)."""
    state = FakeCirculationState(next_id=1000)
    for patron, pin in patrons:
        state.patrons[patron.id] = patron
        if pin is not None:
            state.pins[patron.id] = pin
    for rec in records:
        ids = {"local": {rec.local_id}}
        if rec.isbn:
            ids["isbn"] = {rec.isbn}
        state.records[rec.id] = _FakeRecord(rec.local_id, rec.title, rec.author, isbn=rec.isbn,
                                            identifiers=ids)
        for barcode, location, available in rec.items:
            state.items[state.new_id()] = _FakeItem(
                barcode, rec.id, location, status="available" if available else "on_loan")
    return state


@implementer(ICirculationChanges)
class FakeChanges:
    """:class:`ICirculationChanges` on a :class:`FakeCirculationState`."""

    def __init__(self, state: FakeCirculationState) -> None:
        self.state = state

    def _open_loan_id(self, item_id: int) -> int | None:
        return next((lid for lid, loan in self.state.loans.items()
                     if loan.item_id == item_id and loan.returned_at is None), None)

    def _item(self, item_id: int) -> Item:
        row = self.state.items[item_id]
        record = self.state.records[row.record_id]
        loan_id = self._open_loan_id(item_id)
        loan = self.state.loans[loan_id] if loan_id is not None else None
        return Item(
            id=item_id, barcode=row.barcode, record_id=row.record_id, local_id=record.local_id,
            title=record.title, author=record.author, publisher=record.publisher,
            pub_year=None, isbn=record.isbn or None, location=row.location,
            shelving_location="", call_number=row.call_number, copy_number="",
            status=row.status, temporary=row.temporary, owning_peer=row.owning_peer,
            due_at=loan.due_at if loan else None, loan_patron_id=loan.patron_id if loan else None,
            active_holds=sum(1 for h in self.state.holds.values()
                             if h.item_id == item_id and h.status == "active"))

    def _loan(self, loan_id: int) -> Loan:
        loan = self.state.loans[loan_id]
        item = self.state.items[loan.item_id]
        return Loan(id=loan_id, item_id=loan.item_id, item_barcode=item.barcode,
                    patron_id=loan.patron_id, title=self.state.records[item.record_id].title,
                    checked_out_at=loan.checked_out_at, due_at=loan.due_at,
                    renewals=loan.renewals)

    def _hold(self, hold_id: int) -> Hold:
        hold = self.state.holds[hold_id]
        item = self.state.items.get(hold.item_id) if hold.item_id is not None else None
        return Hold(id=hold_id, patron_id=hold.patron_id, record_id=hold.record_id,
                    item_id=hold.item_id, item_barcode=item.barcode if item else None,
                    title=self.state.records[hold.record_id].title,
                    pickup_location=hold.pickup_location, status=hold.status,
                    placed_at=hold.placed_at, pickup_expires=hold.pickup_expires)

    def find_patron(self, identifier: str,
                    kinds: tuple[str, ...] = ("barcode", "username")) -> Patron | None:
        for kind in kinds:
            for patron in self.state.patrons.values():
                if getattr(patron, kind) == identifier:
                    return patron
        return None

    def patron_by_id(self, patron_id: int) -> Patron | None:
        return self.state.patrons.get(patron_id)

    def ensure_institutional_patron(self, barcode: str, peer: str, agency: str) -> Patron:
        found = self.find_patron(barcode, ("barcode",))
        if found is not None:
            return found
        patron = Patron(id=self.state.new_id(), barcode=barcode, username=None, given_name="",
                        family_name=agency, email="", status="active",
                        patron_group="interlibrary-loan", expires=None,
                        institutional_peer=peer)
        self.state.patrons[patron.id] = patron
        return patron

    def item_by_barcode(self, barcode: str) -> Item | None:
        return next((self._item(iid) for iid, row in self.state.items.items()
                     if row.barcode == barcode), None)

    def item_by_id(self, item_id: int) -> Item | None:
        return self._item(item_id) if item_id in self.state.items else None

    def barcode_in_use(self, barcode: str) -> bool:
        return any(row.barcode == barcode for row in self.state.items.values())

    def record_by_identifier(self, kind: str, value: str) -> int | None:
        return next((rid for rid, rec in self.state.records.items()
                     if not rec.temporary and value in rec.identifiers.get(kind, ())), None)

    def items_of_record(self, record_id: int) -> list[Item]:
        return [self._item(iid) for iid, row in self.state.items.items()
                if row.record_id == record_id]

    def open_loan(self, item_id: int) -> Loan | None:
        loan_id = self._open_loan_id(item_id)
        return self._loan(loan_id) if loan_id is not None else None

    def last_returned_loan_patron(self, item_id: int) -> int | None:
        loans = [loan for loan in self.state.loans.values() if loan.item_id == item_id]
        return loans[-1].patron_id if loans and loans[-1].returned_at is not None else None

    def holds_of_patron(self, patron_id: int) -> list[Hold]:
        return [self._hold(hid) for hid, hold in self.state.holds.items()
                if hold.patron_id == patron_id and hold.status == "active"]

    def active_holds_of_item(self, item_id: int) -> list[Hold]:
        return [self._hold(hid) for hid, hold in self.state.holds.items()
                if hold.item_id == item_id and hold.status == "active"]

    def holds_placed(self, patron_id: int, item_id: int | None,
                     placed_at: datetime) -> list[Hold]:
        return [self._hold(hid) for hid, hold in self.state.holds.items()
                if hold.patron_id == patron_id and hold.item_id == item_id
                and hold.placed_at == placed_at]

    def create_brief_record(self, local_id: str, brief: BriefRecord) -> int:
        record_id = self.state.new_id()
        self.state.records[record_id] = _FakeRecord(
            local_id, brief.title, brief.author, brief.publisher, brief.isbn,
            {"isbn": {brief.isbn}} if brief.isbn else {}, temporary=True)
        return record_id

    def create_temporary_item(self, *, barcode: str, record_id: int, peer: str, location: str,
                              call_number: str = "") -> int:
        if self.barcode_in_use(barcode):
            raise ValueError(f"barcode {barcode} in use")
        item_id = self.state.new_id()
        self.state.items[item_id] = _FakeItem(barcode, record_id, location, call_number,
                                              "on_hold_shelf", True, peer)
        return item_id

    def delete_temporary_item(self, barcode: str, now: datetime) -> int:
        item = self.item_by_barcode(barcode)
        if item is None:
            raise UnknownItem(element="ItemIdentifierValue", value=barcode)
        if not item.temporary:
            raise NotTemporaryItem(element="ItemIdentifierValue", value=barcode)
        state = self.state
        state.loans = {k: v for k, v in state.loans.items() if v.item_id != item.id}
        state.holds = {k: v for k, v in state.holds.items() if v.item_id != item.id}
        del state.items[item.id]
        if not any(row.record_id == item.record_id for row in state.items.values()):
            state.holds = {k: v for k, v in state.holds.items()
                           if v.record_id != item.record_id}
            del state.records[item.record_id]
        return item.id

    def set_item_status(self, item_id: int, status: str, now: datetime) -> None:
        self.state.items[item_id].status = status

    def place_hold(self, *, patron_id: int, record_id: int, item_id: int | None,
                   pickup_location: str, now: datetime,
                   pickup_expires: datetime | None = None) -> int:
        hold_id = self.state.new_id()
        self.state.holds[hold_id] = _FakeHold(patron_id, record_id, item_id, pickup_location,
                                              "active", now, pickup_expires)
        return hold_id

    def set_hold_status(self, hold_id: int, status: str, now: datetime) -> None:
        self.state.holds[hold_id].status = status

    def check_out(self, *, item_id: int, patron_id: int, due_at: datetime,
                  now: datetime) -> Loan:
        loan_id = self.state.new_id()
        self.state.loans[loan_id] = _FakeLoan(item_id, patron_id, now, due_at)
        self.state.items[item_id].status = "on_loan"
        for hold in self.state.holds.values():
            if hold.item_id == item_id and hold.patron_id == patron_id \
                    and hold.status == "active":
                hold.status = "fulfilled"
        return self._loan(loan_id)

    def check_in(self, *, item_id: int, now: datetime, status: str = "available") -> Loan:
        loan_id = self._open_loan_id(item_id)
        if loan_id is None:
            raise ItemNotCheckedOut(element="ItemIdentifierValue")
        loan = self._loan(loan_id)
        self.state.loans[loan_id].returned_at = now
        self.state.items[item_id].status = status
        return loan

    def renew(self, loan: Loan, due_at: datetime) -> Loan:
        row = self.state.loans[loan.id]
        row.due_at, row.renewals = due_at, row.renewals + 1
        return self._loan(loan.id)

    def add_fee(self, *, patron_id: int, peer: str, amount: str, currency: str, fee_type: str,
                item_id: int | None, now: datetime) -> int:
        fee_id = self.state.new_id()
        self.state.fees[fee_id] = (patron_id, peer, amount, currency, fee_type)
        return fee_id


class FakeRequestBook:
    """:class:`gateway.domain.books.RequestBook` in memory."""

    def __init__(self, state: FakeCirculationState) -> None:
        self.state = state

    def _all(self, peer: str, role: str | None = None) -> list[TrackedRequest]:
        return [r for r in self.state.requests.values()
                if r.peer == peer and (role is None or r.role == role)]

    def find(self, *, peer: str, role: str, broker_request_id: str | None = None,
             our_request_id: str | None = None,
             item_id: int | None = None) -> TrackedRequest | None:
        if our_request_id:
            found = next((r for r in self._all(peer)
                          if r.our_request_id == our_request_id), None)
            if found is not None:
                return found
        if broker_request_id:
            found = next((r for r in self._all(peer, role)
                          if r.broker_request_id == broker_request_id), None)
            if found is not None:
                return found
        if item_id is not None:
            open_ones = [r for r in self._all(peer, role) if r.item_id == item_id
                         and r.completed_at is None and r.cancelled_at is None]
            return open_ones[-1] if open_ones else None
        return None

    def find_volume(self, *, peer: str, role: str, broker_request_id: str,
                    broker_item_id: str | None) -> TrackedRequest | None:
        return next((r for r in self._all(peer, role) if r.broker_request_id == broker_request_id
                     and (r.broker_item_id or "") == (broker_item_id or "")), None)

    def volumes(self, *, peer: str, role: str, broker_request_id: str) -> list[TrackedRequest]:
        return [r for r in self._all(peer, role) if r.broker_request_id == broker_request_id]

    def latest(self, *, peer: str, role: str, item_id: int) -> TrackedRequest | None:
        found = [r for r in self._all(peer, role) if r.item_id == item_id]
        return found[-1] if found else None

    def latest_borrowed(self, *, peer: str, name: str) -> TrackedRequest | None:
        found = [r for r in self._all(peer, "borrower")
                 if name in (r.item_barcode, r.broker_item_id)]
        return found[-1] if found else None

    def aliased_item(self, *, peer: str, broker_item_id: str) -> int | None:
        found = [r.item_id for r in self._all(peer)
                 if r.broker_item_id == broker_item_id and r.item_id is not None]
        return found[-1] if found else None

    def requested_item(self, *, peer: str, broker_request_id: str) -> int | None:
        found = {r.item_id for r in self._all(peer)
                 if r.broker_request_id == broker_request_id and r.item_id is not None}
        return found.pop() if len(found) == 1 else None

    def placed_together(self, request: TrackedRequest) -> list[int]:
        return [r.id for r in self.state.requests.values()
                if r.patron_id == request.patron_id and r.role == "lender"
                and r.requested_at == request.requested_at and r.item_id == request.item_id]

    def any_for_patron(self, *, peer: str, patron_id: int) -> bool:
        return any(r.patron_id == patron_id for r in self._all(peer))

    def next_number(self) -> int:
        return max(self.state.requests, default=0) + 1

    def create(self, *, peer: str, role: str, broker_request_id: str | None,
               our_request_id: str, state: str, step: str, now: datetime,
               item_id: int | None = None, item_barcode: str | None = None,
               patron_id: int | None = None, also_stamped: tuple[str, ...] = (),
               due_at: datetime | None = None, renewable: bool = True,
               broker_item_id: str | None = None) -> int:
        if self.find_volume(peer=peer, role=role, broker_request_id=broker_request_id or "",
                            broker_item_id=broker_item_id) is not None and broker_request_id:
            raise ValueError(f"request {broker_request_id} already tracked")
        request_id = self.next_number()
        stamps: dict[str, Any] = {f"{name}_at": now for name in (step, *also_stamped)}
        self.state.requests[request_id] = replace(TrackedRequest(
            id=request_id, peer=peer, role=role, our_request_id=our_request_id, state=state,
            broker_request_id=broker_request_id, broker_item_id=broker_item_id,
            item_id=item_id, item_barcode=item_barcode, patron_id=patron_id,
            due_at=due_at, renewable=renewable, requested_at=now), **stamps)
        return request_id

    def advance(self, request_id: int, *, state: str, step: str, now: datetime,
                item_id: int | None = None, item_barcode: str | None = None,
                due_at: datetime | None = None, end_reason: str | None = None) -> None:
        request = self.state.requests[request_id]
        changes: dict[str, Any] = {"state": state}
        if getattr(request, f"{step}_at") is None:
            changes[f"{step}_at"] = now
        given = {"item_id": item_id, "item_barcode": item_barcode, "due_at": due_at,
                 "end_reason": end_reason}
        changes.update({name: value for name, value in given.items() if value is not None})
        self.state.requests[request_id] = replace(request, **changes)

    def set_due(self, request_id: int, due_at: datetime) -> None:
        self.state.requests[request_id] = replace(self.state.requests[request_id],
                                                  due_at=due_at)

    def forget_item(self, item_id: int) -> None:
        for rid, request in list(self.state.requests.items()):
            if request.item_id == item_id:
                self.state.requests[rid] = replace(request, item_id=None)


class FakeReplyBook:
    """:class:`gateway.domain.books.ReplyBook` in memory."""

    def __init__(self, state: FakeCirculationState) -> None:
        self.state = state

    def replay(self, key: ReplayKey, opener: Callable[[bytes], bytes | None]) -> bytes | None:
        kept = self.state.replies.get(key.ident)
        if kept is None:
            return None
        reply = opener(kept[1])
        if reply is None:
            del self.state.replies[key.ident]
        return reply

    def conflicts(self, key: ReplayKey) -> bool:
        return any(k.peer == key.peer and k.request == key.request and k.service == key.service
                   and k.item == key.item and k.user is not None and k.user != key.user
                   for k, _ in self.state.replies.values())

    def keep(self, key: ReplayKey, sealed: bytes, now: datetime) -> None:
        self.state.replies[key.ident] = (key, sealed)

    def forget_item(self, peer: str, name: str) -> None:
        self.state.replies = {ident: kept for ident, kept in self.state.replies.items()
                              if not (ident[0] == peer and kept[0].request == f"item:{name}")}


class FakeBooks:
    """:class:`gateway.domain.books.Books` in memory."""

    def __init__(self, state: FakeCirculationState) -> None:
        self.requests = FakeRequestBook(state)
        self.replies = FakeReplyBook(state)
        self._state = state

    def audit(self, entry: Any) -> None:
        self._state.audit.append(entry)


@implementer(ICirculation)
class FakeCirculation:
    """:class:`ICirculation` in memory, books included: a unit of work runs on a copy of the
    whole state, which replaces the state only when the work returns (all or nothing)."""

    def __init__(self, state: FakeCirculationState | None = None) -> None:
        self.state = state if state is not None else demo_circulation_state()
        self.units = 0

    def lookup_patron(self, identifier: str, *, loans: bool = False,
                      holds: bool = False) -> Deferred[PatronDetails | None]:
        changes = FakeChanges(self.state)
        patron = changes.find_patron(identifier)
        if patron is None:
            return succeed(None)
        open_loans = [changes._loan(lid) for lid, loan in self.state.loans.items()
                      if loan.patron_id == patron.id and loan.returned_at is None]
        return succeed(PatronDetails(
            patron, tuple(sorted(open_loans, key=lambda loan: loan.due_at)) if loans else (),
            tuple(changes.holds_of_patron(patron.id)) if holds else ()))

    def authenticate(self, patron: Patron, secret: str) -> Deferred[bool]:
        return succeed(self.state.pins.get(patron.id) == secret)

    def item(self, barcode: str) -> Deferred[Item | None]:
        return succeed(FakeChanges(self.state).item_by_barcode(barcode))

    def record_items(self, identifiers: list[tuple[str, str]]) -> Deferred[
            list[tuple[int | None, list[Item]]]]:
        changes = FakeChanges(self.state)
        found: list[tuple[int | None, list[Item]]] = []
        for kind, value in identifiers:
            record_id = changes.record_by_identifier(kind, value)
            items = changes.items_of_record(record_id) if record_id is not None else []
            found.append((record_id, [i for i in items if not i.temporary]))
        return succeed(found)

    def transact(self, work: Callable[[ICirculationChanges, Books], T]) -> Deferred[T]:
        copy = deepcopy(self.state)
        try:
            result = work(FakeChanges(copy), FakeBooks(copy))
        except BaseException:
            return fail()
        self.state = copy
        self.units += 1
        return succeed(result)

    def inspect(self, work: Callable[[ICirculationChanges, Books], T]) -> Deferred[T]:
        try:
            return succeed(work(FakeChanges(self.state), FakeBooks(self.state)))
        except BaseException:
            return fail()
