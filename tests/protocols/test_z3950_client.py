"""The origin side (protocols.z3950.client): what it builds, our server reads as meant; what a
server sends, it reads back. Against our own association, against the captured YAZ and Zebra
responses (read in place from ``../shared``), and against a live yaz-ztest when installed."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from protocols.z3950 import client, codec, oids
from protocols.z3950.association import Association, FetchCall, ScanCall, SearchCall, Send
from protocols.z3950.ber import BERFramer
from protocols.z3950.charset import CharsetChoice, choose_charset, negotiation_response
from protocols.z3950.diagnostics import Bib1
from protocols.z3950.errors import CloseReason, Z3950ProtocolError
from protocols.z3950.external import DecodedExternal
from protocols.z3950.pdus import Authentication, Diagnostic, ResponseRecord, ScanEntry
from protocols.z3950.records import OpacRecord, opac_from_asn1
from tests.protocols.test_z3950_fixtures import all_captured

YAZ_ZTEST = shutil.which("yaz-ztest")


def served(pdu: codec.PDU) -> codec.Request:
    """What our server reads of a request the client built (through the wire bytes)."""
    return codec.decode_request(codec.encode_pdu(pdu))


def answered(pdu: codec.PDU) -> client.ResponseInfo:
    """What the client reads of a response our server built (through the wire bytes)."""
    return client.decode_response(codec.encode_pdu(pdu))


# --------------------------------------------------------------------------------------
# Requests: built here, read by the server side


@pytest.mark.parametrize("auth", [
    Authentication("open", "alice", "s3cret"),
    Authentication("idPass", "alice", "s3cret", "staff"),
    Authentication("anonymous"),
])
def test_init_credentials_reach_the_server(auth: Authentication) -> None:
    """Each idAuthentication form arrives as the same Authentication."""
    info = served(client.init_request(authentication=auth, reference_id=b"I1"))
    assert isinstance(info, codec.InitRequestInfo)
    assert info.authentication == auth and info.reference_id == b"I1"
    assert info.versions == {1, 2, 3} and info.options == {"search", "present"}


def test_init_proposes_character_sets_in_order() -> None:
    """charsets= proposes by charneg-3 (UTF-8 by OID, others by name) and sets
    negotiationModel; the server chooses the first it converts to."""
    pdu = client.init_request(charsets=("ISO-8859-1", "UTF-8"),
                              records_in_selected_charsets=True)
    info = served(pdu)
    assert isinstance(info, codec.InitRequestInfo)
    assert "negotiationModel" in info.options
    proposal = info.charset_proposal
    assert proposal is not None and proposal.records_in_selected_charsets is True
    assert proposal.offered == (("private", "ISO-8859-1"), ("iso10646", "UTF-8"))
    choice = choose_charset(proposal)
    assert choice is not None and choice.name == "ISO-8859-1" and choice.records


def test_search_present_scan_sort_delete_close_reach_the_server() -> None:
    """Every other request the client builds reads back with the values given."""
    search = served(client.search_request(
        "@and @attr 1=4 dune @attr 1=1003 herbert", database_names=["Books"],
        result_set_name="s1", preferred_record_syntax=oids.USMARC, element_set_name="F",
        reference_id=b"S"))
    assert isinstance(search, codec.SearchRequestInfo)
    assert (search.result_set_name, search.database_names, search.reference_id) == (
        "s1", ("Books",), b"S")
    assert search.preferred_record_syntax == oids.USMARC
    assert search.small_set_element_set_name == "F" and search.query is not None

    present = served(client.present_request(result_set_id="s1", start=3, count=7,
                                            preferred_record_syntax=oids.OPAC))
    assert isinstance(present, codec.PresentRequestInfo)
    assert (present.result_set_id, present.start, present.count) == ("s1", 3, 7)
    assert present.preferred_record_syntax == oids.OPAC

    scan = served(client.scan_request("@attr 1=4 dune", number_of_terms=5,
                                      preferred_position=2))
    assert isinstance(scan, codec.ScanRequestInfo)
    assert scan.term is not None and scan.term.value == "dune"
    assert (scan.number_of_terms, scan.preferred_position) == (5, 2)

    sort = served(client.sort_request(input_result_sets=["s1"], sorted_result_set="s2",
                                      keys=[codec.SortKeyInfo(sort_field="title")]))
    assert isinstance(sort, codec.SortRequestInfo)
    assert (sort.input_result_sets, sort.sorted_result_set) == (("s1",), "s2")
    assert sort.keys[0].sort_field == "title"

    delete = served(client.delete_result_set_request(result_sets=["s1", "s2"]))
    assert isinstance(delete, codec.DeleteResultSetRequestInfo)
    assert delete.result_sets == ("s1", "s2") and not delete.delete_all

    close = served(client.close(CloseReason.finished, diagnostic_information="bye"))
    assert close == codec.CloseInfo(None, int(CloseReason.finished), "bye")


def test_scan_needs_a_single_term() -> None:
    with pytest.raises(ValueError, match="single term"):
        client.scan_request("@and a b")


# --------------------------------------------------------------------------------------
# Responses: built by the server side, read here


def test_init_response_accepted_with_charset_answer() -> None:
    """Versions, options, sizes, implementation and the charneg answer (by OID or name)."""
    for choice in (CharsetChoice("UTF-8", "utf-8", iso10646=True, records=True),
                   CharsetChoice("MARC-8", "marc-8", records=False)):
        info = answered(codec.init_response(
            reference_id=b"R", versions=(2, 3), options=("search", "present", "scan"),
            preferred_message_size=65536, exceptional_record_size=131072,
            implementation_id="81", implementation_name="Interlend",
            implementation_version="1.0",
            other_info=[negotiation_response(choice, None)]))
        assert isinstance(info, client.InitResponseInfo)
        assert info.accepted and info.reference_id == b"R"
        assert info.versions == {2, 3} and info.options == {"search", "present", "scan"}
        assert (info.preferred_message_size, info.exceptional_record_size) == (65536, 131072)
        assert (info.implementation_id, info.implementation_name,
                info.implementation_version) == ("81", "Interlend", "1.0")
        assert info.charset is not None
        assert (info.charset.name, info.charset.codec) == (choice.name, choice.codec)
        assert info.diagnostics == ()


def test_init_response_refused_with_diagnostic() -> None:
    """A refusal's diagnostic comes out of userInformationField (GFS nesting)."""
    refusal = Diagnostic(Bib1.BAD_USERID_OR_PASSWORD, "who are you", v2=True)
    info = answered(codec.init_response(accepted=False, preferred_message_size=1,
                                        exceptional_record_size=1, diagnostic=refusal))
    assert isinstance(info, client.InitResponseInfo)
    assert not info.accepted and info.charset is None
    assert info.diagnostics == (refusal,)


def externals(records: object) -> list[DecodedExternal]:
    """The records, each checked to be a record (no surrogate diagnostic among them)."""
    assert isinstance(records, (list, tuple))
    assert all(isinstance(record, DecodedExternal) for record in records)
    return list(records)


def test_search_and_present_responses_with_records() -> None:
    """Records of every kind, and a surrogate diagnostic in place of one."""
    opac = OpacRecord(b"00026nam a2200025 a 4500\x1e\x1d")
    records: list[ResponseRecord | codec.SurrogateDiagnostic] = [
               ResponseRecord(oids.USMARC, b"marc", "Default"),
               ResponseRecord(oids.SUTRS, "plain text"),
               ResponseRecord(oids.OPAC, opac),
               codec.SurrogateDiagnostic(Diagnostic(Bib1.RECORD_SYNTAX_UNAVAILABLE, "x"), "Db")]
    search = answered(codec.search_response(result_count=9, records=records, present_status=0,
                                            reference_id=b"S"))
    assert isinstance(search, client.SearchResponseInfo)
    assert (search.result_count, search.number_of_records_returned,
            search.next_result_set_position, search.search_status) == (9, 4, 5, True)
    assert search.present_status == 0 and search.diagnostics == ()
    marc, sutrs, opac_out, surrogate = search.records
    assert isinstance(marc, DecodedExternal) and isinstance(sutrs, DecodedExternal)
    assert isinstance(opac_out, DecodedExternal)
    assert marc.oid == oids.USMARC and marc.data == b"marc"
    assert sutrs.oid == oids.SUTRS and bytes(sutrs.value) == b"plain text"
    assert opac_from_asn1(opac_out.value) == opac
    assert surrogate == records[3]

    present = answered(codec.present_response(next_result_set_position=3, present_status=2,
                                              records=records[:2]))
    assert isinstance(present, client.PresentResponseInfo)
    assert (present.number_of_records_returned, present.next_result_set_position,
            present.present_status) == (2, 3, 2)
    assert [r.oid for r in externals(present.records)] == [oids.USMARC, oids.SUTRS]


def test_failed_search_and_present_carry_diagnostics() -> None:
    one = Diagnostic(Bib1.DATABASE_UNAVAILABLE, "Books")
    two = Diagnostic(Bib1.UNSUPPORTED_USE_ATTRIBUTE, "9999", v2=True)
    failed = answered(codec.search_response(result_count=0, search_status=False,
                                            result_set_status=3, diagnostics=[one, two]))
    assert isinstance(failed, client.SearchResponseInfo)
    assert not failed.search_status and failed.result_set_status == 3
    assert failed.diagnostics == (one, two) and failed.records == ()
    present = answered(codec.present_response(next_result_set_position=0, present_status=5,
                                              diagnostics=[one]))
    assert isinstance(present, client.PresentResponseInfo)
    assert present.diagnostics == (one,)


def test_scan_sort_delete_close_responses() -> None:
    surrogate = Diagnostic(Bib1.TOO_MANY_INDEX_TERMS, "5")
    scan = answered(codec.scan_response(
        scan_status=0, position_of_term=1, step_size=0, reference_id=b"C",
        entries=[ScanEntry("dune", 3, "Dune"), ScanEntry("dunes"), surrogate]))
    assert isinstance(scan, client.ScanResponseInfo)
    assert scan.entries == (ScanEntry("dune", 3, "Dune"), ScanEntry("dunes"), surrogate)
    assert (scan.scan_status, scan.number_of_entries_returned, scan.position_of_term,
            scan.step_size, scan.reference_id) == (0, 2, 1, 0, b"C")
    malformed = Diagnostic(Bib1.MALFORMED_QUERY, "@attr")
    failed = answered(codec.scan_response(scan_status=6, diagnostics=[malformed]))
    assert isinstance(failed, client.ScanResponseInfo)
    assert failed.scan_status == 6 and failed.diagnostics == (malformed,)

    cannot = Diagnostic(Bib1.CANNOT_SORT, "title")
    sort = answered(codec.sort_response(sort_status=2, result_count=4, diagnostics=[cannot]))
    assert sort == client.SortResponseInfo(None, 2, None, (cannot,), 4)

    delete = answered(codec.delete_result_set_response(
        status=9, list_statuses=[("a", 0), ("b", 1)], message="partly"))
    assert delete == client.DeleteResultSetResponseInfo(
        None, 9, (("a", 0), ("b", 1)), None, "partly")

    close = answered(codec.close(CloseReason.lackOfActivity, diagnostic_information="idle"))
    assert close == codec.CloseInfo(None, int(CloseReason.lackOfActivity), "idle")


def test_requests_are_not_responses() -> None:
    """A target does not send requests: reading one is a protocol error, as is garbage."""
    with pytest.raises(Z3950ProtocolError, match="searchRequest"):
        client.read_response(client.search_request("x"))
    with pytest.raises(Z3950ProtocolError):
        client.decode_response(b"\xb7\x03\x02\x01\x01")


# --------------------------------------------------------------------------------------
# A whole session against our own association (sans I/O)


@dataclass(frozen=True)
class _Hits:
    name: str
    count: int


def test_session_against_our_association() -> None:
    """Init, search with piggy-backed records, present, scan, close: every answer reads."""
    assoc = Association()

    def ask(pdu: codec.PDU, *outcomes: Any) -> list[client.ResponseInfo]:
        actions = assoc.receive(codec.decode_request(codec.encode_pdu(pdu), assoc.decoder))
        for outcome in outcomes:
            assert isinstance(actions[-1], (SearchCall, FetchCall, ScanCall))
            actions = assoc.resume(outcome)
        return [client.decode_response(BERFramer().feed(a.data)[0])
                for a in actions if isinstance(a, Send)]

    [init] = ask(client.init_request(options=("search", "present", "scan"), charsets=["UTF-8"],
                                     reference_id=b"hello"))
    assert isinstance(init, client.InitResponseInfo)
    assert init.accepted and init.reference_id == b"hello" and init.versions == {1, 2, 3}
    assert init.options == {"search", "present", "scan", "negotiationModel"}
    assert init.charset is not None and init.charset.name == "UTF-8"

    records = [ResponseRecord(oids.USMARC, b"rec-%d" % n, "Default") for n in (1, 2)]
    [search] = ask(client.search_request("@attr 1=4 dune", small_set_upper_bound=5),
                   _Hits("default", 2), records)
    assert isinstance(search, client.SearchResponseInfo)
    assert search.result_count == 2
    assert [r.data for r in externals(search.records)] == [b"rec-1", b"rec-2"]

    [present] = ask(client.present_request(start=2, count=1), records[1:])
    assert isinstance(present, client.PresentResponseInfo)
    assert [r.data for r in externals(present.records)] == [b"rec-2"]
    assert present.next_result_set_position == 3

    [out_of_range] = ask(client.present_request(start=3, count=1))
    assert isinstance(out_of_range, client.PresentResponseInfo)
    assert [d.condition for d in out_of_range.diagnostics] == [Bib1.PRESENT_OUT_OF_RANGE]

    [scan] = ask(client.scan_request("@attr 1=4 d", number_of_terms=2),
                 [ScanEntry("dune", 2), ScanEntry("dust", 1)])
    assert isinstance(scan, client.ScanResponseInfo)
    assert scan.entries == (ScanEntry("dune", 2), ScanEntry("dust", 1))

    [closed] = ask(client.close())
    assert isinstance(closed, codec.CloseInfo) and closed.reason == CloseReason.finished


# --------------------------------------------------------------------------------------
# Captured responses of YAZ and Zebra


def test_captured_responses_read(shared_dir: Path) -> None:
    """Every response yaz-ztest and Zebra sent in the captures reads, with the counts the
    PDU carries."""
    read = 0
    for captured in all_captured(shared_dir):
        if captured.direction != "S>C":
            continue
        [frame] = BERFramer().feed(captured.data)
        info = client.decode_response(frame)
        body = codec.pdu_body(codec.decode_pdu(frame))
        read += 1
        if isinstance(info, client.SearchResponseInfo):
            assert info.result_count == int(body["resultCount"]), captured.id
        if isinstance(info, (client.SearchResponseInfo, client.PresentResponseInfo)):
            assert len(info.records) == int(body["numberOfRecordsReturned"]), captured.id
        if isinstance(info, client.ScanResponseInfo):
            assert len([e for e in info.entries if isinstance(e, ScanEntry)]) == int(
                body["numberOfEntriesReturned"]), captured.id
    assert read >= 19


# --------------------------------------------------------------------------------------
# A live yaz-ztest


@pytest.fixture
def ztest(tmp_path: Path) -> Iterator[socket.socket]:
    """A yaz-ztest session in inetd mode on one end of a socketpair (no port, no waiting)."""
    if YAZ_ZTEST is None:
        pytest.skip("yaz-ztest not installed (Debian package yaz)")
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([YAZ_ZTEST, "-i", "-l", str(tmp_path / "ztest.log")],
                            stdin=theirs.fileno(), stdout=theirs.fileno(), cwd=tmp_path)
    theirs.close()
    ours.settimeout(10)
    try:
        yield ours
    finally:
        ours.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_session_against_yaz_ztest(ztest: socket.socket) -> None:
    """The origin side against YAZ's reference target: Init with credentials and charset
    negotiation, search, present (OPAC, USMARC), a failing search, delete, Close (yaz-ztest
    scans only beside a word list of its own: scan is read from the captures above)."""
    framer = BERFramer()
    pending: list[bytes] = []

    def ask(pdu: codec.PDU) -> client.ResponseInfo:
        ztest.sendall(codec.encode_pdu(pdu))
        while not pending:
            chunk = ztest.recv(65536)
            if not chunk:
                raise EOFError("yaz-ztest closed the connection")
            pending.extend(framer.feed(chunk))
        return client.decode_response(pending.pop(0))

    init = ask(client.init_request(
        reference_id=b"REF-1", authentication=Authentication("idPass", "user", "pw"),
        options=("search", "present", "delSet", "scan", "namedResultSets"),
        charsets=["UTF-8"], records_in_selected_charsets=True))
    assert isinstance(init, client.InitResponseInfo)
    assert init.accepted and init.reference_id == b"REF-1" and 3 in init.versions
    assert {"search", "present", "negotiationModel"} <= init.options
    assert init.implementation_name == "GFS/YAZ"
    assert init.charset is not None and init.charset.name  # yaz-ztest answers ISO-8859-1

    search = ask(client.search_request("@attr 1=7 0262011530", result_set_name="1"))
    assert isinstance(search, client.SearchResponseInfo)
    assert search.search_status and search.result_count == 262011530

    opac = ask(client.present_request(result_set_id="1", preferred_record_syntax=oids.OPAC))
    assert isinstance(opac, client.PresentResponseInfo)
    [record] = opac.records
    assert not isinstance(record, codec.SurrogateDiagnostic) and record.oid == oids.OPAC
    assert opac_from_asn1(record.value).holdings

    marc = ask(client.present_request(result_set_id="1", start=2,
                                      preferred_record_syntax=oids.USMARC))
    assert isinstance(marc, client.PresentResponseInfo)
    [record] = marc.records
    assert not isinstance(record, codec.SurrogateDiagnostic) and record.oid == oids.USMARC

    bad = ask(client.search_request("foo", database_names=["nosuchdb"]))
    assert isinstance(bad, client.SearchResponseInfo)
    assert [d.condition for d in bad.diagnostics] == [Bib1.DATABASE_UNAVAILABLE]

    deleted = ask(client.delete_result_set_request(delete_all=True))
    assert isinstance(deleted, client.DeleteResultSetResponseInfo)

    closed = ask(client.close())
    assert isinstance(closed, codec.CloseInfo) and closed.reason == CloseReason.finished
