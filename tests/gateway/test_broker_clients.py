# -*- test-case-name: tests.gateway.test_broker_clients -*-
"""Each broker's whole NCIP flow, sent in its own request shapes and read the way its client
reads our replies (issue 13).

A real ``interlend serve`` per module, on a seeded database, over HTTP. Every step is sent,
its reply read with the broker's own logic (ReShare's lib-ncip-client: any ``Problem``
element, with its "already checked in" exceptions, and the ItemId of a cancel; Tipasa/OCLC:
namespace-aware XPaths; ILLiad: the substring ``Problem`` and ``<ns1:DateDue>``; DCB: the
literal ``<Problem>``; INN-Reach: the message-specific NCIP 1 response), the database checked,
and then the step is sent again as after a client timeout: the same bytes, nothing changed
(the whole circulation state compared, row by row).

The request shapes follow ``../shared/docs/ncip.md`` §6 and ``docs/brokers.md`` (our own
XML, no sample copied). Replies are answered in the style each peer's ``namespace_style``
sets in ``tests.workflow_fixtures.CONFIG`` (ILLiad ``ns1``, DCB ``default``).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests import workflow_fixtures as wf
from tests.daemon import Daemon
from tests.workflow_fixtures import call

pytestmark = pytest.mark.slow

N = {"n": wf.NS}


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Daemon]]:
    """A daemon on a freshly seeded database of its own (killed at module end); ``prepare``
    may change the database before the daemon starts."""
    yield from wf.launched_daemons(tmp_path_factory)


_TABLES = {
    "records": "SELECT id, temporary FROM records",
    "items": "SELECT * FROM items",
    "holds": "SELECT * FROM holds",
    "loans": "SELECT * FROM loans",
    "rs_requests": "SELECT * FROM rs_requests",
    "patrons": "SELECT id, barcode, institutional_peer, status FROM patrons",
    "fees": "SELECT * FROM fees",
    "idempotency": "SELECT peer, service, key, response FROM idempotency"
                   " WHERE key NOT LIKE 'barrier-%'",
}


def state(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every circulation row (audit aside): "changes nothing" means exactly that."""
    return {name: sorted(tuple(r.values()) for r in wf.rows(path, sql))
            for name, sql in _TABLES.items()}


def step(d: Daemon, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """Send a step, then again as after a client timeout: the same bytes, nothing changed."""
    reply = call(d, body, headers)
    after = state(d.database)
    assert call(d, body, headers) == reply, "a retried step got another reply"
    assert state(d.database) == after, "a retried step changed the database"
    return reply


ITEM_BY_BARCODE = "SELECT * FROM items WHERE barcode = ?"
OPEN_LOAN_BY_BARCODE = ("SELECT l.*, p.barcode AS patron FROM loans l JOIN items i"
                        " ON i.id = l.item_id JOIN patrons p ON p.id = l.patron_id"
                        " WHERE i.barcode = ? AND l.returned_at IS NULL")


def item_row(d: Daemon, barcode: str) -> dict[str, Any]:
    """The item with ``barcode``, which must exist."""
    return wf.row(d.database, ITEM_BY_BARCODE, barcode)


def find_item_row(d: Daemon, barcode: str) -> dict[str, Any] | None:
    """The item with ``barcode``, or None."""
    return wf.one(d.database, ITEM_BY_BARCODE, barcode)


def loan_of(d: Daemon, barcode: str) -> dict[str, Any]:
    """The open loan (with its patron's barcode) of the item with ``barcode``, which must exist."""
    return wf.row(d.database, OPEN_LOAN_BY_BARCODE, barcode)


def find_loan_of(d: Daemon, barcode: str) -> dict[str, Any] | None:
    """The open loan of the item with ``barcode``, or None."""
    return wf.one(d.database, OPEN_LOAN_BY_BARCODE, barcode)


def holds_of(d: Daemon, barcode: str) -> list[str]:
    return [h["status"] for h in wf.rows(d.database, "SELECT h.status FROM holds h JOIN items i"
                                                     " ON i.id = h.item_id WHERE i.barcode = ?"
                                                     " ORDER BY h.id", barcode)]


def volumes(d: Daemon, peer: str, role: str, rid: str) -> list[dict[str, Any]]:
    return wf.rows(d.database, "SELECT * FROM rs_requests WHERE peer = ? AND role = ? AND"
                               " broker_request_id = ? ORDER BY id", peer, role, rid)


# -- how each client reads a reply ---------------------------------------------------------------

class ReShare:
    """lib-ncip-client: unmarshals the reply; any Problem element is a failure, except on
    CheckInItem where "Item Not Checked Out"/"Unknown Item" mean "already checked in"."""

    ALREADY_IN = {"Item Not Checked Out", "9022", "Not On Loan", "Unknown Item"}

    @staticmethod
    def problems(reply: bytes) -> list[dict[str, str | None]]:
        root = etree.fromstring(reply)
        found = []
        for p in root.xpath("//*[local-name()='Problem']"):
            def child(name: str, p: Any = p) -> str | None:
                values = p.xpath(f"*[local-name()='{name}']/text()")
                return str(values[0]) if values else None
            found.append({"type": child("ProblemType"), "detail": child("ProblemDetail"),
                          "element": child("ProblemElement"), "value": child("ProblemValue")})
        return found

    @classmethod
    def ok(cls, reply: bytes) -> bool:
        return not cls.problems(reply)

    @classmethod
    def checked_in(cls, reply: bytes) -> bool:
        return all(p["type"] in cls.ALREADY_IN for p in cls.problems(reply))

    @staticmethod
    def field(reply: bytes, *path: str) -> str | None:
        """A value by element path below the response element (any prefix)."""
        xpath = "/*/*" + "".join(f"/*[local-name()='{name}']" for name in path) + "/text()"
        values = etree.fromstring(reply).xpath(xpath)
        return str(values[0]) if values else None


class Tipasa:
    """OCLC's circulation/ILL toolkit: namespace-aware XPaths in the NCIP 2 namespace."""

    @staticmethod
    def xpath(reply: bytes, path: str) -> list[str]:
        return [str(v) for v in etree.fromstring(reply).xpath(path, namespaces=N)]

    @classmethod
    def problem(cls, reply: bytes) -> str | None:
        found = cls.xpath(reply, "//n:Problem/n:ProblemType/text()")
        return found[0] if found else None


class ILLiad:
    """The ILLiad NCIP add-ons: substring matches on the reply text."""

    @staticmethod
    def failed(reply: bytes) -> bool:
        return "Problem" in reply.decode("utf-8")

    @staticmethod
    def date_due(reply: bytes) -> str | None:
        found = re.search(r"<ns1:DateDue>([^<]+)</ns1:DateDue>", reply.decode("utf-8"))
        return found.group(1) if found else None


class DCB:
    """DCB's NCIP adaptor: ``response.contains("<Problem>")``; ids by element path."""

    @staticmethod
    def failed(reply: bytes) -> bool:
        return "<Problem>" in reply.decode("utf-8")

    @staticmethod
    def request_id(reply: bytes) -> str | None:
        found = etree.fromstring(reply).xpath(
            "/n:NCIPMessage/*/n:RequestId/n:RequestIdentifierValue/text()", namespaces=N)
        return str(found[0]) if found else None


class InnReach:
    """The INN-Reach relay: the message-specific NCIP 1 response element, no Problem."""

    @staticmethod
    def answered(reply: bytes, service: str) -> bool:
        return wf.response_name(reply) == f"{service}Response" and wf.problem(reply) is None


# -- request shapes not in the shared fixtures ---------------------------------------------------

def tipasa_ns1(service: str, body: list[wf.Node]) -> bytes:
    """Tipasa/WSILL as the OCLC toolkit writes it: ``ns1:`` prefix, 2.02 version."""
    return wf.ncip2(service, [wf._tip_header(), *body], style="ns1", version=wf.V2_02)


def tipasa_check_in_by_request(rid: str) -> bytes:
    return tipasa_ns1("CheckInItem", [wf.item_id(rid, "TIPASA", "ILL Request Id")])


def tipasa_renew(barcode: str, patron: str, desired: str | None = None) -> bytes:
    body: list[wf.Node] = [wf.user_id(patron, "TIPASA", "Barcode"),
                           wf.item_id(barcode, "TIPASA")]
    if desired:
        body.append(("DesiredDateDue", desired))
    return tipasa_ns1("RenewItem", body)


def tipasa_lend(barcode: str, institution: str, rid: str | None = None) -> bytes:
    """CheckOutItemToInstitutionForILL: mandated (already shipped), the borrowing library by
    its OCLC symbol, the ILL request id as RequestId."""
    body: list[wf.Node] = [("MandatedAction", [("DateEventOccurred", "2026-01-12T11:37:00Z")]),
                           wf.user_id(institution, "TIPASA", "OCLC Institution Symbol"),
                           wf.item_id(barcode, wf.AGENCY, "Barcode")]
    if rid is not None:
        body.append(wf.request_id(rid, "TIPASA", "ILL Request Id"))
    return tipasa_ns1("CheckOutItem", body)


def tipasa_fee(patron: str, amount: str = "500", item: str | None = None) -> bytes:
    fiscal: list[wf.Node] = [("FiscalActionType", "Assess"),
                             ("FiscalTransactionType", "Interlibrary Loan Fee"),
                             ("Amount", [("CurrencyCode", "USD"), ("MonetaryValue", amount)])]
    if item:
        fiscal.append(("ItemDetails", [wf.item_id(item, "TIPASA")]))
    return tipasa_ns1("CreateUserFiscalTransaction", [
        wf.user_id(patron, "TIPASA", "Barcode"), ("FiscalTransactionInformation", fiscal)])


def tipasa_delete(barcode: str) -> bytes:
    return tipasa_ns1("DeleteItem", [wf.item_id(barcode, "TIPASA")])


def reshare_lookup_item(barcode: str) -> bytes:
    return wf.ncip2("LookupItem", [wf._rs_header(), wf.item_id(barcode, wf.RS),
                                   ("ItemElementType", "Bibliographic Description")])


def dcb_request_item(bib: str, barcode: str, patron: str,
                     pr_id: str | None = None) -> bytes:
    """DCB's supplier placement; ``pr_id=None``: without a RequestId (optional in 2.02)."""
    body: list[wf.Node] = [wf._dcb_header(), wf.user_id(patron, "dcb-host"),
                           wf.bib_record_id(bib, "SYSNUMBER", wf.AGENCY),
                           wf.item_id(barcode, wf.AGENCY)]
    if pr_id is not None:
        body.append(wf.request_id(f"{pr_id}:SUPPLIER"))
    body += [("RequestType", "Hold"), ("RequestScopeType", "Bibliographic Item"),
             ("ItemOptionalFields", [wf.bib_description("DCB title", "Dcb, Author")])]
    return wf.ncip2("RequestItem", body, style="dcb")


# -- ReShare -------------------------------------------------------------------------------------


def test_reshare_borrower_multi_volume(launch) -> None:
    """ReShare borrowing a two-volume loan: one RequestId, one AcceptItem per volume, each
    with its own ItemId (ReShare's temporary barcodes). Both volumes are created (a new
    operation, not a replay of the first); the request-id barcode policy gives the second
    volume a suffixed barcode, and every later call naming ReShare's ItemIds finds them:
    LookupItem, the patron's CheckOutItem, CheckInItem (the volume never picked up has its
    hold ended) and DeleteItem. The same RequestId and ItemId for another patron is a
    Duplicate Request that says so; retries of every step replay their bytes."""
    d = launch("rs-borrower")
    rid = "EAST-501"
    first = step(d, wf.reshare_accept_item(rid, "P100", barcode="EAST-501-V1",
                                           title="Collected works"))
    assert ReShare.ok(first)
    assert ReShare.field(first, "RequestId", "RequestIdentifierValue") == rid
    assert ReShare.field(first, "ItemId", "ItemIdentifierValue") == rid    # the policy's barcode
    second = step(d, wf.reshare_accept_item(rid, "P100", barcode="EAST-501-V2",
                                            title="Collected works"))
    assert ReShare.ok(second) and second != first
    ours = ReShare.field(second, "ItemId", "ItemIdentifierValue")
    assert ours == f"{rid}-RS"
    rows = volumes(d, "reshare", "borrower", rid)
    assert [(r["broker_item_id"], r["item_barcode"], r["state"]) for r in rows] == [
        ("EAST-501-V1", rid, "awaiting_pickup"), ("EAST-501-V2", ours, "awaiting_pickup")]
    assert holds_of(d, rid) == ["active"] and holds_of(d, ours) == ["active"]

    before = state(d.database)
    conflict = step(d, wf.reshare_accept_item(rid, "P101", barcode="EAST-501-V2"))
    [problem] = ReShare.problems(conflict)
    assert problem["type"] == "Duplicate Request" and problem["value"] == rid
    assert "another patron" in (problem["detail"] or "")
    assert "P100" not in conflict.decode() and state(d.database) == before

    looked = step(d, reshare_lookup_item("EAST-501-V2"))
    assert ReShare.field(looked, "ItemId", "ItemIdentifierValue") == "EAST-501-V2"
    assert ReShare.ok(looked)

    # the patron collects volume 1 (CheckOutItem by ReShare's ItemId) and returns it
    out = step(d, wf.reshare_check_out("EAST-501-V1", "P100"))
    assert ReShare.ok(out) and ReShare.field(out, "ItemId", "ItemIdentifierValue") == \
        "EAST-501-V1"
    assert loan_of(d, rid)["patron"] == "P100"
    back = step(d, wf.reshare_check_in("EAST-501-V1"))
    assert ReShare.ok(back) and ReShare.checked_in(back)
    assert find_loan_of(d, rid) is None and item_row(d, rid)["status"] == "in_transit"
    # volume 2 was never picked up: its check-in ends the hold, the request says why
    back = step(d, wf.reshare_check_in("EAST-501-V2"))
    assert ReShare.ok(back)
    assert holds_of(d, ours) == ["cancelled"]
    rows = volumes(d, "reshare", "borrower", rid)
    assert [(r["state"], r["end_reason"]) for r in rows] == [
        ("checked_in", None), ("checked_in", "not picked up")]

    for name, barcode in (("EAST-501-V1", rid), ("EAST-501-V2", ours)):
        gone = step(d, wf.reshare_delete_item(name))
        assert ReShare.ok(gone)
        assert ReShare.field(gone, "ItemId", "ItemIdentifierValue") == name
        assert find_item_row(d, barcode) is None
    assert [r["state"] for r in volumes(d, "reshare", "borrower", rid)] == ["completed"] * 2
    real = find_item_row(d, "LEND-001")
    assert real is not None and real["temporary"] == 0


def test_reshare_lender_multi_volume_and_cancel(launch) -> None:
    """ReShare lending: RequestItem for the institutional patron, then one CheckOutItem per
    volume under the same RequestId (both loans made: the second is not a replay of the
    first), the check-in of each when they come back; a second request cancelled, whose
    CancelRequestItemResponse names the item, the patron and the request (lib-ncip-client
    dereferences its ItemId)."""
    d = launch("rs-lender")
    rid = "EAST-601"
    reply = step(d, wf.reshare_request_item(rid, sysnumber="b1004"))
    assert ReShare.ok(reply)
    our_id = ReShare.field(reply, "RequestId", "RequestIdentifierValue")
    assert our_id and our_id.startswith("L-")
    assert ReShare.field(reply, "ItemId", "ItemIdentifierValue") == "LEND-030"

    for barcode in ("LEND-030", "LEND-031"):
        out = step(d, wf.reshare_check_out(barcode, "INST-EAST", rid))
        assert ReShare.ok(out)
        assert ReShare.field(out, "UserId", "UserIdentifierValue") == "INST-EAST"
        assert ReShare.field(out, "DateDue") == wf.on_wire(wf.end_of_day(wf.LOAN_DAYS))
        assert loan_of(d, barcode)["patron"] == "INST-EAST"
    rows = volumes(d, "reshare", "lender", rid)
    assert [(r["item_barcode"], r["state"]) for r in rows] == [
        ("LEND-030", "shipped"), ("LEND-031", "shipped")]
    assert [h["status"] for h in wf.rows(d.database, "SELECT status FROM holds")] == \
        ["fulfilled"]
    # the same RequestId and ItemId for another of ReShare's patrons: refused, by name
    before = state(d.database)
    conflict = step(d, wf.reshare_check_out("LEND-031", "INST-WEST", rid))
    [problem] = ReShare.problems(conflict)
    assert problem["type"] == "Duplicate Request" and problem["detail"] is not None \
        and "another patron" in problem["detail"]
    assert b"INST-EAST" not in conflict and state(d.database) == before

    for barcode in ("LEND-030", "LEND-031"):
        back = step(d, wf.reshare_check_in(barcode))
        assert ReShare.checked_in(back) and find_loan_of(d, barcode) is None
        assert item_row(d, barcode)["status"] == "available"
    assert [r["state"] for r in volumes(d, "reshare", "lender", rid)] == ["completed"] * 2

    reply = step(d, wf.reshare_request_item("EAST-602", sysnumber="b1005"))
    hold_id = ReShare.field(reply, "RequestId", "RequestIdentifierValue")
    cancelled = step(d, wf.reshare_cancel_request(hold_id))
    assert ReShare.ok(cancelled)
    assert ReShare.field(cancelled, "ItemId", "ItemIdentifierValue") == "LEND-040"
    assert ReShare.field(cancelled, "UserId", "UserIdentifierValue") == "INST-EAST"
    assert ReShare.field(cancelled, "RequestId", "RequestIdentifierValue") == hold_id
    assert volumes(d, "reshare", "lender", "EAST-602")[0]["state"] == "cancelled"
    assert holds_of(d, "LEND-040") == ["cancelled"]

    # a RequestItem naming somebody who is neither a patron nor the peer's institution
    reply = step(d, wf.reshare_request_item("EAST-603", sysnumber="b1005", patron="NOBODY"))
    assert [p["type"] for p in ReShare.problems(reply)] == ["Unknown User"]
    assert volumes(d, "reshare", "lender", "EAST-603") == []


# -- Tipasa --------------------------------------------------------------------------------------


def test_tipasa_borrowing_and_lending(launch) -> None:
    """Tipasa borrowing: AcceptItem names the lender's barcode (ItemId with NDOSU's agency);
    the prefixed policy makes our barcode ``TIP-…``, yet Tipasa's CheckOutItem and RenewItem
    by the lender's barcode find it, and its CheckInItem by "ILL Request Id" finds and
    (delete_on_checkin) deletes it. Tipasa lending: CheckOutItem to an institution by its OCLC
    symbol gives back that symbol as the UserId (not our INST- barcode), and its check-in by
    the ILL request id (CheckInRequestedItem) or by barcode ends the loan."""
    d = launch("tipasa")
    h = wf.TIPASA_HEADERS
    limit = f"{wf.local_day(10).isoformat()}T23:59:59"          # the lender's DateForReturn
    reply = step(d, wf.tipasa_accept_item("TIP-900", "P100", "31234000",
                                          date_for_return=limit), h)
    assert Tipasa.problem(reply) is None
    assert Tipasa.xpath(reply, "//n:AcceptItemResponse/n:ItemId/n:ItemIdentifierValue/text()") \
        == ["TIP-31234000"]
    temp = item_row(d, "TIP-31234000")
    assert temp["temporary"] == 1 and temp["owning_peer"] == "tipasa"

    reply = step(d, wf.tipasa_check_out("31234000", "P100"), h)
    assert Tipasa.problem(reply) is None
    assert Tipasa.xpath(reply, "//n:CheckOutItemResponse/n:ItemId/n:ItemIdentifierValue/"
                               "text()") == ["31234000"]
    assert loan_of(d, "TIP-31234000")["patron"] == "P100"
    assert loan_of(d, "TIP-31234000")["due_at"] == wf.stored(wf.end_of_day(10))
    # the lender extends to day 15: Tipasa tells us with a RenewItem and DesiredDateDue
    due = wf.local_day(15).isoformat()
    reply = step(d, tipasa_renew("31234000", "P100", f"{due}T23:59:59"), h)
    assert Tipasa.problem(reply) is None
    assert loan_of(d, "TIP-31234000")["due_at"] == wf.stored(wf.end_of_day(15))

    reply = step(d, tipasa_check_in_by_request("TIP-900"), h)
    assert Tipasa.problem(reply) is None
    assert Tipasa.xpath(reply, "//n:CheckInItemResponse/n:UserId/n:UserIdentifierValue/"
                               "text()") == ["P100"]
    assert find_item_row(d, "TIP-31234000") is None
    rs = volumes(d, "tipasa", "borrower", "TIP-900")[0]
    assert rs["state"] == "completed" and rs["item_id"] is None

    reply = step(d, tipasa_lend("LEND-010", "NDOSU", "12345"), h)
    assert Tipasa.problem(reply) is None
    assert Tipasa.xpath(reply, "//n:CheckOutItemResponse/n:UserId/n:UserIdentifierValue/"
                               "text()") == ["NDOSU"]
    assert loan_of(d, "LEND-010")["patron"] == "INST-NDOSU"
    institution = wf.row(d.database, "SELECT * FROM patrons WHERE barcode = 'INST-NDOSU'")
    assert institution["institutional_peer"] == "tipasa"
    assert volumes(d, "tipasa", "lender", "12345")[0]["state"] == "shipped"
    # CheckInRequestedItem: the item that filled ILL request 12345, named by that id
    reply = step(d, tipasa_check_in_by_request("12345"), h)
    assert Tipasa.problem(reply) is None and find_loan_of(d, "LEND-010") is None
    assert volumes(d, "tipasa", "lender", "12345")[0]["state"] == "completed"
    reply = step(d, tipasa_lend("LEND-020", "NDOSU"), h)              # CheckOutItemToInstitution
    assert Tipasa.problem(reply) is None
    reply = step(d, tipasa_ns1("CheckInItem", [wf.item_id("LEND-020", wf.AGENCY, "Barcode")]), h)
    assert Tipasa.problem(reply) is None and find_loan_of(d, "LEND-020") is None


# -- ILLiad --------------------------------------------------------------------------------------


def test_illiad_lending_two_barcodes_and_recheckout(launch) -> None:
    """ILLiad lending: two barcodes checked out under one transaction number (both lent);
    checked out again with a later DesiredDateDue (ILLiad's renewal): the due date moves,
    read from ``<ns1:DateDue>``; a RenewItem that cannot move the date is a Problem; the
    check-ins. ILLiad borrowing: a loan never picked up is checked in (hold ended)."""
    d = launch("illiad")
    tn = "7001"
    for barcode in ("LEND-050", "LEND-051"):
        reply = step(d, wf.illiad_check_out(barcode, "ILLPSEUDO", tn,
                                            wf.local_day(10).isoformat()))
        assert not ILLiad.failed(reply)
        assert ILLiad.date_due(reply) == wf.on_wire(wf.end_of_day(10))
        assert loan_of(d, barcode)["patron"] == "INST-ILLPSEUDO"
    assert [r["item_barcode"] for r in volumes(d, "illiad", "lender", tn)] == [
        "LEND-050", "LEND-051"]

    reply = step(d, wf.illiad_check_out("LEND-050", "ILLPSEUDO", tn,
                                        wf.local_day(20).isoformat()))
    assert not ILLiad.failed(reply)
    assert ILLiad.date_due(reply) == wf.on_wire(wf.end_of_day(20))
    loan = loan_of(d, "LEND-050")
    assert loan["due_at"] == wf.stored(wf.end_of_day(20)) and loan["renewals"] == 1

    reply = step(d, wf.illiad_renew("LEND-051", "ILLPSEUDO", wf.local_day(14).isoformat()))
    assert ILLiad.date_due(reply) == wf.on_wire(wf.end_of_day(14))
    reply = step(d, wf.illiad_renew("LEND-051", "ILLPSEUDO", wf.local_day(12).isoformat()))
    assert ILLiad.failed(reply) and ILLiad.date_due(reply) is None
    assert wf.problem(reply) == "Item Not Renewable"
    assert loan_of(d, "LEND-051")["due_at"] == wf.stored(wf.end_of_day(14))

    for barcode in ("LEND-050", "LEND-051"):
        reply = step(d, wf.illiad_check_in(barcode, "ILLPSEUDO", tn))
        assert not ILLiad.failed(reply) and find_loan_of(d, barcode) is None
    assert [r["state"] for r in volumes(d, "illiad", "lender", tn)] == ["completed"] * 2

    reply = step(d, wf.illiad_accept_item("8001", "P101"))
    assert not ILLiad.failed(reply) and holds_of(d, "8001") == ["active"]
    reply = step(d, wf.illiad_check_in("8001", "P101", "8001"))
    assert not ILLiad.failed(reply) and holds_of(d, "8001") == ["cancelled"]
    rs = volumes(d, "illiad", "borrower", "8001")[0]
    assert rs["state"] == "checked_in" and rs["end_reason"] == "not picked up"


# -- DCB -----------------------------------------------------------------------------------------


def test_dcb_placements_without_and_with_request_ids(launch) -> None:
    """DCB: a supplier RequestItem without a RequestId is accepted and answered with ours;
    one with ``{id}:SUPPLIER``; the borrower AcceptItem; a placement for a virtual patron
    that is not DCB's is a Problem the literal ``<Problem>`` match sees."""
    d = launch("dcb")
    reply = call(d, dcb_request_item("b1002", "LEND-010", "dcb-vpatron-1"))
    assert not DCB.failed(reply)
    ours = DCB.request_id(reply)
    assert ours and ours.startswith("L-")
    rs = wf.row(d.database, "SELECT * FROM rs_requests WHERE our_request_id = ?", ours)
    assert rs["broker_request_id"] is None and rs["item_barcode"] == "LEND-010"
    assert holds_of(d, "LEND-010") == ["active"]

    reply = step(d, dcb_request_item("b1003", "LEND-020", "dcb-vpatron-1", "pr-7"))
    ours = DCB.request_id(reply)
    assert not DCB.failed(reply) and ours is not None and ours.startswith("L-")
    reply = step(d, wf.dcb_accept_item("pr-8", "P100", "DCB-SUP-8"))
    assert not DCB.failed(reply) and DCB.request_id(reply) == "pr-8:BORROWER"
    assert holds_of(d, "DCB-SUP-8") == ["active"]

    before = state(d.database)
    reply = step(d, dcb_request_item("b1003", "LEND-020", "P100", "pr-9"))
    assert DCB.failed(reply) and wf.problem(reply) == "Unknown User"
    assert state(d.database) == before


# -- INN-Reach NCIP 1 ----------------------------------------------------------------------------


def test_innreach_ncip1_lending(launch) -> None:
    """INN-Reach (NCIP 1): ItemRequested places the hold, CheckOutItem ships the item to the
    site's patron (the UserId given back as sent), ItemShipped and ItemCheckedIn
    acknowledged with their own response elements; a second ItemRequested for the same item
    under a new tracking id is a new request."""
    d = launch("innreach")
    reply = step(d, wf.innreach_item_requested("TR-10", "LEND-020"))
    assert InnReach.answered(reply, "ItemRequested")
    assert holds_of(d, "LEND-020") == ["active"]
    reply = step(d, wf.innreach_check_out("LEND-020", "INST-zv010", "TR-10"))
    assert InnReach.answered(reply, "CheckOutItem")
    assert wf.text(reply, "UserIdentifierValue") == "INST-zv010"
    assert loan_of(d, "LEND-020")["patron"] == "INST-zv010"
    assert holds_of(d, "LEND-020") == ["fulfilled"]
    reply = step(d, wf.innreach_item_shipped("TR-10", "LEND-020"))
    assert InnReach.answered(reply, "ItemShipped")
    reply = step(d, wf.innreach_item_checked_in("TR-10", "LEND-020"))
    assert InnReach.answered(reply, "ItemCheckedIn")
    reply = step(d, wf.innreach_item_requested("TR-11", "LEND-030"))
    assert InnReach.answered(reply, "ItemRequested")
    assert [r["broker_request_id"] for r in wf.rows(
        d.database, "SELECT * FROM rs_requests ORDER BY id")] == ["TR-10", "TR-11"]


# -- a peer acts only on what is its own (issue 12.5) -------------------------------------------


def _local_loan(path: Path) -> None:
    """LEND-001 on loan to the local patron P100 (made at the desk, not over NCIP)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("UPDATE items SET status = 'on_loan' WHERE barcode = 'LEND-001'")
        conn.execute(
            "INSERT INTO loans (item_id, patron_id, checked_out_at, due_at) SELECT i.id, p.id,"
            " '2026-01-01T10:00:00+00:00', '2099-01-01T23:59:59+00:00' FROM items i, patrons p"
            " WHERE i.barcode = 'LEND-001' AND p.barcode = 'P100'")
        conn.commit()
    finally:
        conn.close()


def test_a_peer_cannot_touch_what_is_not_its_own(launch) -> None:
    """``tipasa`` tries to check in, renew (also with a past date), re-lend, delete and
    charge against ``reshare``'s borrowed item, the item lent to ``reshare``'s institutional
    patron and a local patron's loan, and to lend to ``reshare``'s institutional patron or a
    local patron, and to cancel ``reshare``'s request: every reply is the very Problem an
    item (request) that does not exist gets, no reply names a patron tipasa did not name,
    and nothing changes. ``reshare`` renewing its own loan with a past date gets a Problem
    that names nobody."""
    d = launch("isolation", _local_loan)
    h = wf.TIPASA_HEADERS
    assert ReShare.ok(call(d, wf.reshare_accept_item("RS-ISO-1", "P101", barcode="RS-ISO-1")))
    assert ReShare.ok(call(d, wf.reshare_check_out("RS-ISO-1", "P101")))
    reply = call(d, wf.reshare_request_item("RS-ISO-2", sysnumber="b1002"))
    hold_id = ReShare.field(reply, "RequestId", "RequestIdentifierValue")
    assert hold_id is not None
    assert ReShare.ok(call(d, wf.reshare_check_out("LEND-010", "INST-EAST", "RS-ISO-2")))
    before = state(d.database)

    past = wf.local_day(-3).isoformat()
    attacks: list[Callable[[str], bytes]] = [
        wf.tipasa_check_in,
        lambda x: tipasa_ns1("CheckInItem", [wf.item_id(x, "TIPASA", "Barcode")]),
        lambda x: tipasa_renew(x, "P101"),
        lambda x: tipasa_renew(x, "P101", past),
        lambda x: wf.tipasa_check_out(x, "P101"),
        lambda x: tipasa_lend(x, "NDOSU"),
        tipasa_delete,
        lambda x: tipasa_fee("NDOSU", item=x),
        lambda x: tipasa_ns1("LookupRequest", [wf.item_id(x, "TIPASA")]),
    ]
    absent = "NOSUCH-9"
    secrets = ("P100", "P101", "INST-EAST", "Reader", "Borrower", "Alice", "Bob")
    for target in ("RS-ISO-1", "LEND-010", "LEND-001"):
        for attack in attacks:
            body = attack(target)
            reply = call(d, body, h)
            assert Tipasa.problem(reply) is not None, (target, reply)
            expected = call(d, attack(absent), h)
            assert reply.replace(target.encode(), absent.encode()) == expected, (target, reply)
            for secret in secrets:
                assert secret.encode() not in reply or secret.encode() in body, (secret, reply)

    # people: reshare's institutional patron and a local patron are nobody tipasa knows
    for patron in ("INST-EAST", "P100"):
        reply = call(d, tipasa_lend("LEND-040", patron), h)
        assert Tipasa.problem(reply) == "Unknown User"
        assert Tipasa.xpath(reply, "//n:ProblemValue/text()") == [patron]
        reply = call(d, tipasa_fee(patron), h)
        expected = call(d, tipasa_fee("NOSUCH-P"), h)
        assert reply.replace(patron.encode(), b"NOSUCH-P") == expected
    # requests: reshare's, by our id and by its own, are unknown to tipasa
    for request in (hold_id, "RS-ISO-2"):
        reply = call(d, tipasa_ns1("CancelRequestItem", [
            wf.user_id("NDOSU", "TIPASA"), wf.request_id(request, "TIPASA"),
            ("RequestType", "Loan")]), h)
        assert Tipasa.problem(reply) == "Unknown Request"
    assert state(d.database) == before

    # the owner itself: a renewal to a past date is refused without naming the borrower
    reply = call(d, wf.reshare_renew("RS-ISO-1", "P101", past).replace(b"P101", b"P10X"))
    assert [p["type"] for p in ReShare.problems(reply)] == ["Item Not Renewable"]
    assert b"P101" not in reply
    assert state(d.database) == before
