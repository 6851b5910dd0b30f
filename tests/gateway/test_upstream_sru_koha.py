"""The SRU upstream in front of Koha's Zebra (``../shared/lms/koha-zebra``, run in place).

A real ``interlend serve`` with ``[backend] catalogue = "sru"`` points at Zebra's own SRU
service; yaz-client and zoomsh, as a broker would, search Interlend over Z39.50 and Zebra
directly over Z39.50: the hit counts agree for every index the SRU upstream maps, the OPAC
holdings Interlend renders agree with the 952 data item by item (by Koha's own reading of the
status subfields, written out here), and the temporary ILL items are never shown.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pymarc
import pytest

from tests.conftest import REPO
from tests.daemon import Daemon, start_daemon
from tests.gateway.test_upstream_holdings_koha import (  # noqa: F401 (the fixture)
    KohaZebra,
    koha_zebra,
)
from tests.z3950_clients import YAZ_CLIENT, ZOOMSH, need, opac_circulation, steps, yaz_client

ILL_BARCODES = ("ILL-0000901", "ILL-0000902")


def sru_config(port: int, **extra: str) -> str:
    """The shipped configuration with the catalogue from Koha's Zebra over SRU."""
    text = (REPO / "config" / "interlend.toml").read_text()
    table = "\n".join(f"{key} = {value}" for key, value in {
        "base_url": f'"http://127.0.0.1:{port}/biblios"',
        "profile": '{ name = "koha", temporary = { item_types = ["ILL"] } }',
        "timeout": "5", **extra}.items())
    replaced = text.replace('[backend]\nkind = "embedded"\n',
                            f'[backend]\nkind = "embedded"\ncatalogue = "sru"\n\n'
                            f'[backend.sru]\n{table}\n')
    assert replaced != text
    return replaced


@pytest.fixture(scope="module")
def gateway(koha_zebra: KohaZebra, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
            ) -> Iterator[Daemon]:
    need(("yaz-client", YAZ_CLIENT))
    running = start_daemon(tmp_path_factory.mktemp("sru-gateway"), sru_config(koha_zebra.port))
    try:
        yield running
    finally:
        running.kill()


# (what a broker sends Interlend, what the same search is on Zebra directly): the Use
# attribute Zebra gets through the CQL index Interlend writes (pqf.properties of Koha).
SEARCHES = [
    ("@attr 1=4 gardens", "@attr 1=4 gardens"),
    ("@attr 1=4 history", "@attr 1=4 history"),
    ("@attr 1=4 @attr 5=1 lend", "@attr 1=4 @attr 5=1 lend"),
    ("@attr 1=4 @attr 5=2 story", "@attr 1=4 @attr 5=2 story"),
    ("@attr 1=4 @attr 4=1 \"history of\"", "@attr 1=4 @attr 4=1 \"history of\""),
    ("@attr 1=1003 okafor", "@attr 1=1003 okafor"),
    ("@attr 1=1 marsh", "@attr 1=1003 marsh"),
    ("@attr 1=1004 okafor", "@attr 1=1 okafor"),
    ("@attr 1=21 libraries", "@attr 1=21 libraries"),
    ("@attr 1=1018 stackhouse", "@attr 1=1018 stackhouse"),
    ("@attr 1=1016 lighthouse", "@attr 1=1016 lighthouse"),
    ("@attr 1=1016 invented", "@attr 1=1016 invented"),
    ("@attr 1=7 9781921010019", "@attr 1=7 9781921010019"),
    ("@attr 1=8 1234-5679", "@attr 1=8 1234-5679"),
    ("@attr 1=12 17", "@attr 1=12 17"),
    ("@attr 1=1007 9781921010026", "@attr 1=1007 9781921010026"),
    ("@attr 1=54 eng", "@attr 1=54 eng"),
    ("@attr 1=31 @attr 2=4 2020", "@attr 1=30 @attr 2=4 2020"),
    ("@attr 1=31 @attr 2=2 2018", "@attr 1=30 @attr 2=2 2018"),
    ("@and @attr 1=4 history @attr 1=1003 okafor", "@and @attr 1=4 history @attr 1=1003 okafor"),
    ("@or @attr 1=4 gardens @attr 1=4 lighthouse", "@or @attr 1=4 gardens @attr 1=4 lighthouse"),
    ("@not @attr 1=1016 invented @attr 1=4 gardens",
     "@not @attr 1=1016 invented @attr 1=4 gardens"),
]


def hit_counts(tmp_path: Path, port: int, database: str, queries: list[str]) -> list[int | None]:
    output = yaz_client(tmp_path, port, [f"find {q}" for q in queries], database=database)
    found = [s for s in steps(output) if s.request.startswith("searchRequest")]
    assert len(found) == len(queries), output
    return [s.hits for s in found]


def test_hit_counts_equal_zebra_directly(gateway: Daemon, koha_zebra: KohaZebra,  # noqa: F811
                                         tmp_path: Path) -> None:
    ours = hit_counts(tmp_path, gateway.ports["z3950"], "Default", [q for q, _ in SEARCHES])
    theirs = hit_counts(tmp_path, koha_zebra.port, "biblios", [z for _, z in SEARCHES])
    assert dict(zip([q for q, _ in SEARCHES], ours)) == \
        dict(zip([q for q, _ in SEARCHES], theirs))
    assert all(count is not None and count > 0 for count in theirs), theirs


def test_zoomsh_hit_counts(gateway: Daemon, koha_zebra: KohaZebra) -> None:  # noqa: F811
    need(("zoomsh", ZOOMSH))
    from tests.z3950_clients import zoomsh
    for ours, direct in SEARCHES[:6]:
        via = zoomsh(f"connect tcp:127.0.0.1:{gateway.ports['z3950']}/Default",
                     f"find {ours}")
        zebra = zoomsh(f"connect tcp:127.0.0.1:{koha_zebra.port}/biblios", f"find {direct}")
        counts = [re.search(r": (\d+) hits", out) for out in (via, zebra)]
        assert all(counts), (via, zebra)
        assert counts[0].group(1) == counts[1].group(1), ours  # type: ignore[union-attr]


def koha_available(field: pymarc.Field) -> bool:
    """Koha's own reading of an item: on the shelf, loanable, at home, not lost, withdrawn,
    damaged or restricted."""
    def value(code: str) -> str:
        return str(field.get(code) or "0")

    return (field.get("q") is None and value("7") == "0" and value("1") == "0"
            and value("0") == "0" and value("4") == "0" and value("5") == "0"
            and field.get("a") == field.get("b"))


def test_opac_holdings_match_952_item_by_item(gateway: Daemon, koha_zebra: KohaZebra,  # noqa
                                              tmp_path: Path) -> None:
    numbers = sorted(koha_zebra.loaded, key=int)
    commands = ["format opac"]
    for number in numbers:
        commands += [f"find @attr 1=12 {number}", "show 1"]
    output = yaz_client(tmp_path, gateway.ports["z3950"], commands)
    assert not any(b in output for b in ILL_BARCODES), "a temporary ILL item was shown"
    shows = [s for s in steps(output) if s.request.startswith("presentRequest")]
    assert len(shows) == len(numbers)
    checked = 0
    for number, step in zip(numbers, shows):
        record = koha_zebra.loaded[number]
        own = [f for f in record.get_fields("952") if f.get("y") != "ILL"]
        if not own and record.get_fields("952"):
            assert step.find(r"^(Record type: OPAC)") is None, number   # never offered
            continue
        circulation = opac_circulation(step)
        expected = {str(f.get("p")): koha_available(f) for f in own}
        assert {item: data.get("availableNow") == "1" for item, data in circulation.items()} \
            == expected, number
        for f in own:
            if f.get("q"):
                assert circulation[str(f.get("p"))].get("availablityDate") == f.get("q")
        checked += len(own)
    assert checked >= 50


def test_usmarc_carries_no_lms_item_fields(gateway: Daemon, tmp_path: Path) -> None:
    """The LMS's 952 (staff notes, ILL items) stay behind; brokers get our holdings."""
    output = yaz_client(tmp_path, gateway.ports["z3950"],
                        ["format usmarc", "find @attr 1=12 901", "show 1"])
    assert "\n952 " not in output and "ILL-0000901" not in output
    assert "39999000009011" in output


def test_metrics_and_health_show_the_upstream(gateway: Daemon, tmp_path: Path) -> None:
    yaz_client(tmp_path, gateway.ports["z3950"], ["find @attr 1=4 gardens"])
    with urllib.request.urlopen(gateway.admin_url + "/metrics", timeout=10) as reply:
        metrics = reply.read().decode()
    assert re.search(r'interlend_upstream_calls_total\{kind="sru",operation="searchRetrieve",'
                     r'outcome="ok"\} [1-9]', metrics)
    health = gateway.admin_health()
    assert health["upstream"]["catalogue"]["status"] == "up", json.dumps(health)


def scan_entries(tmp_path: Path, port: int, database: str, query: str) -> list[str]:
    output = yaz_client(tmp_path, port, [f"scan {query}"], database=database)
    return [line.strip(" *") for line in output.splitlines()
            if re.match(r"^[ *] \S.* \(\d+\)$", line)]


def test_scan_lists_what_zebra_lists(gateway: Daemon, koha_zebra: KohaZebra,  # noqa: F811
                                     tmp_path: Path) -> None:
    ours = scan_entries(tmp_path, gateway.ports["z3950"], "Default", "@attr 1=4 gar")
    theirs = scan_entries(tmp_path, koha_zebra.port, "biblios", "@attr 1=4 gar")
    assert len(ours) >= 10
    assert [e.lower() for e in ours] == [e.lower() for e in theirs[:len(ours)]]
