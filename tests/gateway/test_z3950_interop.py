"""Real interop: yaz-client and zoomsh against a running daemon, compared with yaz-ztest.

A real ``interlend serve`` process (``tests/daemon.py``) on the demo catalogue serves the
sessions. The same yaz-client script and the same raw protocol checks (``docs/z3950.md``
section 11.6) run against Interlend and against yaz-ztest, YAZ's reference server, and the
behaviour that should agree (Init options, present status, diagnostics and their addinfo,
Close) is compared. Skipped cleanly without the Debian ``yaz`` programs.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocols.z3950 import client as origin
from protocols.z3950 import codec, oids
from protocols.z3950.codec import Authentication
from protocols.z3950.errors import CloseReason
from tests.daemon import REPO, Daemon, start_daemon
from tests.z3950_clients import (
    YAZ_CLIENT,
    YAZ_ZTEST,
    ZOOMSH,
    Raw,
    need,
    steps,
    wait_for_port,
    yaz_client,
)

pytestmark = pytest.mark.slow

# A title word that finds 12 of the 200 demo records; yaz-ztest turns a leading number into
# the hit count, so "12" gives it 12 hits too.
OUR_TERM = "@attr 1=4 river"
ZTEST_TERM = "@attr 1=4 12"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The daemon on 200 demo records, for the whole module."""
    need(("yaz-client", YAZ_CLIENT))
    tmp = tmp_path_factory.mktemp("interlend")
    database = tmp / "interlend.sqlite3"
    subprocess.run([sys.executable, "-m", "gateway.daemon.cli", "demo", "-c",
                    str(REPO / "config" / "interlend.toml"), "--database", str(database),
                    "--records", "200"], cwd=REPO, check=True, capture_output=True, timeout=120)
    running = start_daemon(tmp, database=database)
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture(scope="module")
def ztest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """yaz-ztest (fork per connection, -k 1024) on an ephemeral loopback port; its port."""
    need(("yaz-ztest", YAZ_ZTEST))
    tmp = tmp_path_factory.mktemp("ztest")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert YAZ_ZTEST is not None
    process = subprocess.Popen([YAZ_ZTEST, "-k", "1024", "-l", str(tmp / "ztest.log"),
                                f"tcp:127.0.0.1:{port}"], cwd=tmp,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- yaz-client -------------------------------------------------------------------------------


def test_yaz_client_anonymous_session(daemon: Daemon, tmp_path: Path) -> None:
    """Init, search, present USMARC and OPAC, close, as an anonymous yaz-client."""
    output = yaz_client(tmp_path, daemon.ports["z3950"], [
        f"find {OUR_TERM}", "format usmarc", "show 1", "format opac", "show 2", "close"])
    init, search, marc, opac, close = steps(output)
    assert init.find(r"Connection (accepted) by v3 target")
    assert init.find(r"^Name\s*: (\S+)") == "Interlend"
    assert search.find(r"Number of hits: (\d+)") == "12"
    assert marc.find(r"Record type: (\w+)") == "USmarc"
    assert any("availableNow" in line for line in opac.lines)
    assert close.find(r"^Reason: (\w+)") == "finished"


def test_yaz_client_authentication(daemon: Daemon, tmp_path: Path) -> None:
    """The configured reshare credentials are accepted; a wrong password gets 1011."""
    port = daemon.ports["z3950"]
    good = steps(yaz_client(tmp_path, port, [f"find {OUR_TERM}", "close"],
                            auth="reshare/demo-z-pass"))
    assert good[0].find(r"Connection (accepted)") and good[1].find(r"hits: (\d+)") == "12"
    bad = steps(yaz_client(tmp_path, port, [f"find {OUR_TERM}"], auth="reshare/wrong"))
    assert bad[0].find(r"Connection (rejected) by v3 target")
    assert bad[0].find(r"code=(\d+)") == "1011"
    assert not any("hits" in line for step in bad[1:] for line in step.lines)


def test_zoomsh_search_and_opac(daemon: Daemon) -> None:
    """zoomsh: connect, search, show one OPAC record with holdings; wrong password refused."""
    need(("zoomsh", ZOOMSH))
    assert ZOOMSH is not None
    target = f"tcp:127.0.0.1:{daemon.ports['z3950']}/Default"
    done = subprocess.run([ZOOMSH, f"connect {target}", "search @attr 1=4 river",
                           "set preferredRecordSyntax opac", "show 0 1", "quit"],
                          capture_output=True, text=True, timeout=60)
    assert f"{target}: 12 hits" in done.stdout
    assert "<opacRecord>" in done.stdout and '<availableNow value="' in done.stdout
    refused = subprocess.run([ZOOMSH, "set user reshare", "set password wrong",
                              f"connect {target}", "search @attr 1=4 river", "quit"],
                             capture_output=True, text=True, timeout=60)
    assert "1011" in refused.stdout + refused.stderr


# -- raw sockets ---------------------------------------------------------------------------------


MALFORMED = [
    b"GET / HTTP/1.0\r\n\r\n",
    bytes.fromhex("b4 88 ff ff ff ff ff ff ff ff"),
    b"\xb4\x80" * 10_000,
    bytes.fromhex("3f033f030000"),
    bytes.fromhex("300302010000"),
]


def test_malformed_input_never_stops_the_server(daemon: Daemon, tmp_path: Path) -> None:
    """Garbage before and after Init closes that connection only; the next session works."""
    port = daemon.ports["z3950"]
    for data in MALFORMED:
        before = Raw(port)
        assert before.ask(data) is None  # dropped without a PDU
        before.close()
        after = Raw(port)
        init = after.ask(origin.init_request())
        assert init is not None and codec.pdu_arm(init) == "initResponse"
        close = after.ask(data)
        assert close is not None and codec.read_close(close).reason == CloseReason.protocolError
        assert after.receive() is None
        after.close()
    assert daemon.process.poll() is None
    output = yaz_client(tmp_path, port, [f"find {OUR_TERM}", "close"])
    assert "Number of hits: 12" in output


def raw_checks(port: int, term: str) -> dict[str, Any]:
    """The checks of docs/z3950.md 11.6, reduced to what both servers should agree on."""
    facts: dict[str, Any] = {}
    client = Raw(port)
    init = client.ask(origin.init_request(reference_id=b"REF-42",
                                         preferred_message_size=100_000_000,
                                         exceptional_record_size=100_000_000))
    assert init is not None
    body = codec.pdu_body(init)
    facts["init"] = (codec.reference_id(init), bool(body["result"]),
                     int(body["preferredMessageSize"]))
    search = client.ask(origin.search_request(term, result_set_name="1"))
    assert search is not None
    hits = int(codec.pdu_body(search)["resultCount"])
    facts["search"] = bool(codec.pdu_body(search)["searchStatus"])
    beyond = hits + 10
    out = client.ask(origin.present_request(result_set_id="1", start=beyond, count=5))
    assert out is not None
    facts["out-of-range"] = (int(codec.pdu_body(out)["presentStatus"]),
                             [(d.condition, d.addinfo)
                              for d in origin.read_diagnostics(codec.pdu_body(out))])
    facts["out-of-range-addinfo-is-start"] = facts["out-of-range"][1][0][1] == str(beyond)
    odd = (1, 2, 840, 10003, 5, 16383)
    unknown = client.ask(origin.present_request(result_set_id="1", preferred_record_syntax=odd))
    assert unknown is not None
    facts["unknown-syntax"] = [(d.condition, d.addinfo)
                               for d in origin.read_diagnostics(codec.pdu_body(unknown))]
    nodb = client.ask(origin.search_request("foo", database_names=["nosuchdb"]))
    assert nodb is not None
    facts["no-database"] = [(d.condition, d.addinfo)
                            for d in origin.read_diagnostics(codec.pdu_body(nodb))]
    bye = client.ask(codec.close())
    assert bye is not None
    facts["close"] = (codec.read_close(bye).reason, codec.read_close(bye).diagnostic_information)
    client.close()

    small = Raw(port)
    small.ask(origin.init_request(preferred_message_size=1500, exceptional_record_size=1_000_000))
    search = small.ask(origin.search_request(term, result_set_name="1"))
    assert search is not None
    count = min(10, int(codec.pdu_body(search)["resultCount"]))
    packed = small.ask(origin.present_request(result_set_id="1", start=1, count=count,
                                             preferred_record_syntax=oids.USMARC))
    assert packed is not None
    pbody = codec.pdu_body(packed)
    returned = int(pbody["numberOfRecordsReturned"])
    facts["pms-1500"] = (int(pbody["presentStatus"]), 0 < returned < count,
                         int(pbody["nextResultSetPosition"]) == returned + 1)
    malformed = small.ask(bytes.fromhex("b6038d0100"))
    assert malformed is not None
    facts["malformed"] = codec.read_close(malformed).reason
    small.close()

    early = Raw(port)
    facts["before-init"] = early.ask(origin.search_request(term))
    early.close()

    indefinite = Raw(port)
    encoded = codec.encode_pdu(origin.init_request())
    # b4 <len> ... -> b4 80 ... 00 00 (the Init's own length octets are short here)
    assert encoded[1] < 0x80
    answer = indefinite.ask(b"\xb4\x80" + encoded[2:] + b"\x00\x00")
    facts["indefinite-init"] = answer is not None and codec.pdu_arm(answer) == "initResponse"
    indefinite.close()

    authed = Raw(port)
    answer = authed.ask(origin.init_request(
        authentication=Authentication("open", "nobody", "x")))
    facts["auth-answered"] = answer is not None and codec.pdu_arm(answer) == "initResponse"
    authed.close()
    return facts


def test_raw_protocol_checks_agree_with_yaz_ztest(daemon: Daemon, ztest: int) -> None:
    """docs/z3950.md 11.6 against both servers: the same answers where GFS behaviour applies."""
    ours = raw_checks(daemon.ports["z3950"], OUR_TERM)
    theirs = raw_checks(ztest, ZTEST_TERM)
    assert ours["init"] == theirs["init"] == (b"REF-42", True, 1_048_576)
    assert ours["out-of-range"][0] == theirs["out-of-range"][0] == 5
    assert ours["out-of-range"][1][0][0] == theirs["out-of-range"][1][0][0] == 13
    for key in ("search", "out-of-range-addinfo-is-start", "unknown-syntax", "no-database",
                "close", "pms-1500", "malformed", "before-init", "indefinite-init",
                "auth-answered"):
        assert ours[key] == theirs[key], (key, ours[key], theirs[key])
    assert ours["pms-1500"] == (2, True, True)
    assert ours["unknown-syntax"] == [(239, "1.2.840.10003.5.16383")]
    assert ours["no-database"] == [(109, "nosuchdb")]
    assert ours["before-init"] is None


COMPARED_SCRIPT = [
    "find {term}", "format usmarc", "show 1", "show 2+3", "show 500+1",
    "format 1.2.840.10003.5.16383", "show 1", "format usmarc",
    "base nosuchdb", "find foo", "base Default", "delete 1", "close",
]


def test_same_yaz_client_script_against_both(daemon: Daemon, ztest: int,
                                             tmp_path: Path) -> None:
    """One yaz-client script against Interlend and yaz-ztest: step by step the same outcome.

    Compared: Init acceptance and options (ours = yaz-ztest's minus extendedServices, which
    we do not implement), search success, records returned and nextResultSetPosition,
    diagnostics with addinfo (13, 239, 109), delete status and the Close reason and message.
    Hit counts differ by design (different catalogues).
    """
    ours = steps(yaz_client(tmp_path, daemon.ports["z3950"],
                            [c.format(term=OUR_TERM) for c in COMPARED_SCRIPT]))
    theirs = steps(yaz_client(tmp_path, ztest,
                              [c.format(term=ZTEST_TERM) for c in COMPARED_SCRIPT]))
    assert [s.request for s in ours] == [s.request for s in theirs]
    our_options = set((ours[0].find(r"^Options: (.*)") or "").split())
    their_options = set((theirs[0].find(r"^Options: (.*)") or "").split())
    assert their_options - our_options == {"extendedServices"}
    assert our_options <= their_options
    for mine, reference in zip(ours[1:], theirs[1:], strict=True):
        assert mine.summary(hits=False) == reference.summary(hits=False), (
            mine.request, mine.lines, reference.lines)


def test_sigterm_closes_open_associations_with_shutdown(tmp_path: Path) -> None:
    """SIGTERM: an idle open association gets Close(shutdown), then the daemon exits cleanly."""
    own = start_daemon(tmp_path)
    try:
        client = Raw(own.ports["z3950"])
        init = client.ask(origin.init_request())
        assert init is not None and bool(codec.pdu_body(init)["result"]) is True
        own.signal(signal.SIGTERM)
        close = client.receive()
        assert close is not None and codec.read_close(close).reason == CloseReason.shutdown
        assert client.receive() is None
        client.close()
        assert own.process.wait(timeout=30) == 0
    finally:
        own.kill()
