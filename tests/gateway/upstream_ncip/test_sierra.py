# -*- test-case-name: tests.gateway.upstream_ncip.test_sierra -*-
"""The ``sierra`` profile: its request shape (NCIP 2, ``ns1:``; record numbers as Sierra wants
them; a hold on a title named by its bare bib digits), and over real HTTP through Interlend to
an upstream Interlend standing in for Sierra (its patrons and items keyed by Sierra record
keys, its record by the bib's digits): ReShare's lookups in every written form of a record
number, a wrong check digit refused without asking the LMS, ReShare borrowing and lending with
the LMS counted after every step, and the LMS's Problems mapped back (its record keys shown to
the broker in Sierra's display form)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pymarc
import pytest
from lxml import etree

from gateway.backends.embedded.records import (
    ItemData,
    PatronData,
    upsert_item,
    upsert_patron,
    upsert_record,
)
from gateway.backends.upstream.ncip.profiles import PROFILES
from gateway.domain import model as domain
from gateway.storage.store import open_database
from protocols.ncip.upstream import UpstreamReply, UpstreamRequest, write_request
from tests import workflow_fixtures as wf
from tests.daemon import Daemon
from tests.gateway.test_broker_clients import ReShare
from tests.gateway.upstream_ncip.peers import (
    FaultProxy,
    backend_config,
    lms_counts,
    start_gateway,
)

SIERRA = PROFILES["sierra"]
PATRON_KEY, PATRON = "p3384632", ".p33846327"      # the LMS's key; Sierra's display form
BLOCKED_KEY, BLOCKED = "p1952770", ".p19527706"
ITEM_KEY, ITEM = "i1024364", ".i10243641"
BIB_DIGITS, BIB = "3696836", ".b36968365"
WEAK_BIB, WEAK_ITEM_KEY = "1000001", "i3384632"   # a record the catalogue keys "b1000001"


# -- the request shape (pure) -------------------------------------------------------------------

def _xml(request: UpstreamRequest) -> etree._Element:
    return etree.fromstring(write_request(request, SIERRA.shape))


def _value(root: etree._Element, name: str) -> list[str]:
    return [str(v) for v in root.xpath(f"//*[local-name()='{name}']/text()")]


def test_shape_is_ncip2_with_the_ns1_prefix_and_record_keys() -> None:
    root = _xml(UpstreamRequest("CheckOutItem", "OURLIB", "SIERRA", user_id="p3384632a",
                                item_id=".i10243641"))
    assert root.tag == "{http://www.niso.org/2008/ncip}NCIPMessage" and root.prefix == "ns1"
    assert _value(root, "UserIdentifierValue") == [PATRON_KEY]
    assert _value(root, "ItemIdentifierValue") == [ITEM_KEY]
    # barcodes are not record numbers: unchanged
    root = _xml(UpstreamRequest("CheckOutItem", "OURLIB", "SIERRA", user_id="21234000123456",
                                item_id="31234000999999"))
    assert _value(root, "UserIdentifierValue") == ["21234000123456"]
    assert _value(root, "ItemIdentifierValue") == ["31234000999999"]
    # a wrong check digit goes as written (the LMS says Unknown Item), never an exception
    root = _xml(UpstreamRequest("CheckInItem", "OURLIB", "SIERRA", item_id=".i10243642"))
    assert _value(root, "ItemIdentifierValue") == [".i10243642"]


def test_title_hold_names_the_bib_by_its_digits() -> None:
    root = _xml(UpstreamRequest("RequestItem", "OURLIB", "SIERRA", user_id="INST-EAST",
                                item_id=ITEM, bib_id="b3696836a", request_scope="Title"))
    body = root[0]
    names = [etree.QName(c).localname for c in body]
    # NCIP 2.02 order; ItemId or BibliographicId, a choice
    assert names == ["InitiationHeader", "UserId", "BibliographicId", "RequestType",
                     "RequestScopeType"]
    assert _value(root, "BibliographicRecordIdentifier") == [BIB_DIGITS]
    assert _value(root, "BibliographicRecordIdentifierCode") == ["SYSNUMBER"]
    assert _value(root, "RequestType") == ["Hold"]
    assert _value(root, "RequestScopeType") == ["Title"]


def test_profile_services_and_vocabulary() -> None:
    assert {s for s in ("LookupUser", "RequestItem", "AcceptItem", "CheckOutItem",
                        "CheckInItem") if SIERRA.supports(s)} == {
        "LookupUser", "RequestItem", "AcceptItem", "CheckOutItem", "CheckInItem"}
    for missing in ("RenewItem", "CancelRequestItem", "DeleteItem", "LookupItem"):
        assert not SIERRA.supports(missing)
    blocked = SIERRA.error_for("AcceptItem", UpstreamReply(
        "problem", problem_types=("User Blocked",), value=BLOCKED_KEY))
    assert isinstance(blocked, domain.PatronBlocked) and blocked.value == BLOCKED
    unknown = SIERRA.error_for("CheckOutItem", UpstreamReply(
        "problem", problem_types=("Unknown Item",), value=ITEM_KEY))
    assert isinstance(unknown, domain.UnknownItem) and unknown.value == ITEM
    assert isinstance(SIERRA.error_for("LookupUser", UpstreamReply(
        "problem", problem_types=("Unknown User",))), domain.UnknownPatron)
    assert SIERRA.broker_id("p", "P33846327") == PATRON
    assert SIERRA.broker_id("p", ".p33846320") is None          # wrong check digit
    assert SIERRA.broker_id("b", BIB_DIGITS) == BIB
    assert PROFILES["generic-ncip2"].broker_id("p", "p3384632a") == "p3384632a"
    assert SIERRA.record_forms("b1000001a") == [".b1000001x", "b1000001", "1000001",
                                                 "b1000001a"]
    assert SIERRA.record_forms(".b1000001x") == [".b1000001x", "b1000001", "1000001"]
    assert SIERRA.record_forms("ISBN-ish") == ["ISBN-ish"]
    assert SIERRA.record_forms(".b10000010") == [".b10000010"]      # wrong check digit
    assert PROFILES["folio"].record_forms("b1000001") == ["b1000001"]


# -- over real HTTP: an upstream Interlend keyed like Sierra ------------------------------------

def _add_record(conn: sqlite3.Connection, local_id: str, title: str,
                items: tuple[str, ...]) -> None:
    record = pymarc.Record(force_utf8=True)
    record.add_field(pymarc.Field(tag="001", data=local_id))
    record.add_field(pymarc.Field(tag="245", indicators=pymarc.Indicators("1", "0"),
                                  subfields=[pymarc.Subfield("a", title)]))
    record_id, _ = upsert_record(conn, record)
    for barcode in items:
        upsert_item(conn, record_id, ItemData(barcode=barcode, location="MAIN",
                                              call_number="QA 76", status="available"))


def _seed(path: Path, *, bib: str, item: str, patrons: bool, weak: tuple[str, str]) -> None:
    conn = open_database(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        _add_record(conn, bib, "Sierra's title", (item,))
        _add_record(conn, weak[0], "Another title", (weak[1],))
        if patrons:
            upsert_patron(conn, PatronData(barcode=PATRON_KEY, given_name="Sierra",
                                           family_name="Reader"))
            upsert_patron(conn, PatronData(barcode=BLOCKED_KEY, given_name="Barred",
                                           family_name="Reader", status="blocked"))
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def sierra_lms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """'Sierra': an Interlend whose patrons and items carry Sierra record keys and whose
    record is known by the bib's digits (what Sierra's NCIP takes)."""
    launch: Callable[..., Daemon]
    for launch in wf.launched_daemons(tmp_path_factory):
        yield launch("sierra-lms", lambda p: _seed(p, bib=BIB_DIGITS, item=ITEM_KEY,
                                                   patrons=True,
                                                   weak=(WEAK_BIB, WEAK_ITEM_KEY)))


@pytest.fixture(scope="module")
def proxy(sierra_lms: Daemon) -> Iterator[FaultProxy]:
    p = FaultProxy(sierra_lms.base_url + "/ncip")
    yield p
    p.close()


@pytest.fixture(scope="module")
def gateway(proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("sierra-gateway")
    database = tmp / "interlend.sqlite3"
    wf.seed_database(database)
    # the catalogue's copy: one record in display form, one under the weak key
    _seed(database, bib=BIB, item=ITEM, patrons=False, weak=("b" + WEAK_BIB, ".i33846327"))
    d = start_gateway(tmp, backend_config(proxy.url, "sierra", "01XXX_INST", wf.AGENCY)
                      + 'institutional_user = "INST-01XXX_INST"\n', database=database)
    yield d
    d.kill()


def _sent(proxy: FaultProxy, since: int, name: str) -> list[str]:
    found: list[str] = []
    for body in proxy.calls[since:]:
        found += _value(etree.fromstring(body), name)
    return found


def _step(d: Daemon, lms: Daemon, body: bytes) -> bytes:
    reply = wf.call(d, body)
    after = lms_counts(lms.database)
    assert wf.call(d, body) == reply, "a retried step got another reply"
    assert lms_counts(lms.database) == after, "a retried step changed the LMS"
    return reply


@pytest.mark.slow
def test_lookup_user_in_every_written_form(gateway: Daemon, proxy: FaultProxy) -> None:
    for form in (PATRON, "p3384632", "p3384632a", "P33846327", ".p3384632"):
        before = len(proxy.calls)
        reply = wf.call(gateway, wf.reshare_lookup_user(form))
        assert ReShare.ok(reply), (form, reply)
        assert b"Sierra" in reply
        assert _sent(proxy, before, "UserIdentifierValue") == [PATRON_KEY], form
    before = len(proxy.calls)
    wrong = wf.call(gateway, wf.reshare_lookup_user(".p33846320"))
    assert [p["type"] for p in ReShare.problems(wrong)] == ["Unknown User"]
    assert len(proxy.calls) == before                # refused here; the LMS is not asked


@pytest.mark.slow
def test_reshare_borrowing_with_record_numbers(gateway: Daemon, sierra_lms: Daemon,
                                               proxy: FaultProxy) -> None:
    start = lms_counts(sierra_lms.database)
    rid = "RS-SIERRA-1"
    before = len(proxy.calls)
    accepted = _step(gateway, sierra_lms, wf.reshare_accept_item(rid, "p3384632a",
                                                                 barcode=f"{rid}-V1"))
    assert ReShare.ok(accepted), accepted
    assert set(_sent(proxy, before, "UserIdentifierValue")) == {PATRON_KEY}
    assert lms_counts(sierra_lms.database) == {**start, "items": start["items"] + 1,
                                               "holds": start["holds"] + 1}
    out = _step(gateway, sierra_lms, wf.reshare_check_out(f"{rid}-V1", PATRON))
    assert ReShare.ok(out), out
    assert lms_counts(sierra_lms.database) == {"items": start["items"] + 1,
                                               "holds": start["holds"],
                                               "loans": start["loans"] + 1}
    loan = wf.one(sierra_lms.database, "SELECT p.barcode FROM loans l JOIN patrons p ON"
                  " p.id = l.patron_id WHERE l.returned_at IS NULL")
    assert loan is not None and loan["barcode"] == PATRON_KEY
    # Sierra has no RenewItem: the broker gets Item Not Renewable, the LMS is not asked
    before = len(proxy.calls)
    renew = wf.call(gateway, wf.reshare_renew(f"{rid}-V1", PATRON))
    assert [p["type"] for p in ReShare.problems(renew)] == ["Item Not Renewable"], renew
    assert len(proxy.calls) == before
    back = _step(gateway, sierra_lms, wf.reshare_check_in(f"{rid}-V1"))
    assert ReShare.ok(back), back
    assert lms_counts(sierra_lms.database) == {**start, "items": start["items"] + 1}
    # the LMS says the patron is blocked: User Blocked, naming the patron as the broker did
    before = len(proxy.calls)
    blocked = wf.call(gateway, wf.reshare_accept_item("RS-SIERRA-B", "p1952770a",
                                                      barcode="RS-SIERRA-B1"))
    problems = ReShare.problems(blocked)
    assert [p["type"] for p in problems] == ["User Blocked"], blocked
    assert problems[0]["value"] in ("p1952770a", BLOCKED), problems
    assert set(_sent(proxy, before, "UserIdentifierValue")) == {BLOCKED_KEY}
    assert lms_counts(sierra_lms.database)["items"] == start["items"] + 1


@pytest.mark.slow
def test_reshare_lending_a_title_hold(gateway: Daemon, sierra_lms: Daemon,
                                      proxy: FaultProxy) -> None:
    """ReShare as supplier: RequestItem by bib id (written without dot and with the 'a'
    wildcard check digit) becomes a Hold on the Title in Sierra, by the bib's digits; then
    CheckOutItem to the borrowing library and CheckInItem, by the item's record number."""
    start = lms_counts(sierra_lms.database)
    before = len(proxy.calls)
    reply = _step(gateway, sierra_lms, wf.reshare_request_item("EAST-SIERRA-1",
                                                               sysnumber="b3696836a"))
    assert ReShare.ok(reply), reply
    assert wf.text(reply, "ItemIdentifierValue") == ITEM
    assert _sent(proxy, before, "BibliographicRecordIdentifier") == [BIB_DIGITS]
    assert _sent(proxy, before, "RequestScopeType") == ["Title"]
    assert lms_counts(sierra_lms.database) == {**start, "holds": start["holds"] + 1}
    hold = wf.one(sierra_lms.database, "SELECT i.barcode, p.barcode AS patron FROM holds h"
                  " JOIN items i ON i.id = h.item_id JOIN patrons p ON p.id = h.patron_id"
                  " WHERE h.status = 'active'")
    assert hold == {"barcode": ITEM_KEY, "patron": "INST-01XXX_INST"}

    before = len(proxy.calls)
    out = _step(gateway, sierra_lms, wf.reshare_check_out("i1024364a", "INST-EAST",
                                                          "EAST-SIERRA-1"))
    assert ReShare.ok(out), out
    assert _sent(proxy, before, "ItemIdentifierValue") == [ITEM_KEY]
    assert lms_counts(sierra_lms.database) == {**start, "loans": start["loans"] + 1}
    back = _step(gateway, sierra_lms, wf.reshare_check_in(ITEM))
    assert ReShare.ok(back), back
    assert lms_counts(sierra_lms.database) == start
    assert wf.one(sierra_lms.database, "SELECT status FROM items WHERE barcode = ?",
                  ITEM_KEY) == {"status": "available"}


@pytest.mark.slow
def test_reshare_lending_from_a_weak_keyed_record_then_cancelled(
        gateway: Daemon, sierra_lms: Daemon, proxy: FaultProxy) -> None:
    """The catalogue keeps this record as ``b1000001``: ReShare's ``.b1000001x`` (the check
    digit 'x') finds it. Sierra has no CancelRequestItem over NCIP (ncip.md; ReShare's Sierra
    integration cancels by hand): the broker's cancel succeeds here, and the LMS's hold stays
    for staff to cancel in Sierra -- the LMS is not sent a service it lacks."""
    start = lms_counts(sierra_lms.database)
    before = len(proxy.calls)
    reply = _step(gateway, sierra_lms, wf.reshare_request_item("EAST-SIERRA-2",
                                                               sysnumber=".b1000001x"))
    assert ReShare.ok(reply), reply
    assert _sent(proxy, before, "BibliographicRecordIdentifier") == [WEAK_BIB]
    assert lms_counts(sierra_lms.database) == {**start, "holds": start["holds"] + 1}
    ours = wf.text(reply, "RequestIdentifierValue")
    assert ours
    before = len(proxy.calls)
    cancelled = wf.call(gateway, wf.reshare_cancel_request(ours))
    assert ReShare.ok(cancelled), cancelled
    assert len(proxy.calls) == before
    assert lms_counts(sierra_lms.database) == {**start, "holds": start["holds"] + 1}
    held = wf.one(sierra_lms.database, "SELECT i.barcode FROM holds h JOIN items i"
                  " ON i.id = h.item_id WHERE h.status = 'active'")
    assert held == {"barcode": WEAK_ITEM_KEY}
