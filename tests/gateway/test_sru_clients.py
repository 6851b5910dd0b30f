"""SRU with clients nobody here wrote: yaz-client and zoomsh in SRU mode (Debian ``yaz``) and
sruthi (PyPI), against a running daemon serving the Z39.50 conformance corpus.

The same daemon answers Z39.50 too, so the hit counts of CQL queries are compared with those
of the equivalent Bib-1 queries sent by yaz-client over Z39.50. Skipped cleanly without the
programs.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from tests.daemon import REPO, Daemon, start_daemon
from tests.gateway.test_z3950_clients import seed
from tests.z3950_clients import YAZ_CLIENT, ZOOMSH, need, steps, yaz_client, zoomsh

pytestmark = pytest.mark.slow

SRU_NS = {"zs": "http://www.loc.gov/zing/srw/", "diag": "http://www.loc.gov/zing/srw/diagnostic/",
          "marc": "http://www.loc.gov/MARC21/slim", "dc": "http://purl.org/dc/elements/1.1/"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The daemon on the conformance corpus, with SRU on an ephemeral port."""
    need(("yaz-client", YAZ_CLIENT))
    tmp = tmp_path_factory.mktemp("sru")
    seed(tmp / "interlend.sqlite3")
    text = (REPO / "config" / "interlend.toml").read_text()
    assert 'listen = ["tcp:8082:interface=127.0.0.1"]' in text
    text = text.replace('listen = ["tcp:8082:interface=127.0.0.1"]',
                        'listen = ["tcp:0:interface=127.0.0.1"]')
    running = start_daemon(tmp, text)
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture
def url(daemon: Daemon) -> str:
    return f"http://127.0.0.1:{daemon.ports['sru']}/sru"


def get(url: str, **parameters: str) -> etree._Element:
    with urllib.request.urlopen(url + "?" + urllib.parse.urlencode(parameters)) as reply:
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/xml")
        return etree.fromstring(reply.read())


def sru_yaz(tmp_path: Path, url: str, commands: list[str], version: str = "1.2") -> str:
    """yaz-client in SRU mode (GET, CQL): open, the commands, quit; what it printed."""
    assert YAZ_CLIENT is not None
    script = tmp_path / "sru-yaz.txt"
    script.write_text("\n".join([f"open {url}", f"sru get {version}", "querytype cql",
                                 *commands, "quit"]) + "\n")
    done = subprocess.run([YAZ_CLIENT, "-f", str(script)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, errors="replace", timeout=60)
    return done.stdout


def sru_responses(output: str) -> list[str]:
    """yaz-client's output split per SRU response received."""
    return ["Received SRW" + part for part in output.split("Received SRW")[1:]]


# -- hit counts: SRU equals Z39.50 ------------------------------------------------------------

EQUIVALENT = [
    ("dc.title=river", "@attr 1=4 river"),
    ("dc.title=rivers", "@attr 1=4 rivers"),
    ("dc.title=riv*", "@attr 1=4 @attr 5=1 riv"),
    ('dc.title="river time"', '@attr 1=4 "river time"'),
    ('dc.title adj "the river of time"', '@attr 1=4 @attr 4=1 "the river of time"'),
    ("dc.creator=zander", "@attr 1=1003 zander"),
    ("dc.subject=rivers", "@attr 1=21 rivers"),
    ("conformance", "@attr 1=1016 conformance"),
    ("bath.isbn=0262011530", "@attr 1=7 0262011530"),
    ("bath.isbn=978013*", "@attr 1=7 @attr 5=1 978013"),
    ("bath.issn=0028-0836", "@attr 1=8 0028-0836"),
    ("interlend.oclc=12345", "@attr 1=1211 12345"),
    ("rec.id=cl-003", "@attr 1=12 cl-003"),
    ("rec.id=cl-tmp", "@attr 1=12 cl-tmp"),
    ("dc.date=2001", "@attr 1=31 2001"),
    ("dc.date>2000", "@attr 1=31 @attr 2=5 2000"),
    ("dc.date<=1995", "@attr 1=31 @attr 2=2 1995"),
    ("dc.date=199*", "@attr 1=31 @attr 5=1 199"),
    ("dc.title=river or dc.title=ocean", "@or @attr 1=4 river @attr 1=4 ocean"),
    ("conformance not dc.subject=rivers", "@not @attr 1=1016 conformance @attr 1=21 rivers"),
    ("conformance and dc.date>=2001", "@and @attr 1=1016 conformance @attr 1=31 @attr 2=4 2001"),
]


def test_sru_hit_counts_equal_z3950(tmp_path: Path, daemon: Daemon, url: str) -> None:
    """The same questions in CQL over SRU and in Bib-1 over Z39.50 find as many records, as
    the two clients report (and at least some find several, so the comparison means
    something)."""
    sru = sru_responses(sru_yaz(tmp_path, url, [f"find {cql}" for cql, _ in EQUIVALENT]))
    sru_hits = [int(m.group(1)) if (m := re.search(r"Number of hits: (\d+)", r)) else None
                for r in sru]
    z_steps = steps(yaz_client(tmp_path, daemon.ports["z3950"],
                               [f"find {pqf}" for _, pqf in EQUIVALENT]))[1:]
    z_hits = [step.hits for step in z_steps]
    assert len(sru_hits) == len(z_hits) == len(EQUIVALENT)
    assert sru_hits == z_hits, list(zip(EQUIVALENT, sru_hits, z_hits))
    assert max(h or 0 for h in sru_hits) >= 3
    assert sru_hits[EQUIVALENT.index(("rec.id=cl-tmp", "@attr 1=12 cl-tmp"))] == 0


# -- yaz-client --------------------------------------------------------------------------------

def test_yaz_client_sru_records_and_diagnostics(tmp_path: Path, url: str) -> None:
    out = sru_yaz(tmp_path, url, [
        "find bath.isbn=0262011530", "show 1",                       # MARCXML by default
        "schema dc", "show 1",
        "find foo.title=x",                                           # unknown context set
        "find dc.title=river prox dc.title=time",                     # proximity
        "find dc.nonsense=x",                                         # unknown index
        "find dc.title=(",                                  # parentheses
    ])
    responses = sru_responses(out)
    assert "Number of hits: 1" in responses[0]
    marc = responses[1]
    assert "schema=info:srw/schema/1/marcxml-v1.1" in marc
    assert '<controlfield tag="001">cl-001</controlfield>' in marc
    # live holdings: the item on loan says so
    assert "DUE 2031-03-15" in marc and "CL-1002" in marc
    assert "schema=info:srw/schema/1/dc-v1.1" in responses[2]
    assert "<dc:title>The river of time</dc:title>" in responses[2]
    assert "info:srw/diagnostic/1/15" in responses[3]
    assert "info:srw/diagnostic/1/39" in responses[4]
    assert "info:srw/diagnostic/1/16" in responses[5]
    assert "info:srw/diagnostic/1/13" in responses[6]


def test_yaz_client_sru_scan(tmp_path: Path, url: str) -> None:
    out = sru_yaz(tmp_path, url, ["scan dc.title=riv"])
    lines = [line for line in out.splitlines() if re.match(r"^\w+: \d+", line)]
    assert lines[0].startswith("river: 1")
    assert lines[1].startswith("rivers: 2")


def test_yaz_client_sru_11_and_post(tmp_path: Path, url: str) -> None:
    """SRU 1.1 and POST too (yaz-client ``sru post``)."""
    assert YAZ_CLIENT is not None
    script = tmp_path / "post.txt"
    script.write_text(f"open {url}\nsru post 1.1\nquerytype cql\nfind dc.creator=zander\n"
                      "quit\n")
    out = subprocess.run([YAZ_CLIENT, "-f", str(script)], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60).stdout
    assert "Number of hits: 1" in out


# -- zoomsh ------------------------------------------------------------------------------------

def test_zoomsh_sru(url: str) -> None:
    need(("zoomsh", ZOOMSH))
    out = zoomsh("set sru get", "set sru_version 1.2", f"connect {url}",
                 "search cql:dc.subject=rivers", "show 0 3",
                 "scan cql:dc.title=riv")
    assert f"{url}: 3 hits" in out
    assert out.count('<controlfield tag="001">') == 3
    assert re.search(r"^rivers 2$", out, re.M)


# -- sruthi ------------------------------------------------------------------------------------

def test_sruthi_search_explain_and_paging(url: str) -> None:
    sruthi = pytest.importorskip("sruthi")
    records = sruthi.searchretrieve(url, query="conformance", record_schema="dc",
                                    maximum_records=2)
    assert records.count == 5
    titles = [record["title"] for record in records]          # sruthi pages on its own
    assert len(titles) == 5 and "Ocean voyages" in titles
    explain = sruthi.explain(url)
    assert explain.server["database"] == "Default"
    assert "title" in explain.index["dc"] and "isbn" in explain.index["bath"]


# -- what clients cannot easily show -----------------------------------------------------------

def test_opac_schema_holdings_and_availability(url: str) -> None:
    root = get(url, version="1.2", operation="searchRetrieve", query="rec.id=cl-001",
               recordSchema="opac")
    circulation = root.findall(".//opacRecord/holdings/holding/circulations/circulation")
    state = {c.findtext("itemId"): c.find("availableNow").get("value") for c in circulation}
    assert state == {"CL-1001": "1", "CL-1002": "0"}
    assert root.findtext(".//circulation[itemId='CL-1002']/availabilityDate") == "2031-03-15"


def test_sort_result_set_ttl_and_paging(url: str) -> None:
    root = get(url, version="1.2", operation="searchRetrieve",
               query="conformance sortBy dc.date/sort.descending", recordSchema="dc",
               maximumRecords="2", resultSetTTL="60")
    assert root.findtext("zs:numberOfRecords", namespaces=SRU_NS) == "5"
    dates = [d.text for d in root.iterfind(".//dc:date", SRU_NS)]
    assert dates == ["2010", "2005"]
    assert root.findtext("zs:nextRecordPosition", namespaces=SRU_NS) == "3"
    set_id = root.findtext("zs:resultSetId", namespaces=SRU_NS)
    assert set_id
    again = get(url, version="1.2", operation="searchRetrieve",
                query=f'cql.resultSetId="{set_id}" and dc.date<2005', recordSchema="dc")
    assert again.findtext("zs:numberOfRecords", namespaces=SRU_NS) == "3"
    gone = get(url, version="1.2", operation="searchRetrieve",
               query='cql.resultSetId="no-such-set"')
    assert gone.findtext(".//diag:uri", namespaces=SRU_NS) == "info:srw/diagnostic/1/51"


def test_sru_20_and_bad_requests(url: str) -> None:
    root = get(url, version="2.0", query="rec.id=cl-002", recordSchema="dc")
    assert etree.QName(root).namespace == "http://docs.oasis-open.org/ns/search-ws/sruResponse"
    assert root.findtext("{*}numberOfRecords") == "1"
    for parameters, code in (
            ({"version": "1.2", "operation": "searchRetrieve"}, "7"),
            ({"version": "1.2", "operation": "searchRetrieve", "query": "x",
              "recordSchema": "nonesuch"}, "66"),
            ({"version": "1.2", "operation": "searchRetrieve", "query": "x",
              "startRecord": "0"}, "6"),
            ({"version": "1.2", "operation": "frobnicate"}, "4"),
            ({"version": "3.0", "operation": "explain"}, "5"),
            ({"version": "1.2", "operation": "searchRetrieve", "query": "conformance",
              "startRecord": "99"}, "61")):
        answer = get(url, **parameters)
        assert answer.findtext(".//{*}diagnostic/{*}uri") == f"info:srw/diagnostic/1/{code}", \
            parameters


def test_audit_rows_for_sru(daemon: Daemon, url: str) -> None:
    get(url, version="1.2", operation="searchRetrieve", query="dc.title=ocean")
    daemon_db = daemon.database
    for _ in range(200):  # the audit batch is written within a moment
        with sqlite3.connect(daemon_db) as conn:
            rows = conn.execute("SELECT operation, outcome, remote, notes FROM audit "
                                "WHERE protocol = 'sru' AND operation = 'searchRetrieve' "
                                "AND notes = 'hits=1'").fetchall()
        if rows:
            break
        get(url, version="1.2", operation="explain")
    assert rows and rows[0][1] == "ok" and rows[0][2] == "127.0.0.1"


def test_sru_11_sort_keys_parameter_and_string_packing(url: str) -> None:
    """SRU 1.1's ``sortKeys`` parameter (``path,schema,ascending``) sorts as ``sortBy`` does;
    ``recordPacking=string`` sends the record escaped."""
    root = get(url, version="1.1", operation="searchRetrieve", query="conformance",
               sortKeys="dc.date,,0", recordSchema="dc", recordPacking="string")
    data = [etree.fromstring(d.text.encode()) for d in root.iterfind(".//zs:recordData", SRU_NS)]
    dates = [record.findtext("dc:date", namespaces=SRU_NS) for record in data]
    assert dates == ["2010", "2005", "2001", "1995", "1980"]
    ascending = get(url, version="1.1", operation="searchRetrieve", query="conformance",
                    sortKeys="dc.date,,1", recordSchema="dc")
    assert [d.text for d in ascending.iterfind(".//dc:date", SRU_NS)] == sorted(dates)
