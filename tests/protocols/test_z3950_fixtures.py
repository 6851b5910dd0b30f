"""Golden tests: every PDU captured from yaz-ztest 5.34.0 and Zebra 2.2.7 decodes, and
re-encodes to the same bytes (definite-length form), read in place from ``../shared``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from protocols.z3950 import client, codec, oids, pqf
from protocols.z3950.ber import BERFramer
from protocols.z3950.records import OpacRecord, SutrsRecord, decode_external, opac_from_asn1


@dataclass(frozen=True)
class CapturedPDU:
    """One line of a ``*.hex`` capture: direction (C>S or S>C), index and bytes."""

    session: str
    index: int
    direction: str
    data: bytes

    @property
    def id(self) -> str:
        return f"{self.session}-{self.index:02d}"


def load_session(path: Path) -> list[CapturedPDU]:
    """Parse a capture file (``DIR LEN HEX`` per line), checking each declared length."""
    pdus = []
    for index, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        direction, length, hexdata = line.split()
        data = bytes.fromhex(hexdata)
        assert len(data) == int(length), f"{path.name}:{index + 1} length mismatch"
        pdus.append(CapturedPDU(path.stem, index, direction, data))
    return pdus


def fixture_dir(shared_dir: Path) -> Path:
    """Where the captured sessions live inside ``../shared``."""
    return shared_dir / "z3950" / "fixtures"


def all_captured(shared_dir: Path) -> list[CapturedPDU]:
    """Every captured PDU of every ``*.hex`` session, in file order."""
    out: list[CapturedPDU] = []
    for path in sorted(fixture_dir(shared_dir).glob("*.hex")):
        out.extend(load_session(path))
    return out


@pytest.fixture(scope="module")
def captured(shared_dir: Path):
    """All captured PDUs from both sessions."""
    pdus = all_captured(shared_dir)
    assert len(pdus) == 38
    return pdus


@pytest.fixture(scope="module")
def yaz(shared_dir: Path):
    """The yaz-client <-> yaz-ztest session, decoded."""
    pdus = load_session(fixture_dir(shared_dir) / "yaz-ztest-session.hex")
    return [codec.decode_pdu(BERFramer().feed(p.data)[0]) for p in pdus]


@pytest.fixture(scope="module")
def zebra(shared_dir: Path):
    """The yaz-client <-> Zebra (OPAC holdings) session, decoded."""
    pdus = load_session(fixture_dir(shared_dir) / "zebra-opac-session.hex")
    return [codec.decode_pdu(BERFramer().feed(p.data)[0]) for p in pdus]


def _is_indefinite_anywhere(data: bytes) -> bool:
    """Whether the framer had to rewrite this PDU (it used an indefinite length)."""
    return BERFramer().feed(data)[0] != data


def test_every_captured_pdu_round_trips(captured) -> None:
    """Frame, decode, re-encode: definite-length originals come back byte for byte;
    indefinite ones come back as the framer's definite rewrite; re-decoding is stable."""
    for pdu in captured:
        [frame] = BERFramer().feed(pdu.data)
        decoded = codec.decode_pdu(frame, framed=True)
        encoded = codec.encode_pdu(decoded)
        assert encoded == frame, pdu.id
        if not _is_indefinite_anywhere(pdu.data):
            assert encoded == pdu.data, pdu.id
        again = codec.decode_pdu(encoded)
        assert codec.encode_pdu(again) == encoded, pdu.id
        assert again.prettyPrint() == decoded.prettyPrint(), pdu.id


def test_decode_pdu_accepts_indefinite_input_directly(captured) -> None:
    """decode_pdu normalises indefinite lengths itself, so raw captured bytes decode too."""
    for pdu in captured:
        direct = codec.decode_pdu(pdu.data)
        framed = codec.decode_pdu(BERFramer().feed(pdu.data)[0])
        assert codec.encode_pdu(direct) == codec.encode_pdu(framed), pdu.id


def test_whole_session_in_one_chunk_and_bytewise(captured) -> None:
    """A whole session fed at once, or one byte at a time, yields the same PDU list."""
    stream = b"".join(p.data for p in captured)
    at_once = BERFramer().feed(stream)
    framer = BERFramer()
    bytewise: list[bytes] = []
    for i in range(len(stream)):
        bytewise.extend(framer.feed(stream[i : i + 1]))
    assert at_once == bytewise
    assert len(at_once) == len(captured)
    assert framer.buffered == 0


def test_yaz_arms_in_order(yaz) -> None:
    """The yaz-ztest session decodes to the expected sequence of PDU arms."""
    arms = [codec.pdu_arm(p) for p in yaz]
    assert arms == (
        ["initRequest", "initResponse", "searchRequest", "searchResponse"]
        + ["presentRequest", "presentResponse"] * 5
        + ["searchRequest", "searchResponse"] * 3
        + ["scanRequest", "scanResponse", "sortRequest", "sortResponse", "close", "close"]
    )


def test_yaz_init(yaz) -> None:
    """The Init request/response fields read as yaz-client and GFS sent them."""
    req = codec.read_init_request(yaz[0])
    assert req.versions == {1, 2, 3}
    assert req.options == {
        "search", "present", "delSet", "triggerResourceCtrl", "scan", "sort",
        "extendedServices", "namedResultSets",
    }
    assert req.preferred_message_size == 0x04000000
    assert req.implementation_id == "81"
    assert req.implementation_name == "YAZ"
    assert req.authentication is None and req.charset_proposal is None
    body = codec.pdu_body(yaz[1])
    assert bool(body["result"]) is True
    assert body["implementationName"].asOctets() == b"GFS/YAZ"


def test_yaz_search_request_query(yaz) -> None:
    """The first search is bib-1 ``@attr 1=4 computer`` on database Default, set "1"."""
    req = codec.read_search_request(yaz[2])
    assert req.database_names == ("Default",)
    assert req.result_set_name == "1"
    assert req.query_type == "type-1"
    assert req.query is not None
    assert pqf.to_pqf(req.query) == "@attr 1=4 computer"
    assert req.query.attribute_set == oids.BIB1_ATTRSET
    body = codec.pdu_body(yaz[3])
    assert int(body["resultCount"]) == 23


def test_yaz_present_requests_syntaxes_and_esn(yaz) -> None:
    """Present requests carry USMARC, XML, OPAC, XML with ESN "OP", and SUTRS."""
    infos = [codec.read_present_request(yaz[i]) for i in (4, 6, 8, 10, 12)]
    assert [i.preferred_record_syntax for i in infos] == [
        oids.USMARC, oids.XML, oids.OPAC, oids.XML, oids.SUTRS,
    ]
    assert infos[3].element_set_name == "OP"
    assert [i.start for i in infos] == [1, 2, 3, 1, 1]
    assert all(i.result_set_id == "1" and i.count == 1 for i in infos)


def test_yaz_present_records(yaz) -> None:
    """USMARC/XML records are octet-aligned bytes; OPAC and SUTRS decode in the 2nd pass."""
    marc = client.read_records(codec.pdu_body(yaz[5]))[0]
    assert marc.oid == oids.USMARC and marc.encoding == "octet-aligned"
    assert marc.data.startswith(b"00366nam")
    xml = client.read_records(codec.pdu_body(yaz[7]))[0]
    assert xml.oid == oids.XML and b"http://www.loc.gov/MARC21/slim" in xml.data
    opac = client.read_records(codec.pdu_body(yaz[9]))[0]
    assert opac.oid == oids.OPAC and opac.encoding == "single-ASN1-type"
    model = opac_from_asn1(opac.value)
    assert isinstance(model, OpacRecord)
    assert model.bibliographic is not None and model.bibliographic.startswith(b"01369cam")
    [holding] = model.holdings
    assert holding.nuc_code == "s-FM/GC"
    assert holding.local_location == "Main or Science/Business Reading Rms - STORED OFFSITE"
    assert holding.call_number == "MLCM 89/00602 (N)"
    [item] = holding.circulation
    assert item.available_now is True and item.item_id == "1226176"
    assert item.renewable is False and item.on_hold is False
    opacxml = client.read_records(codec.pdu_body(yaz[11]))[0]
    assert opacxml.data.lstrip().startswith(b"<opacRecord")
    sutrs = client.read_records(codec.pdu_body(yaz[13]))[0]
    assert isinstance(sutrs.value, SutrsRecord)
    assert sutrs.value.asOctets().startswith(b"This is dummy SUTRS record number 1")


def test_yaz_search_diagnostic_109(yaz) -> None:
    """Searching database nosuchdb fails with bib-1 diagnostic 109, v2 addinfo 'nosuchdb'."""
    req = codec.read_search_request(yaz[18])
    assert req.database_names == ("nosuchdb",)
    body = codec.pdu_body(yaz[19])
    assert bool(body["searchStatus"]) is False
    [diag] = client.read_diagnostics(body)
    assert diag == codec.Diagnostic(109, "nosuchdb", oids.BIB1_DIAGSET, v2=True)


def test_yaz_scan_sort_close(yaz) -> None:
    """Scan, Sort and Close read back as yaz-client printed them."""
    scan = codec.read_scan_request(yaz[20])
    assert scan.term == pqf.Term("a", (pqf.Attribute(None, 1, 4),))
    assert scan.number_of_terms == 20
    body = codec.pdu_body(yaz[21])
    assert int(body["numberOfEntriesReturned"]) == 20
    first = body["entries"]["entries"][0]["termInfo"]
    assert first["term"]["general"].asOctets() == b"A"
    assert int(first["globalOccurrences"]) == 249
    sort = codec.read_sort_request(yaz[22])
    assert sort.keys[0].attributes == (pqf.Attribute(None, 1, 4),)
    assert int(codec.pdu_body(yaz[23])["sortStatus"]) == 0
    assert codec.read_close(yaz[24]).reason == 0
    answer = codec.read_close(yaz[25])
    assert answer.diagnostic_information == "Association terminated by client"


def test_zebra_opac_holdings(zebra) -> None:
    """Zebra's OPAC record has two holdings: MAIN copy checked out, BRANCH available."""
    [record] = client.read_records(codec.pdu_body(zebra[5]))
    model = opac_from_asn1(record.value)
    assert [h.local_location for h in model.holdings] == ["MAIN", "BRANCH"]
    assert [h.circulation[0].available_now for h in model.holdings] == [False, True]
    assert model.holdings[0].circulation[0].item_id == "39000000000037"


def test_zebra_search_result_1_and_diag_114(zebra) -> None:
    """additionalSearchInfo carries searchResult-1; an unknown Use gives diag 114."""
    body = codec.pdu_body(zebra[3])
    [unit] = list(body["additionalSearchInfo"])
    ext = decode_external(unit["information"]["externallyDefinedInfo"])
    assert ext.oid == oids.USERINFO_SEARCH_RESULT_1
    assert int(ext.value[0]["subqueryCount"]) == 1
    [diag] = client.read_diagnostics(codec.pdu_body(zebra[9]))
    assert (diag.condition, diag.addinfo) == (114, "9999")
