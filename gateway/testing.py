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
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from gateway.config import Config, Peer, Z3950Settings
from gateway.domain.catalogue import (
    ICatalogue,
    IndexEntry,
    IResultSet,
    ResultSetUnknown,
    ScanPage,
    SortKey,
    UnsupportedIndex,
)
from gateway.domain.holdings import CatalogueRecord, ItemState
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
