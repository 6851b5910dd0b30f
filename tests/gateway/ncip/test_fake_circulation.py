# -*- test-case-name: tests.gateway.ncip.test_fake_circulation -*-
"""The circulation systems checked against :class:`ICirculation`: the embedded one and the
in-memory fake of :mod:`gateway.testing`, which then serves the NCIP workflows in process
(lookups, a borrowed item's life, exactly-once replays, all-or-nothing units of work)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from zope.interface.verify import verifyClass, verifyObject

from gateway.backends.embedded.circulation import EmbeddedChanges, EmbeddedCirculation
from gateway.domain.circulation import ICirculation, ICirculationChanges
from gateway.storage.store import open_database
from gateway.testing import FakeChanges, FakeCirculation, demo_circulation_state
from tests import workflow_fixtures as wf
from tests.gateway.ncip.harness import ImmediateStore, NcipHarness, result_of


def test_the_fake_and_the_embedded_system_provide_the_interfaces(tmp_path: Path) -> None:
    """Both circulation systems, and the facades their units of work get, provide every
    method of the interfaces with the interfaces' signatures."""
    fake = FakeCirculation()
    assert verifyObject(ICirculation, fake)
    assert verifyObject(ICirculationChanges, FakeChanges(fake.state))
    store = ImmediateStore(tmp_path / "db.sqlite3")
    assert verifyObject(ICirculation, EmbeddedCirculation(store))  # type: ignore[arg-type]
    assert verifyObject(ICirculationChanges, EmbeddedChanges(open_database(tmp_path / "x")))
    assert verifyClass(ICirculation, EmbeddedCirculation)
    store.close()


@pytest.fixture
def ncip(tmp_path: Path) -> Iterator[NcipHarness]:
    harness = NcipHarness(tmp_path, circulation=lambda _store: FakeCirculation())
    yield harness
    harness.close()


def fake(ncip: NcipHarness) -> FakeCirculation:
    circulation = ncip.circulation
    assert isinstance(circulation, FakeCirculation)
    return circulation


def ok(ncip: NcipHarness, body: bytes) -> bytes:
    reply = ncip.reply(body)
    assert wf.problem(reply) is None, reply.decode()
    return reply


def test_lookup_user_from_the_fake(ncip: NcipHarness) -> None:
    """LookupUser answers from the fake's patrons: name and barcode; a wrong PIN is refused,
    an unknown patron is Unknown User."""
    reply = ok(ncip, wf.reshare_lookup_user("P100"))
    assert wf.text(reply, "Surname") == "Reader"
    assert "P100" in wf.texts(reply, "UserIdentifierValue")
    assert wf.problem(ncip.reply(wf.reshare_lookup_user("P999"))) == "Unknown User"


def test_a_borrowed_item_lives_and_ends_in_the_fake(ncip: NcipHarness) -> None:
    """AcceptItem, CheckOutItem, CheckInItem on the fake: a temporary item on the hold shelf,
    then on loan, then in transit back; its request tracked through each step."""
    accepted = ok(ncip, wf.reshare_accept_item("FK-1", "P100", barcode="V1"))
    barcode = wf.text(accepted, "ItemIdentifierValue")
    assert barcode is not None
    state = fake(ncip).state
    item = FakeChanges(state).item_by_barcode(barcode)
    assert item is not None and item.temporary and item.status == "on_hold_shelf"
    ok(ncip, wf.reshare_check_out("V1", "P100"))
    state = fake(ncip).state
    assert FakeChanges(state).open_loan(item.id) is not None
    ok(ncip, wf.reshare_check_in("V1"))
    state = fake(ncip).state
    item = FakeChanges(state).item_by_id(item.id)
    assert item is not None and item.status == "in_transit"
    [request] = state.requests.values()
    assert request.state == "checked_in" and request.checked_out_at is not None
    assert [entry.operation for entry in state.audit] == ["AcceptItem", "CheckOutItem",
                                                          "CheckInItem"]


def test_a_repeat_is_answered_from_the_fakes_books(ncip: NcipHarness) -> None:
    """The exactly-once machinery keeps its replies in the fake's books: a repeat gets the
    first reply and runs no change."""
    body = wf.reshare_accept_item("FK-2", "P100", barcode="V1")
    first = ok(ncip, body)
    items = len(fake(ncip).state.items)
    assert ok(ncip, body) == first
    assert len(fake(ncip).state.items) == items and len(fake(ncip).state.replies) == 1


def test_a_failing_unit_of_work_leaves_the_fake_unchanged() -> None:
    """A unit of work that raises half-way leaves no trace: the state is the one before."""
    circulation = FakeCirculation(demo_circulation_state())
    before = len(circulation.state.patrons)

    def half_done(changes: ICirculationChanges, books: object) -> None:
        changes.ensure_institutional_patron("INST-X", "reshare", "X")
        raise RuntimeError("the network went away")

    with pytest.raises(RuntimeError):
        result_of(circulation.transact(half_done))
    assert len(circulation.state.patrons) == before and circulation.units == 0
