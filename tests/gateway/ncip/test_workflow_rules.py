# -*- test-case-name: tests.gateway.ncip.test_workflow_rules -*-
"""The resource-sharing workflows' edge cases, one NCIP exchange at a time.

Run in process (:mod:`tests.gateway.ncip.harness`: the NCIP service, its workflows on the
embedded circulation system, the gateway's books) on a seeded temporary database, one for the
borrower side and one for the lender side; after each exchange the circulation state is read
from SQLite. Borrower side: barcode collisions, patron problems, missing data, renewal limits,
check-in of items not on loan, DeleteItem refusals (real items, other peers' items), CreateItem,
fees, the Circulate action. Lender side:
RequestItem by item, ISBN-10/13 and OCLC number, institutional patrons, DesiredDateDue,
cancellation and its Problems. Temporary records never enter the catalogue as real ones.
The same exchanges through a daemon over HTTP are in :mod:`tests.gateway.test_broker_flows`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import workflow_fixtures as wf
from tests.gateway.ncip.harness import NcipHarness


@pytest.fixture(scope="module")
def borrower(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NcipHarness]:
    d = NcipHarness(tmp_path_factory.mktemp("borrower"))
    yield d
    d.close()


@pytest.fixture(scope="module")
def lender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NcipHarness]:
    d = NcipHarness(tmp_path_factory.mktemp("lender"))
    yield d
    d.close()


def call(d: NcipHarness, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    status, reply = d.post(body, headers=headers)
    assert status == 200, reply
    return reply


def ok(d: NcipHarness, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    reply = call(d, body, headers)
    assert wf.problem(reply) is None, reply.decode()
    return reply


def refused(d: NcipHarness, body: bytes, expected: str,
            headers: dict[str, str] | None = None) -> bytes:
    """The request gets Problem ``expected`` and changes nothing in the circulation tables."""
    before = wf.counts(d.database)
    reply = call(d, body, headers)
    assert wf.problem(reply) == expected, reply.decode()
    assert wf.counts(d.database) == before
    return reply


ITEM_BY_BARCODE = "SELECT * FROM items WHERE barcode = ?"
OPEN_LOAN_BY_BARCODE = ("SELECT l.* FROM loans l JOIN items i ON i.id = l.item_id"
                        " WHERE i.barcode = ? AND l.returned_at IS NULL")


def item(d: NcipHarness, barcode: str) -> dict[str, Any]:
    """The item with ``barcode``, which must exist."""
    return wf.row(d.database, ITEM_BY_BARCODE, barcode)


def find_item(d: NcipHarness, barcode: str) -> dict[str, Any] | None:
    """The item with ``barcode``, or None."""
    return wf.one(d.database, ITEM_BY_BARCODE, barcode)


def open_loan(d: NcipHarness, barcode: str) -> dict[str, Any]:
    """The open loan of the item with ``barcode``, which must exist."""
    return wf.row(d.database, OPEN_LOAN_BY_BARCODE, barcode)


def find_open_loan(d: NcipHarness, barcode: str) -> dict[str, Any] | None:
    """The open loan of the item with ``barcode``, or None."""
    return wf.one(d.database, OPEN_LOAN_BY_BARCODE, barcode)


# -- borrower side ------------------------------------------------------------------------------


def test_barcode_collisions_are_resolved_by_policy(borrower) -> None:
    """A temporary barcode that collides with a live item (ours, or another peer's temporary
    one) is made unique per the peer's policy and returned in AcceptItemResponse/ItemId; it
    never fails and never touches the existing item.
    """
    d = borrower
    reply = ok(d, wf.reshare_accept_item("COLLIDE-1", "P100"))          # request-id policy
    assert wf.text(reply, "ItemIdentifierValue") == "COLLIDE-1-RS"
    assert item(d, "COLLIDE-1")["temporary"] == 0
    assert item(d, "COLLIDE-1")["status"] == "available"
    temp = item(d, "COLLIDE-1-RS")
    assert temp["temporary"] == 1 and temp["owning_peer"] == "reshare"
    rs = wf.row(d.database, "SELECT * FROM rs_requests WHERE broker_request_id = 'COLLIDE-1'")
    assert rs["item_barcode"] == "COLLIDE-1-RS"

    reply = ok(d, wf.relais_accept_item("COLLIDE-1", "P101"))           # same id, other peer
    assert wf.text(reply, "ItemIdentifierValue") == "COLLIDE-1-REL"

    reply = ok(d, wf.tipasa_accept_item("T-COLL", "P100", "COLLIDE-2"), wf.TIPASA_HEADERS)
    assert wf.text(reply, "ItemIdentifierValue") == "TIP-COLLIDE-2-TIP"  # prefixed policy
    assert item(d, "TIP-COLLIDE-2")["temporary"] == 0

    reply = ok(d, wf.dcb_accept_item("coll", "P100", "COLLIDE-1-RS"))  # lender-barcode policy
    assert wf.text(reply, "ItemIdentifierValue") == "COLLIDE-1-RS-DCB"


@pytest.mark.parametrize("patron,expected", [
    ("P200", "User Blocked"), ("P300", "User Blocked"), ("P301", "User Blocked"),
    ("NOBODY", "Unknown User")], ids=["blocked", "expired-status", "expired-date", "unknown"])
def test_accept_item_patron_problems(borrower, patron, expected) -> None:
    """AcceptItem for a blocked, expired (by status or date) or unknown patron is answered
    with the standard Problem, creates nothing, and is audited with that outcome.
    """
    rid = f"PP-{patron}"
    reply = refused(borrower, wf.reshare_accept_item(rid, patron, barcode=rid), expected)
    assert wf.text(reply, "ProblemElement") == "UserIdentifierValue"
    assert wf.one(borrower.database, "SELECT * FROM items WHERE barcode = ?", rid) is None
    wf.barrier(borrower)
    rows = wf.audit_rows(borrower.database, broker_request_id=rid)
    assert [(r["operation"], r["outcome"]) for r in rows] == [("AcceptItem", expected)]


def test_needed_data_missing(borrower) -> None:
    """Messages that lack what the operation needs get Needed Data Missing naming the element
    (AcceptItem without a patron; CheckOutItem/DeleteItem without an item)."""
    reply = refused(borrower, wf.reshare_accept_item("NDM-1", "P100", with_user=False),
                    "Needed Data Missing")
    assert wf.text(reply, "ProblemElement") == "UserId"
    body = wf.ncip2("DeleteItem", [wf._rs_header()])
    assert wf.text(refused(borrower, body, "Needed Data Missing"), "ProblemElement") == "ItemId"
    body = wf.ncip2("CheckOutItem", [wf._rs_header(), wf.user_id("P100")])
    assert wf.problem(call(borrower, body)) == "Needed Data Missing"


def test_renewal_not_permitted_and_lender_limit(borrower) -> None:
    """RenewItem of a borrowed item: refused with Item Not Renewable when the lender sent
    RenewalNotPermitted; without a date, capped at the lender's DateForReturn, and a renewal
    the cap leaves where it is is a Problem (never a success with the old date); with the
    lending peer's DesiredDateDue the due date (and the lender's limit) moves to it.
    """
    d = borrower
    ok(d, wf.reshare_accept_item("RNP-1", "P100", barcode="RNP-1", renewal_not_permitted=True))
    ok(d, wf.reshare_check_out("RNP-1", "P100"))
    before = find_open_loan(d, "RNP-1")
    refused(d, wf.reshare_renew("RNP-1", "P100"), "Item Not Renewable")
    assert find_open_loan(d, "RNP-1") == before
    rs = wf.row(d.database, "SELECT renewable FROM rs_requests WHERE broker_request_id = 'RNP-1'")
    assert rs["renewable"] == 0

    limit = wf.local_day(5).isoformat()
    ok(d, wf.reshare_accept_item("RNL-1", "P100", barcode="RNL-1", date_for_return=limit))
    reply = ok(d, wf.reshare_check_out("RNL-1", "P100"))
    assert wf.text(reply, "DateDue") == wf.on_wire(wf.end_of_day(5))
    before = find_open_loan(d, "RNL-1")
    refused(d, wf.reshare_renew("RNL-1", "P100"), "Item Not Renewable")
    assert find_open_loan(d, "RNL-1") == before
    reply = ok(d, wf.reshare_renew("RNL-1", "P100", wf.local_day(12).isoformat()))
    assert wf.text(reply, "DateDue") == wf.on_wire(wf.end_of_day(12))
    loan = open_loan(d, "RNL-1")
    assert loan["due_at"] == wf.stored(wf.end_of_day(12)) and loan["renewals"] == 1
    rs = wf.row(d.database, "SELECT due_at FROM rs_requests WHERE broker_request_id = 'RNL-1'")
    assert rs["due_at"] == wf.stored(wf.end_of_day(12))
    # Past the local maximum (a borrowed loan period from today): as far as that, no further.
    reply = ok(d, wf.reshare_renew("RNL-1", "P100", wf.local_day(60).isoformat()))
    assert wf.text(reply, "DateDue") == wf.on_wire(wf.end_of_day(wf.BORROWED_DAYS))


def test_checkin_of_item_not_on_loan_follows_peer_setting(borrower) -> None:
    """CheckInItem of a temporary item that was never picked up ends its hold (the request
    records why) for every peer; a check-in of an item neither on loan nor waiting is success
    for checkin_not_on_loan = "success" (ReShare), Item Not Checked Out for "problem"
    (ILLiad); a delete_on_checkin peer (Tipasa) deletes it."""
    d = borrower
    ok(d, wf.reshare_accept_item("NOL-1", "P100", barcode="NOL-1"))
    reply = ok(d, wf.reshare_check_in("NOL-1"))
    assert wf.text(reply, "ItemIdentifierValue") == "NOL-1"
    assert wf.text(reply, "UserIdentifierValue") is None
    rs = wf.row(d.database, "SELECT * FROM rs_requests WHERE broker_request_id = 'NOL-1'")
    assert rs["state"] == "checked_in" and wf.rows(d.database, "SELECT * FROM loans WHERE"
                                                   " item_id = ?", rs["item_id"]) == []
    assert rs["end_reason"] == "not picked up"
    assert [h["status"] for h in wf.rows(d.database, "SELECT * FROM holds WHERE item_id = ?",
                                         rs["item_id"])] == ["cancelled"]
    assert item(d, "NOL-1")["status"] == "in_transit"
    assert ok(d, wf.reshare_check_in("NOL-1")) == reply      # a repeat: the same bytes

    ok(d, wf.illiad_accept_item("NOL-2", "P100"))
    first = ok(d, wf.illiad_check_in("NOL-2", "P100", "NOL-2"))
    assert wf.one(d.database, "SELECT * FROM holds h JOIN items i ON i.id = h.item_id"
                              " WHERE i.barcode = 'NOL-2' AND h.status = 'active'") is None
    before = wf.counts(d.database)
    assert call(d, wf.illiad_check_in("NOL-2", "P100", "NOL-2")) == first
    assert wf.counts(d.database) == before
    reply = refused(d, wf.illiad_check_in("NOL-2", "P100", "NOL-2-AGAIN"),
                    "Item Not Checked Out")
    assert wf.text(reply, "ProblemValue") == "NOL-2"

    ok(d, wf.tipasa_accept_item("NOL-3", "P100", "NOL3"), wf.TIPASA_HEADERS)
    ok(d, wf.tipasa_check_in("TIP-NOL3"), wf.TIPASA_HEADERS)
    assert find_item(d, "TIP-NOL3") is None


def test_delete_item_refuses_real_items_and_unknown_ones(borrower) -> None:
    """DeleteItem never removes a real item (Unknown Item, as if it did not exist; item
    intact); a never-seen temporary item is Unknown Item; a repeated DeleteItem replays its
    success."""
    d = borrower
    real = item(d, "LEND-040")
    reply = refused(d, wf.reshare_delete_item("LEND-040"), "Unknown Item")
    assert wf.text(reply, "ProblemValue") == "LEND-040"
    assert item(d, "LEND-040") == real
    ok(d, wf.reshare_accept_item("DEL-1", "P100", barcode="DEL-1"))
    first = ok(d, wf.reshare_delete_item("DEL-1"))
    before = wf.counts(d.database)
    assert call(d, wf.reshare_delete_item("DEL-1")) == first
    assert wf.counts(d.database) == before
    refused(d, wf.reshare_delete_item("NEVER-SEEN"), "Unknown Item")


def test_peers_cannot_delete_each_others_temporary_items(borrower) -> None:
    """A temporary item belongs to the peer that lent it: another peer's DeleteItem is refused
    (Unknown Item, as for an item that does not exist) and so is its check-in; the item, its
    record, hold and request stay as they were."""
    d = borrower
    ok(d, wf.reshare_accept_item("OWN-1", "P100", barcode="OWN-1"))
    temp = item(d, "OWN-1")
    hold = wf.row(d.database, "SELECT * FROM holds WHERE item_id = ?", temp["id"])
    refused(d, wf.relais_delete_item("OWN-1"), "Unknown Item")
    refused(d, wf.tipasa_check_in("OWN-1"), "Unknown Item", wf.TIPASA_HEADERS)
    assert item(d, "OWN-1") == temp
    assert wf.one(d.database, "SELECT * FROM holds WHERE id = ?", hold["id"]) == hold
    rs = wf.row(d.database, "SELECT * FROM rs_requests WHERE broker_request_id = 'OWN-1'")
    assert rs["state"] == "awaiting_pickup" and rs["completed_at"] is None
    ok(d, wf.reshare_delete_item("OWN-1"))
    assert find_item(d, "OWN-1") is None


def test_create_item_is_idempotent_by_state_and_reusable(borrower) -> None:
    """CreateItem makes a temporary item and brief record (no hold); a repeat answers the
    same; once the item is deleted the same lender barcode can be created again (a later loan
    of the same copy) instead of replaying the old reply; a live item's barcode is refused."""
    d = borrower
    h = wf.TIPASA_HEADERS
    first = ok(d, wf.wsill_create_item("CRT-1"), h)
    assert wf.response_name(first) == "CreateItemResponse"
    created = item(d, "CRT-1")
    assert created["temporary"] == 1 and created["owning_peer"] == "tipasa"
    record = wf.row(d.database, "SELECT * FROM records WHERE id = ?", created["record_id"])
    assert record["temporary"] == 1 and record["title"] == "[TIPASA] Created item"
    assert wf.rows(d.database, "SELECT * FROM holds WHERE item_id = ?", created["id"]) == []
    before = wf.counts(d.database)
    assert call(d, wf.wsill_create_item("CRT-1"), h) == first
    assert wf.counts(d.database) == before
    ok(d, wf.ncip2("DeleteItem", [wf._tip_header(), wf.item_id("CRT-1")], style="default"), h)
    assert find_item(d, "CRT-1") is None
    assert call(d, wf.wsill_create_item("CRT-1"), h) == first
    assert find_item(d, "CRT-1") is not None
    refused(d, wf.wsill_create_item("LEND-040"), "Duplicate Request", h)


def test_circulate_action_checks_out_at_once(borrower) -> None:
    """RequestedActionType Circulate lends the temporary item to the patron immediately: a
    loan due at the earlier of the lender's date and local policy, no hold."""
    d = borrower
    ok(d, wf.reshare_accept_item("CIRC-1", "P101", barcode="CIRC-1", action="Circulate",
                                 date_for_return=wf.local_day(40).isoformat()))
    temp = item(d, "CIRC-1")
    assert temp["status"] == "on_loan"
    assert wf.rows(d.database, "SELECT * FROM holds WHERE item_id = ?", temp["id"]) == []
    loan = open_loan(d, "CIRC-1")
    assert loan["due_at"] == wf.stored(wf.end_of_day(wf.BORROWED_DAYS))
    rs = wf.row(d.database, "SELECT * FROM rs_requests WHERE broker_request_id = 'CIRC-1'")
    assert rs["state"] == "checked_out" and rs["checked_out_at"]


def test_fees_from_accept_item_and_fiscal_transaction(borrower) -> None:
    """A non-zero FiscalTransactionInformation is recorded as a fee in decimal units; a zero
    one (ReShare's default) is not; CreateUserFiscalTransaction records its fee once."""
    d = borrower
    before = len(wf.rows(d.database, "SELECT * FROM fees"))
    ok(d, wf.reshare_accept_item("FEE-0", "P100", barcode="FEE-0"))
    assert len(wf.rows(d.database, "SELECT * FROM fees")) == before
    reply = ok(d, wf.reshare_fee("P101", "1250", "FEE-REQ-1"))
    assert wf.response_name(reply) == "CreateUserFiscalTransactionResponse"
    fee = wf.rows(d.database, "SELECT f.*, p.barcode FROM fees f JOIN patrons p"
                              " ON p.id = f.patron_id ORDER BY f.id DESC")[0]
    assert fee["amount"] == "12.50" and fee["currency"] == "USD" and fee["barcode"] == "P101"
    assert fee["peer"] == "reshare"


def test_renew_limited_by_max_renewals(borrower) -> None:
    """Local policy allows max_renewals renewals of a lent item; the next is Maximum
    Renewals Exceeded; a repeat of an accepted renewal is answered the same without
    counting."""
    d = borrower
    ok(d, wf.illiad_check_out("LEND-060", "ILLPSEUDO", "MR-1", wf.local_day(3).isoformat()))
    first = ok(d, wf.illiad_renew("LEND-060", "ILLPSEUDO", wf.local_day(5).isoformat()))
    assert call(d, wf.illiad_renew("LEND-060", "ILLPSEUDO", wf.local_day(5).isoformat())) == \
        first
    reply = ok(d, wf.illiad_renew("LEND-060", "ILLPSEUDO", wf.local_day(7).isoformat()))
    assert wf.text(reply, "DateDue") == wf.on_wire(wf.end_of_day(7))
    assert open_loan(d, "LEND-060")["renewals"] == wf.MAX_RENEWALS
    refused(d, wf.illiad_renew("LEND-060", "ILLPSEUDO", wf.local_day(9).isoformat()),
            "Maximum Renewals Exceeded")
    assert open_loan(d, "LEND-060")["due_at"] == wf.stored(wf.end_of_day(7))


# -- lender side --------------------------------------------------------------------------------


def _hold_of(d: NcipHarness, our_id: str) -> dict:
    rs = wf.row(d.database, "SELECT * FROM rs_requests WHERE our_request_id = ?", our_id)
    holds = wf.rows(d.database, "SELECT * FROM holds WHERE patron_id = ? AND status = 'active'"
                                " ORDER BY id", rs["patron_id"])
    return holds[-1]


@pytest.mark.parametrize("bib,local_id", [
    (wf.bib_item_id("0-262-01153-0", "ISBN"), "b1001"),
    (wf.bib_item_id("9780262011532", "ISBN"), "b1001"),
    (wf.bib_item_id("0131103628", "ISBN"), "b1002"),
    (wf.bib_record_id("12345", "OCLC"), "b1001"),
    (wf.bib_record_id("(OCoLC)555", "OCLC"), "b1002"),
    (wf.bib_record_id("b1004", "BibID"), "b1004"),
], ids=["isbn10", "isbn13", "isbn13-as-10", "oclc", "oclc-prefixed", "bibid"])
def test_request_item_by_standard_identifiers(lender, bib, local_id) -> None:
    """RequestItem finds the record by ISBN (either form), OCLC number or local id and holds
    it (a Hold without a free item is a record-level hold)."""
    rid = f"ID-{local_id}-{id(bib)}"
    reply = ok(lender, wf.reshare_request_item(rid, bib=bib, request_type="Hold"))
    our_id = wf.the_text(reply, "RequestIdentifierValue")
    record = wf.row(lender.database, "SELECT r.local_id FROM holds h JOIN records r ON"
                                     " r.id = h.record_id WHERE h.id = ?",
                    _hold_of(lender, our_id)["id"])
    assert record["local_id"] == local_id


def test_request_item_by_item_id_and_unknown_record(lender) -> None:
    """RequestItem by ItemId holds that very item (scope Item); an identifier matching no
    record is Unknown Item; a Loan with no free item cannot be provided."""
    reply = ok(lender, wf.reshare_request_item("BYITEM-1", barcode="LEND-031",
                                               scope="Item", request_type="Page"))
    assert wf.text(reply, "ItemIdentifierValue") == "LEND-031"
    assert wf.text(reply, "RequestScopeType") == "Item"
    hold = _hold_of(lender, wf.the_text(reply, "RequestIdentifierValue"))
    assert hold["item_id"] == item(lender, "LEND-031")["id"]
    refused(lender, wf.reshare_request_item("NOREC-1", bib=wf.bib_item_id("9780000000002")),
            "Unknown Item")
    refused(lender, wf.reshare_request_item("NOREC-2", sysnumber="b9999"), "Unknown Item")
    ok(lender, wf.reshare_request_item("ONE-1", sysnumber="b1005", patron="INST-SOUTH"))
    refused(lender, wf.reshare_request_item("ONE-2", sysnumber="b1005", patron="INST-SOUTH"),
            "Resource Cannot Be Provided")


def test_institutional_patron_created_on_first_use_and_reused(lender) -> None:
    """Without a UserId the borrowing library's patron is INST-<FromAgencyId>, created once
    (institutional_peer set) and reused; a UserId in the template's form is used as is."""
    ok(lender, wf.reshare_request_item("INST-A", sysnumber="b1007", patron=None))
    ok(lender, wf.reshare_request_item("INST-B", sysnumber="b1007", patron=None))
    found = wf.rows(lender.database, "SELECT * FROM patrons WHERE barcode = 'INST-RESHARE'")
    assert len(found) == 1 and found[0]["institutional_peer"] == "reshare"
    holds = wf.rows(lender.database, "SELECT * FROM holds WHERE patron_id = ?", found[0]["id"])
    assert len(holds) == 2
    ok(lender, wf.reshare_request_item("INST-C", sysnumber="b1007", patron="INST-WEST"))
    ok(lender, wf.reshare_request_item("INST-D", sysnumber="b1007", patron="INST-WEST"))
    assert len(wf.rows(lender.database, "SELECT * FROM patrons WHERE barcode = 'INST-WEST'")) == 1


def test_check_out_fulfils_hold_and_clamps_desired_date(lender) -> None:
    """CheckOutItem to the institutional patron fulfils its hold; DesiredDateDue is honoured
    inside local policy and clamped to the loan period beyond it; a second CheckOutItem to the
    same patron returns the existing loan; to another patron it is refused."""
    d = lender
    reply = ok(d, wf.reshare_request_item("CO-1", sysnumber="b1007", patron="INST-NORTH"))
    barcode = wf.the_text(reply, "ItemIdentifierValue")
    hold = _hold_of(d, wf.the_text(reply, "RequestIdentifierValue"))
    reply = ok(d, wf.reshare_check_out(barcode, "INST-NORTH", "CO-1",
                                       wf.local_day(365).isoformat()))
    assert wf.text(reply, "DateDue") == wf.on_wire(wf.end_of_day(wf.LOAN_DAYS))
    assert wf.row(d.database, "SELECT status FROM holds WHERE id = ?", hold["id"])["status"] \
        == "fulfilled"
    again = ok(d, wf.reshare_check_out(barcode, "INST-NORTH"))
    assert wf.text(again, "DateDue") == wf.text(reply, "DateDue")
    assert len(wf.rows(d.database, "SELECT * FROM loans WHERE item_id = ?",
                       item(d, barcode)["id"])) == 1
    refused(d, wf.reshare_check_out(barcode, "INST-SOUTH"),
            "User Ineligible To Check Out This Item")

    reply = ok(d, wf.reshare_request_item("CO-2", sysnumber="b1007", patron="INST-NORTH"))
    barcode = wf.the_text(reply, "ItemIdentifierValue")
    reply = ok(d, wf.reshare_check_out(barcode, "INST-NORTH", "CO-2",
                                       wf.local_day(3).isoformat() + "T12:00:00Z"))
    assert wf.text(reply, "DateDue") == f"{wf.local_day(3).isoformat()}T12:00:00Z"


def test_cancel_request_item(lender) -> None:
    """CancelRequestItem by our request id and by ItemId cancels the request's own hold (not
    another hold of the same institutional patron); after shipping it is Request Already
    Processed; an unknown id is Unknown Request."""
    d = lender
    # Two requests per record: the second finds no free item and is a record-level hold.
    ids = {}
    for rid, sysnumber in (("CX-1", "b1003"), ("CX-2", "b1003"), ("CX-3", "b1006"),
                           ("CX-4", "b1006"), ("CX-5", "b1006"), ("CX-6", "b1006")):
        reply = ok(d, wf.reshare_request_item(rid, sysnumber=sysnumber, patron="INST-CANCEL",
                                              request_type="Hold"))
        ids[rid] = wf.text(reply, "RequestIdentifierValue")
    patron = wf.row(d.database, "SELECT id FROM patrons WHERE barcode = 'INST-CANCEL'")["id"]

    def holds() -> list[tuple[str, str | None, str]]:
        return [(r["local_id"], r["barcode"], r["status"]) for r in wf.rows(
            d.database, "SELECT r.local_id, i.barcode, h.status FROM holds h JOIN records r"
                        " ON r.id = h.record_id LEFT JOIN items i ON i.id = h.item_id"
                        " WHERE h.patron_id = ? ORDER BY h.id", patron)]

    start = holds()
    assert [h[1] is None for h in start] == [False, True, False, False, False, True]

    reply = ok(d, wf.reshare_cancel_request(ids["CX-6"], patron="INST-CANCEL"))
    assert wf.text(reply, "RequestIdentifierValue") == ids["CX-6"]
    after = holds()
    assert after == start[:5] + [(start[5][0], None, "cancelled")]
    rs = wf.row(d.database, "SELECT * FROM rs_requests WHERE our_request_id = ?", ids["CX-6"])
    assert rs["state"] == "cancelled" and rs["cancelled_at"]

    barcode = start[3][1]
    reply = ok(d, wf.reshare_cancel_request(barcode=barcode, patron="INST-CANCEL"))
    assert wf.text(reply, "RequestIdentifierValue") == ids["CX-4"]
    assert wf.text(reply, "ItemIdentifierValue") == barcode
    after = holds()
    assert [h[2] for h in after] == ["active"] * 3 + ["cancelled", "active", "cancelled"]

    assert start[0][1] is not None
    ok(d, wf.reshare_check_out(start[0][1], "INST-CANCEL", "CX-1"))
    reply = refused(d, wf.reshare_cancel_request(ids["CX-1"], patron="INST-CANCEL"),
                    "Request Already Processed")
    assert wf.text(reply, "ProblemValue") == ids["CX-1"]
    refused(d, wf.reshare_cancel_request("L-99999", patron="INST-CANCEL"), "Unknown Request")


def test_temporary_records_never_enter_the_catalogue_as_real(borrower, lender) -> None:
    """Every record created for a temporary item is temporary=1, with its identifiers indexed
    only under that record; RequestItem by a borrowed item's ISBN never lends the borrowed
    item (the real record wins, or Unknown Item when only the temporary record has it)."""
    d = borrower
    ok(d, wf.reshare_accept_item("ISBN-1", "P100", barcode="ISBN-1", isbn="0262011530"))
    ok(d, wf.reshare_accept_item("ISBN-2", "P100", barcode="ISBN-2", isbn="9780201835953"))
    bad = wf.rows(d.database, "SELECT i.barcode FROM items i JOIN records r ON"
                              " r.id = i.record_id WHERE i.temporary != r.temporary")
    assert bad == []
    temp_ids = wf.rows(d.database, "SELECT ri.kind, ri.value, r.temporary FROM"
                                   " record_identifiers ri JOIN records r ON r.id = ri.record_id"
                                   " JOIN items i ON i.record_id = r.id WHERE i.temporary = 1"
                                   " AND ri.kind = 'isbn'")
    assert temp_ids and all(row["temporary"] == 1 for row in temp_ids)
    assert {row["value"] for row in temp_ids} >= {"9780262011532", "9780201835953"}

    reply = ok(d, wf.reshare_request_item("ISBN-L1", bib=wf.bib_item_id("0262011530"),
                                          request_type="Hold", patron="INST-ISBN"))
    hold = _hold_of(d, wf.the_text(reply, "RequestIdentifierValue"))
    record = wf.row(d.database, "SELECT * FROM records WHERE id = ?", hold["record_id"])
    assert record["local_id"] == "b1001" and record["temporary"] == 0
    refused(d, wf.reshare_request_item("ISBN-L2", bib=wf.bib_item_id("9780201835953"),
                                       request_type="Hold", patron="INST-ISBN"), "Unknown Item")
    refused(d, wf.reshare_request_item("ISBN-L3", barcode="ISBN-1", scope="Item",
                                       patron="INST-ISBN"), "Unknown Item")
