# -*- test-case-name: tests.gateway.test_records -*-
"""Present: MARC 21, MARCXML, OPAC and SUTRS records with live holdings, through the service.

The fixtures (a seeded catalogue on a real Store) come from ``test_catalogue``.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymarc
import pytest
import pytest_twisted
from lxml import etree
from pyasn1.codec.ber import decoder, encoder

from gateway.backends.embedded.operations import check_in, check_out, place_hold
from gateway.z3950 import retrieval as render
from protocols.z3950 import oids
from protocols.z3950.asn1_records import OPACRecord
from protocols.z3950.client import read_records
from protocols.z3950.codec import (
    ResponseRecord,
    decode_pdu,
    encode_pdu,
    pdu_body,
    present_response,
)
from protocols.z3950.records import OpacRecord, opac_from_asn1, opac_to_asn1
from tests.gateway.test_catalogue import Env, due_in, known, make_record, open_env

MARCXML_NS = "{http://www.loc.gov/MARC21/slim}"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """The seeded catalogue of ``test_catalogue`` on a running Store."""
    yield from open_env(tmp_path)


async def fetch(env: Env, names: list[str], syntax: oids.Oid, element_set: str | None = "F",
                peer: str | None = None) -> list[Any]:
    """Fetch seeded records by name in ``syntax``; returns the ResponseRecord data."""
    ids = tuple(env.seeded.ids[n] for n in names)
    peer_obj = env.gateway.config.peer(peer) if peer else None
    out = await env.service.fetch(known("default", ids), 1, len(ids), syntax=syntax,
                                  element_set=element_set, database="Default", peer=peer_obj)
    records = [r for r in out if isinstance(r, ResponseRecord)]
    assert len(records) == len(out), out
    assert all(r.syntax == syntax and r.database == "Default" for r in records)
    return [r.data for r in records]


def subfields(field: pymarc.Field) -> dict[str, str]:
    """A holdings field's subfields as a dict (first value per code)."""
    out: dict[str, str] = {}
    for sf in field.subfields:
        out.setdefault(sf.code, sf.value)
    return out


def holdings_by_barcode(record: pymarc.Record, tag: str, code: str) -> dict[str, dict[str, str]]:
    """The holdings fields of ``tag`` keyed by their barcode subfield ``code``."""
    return {subfields(f)[code]: subfields(f) for f in record.get_fields(tag)}


async def lend(env: Env, barcode: str, days: int = 21) -> str:
    """Check an item out (as the NCIP service would); return the due date YYYY-MM-DD."""
    due = due_in(days)

    def work(conn: sqlite3.Connection) -> None:
        check_out(conn, item_id=env.seeded.item_ids[barcode], patron_id=env.seeded.patron_id,
                  due_at=due, now=datetime.now(UTC))
    await env.store.write(work)
    return due.date().isoformat()


# -- MARC 21 --------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_usmarc_with_852_holdings(env: Env) -> None:
    """USMARC is the stored record plus one 852 and one 876 per (non-temporary) item, UTF-8
    (leader/09 a), every subfield as MARC 21 defines it."""
    [data] = await fetch(env, ["pride"], oids.USMARC)
    assert isinstance(data, bytes)
    record = next(pymarc.MARCReader(data, to_unicode=True, force_utf8=True))
    assert record.leader[9] == "a"
    assert record["001"].data == "rec0001"
    assert record["245"]["a"] == "Pride and prejudice /"
    items = holdings_by_barcode(record, "852", "p")
    assert set(items) == {"B-PRIDE-1", "B-PRIDE-2"}  # ILL-TEMP-2 is temporary
    main = items["B-PRIDE-1"]
    assert main["a"] == "INTERLEND" and main["b"] == "Main Library" and main["c"] == "Stacks"
    assert main["h"] == "PR4034 .P7 1813" and main["t"] == "1" and main["z"] == "AVAILABLE"
    assert not {"g", "n", "r", "u"} & set(main)  # not MARC 21 (undefined, country, URI)
    item = holdings_by_barcode(record, "876", "p")["B-PRIDE-1"]
    assert (item["j"], item["t"]) == ("Available", "1") and "z" not in item


@pytest.mark.skipif(shutil.which("yaz-marcdump") is None, reason="yaz-marcdump (Debian yaz) "
                    "is not installed")
@pytest_twisted.ensureDeferred
async def test_usmarc_passes_yaz_marcdump(env: Env, tmp_path: Path) -> None:
    """Every record, in every holdings layout, is ISO 2709 that yaz-marcdump reads cleanly."""
    await lend(env, "B-SENSE-1")
    names = ["pride", "sense", "nature", "handbook", "cafe", "emma"]
    blobs = []
    for peer in (None, "koha", "symphony", "tlc"):
        for element_set in ("F", "B"):
            blobs += await fetch(env, names, oids.USMARC, element_set, peer)
    path = tmp_path / "out.mrc"
    path.write_bytes(b"".join(blobs))
    result = subprocess.run(["yaz-marcdump", "-f", "utf-8", "-t", "utf-8", "-i", "marc",
                             "-o", "marcxml", str(path)],
                            capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b"", result.stderr
    parsed = etree.fromstring(result.stdout)
    assert len(parsed.findall(f"{MARCXML_NS}record")) == len(blobs)
    assert "Café society".encode() in result.stdout


@pytest_twisted.ensureDeferred
async def test_holdings_tag_layouts(env: Env) -> None:
    """Koha 952, Symphony 926 and TLC 982 carry location, call number, barcode, availability."""
    due = await lend(env, "B-PRIDE-1")
    [koha] = [next(pymarc.MARCReader(d, to_unicode=True, force_utf8=True))
              for d in await fetch(env, ["pride"], oids.USMARC, peer="koha")]
    assert not koha.get_fields("852")
    items = holdings_by_barcode(koha, "952", "p")
    assert items["B-PRIDE-1"]["q"] == due and items["B-PRIDE-1"]["7"] == "0"
    assert "q" not in items["B-PRIDE-2"] and items["B-PRIDE-2"]["7"] == "0"
    assert items["B-PRIDE-2"]["a"] == "Branch" and items["B-PRIDE-2"]["c"] == "Fiction"
    assert items["B-PRIDE-2"]["o"] == "F AUS" and items["B-PRIDE-2"]["y"] == "3 weeks"

    [symphony] = [next(pymarc.MARCReader(d, to_unicode=True, force_utf8=True))
                  for d in await fetch(env, ["pride"], oids.USMARC, peer="symphony")]
    items = holdings_by_barcode(symphony, "926", "i")
    assert items["B-PRIDE-1"]["b"] == "CHECKEDOUT" and items["B-PRIDE-1"]["e"] == due
    assert items["B-PRIDE-2"]["b"] == "Fiction" and items["B-PRIDE-2"]["a"] == "Branch"
    assert items["B-PRIDE-2"]["c"] == "F AUS" and items["B-PRIDE-2"]["d"] == "3 weeks"

    [tlc] = [next(pymarc.MARCReader(d, to_unicode=True, force_utf8=True))
             for d in await fetch(env, ["pride"], oids.USMARC, peer="tlc")]
    items = holdings_by_barcode(tlc, "982", "i")
    assert items["B-PRIDE-1"]["1"] == "n" and items["B-PRIDE-2"]["1"] == "y"
    assert items["B-PRIDE-2"]["m"] == "F AUS" and items["B-PRIDE-2"]["b"] == "Branch"


def test_852_broker_profiles() -> None:
    """852-polaris adds $r In/Out (what ReShare's Polaris adapter reads), 852-evergreen $g
    barcode and $n status text (its Evergreen adapter); the default has neither."""
    marc = make_record("x1", "Title").as_marc()
    items = (render.ItemState("B-1", "Main", "Stacks", "QA1", "1", "available", "standard"),
             render.ItemState("B-2", "Main", "Stacks", "QA1", "2", "available", "standard",
                              due_at="2031-03-15T12:00:00+00:00"))
    record = render.CatalogueRecord(1, "x1", marc, items)

    def fields(layout: str) -> dict[str, dict[str, str]]:
        out = pymarc.Record(data=render.marc21(record, "F", render.Presentation(
            holdings_tag=layout)), to_unicode=True, force_utf8=True)
        return holdings_by_barcode(out, "852", "p")

    polaris, evergreen, plain = fields("852-polaris"), fields("852-evergreen"), fields("852")
    assert (polaris["B-1"]["r"], polaris["B-2"]["r"]) == ("In", "Out")
    assert (evergreen["B-1"]["n"], evergreen["B-2"]["n"]) == ("Available", "Checked out")
    assert evergreen["B-1"]["g"] == "B-1" and "r" not in evergreen["B-1"]
    assert not {"g", "n", "r"} & set(plain["B-1"])
    with pytest.raises(ValueError):
        render.holdings_fields(items[0], "853", "X")


def test_stored_holdings_fields_are_replaced_by_live_ones() -> None:
    """Holdings fields in the stored record (stale availability) never reach the output."""
    stale = pymarc.Field(tag="952", indicators=pymarc.Indicators(" ", " "), subfields=[
        pymarc.Subfield("p", "OLD-1"), pymarc.Subfield("q", "1999-01-01")])
    old852 = pymarc.Field(tag="852", indicators=pymarc.Indicators(" ", " "), subfields=[
        pymarc.Subfield("p", "OLD-2")])
    marc = make_record("x1", "Title", extra=(stale, old852)).as_marc()
    item = render.ItemState("NEW-1", "Main", "Stacks", "QA1", "1", "available", "standard")
    record = render.CatalogueRecord(1, "x1", marc, (item,))
    out = pymarc.Record(data=render.marc21(record, "F", render.Presentation(holdings_tag="952")),
                        to_unicode=True, force_utf8=True)
    assert [f["p"] for f in out.get_fields("952")] == ["NEW-1"]
    assert not out.get_fields("852")


@pytest_twisted.ensureDeferred
async def test_brief_element_set(env: Env) -> None:
    """Element set B keeps the identifying fields (001, 020, 100, 245, 264) and drops subjects."""
    [data] = await fetch(env, ["pride"], oids.USMARC, "b")
    record = next(pymarc.MARCReader(data, to_unicode=True, force_utf8=True))
    tags = {f.tag for f in record.fields}
    assert {"001", "020", "035", "100", "245", "264", "852"} <= tags
    assert "650" not in tags


# -- MARCXML --------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_marcxml_is_valid_and_reads_back(env: Env) -> None:
    """MARCXML is well-formed, in the MARC21 slim namespace, and pymarc reads it back whole."""
    [data] = await fetch(env, ["cafe"], oids.XML)
    root = etree.fromstring(data)
    assert root.tag == f"{MARCXML_NS}record"
    [record] = pymarc.parse_xml_to_array(io.BytesIO(data))
    assert record["245"]["a"] == "Café society"
    assert record["001"].data == "rec0005"
    assert not record.get_fields("852")  # no items
    [data] = await fetch(env, ["handbook"], oids.XML, "marcxml", peer="koha")
    [record] = pymarc.parse_xml_to_array(io.BytesIO(data))
    assert record["952"]["p"] == "B-HAND-1"


@pytest_twisted.ensureDeferred
async def test_opac_xml_element_set(env: Env) -> None:
    """XML with element set OP is YAZ's opacRecord XML, as SRU proxies give it to ReShare."""
    await lend(env, "B-PRIDE-1")
    [data] = await fetch(env, ["pride"], oids.XML, "OP")
    root = etree.fromstring(data)
    assert root.tag == "opacRecord"
    assert root.find(f"bibliographicRecord/{MARCXML_NS}record") is not None
    holdings = root.findall("holdings/holding")
    assert [h.findtext("circulations/circulation/itemId") for h in holdings] == [
        "B-PRIDE-2", "B-PRIDE-1"]
    assert [h.find("circulations/circulation/availableNow").get("value") for h in holdings] == [
        "1", "0"]
    assert holdings[0].findtext("localLocation") == "Branch"


# -- OPAC -----------------------------------------------------------------------------------------


def roundtrip(record: OpacRecord) -> OpacRecord:
    """Encode an OPAC record to BER and decode it back, as a client would."""
    encoded = encoder.encode(opac_to_asn1(record))
    value, rest = decoder.decode(encoded, asn1Spec=OPACRecord())
    assert rest == b""
    return opac_from_asn1(value)


@pytest_twisted.ensureDeferred
async def test_opac_record_roundtrips_with_holdings(env: Env) -> None:
    """OPAC: the MARC as USMARC plus one HoldingsAndCircData per item, through BER and back."""
    [data] = await fetch(env, ["pride"], oids.OPAC)
    assert isinstance(data, OpacRecord)
    opac = roundtrip(data)
    assert opac.bib_syntax == oids.USMARC and opac.bibliographic is not None
    bib = pymarc.Record(data=opac.bibliographic, to_unicode=True, force_utf8=True)
    assert bib["001"].data == "rec0001" and not bib.get_fields("852")
    by_item = {h.circulation[0].item_id: h for h in opac.holdings}
    assert set(by_item) == {"B-PRIDE-1", "B-PRIDE-2"}
    main = by_item["B-PRIDE-1"]
    assert (main.local_location, main.shelving_location, main.call_number, main.copy_number) == (
        "Main Library", "Stacks", "PR4034 .P7 1813", "1")
    assert main.nuc_code == "INTERLEND" and main.public_note == "AVAILABLE"
    circ = main.circulation[0]
    assert circ.available_now is True and circ.availability_date is None
    assert circ.available_thru == "3 weeks" and circ.on_hold is False


@pytest_twisted.ensureDeferred
async def test_opac_through_a_present_response(env: Env) -> None:
    """The OPAC ResponseRecord encodes in a PresentResponse PDU that decodes back."""
    ids = (env.seeded.ids["pride"], env.seeded.ids["emma"])
    out = await env.service.fetch(known("default", ids), 1, 2, syntax=oids.OPAC,
                                  element_set=None, database="Default", peer=None)
    pdu = present_response(next_result_set_position=3, records=out)
    decoded = read_records(pdu_body(decode_pdu(encode_pdu(pdu))))
    assert [d.oid for d in decoded] == [oids.OPAC, oids.OPAC]
    emma = opac_from_asn1(decoded[1].value)
    assert [c.item_id for h in emma.holdings for c in h.circulation] == ["B-EMMA-1"]


@pytest_twisted.ensureDeferred
async def test_live_availability_after_a_loan(env: Env) -> None:
    """A loan made through NCIP shows at the next fetch: availableNow 0 with the due date."""
    [before] = await fetch(env, ["emma"], oids.OPAC)
    assert roundtrip(before).holdings[0].circulation[0].available_now is True
    due = await lend(env, "B-EMMA-1", days=14)
    [after] = await fetch(env, ["emma"], oids.OPAC)
    holding = roundtrip(after).holdings[0]
    circ = holding.circulation[0]
    assert (circ.available_now, circ.availability_date, circ.item_id) == (False, due, "B-EMMA-1")
    assert holding.public_note == f"DUE {due}"
    [marc] = await fetch(env, ["emma"], oids.USMARC)
    parsed = pymarc.Record(data=marc, to_unicode=True, force_utf8=True)
    assert parsed["852"]["z"] == f"DUE {due}"
    assert (parsed["876"]["j"], parsed["876"]["z"]) == ("Checked out", f"Due {due}")

    def give_back(conn: sqlite3.Connection) -> None:
        check_in(conn, item_id=env.seeded.item_ids["B-EMMA-1"], now=datetime.now(UTC))
    await env.store.write(give_back)
    [back] = await fetch(env, ["emma"], oids.OPAC)
    assert roundtrip(back).holdings[0].circulation[0].available_now is True


@pytest_twisted.ensureDeferred
async def test_hold_makes_an_item_unavailable(env: Env) -> None:
    """An active hold on an item sets onHold and clears availableNow."""
    def hold(conn: sqlite3.Connection) -> None:
        place_hold(conn, patron_id=env.seeded.patron_id, record_id=env.seeded.ids["sense"],
                   item_id=env.seeded.item_ids["B-SENSE-1"], pickup_location="Main",
                   now=datetime.now(UTC))
    await env.store.write(hold)
    [data] = await fetch(env, ["sense"], oids.OPAC)
    circ = roundtrip(data).holdings[0].circulation[0]
    assert (circ.available_now, circ.on_hold) == (False, True)


@pytest_twisted.ensureDeferred
async def test_temporary_item_statuses(env: Env) -> None:
    """Items in transit or on the holds shelf are unavailable with a temporary location."""
    def status(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE items SET status = 'in_transit' WHERE barcode = 'B-HAND-1'")
    await env.store.write(status)
    [data] = await fetch(env, ["handbook"], oids.OPAC)
    circ = roundtrip(data).holdings[0].circulation[0]
    assert (circ.available_now, circ.temporary_location) == (False, "In transit")


# -- SUTRS ----------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sutrs_text(env: Env) -> None:
    """SUTRS is readable text with the main fields and one line per item."""
    await lend(env, "B-PRIDE-1")
    [data] = await fetch(env, ["pride"], oids.SUTRS)
    text = data.decode("utf-8")
    assert "Title: Pride and prejudice" in text
    assert "Author: Austen, Jane" in text
    assert "ISBN: 0-14-143951-3 (pbk.)" in text
    assert "Subject: Courtship Fiction" in text
    assert "Holdings:" in text
    lines = {line.split("barcode ")[1].split(";")[0]: line for line in text.splitlines()
             if "barcode " in line}
    assert set(lines) == {"B-PRIDE-1", "B-PRIDE-2"}
    assert "Checked out" in lines["B-PRIDE-1"] and "due " in lines["B-PRIDE-1"]
    assert "Available" in lines["B-PRIDE-2"]
    [brief] = await fetch(env, ["pride"], oids.SUTRS, "B")
    assert b"Subject:" not in brief and b"Title:" in brief


@pytest_twisted.ensureDeferred
async def test_sutrs_in_the_peer_charset(env: Env) -> None:
    """SUTRS text is encoded in the peer's configured character set."""
    from dataclasses import replace

    latin = replace(env.gateway.config.peer("folio"), z3950_charset="iso-8859-1")
    ids = (env.seeded.ids["cafe"],)
    [record] = await env.service.fetch(known("default", ids), 1, 1, syntax=oids.SUTRS,
                                       element_set="F", database="Default", peer=latin)
    assert isinstance(record, ResponseRecord)
    assert "Café".encode("iso-8859-1") in record.data


def test_marc_with_thousands_of_items_stays_valid_iso2709() -> None:
    """Items that would push a record past 99,999 bytes are left out, and a 500 note says how
    many of how many are shown; the record stays valid. A record that fits has no note."""
    marc = make_record("big", "Popular title").as_marc()
    items = tuple(render.ItemState(f"BC{i:06d}", "Main Library", "Stacks", "QA76 .P6", str(i),
                                   "available", "standard") for i in range(3000))
    record = render.CatalogueRecord(1, "big", marc, items)
    data = render.marc21(record, "F", render.Presentation())
    assert len(data) <= 99999 and int(data[:5]) == len(data)
    parsed = pymarc.Record(data=data, to_unicode=True, force_utf8=True)
    shown = len(parsed.get_fields("852"))
    assert 300 < shown < 3000 and len(parsed.get_fields("876")) == shown
    notes = [f["a"] for f in parsed.get_fields("500")]
    assert f"Holdings: {shown} of 3000 items shown; the record would pass the 99,999-byte " \
        "ISO 2709 limit. OPAC and MARCXML records list every item." in notes
    small = render.CatalogueRecord(1, "big", marc, items[:10])
    parsed = pymarc.Record(data=render.marc21(small, "F", render.Presentation()),
                           to_unicode=True, force_utf8=True)
    assert len(parsed.get_fields("852")) == 10 and not any(
        "items shown" in (f["a"] or "") for f in parsed.get_fields("500"))
    # MARCXML has no length limit: every item is there.
    xml = render.marcxml(record, "F", render.Presentation())
    assert xml.count(b'tag="852"') == 3000


@pytest_twisted.ensureDeferred
async def test_default_syntax(env: Env) -> None:
    """Without a syntax, records come as USMARC, or as OPAC for element set OP."""
    rs = known("default", (env.seeded.ids["emma"],))
    [plain] = await env.service.fetch(rs, 1, 1, syntax=None, element_set=None,
                                      database="Default", peer=None)
    [op] = await env.service.fetch(rs, 1, 1, syntax=None, element_set="op",
                                   database="Default", peer=None)
    assert isinstance(plain, ResponseRecord) and plain.syntax == oids.USMARC
    assert isinstance(op, ResponseRecord) and op.syntax == oids.OPAC
    assert isinstance(op.data, OpacRecord)


@pytest.mark.parametrize("codec,author,location", [
    ("marc-8", b"Moreau, \xe2Emile", "Bibliothèque".encode("marc-8")),
    ("iso8859-1", b"Moreau, \xc9mile", "Bibliothèque".encode("latin-1")),
])
def test_records_in_the_negotiated_charset(codec: str, author: bytes, location: bytes) -> None:
    """A negotiated record charset: USMARC in it (leader/09 blank, characters it lacks as
    &#xXXXX;), OPAC's MARC and holdings text in it, SUTRS in it; MARCXML stays UTF-8."""
    marc = make_record("x1", "Война и мир", author="Moreau, Émile").as_marc()
    item = render.ItemState("B-1", "Bibliothèque", "Stacks", "QA1", "1", "available",
                            "standard")
    record = render.CatalogueRecord(1, "x1", marc, (item,))
    view = render.Presentation(record_charset=codec)
    data = render.marc21(record, "F", view)
    assert author in data and data[9:10] == b" " and int(data[:5]) == len(data)
    if codec == "iso8859-1":
        assert b"&#x0412;&#x043E;&#x0439;&#x043D;&#x0430;" in data
    if codec == "marc-8":  # pymarc reads MARC-8 (leader/09 blank) back to Unicode
        parsed = pymarc.Record(data=data, to_unicode=True)
        assert (parsed["100"]["a"], parsed["245"]["a"]) == ("Moreau, Émile", "Война и мир")
    opac = render.opac(record, "F", view)
    assert author in (opac.bibliographic or b"")
    sent: object = opac.holdings[0].local_location  # bytes: sent as they are
    assert sent == location
    assert isinstance(roundtrip(opac), OpacRecord)
    assert author.replace(b"Moreau, ", b"") in render.sutrs(record, "F", view)
    assert "Émile".encode() in render.marcxml(record, "F", view)
