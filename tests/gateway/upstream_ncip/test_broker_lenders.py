# -*- test-case-name: tests.gateway.upstream_ncip.test_broker_lenders -*-
"""The lending (supplier, item-owning) side of the brokers through Interlend to the library's
LMS: ReShare as supplier (RequestItem by bib id for the borrowing library's institutional
patron, CheckOutItem on shipping, CheckInItem on return; CancelRequestItem for a request it
cannot fill), ILLiad lending (CheckOutItem to its pseudo patron with a date-only due date,
RenewItem, CheckInItem with UserId and RequestId) and INN-Reach lending in NCIP 1
(ItemRequested, CheckOutItem, ItemShipped, ItemCheckedIn, CheckInItem; ItemRequestCancelled).

Each runs against the NCIPServer (Koha) peer and against an upstream Interlend answering in
each dialect (``peers.DIALECTS``): ``ns1:`` prefix, default namespace, NCIP 2 without a
namespace, NCIP 1. The LMS's holds and loans are counted after every step, and every step is
retried as after a client time-out (the same reply, the LMS unchanged). Where the LMS lacks a
service the broker sees the profile's stand-in, and the test says which."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pymarc
import pytest

from gateway.backends.embedded.records import ItemData, upsert_item, upsert_record
from gateway.storage.store import open_database
from tests import workflow_fixtures as wf
from tests.daemon import Daemon
from tests.gateway.test_broker_clients import ReShare
from tests.gateway.upstream_ncip.peers import (
    DIALECTS,
    DialectLms,
    KohaLms,
    Lms,
    each_lms,
    lms_hold,
    lms_loan,
    plus,
    start_gateway,
    step,
)

pytestmark = pytest.mark.slow

BOB = "23529000000029"            # Koha's patron standing for the borrowing libraries
KOHA_FIRST, KOHA_SECOND = "39999000000012", "39999000000038"

@pytest.fixture(scope="module", params=["koha", *DIALECTS])
def lms(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lms]:
    """NCIPServer, or an upstream Interlend of its own per dialect (the NCIP 2 no-namespace
    and NCIP 1 dialects reach the same peer there, whose duplicate check would meet the
    upstream RequestIds two gateways derive from the same broker requests)."""
    yield from each_lms(request.param, tmp_path_factory)


def _koha_catalogue(path: Path) -> None:
    """The gateway's catalogue copy of Koha's two loanable books (its biblionumbers as record
    ids, its barcodes), as a catalogue harvested from Koha has them."""
    conn = open_database(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for local_id, title, barcode in (("1", "The Hobbit", KOHA_FIRST),
                                         ("3", "Moby-Dick", KOHA_SECOND)):
            record = pymarc.Record(force_utf8=True)
            record.add_field(pymarc.Field(tag="001", data=local_id))
            record.add_field(pymarc.Field(tag="245", indicators=pymarc.Indicators("1", "0"),
                                          subfields=[pymarc.Subfield("a", title)]))
            record_id, _ = upsert_record(conn, record)
            upsert_item(conn, record_id, ItemData(barcode=barcode, location="MAIN",
                                                  call_number="823", status="available"))
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def gateway(lms: Lms, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("lender-gateway")
    database = tmp / "interlend.sqlite3"
    wf.seed_database(database)
    config = lms.config()
    if isinstance(lms, KohaLms):
        _koha_catalogue(database)
        config += f'institutional_user = "{BOB}"\n'
    else:
        assert isinstance(lms, DialectLms)
        config += f'institutional_user = "INST-{lms.dialect}-{{agency}}"\n'
    d = start_gateway(tmp, config, database=database)
    yield d
    d.kill()


def _items(lms: Lms) -> dict[str, str]:
    """Bib ids and barcodes of the LMS's loanable items, per flow."""
    if isinstance(lms, KohaLms):
        return {"rs_bib": "1", "rs_item": KOHA_FIRST, "rs_cancel_bib": "3",
                "illiad": KOHA_SECOND, "ir": KOHA_FIRST, "ir_cancel": KOHA_SECOND}
    return {"rs_bib": "b1002", "rs_item": "LEND-010", "rs_cancel_bib": "b1003",
            "illiad": "LEND-030", "ir": "LEND-040", "ir_cancel": "LEND-031"}


def _institution(lms: Lms, agency: str) -> str:
    """The LMS patron standing for the borrowing library ``agency``."""
    if isinstance(lms, KohaLms):
        return BOB
    assert isinstance(lms, DialectLms)
    return f"INST-{lms.dialect}-{agency}"


# -- ReShare as supplier --------------------------------------------------------------------------

def test_reshare_lender(gateway: Daemon, lms: Lms) -> None:
    """ReShare supplier: RequestItem (bib id, for INST-EAST) holds the LMS's copy for the
    borrowing library; CheckOutItem (shipping) lends it to that patron and fills the hold;
    CheckInItem (the return) ends the loan. A second request is cancelled: the LMS's hold
    goes (CancelRequestItem with the LMS's own RequestId)."""
    items = _items(lms)
    start = lms.counts()
    inst = _institution(lms, "EAST")
    reply = step(gateway, lms, wf.reshare_request_item("EAST-L1", sysnumber=items["rs_bib"]),
                 plus(start, holds=1))
    assert ReShare.ok(reply) and wf.text(reply, "ItemIdentifierValue") == items["rs_item"]
    assert lms_hold(lms, items["rs_item"]) == inst
    step(gateway, lms, wf.reshare_check_out(items["rs_item"], "INST-EAST", "EAST-L1"),
         plus(start, loans=1))
    loan = lms_loan(lms, items["rs_item"])
    assert loan is not None and loan[0] == inst
    assert lms_hold(lms, items["rs_item"]) is None           # filled by the loan
    step(gateway, lms, wf.reshare_check_in(items["rs_item"]), start)
    assert lms_loan(lms, items["rs_item"]) is None

    other = step(gateway, lms, wf.reshare_request_item("EAST-L2",
                                                       sysnumber=items["rs_cancel_bib"]),
                 plus(start, holds=1))
    ours = wf.text(other, "RequestIdentifierValue")
    assert ours
    step(gateway, lms, wf.reshare_cancel_request(ours), start)


# -- ILLiad lending -------------------------------------------------------------------------------

def test_illiad_lending(gateway: Daemon, lms: Lms) -> None:
    """ILLiad lending: CheckOutItem to its pseudo patron (the LMS's patron for the borrowing
    library) with a date-only due date; RenewItem (NCIPServer has none: the broker gets Item
    Not Renewable and the loan stays); CheckInItem with ILLiad's UserId + RequestId."""
    barcode = _items(lms)["illiad"]
    start = lms.counts()
    step(gateway, lms, wf.illiad_check_out(barcode, "ILLPSEUDO", "TN-L1",
                                           wf.local_day(10).isoformat()),
         plus(start, loans=1))
    loan = lms_loan(lms, barcode)
    assert loan is not None and loan[0] == _institution(lms, "ILLPSEUDO")
    renew = wf.illiad_renew(barcode, "ILLPSEUDO", wf.local_day(20).isoformat())
    if isinstance(lms, KohaLms):
        refused = wf.call(gateway, renew)
        assert wf.problem(refused) == "Item Not Renewable", refused
        assert lms_loan(lms, barcode) == loan and lms.counts() == plus(start, loans=1)
    else:
        step(gateway, lms, renew, plus(start, loans=1))
        renewed = lms_loan(lms, barcode)
        assert renewed is not None and loan is not None and renewed[1] > loan[1]
    step(gateway, lms, wf.illiad_check_in(barcode, "ILLPSEUDO", "TN-L1"), start)
    assert lms_loan(lms, barcode) is None


# -- INN-Reach lending (NCIP 1) -------------------------------------------------------------------

def _innreach_check_in(barcode: str) -> bytes:
    """The owning site's check-in of its returned item, in the INN-Reach DCB box's shape
    (``ncip/samples/innreach-dcb-ncip1-cmu-alma-relay/CheckInItem.xml``: MandatedAction,
    UniqueItemId)."""
    return wf.ncip1("CheckInItem", "<MandatedAction><DateEventOccurred datatype=\"dateTime\">"
                    "2026-07-02T10:00:00Z</DateEventOccurred></MandatedAction>"
                    + wf._v1_item(barcode, wf.AGENCY))


def test_innreach_lending(gateway: Daemon, lms: Lms) -> None:
    """INN-Reach owning site: ItemRequested holds our item in the LMS for the borrowing site's
    patron; CheckOutItem lends it (the hold filled); ItemShipped and ItemCheckedIn are
    notifications (the LMS unchanged); CheckInItem ends the loan. ItemRequestCancelled on
    another request removes its hold from the LMS."""
    items = _items(lms)
    barcode = items["ir"]
    start = lms.counts()
    step(gateway, lms, wf.innreach_item_requested("TR-L1", barcode), plus(start, holds=1))
    assert lms_hold(lms, barcode) == _institution(lms, "zv010")
    step(gateway, lms, wf.innreach_check_out(barcode, "INST-zv010", "TR-L1"),
         plus(start, loans=1))
    assert lms_hold(lms, barcode) is None
    step(gateway, lms, wf.innreach_item_shipped("TR-L1", barcode), plus(start, loans=1))
    step(gateway, lms, wf.innreach_item_checked_in("TR-L1", barcode), plus(start, loans=1))
    step(gateway, lms, _innreach_check_in(barcode), start)
    assert lms_loan(lms, barcode) is None

    other = items["ir_cancel"]
    step(gateway, lms, wf.innreach_item_requested("TR-L2", other), plus(start, holds=1))
    step(gateway, lms, wf.innreach_item_request_cancelled("TR-L2", other), start)
