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
    KohaLms,
    Lms,
    each_lms,
    lms_loan,
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


def test_tipasa_lending(gateway: Daemon, lms: Lms) -> None:
    first, _ = _items(lms)
    start = lms.counts()
    step(gateway, lms, tipasa_lend(first, "NDOSU", "12345"), plus(start, loans=1), TIPASA)
    loan = lms_loan(lms, first)
    assert loan is not None and loan[0] == (BOB if isinstance(lms, KohaLms)
                                            else "INST-01XXX_INST")
    step(gateway, lms, tipasa_check_in_by_request("12345"), start, TIPASA)
    assert lms_loan(lms, first) is None


def test_dcb_supplier_request(gateway: Daemon, lms: Lms) -> None:
    _, second = _items(lms)
    start = lms.counts()
    reply = step(gateway, lms, dcb_request_item("b1003", second, "dcb-vpatron-1", "pr-7"),
                 plus(start, holds=1))
    assert wf.text(reply, "RequestIdentifierValue")
