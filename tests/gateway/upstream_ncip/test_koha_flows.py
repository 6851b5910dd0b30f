# -*- test-case-name: tests.gateway.upstream_ncip.test_koha_flows -*-
"""ReShare's borrowing flow through Interlend to the NCIPServer (Koha) peer, the LMS's state
checked after every step, and each step retried as after a client time-out (same reply, the
LMS unchanged)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests import workflow_fixtures as wf
from tests.gateway.test_broker_clients import ReShare
from tests.gateway.upstream_ncip.peers import (
    JANE,
    KOHA_AGENCY,
    KohaPeer,
    backend_config,
    koha,
    start_gateway,
)

pytestmark = pytest.mark.slow
__all__ = ["koha"]



def test_reshare_borrowing_through_interlend_to_koha(koha: KohaPeer, tmp_path: Path) -> None:
    d = start_gateway(tmp_path, backend_config(koha.url, "koha-ncipserver", KOHA_AGENCY,
                                               "KOHA"))
    try:
        start = koha.counts()
        # LookupUser: Koha's patron, by its card number
        user = wf.call(d, wf.reshare_lookup_user(JANE))
        assert ReShare.ok(user), user
        assert b"Jane" in user and b"Reader" in user
        # an unknown patron: Koha answers HTTP 500 with an HTML page; the broker gets a
        # schema-shaped Unknown User
        unknown = wf.call(d, wf.reshare_lookup_user("99999999999999"))
        [problem] = ReShare.problems(unknown)
        assert problem["type"] == "Unknown User"

        # AcceptItem: Koha makes a biblio, an item and a hold for Jane
        body = wf.reshare_accept_item("RS-K-1", JANE, barcode="LENDER-77", title="Dune Messiah")
        accepted = wf.call(d, body)
        assert ReShare.ok(accepted), accepted
        after = koha.counts()
        assert after["items"] == start["items"] + 1
        assert after["holds"] == start["holds"] + 1
        new_item = koha.db()["items"][-1]
        hold = koha.db()["reserves"][-1]
        assert hold["itemnumber"] == new_item["itemnumber"]
        assert wf.call(d, body) == accepted                  # a retry: same bytes
        assert koha.counts() == after                        # ... and no second item or hold

        # CheckOutItem by ReShare's ItemId: a loan in Koha on Koha's own barcode
        out_body = wf.reshare_check_out("LENDER-77", JANE)
        out = wf.call(d, out_body)
        assert ReShare.ok(out), out
        issues = koha.db()["issues"]
        assert [i["itemnumber"] for i in issues].count(new_item["itemnumber"]) == 1
        assert ReShare.field(out, "DateDue")
        assert wf.call(d, out_body) == out
        assert len(koha.db()["issues"]) == len(issues)

        # RenewItem: NCIPServer cannot renew (its handler never succeeds): Item Not Renewable,
        # the loan in Koha untouched
        renew = wf.call(d, wf.reshare_renew("LENDER-77", JANE))
        assert [p["type"] for p in ReShare.problems(renew)] == ["Item Not Renewable"], renew
        assert koha.db()["issues"] == issues

        # CheckInItem: the loan ends in Koha
        in_body = wf.reshare_check_in("LENDER-77")
        back = wf.call(d, in_body)
        assert ReShare.ok(back), back
        assert new_item["itemnumber"] not in [i["itemnumber"] for i in koha.db()["issues"]]
        assert wf.call(d, in_body) == back

        # the upstream legs are linked to the broker exchanges in the outbox
        outbox = d.database.with_name(d.database.name + ".ncip-outbox")
        deadline = time.monotonic() + 10    # marked committed just after the reply leaves
        while True:
            conn = sqlite3.connect(outbox)
            rows = conn.execute("SELECT service, state, unit FROM outbox ORDER BY id"
                                ).fetchall()
            conn.close()
            if all(r[1] == "committed" for r in rows) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        services = [r[0] for r in rows]
        assert services == ["AcceptItem", "CheckOutItem", "CheckInItem"], rows
        assert all(state == "committed" for _, state, _ in rows), rows
        # a broker request with a replay key is the unit its upstream legs are filed under
        assert rows[0][2].startswith("reshare|AcceptItem|RS-K-1#"), rows
        assert rows[2][2].startswith("reshare|CheckInItem|"), rows
        # both legs are in the audit log: the broker's exchange and the upstream one it caused
        legs = wf.rows(d.database, "SELECT operation, outcome, peer, notes, request_body"
                                   " FROM audit WHERE protocol = 'ncip-upstream' ORDER BY id")
        assert [(r["operation"], r["outcome"]) for r in legs] == [
            ("AcceptItem", "success"), ("CheckOutItem", "success"), ("CheckInItem", "success")]
        assert legs[0]["peer"] == "lms:koha-ncipserver"
        assert legs[0]["notes"] == "sent; for reshare|AcceptItem|RS-K-1"
        assert wf.rows(d.database, "SELECT id FROM audit WHERE protocol = 'ncip' AND peer ="
                       " 'reshare' AND operation = 'AcceptItem' AND broker_request_id = 'RS-K-1'")
        # redacted as the broker's are: Jane's card number is not in the stored body
        assert all(r["request_body"] and JANE not in r["request_body"] for r in legs)
    finally:
        d.kill()
        print("\n".join(d.lines[-40:]))
