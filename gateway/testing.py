# -*- test-case-name: tests.gateway.test_z3950_server -*-
"""Test doubles shipped with the package: a fake catalogue and a fake gateway.

L{FakeCatalogue} implements the C{CatalogueService} interface (search, fetch, scan, sort)
over a few in-memory records, so the Z39.50 listener can be tested (and the daemon can
serve something) without the embedded backend. L{FakeGateway} carries what
L{gateway.listeners.z3950.Z3950Factory} reads from the real L{gateway.daemon.gateway.Gateway}:
C{config}, C{audit}, C{reactor}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from gateway.config import Config, Peer, Z3950Settings
from gateway.z3950.catalogue import Bib1Error, ResultSet
from protocols.z3950 import oids, pqf
from protocols.z3950.codec import (
    Diagnostic,
    ResponseRecord,
    ScanEntry,
    SortKeyInfo,
    SurrogateDiagnostic,
)
from protocols.z3950.records import CirculationItem, Holding, OpacRecord

__all__ = ["Bib1Error", "FakeAudit", "FakeCatalogue", "FakeGateway", "FakeRecord",
           "ResultSet", "iso2709", "DEMO_RECORDS"]


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


def _marcxml(rec: FakeRecord) -> bytes:
    from xml.sax.saxutils import escape

    parts = [f'<controlfield tag="001">{escape(rec.local_id)}</controlfield>']
    if rec.isbn:
        parts.append(f'<datafield tag="020" ind1=" " ind2=" "><subfield code="a">'
                     f"{escape(rec.isbn)}</subfield></datafield>")
    parts.append(f'<datafield tag="245" ind1="1" ind2="0"><subfield code="a">'
                 f"{escape(rec.title)}</subfield></datafield>")
    return ('<record xmlns="http://www.loc.gov/MARC21/slim">' + "".join(parts)
            + "</record>").encode("utf-8")


def _opac(rec: FakeRecord) -> OpacRecord:
    holdings = tuple(
        Holding(local_location=location, call_number=f"CALL {rec.id}",
                circulation=(CirculationItem(available_now=available, item_id=barcode),))
        for barcode, location, available in rec.items)
    return OpacRecord(bibliographic=_marc(rec), holdings=holdings)


_USE_FIELDS = {4: "title", 7: "isbn", 12: "local_id", 1003: "author", 1016: "any"}
_SYNTAXES = (oids.USMARC, oids.XML, oids.OPAC, oids.SUTRS)
_ELEMENT_SETS = (None, "F", "B", "f", "b")


class FakeCatalogue:
    """An in-memory catalogue with the C{CatalogueService} interface.

    Searches bib-1 Use 4 (title words), 7 (ISBN), 12 (local id), 1003 (author words), 1016
    (any word); other Use values raise Bib-1 114. Records come as USMARC, MARCXML, OPAC or
    SUTRS. With C{hold=True} each call returns a Deferred kept in C{held} for the test to fire.

    @ivar calls: (method name, arguments) of every call, in order.
    """

    def __init__(self, gateway: Any = None, records: Sequence[FakeRecord] = DEMO_RECORDS,
                 *, databases: Sequence[str] | None = None, hold: bool = False) -> None:
        if databases is None:
            databases = getattr(getattr(getattr(gateway, "config", None), "z3950", None),
                                "databases", ("Default",))
        self.databases = {d.lower() for d in databases}
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

    def _check_databases(self, databases: Sequence[str]) -> None:
        if not databases:
            raise Bib1Error(109, "")
        for db in databases:
            if db.lower() not in self.databases:
                raise Bib1Error(109, db)

    def _words(self, rec: FakeRecord, use: str) -> set[str]:
        if use == "any":
            text = " ".join((rec.title, rec.author, rec.isbn, rec.local_id))
        else:
            text = getattr(rec, use)
        return {w.strip(",.").lower() for w in text.split()}

    def _match(self, node: pqf.Node, result_sets: Mapping[str, Any]) -> list[int]:
        if isinstance(node, pqf.ResultSetRef):
            if node.name not in result_sets:
                raise Bib1Error(30, node.name)
            return list(result_sets[node.name].hits.ids)
        if isinstance(node, pqf.Term):
            for attr in node.attributes:
                if attr.attrset not in (None, oids.BIB1_ATTRSET):
                    raise Bib1Error(121, ".".join(map(str, attr.attrset)))
            use_value = node.attribute(1)
            use = "any" if use_value is None else _USE_FIELDS.get(use_value)  # type: ignore
            if use is None:
                raise Bib1Error(114, str(use_value))
            relation = node.attribute(2)
            if relation not in (None, 3):
                raise Bib1Error(117, str(relation))
            words = [w.lower() for w in node.value.split()]
            if not words:
                raise Bib1Error(108, "empty term")
            return [r.id for r in self.records.values()
                    if all(w in self._words(r, use) for w in words)]
        left = self._match(node.left, result_sets)
        right = set(self._match(node.right, result_sets))
        if isinstance(node, pqf.And):
            return [i for i in left if i in right]
        if isinstance(node, pqf.Or):
            return left + sorted(right - set(left))
        return [i for i in left if i not in right]

    def _record(self, rec: FakeRecord, syntax: oids.Oid, database: str) -> ResponseRecord:
        if syntax == oids.OPAC:
            return ResponseRecord(oids.OPAC, _opac(rec), database)
        if syntax == oids.XML:
            return ResponseRecord(oids.XML, _marcxml(rec), database)
        if syntax == oids.SUTRS:
            return ResponseRecord(oids.SUTRS, f"{rec.title} / {rec.author}", database)
        return ResponseRecord(oids.USMARC, _marc(rec), database)

    # -- the CatalogueService interface ------------------------------------------------------

    def search(self, query: pqf.Query, databases: list[str], *, peer: Any,
               result_sets: Mapping[str, Any], name: str) -> Deferred[Any]:
        """Run a type-1 query; a L{ResultSet} called C{name}."""
        def compute() -> Any:
            self._check_databases(databases)
            if query.attribute_set != oids.BIB1_ATTRSET:
                raise Bib1Error(121, ".".join(map(str, query.attribute_set)))
            return ResultSet(name, tuple(self._match(query.root, result_sets)))
        return self._answer("search", {"query": query, "databases": list(databases),
                                       "peer": peer, "name": name}, compute)

    def fetch(self, result_set: Any, start: int, count: int, *, syntax: oids.Oid | None,
              element_set: str | None, database: str, peer: Any) -> Deferred[Any]:
        """Records C{start} (1-based) to C{start + count - 1} in C{syntax}."""
        def compute() -> Any:
            wanted = syntax or oids.USMARC
            if wanted not in _SYNTAXES:
                raise Bib1Error(239, ".".join(map(str, wanted)))
            if element_set not in _ELEMENT_SETS:
                raise Bib1Error(25, element_set)
            out: list[Any] = []
            for record_id in result_set.hits.ids[start - 1:start - 1 + count]:
                rec = self.records.get(record_id)
                if rec is None:
                    out.append(SurrogateDiagnostic(Diagnostic(14, str(record_id), v2=True),
                                                   database))
                else:
                    out.append(self._record(rec, wanted, database))
            return out
        return self._answer("fetch", {"result_set": result_set, "start": start,
                                      "count": count, "syntax": syntax,
                                      "element_set": element_set, "database": database,
                                      "peer": peer}, compute)

    def scan(self, term: pqf.Term, databases: list[str], *, count: int,
             preferred_position: int, step_size: int, peer: Any) -> Deferred[Any]:
        """Title words from C{term} on, with their record counts."""
        def compute() -> Any:
            self._check_databases(databases)
            use = term.attribute(1)
            if use not in (None, 4):
                raise Bib1Error(114, str(use))
            index: dict[str, int] = {}
            for rec in self.records.values():
                for word in self._words(rec, "title"):
                    index[word] = index.get(word, 0) + 1
            terms = sorted(index)
            first = next((i for i, t in enumerate(terms) if t >= term.value.lower()),
                         len(terms))
            begin = max(0, first - (preferred_position - 1))
            return [ScanEntry(t, index[t]) for t in terms[begin:begin + count]]
        return self._answer("scan", {"term": term, "databases": list(databases),
                                     "count": count, "peer": peer}, compute)

    def sort(self, result_set: Any, keys: list[SortKeyInfo], *, name: str) -> Deferred[Any]:
        """Sort by title (descending when the first key's relation is 1)."""
        def compute() -> Any:
            reverse = bool(keys) and keys[0].relation == 1
            ids = sorted(result_set.hits.ids,
                         key=lambda i: self.records[i].title.lower() if i in self.records
                         else "", reverse=reverse)
            return ResultSet(name, tuple(ids))
        return self._answer("sort", {"result_set": result_set, "keys": list(keys),
                                     "name": name}, compute)


@dataclass
class FakeAudit:
    """Collects audit entries instead of writing them."""

    entries: list[Any] = field(default_factory=list)

    def record(self, entry: Any) -> Deferred[None]:
        self.entries.append(entry)
        return succeed(None)


class FakeGateway:
    """What the Z39.50 listener needs of a gateway: config, audit, reactor (a Clock)."""

    def __init__(self, *, z3950: Z3950Settings | None = None, peers: Sequence[Peer] = (),
                 reactor: Any = None, catalogue: Any = None, **settings: Any) -> None:
        base = z3950 or Z3950Settings()
        if settings:
            base = replace(base, **settings)
        self.config = Config(z3950=base, peers=tuple(peers))
        self.audit = FakeAudit()
        self.reactor = reactor if reactor is not None else Clock()
        self.metrics = None
        self.catalogue = catalogue if catalogue is not None else FakeCatalogue(self)
