# -*- test-case-name: tests.gateway.test_broker_flows -*-
"""Whole broker conversations over real HTTP against a real ``interlend serve`` process.

Each broker family's message sequence is replayed in its own dialect (ReShare ``ns1:`` with a
shared secret, Tipasa in a default namespace with a bearer token, ILLiad's ISO-8859-1
declaration, Relais' FOLIO-bound no-namespace XML with stray text, DCB's appliance profile,
INN-Reach NCIP 1), each against its own seeded database, and after every step the circulation
state is read straight from SQLite (read-only). The exactly-once tests retry every
state-changing message sequentially, concurrently and across a SIGKILL + restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests import workflow_fixtures as wf
from tests import z3950_clients as zc
from tests.daemon import Daemon, start_daemon
from tests.workflow_fixtures import call

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Daemon]]:
    """Start a daemon on a freshly seeded database of its own (killed at module end)."""
    yield from wf.launched_daemons(tmp_path_factory)


def ok(daemon: Daemon, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    reply = call(daemon, body, headers)
    assert wf.problem(reply) is None, reply.decode()
    return reply


def one_audit_row_each(daemon: Daemon, expected: list[tuple[str, str]]) -> None:
    """Exactly the NCIP exchanges sent, in order, one audit row each, with their outcomes
    (the Z39.50 checks' own audit rows left aside)."""
    wf.barrier(daemon)
    found = [(r["operation"], r["outcome"])
             for r in wf.audit_rows(daemon.database, protocol="ncip")]
    assert found == expected


def invisible_over_z3950(daemon: Daemon, local_id: str, barcode: str) -> None:
    """A borrowed (temporary) record and item are invisible to a real yaz-client (one process):
    no search finds the record — its local id (exact and truncated), title words, its ISBN
    (which is b1001's: only b1001 is found, without the borrowed item), author, any — no scan
    lists its words, and no holdings of any record (OPAC and MARC 852) carry its barcode."""
    every = "@attr 1=12 @attr 5=1 b"          # every seeded (permanent) record
    checks = [
        (f"@attr 1=12 {local_id}", 0), (f"@attr 1=12 @attr 5=1 {local_id[:4]}", 0),
        ("@attr 1=4 borrowed", 0), ('@attr 1=4 "ill borrowed book"', 0),
        ("@attr 1=4 book", 1),                  # b1006 "Local book whose barcode collides"
        ("@attr 1=1003 lender", 0), ("@attr 1=1016 borrowed", 0),
        (f"@attr 1=1016 {barcode}", 0), ("@attr 1=1016 pub", 0),
        ("@attr 1=7 9780262011532", 1), ("@attr 1=7 0262011530", 1),
    ]
    commands = [f"find {query}" for query, _ in checks]
    commands += ["scan @attr 1=4 borrowed", "scan @attr 1=1003 lender",
                 f"find {every}", "format opac", "show 1+7", "format usmarc", "show 1+7"]
    found = wf.z3950(daemon, commands)
    if found is None:
        return
    for (query, hits), step in zip(checks, found, strict=False):
        assert step.hits == hits, (query, step.lines)
    title_scan, author_scan, search, opac, marc = found[len(checks):]
    titles = title_scan.find_all(r"^[* ] (.+) \(\d+\)$")
    authors = author_scan.find_all(r"^[* ] (.+) \(\d+\)$")
    assert titles and "borrowed" not in titles and "ill" not in titles, titles
    assert authors and "lender" not in authors and "ann" not in authors, authors
    assert search.hits == 7
    holdings = zc.opac_circulation(opac)
    assert barcode not in holdings and "LEND-001" in holdings and len(holdings) == 30
    assert not any(barcode in line for line in opac.lines + marc.lines)
    assert sum(line.startswith("852 ") for line in marc.lines) == 30


# -- ReShare --------------------------------------------------------------------------------------


def test_reshare_borrower_lifecycle(launch) -> None:
    """ReShare borrower: LookupUser → AcceptItem → (checkout) → CheckInItem → DeleteItem.

    The temporary record/item/hold appear with the peer's preferences (request-id barcode,
    EAST-DESK mapped to EAST, "[ILL]" title prefix), the loan is due at the earlier of the
    lender's DateForReturn and local policy, check-in puts the item in transit, DeleteItem
    removes every artefact and completes the request; one audit row per exchange.
    """
    d = launch("reshare-borrower")
    path = d.database
    reply = ok(d, wf.reshare_lookup_user("P100"))
    assert wf.response_name(reply) == "LookupUserResponse"
    assert reply.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<ns1:NCIPMessage')

    lender_return = wf.local_day(10).isoformat()   # date only: end of that day, local time
    reply = ok(d, wf.reshare_accept_item("EAST-322", "P100", barcode="EAST-322",
                                         date_for_return=lender_return,
                                         isbn="9780262011532"))  # b1001's ISBN, as ISBN-13
    assert wf.response_name(reply) == "AcceptItemResponse"
    assert wf.text(reply, "RequestIdentifierValue") == "EAST-322"
    assert wf.text(reply, "ItemIdentifierValue") == "EAST-322"
    item = wf.row(path, "SELECT * FROM items WHERE barcode = 'EAST-322'")
    assert item["temporary"] == 1 and item["owning_peer"] == "reshare"
    assert item["status"] == "on_hold_shelf" and item["location"] == "EAST"
    record = wf.row(path, "SELECT * FROM records WHERE id = ?", item["record_id"])
    assert record["temporary"] == 1 and record["title"] == "[ILL] Borrowed book"
    assert record["author"] == "Lender, Ann"
    hold = wf.row(path, "SELECT h.*, p.barcode FROM holds h JOIN patrons p ON p.id ="
                        " h.patron_id WHERE h.item_id = ?", item["id"])
    assert hold["barcode"] == "P100" and hold["pickup_location"] == "EAST"
    assert hold["status"] == "active" and hold["pickup_expires"] == wf.stored(wf.end_of_day(7))
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE broker_request_id = 'EAST-322'")
    assert rs["peer"] == "reshare" and rs["role"] == "borrower"
    assert rs["state"] == "awaiting_pickup" and rs["item_barcode"] == "EAST-322"
    assert rs["accepted_at"] and rs["received_at"] and rs["checked_out_at"] is None
    assert rs["due_at"] == wf.stored(wf.end_of_day(10))
    invisible_over_z3950(d, record["local_id"], "EAST-322")

    reply = ok(d, wf.reshare_check_out("EAST-322", "P100"))
    assert wf.text(reply, "DateDue") == wf.on_wire(wf.end_of_day(10))  # lender's date wins
    loan = wf.row(path, "SELECT * FROM loans WHERE item_id = ?", item["id"])
    assert loan["due_at"] == wf.stored(wf.end_of_day(10)) and loan["returned_at"] is None
    assert wf.row(path, "SELECT status FROM holds WHERE id = ?", hold["id"])["status"] == \
        "fulfilled"
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE id = ?", rs["id"])
    assert rs["state"] == "checked_out" and rs["checked_out_at"]
    invisible_over_z3950(d, record["local_id"], "EAST-322")

    reply = ok(d, wf.reshare_check_in("EAST-322"))
    assert wf.response_name(reply) == "CheckInItemResponse"
    assert wf.text(reply, "UserIdentifierValue") == "P100"
    loan = wf.row(path, "SELECT * FROM loans WHERE id = ?", loan["id"])
    assert loan["returned_at"] is not None
    assert wf.row(path, "SELECT status FROM items WHERE id = ?", item["id"])["status"] == \
        "in_transit"
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE id = ?", rs["id"])
    assert rs["state"] == "checked_in" and rs["returned_at"] and rs["checked_in_at"]
    assert rs["completed_at"] is None
    invisible_over_z3950(d, record["local_id"], "EAST-322")

    reply = ok(d, wf.reshare_delete_item("EAST-322"))
    assert wf.response_name(reply) == "DeleteItemResponse"
    assert wf.one(path, "SELECT * FROM items WHERE barcode = 'EAST-322'") is None
    assert wf.one(path, "SELECT * FROM records WHERE id = ?", item["record_id"]) is None
    assert wf.rows(path, "SELECT * FROM holds WHERE item_id = ? OR record_id = ?",
                   item["id"], item["record_id"]) == []
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE id = ?", rs["id"])
    assert rs["state"] == "completed" and rs["completed_at"]

    one_audit_row_each(d, [("LookupUser", "success"), ("AcceptItem", "success"),
                           ("CheckOutItem", "success"), ("CheckInItem", "success"),
                           ("DeleteItem", "success")])
    accept = wf.audit_rows(path, operation="AcceptItem")[0]
    assert accept["peer"] == "reshare" and accept["broker_request_id"] == "EAST-322"
    assert accept["item_barcode"] == "EAST-322" and accept["dialect"]
    assert accept["patron_hash"] and accept["patron_hash"] != "P100"


def test_reshare_lender_lifecycle(launch) -> None:
    """ReShare lender: RequestItem (SYSNUMBER) → CheckOutItem to INST-… → CheckInItem; and a
    CancelRequestItem on another request.

    The institutional patron is created on first use, the hold is placed on an available item
    and fulfilled by the checkout, DesiredDateDue (inside policy) becomes the due date, the
    check-in returns the item to the shelf and completes the request; the cancelled request's
    hold is cancelled and the other request is untouched.
    """
    d = launch("reshare-lender")
    path = d.database
    reply = ok(d, wf.reshare_request_item("EAST-400", sysnumber="b1001"))
    assert wf.response_name(reply) == "RequestItemResponse"
    ours = wf.text(reply, "RequestIdentifierValue")
    assert ours and ours != "EAST-400"
    assert wf.text(reply, "ItemIdentifierValue") == "LEND-001"
    assert wf.text(reply, "RequestType") == "Loan"
    patron = wf.row(path, "SELECT * FROM patrons WHERE barcode = 'INST-EAST'")
    assert patron["institutional_peer"] == "reshare" and patron["status"] == "active"
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE broker_request_id = 'EAST-400'")
    assert rs["role"] == "lender" and rs["our_request_id"] == ours
    # an available item was found: the request is filled at once (requested and accepted)
    assert rs["state"] == "filled" and rs["requested_at"] and rs["accepted_at"]
    assert rs["patron_id"] == patron["id"] and rs["item_barcode"] == "LEND-001"
    hold = wf.row(path, "SELECT h.*, i.barcode FROM holds h JOIN items i ON i.id = h.item_id"
                        " WHERE h.patron_id = ?", patron["id"])
    assert hold["barcode"] == "LEND-001" and hold["status"] == "active"
    held = wf.z3950_items(d, "b1001")   # a real yaz-client: OPAC holdings of the record
    if held is not None:
        assert held["LEND-001"]["availableNow"] == "0" and held["LEND-001"]["onHold"] == "1"
        assert held["LEND-002"]["availableNow"] == "1"

    desired = wf.local_day(14).isoformat()
    reply = ok(d, wf.reshare_check_out("LEND-001", "INST-EAST", "EAST-400", desired))
    assert wf.text(reply, "DateDue") == wf.on_wire(wf.end_of_day(14))
    loan = wf.row(path, "SELECT l.* FROM loans l JOIN items i ON i.id = l.item_id"
                        " WHERE i.barcode = 'LEND-001'")
    assert loan["patron_id"] == patron["id"] and loan["due_at"] == wf.stored(wf.end_of_day(14))
    assert wf.row(path, "SELECT status FROM holds WHERE id = ?", hold["id"])["status"] == \
        "fulfilled"
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE id = ?", rs["id"])
    assert rs["state"] == "shipped" and rs["shipped_at"]
    assert wf.row(path, "SELECT count(*) AS n FROM rs_requests")["n"] == 1
    lent = wf.z3950_items(d, "b1001")
    if lent is not None:
        assert lent["LEND-001"]["availableNow"] == "0"
        assert lent["LEND-001"]["availablityDate"] == desired     # the due date
        assert lent["LEND-002"]["availableNow"] == "1"
        assert "availablityDate" not in lent["LEND-002"]

    reply = ok(d, wf.reshare_check_in("LEND-001"))
    assert wf.row(path, "SELECT status FROM items WHERE barcode = 'LEND-001'")["status"] == \
        "available"
    assert wf.row(path, "SELECT returned_at FROM loans WHERE id = ?", loan["id"])["returned_at"]
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE id = ?", rs["id"])
    assert rs["state"] == "completed" and rs["checked_in_at"] and rs["completed_at"]
    back = wf.z3950_items(d, "b1001")
    if back is not None:
        assert back["LEND-001"]["availableNow"] == "1" and back["LEND-001"]["onHold"] == "0"
        assert "availablityDate" not in back["LEND-001"]

    other = ok(d, wf.reshare_request_item("EAST-401", sysnumber="b1003"))
    other_id = wf.text(other, "RequestIdentifierValue")
    reply = ok(d, wf.reshare_cancel_request(other_id))
    assert wf.response_name(reply) == "CancelRequestItemResponse"
    assert wf.text(reply, "RequestIdentifierValue") == other_id
    cancelled = wf.row(path, "SELECT * FROM rs_requests WHERE our_request_id = ?", other_id)
    assert cancelled["state"] == "cancelled" and cancelled["cancelled_at"]
    holds = wf.rows(path, "SELECT h.status, i.barcode FROM holds h JOIN items i"
                          " ON i.id = h.item_id ORDER BY h.id")
    assert holds == [{"status": "fulfilled", "barcode": "LEND-001"},
                     {"status": "cancelled", "barcode": "LEND-020"}]
    assert wf.row(path, "SELECT count(*) AS n FROM patrons WHERE barcode LIKE 'INST-%'")["n"] == 1
    one_audit_row_each(d, [("RequestItem", "success"), ("CheckOutItem", "success"),
                           ("CheckInItem", "success"), ("RequestItem", "success"),
                           ("CancelRequestItem", "success")])
    assert [r["our_request_id"] for r in wf.audit_rows(path, operation="RequestItem")] == \
        [ours, other_id]


# -- Tipasa / WSILL --------------------------------------------------------------------------------


def test_tipasa_borrower_lifecycle_with_delete_on_checkin(launch) -> None:
    """Tipasa: AcceptItem (prefixed barcode policy) → CheckOutItem → CheckInItem, no DeleteItem.

    Answers come in the peer's default-namespace style; the barcode is TIP-<lender barcode>;
    the pickup name "East Branch" is mapped to EAST; the local loan period (shorter than the
    lender's date) sets the due date; delete_on_checkin removes item, record and hold at
    check-in and completes the request.
    """
    d = launch("tipasa")
    path = d.database
    headers = wf.TIPASA_HEADERS
    reply = ok(d, wf.tipasa_accept_item("TIP-9001", "P100", "NDOSU-555"), headers)
    assert b"<AcceptItemResponse>" in reply and b"ns1:" not in reply
    assert wf.text(reply, "ItemIdentifierValue") == "TIP-NDOSU-555"
    item = wf.row(path, "SELECT * FROM items WHERE barcode = 'TIP-NDOSU-555'")
    assert item["temporary"] == 1 and item["owning_peer"] == "tipasa"
    assert item["location"] == "EAST"
    record = wf.row(path, "SELECT * FROM records WHERE id = ?", item["record_id"])
    assert record["temporary"] == 1 and record["title"] == "[TIPASA] Tipasa book"
    hold = wf.row(path, "SELECT * FROM holds WHERE item_id = ?", item["id"])
    assert hold["pickup_location"] == "EAST" and hold["status"] == "active"
    assert hold["pickup_expires"] == "2040-01-10T23:59:00+00:00"
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE broker_request_id = 'TIP-9001'")
    assert rs["due_at"] == "2040-01-31T23:59:00+00:00" and rs["state"] == "awaiting_pickup"

    reply = ok(d, wf.tipasa_check_out("TIP-NDOSU-555", "P100"), headers)
    assert wf.text(reply, "DateDue") == wf.on_wire(wf.end_of_day(wf.BORROWED_DAYS))
    loan = wf.row(path, "SELECT * FROM loans WHERE item_id = ?", item["id"])
    assert loan["due_at"] == wf.stored(wf.end_of_day(wf.BORROWED_DAYS))

    reply = ok(d, wf.tipasa_check_in("TIP-NDOSU-555"), headers)
    assert wf.response_name(reply) == "CheckInItemResponse"
    assert wf.one(path, "SELECT * FROM items WHERE id = ?", item["id"]) is None
    assert wf.one(path, "SELECT * FROM records WHERE id = ?", item["record_id"]) is None
    assert wf.one(path, "SELECT * FROM holds WHERE id = ?", hold["id"]) is None
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE id = ?", rs["id"])
    assert rs["state"] == "completed" and rs["checked_in_at"] and rs["completed_at"]
    one_audit_row_each(d, [("AcceptItem", "success"), ("CheckOutItem", "success"),
                           ("CheckInItem", "success")])
    assert {r["peer"] for r in wf.audit_rows(path)} == {"tipasa"}


# -- ILLiad ---------------------------------------------------------------------------------------


def test_illiad_lending_and_borrowing(launch) -> None:
    """ILLiad: lending CheckOutItem and RenewItem with date-only DesiredDateDue, CheckInItem
    with the non-standard UserId + RequestId; borrowing AcceptItem with a naive DateForReturn.

    Date-only dates mean the end of that day in the library's time zone and are honoured when
    inside local policy; the ISO-8859-1 declaration over UTF-8 bytes is read correctly.
    """
    d = launch("illiad")
    path = d.database
    reply = ok(d, wf.illiad_check_out("LEND-030", "ILLPSEUDO", "TN-1001",
                                      wf.local_day(10).isoformat()))
    assert wf.text(reply, "DateDue") == wf.on_wire(wf.end_of_day(10))
    patron = wf.row(path, "SELECT * FROM patrons WHERE institutional_peer = 'illiad'")
    loan = wf.row(path, "SELECT * FROM loans WHERE patron_id = ?", patron["id"])
    assert loan["due_at"] == wf.stored(wf.end_of_day(10))
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE broker_request_id = 'TN-1001'")
    assert rs["role"] == "lender" and rs["state"] == "shipped" and rs["shipped_at"]

    reply = ok(d, wf.illiad_renew("LEND-030", "ILLPSEUDO", wf.local_day(20).isoformat()))
    assert wf.response_name(reply) == "RenewItemResponse"
    assert wf.text(reply, "DateDue") == wf.on_wire(wf.end_of_day(20))
    loan = wf.row(path, "SELECT * FROM loans WHERE id = ?", loan["id"])
    assert loan["due_at"] == wf.stored(wf.end_of_day(20)) and loan["renewals"] == 1

    reply = ok(d, wf.illiad_check_in("LEND-030", "ILLPSEUDO", "TN-1001"))
    assert wf.row(path, "SELECT returned_at FROM loans WHERE id = ?", loan["id"])["returned_at"]
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE id = ?", rs["id"])
    assert rs["state"] == "completed"

    title = "Ærø – ILLiad"
    reply = ok(d, wf.illiad_accept_item("TN-2002", "P101", title=title))
    assert wf.text(reply, "ItemIdentifierValue") == "TN-2002"
    item = wf.row(path, "SELECT * FROM items WHERE barcode = 'TN-2002'")
    record = wf.row(path, "SELECT * FROM records WHERE id = ?", item["record_id"])
    assert record["title"] == f"[ILL] {title}"
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE broker_request_id = 'TN-2002'")
    # the naive DateForReturn is local time
    assert rs["due_at"] == wf.stored(datetime(2040, 3, 1, 23, 59, tzinfo=ZoneInfo(wf.TIMEZONE)))
    one_audit_row_each(d, [("CheckOutItem", "success"), ("RenewItem", "success"),
                           ("CheckInItem", "success"), ("AcceptItem", "success")])


# -- Relais D2D (FOLIO-bound) ----------------------------------------------------------------------


def test_relais_folio_shapes(launch) -> None:
    """Relais D2D in FOLIO's no-namespace shape, sloppy prolog and stray text after the root
    tag: AcceptItem (item barcode = request id, DELIVERY mapped to EAST, zero fee ignored),
    local checkout, CheckInItem; replies in the peer's default-namespace style.
    """
    d = launch("relais")
    path = d.database
    reply = ok(d, wf.relais_accept_item("LEH-20191003227", "P100"))
    assert wf.text(reply, "ItemIdentifierValue") == "LEH-20191003227"
    assert b'<NCIPMessage xmlns="http://www.niso.org/2008/ncip"' in reply
    item = wf.row(path, "SELECT * FROM items WHERE barcode = 'LEH-20191003227'")
    assert item["temporary"] == 1 and item["owning_peer"] == "relais"
    hold = wf.row(path, "SELECT * FROM holds WHERE item_id = ?", item["id"])
    assert hold["pickup_location"] == "EAST"
    assert wf.rows(path, "SELECT * FROM fees") == []

    ok(d, wf.reshare_check_out("LEH-20191003227", "P100").replace(
        b"RESHARE", b"Relais").replace(wf.RESHARE_SECRET.encode(), b"x"))
    reply = ok(d, wf.relais_check_in("LEH-20191003227"))
    assert wf.text(reply, "UserIdentifierValue") == "P100"
    assert wf.row(path, "SELECT status FROM items WHERE id = ?", item["id"])["status"] == \
        "in_transit"
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE broker_request_id = 'LEH-20191003227'")
    assert rs["state"] == "checked_in"
    one_audit_row_each(d, [("AcceptItem", "success"), ("CheckOutItem", "success"),
                           ("CheckInItem", "success")])


# -- DCB appliance --------------------------------------------------------------------------------


def test_dcb_supplier_and_borrower_placements(launch) -> None:
    """DCB (ORS appliance profile): RequestItem ``{id}:SUPPLIER`` places a hold on the named
    item for DCB's virtual patron; AcceptItem ``{id}:BORROWER`` "Accept For Loan" creates the
    temporary item under the lender's barcode (suffixed with the peer code when it collides
    with a live local item) and holds it for our patron.
    """
    d = launch("dcb")
    path = d.database
    reply = ok(d, wf.dcb_request_item("pr-1", "b1002", "LEND-010"))
    assert wf.text(reply, "ItemIdentifierValue") == "LEND-010"
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE broker_request_id = 'pr-1:SUPPLIER'")
    assert rs["role"] == "lender" and rs["peer"] == "dcb" and rs["item_barcode"] == "LEND-010"
    hold = wf.row(path, "SELECT h.*, i.barcode FROM holds h JOIN items i ON i.id = h.item_id")
    assert hold["barcode"] == "LEND-010" and hold["patron_id"] == rs["patron_id"]

    reply = ok(d, wf.dcb_accept_item("pr-2", "P100", "DCB-SUP-77"))
    assert wf.text(reply, "RequestIdentifierValue") == "pr-2:BORROWER"
    assert wf.text(reply, "ItemIdentifierValue") == "DCB-SUP-77"
    item = wf.row(path, "SELECT * FROM items WHERE barcode = 'DCB-SUP-77'")
    assert item["temporary"] == 1 and item["owning_peer"] == "dcb"
    hold = wf.row(path, "SELECT h.*, p.barcode FROM holds h JOIN patrons p ON p.id ="
                        " h.patron_id WHERE h.item_id = ?", item["id"])
    assert hold["barcode"] == "P100" and hold["status"] == "active"
    assert hold["pickup_location"] == "MAIN"

    reply = ok(d, wf.dcb_accept_item("pr-3", "P101", "39000111"))
    assert wf.text(reply, "ItemIdentifierValue") == "39000111-DCB"
    real = wf.row(path, "SELECT * FROM items WHERE barcode = '39000111'")
    assert real["temporary"] == 0 and real["status"] == "available"
    temp = wf.row(path, "SELECT * FROM items WHERE barcode = '39000111-DCB'")
    assert temp["temporary"] == 1
    one_audit_row_each(d, [("RequestItem", "success"), ("AcceptItem", "success"),
                           ("AcceptItem", "success")])


# -- NCIP 1 (INN-Reach DCB box) -------------------------------------------------------------------


def test_innreach_ncip1_notifications_and_circulation(launch) -> None:
    """An NCIP 1 sender: ItemRequested (a hold for the borrowing site's patron) / CheckOutItem
    (fulfils it) / ItemShipped / ItemCheckedIn for a lender request, ItemRequested +
    ItemRequestCancelled (its hold cancelled) for another, and AcceptItem for a borrowed one;
    replies are NCIP 1 message-specific responses and each step is stamped on the request.
    """
    d = launch("innreach")
    path = d.database
    reply = ok(d, wf.innreach_item_requested("TR-1", "LEND-020"))
    assert wf.response_name(reply) == "ItemRequestedResponse"
    assert b"xmlns" not in reply.split(b"?>", 1)[1]
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE broker_request_id = 'TR-1'")
    assert rs["peer"] == "innreach" and rs["role"] == "lender" and rs["state"] == "requested"
    assert rs["item_barcode"] == "LEND-020"
    patron = wf.row(path, "SELECT * FROM patrons WHERE id = ?", rs["patron_id"])
    assert patron["barcode"] == "INST-zv010" and patron["institutional_peer"] == "innreach"
    hold = wf.row(path, "SELECT h.*, i.barcode FROM holds h JOIN items i ON i.id = h.item_id"
                        " WHERE h.patron_id = ?", patron["id"])
    assert hold["barcode"] == "LEND-020" and hold["status"] == "active"
    assert hold["pickup_location"] == "MAIN"

    reply = ok(d, wf.innreach_check_out("LEND-020", "INST-zv010", "TR-1"))
    assert wf.response_name(reply) == "CheckOutItemResponse"
    loan = wf.row(path, "SELECT l.* FROM loans l JOIN items i ON i.id = l.item_id"
                        " WHERE i.barcode = 'LEND-020'")
    assert loan["patron_id"] == patron["id"]
    assert loan["due_at"] == wf.stored(wf.end_of_day(wf.LOAN_DAYS))
    assert wf.row(path, "SELECT status FROM holds WHERE id = ?", hold["id"])["status"] == \
        "fulfilled"

    ok(d, wf.innreach_item_shipped("TR-1", "LEND-020"))
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE id = ?", rs["id"])
    assert rs["state"] == "shipped" and rs["shipped_at"]
    reply = ok(d, wf.innreach_item_checked_in("TR-1", "LEND-020"))
    assert wf.response_name(reply) == "ItemCheckedInResponse"
    rs = wf.row(path, "SELECT * FROM rs_requests WHERE id = ?", rs["id"])
    assert rs["state"] == "checked_in" and rs["checked_in_at"]
    assert wf.row(path, "SELECT count(*) AS n FROM rs_requests")["n"] == 1

    ok(d, wf.innreach_item_requested("TR-3", "LEND-030"))
    reply = ok(d, wf.innreach_item_request_cancelled("TR-3", "LEND-030"))
    assert wf.response_name(reply) == "ItemRequestCancelledResponse"
    cancelled = wf.row(path, "SELECT * FROM rs_requests WHERE broker_request_id = 'TR-3'")
    assert cancelled["state"] == "cancelled" and cancelled["cancelled_at"]
    assert [h["status"] for h in wf.rows(path, "SELECT status FROM holds WHERE patron_id = ?"
                                               " ORDER BY id", patron["id"])] == \
        ["fulfilled", "cancelled"]

    reply = ok(d, wf.innreach_accept_item("TR-2", "P100", "IRB-1"))
    assert wf.response_name(reply) == "AcceptItemResponse"
    assert wf.text(reply, "ItemIdentifierValue") == "IR-IRB-1"
    item = wf.row(path, "SELECT * FROM items WHERE barcode = 'IR-IRB-1'")
    assert item["temporary"] == 1 and item["owning_peer"] == "innreach"
    assert wf.row(path, "SELECT * FROM holds WHERE item_id = ?", item["id"])["status"] == "active"
    one_audit_row_each(d, [("ItemRequested", "success"), ("CheckOutItem", "success"),
                           ("ItemShipped", "success"), ("ItemCheckedIn", "success"),
                           ("ItemRequested", "success"), ("ItemRequestCancelled", "success"),
                           ("AcceptItem", "success")])
    assert {r["dialect"] for r in wf.audit_rows(path)} == {"ncip1"}


# -- exactly once ---------------------------------------------------------------------------------


def concurrently(daemon: Daemon, body: bytes, n: int = 10,
                 headers: dict[str, str] | None = None) -> list[bytes]:
    """Send ``body`` from ``n`` threads released together; every reply, in thread order."""
    gate = threading.Barrier(n)

    def send(_: int) -> bytes:
        gate.wait()
        return call(daemon, body, headers)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(send, range(n)))


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def retried_sequentially(daemon: Daemon, body: bytes,
                         headers: dict[str, str] | None = None) -> tuple[bytes, dict[str, int]]:
    """Send, then resend as after a client timeout: same bytes, nothing more changed."""
    before = wf.counts(daemon.database)
    first = ok(daemon, body, headers)
    after = wf.counts(daemon.database)
    assert call(daemon, body, headers) == first
    assert wf.counts(daemon.database) == after
    return first, delta(before, after)


def retried_concurrently(daemon: Daemon, body: bytes,
                         headers: dict[str, str] | None = None) -> tuple[bytes, dict[str, int]]:
    """Ten identical requests at once: one reply (byte-identical), one change."""
    before = wf.counts(daemon.database)
    replies = concurrently(daemon, body, headers=headers)
    assert len(set(replies)) == 1, replies
    assert wf.problem(replies[0]) is None, replies[0]
    return replies[0], delta(before, wf.counts(daemon.database))


# Each keyed state-changing message, built with a suffix so that each retry mode gets fresh ids.
# (name, build(suffix) -> body, prepare(daemon, suffix) -> None, expected row deltas)
def _prep_none(d: Daemon, sfx: str) -> None:
    pass


def _prep_requested(d: Daemon, sfx: str) -> None:
    reply = ok(d, wf.reshare_request_item(f"RQ-{sfx}", sysnumber="b1007"))
    _barcodes[sfx] = wf.the_text(reply, "ItemIdentifierValue")


KEYED = [
    ("AcceptItem", lambda s: wf.reshare_accept_item(f"AC-{s}", "P100", barcode=f"AC-{s}"),
     _prep_none, {"records": 1, "items": 1, "holds": 1, "rs_requests": 1, "idempotency": 1}),
    ("RequestItem", lambda s: wf.reshare_request_item(f"RI-{s}", sysnumber="b1007"),
     _prep_none, {"holds": 1, "rs_requests": 1, "idempotency": 1}),
    ("CheckOutItem", lambda s: wf.reshare_check_out(_barcode_of(s), "INST-EAST", f"RQ-{s}",
                                                   wf.local_day(9).isoformat()),
     _prep_requested, {"loans": 1, "idempotency": 1}),
    ("CancelRequestItem", lambda s: wf.reshare_cancel_request(f"RQ-{s}"),
     _prep_requested, {"idempotency": 1}),
    ("CreateUserFiscalTransaction", lambda s: wf.reshare_fee("P100", "1250", f"FEE-{s}"),
     _prep_none, {"fees": 1, "idempotency": 1}),
    ("ItemRequested", lambda s: wf.innreach_item_requested(f"TRK-{s}", "LEND-052"),
     _prep_none, {"holds": 1, "rs_requests": 1, "idempotency": 1}),
    ("CheckInItem", lambda s: wf.illiad_check_in(_barcode_of(s), "ILLPSEUDO", f"CI-{s}"),
     lambda d, s: _prep_lent(d, s, "CI"), {"idempotency": 1}),
    ("ItemShipped", lambda s: wf.innreach_item_shipped(f"SH-{s}", _barcode_of(s)),
     lambda d, s: _prep_lent(d, s, "SH"), {"idempotency": 1}),
]

_free = iter(f"LEND-{n:03d}" for n in range(61, 70))


def _prep_lent(d: Daemon, sfx: str, kind: str) -> None:
    """A lender request with its item: ILLiad's checkout (CI) or INN-Reach's ItemRequested."""
    barcode = _barcodes[sfx] = next(_free)
    if kind == "CI":
        ok(d, wf.illiad_check_out(barcode, "ILLPSEUDO", f"CI-{sfx}", None))
    else:
        ok(d, wf.innreach_item_requested(f"SH-{sfx}", barcode))

_barcodes: dict[str, str] = {}


def _barcode_of(sfx: str) -> str:
    return _barcodes[sfx]


@pytest.fixture(scope="module")
def retries(launch) -> Daemon:
    """A daemon whose institutional patrons already exist (created on first use elsewhere)."""
    d = launch("retries")
    ok(d, wf.reshare_request_item("WARM-1", sysnumber="b1003"))
    ok(d, wf.innreach_item_requested("WARM-TRK", "LEND-031"))
    return d


@pytest.mark.parametrize("name,build,prepare,expected", KEYED, ids=[k[0] for k in KEYED])
def test_keyed_message_retried_sequentially_and_concurrently(retries, name, build, prepare,
                                                             expected) -> None:
    """Each keyed state-changing message, resent after a (simulated) timeout and sent ten
    times at once: byte-identical replies, its rows created exactly once, one audit row per
    exchange (the replays audited as such, not re-executed).
    """
    d = retries
    for mode, sfx in (("sequential", f"{name}-s"), ("concurrent", f"{name}-c")):
        prepare(d, sfx)
        body = build(sfx)
        if mode == "sequential":
            reply, changed = retried_sequentially(d, body)
            exchanges = 2
        else:
            reply, changed = retried_concurrently(d, body)
            exchanges = 10
        assert changed == expected, (mode, changed)
        wf.barrier(d)
        operations = [r["operation"] for r in wf.audit_rows(d.database)
                      if r["request_body"] and sfx in r["request_body"]
                      and r["operation"] == name]
        assert len(operations) == exchanges, (mode, operations)


def test_keyless_messages_are_idempotent_by_state(retries) -> None:
    """Messages without a RequestId are idempotent by the item they name: a repeated
    CheckOutItem to the same patron returns the same loan; a RenewItem that cannot move the
    date is a Problem, repeated alike; a repeated CheckInItem (borrowed item, our item, or a
    temporary item deleted on check-in), a repeated CancelRequestItem by ItemId and a
    repeated DeleteItem get the same bytes without a second change, sequentially or
    concurrently.
    """
    d = retries
    path = d.database
    ok(d, wf.reshare_accept_item("KL-1", "P101", barcode="KL-1"))
    reply, changed = retried_sequentially(d, wf.reshare_check_out("KL-1", "P101"))
    assert changed == {"loans": 1}
    reply2, changed = retried_concurrently(d, wf.reshare_check_out("KL-1", "P101"))
    assert reply2 == reply and changed == {}

    # Just lent for a full borrowed-loan period: a renewal cannot move the date.
    before = wf.counts(path)
    refusals = [call(d, wf.reshare_renew("KL-1", "P101")) for _ in range(2)]
    assert refusals[0] == refusals[1] and wf.problem(refusals[0]) == "Item Not Renewable"
    assert wf.counts(path) == before
    assert wf.row(path, "SELECT renewals FROM loans WHERE returned_at IS NULL AND item_id ="
                        " (SELECT id FROM items WHERE barcode = 'KL-1')")["renewals"] == 0

    replies = concurrently(d, wf.reshare_check_in("KL-1"))
    assert len(set(replies)) == 1 and wf.problem(replies[0]) is None
    assert wf.text(replies[0], "UserIdentifierValue") == "P101"
    assert call(d, wf.reshare_check_in("KL-1")) == replies[0]
    loans = wf.rows(path, "SELECT * FROM loans WHERE item_id = (SELECT id FROM items"
                          " WHERE barcode = 'KL-1')")
    assert len(loans) == 1 and loans[0]["returned_at"]

    # lender side: the check-in of our item, and a cancel by ItemId, retried
    ok(d, wf.reshare_request_item("KL-L1", barcode="LEND-065", scope="Item"))
    ok(d, wf.reshare_check_out("LEND-065", "INST-EAST", "KL-L1"))
    reply, changed = retried_sequentially(d, wf.reshare_check_in("LEND-065"))
    assert wf.text(reply, "UserIdentifierValue") == "INST-EAST"
    assert changed == {"idempotency": 1}                     # its reply kept, by the item
    ok(d, wf.reshare_request_item("KL-L2", barcode="LEND-066", scope="Item"))
    reply, changed = retried_sequentially(d, wf.reshare_cancel_request(barcode="LEND-066"))
    assert wf.text(reply, "ItemIdentifierValue") == "LEND-066" and changed == {}
    ok(d, wf.reshare_request_item("KL-L3", barcode="LEND-067", scope="Item"))
    reply, changed = retried_concurrently(d, wf.reshare_cancel_request(barcode="LEND-067"))
    assert wf.row(path, "SELECT state FROM rs_requests WHERE broker_request_id = 'KL-L3'")[
        "state"] == "cancelled"

    # Tipasa's check-in deletes the item (delete_on_checkin): its retries are still answered
    ok(d, wf.tipasa_accept_item("KL-T1", "P101", "KLT1"), wf.TIPASA_HEADERS)
    ok(d, wf.tipasa_check_out("TIP-KLT1", "P101"), wf.TIPASA_HEADERS)
    reply, changed = retried_sequentially(d, wf.tipasa_check_in("TIP-KLT1"), wf.TIPASA_HEADERS)
    assert changed["items"] == -1 and wf.text(reply, "UserIdentifierValue") == "P101"
    assert concurrently(d, wf.tipasa_check_in("TIP-KLT1"), headers=wf.TIPASA_HEADERS) == \
        [reply] * 10

    replies = concurrently(d, wf.reshare_delete_item("KL-1"))
    assert len(set(replies)) == 1 and wf.problem(replies[0]) is None
    assert wf.one(path, "SELECT * FROM items WHERE barcode = 'KL-1'") is None
    before = wf.counts(path)
    assert call(d, wf.reshare_delete_item("KL-1")) == replies[0]
    assert wf.counts(path) == before


def test_exactly_once_across_sigkill_and_restart(tmp_path: Path) -> None:
    """Replies are durable before they leave: after the replies the daemon is killed with
    SIGKILL and restarted on the same database; every resent request (AcceptItem, RequestItem,
    CheckOutItem, CreateUserFiscalTransaction, ItemRequested, DCB AcceptItem, CancelRequestItem
    by our and by the broker's id, ILLiad CheckOutItem/CheckInItem, and Problems) gets the same
    bytes and nothing is duplicated.
    """
    wf.seed_database(tmp_path / "interlend.sqlite3")
    daemon = start_daemon(tmp_path, wf.CONFIG)
    try:
        steps = [
            wf.reshare_accept_item("RST-1", "P100", barcode="RST-1"),
            wf.reshare_request_item("RST-2", sysnumber="b1005"),
            wf.reshare_check_out("LEND-040", "INST-EAST", "RST-2"),
            wf.reshare_fee("P100", "500", "RST-FEE"),
            wf.innreach_item_requested("RST-TRK", "LEND-053"),
            wf.dcb_accept_item("rst-4", "P101", "DCB-RST-4"),
            wf.reshare_cancel_request("L-2"),                       # RST-2's request: shipped
            wf.reshare_request_item("RST-6", sysnumber="b1003"),
            wf.reshare_cancel_request("RST-6"),                     # by the broker's id
            wf.illiad_check_out("LEND-030", "ILLPSEUDO", "RST-7", None),
            wf.illiad_check_in("LEND-030", "ILLPSEUDO", "RST-7"),
            wf.illiad_renew("LEND-030", "ILLPSEUDO", wf.local_day(3).isoformat()),
        ]
        first = [call(daemon, body) for body in steps]
        assert [wf.problem(r) for r in first] == [None] * 6 + [
            "Request Already Processed", None, None, None, None, "Unknown Item"]
        before = wf.counts(daemon.database)
        daemon.kill()                                        # SIGKILL right after the replies
        daemon = start_daemon(tmp_path, wf.CONFIG, database=daemon.database)
        assert [call(daemon, body) for body in steps] == first
        assert wf.counts(daemon.database) == before
        # and once more, killed straight after a single reply
        body = wf.reshare_accept_item("RST-8", "P101", barcode="RST-8")
        reply = ok(daemon, body)
        before = wf.counts(daemon.database)
        daemon.kill()
        daemon = start_daemon(tmp_path, wf.CONFIG, database=daemon.database)
        assert call(daemon, body) == reply
        assert wf.counts(daemon.database) == before
        # a request first seen after the restart is handled normally
        ok(daemon, wf.reshare_request_item("RST-5", sysnumber="b1004"))
        assert wf.row(daemon.database, "SELECT count(*) AS n FROM rs_requests")["n"] == 8
    finally:
        daemon.kill()


def test_concurrent_identical_requests_that_fail_change_nothing(retries) -> None:
    """Ten identical AcceptItems for a blocked patron at once: ten identical User Blocked
    Problems, nothing created, nothing remembered (a later retry, once the patron is fine,
    would be processed), and ten audit rows with that outcome."""
    d = retries
    before = wf.counts(d.database)
    body = wf.reshare_accept_item("FAIL-1", "P200", barcode="FAIL-1")
    replies = concurrently(d, body)
    assert len(set(replies)) == 1 and wf.problem(replies[0]) == "User Blocked"
    assert wf.counts(d.database) == before
    wf.barrier(d)
    rows = wf.audit_rows(d.database, broker_request_id="FAIL-1")
    assert [(r["operation"], r["outcome"]) for r in rows] == [("AcceptItem", "User Blocked")] * 10
