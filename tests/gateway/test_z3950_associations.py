"""Associations as real clients see them (issue 14, points 7, 8 and 10).

A real ``interlend serve`` (``tests/daemon.py``) on a small seeded catalogue:

* 200 simultaneous associations from one address (127.0.0.1) are all served with the default
  caps, and yaz-client is still served beside them; over the per-address cap yaz-client,
  zoomsh and Perl ZOOM are refused *in protocol* (InitResponse with diagnostic 1018 and the
  limit as addinfo), not with a bare TCP close;
* requests sent without waiting (pipelined, over a socket with our codec: no YAZ client
  pipelines) are answered in order, and past ``max_pipelined_requests`` what is owed is
  answered before Close(resources);
* yaz-client's ``init`` on a live association re-initialises it (result sets gone: 30), and more
  than ten named result sets stay usable.

Skipped without the Debian ``yaz`` programs.
"""

from __future__ import annotations

import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols.z3950 import client, codec
from protocols.z3950.charset import utf8_negotiation_proposal
from protocols.z3950.errors import CloseReason
from tests.daemon import Daemon
from tests.z3950_clients import (
    YAZ_MARCDUMP,
    ZOOMSH,
    Bib,
    Raw,
    catalogue_daemon,
    iso2709_records,
    marcdump,
    seed_catalogue,
    steps,
    yaz_client,
    zoomsh,
)

pytestmark = pytest.mark.slow

CORPUS = tuple(
    Bib(f"as-{n:03d}", f"Association title {n}", "Pipeline, Pat", "2020",
        note="associations corpus", items=(f"AS-{n:03d}",))
    for n in range(1, 31))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with the default caps and limits."""
    yield from catalogue_daemon(tmp_path_factory, "associations",
                                lambda path: seed_catalogue(path, CORPUS))


PERL_CONNECT = r"""
eval { ZOOM::Connection->new("$ARGV[0]/Default") };
print $@ ? join("|", $@->code, $@->addinfo) : "connected", "\n";
"""


def perl_zoom() -> bool:
    """Whether Perl ZOOM (Debian libnet-z3950-zoom-perl) is installed."""
    return shutil.which("perl") is not None and subprocess.run(
        ["perl", "-MZOOM", "-e", "1"], capture_output=True, check=False).returncode == 0


def init(raw: Raw, reference: bytes = b"i") -> None:
    raw.send(codec.encode_pdu(client.init_request(
        reference_id=reference, options=("search", "present", "namedResultSets"))))


def test_200_simultaneous_associations_from_one_address(daemon: Daemon, tmp_path: Path) -> None:
    """200 connections from 127.0.0.1 opened and initialised together are all accepted and
    each searches; yaz-client is served beside them. With the per-address cap (250) reached,
    yaz-client and zoomsh get "Connection rejected" with diagnostic 1018 and the limit as
    addinfo; closing the associations frees the address again."""
    port = daemon.ports["z3950"]
    clients: list[Raw] = []
    try:
        clients = [Raw(port) for _ in range(200)]
        for n, raw in enumerate(clients):
            init(raw, b"%d" % n)
        for n, raw in enumerate(clients):
            answer = raw.receive()
            assert answer is not None and codec.pdu_arm(answer) == "initResponse", n
            assert bool(codec.pdu_body(answer)["result"]), n
        for n, raw in enumerate(clients):
            raw.send(codec.encode_pdu(client.search_request(
                f"@attr 1=12 as-{n % 30 + 1:03d}", reference_id=b"%d" % n)))
        for n, raw in enumerate(clients):
            answer = raw.receive()
            assert answer is not None and codec.reference_id(answer) == b"%d" % n
            assert int(codec.pdu_body(answer)["resultCount"]) == 1, n
        beside = steps(yaz_client(tmp_path, port, ["find @attr 1=1016 associations"]))
        assert beside[0].find(r"Connection (accepted)") and beside[1].hits == 30

        clients += [Raw(port) for _ in range(50)]  # the default cap: 250 per address
        for raw in clients[200:]:
            init(raw)
            answer = raw.receive()
            assert answer is not None and bool(codec.pdu_body(answer)["result"])
        refused = steps(yaz_client(tmp_path, port, ["find @attr 1=1016 associations"]))
        assert refused[0].find(r"Connection (rejected)")
        assert refused[0].find(r"code=(\d+)") == "1018"
        assert "250 connections open from this address (limit 250)" in \
            (refused[0].find(r"addinfo='(.*)'") or "")
        assert all(s.hits is None for s in refused[1:])
        if ZOOMSH is not None:
            out = zoomsh(f"connect tcp:127.0.0.1:{port}/Default").splitlines()
            assert "error: Init/AC: System temporarily out of resources (Bib-1:1018)" in out[0]
            assert "limit 250" in out[0]
        if perl_zoom():  # Net::Z3950::ZOOM, what Koha uses
            done = subprocess.run(["perl", "-MZOOM", "-e", PERL_CONNECT, f"127.0.0.1:{port}"],
                                  capture_output=True, text=True, timeout=60, check=False)
            assert done.stdout.startswith("1018|") and "limit 250" in done.stdout, done
    finally:
        for raw in clients:
            raw.close()
    again = steps(yaz_client(tmp_path, port, ["find @attr 1=1016 associations"]))
    assert again[0].find(r"Connection (accepted)") and again[1].hits == 30


def test_pipelined_requests_answered_in_order(daemon: Daemon) -> None:
    """10 Search+Present pairs (20 requests) written at once are answered in order; 80
    searches at once against the default max_pipelined_requests (64): the one running and
    the 64 queued are answered, in order, then Close(resources)."""
    port = daemon.ports["z3950"]
    raw = Raw(port)
    try:
        init(raw)
        assert raw.receive() is not None
        batch = b"".join(
            codec.encode_pdu(client.search_request(
                f"@or @attr 1=12 as-{n + 1:03d} @attr 1=12 as-{n + 2:03d}",
                reference_id=b"s%d" % n, result_set_name=f"r{n}"))
            + codec.encode_pdu(client.present_request(
                result_set_id=f"r{n}", start=1, count=1, reference_id=b"p%d" % n))
            for n in range(10))
        raw.send(batch)
        answers = [raw.next_pdu() for _ in range(20)]
        assert [codec.reference_id(a) for a in answers] == \
            [ref for n in range(10) for ref in (b"s%d" % n, b"p%d" % n)]
        assert all(int(codec.pdu_body(a)["resultCount"]) == 2 for a in answers[::2])
        assert all(int(codec.pdu_body(a)["numberOfRecordsReturned"]) == 1
                   for a in answers[1::2])
    finally:
        raw.close()

    raw = Raw(port)
    try:
        init(raw)
        assert raw.receive() is not None
        raw.send(b"".join(codec.encode_pdu(client.search_request(
            f"@or @attr 1=1016 associations @attr 1=4 t{n}", reference_id=b"%d" % n))
            for n in range(80)))
        answers = []
        while (answer := raw.receive()) is not None:
            answers.append(answer)
        arms = [codec.pdu_arm(a) for a in answers]
        assert arms == ["searchResponse"] * 65 + ["close"], arms
        assert [codec.reference_id(a) for a in answers[:65]] == [b"%d" % n for n in range(65)]
        assert int(codec.pdu_body(answers[-1])["closeReason"]) == CloseReason.resources
    finally:
        raw.close()


def test_yaz_client_reinit_and_more_than_ten_result_sets(daemon: Daemon,
                                                         tmp_path: Path) -> None:
    """yaz-client's ``init`` on a live association is accepted (re-initialisation): the
    result set made before it is gone (30). Twelve named result sets (more than the old limit
    of ten) are kept and the first is still presented."""
    port = daemon.ports["z3950"]
    first, search, before, again, after = steps(yaz_client(
        tmp_path, port, ["find @attr 1=12 as-001", "show 1+1+1", "init", "show 1+1+1"]))
    assert first.find(r"Connection (accepted)") and search.hits == 1
    assert before.find(r"^(001 as-001)") and before.diagnostics == []
    assert again.find(r"Connection (accepted)")
    assert after.diagnostics == [(30, "1")] and not after.find(r"^(001 as-001)")
    # yaz-client names its sets 1, 2, ... itself when the server confirms namedResultSets
    finds = [f"find @attr 1=12 as-{n:03d}" for n in range(1, 13)]
    out = steps(yaz_client(tmp_path, port, [*finds, "show 1+1+1", "show 1+1+12"]))
    assert "namedResultSets" in (out[0].find(r"^Options: (.*)") or "")
    assert [s.hits for s in out[1:13]] == [1] * 12
    assert out[13].find(r"^(001 as-001)") and out[14].find(r"^(001 as-012)")



CHARSET_CORPUS = (
    Bib("cs-001", "Ocean voyages", "Moreau, Émile", "2010", note="charset corpus",
        items=("CS-1",)),
    Bib("cs-002", "Война и мир", "Толстой, Лев", "1869", note="charset corpus",
        items=("CS-2",)),
)


@pytest.fixture(scope="module")
def charsets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from catalogue_daemon(tmp_path_factory, "charsets",
                                lambda path: seed_catalogue(path, CHARSET_CORPUS))


@pytest.mark.parametrize("command,accepted,query,marc_bytes,leader9", [
    # yaz-client cannot convert its own query terms to MARC-8 (it then drops the connection):
    # it searches by local number, and the MARC-8 term test below uses our codec.
    ("charset MARC-8,ISO-8859-1,UTF-8 none MARC-8", "MARC-8", "@attr 1=12 cs-001",
     b"Moreau, \xe2Emile", b" "),
    ("charset ISO-8859-1,UTF-8 UTF-8 ISO-8859-1", "ISO-8859-1", "@attr 1=1003 Émile",
     b"Moreau, \xc9mile", b" "),
    ("charset EBCDIC-US,UTF-8 UTF-8", "UTF-8", "@attr 1=1003 Émile",
     "Moreau, Émile".encode(), b"a"),
])
def test_yaz_client_negotiates_one_of_the_offered_charsets(
        charsets: Daemon, tmp_path: Path, command: str, accepted: str, query: str,
        marc_bytes: bytes, leader9: bytes) -> None:
    """yaz-client offers character sets: the server picks the first it converts to (not
    UTF-8 when something else came first), yaz-client converts its query term into it (the
    search finds the record) and receives the USMARC record in it (checked byte for byte, and
    decoded back by yaz-marcdump)."""
    dump = tmp_path / "records.mrc"
    init, search, show = steps(yaz_client(
        tmp_path, charsets.ports["z3950"],
        [f"set_marcdump {dump}", "format usmarc", f"find {query}", "show 1"],
        before_open=[command]))
    assert init.find(r"Accepted character set : (\S+)") == accepted
    assert search.hits == 1 and show.find(r"^(001 cs-001)")
    [record] = iso2709_records(dump.read_bytes())
    assert marc_bytes in record and record[9:10] == leader9
    if YAZ_MARCDUMP is not None:
        done = marcdump(dump, "-f", accepted, "-t", "UTF-8")
        assert done.returncode == 0
        assert "Moreau, Émile" in unicodedata.normalize("NFC", done.stdout)


def test_marc8_terms_found_and_scanned(charsets: Daemon) -> None:
    """MARC-8 negotiated (our codec as the client): a MARC-8 author term finds its record, and
    scan terms come back in MARC-8."""
    raw = Raw(charsets.ports["z3950"])
    try:
        reply = raw.ask(client.init_request(
            options=("search", "present", "scan", "negotiationModel"),
            other_info=[utf8_negotiation_proposal(True, names=("MARC-8", "UTF-8"))]))
        assert reply is not None and bool(codec.pdu_body(reply)["result"])
        answer = raw.ask(client.search_request("@attr 1=1003 Лев", charset="marc-8"))
        assert answer is not None and int(codec.pdu_body(answer)["resultCount"]) == 1
        scan = client.scan_request("@attr 1=1003 x", number_of_terms=3)
        codec.pdu_body(scan)["termListAndStartPoint"]["term"]["general"] = "л".encode("marc-8")
        answer = raw.ask(scan)
        assert answer is not None
        terms = [e["termInfo"]["term"]["general"].asOctets()
                 for e in codec.pdu_body(answer)["entries"]["entries"]]
        assert terms and all(t.decode("marc-8").encode("marc-8") == t for t in terms)
        assert any(t.decode("marc-8").lower().startswith("лев") for t in terms), terms
    finally:
        raw.close()


def test_unsupported_offer_gets_no_negotiation_and_utf8(charsets: Daemon, tmp_path: Path) -> None:
    """Only a set we cannot convert to is offered: the Init is accepted without a charset
    answer, and records and terms stay UTF-8."""
    dump = tmp_path / "records.mrc"
    init, search, show = steps(yaz_client(
        tmp_path, charsets.ports["z3950"],
        [f"set_marcdump {dump}", "format usmarc", "find @attr 1=1003 Лев", "show 1"],
        before_open=["charset EBCDIC-US"]))
    assert init.find(r"Connection (accepted)")
    assert init.find(r"Accepted character set : (\S+)") is None
    assert search.hits == 1
    [record] = iso2709_records(dump.read_bytes())
    assert "Толстой".encode() in record and record[9:10] == b"a"
