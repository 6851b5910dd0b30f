"""What makes an NCIP request a repeat (issue 13.1), without a daemon: the replay keys the
workflows compute for broker requests in their own shapes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.task import Clock

from gateway.config import load_config
from gateway.listeners.ncip_http import NcipRequestContext
from gateway.ncip.exactly_once import ExactlyOnce
from gateway.ncip.service import NcipCall
from protocols.ncip.parser import parse_request
from tests import workflow_fixtures as wf


@pytest.fixture
def keys(tmp_path: Path) -> Any:
    path = tmp_path / "interlend.toml"
    path.write_text(wf.CONFIG)
    config = load_config(path)
    clock = Clock()
    clock.advance(1_800_000_000)
    gateway = SimpleNamespace(config=config, reactor=clock, audit=SimpleNamespace(
        patron_ref=lambda value: f"hashed-{value}" if value else None))
    exactly_once = ExactlyOnce(gateway, circulation=None)  # type: ignore[arg-type]
    peers = {peer.name: peer for peer in config.peers}

    def key(body: bytes, peer: str = "reshare") -> Any:
        envelope, _ = parse_request(body)
        return exactly_once.replay_key(NcipCall(envelope, peers[peer],
                                                NcipRequestContext("127.0.0.1", None), body))
    key.clock = clock  # type: ignore[attr-defined]
    return key


def test_a_repeat_has_the_same_key_a_reuse_does_not(keys: Any) -> None:
    """The same AcceptItem twice: one key. Another volume under the same RequestId, another
    patron, another date: other keys under the same RequestId (a new operation, not a
    replay), with the item and a hash of the user beside them to find a conflict."""
    first = keys(wf.reshare_accept_item("EAST-1", "P100", barcode="V1"))
    assert keys(wf.reshare_accept_item("EAST-1", "P100", barcode="V1")) == first
    assert first.request == "EAST-1" and first.item == "V1"
    assert first.user and "P100" not in first.user and "P100" not in first.key
    others = [keys(wf.reshare_accept_item("EAST-1", "P100", barcode="V2")),
              keys(wf.reshare_accept_item("EAST-1", "P101", barcode="V1")),
              keys(wf.reshare_accept_item("EAST-1", "P100", barcode="V1",
                                          date_for_return="2040-01-01"))]
    assert len({first.key, *(k.key for k in others)}) == 4
    assert {k.request for k in others} == {"EAST-1"}
    assert others[1].item == first.item and others[1].user != first.user
    # ILLiad: a second barcode, and a re-checkout with another date, under one transaction
    lend = keys(wf.illiad_check_out("LEND-1", "ILLPSEUDO", "7001", "2040-01-10"), "illiad")
    assert keys(wf.illiad_check_out("LEND-2", "ILLPSEUDO", "7001", "2040-01-10"),
                "illiad").key != lend.key
    assert keys(wf.illiad_check_out("LEND-1", "ILLPSEUDO", "7001", "2040-01-20"),
                "illiad").key != lend.key


def test_requests_without_a_request_id_are_keyed_by_their_item(keys: Any) -> None:
    """CheckInItem, DeleteItem and RenewItem without a RequestId are keyed by the item they
    name; a RenewItem without a date is a repeat the same day only; the same service for
    another peer or another item is another key; RequestItem without a RequestId has none."""
    check_in = keys(wf.reshare_check_in("V1"))
    assert check_in.request == "item:V1" and keys(wf.reshare_check_in("V1")) == check_in
    assert keys(wf.reshare_check_in("V2")).key != check_in.key
    assert keys(wf.reshare_delete_item("V1")).request == "item:V1"
    renew = keys(wf.reshare_renew("V1", "P100"))
    assert keys(wf.reshare_renew("V1", "P100")) == renew
    keys.clock.advance(86_400)
    assert keys(wf.reshare_renew("V1", "P100")).key != renew.key
    assert keys(wf.tipasa_check_in("V1"), "tipasa").peer == "tipasa"
    no_id = wf.ncip2("RequestItem", [wf.header("dcb-host", from_system="DCB"),
                                     wf.user_id("dcb-vpatron-1"), wf.item_id("LEND-010"),
                                     ("RequestType", "Hold"),
                                     ("RequestScopeType", "Item")], style="dcb")
    assert keys(no_id, "dcb") is None
