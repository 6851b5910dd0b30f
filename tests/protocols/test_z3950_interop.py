"""Interop sanity: our encoded PDUs against the real YAZ reference server (yaz-ztest).

yaz-ztest runs in inetd mode (``-i``) on one end of a socketpair: no port, no waiting for
a listener, no sleeps. Skipped when the Debian ``yaz`` package is not installed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols.z3950 import client, codec, oids
from protocols.z3950.ber import BERFramer
from protocols.z3950.records import opac_from_asn1

pytestmark = pytest.mark.slow

YAZ_ZTEST = shutil.which("yaz-ztest")


class _Client:
    """A blocking test client speaking to yaz-ztest over a socket, with our codec."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.framer = BERFramer()
        self.pending: list[bytes] = []

    def exchange(self, pdu: codec.PDU) -> codec.PDU:
        """Send one PDU and return the next PDU received."""
        self.sock.sendall(codec.encode_pdu(pdu))
        while not self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("yaz-ztest closed the connection")
            self.pending.extend(self.framer.feed(chunk))
        return codec.decode_pdu(self.pending.pop(0))


@pytest.fixture
def ztest(tmp_path: Path) -> Iterator[_Client]:
    """A yaz-ztest session on a socketpair; the process is stopped by its handle."""
    if YAZ_ZTEST is None:
        pytest.skip("yaz-ztest not installed")
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [YAZ_ZTEST, "-i", "-l", str(tmp_path / "ztest.log")],
        stdin=theirs.fileno(),
        stdout=theirs.fileno(),
        cwd=tmp_path,
    )
    theirs.close()
    ours.settimeout(10)
    try:
        yield _Client(ours)
    finally:
        ours.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_yaz_ztest_session_with_our_codec(ztest: _Client) -> None:
    """Init (referenceId echoed), search 1=7, present as OPAC and USMARC, and Close."""
    init = ztest.exchange(
        client.init_request(
            reference_id=b"REF-42",
            options=("search", "present", "delSet", "scan", "sort", "namedResultSets"),
            preferred_message_size=1_048_576,
            exceptional_record_size=1_048_576,
        )
    )
    assert codec.pdu_arm(init) == "initResponse"
    assert codec.reference_id(init) == b"REF-42"
    assert bool(codec.pdu_body(init)["result"]) is True

    search = ztest.exchange(client.search_request("@attr 1=7 0262011530", result_set_name="1"))
    assert int(codec.pdu_body(search)["resultCount"]) == 262011530

    opac = ztest.exchange(
        client.present_request(result_set_id="1", preferred_record_syntax=oids.OPAC)
    )
    [record] = client.read_records(codec.pdu_body(opac))
    assert record.oid == oids.OPAC
    assert opac_from_asn1(record.value).holdings

    marc = ztest.exchange(
        client.present_request(result_set_id="1", start=2, preferred_record_syntax=oids.USMARC)
    )
    [record] = client.read_records(codec.pdu_body(marc))
    assert record.oid == oids.USMARC and record.encoding == "octet-aligned"

    bad = ztest.exchange(client.search_request("foo", database_names=["nosuchdb"]))
    assert client.read_diagnostics(codec.pdu_body(bad))[0].condition == 109

    closed = ztest.exchange(codec.close())
    assert codec.read_close(closed).reason == 0
