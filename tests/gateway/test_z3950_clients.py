"""Real-client conformance: yaz-client, zoomsh and yaz-marcdump against a running daemon.

One ``interlend serve`` process (``tests/daemon.py``) serves a small catalogue seeded through the
embedded backend (:data:`CORPUS`: ISBN-10 and -13 forms with and without hyphens, ISSN, OCLC
numbers, subjects, years, items with one on loan, a temporary borrowed record, a record whose
stored MARC is broken and a record with more than a thousand distinct words). Each test runs a
few client processes with batched commands and checks what the clients printed: hits, record
contents, holdings, scan terms and counts, sort order, and every Bib-1 diagnostic with its
addinfo. Skipped cleanly without the Debian ``yaz`` programs.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from protocols.z3950 import client as origin
from protocols.z3950 import codec
from tests.daemon import REPO, Daemon, start_daemon
from tests.z3950_clients import (
    YAZ_MARCDUMP,
    ZOOMSH,
    Bib,
    Raw,
    Step,
    catalogue_daemon,
    iso2709_records,
    marcdump,
    need,
    seed_catalogue,
    steps,
    yaz_client,
    zoomsh,
)

pytestmark = pytest.mark.slow

MANY_WORDS = " ".join(f"zq{n:04d}" for n in range(1100))

CORPUS = (
    Bib("cl-001", "The river of time", "Zander, Alice", "2001", ("Rivers -- History",),
        isbn="0-262-01153-0", oclc="(OCoLC)ocm00012345", note="Interlend conformance corpus",
        items=("CL-1001", "CL-1002")),
    Bib("cl-002", "A garden of rivers", "Brown, Carol", "1995", ("Gardening",),
        isbn="978-0-13-110362-7", note="Interlend conformance corpus", items=("CL-2001",)),
    Bib("cl-003", "Ocean voyages", "Moreau, Émile", "2010", ("Oceans", "Rivers"),
        issn="0028-0836", oclc="(OCoLC)34117863", note="Interlend conformance corpus",
        items=("CL-3001",)),
    Bib("cl-004", "Zebra crossings : a history", "Adams, Douglas", "2005", ("Rivers",),
        isbn="9780201633610", note="Interlend conformance corpus"),
    Bib("cl-005", "Mountain rivers", "Young, Pat", "1980", ("Mountains",), issn="0317-8471",
        note="Interlend conformance corpus", items=("CL-5001",)),
    Bib("cl-006", "Broken stored record", "Nobody, N."),
    Bib("cl-007", "Vocabulary flood", "Wordy, W.", note=MANY_WORDS),
    Bib("cl-tmp", "Secret borrowed river", "Lender, Ann", "2003", ("Rivers",),
        isbn="9780465026562", note="Interlend conformance corpus", items=("CL-TMP-1",),
        temporary=True),
)
LOANS = {"CL-1002": "2031-03-15"}
"""Barcode → due date: the one item on loan."""

CORPUS_QUERY = "@attr 1=1016 conformance"
"""Finds cl-001 … cl-005 (the temporary record has the word too, and must not be found)."""


def seed(path: Path) -> dict[str, int]:
    """Seed the corpus, then break cl-006's stored MARC so that it cannot be presented."""
    ids = seed_catalogue(path, CORPUS, LOANS)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE records SET marc = ? WHERE local_id = 'cl-006'",
                     (b"99999nam  this is not ISO 2709",))
    conn.close()
    return ids


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The daemon on the seeded corpus, for the whole module."""
    yield from catalogue_daemon(tmp_path_factory, "clients", seed)


@pytest.fixture
def port(daemon: Daemon) -> int:
    return daemon.ports["z3950"]


def local_numbers(step: Step) -> list[str]:
    """The ``Local number:`` lines of SUTRS records a present printed, in order."""
    return step.find_all(r"^Local number: (\S+)")


def run(tmp_path: Path, port: int, commands: list[str], **kwargs: object) -> list[Step]:
    """One yaz-client process; its steps after the Init (which must have been accepted)."""
    init, *rest = steps(yaz_client(tmp_path, port, commands, **kwargs))  # type: ignore[arg-type]
    assert init.find(r"Connection (accepted)"), init.lines
    return rest


# -- Search ---------------------------------------------------------------------------------------

SEARCHES: list[tuple[str, list[str]]] = [
    # local number, as ReShare sends it first
    ("@attr 1=12 cl-003", ["cl-003"]),
    ("@attr 1=12 cl-tmp", []),                           # temporary: never found
    # ISBN: stored as ISBN-10 with hyphens, found by either form with or without hyphens
    ("@attr 1=7 0262011530", ["cl-001"]),
    ("@attr 1=7 0-262-01153-0", ["cl-001"]),
    ("@attr 1=7 9780262011532", ["cl-001"]),
    ('@attr 1=7 "978-0-262-01153-2"', ["cl-001"]),
    # stored as hyphenated ISBN-13, and as bare ISBN-13
    ("@attr 1=7 0131103628", ["cl-002"]),
    ("@attr 1=7 0-13-110362-8", ["cl-002"]),
    ("@attr 1=7 9780131103627", ["cl-002"]),
    ("@attr 1=7 0201633612", ["cl-004"]),
    ("@attr 1=7 978-0-201-63361-0", ["cl-004"]),
    ("@attr 1=7 9780465026562", []),                     # the temporary record's ISBN
    ("@attr 1=7 @attr 5=1 978013", ["cl-002"]),          # right-truncated identifier
    # ISSN with and without the hyphen
    ("@attr 1=8 0028-0836", ["cl-003"]),
    ("@attr 1=8 00280836", ["cl-003"]),
    ("@attr 1=8 03178471", ["cl-005"]),
    # OCLC number: bare, with prefix, with leading zeros
    ("@attr 1=1211 12345", ["cl-001"]),
    ("@attr 1=1211 (OCoLC)ocm00012345", ["cl-001"]),
    ("@attr 1=1211 34117863", ["cl-003"]),
    # words
    ("@attr 1=4 river", ["cl-001"]),
    ('@attr 1=4 "garden of rivers"', ["cl-002"]),
    ("@attr 1=4 @attr 4=1 @attr 3=1 \"mountain rivers\"", ["cl-005"]),
    ("@attr 1=4 secret", []),                            # temporary title word
    ("@attr 1=1003 moreau", ["cl-003"]),
    ("@attr 1=1003 emile", ["cl-003"]),                  # diacritics folded
    ("@attr 1=1003 Émile", ["cl-003"]),
    ("@attr 1=21 rivers", ["cl-001", "cl-003", "cl-004"]),
    ("@attr 1=21 history", ["cl-001"]),
    (CORPUS_QUERY, ["cl-001", "cl-002", "cl-003", "cl-004", "cl-005"]),
    ("@attr 1=1016 0-262-01153-0", ["cl-001"]),          # any: also an identifier lookup
    ("conformance", ["cl-001", "cl-002", "cl-003", "cl-004", "cl-005"]),  # no Use = any
    # year of publication with every relation
    ("@attr 1=31 @attr 2=1 2005", ["cl-001", "cl-002", "cl-005"]),
    ("@attr 1=31 @attr 2=2 2005", ["cl-001", "cl-002", "cl-004", "cl-005"]),
    ("@attr 1=31 @attr 2=3 2005", ["cl-004"]),
    ("@attr 1=31 2005", ["cl-004"]),
    ("@attr 1=31 @attr 2=4 2005", ["cl-003", "cl-004"]),
    ("@attr 1=31 @attr 2=5 2005", ["cl-003"]),
    ("@attr 1=31 @attr 2=6 2005", ["cl-001", "cl-002", "cl-003", "cl-005"]),
    # booleans
    ("@and @attr 1=21 rivers @attr 1=4 river", ["cl-001"]),
    ("@or @attr 1=4 ocean @attr 1=4 mountain", ["cl-003", "cl-005"]),
    ("@not @attr 1=1016 conformance @attr 1=21 rivers", ["cl-002", "cl-005"]),
    ("@or @and @attr 1=31 @attr 2=1 2000 @attr 1=4 rivers @attr 1=12 cl-004",
     ["cl-002", "cl-004", "cl-005"]),
    # truncation
    ("@attr 1=4 @attr 5=1 riv", ["cl-001", "cl-002", "cl-005"]),
    ("@attr 1=4 @attr 5=2 ivers", ["cl-002", "cl-005"]),
    ("@attr 1=4 @attr 5=3 ive", ["cl-001", "cl-002", "cl-005"]),
    ("@attr 1=4 @attr 5=101 r#s", ["cl-002", "cl-005"]),
    ("@attr 1=1003 @attr 5=1 zan", ["cl-001"]),
]


def test_yaz_client_searches_every_access_point(port: int, tmp_path: Path) -> None:
    """Every supported access point, relation, boolean and truncation finds exactly the right
    records, in record order, through one yaz-client session: local id (1=12), ISBN-10/-13 with
    and without hyphens (1=7), ISSN (1=8), OCLC (1=1211), title, author, subject, any, year
    with relations 1-6, @and/@or/@not and truncation 1/2/3/101; the temporary (borrowed)
    record is never found. Each hit list is checked by presenting SUTRS and reading the local
    numbers back."""
    commands = ["format sutrs", "elements B"]
    for query, expected in SEARCHES:
        commands.append(f"find {query}")
        if expected:
            commands.append(f"show 1+{len(expected)}")
    found = iter(run(tmp_path, port, commands))
    for query, expected in SEARCHES:
        search = next(found)
        assert search.find(r"Search was a (success)"), (query, search.lines)
        assert search.hits == len(expected), (query, search.lines)
        if expected:
            present = next(found)
            assert local_numbers(present) == expected, (query, present.lines)


# -- Present --------------------------------------------------------------------------------------


def marc_tags(step: Step) -> list[str]:
    """The tags of the MARC fields yaz-client printed for one record, in order."""
    return step.find_all(r"^(\d{3}) ")


def xml_record(step: Step, root: str) -> etree._Element:
    """The XML document yaz-client printed (it is followed by text on the same line)."""
    text = step.text
    start = text.index(f"<{root}")
    end = text.index(f"</{root}>") + len(root) + 3
    return etree.fromstring(text[start:end].encode())


def test_yaz_client_presents_four_syntaxes_with_both_element_sets(port: int,
                                                                   tmp_path: Path) -> None:
    """cl-001 (two copies, one on loan) in USMARC, MARCXML, OPAC and SUTRS, element sets F and
    B: F has the notes and subjects, B only the brief fields; MARC/MARCXML carry live 852
    holdings (status, barcode, due date), OPAC carries one holding per copy with availableNow,
    availablityDate and the barcode as itemId, OPAC-XML (element set OP) the same; SUTRS lists
    the copies."""
    out = run(tmp_path, port, [
        "find @attr 1=12 cl-001",
        "format usmarc", "elements F", "show 1", "elements B", "show 1",
        "format xml", "elements F", "show 1", "elements B", "show 1",
        "format opac", "elements F", "show 1", "elements B", "show 1",
        "format sutrs", "elements F", "show 1", "elements B", "show 1",
        "format xml", "elements OP", "show 1"])
    search, marc_f, marc_b, xml_f, xml_b, opac_f, opac_b, sutrs_f, sutrs_b, opac_xml = out
    assert search.hits == 1

    assert marc_f.find(r"Record type: (\w+)") == "USmarc"
    assert marc_tags(marc_f) == ["001", "008", "020", "035", "100", "245", "264", "500", "650",
                                 "852", "852", "876", "876"]
    assert marc_tags(marc_b) == ["001", "008", "020", "035", "100", "245", "264", "852", "852",
                                 "876", "876"]
    holdings = marc_f.find_all(r"^(852 .*)")
    assert "$b MAIN" in holdings[0] and "$p CL-1001" in holdings[0]
    assert "$z AVAILABLE" in holdings[0] and "$r" not in holdings[0]
    assert "$p CL-1002" in holdings[1] and "$z DUE 2031-03-15" in holdings[1]
    items = marc_f.find_all(r"^(876 .*)")
    assert "$j Available" in items[0] and "$p CL-1001" in items[0]
    assert "$j Checked out" in items[1] and "$z Due 2031-03-15" in items[1]

    ns = {"m": "http://www.loc.gov/MARC21/slim"}
    for step, brief in ((xml_f, False), (xml_b, True)):
        assert step.find(r"Record type: (\w+)") == "XML"
        record = xml_record(step, "record")
        tags = [f.get("tag") for f in record.xpath("m:controlfield|m:datafield", namespaces=ns)]
        assert ("650" in tags) is not brief and ("500" in tags) is not brief
        assert tags.count("852") == 2
        assert record.xpath("string(m:datafield[@tag='245']/m:subfield[@code='a'])",
                            namespaces=ns) == "The river of time"
        assert record.xpath("m:datafield[@tag='852']/m:subfield[@code='p']/text()",
                            namespaces=ns) == ["CL-1001", "CL-1002"]

    for step, brief in ((opac_f, False), (opac_b, True)):
        assert step.find(r"Record type: (\w+)") == "OPAC"
        assert step.find(r"^(650) ") is None if brief else step.find(r"^(650) ") == "650"
        assert not step.find_all(r"^(852) ")        # holdings are OPAC holdings, not MARC
        assert step.find_all(r"^localLocation: (.*)") == ["MAIN", "MAIN"]
        assert step.find_all(r"^callNumber: (.*)") == ["QA cl-001", "QA cl-001"]
        assert step.find_all(r"^ itemId: (.*)") == ["CL-1001", "CL-1002"]
        assert step.find_all(r"^ availableNow: (\d)") == ["1", "0"]
        # yaz-client spells the ASN.1 availablityDate field "availabiltyDate"
        assert step.find_all(r"^ availab\w*Date: (.*)") == ["2031-03-15"]
        assert step.find_all(r"^ onHold: (\d)") == ["0", "0"]

    assert sutrs_f.find(r"Record type: (\w+)") == "SUTRS"
    assert sutrs_f.find(r"^Subject: (.*)") == "Rivers History"
    assert sutrs_b.find(r"^Subject: (.*)") is None
    for step in (sutrs_f, sutrs_b):
        assert step.find(r"^Title: (.*)") == "The river of time"
        copies = step.find_all(r"^  (MAIN; .*)")
        assert "barcode CL-1001; Available" in copies[0]
        assert "barcode CL-1002; Checked out; due 2031-03-15" in copies[1]

    opac = xml_record(opac_xml, "opacRecord")
    circulations = opac.findall("holdings/holding/circulations/circulation")
    assert [c.findtext("itemId") for c in circulations] == ["CL-1001", "CL-1002"]
    assert [c.find("availableNow").get("value") for c in circulations] == ["1", "0"]
    assert circulations[1].findtext("availabilityDate") == "2031-03-15"
    assert opac.findtext("holdings/holding/localLocation") == "MAIN"


def test_usmarc_records_received_pass_yaz_marcdump(port: int, tmp_path: Path) -> None:
    """Every MARC record yaz-client received (USMARC F and B, and the MARC inside OPAC records)
    for the whole corpus, written by ``set_marcdump``, is well-formed ISO 2709 for
    yaz-marcdump: no complaint, the right number of records, UTF-8 (leader/09 'a'), each
    record's length field right, and a clean MARCXML conversion."""
    need(("yaz-marcdump", YAZ_MARCDUMP))
    dump = tmp_path / "received.mrc"
    out = run(tmp_path, port, [
        f"find {CORPUS_QUERY}", "format usmarc", "elements F", "show 1+5",
        "elements B", "show 1+5", "format opac", "elements F", "show 1+5"],
        before_open=[f"set_marcdump {dump}"])
    assert out[0].hits == 5
    records = iso2709_records(dump.read_bytes())
    assert len(records) == 15
    assert all(r[9:10] == b"a" for r in records)
    plain = marcdump(dump)
    assert plain.returncode == 0 and plain.stderr == ""
    complaints = [line for line in plain.stdout.splitlines() if line.startswith("(")]
    assert complaints == []
    assert len(re.findall(r"^001 ", plain.stdout, re.M)) == 15
    assert "Moreau, Émile" in plain.stdout
    xml = marcdump(dump, "-i", "marc", "-o", "marcxml")
    assert xml.returncode == 0
    collection = etree.fromstring(xml.stdout.encode())
    assert len(collection) == 15


# -- Scan and Sort --------------------------------------------------------------------------------


def scan_entries(step: Step) -> list[tuple[str, int]]:
    """(term, count) of each entry yaz-client printed for a Scan."""
    return [(m.group(1), int(m.group(2))) for line in step.lines
            for m in [re.match(r"^[* ] (.+) \((\d+)\)$", line)] if m]


def test_yaz_client_scans_title_author_subject_any_with_counts(port: int,
                                                               tmp_path: Path) -> None:
    """Scan of the title, author, subject and any word lists: terms in order from the start
    term with their record counts; words only in the temporary record are not listed and do
    not count ("river" is in one permanent title and the temporary one); a preferred position
    puts the start term mid-list; words are displayed as the records write them; and the scan
    diagnostics through a real client: 114 (a Use not indexed), 233 (position past the list),
    206 (negative step), 121 (attribute set)."""
    out = run(tmp_path, port, [
        "scansize 5", "scan @attr 1=4 river", "scan @attr 1=1003 m", "scan @attr 1=21 h",
        "scan @attr 1=1016 conformance", "scan @attr 1=4 secret",
        "scanpos 3", "scan @attr 1=4 river", "scanpos 1",
        "scan @attr 1=1032 0262", "scanpos 30", "scan @attr 1=4 river", "scanpos 1",
        "scanstep -1", "scan @attr 1=4 river", "scanstep 0",
        "scan @attrset gils @attr 1=4 river"])
    title, author, subject, anyword, secret, middle, isbn, position, step, attrset = out
    assert scan_entries(title) == [("river", 1), ("rivers", 2), ("stored", 1), ("The", 1),
                                   ("time", 1)]
    assert title.find(r"(\d+) entries, position=1") == "5"
    # "Nobody, N." is cl-006, whose stored MARC is broken: its words show as indexed
    assert scan_entries(author) == [("Moreau", 1), ("n", 1), ("nobody", 1), ("Pat", 1),
                                    ("W", 1)]
    assert scan_entries(subject) == [("History", 1), ("Mountains", 1), ("Oceans", 1),
                                     ("Rivers", 3)]
    assert scan_entries(anyword)[:2] == [("conformance", 5), ("corpus", 5)]
    assert "secret" not in dict(scan_entries(secret))
    assert "borrowed" not in dict(scan_entries(secret))
    assert scan_entries(middle)[2] == ("river", 1)
    assert middle.find(r"entries, position=(\d+)") == "3"
    for failed, diagnostic in ((isbn, (114, "1032")), (position, (233, "30")),
                               (step, (206, "-1")), (attrset, (121, "1.2.840.10003.3.5"))):
        assert failed.find(r"Scan returned code (\d+)") == "6", failed.lines
        assert failed.diagnostics == [diagnostic], failed.lines


SORTS = [
    ("1=4 <", ["A garden of rivers", "Mountain rivers", "Ocean voyages", "The river of time",
               "Zebra crossings : a history"]),
    ("1=4 >", ["Zebra crossings : a history", "The river of time", "Ocean voyages",
               "Mountain rivers", "A garden of rivers"]),
    ("1=1003 <", ["Zebra crossings : a history", "A garden of rivers", "Ocean voyages",
                  "Mountain rivers", "The river of time"]),
    ("1=1003 >", ["The river of time", "Mountain rivers", "Ocean voyages",
                  "A garden of rivers", "Zebra crossings : a history"]),
    ("1=31 <", ["Mountain rivers", "A garden of rivers", "The river of time",
                "Zebra crossings : a history", "Ocean voyages"]),
    ("1=31 >", ["Ocean voyages", "Zebra crossings : a history", "The river of time",
                "A garden of rivers", "Mountain rivers"]),
]


def test_yaz_client_sorts_by_title_author_date_both_ways(port: int, tmp_path: Path) -> None:
    """yaz-client ``sort`` on title (leading article ignored), author (Adams … Zander) and date,
    ascending and descending: SortResponse success and the presented records in that order;
    an unknown sort key is diagnostic 207 with the Use value."""
    commands = ["format sutrs", "elements B", f"find {CORPUS_QUERY}"]
    for spec, _ in SORTS:
        commands += [f"sort {spec}", "show 1+5"]
    commands.append("sort 1=9999 <")
    search, *rest = run(tmp_path, port, commands)
    assert search.hits == 5
    for (spec, titles), sort, show in zip(SORTS, rest[0::2], rest[1::2], strict=False):
        assert sort.find(r"SortResponse: status=(\w+)") == "success", (spec, sort.lines)
        assert show.find_all(r"^Title: (.*)") == titles, spec
    failed = rest[-1]
    assert failed.find(r"SortResponse: status=(\w+)") == "failure"
    assert failed.diagnostics == [(207, "9999")]


# -- Diagnostics ----------------------------------------------------------------------------------

SEARCH_DIAGNOSTICS: list[tuple[list[str], int, str]] = [
    (["base nosuchdb", "find river", "base Default"], 109, "nosuchdb"),
    (["querytype cql", "find title=river", "querytype prefix"], 107, "type-104"),
    (["querytype ccl", "find ti=river", "querytype prefix"], 107, "type-2"),
    (["find @attr 9=1 @attr 1=4 river"], 113, "9"),
    (["find @attr 1=9999 river"], 114, "9999"),
    (["find @attr 1=title-of-nothing river"], 114, "title-of-nothing"),
    (["find @attr 2=1 @attr 1=4 river"], 117, "1"),
    (["find @attr 1=31 @attr 2=7 2005"], 117, "7"),
    (["find @attr 4=77 @attr 1=4 river"], 118, "77"),
    (["find @attr 3=7 @attr 1=4 river"], 119, "7"),
    (["find @attr 5=7 @attr 1=4 river"], 120, "7"),
    (["find @attr 1=7 @attr 5=2 0262"], 120, "2"),
    (["find @attr 1=31 @attr 5=2 2005"], 120, "2"),
    (["find @attrset gils @attr 1=4 river"], 121, "1.2.840.10003.3.5"),
    (["find @attr exp1 1=1 river"], 121, "1.2.840.10003.3.2"),
    (["find @attr 6=9 @attr 1=4 river"], 122, "9"),
    (['find @attr 1=4 @attr 5=2 @attr 4=1 "of time"'], 123,
     "truncation 2 with a phrase, position or complete field"),
    (["find @attr 1=4 @attr 5=3 @attr 6=3 river"], 123,
     "truncation 3 with a phrase, position or complete field"),
    (['find @attr 1=4 @attr 5=102 "(("'], 125, "unsupported regular expression: (("),
    (["find @attr 1=31 someday"], 126, "someday"),
    (["find @attr 1=1016 @attr 5=3 zq"], 31, "zq matches more than 1000 words"),
    (["find @set nosuch"], 30, "nosuch"),
    (["find @prox 0 1 0 2 k 2 river time"], 3, "proximity operators are not supported"),
]


def test_yaz_client_search_diagnostics_with_addinfo(port: int, tmp_path: Path) -> None:
    """Each unsupported search, through yaz-client in one session, fails with its Bib-1
    diagnostic and the offending value as addinfo: 109 database, 107 CQL and CCL query
    types, 113 attribute type, 114 Use (numeric and string), 117 relation, 118 structure,
    119 position, 120 truncation, 121 attribute set (query-wide and per attribute), 122
    completeness, 123 combination, 125 bad pattern, 126 bad year, 31 too many expansions,
    30 unknown result set, 3 proximity. The association stays usable after all of them."""
    commands: list[str] = []
    for setup, _, _ in SEARCH_DIAGNOSTICS:
        commands += setup
    commands.append("find @attr 1=12 cl-001")
    out = run(tmp_path, port, commands)
    assert len(out) == len(SEARCH_DIAGNOSTICS) + 1
    for step, (setup, code, addinfo) in zip(out, SEARCH_DIAGNOSTICS, strict=False):
        assert step.find(r"Search was a (bloomin' failure)"), (setup, step.lines)
        assert step.find(r"^Result Set Status: (\w+)") == "none"
        assert step.diagnostics == [(code, addinfo)], (setup, step.lines)
    assert out[-1].hits == 1


def test_yaz_client_present_diagnostics(port: int, tmp_path: Path) -> None:
    """Present failures through yaz-client: 13 for a start past the end (addinfo the start)
    and for a range running past the end (addinfo hits + 1), 239 for an unknown syntax
    (addinfo the OID), 25 for an unknown element set (addinfo the name), 30 for a result set
    that a failed search never created, surrogate 14 for a record whose stored MARC is
    broken (the next record still comes), and with ``-k 2`` (2 KiB messages and records)
    surrogate 17 for cl-007, a record larger than the maximum record size."""
    out = run(tmp_path, port, [
        f"find {CORPUS_QUERY}", "show 6", "show 4+3", "format 1.2.840.10003.5.16383", "show 1",
        "format usmarc", "elements Q", "show 1", "elements F",
        "find @attr 1=9999 x", "show 1",
        "find @or @attr 1=12 cl-006 @attr 1=12 cl-005", "show 1+2"])
    search, beyond, overlong, syntax, esn, failed, missing, two, pair = out
    assert search.hits == 5
    assert beyond.diagnostics == [(13, "6")]
    assert overlong.diagnostics == [(13, "6")]
    assert syntax.diagnostics == [(239, "1.2.840.10003.5.16383")]
    assert esn.diagnostics == [(25, "Q")]
    assert failed.diagnostics == [(114, "9999")]
    assert missing.diagnostics == [(30, failed.find(r"setno (\d+)"))]
    assert two.hits == 2
    assert pair.find(r"^Records: (\d+)") == "2"
    assert pair.diagnostics == [(14, "record cl-006 cannot be built")]
    assert pair.find(r"^(001 cl-005)")

    small = run(tmp_path, port, ["find @attr 1=12 cl-007", "show 1", "find @attr 1=12 cl-005",
                                 "show 1"], args=["-k", "2"])
    assert small[1].diagnostics == [(17, "")]
    assert small[3].find(r"^(001 cl-005)")


def test_zoomsh_session_syntaxes_scan_sort_and_packing(port: int) -> None:
    """zoomsh: an ISBN-13 search with hyphens finds the ISBN-10 record; USMARC, MARCXML,
    OPAC (rendered as opacRecord XML: availableNow 0 with availabilityDate for the copy on
    loan, itemId = barcode) and SUTRS; scan of subjects with counts; sort by date descending;
    records piggy-backed on the search response (``count``); and with a 3000-byte preferred
    message size, cl-007 (larger) is surrogate diagnostic 16 while cl-001 beside it is
    delivered."""
    need(("zoomsh", ZOOMSH))
    target = f"tcp:127.0.0.1:{port}/Default"
    text = zoomsh(f"connect {target}", "search @attr 1=7 978-0-262-01153-2",
                  "set preferredRecordSyntax usmarc", "show 0 1",
                  "set preferredRecordSyntax xml", "show 0 1",
                  "set preferredRecordSyntax opac", "show 0 1",
                  "set preferredRecordSyntax sutrs", "show 0 1",
                  "scan @attr 1=21 o",
                  f"search {CORPUS_QUERY}", "sort 1=31 >", "set elementSetName B", "show 0 5")
    assert f"{target}: 1 hits" in text
    assert "syntax=USmarc" in text and "245 10 $a The river of time" in text
    assert "syntax=XML" in text and '<record xmlns="http://www.loc.gov/MARC21/slim"' in text
    opac = text[text.index("<opacRecord>"):text.index("</opacRecord>") + 13]
    assert opac.count("<holding>") == 2
    assert '<availableNow value="0"/>' in opac and '<availableNow value="1"/>' in opac
    assert "<availabilityDate>2031-03-15</availabilityDate>" in opac
    assert "<itemId>CL-1002</itemId>" in opac and "<localLocation>MAIN</localLocation>" in opac
    assert "syntax=SUTRS" in text and "barcode CL-1002; Checked out" in text
    assert re.search(r"^Oceans 1$", text, re.M) and re.search(r"^Rivers 3$", text, re.M)
    assert f"{target}: 5 hits" in text
    assert re.findall(r"^Local number: (\S+)", text, re.M)[-5:] == [
        "cl-003", "cl-004", "cl-001", "cl-002", "cl-005"]

    piggyback = zoomsh("set count 3", "set preferredRecordSyntax opac", f"connect {target}",
                       f"search {CORPUS_QUERY}", "show 0 3")
    assert re.findall(r"<itemId>(.*)</itemId>", piggyback)[:4] == [
        "CL-1001", "CL-1002", "CL-2001", "CL-3001"]

    packed = zoomsh("set preferredMessageSize 3000", "set maximumRecordSize 1000000",
                    f"connect {target}", "search @or @attr 1=12 cl-001 @attr 1=12 cl-007",
                    "show 0 2")
    assert "001 cl-001" in packed
    assert "Record exceeds Preferred-message-size (Bib-1:16)" in packed


# -- Init, authentication and result-set naming ----------------------------------------------------


def test_init_authentication_and_result_set_naming(daemon: Daemon, tmp_path: Path) -> None:
    """A daemon with ``require_auth`` and a single result set: anonymous yaz-client and zoomsh
    are refused with 1011 ("authentication required"), a wrong password with 1011, the
    configured peer is accepted without the namedResultSets option; once yaz-client names its
    sets (``setnames``) the search fails with 22 (addinfo the name), and present and sort on
    that never-created set fail with 30. On the ordinary daemon a wrong password is 1011 too
    (open and idPass forms); the right idPass credentials with UTF-8 character-set
    negotiation are accepted on the second database name, and a non-ASCII term is found."""
    config = (REPO / "config" / "interlend.toml").read_text().replace(
        '[z3950]\n', '[z3950]\nmax_result_sets = 1\nrequire_auth = true\n', 1)
    assert "require_auth = true" in config
    copy = tmp_path / "strict.sqlite3"
    source, target = sqlite3.connect(daemon.database), sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    strict = start_daemon(tmp_path, config, database=copy)
    try:
        port = strict.ports["z3950"]
        anonymous = steps(yaz_client(tmp_path, port, ["find @attr 1=12 cl-001"]))
        assert anonymous[0].find(r"Connection (rejected)")
        assert anonymous[0].find(r"code=(\d+)") == "1011"
        assert anonymous[0].find(r"addinfo='(.*)'") == "authentication required"
        assert all(s.hits is None for s in anonymous[1:])
        wrong = steps(yaz_client(tmp_path, port, [], auth="reshare/nope"))
        assert wrong[0].find(r"Connection (rejected)") and wrong[0].find(r"code=(\d+)") == "1011"

        init, plain, show, named, present, sort = steps(yaz_client(
            tmp_path, port, ["find @attr 1=12 cl-001", "show 1", "setnames",
                             "find @attr 1=12 cl-002", "show 1", "sort 1=4 <"],
            auth="reshare/demo-z-pass"))
        assert init.find(r"Connection (accepted)")
        assert "namedResultSets" not in (init.find(r"^Options: (.*)") or "")
        assert plain.hits == 1 and show.find(r"^(001 cl-001)")
        assert named.find(r"Search was a (bloomin' failure)")
        assert named.diagnostics == [(22, "1")]
        assert present.diagnostics == [(30, "1")]
        assert sort.find(r"status=(\w+)") == "failure" and sort.diagnostics == [(30, "1")]
        if ZOOMSH is not None:
            refused = zoomsh(f"connect tcp:127.0.0.1:{port}/Default", "search river")
            assert "1011" in refused
    finally:
        strict.kill()
    port = daemon.ports["z3950"]
    bad = steps(yaz_client(tmp_path, port, [], auth="reshare/wrong"))
    assert bad[0].find(r"Connection (rejected)") and bad[0].find(r"code=(\d+)") == "1011"
    bad = steps(yaz_client(tmp_path, port, [], auth="reshare wrong"))       # idPass form
    assert bad[0].find(r"Connection (rejected)") and bad[0].find(r"code=(\d+)") == "1011"
    init, search = steps(yaz_client(tmp_path, port, ["find @attr 1=1003 Émile"],
                                    auth="reshare demo-z-pass", database="catalogue",
                                    before_open=["charset UTF-8"]))
    assert init.find(r"Connection (accepted)")
    assert init.find(r"Accepted character set : (\S+)") == "UTF-8"
    assert search.hits == 1


def sort_diagnostics(pdu: codec.PDU) -> list[tuple[int, str | bytes | None]]:
    body = codec.pdu_body(pdu)
    return [(d.condition, d.addinfo) for d in (
        codec.Diagnostic.from_asn1(rec["defaultFormat"]) for rec in body["diagnostics"])]


def test_what_no_yaz_client_can_send(port: int) -> None:
    """The diagnostics yaz-client and zoomsh cannot provoke (they always send
    replaceIndicator TRUE, sort relations 0/1 and general/numeric/null scan terms), through our
    own codec on a socket: 21 for a search that may not replace an existing set (addinfo the
    name), 214 for a sort relation other than ascending/descending (addinfo the relation), 108
    for a scan term of an unsupported type; the association goes on afterwards."""
    client = Raw(port)
    try:
        init = client.ask(origin.init_request())
        assert init is not None and codec.pdu_arm(init) == "initResponse"
        first = client.ask(origin.search_request("@attr 1=12 cl-001", result_set_name="s1"))
        assert first is not None and int(codec.pdu_body(first)["resultCount"]) == 1
        again = client.ask(origin.search_request("@attr 1=12 cl-002", result_set_name="s1",
                                                replace_indicator=False))
        assert again is not None
        assert [(d.condition, d.addinfo)
                for d in origin.read_diagnostics(codec.pdu_body(again))] == [(21, "s1")]
        sort = client.ask(origin.sort_request(input_result_sets=["s1"], sorted_result_set="s2",
                                             keys=[codec.SortKeyInfo(sort_field="title",
                                                                     relation=3)]))
        assert sort is not None and int(codec.pdu_body(sort)["sortStatus"]) == 2
        assert sort_diagnostics(sort) == [(214, "3")]
        scan = origin.scan_request("@attr 1=4 river")
        codec.pdu_body(scan)["termListAndStartPoint"]["term"]["oid"] = (1, 2, 3)
        malformed = client.ask(scan)
        assert malformed is not None and int(codec.pdu_body(malformed)["scanStatus"]) == 6
        assert [(d.condition, d.addinfo) for d in (
            codec.Diagnostic.from_asn1(rec["defaultFormat"]) for rec in
            codec.pdu_body(malformed)["entries"]["nonsurrogateDiagnostics"])] == [
            (108, "unsupported term type oid")]
        still = client.ask(origin.present_request(result_set_id="s1"))
        assert still is not None and int(codec.pdu_body(still)["numberOfRecordsReturned"]) == 1
    finally:
        client.close()
