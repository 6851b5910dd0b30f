# -*- test-case-name: tests.gateway.ncip.test_exactly_once -*-
"""Exactly once, in process (:mod:`gateway.ncip.exactly_once` on the embedded circulation
system): a repeat gets the first reply and changes nothing; a repeat in flight waits for the
first; a RequestId reused for another patron is refused by name; one RequestId names one
volume per ItemId; an item starting a new life is no longer answered by its old replies; and
the change, the reply's record and the audit row commit together or not at all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred

from gateway.backends.embedded.circulation import EmbeddedCirculation
from gateway.domain.books import Books
from gateway.domain.circulation import ICirculationChanges
from tests import workflow_fixtures as wf
from tests.gateway.ncip.harness import ImmediateStore, NcipHarness, result_of

T = TypeVar("T")


class HeldCirculation(EmbeddedCirculation):
    """The embedded circulation system whose units of work wait until the test lets them run
    (as they would in the writer's queue)."""

    def __init__(self, store: ImmediateStore) -> None:
        super().__init__(store)  # type: ignore[arg-type]
        self.held: list[tuple[Deferred[Any], Callable[..., Any]]] = []

    def transact(self, work: Callable[[ICirculationChanges, Books], T]) -> Deferred[T]:
        held: Deferred[T] = Deferred()
        self.held.append((held, work))
        return held

    def run_held(self, error: Exception | None = None) -> None:
        """Run every held unit of work (or fail it with ``error`` without running it)."""
        held, self.held = self.held, []
        for d, work in held:
            if error is not None:
                d.errback(error)
                continue
            super().transact(work).chainDeferred(d)


@pytest.fixture
def ncip(tmp_path: Path) -> Iterator[NcipHarness]:
    harness = NcipHarness(tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[NcipHarness, HeldCirculation]]:
    harness = NcipHarness(tmp_path, circulation=HeldCirculation)
    circulation = harness.circulation
    assert isinstance(circulation, HeldCirculation)
    yield harness, circulation
    harness.close()


def ok(ncip: NcipHarness, body: bytes) -> bytes:
    reply = ncip.reply(body)
    assert wf.problem(reply) is None, reply.decode()
    return reply


def audit(ncip: NcipHarness, rid: str) -> list[dict[str, Any]]:
    return wf.audit_rows(ncip.database, broker_request_id=rid)


def test_a_repeat_gets_the_first_reply_and_changes_nothing(ncip: NcipHarness) -> None:
    """AcceptItem sent twice: one temporary item, one hold, one tracked request, one stored
    reply; the repeat's reply is byte for byte the first; both exchanges are audited."""
    body = wf.reshare_accept_item("EO-1", "P100", barcode="V1")
    first = ok(ncip, body)
    after_first = wf.counts(ncip.database)
    assert ok(ncip, body) == first
    assert wf.counts(ncip.database) == after_first
    assert after_first["idempotency"] == 1
    assert [row["outcome"] for row in audit(ncip, "EO-1")] == ["success", "success"]


def test_a_repeat_in_flight_waits_for_the_first(
        held: tuple[NcipHarness, HeldCirculation]) -> None:
    """A repeat that arrives while the first is still in its unit of work runs no unit of
    its own: it gets the first one's reply once that has committed."""
    ncip, circulation = held
    body = wf.reshare_accept_item("EO-2", "P100", barcode="V1")
    before = wf.counts(ncip.database)
    first, second = ncip.handle(body), ncip.handle(body)
    assert len(circulation.held) == 1
    assert not first.called and not second.called
    circulation.run_held()
    assert result_of(first) == result_of(second)
    assert wf.problem(result_of(first)) is None
    after = wf.counts(ncip.database)
    assert (after["items"], after["rs_requests"], after["idempotency"]) == (
        before["items"] + 1, before["rs_requests"] + 1, before["idempotency"] + 1)


def test_a_failed_unit_fails_its_waiters_and_commits_nothing(
        held: tuple[NcipHarness, HeldCirculation]) -> None:
    """When the unit of work fails, the request and the repeat waiting for it both get
    Temporary Processing Failure, and nothing is recorded: a later retry is done afresh."""
    ncip, circulation = held
    body = wf.reshare_accept_item("EO-3", "P100", barcode="V1")
    before = wf.counts(ncip.database)
    first, second = ncip.handle(body), ncip.handle(body)
    circulation.run_held(RuntimeError("disk on fire"))
    assert wf.problem(result_of(first)) == "Temporary Processing Failure"
    assert wf.problem(result_of(second)) == "Temporary Processing Failure"
    assert wf.counts(ncip.database) == before
    retry = ncip.handle(body)
    circulation.run_held()
    assert wf.problem(result_of(retry)) is None
    assert wf.counts(ncip.database)["items"] == before["items"] + 1


def test_a_request_id_reused_for_another_patron_is_refused_by_name(ncip: NcipHarness) -> None:
    """The same RequestId and item for another patron is a Duplicate Request naming the
    conflict, never the first patron's reply; nothing changes."""
    ok(ncip, wf.reshare_accept_item("EO-4", "P100", barcode="V1"))
    before = wf.counts(ncip.database)
    reply = ncip.reply(wf.reshare_accept_item("EO-4", "P101", barcode="V1"))
    assert wf.problem(reply) == "Duplicate Request"
    assert "another patron" in reply.decode()
    assert wf.counts(ncip.database) == before


def test_one_request_id_names_one_volume_per_item_id(ncip: NcipHarness) -> None:
    """ReShare's multi-volume loan: one RequestId, two ItemIds, two temporary items each
    with its own tracked request; each volume's repeat gets its own first reply."""
    one = ok(ncip, wf.reshare_accept_item("EO-5", "P100", barcode="VOL-1"))
    two = ok(ncip, wf.reshare_accept_item("EO-5", "P100", barcode="VOL-2"))
    barcodes = {wf.text(one, "ItemIdentifierValue"), wf.text(two, "ItemIdentifierValue")}
    assert len(barcodes) == 2
    requests = wf.rows(ncip.database, "SELECT broker_item_id, item_barcode FROM rs_requests"
                                      " WHERE broker_request_id = 'EO-5' ORDER BY id")
    assert [(r["broker_item_id"], r["item_barcode"]) for r in requests] == [
        ("VOL-1", wf.text(one, "ItemIdentifierValue")),
        ("VOL-2", wf.text(two, "ItemIdentifierValue"))]
    assert ok(ncip, wf.reshare_accept_item("EO-5", "P100", barcode="VOL-2")) == two


def test_an_item_starting_a_new_life_is_not_answered_by_its_old_replies(
        ncip: NcipHarness) -> None:
    """A check-in without a RequestId is keyed by its item: repeated, it is answered from
    the stored reply; once the item is lent again, the same check-in is a new operation that
    ends the new loan."""
    accepted = ok(ncip, wf.reshare_accept_item("EO-6", "P100", barcode="NL-1"))
    ok(ncip, wf.reshare_check_out("NL-1", "P100"))
    first = ok(ncip, wf.reshare_check_in("NL-1"))
    stored = wf.counts(ncip.database)["idempotency"]
    assert ok(ncip, wf.reshare_check_in("NL-1")) == first
    assert wf.counts(ncip.database)["idempotency"] == stored
    ok(ncip, wf.reshare_check_out("NL-1", "P100"))
    ok(ncip, wf.reshare_check_in("NL-1"))
    loans = wf.rows(ncip.database, "SELECT l.returned_at FROM loans l JOIN items i ON"
                                   " i.id = l.item_id WHERE i.barcode = ?",
                    wf.text(accepted, "ItemIdentifierValue"))
    assert len(loans) == 2 and all(loan["returned_at"] for loan in loans)


def test_change_reply_record_and_audit_row_commit_in_one_unit(ncip: NcipHarness) -> None:
    """One state-changing request is one write: its change, its stored reply and its audit
    row commit in the same transaction (the audit row is not written after the reply)."""
    writes = ncip.store.writes
    ok(ncip, wf.reshare_accept_item("EO-7", "P100", barcode="V1"))
    assert ncip.store.writes == writes + 1
    rows = audit(ncip, "EO-7")
    assert len(rows) == 1 and rows[0]["operation"] == "AcceptItem"
    assert rows[0]["item_barcode"] == "EO-7"   # the barcode we chose (request-id policy)
