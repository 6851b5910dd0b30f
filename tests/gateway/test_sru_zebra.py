"""Our SRU beside Zebra's own SRU service, on the same records (:mod:`tests.search_corpus`).

Zebra (Debian ``idzebra-2.0``) indexes the corpus as in ``test_search_zebra`` and serves SRU
through YAZ's front end with YAZ's stock CQL-to-PQF mapping (``/usr/share/yaz/etc/
pqf.properties``, read in place); our daemon serves the same records imported with
``import-marc``. The same CQL queries then go to both over HTTP GET: hit counts must be equal
query by query, and the records both return must be the same records (their 001).
"""

from __future__ import annotations

import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from gateway.backends.embedded.importers import import_marc
from gateway.storage.store import open_database
from tests.daemon import REPO, Daemon, start_daemon
from tests.search_corpus import ZEBRAIDX, ZEBRASRV, start_zebra, write_sources, write_utf8
from tests.z3950_clients import wait_for_port

pytestmark = pytest.mark.slow

PQF_PROPERTIES = Path("/usr/share/yaz/etc/pqf.properties")
NS = {"zs": "http://www.loc.gov/zing/srw/", "marc": "http://www.loc.gov/MARC21/slim"}

SAME = [
    "dc.title=война", "dc.title=ВОЙНА", "dc.title=tadeusz", "dc.title=Straße",
    "dc.title=strasse", "dc.title=東京", "dc.title=etudes", "dc.title=Études",
    "dc.creator=camus", "dc.creator=sussman", "dc.creator=knuth", "dc.creator=massachusetts",
    "sussman", "grinberg", "dc.title=wizardry", "dc.title=sicp", "dc.title=library",
    "dc.subject=francais", "dc.language=rus", "dc.language=eng", "rec.id=S001",
    "dc.title=war or dc.title=library", "dc.language=eng and dc.creator=sussman",
    "dc.language=eng not dc.creator=sussman", "dc.title=struktur", "dc.title=holdings",
]
"""CQL queries whose Bib-1 equivalents ``test_search_zebra`` shows agree on both servers."""


@dataclass
class Servers:
    ours: str
    zebra: str


def _zebra_sru(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """zebrasrv on the indexed ``work`` with a YAZ front end that reads CQL."""
    assert ZEBRASRV is not None
    from tests.search_corpus import _free_port

    port = _free_port()
    (work / "yazgfs-sru.xml").write_text(
        f"<yazgfs><listen id='z'>tcp:127.0.0.1:{port}</listen>"
        f"<server id='s' listenref='z'><config>{work / 'zebra.cfg'}</config>"
        f"<cql2rpn>{PQF_PROPERTIES}</cql2rpn>"
        "<retrievalinfo><retrieval syntax='xml' name='marcxml' "
        "identifier='info:srw/schema/1/marcxml-v1.1'>"
        "<backend syntax='usmarc' name='F'><marc inputformat='marc' outputformat='marcxml' "
        "inputcharset='utf-8'/></backend></retrieval>"
        "<retrieval syntax='usmarc' name='F'/></retrievalinfo></server></yazgfs>")
    process = subprocess.Popen([ZEBRASRV, "-f", str(work / "yazgfs-sru.xml"),
                                "-l", str(work / "zebrasrv-sru.log")], cwd=work,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, port


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    for name, path in (("zebrasrv", ZEBRASRV), ("zebraidx", ZEBRAIDX)):
        if path is None:
            pytest.skip(f"{name} not installed (Debian package idzebra-2.0)")
    if not PQF_PROPERTIES.exists():
        pytest.skip(f"{PQF_PROPERTIES} missing (Debian package yaz)")
    tmp = tmp_path_factory.mktemp("sru-zebra")
    database = tmp / "interlend.sqlite3"
    conn = open_database(database)
    import_marc(conn, write_sources(tmp / "sources"), report=lambda _: None)
    conn.close()
    indexed = start_zebra(tmp / "zebra", write_utf8(tmp / "zebra.mrc"))
    indexed.stop()  # indexing done; serve it again with the SRU front end
    process, port = _zebra_sru(tmp / "zebra")
    daemon: Daemon | None = None
    try:
        wait_for_port(port, process)
        text = (REPO / "config" / "interlend.toml").read_text().replace(
            'listen = ["tcp:8082:interface=127.0.0.1"]', 'listen = ["tcp:0:interface=127.0.0.1"]')
        daemon = start_daemon(tmp, text, database=database)
        yield Servers(f"http://127.0.0.1:{daemon.ports['sru']}/sru",
                      f"http://127.0.0.1:{port}/Default")
    finally:
        if daemon is not None:
            daemon.kill()
        process.terminate()
        process.wait(timeout=10)


def search(base: str, query: str, maximum: int = 0) -> etree._Element:
    parameters = {"version": "1.2", "operation": "searchRetrieve", "query": query,
                  "maximumRecords": str(maximum), "recordSchema": "marcxml"}
    with urllib.request.urlopen(f"{base}?{urllib.parse.urlencode(parameters)}",
                                timeout=30) as reply:
        return etree.fromstring(reply.read())


def hits(root: etree._Element) -> int | None:
    text = root.findtext("zs:numberOfRecords", namespaces=NS)
    return int(text) if text is not None else None


def test_hit_counts_equal_zebra_sru(servers: Servers) -> None:
    ours = [hits(search(servers.ours, query)) for query in SAME]
    zebra = [hits(search(servers.zebra, query)) for query in SAME]
    assert ours == zebra, [(q, a, b) for q, a, b in zip(SAME, ours, zebra) if a != b]
    assert sum(1 for count in ours if count) >= len(SAME) - 2   # the queries find things


def test_same_records_as_zebra_sru(servers: Servers) -> None:
    def ids(base: str) -> set[str]:
        root = search(base, "dc.language=eng", maximum=20)
        return {field.text or "" for field in
                root.iterfind(".//marc:controlfield[@tag='001']", NS)}

    ours, zebra = ids(servers.ours), ids(servers.zebra)
    assert ours and ours == zebra
