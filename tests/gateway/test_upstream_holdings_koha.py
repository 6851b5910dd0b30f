"""Koha holdings as a real Koha catalogue serves them: Zebra configured with Koha's own files
(``../shared/lms/koha-zebra``, run in place), its sample records plus records of our own with
temporary ILL items, fetched over Zebra's SRU service (MARCXML, 952 per item).

The Koha profile's reading is checked against Koha's own bookkeeping: the 999$x count of items
not on loan, and Zebra's item indexes (onloan, lost, withdrawn, damaged, notforloan).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymarc
import pytest
from lxml import etree

from gateway.backends.upstream.holdings import normalise
from gateway.backends.upstream.items import ItemStatus
from gateway.backends.upstream.opac_holdings import marc_from_xml
from gateway.backends.upstream.profile import HoldingsProfile
from tests.conftest import SHARED
from tests.z3950_clients import iso2709_records

S = ItemStatus
KOHA_ZEBRA = SHARED / "lms" / "koha-zebra"
SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True)
KOHA = HoldingsProfile.named("koha")
KOHA_WITH_ILL = HoldingsProfile.from_mapping(
    {"name": "koha", "temporary": {"item_types": ["ILL"]}}, "backend.catalogue.profile")
ALL_RECORDS = "@attr 1=12 @attr 2=4 @attr 4=109 0"
"""Every record: biblionumber (Local-number, 999$c) >= 0."""


@dataclass
class KohaZebra:
    port: int
    loaded: dict[str, pymarc.Record]
    """The records handed to zebraidx, by biblionumber."""


def field(tag: str, subfields: list[tuple[str, str]]) -> pymarc.Field:
    return pymarc.Field(tag=tag, indicators=pymarc.Indicators(" ", " "),
                        subfields=[pymarc.Subfield(c, v) for c, v in subfields])


def koha_record(biblionumber: int, title: str, items: list[list[tuple[str, str]]]) -> (
        pymarc.Record):
    """A record as Koha hands it to Zebra: 001, 245, 942, one 952 per item, 999 $c $d $x."""
    record = pymarc.Record(force_utf8=True)
    record.leader = pymarc.Leader("00000nam a2200000 i 4500")
    record.add_field(pymarc.Field(tag="001", data=str(biblionumber)))
    record.add_field(field("245", [("a", title)]))
    record.add_field(field("942", [("c", "BK")]))
    for item in items:
        status = [("0", "0"), ("1", "0"), ("4", "0"), ("7", "0")]
        record.add_field(field("952", status + item))
    not_on_loan = sum(not any(code == "q" for code, _ in item) for item in items)
    record.add_field(field("999", [("c", str(biblionumber)), ("d", str(biblionumber)),
                                   ("x", str(not_on_loan))]))
    return record


OWN_RECORDS = [
    # an own copy and a temporary ILL copy of the same title
    koha_record(901, "Borrowed and owned", [
        [("a", "CPL"), ("b", "CPL"), ("c", "GEN"), ("o", "025.6 BOR"),
         ("p", "39999000009011"), ("y", "BK")],
        [("a", "CPL"), ("b", "CPL"), ("c", "ILL"), ("p", "ILL-0000901"), ("y", "ILL")]]),
    # a temporary record: its only item is borrowed from another library, and on loan
    koha_record(902, "Borrowed for a patron", [
        [("a", "MPL"), ("b", "MPL"), ("c", "ILL"), ("p", "ILL-0000902"),
         ("q", "2026-12-24"), ("y", "ILL")]]),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def koha_zebra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KohaZebra]:
    """Koha's Zebra on a free loopback port with the sample and our own records; stopped after."""
    script = KOHA_ZEBRA / "setup-and-run.sh"
    if not script.is_file():
        pytest.skip(f"{script} not found")
    for tool in ("bash", "zebrasrv", "zebraidx", "yaz-marcdump", "yaz-client"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian packages idzebra-2.0, yaz)")
    tmp = tmp_path_factory.mktemp("koha-zebra")
    sample, own = tmp / "sample.xml", tmp / "own.xml"
    subprocess.run([sys.executable, str(KOHA_ZEBRA / "make-sample.py"), str(sample)],
                   check=True, capture_output=True, timeout=60)
    with open(own, "wb") as handle:
        writer = pymarc.XMLWriter(handle)
        for record in OWN_RECORDS:
            writer.write(record)
        writer.close(close_fh=False)
    loaded = {r["999"]["c"]: r for r in [*pymarc.parse_xml_to_array(str(sample)),
                                         *pymarc.parse_xml_to_array(str(own))] if r is not None}
    work, port = tmp / "zebra", free_port()
    started = subprocess.run(["bash", str(script), str(work), str(port), str(sample), str(own)],
                             capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        pytest.fail(f"koha-zebra did not start: {started.stderr[-2000:]}")
    try:
        yield KohaZebra(port, loaded)
    finally:
        subprocess.run(["bash", str(KOHA_ZEBRA / "stop.sh"), str(work)], capture_output=True,
                       timeout=60)


def sru_search(port: int, pqf: str, maximum: int = 100) -> tuple[int, list[pymarc.Record]]:
    """Zebra's SRU searchRetrieve with a PQF query (``x-pquery``): hit count and MARCXML."""
    query = urllib.parse.urlencode({"version": "1.1", "operation": "searchRetrieve",
                                    "x-pquery": pqf, "maximumRecords": str(maximum),
                                    "recordSchema": "marcxml"})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/biblios?{query}", timeout=30) as reply:
        root = etree.fromstring(reply.read(), SAFE_XML)
    diagnostics = [e.text for e in root.iter("{*}message")]
    assert not diagnostics, diagnostics
    count = int(root.findtext("{*}numberOfRecords") or "0")
    records = []
    for data in root.iter("{*}recordData"):
        record = marc_from_xml(next(e for e in data if isinstance(e.tag, str)))
        assert record is not None
        records.append(record)
    return count, records


def biblionumber(record: pymarc.Record) -> str:
    return str(record["999"]["c"])


def test_every_served_record_item_by_item(koha_zebra: KohaZebra) -> None:
    """All 32 records as Zebra serves them: Koha's 999$x equals the items we read as not on
    loan, and each item reads as it does in the record we loaded (status, barcode, due date)."""
    count, served = sru_search(koha_zebra.port, ALL_RECORDS)
    assert count == len(served) == len(koha_zebra.loaded) == 32
    for record in served:
        number = biblionumber(record)
        items = normalise(KOHA, record).items
        assert sum(i.status is not S.ON_LOAN for i in items) == int(record["999"]["x"]), number
        loaded = normalise(KOHA, koha_zebra.loaded[number]).items
        assert [(i.status, i.barcode, i.due_date) for i in items] == \
            [(i.status, i.barcode, i.due_date) for i in loaded], number


@pytest.mark.parametrize(("pqf", "ours"), [
    ("@attr 1=8024 @attr 5=1 2", {S.ON_LOAN}),                          # onloan: a due date
    ("@attr 1=8002 @attr 2=4 @attr 4=109 1", {S.LOST, S.MISSING}),      # itemlost >= 1
    ("@attr 1=8001 @attr 2=4 @attr 4=109 1", {S.WITHDRAWN}),            # withdrawn >= 1
    ("@attr 1=8005 @attr 2=4 @attr 4=109 1", {S.DAMAGED}),              # damaged >= 1
    ("@attr 1=8008 @attr 2=4 @attr 4=109 1", {S.NOT_FOR_LOAN}),         # notforloan >= 1
    ("@attr 1=8008 @attr 2=2 @attr 4=109 -1", {S.ON_ORDER}),            # notforloan <= -1
])
def test_statuses_agree_with_zebra_item_indexes(koha_zebra: KohaZebra, pqf: str,
                                                ours: set[ItemStatus]) -> None:
    """The records Zebra finds through Koha's item indexes are exactly those in which we read
    an item in the matching status."""
    count, found = sru_search(koha_zebra.port, pqf)
    assert count == len(found) > 0
    _, everything = sru_search(koha_zebra.port, ALL_RECORDS)
    expected = {biblionumber(r) for r in everything
                if any(i.status in ours for i in normalise(KOHA, r).items)}
    assert {biblionumber(r) for r in found} == expected


def test_temporary_ill_items_never_offered(koha_zebra: KohaZebra) -> None:
    """Searched by the ILL item's barcode (1=8023), the record comes back with only the
    library's own copy; the record whose only item is borrowed is temporary as a whole."""
    count, found = sru_search(koha_zebra.port, "@attr 1=8023 ILL-0000901")
    assert count == 1
    holdings = normalise(KOHA_WITH_ILL, found[0])
    assert [i.barcode for i in holdings.items] == ["39999000009011"]
    assert (holdings.temporary, holdings.temporary_record) == (1, False)
    _, found = sru_search(koha_zebra.port, "@attr 1=12 902")
    holdings = normalise(KOHA_WITH_ILL, found[0])
    assert (holdings.items, holdings.temporary, holdings.temporary_record) == ((), 1, True)
    assert len(normalise(KOHA, found[0]).items) == 1  # without the rule it would be offered


def test_usmarc_over_z3950_reads_the_same(koha_zebra: KohaZebra, tmp_path: Path) -> None:
    """The same records fetched over Z39.50 as ISO 2709 (what the Z39.50 upstream presents
    in USMARC) read item by item as their MARCXML over SRU does."""
    if shutil.which("yaz-client") is None:
        pytest.skip("yaz-client not installed")
    dump = tmp_path / "records.mrc"
    script = tmp_path / "commands.txt"
    script.write_text("\n".join([
        f"open tcp:127.0.0.1:{koha_zebra.port}/biblios", f"set_marcdump {dump}",
        "format usmarc", f"find {ALL_RECORDS}", "show 1+32", "quit"]) + "\n")
    subprocess.run(["yaz-client", "-f", str(script)], stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=60, check=True)
    over_z3950 = {biblionumber(r): r for r in
                  (pymarc.Record(data=data, to_unicode=True, force_utf8=True)
                   for data in iso2709_records(dump.read_bytes()))}
    _, over_sru = sru_search(koha_zebra.port, ALL_RECORDS)
    assert len(over_z3950) == len(over_sru) == 32
    for record in over_sru:
        ours = normalise(KOHA_WITH_ILL, over_z3950[biblionumber(record)])
        assert ours == normalise(KOHA_WITH_ILL, record), biblionumber(record)
