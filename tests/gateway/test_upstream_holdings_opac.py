"""OPAC holdings as a Z39.50 server sends them: the OPAC record syntax (ASN.1 ``OPACRecord``
decoded by our codec), from the Zebra of ``../shared/z3950/zebra-demo`` (run in place), whose
XSLT turns MARC 852/876 into OPAC holdings and circulation records.

The same items reach the gateway two ways, as an OPAC record (generic-opac profile) and as the
USMARC record with its 876 item fields (generic-marc profile); both must say the same.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator

import pymarc
import pytest

from gateway.backends.upstream.holdings import normalise
from gateway.backends.upstream.items import ItemStatus
from gateway.backends.upstream.profile import HoldingsProfile
from protocols.z3950 import client as origin
from protocols.z3950 import codec, oids
from protocols.z3950.records import DecodedExternal, OpacRecord, opac_from_asn1
from tests.conftest import SHARED
from tests.gateway.test_upstream_holdings_koha import free_port
from tests.z3950_clients import Raw

S = ItemStatus
ZEBRA_DEMO = SHARED / "z3950" / "zebra-demo"
GENERIC_OPAC = HoldingsProfile.named("generic-opac")
ITEMS_IN_876 = HoldingsProfile.from_mapping(
    {"name": "generic-marc", "holdings_tag": "876",
     "subfields": {"barcode": "p", "status": "j"}}, "backend.catalogue.profile")
LOCAL_IDS = ("rec0001", "rec0002", "rec0003")


@pytest.fixture(scope="module")
def zebra_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """zebra-demo's zebrasrv on a free loopback port; stopped (by its pid) after the module."""
    script = ZEBRA_DEMO / "setup-and-run.sh"
    if not script.is_file():
        pytest.skip(f"{script} not found")
    for tool in ("sh", "zebrasrv", "zebraidx", "yaz-marcdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian packages idzebra-2.0, yaz)")
    work, port = tmp_path_factory.mktemp("zebra-demo") / "work", free_port()
    started = subprocess.run(["sh", str(script), str(work), str(port)], capture_output=True,
                             text=True, timeout=120)
    pid_file = work / "zebrasrv.pid"
    if started.returncode != 0 or not pid_file.is_file():
        pytest.fail(f"zebra-demo did not start: {started.stderr[-2000:]}")
    pid = int(pid_file.read_text().strip())
    try:
        yield port
    finally:
        os.kill(pid, signal.SIGTERM)


def present(port: int, local_id: str, syntax: oids.Oid) -> DecodedExternal:
    """Init, search ``1=12 local_id`` (one hit), present record 1 in ``syntax``."""
    client = Raw(port)
    try:
        client.ask(origin.init_request())
        found = client.ask(origin.search_request(f"@attr 1=12 {local_id}",
                                                database_names=("Default",)))
        assert found is not None and int(codec.pdu_body(found)["resultCount"]) == 1
        response = client.ask(origin.present_request(preferred_record_syntax=syntax))
        assert response is not None
        records = origin.read_records(codec.pdu_body(response))
    finally:
        client.close()
    assert len(records) == 1 and isinstance(records[0], DecodedExternal), records
    return records[0]


def opac_record(port: int, local_id: str) -> OpacRecord:
    external = present(port, local_id, oids.OPAC)
    assert external.oid == oids.OPAC
    return opac_from_asn1(external.value)


def test_opac_record_over_z3950(zebra_demo: int) -> None:
    """The checked-out copy is unavailable (no due date in the record), the other available;
    the serial's holding has no circulation record, so no item, and a note says so."""
    items = normalise(GENERIC_OPAC, opac_record(zebra_demo, "rec0003")).items
    assert [(i.status, i.barcode, i.location, i.shelving_location, i.copy_number)
            for i in items] == [
        (S.UNAVAILABLE, "39000000000037", "MAIN", "Fiction", "1"),
        (S.AVAILABLE, "39000000000045", "BRANCH", "Fiction", "2")]
    serial = normalise(GENERIC_OPAC, opac_record(zebra_demo, "rec0002"))
    assert (serial.items, serial.notes) == ((), ("holding #1: no circulation record, no item",))


@pytest.mark.parametrize("local_id", LOCAL_IDS)
def test_opac_and_marc_items_agree(zebra_demo: int, local_id: str) -> None:
    """Each record through both routes: the same items, equally lendable."""
    by_opac = normalise(GENERIC_OPAC, opac_record(zebra_demo, local_id)).items
    usmarc = present(zebra_demo, local_id, oids.USMARC)
    marc = pymarc.Record(data=usmarc.data, to_unicode=True, force_utf8=True)
    by_marc = normalise(ITEMS_IN_876, marc).items
    assert [(i.barcode, i.lendable) for i in by_opac] == \
        [(i.barcode, i.lendable) for i in by_marc]
