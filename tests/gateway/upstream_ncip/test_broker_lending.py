# -*- test-case-name: tests.gateway.upstream_ncip.test_broker_lending -*-
"""Lending through Interlend to the LMS: Tipasa's CheckOutItem to an institution and its
check-in by ILL request id, and DCB's supplier RequestItem, against the NCIPServer (Koha) peer
and an upstream Interlend in each dialect (``peers.DIALECTS``). The borrowing library's loans
and holds go to the LMS patron that ``institutional_user`` names; the LMS is counted after every
step, each step retried."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import workflow_fixtures as wf
from tests.daemon import Daemon
from tests.gateway.test_broker_clients import (
    dcb_request_item,
    tipasa_check_in_by_request,
    tipasa_lend,
)
from tests.gateway.upstream_ncip.peers import (
    DIALECTS,
    InterlendLms,
    KohaLms,
    Lms,
    each_lms,
    plus,
    start_gateway,
    step,
)
from tests.gateway.upstream_ncip.test_broker_borrowing import TIPASA

pytestmark = pytest.mark.slow

BOB = "23529000000029"   # Koha's patron standing for the borrowing libraries here


@pytest.fixture(scope="module", params=["koha", *DIALECTS])
def lms(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lms]:
    yield from each_lms(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def gateway(lms: Lms, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    user = BOB if isinstance(lms, KohaLms) else "INST-01XXX_INST"
    d = start_gateway(tmp_path_factory.mktemp("gateway"),
                      lms.config() + f'institutional_user = "{user}"\n')
    yield d
    d.kill()


def _items(lms: Lms) -> tuple[str, str]:
    return (("39999000000012", "39999000000038") if isinstance(lms, KohaLms)
            else ("LEND-010", "LEND-020"))


def _loan_patron(lms: Lms, barcode: str) -> str | None:
    if isinstance(lms, KohaLms):
        db = lms.peer.db()
        item = next(i for i in db["items"] if i["barcode"] == barcode)
        issue = next((x for x in db["issues"] if x["itemnumber"] == item["itemnumber"]), None)
        if issue is None:
            return None
        return str(next(b["cardnumber"] for b in db["borrowers"]
                        if b["borrowernumber"] == issue["borrowernumber"]))
    assert isinstance(lms, InterlendLms)
    row = wf.one(lms.daemon.database, "SELECT p.barcode FROM loans l JOIN items i ON"
                 " i.id = l.item_id JOIN patrons p ON p.id = l.patron_id WHERE i.barcode = ?"
                 " AND l.returned_at IS NULL", barcode)
    return row["barcode"] if row else None


def test_tipasa_lending(gateway: Daemon, lms: Lms) -> None:
    first, _ = _items(lms)
    start = lms.counts()
    step(gateway, lms, tipasa_lend(first, "NDOSU", "12345"), plus(start, loans=1), TIPASA)
    assert _loan_patron(lms, first) == (BOB if isinstance(lms, KohaLms)
                                        else "INST-01XXX_INST")
    step(gateway, lms, tipasa_check_in_by_request("12345"), start, TIPASA)
    assert _loan_patron(lms, first) is None


def test_dcb_supplier_request(gateway: Daemon, lms: Lms) -> None:
    _, second = _items(lms)
    start = lms.counts()
    reply = step(gateway, lms, dcb_request_item("b1003", second, "dcb-vpatron-1", "pr-7"),
                 plus(start, holds=1))
    assert wf.text(reply, "RequestIdentifierValue")
