"""The pure Z39.50 association state machine: transitions, negotiation, auth, limits, packing.

No reactor, no sockets: PDUs built with the codec go in, actions come out, and the PDUs the
association sends are decoded again to check them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from protocols.z3950 import association, client, codec, fastber, oids
from protocols.z3950.asn1 import PDU_ARMS
from protocols.z3950.association import (
    TRANSITIONS,
    Association,
    AssociationSettings,
    Disconnect,
    FetchCall,
    PeerIdentity,
    Report,
    ScanCall,
    SearchCall,
    Send,
    SortCall,
    State,
    negotiate_size,
)
from protocols.z3950.charset import TermDecoder, utf8_negotiation_proposal
from protocols.z3950.codec import (
    Authentication,
    Diagnostic,
    ResponseRecord,
    ScanEntry,
    SurrogateDiagnostic,
)
from protocols.z3950.errors import CloseReason

ALL_OPTIONS = ("search", "present", "delSet", "scan", "sort", "namedResultSets",
               "triggerResourceCtrl", "extendedServices", "concurrentOperations",
               "negotiationModel", "resourceReport")


@dataclass(frozen=True)
class RS:
    """A stand-in for the catalogue's result set."""

    name: str
    record_ids: tuple[int, ...]

    @property
    def count(self) -> int:
        """The hit count, as the catalogue's result set has it."""
        return len(self.record_ids)


def wire(pdu: codec.PDU, decoder: TermDecoder | None = None) -> codec.Request:
    """Encode and decode again, as the listener hands a PDU from the network over."""
    return codec.decode_request(codec.encode_pdu(pdu), decoder)


def sent(actions: list[Any]) -> list[codec.PDU]:
    """The PDUs among the actions, decoded."""
    return [codec.decode_pdu(a.data) for a in actions if isinstance(a, Send)]


def one(actions: list[Any]) -> Any:
    """The body of the single PDU sent."""
    [pdu] = sent(actions)
    return codec.pdu_body(pdu)


def reports(actions: list[Any]) -> list[Report]:
    return [a for a in actions if isinstance(a, Report)]


def state_of(assoc: Association) -> State:
    """The association's state now (read through a call, so that a check made before the
    association moved does not narrow it for the type checker)."""
    return assoc.state


def up(settings: AssociationSettings | None = None, **init: Any) -> Association:
    """An association after a successful Init."""
    assoc = Association(settings or AssociationSettings())
    init.setdefault("options", ALL_OPTIONS)
    actions = assoc.receive(wire(client.init_request(**init)))
    assert assoc.state is State.UP, actions
    return assoc


def marc(n: int, size: int = 100) -> ResponseRecord:
    return ResponseRecord(oids.USMARC, b"x" * size, "Default")


def search(assoc: Association, hits: int, name: str = "default", **kwargs: Any) -> list[Any]:
    """Run a search to completion with C{hits} hits; return the final actions."""
    actions = assoc.receive(wire(client.search_request("@attr 1=4 x", result_set_name=name,
                                                      **kwargs)))
    [call] = actions
    assert isinstance(call, SearchCall)
    return assoc.resume(RS(call.name, tuple(range(1, hits + 1))))


# -- the table ----------------------------------------------------------------------------------


def test_table_names_real_handlers() -> None:
    """Every handler named in the transition table exists (or is the ignore marker)."""
    for (state, arm), handler in TRANSITIONS.items():
        assert handler == "_on_ignore" or callable(getattr(Association, handler)), (state, arm)
        assert arm in PDU_ARMS, arm


def test_pdu_before_init_drops_connection_without_pdu() -> None:
    """A Search before Init: no PDU at all, the connection is dropped (GFS)."""
    assoc = Association()
    actions = assoc.receive(wire(client.search_request("foo")))
    assert sent(actions) == []
    assert isinstance(actions[-1], Disconnect)
    assert actions[-1].reason is CloseReason.protocolError
    assert assoc.state is State.CLOSING
    assert assoc.receive(wire(client.init_request())) == []


def test_unexpected_pdu_when_up_is_close_protocol_error() -> None:
    """A response PDU from the client is not in the table for UP: Close(protocolError) then
    drop."""
    assoc = up()
    actions = assoc.receive(wire(codec.scan_response()))
    closing = one(actions)
    assert int(closing["closeReason"]) == CloseReason.protocolError
    assert isinstance(actions[-1], Disconnect)
    assert reports(actions)[0].outcome == "protocolError"


def test_closing_ignores_everything() -> None:
    """After a Close, further PDUs are ignored."""
    assoc = up()
    assoc.receive(wire(codec.close()))
    assert assoc.receive(wire(client.search_request("foo"))) == []
    assert assoc.timeout() == []
    assoc.connection_lost()
    assert assoc.state is State.CLOSED


# -- Init -----------------------------------------------------------------------------------------


def test_init_options_versions_sizes_and_identity() -> None:
    """Options are the intersection with what is implemented; sizes are min(client, server)."""
    assoc = Association(AssociationSettings(preferred_message_size=1000,
                                            exceptional_record_size=5000,
                                            implementation_version="9.9"))
    actions = assoc.receive(wire(client.init_request(
        reference_id=b"REF-42", options=ALL_OPTIONS, preferred_message_size=100_000_000,
        exceptional_record_size=2000)))
    body = one(actions)
    assert body["referenceId"].asOctets() == b"REF-42"
    assert bool(body["result"]) is True
    options = codec.names_from_bits(body["options"], codec.OPTION_NAMES)
    assert options == {"search", "present", "delSet", "scan", "sort", "namedResultSets",
                       "triggerResourceCtrl"}
    assert codec.names_from_bits(body["protocolVersion"], codec.VERSION_NAMES) == {
        "version-1", "version-2", "version-3"}
    assert int(body["preferredMessageSize"]) == 1000
    assert int(body["exceptionalRecordSize"]) == 2000
    assert str(body["implementationName"]) == "Interlend"
    assert str(body["implementationVersion"]) == "9.9"
    assert assoc.version == 3 and assoc.state is State.UP
    assert reports(actions)[0].outcome == "success"


@pytest.mark.parametrize("reference_id", [None, b"REF-1", b"REF-2", b"R" * 65])
def test_init_and_close_replies_are_encoded_once_and_exactly(reference_id: bytes | None
                                                             ) -> None:
    """Repeated Inits and client Closes get the very bytes a fresh encoding gives, each with
    its own referenceId and negotiated values (the replies are kept per combination)."""
    for pms, version in ((1000, "1"), (2000, "1"), (1000, "2"), (1000, "1")):
        assoc = Association(AssociationSettings(preferred_message_size=pms,
                                                implementation_version=version))
        [init, _report] = assoc.receive(wire(client.init_request(
            reference_id=reference_id, options=("search", "present"),
            preferred_message_size=pms * 10)))
        assert isinstance(init, Send)
        assert init.data == codec.encode_init_response(
            reference_id=reference_id, accepted=True, versions=[1, 2, 3],
            options=["present", "search"], preferred_message_size=pms,
            exceptional_record_size=assoc.exceptional_record_size,
            implementation_id="Interlend", implementation_name="Interlend",
            implementation_version=version, diagnostic=None, other_info=[])
        close = assoc.receive(wire(codec.close(CloseReason.finished,
                                               reference_id=reference_id)))[0]
        assert isinstance(close, Send)
        assert close.data == codec.encode_close(
            CloseReason.finished, reference_id=reference_id,
            diagnostic_information="Association terminated by client")


def test_replies_with_a_long_reference_id_are_not_kept() -> None:
    """A referenceId over CACHED_REFERENCE_ID bytes is answered but never kept, so clients
    cannot fill the reply caches with large ones."""
    before = (association._accepted_init_response.cache_info().currsize,
              association._finished_close.cache_info().currsize)
    for n in range(3):
        reference_id = b"%d" % n + b"R" * association.CACHED_REFERENCE_ID
        assoc = Association(AssociationSettings())
        [init, _report] = assoc.receive(wire(client.init_request(reference_id=reference_id)))
        assert isinstance(init, Send)
        assert codec.pdu_body(codec.decode_pdu(init.data))["referenceId"].asOctets() == \
            reference_id
        assoc.receive(wire(codec.close(CloseReason.finished, reference_id=reference_id)))
    assert (association._accepted_init_response.cache_info().currsize,
            association._finished_close.cache_info().currsize) == before


def test_size_zero_means_server_maximum() -> None:
    """A client size of 0 (or less) takes the server's value."""
    assert negotiate_size(0, 4096) == 4096
    assert negotiate_size(-1, 4096) == 4096
    assert negotiate_size(100, 4096) == 100
    assoc = up(preferred_message_size=0, exceptional_record_size=0)
    assert assoc.preferred_message_size == AssociationSettings().preferred_message_size


def test_init_version_2_only_gets_no_close_pdu_on_timeout() -> None:
    """A v2 association: version 2 in force, and an idle timeout drops it without Close."""
    assoc = up(versions=(2,))
    assert assoc.version == 2
    actions = assoc.timeout()
    assert sent(actions) == [] and isinstance(actions[-1], Disconnect)


def test_no_common_version_is_refused() -> None:
    """An Init offering only unknown versions gets result FALSE."""
    assoc = Association()
    pdu = client.init_request()
    codec.pdu_body(pdu)["protocolVersion"] = (0, 0, 0, 0, 1, 0, 0, 0)
    actions = assoc.receive(wire(pdu))
    assert bool(one(actions)["result"]) is False
    assert assoc.state is State.CLOSING


def test_named_result_sets_only_when_several_are_kept() -> None:
    """With one result set per association namedResultSets is not confirmed; names give 22."""
    assoc = up(AssociationSettings(max_result_sets=1))
    assert "namedResultSets" not in assoc.options
    actions = assoc.receive(wire(client.search_request("foo", result_set_name="1")))
    body = one(actions)
    assert client.read_diagnostics(body)[0].condition == 22


def test_charset_negotiation_answered_with_utf8() -> None:
    """A charneg-3 proposal with negotiationModel gets the UTF-8 answer and the option."""
    assoc = Association()
    actions = assoc.receive(wire(client.init_request(
        options=("search", "present", "negotiationModel"),
        other_info=[utf8_negotiation_proposal(True)])))
    body = one(actions)
    assert "negotiationModel" in codec.names_from_bits(body["options"], codec.OPTION_NAMES)
    assert body["otherInfo"].isValue and len(body["otherInfo"]) == 1
    plain = up(options=("search", "present", "negotiationModel"))
    assert "negotiationModel" not in plain.options


# -- authentication -----------------------------------------------------------------------------

PEERS = (PeerIdentity("reshare", "reshare", "demo-z-pass", "windows-1250"),
         PeerIdentity("blocked", "blocked", "pw", address_allowed=False))


def init_with(auth: Authentication | None, require: bool = False) -> tuple[Association, Any]:
    assoc = Association(AssociationSettings(peers=PEERS, require_auth=require))
    actions = assoc.receive(wire(client.init_request(authentication=auth)))
    return assoc, actions


def refusal(actions: list[Any]) -> int:
    [pdu] = sent(actions)
    assert bool(codec.pdu_body(pdu)["result"]) is False
    assert isinstance(actions[-1], Disconnect)
    [diag] = client.read_init_diagnostics(pdu)
    return diag.condition


def test_anonymous_accepted_when_auth_not_required() -> None:
    """No credentials and require_auth off: accepted, no peer."""
    assoc, _ = init_with(None)
    assert assoc.state is State.UP and assoc.peer is None


def test_missing_credentials_refused_when_required() -> None:
    """require_auth: no credentials (or anonymous) gives Init FALSE with 1011."""
    for auth in (None, Authentication("anonymous")):
        assoc, actions = init_with(auth, require=True)
        assert refusal(actions) == 1011
        assert assoc.state is State.CLOSING


def test_open_credentials_attribute_the_peer_and_its_charset() -> None:
    """open "user/password" matching a peer: accepted, peer set, its charset is the fallback."""
    assoc, _ = init_with(Authentication("open", "reshare", "demo-z-pass"), require=True)
    assert assoc.peer is not None and assoc.peer.name == "reshare"
    assert assoc.decoder.fallback == "windows-1250"
    assert assoc.decoder.decode("\u010d".encode("windows-1250")) == "\u010d"


def test_idpass_credentials_accepted() -> None:
    """idPass with the right user and password is accepted."""
    assoc, _ = init_with(Authentication("idPass", "reshare", "demo-z-pass"))
    assert assoc.peer is not None and assoc.peer.name == "reshare"


def test_wrong_credentials_always_refused() -> None:
    """Wrong password or unknown user: 1011 even when auth is not required."""
    for auth in (Authentication("open", "reshare", "nope"),
                 Authentication("idPass", "nobody", "demo-z-pass"),
                 Authentication("open", "reshare", None)):
        assoc, actions = init_with(auth)
        assert refusal(actions) == 1011
        assert assoc.peer is None


def test_blocked_address_refused() -> None:
    """Right credentials from an address the peer does not allow: 1016."""
    _, actions = init_with(Authentication("open", "blocked", "pw"))
    assert refusal(actions) == 1016


def test_password_never_in_reports() -> None:
    """Reports (audit rows) never carry the password."""
    _, actions = init_with(Authentication("open", "reshare", "demo-z-pass"))
    assert "demo-z-pass" not in repr(actions)


# -- referenceId --------------------------------------------------------------------------------


def test_reference_id_echoed_in_every_response() -> None:
    """Search, Present, Scan, Sort, Delete and Close responses all carry the referenceId."""
    assoc = up(reference_id=b"I")
    [call] = assoc.receive(wire(client.search_request("x", reference_id=b"S")))
    assert one(assoc.resume(RS("default", (1, 2))))["referenceId"].asOctets() == b"S"
    [call] = assoc.receive(wire(client.present_request(reference_id=b"P")))
    assert one(assoc.resume([marc(1)]))["referenceId"].asOctets() == b"P"
    [call] = assoc.receive(wire(client.scan_request("a", reference_id=b"C")))
    assert one(assoc.resume([ScanEntry("a", 1)]))["referenceId"].asOctets() == b"C"
    [call] = assoc.receive(wire(client.sort_request(reference_id=b"O")))
    assert one(assoc.resume(RS("default", (2, 1))))["referenceId"].asOctets() == b"O"
    body = one(assoc.receive(wire(client.delete_result_set_request(delete_all=True,
                                                                 reference_id=b"D"))))
    assert body["referenceId"].asOctets() == b"D"
    body = one(assoc.receive(wire(codec.close(reference_id=b"X"))))
    assert body["referenceId"].asOctets() == b"X"


# -- Search -------------------------------------------------------------------------------------


def test_search_asks_the_catalogue_and_answers_hits() -> None:
    """Search gives a SearchCall; the result set's size is the hit count, next position 1."""
    assoc = up()
    [call] = assoc.receive(wire(client.search_request(
        "@attr 1=12 rec0003", database_names=["Default", "other"], result_set_name="1")))
    assert isinstance(call, SearchCall)
    assert call.name == "1" and call.databases == ("Default", "other")
    assert call.query.terms()[0].value == "rec0003"
    actions = assoc.resume(RS("1", (7, 8, 9)))
    body = one(actions)
    assert int(body["resultCount"]) == 3 and bool(body["searchStatus"]) is True
    assert int(body["nextResultSetPosition"]) == 1
    assert not body["presentStatus"].isValue
    [report] = reports(actions)
    assert report.query == "@attr 1=12 rec0003" and report.detail == "3 hits"
    assert assoc.result_sets["1"].record_ids == (7, 8, 9)


def test_search_with_no_hits_has_next_position_zero() -> None:
    """Zero hits: nextResultSetPosition 0, as GFS."""
    assert int(one(search(up(), 0))["nextResultSetPosition"]) == 0


def test_search_failure_has_status_false_and_diagnostic() -> None:
    """A catalogue diagnostic: searchStatus FALSE, resultSetStatus none, the diagnostic."""
    assoc = up()
    assoc.receive(wire(client.search_request("@attr 1=9999 x")))
    actions = assoc.resume(Diagnostic(114, "9999"))
    body = one(actions)
    assert bool(body["searchStatus"]) is False and int(body["resultSetStatus"]) == 3
    assert int(body["resultCount"]) == 0 and int(body["nextResultSetPosition"]) == 0
    [diag] = client.read_diagnostics(body)
    assert (diag.condition, diag.addinfo) == (114, "9999")
    assert reports(actions)[0].outcome == "diagnostic 114"


def test_replace_indicator_false_on_existing_name_is_21() -> None:
    """replaceIndicator FALSE and the name exists: diag 21 without a catalogue call."""
    assoc = up()
    search(assoc, 2, name="1")
    actions = assoc.receive(wire(client.search_request("x", result_set_name="1",
                                                      replace_indicator=False)))
    assert client.read_diagnostics(one(actions))[0].condition == 21
    [call] = assoc.receive(wire(client.search_request("x", result_set_name="2",
                                                     replace_indicator=False)))
    assert isinstance(call, SearchCall)


def test_piggyback_small_set_returns_all_records() -> None:
    """hits <= smallSetUpperBound: records 1..hits come with the search response."""
    assoc = up()
    assoc.receive(wire(client.search_request("x", small_set_upper_bound=5,
                                            preferred_record_syntax=oids.USMARC,
                                            element_set_name="F")))
    [fetch] = assoc.resume(RS("default", (1, 2, 3)))
    assert isinstance(fetch, FetchCall)
    assert (fetch.start, fetch.count, fetch.syntax, fetch.element_set) == (
        1, 3, oids.USMARC, "F")
    body = one(assoc.resume([marc(1), marc(2), marc(3)]))
    assert int(body["numberOfRecordsReturned"]) == 3
    assert int(body["nextResultSetPosition"]) == 4 and int(body["presentStatus"]) == 0


def test_piggyback_medium_set_returns_medium_number() -> None:
    """small < hits < largeSetLowerBound: mediumSetPresentNumber records."""
    assoc = up()
    assoc.receive(wire(client.search_request("x", small_set_upper_bound=1,
                                            large_set_lower_bound=20,
                                            medium_set_present_number=2)))
    [fetch] = assoc.resume(RS("default", tuple(range(1, 13))))
    assert isinstance(fetch, FetchCall) and fetch.count == 2
    body = one(assoc.resume([marc(1), marc(2)]))
    assert int(body["resultCount"]) == 12 and int(body["nextResultSetPosition"]) == 3


def test_piggyback_large_set_returns_no_records() -> None:
    """hits >= largeSetLowerBound: no records, no fetch."""
    actions = search(up(), 30, small_set_upper_bound=1, large_set_lower_bound=20,
                     medium_set_present_number=2)
    assert int(one(actions)["numberOfRecordsReturned"]) == 0


def test_piggyback_fetch_failure_keeps_search_success() -> None:
    """A whole-request fetch failure: search succeeds, presentStatus failure, diagnostic."""
    assoc = up()
    assoc.receive(wire(client.search_request("x", small_set_upper_bound=5)))
    assoc.resume(RS("default", (1,)))
    body = one(assoc.resume(Diagnostic(239, "1.2.3")))
    assert bool(body["searchStatus"]) is True and int(body["presentStatus"]) == 5
    assert client.read_diagnostics(body)[0].condition == 239


# -- Present ------------------------------------------------------------------------------------


def test_present_fetches_and_returns_records() -> None:
    """Present 2+2 of 3: FetchCall with syntax/ESN/database, then success, next 4."""
    assoc = up()
    search(assoc, 3, name="1", database_names=["catalogue"])
    [fetch] = assoc.receive(wire(client.present_request(
        result_set_id="1", start=2, count=2, preferred_record_syntax=oids.OPAC,
        element_set_name="B")))
    assert isinstance(fetch, FetchCall)
    assert (fetch.start, fetch.count, fetch.syntax, fetch.element_set, fetch.database) == (
        2, 2, oids.OPAC, "B", "catalogue")
    body = one(assoc.resume([marc(2), marc(3)]))
    assert int(body["presentStatus"]) == 0 and int(body["nextResultSetPosition"]) == 4
    assert len(client.read_records(body)) == 2


def test_present_unknown_result_set_is_30() -> None:
    """Present on a name never searched: diag 30 with the name, status failure."""
    body = one(up().receive(wire(client.present_request(result_set_id="nosuch"))))
    assert int(body["presentStatus"]) == 5
    [diag] = client.read_diagnostics(body)
    assert (diag.condition, diag.addinfo) == (30, "nosuch")


@pytest.mark.parametrize(("start", "count", "addinfo"),
                         [(20, 5, "20"), (0, 1, "0"), (9, 5, "11")])
def test_present_out_of_range_is_13(start: int, count: int, addinfo: str) -> None:
    """Out of range: diag 13 with the first position out of range, as yaz-ztest."""
    assoc = up()
    search(assoc, 10)
    body = one(assoc.receive(wire(client.present_request(start=start, count=count))))
    assert int(body["presentStatus"]) == 5 and int(body["numberOfRecordsReturned"]) == 0
    [diag] = client.read_diagnostics(body)
    assert (diag.condition, diag.addinfo) == (13, addinfo)


def test_present_zero_records() -> None:
    """count 0: success with no records and no catalogue call."""
    assoc = up()
    search(assoc, 3)
    body = one(assoc.receive(wire(client.present_request(start=1, count=0))))
    assert int(body["presentStatus"]) == 0 and int(body["numberOfRecordsReturned"]) == 0


def test_present_limited_by_max_present_records_is_partial_4() -> None:
    """More than max_present_records asked: that many fetched, partial-4, next after them."""
    assoc = up(AssociationSettings(max_present_records=3))
    search(assoc, 10)
    [fetch] = assoc.receive(wire(client.present_request(start=2, count=8)))
    assert isinstance(fetch, FetchCall) and fetch.count == 3
    body = one(assoc.resume([marc(i) for i in range(3)]))
    assert int(body["presentStatus"]) == 4 and int(body["nextResultSetPosition"]) == 5


def test_present_fetch_diagnostic_is_failure() -> None:
    """A Bib-1 error for the whole fetch (239): presentStatus failure with the diagnostic."""
    assoc = up()
    search(assoc, 3)
    assoc.receive(wire(client.present_request(preferred_record_syntax=(1, 2, 840, 10003, 5,
                                                                      16383))))
    body = one(assoc.resume(Diagnostic(239, "1.2.840.10003.5.16383")))
    assert int(body["presentStatus"]) == 5
    assert client.read_diagnostics(body)[0].addinfo == "1.2.840.10003.5.16383"


def test_surrogate_diagnostics_from_catalogue_pass_through() -> None:
    """Per-record failures stay surrogate diagnostics in place of the record."""
    assoc = up()
    search(assoc, 2)
    assoc.receive(wire(client.present_request(start=1, count=2)))
    body = one(assoc.resume([marc(1), SurrogateDiagnostic(Diagnostic(14, "gone"), "Default")]))
    records = client.read_records(body)
    assert isinstance(records[1], SurrogateDiagnostic)
    assert records[1].diagnostic.condition == 14


# -- packing ------------------------------------------------------------------------------------


def packing(pms: int, ers: int, hits: int = 10) -> Association:
    """An association whose record size is the length of the record's data."""
    assoc = Association(AssociationSettings(preferred_message_size=pms,
                                            exceptional_record_size=ers),
                        size_of=lambda record: len(record.data))
    assoc.receive(wire(client.init_request(preferred_message_size=pms,
                                          exceptional_record_size=ers)))
    search(assoc, hits)
    return assoc


def test_packing_stops_at_preferred_message_size_with_partial_2() -> None:
    """pms 1500, records of 600 bytes: 2 fit, partial-2, nextResultSetPosition 3 (GFS)."""
    assoc = packing(1500, 10_000)
    assoc.receive(wire(client.present_request(start=1, count=10)))
    body = one(assoc.resume([marc(i, 600) for i in range(10)]))
    assert int(body["numberOfRecordsReturned"]) == 2
    assert int(body["presentStatus"]) == 2 and int(body["nextResultSetPosition"]) == 3


def test_record_over_pms_among_several_is_surrogate_16() -> None:
    """A record larger than pms (but within ers) when several are asked: surrogate 16."""
    assoc = packing(1500, 10_000)
    assoc.receive(wire(client.present_request(start=1, count=2)))
    body = one(assoc.resume([marc(1, 3000), marc(2, 100)]))
    records = client.read_records(body)
    assert isinstance(records[0], SurrogateDiagnostic)
    assert records[0].diagnostic.condition == 16
    assert not isinstance(records[1], SurrogateDiagnostic)
    assert int(body["presentStatus"]) == 0 and int(body["nextResultSetPosition"]) == 3


def test_single_record_over_pms_is_returned_alone() -> None:
    """One record asked, larger than pms but within ers: returned as is."""
    assoc = packing(1500, 10_000)
    assoc.receive(wire(client.present_request(start=1, count=1)))
    body = one(assoc.resume([marc(1, 3000)]))
    assert not isinstance(client.read_records(body)[0], SurrogateDiagnostic)


def test_record_over_exceptional_size_is_surrogate_17() -> None:
    """A record larger than the exceptional record size: surrogate 17, even alone."""
    assoc = packing(1500, 2000)
    assoc.receive(wire(client.present_request(start=1, count=1)))
    body = one(assoc.resume([marc(1, 5000)]))
    [record] = client.read_records(body)
    assert isinstance(record, SurrogateDiagnostic) and record.diagnostic.condition == 17


def test_default_size_function_measures_encoded_records() -> None:
    """Without an injected size function real encoded sizes drive packing."""
    assoc = Association(AssociationSettings(preferred_message_size=1000))
    assoc.receive(wire(client.init_request()))
    search(assoc, 5)
    assoc.receive(wire(client.present_request(start=1, count=5)))
    body = one(assoc.resume([marc(i, 400) for i in range(5)]))
    assert int(body["numberOfRecordsReturned"]) == 2 and int(body["presentStatus"]) == 2


# -- result sets --------------------------------------------------------------------------------


def test_oldest_result_set_dropped_past_the_limit() -> None:
    """max_result_sets 2: a third name drops the oldest; presenting or sorting it gives 27
    (result set no longer exists, unilaterally deleted by target), a name never used 30."""
    assoc = up(AssociationSettings(max_result_sets=2))
    for name in ("1", "2", "3"):
        search(assoc, 2, name=name)
    assert list(assoc.result_sets) == ["2", "3"]
    body = one(assoc.receive(wire(client.present_request(result_set_id="1"))))
    assert client.read_diagnostics(body)[0].condition == 27
    body = one(assoc.receive(wire(client.sort_request(input_result_sets=["1"]))))
    assert body["diagnostics"][0]["defaultFormat"]["condition"] == 27
    body = one(assoc.receive(wire(client.present_request(result_set_id="never"))))
    assert client.read_diagnostics(body)[0].condition == 30
    search(assoc, 2, name="3")  # replacing an existing name drops nothing
    assert list(assoc.result_sets) == ["2", "3"]


def test_delete_listed_result_sets() -> None:
    """Delete: per-set statuses (0 done, 1 unknown, 2 dropped by us), overall 9 if not all."""
    assoc = up(AssociationSettings(max_result_sets=2))
    for name in ("1", "2", "3"):
        search(assoc, 2, name=name)
    actions = assoc.receive(wire(client.delete_result_set_request(result_sets=["2", "x", "1"])))
    body = one(actions)
    assert int(body["deleteOperationStatus"]) == 9
    statuses = {bytes(s["id"]).decode(): int(s["status"]) for s in body["deleteListStatuses"]}
    assert statuses == {"2": 0, "x": 1, "1": 2}
    assert list(assoc.result_sets) == ["3"]
    body = one(assoc.receive(wire(client.delete_result_set_request(result_sets=["3"]))))
    assert int(body["deleteOperationStatus"]) == 0


def test_delete_all() -> None:
    """Delete all result sets."""
    assoc = up()
    search(assoc, 2, name="1")
    search(assoc, 2, name="2")
    body = one(assoc.receive(wire(client.delete_result_set_request(delete_all=True))))
    assert int(body["deleteOperationStatus"]) == 0 and assoc.result_sets == {}


# -- Scan and Sort ------------------------------------------------------------------------------


def test_scan_success_and_failure() -> None:
    """Scan: ScanCall with count and position, entries in the response; diag = failure 6."""
    assoc = up()
    [call] = assoc.receive(wire(client.scan_request("@attr 1=4 b", number_of_terms=3,
                                                   preferred_position=1)))
    assert isinstance(call, ScanCall) and call.count == 3 and call.preferred_position == 1
    actions = assoc.resume([ScanEntry("banana", 5), ScanEntry("cherry", 2)])
    body = one(actions)
    assert int(body["scanStatus"]) == 0 and int(body["numberOfEntriesReturned"]) == 2
    assert reports(actions)[0].query == "@attr 1=4 b"
    assoc.receive(wire(client.scan_request("@attr 1=4 b")))
    body = one(assoc.resume(Diagnostic(114, "4")))
    assert int(body["scanStatus"]) == 6


def test_sort_success_missing_input_and_failure() -> None:
    """Sort stores the sorted set; unknown input gives 30; a catalogue diag fails the sort."""
    assoc = up()
    search(assoc, 3, name="1")
    [call] = assoc.receive(wire(client.sort_request(input_result_sets=["1"],
                                                   sorted_result_set="s")))
    assert isinstance(call, SortCall) and call.name == "s"
    body = one(assoc.resume(RS("s", (3, 2, 1))))
    assert int(body["sortStatus"]) == 0
    assert assoc.result_sets["s"].record_ids == (3, 2, 1)
    body = one(assoc.receive(wire(client.sort_request(input_result_sets=["zz"]))))
    assert int(body["sortStatus"]) == 2
    assert body["diagnostics"][0]["defaultFormat"]["condition"] == 30
    assoc.receive(wire(client.sort_request(input_result_sets=["1"])))
    body = one(assoc.resume(Diagnostic(207, "x")))
    assert int(body["sortStatus"]) == 2


# -- ordering, Close, timeouts ---------------------------------------------------------------


def test_requests_wait_for_the_running_operation() -> None:
    """A Present arriving during a Search is answered after it, in order."""
    assoc = up()
    [call] = assoc.receive(wire(client.search_request("x", reference_id=b"1")))
    assert assoc.busy
    assert assoc.receive(wire(client.present_request(reference_id=b"2"))) == []
    actions = assoc.resume(RS("default", (1,)))
    assert one(actions[:2])["referenceId"].asOctets() == b"1"
    assert isinstance(actions[-1], FetchCall)
    body = one(assoc.resume([marc(1)]))
    assert body["referenceId"].asOctets() == b"2"


def run_to_end(assoc: Association, actions: list[Any]) -> list[Any]:
    """Feed every catalogue call an answer (a search: 1 hit) until none is pending."""
    out: list[Any] = []
    while True:
        out += [a for a in actions if not isinstance(a, (SearchCall, FetchCall))]
        calls = [a for a in actions if isinstance(a, (SearchCall, FetchCall))]
        if not calls:
            return out
        [call] = calls
        actions = assoc.resume(RS(call.name, (1,)) if isinstance(call, SearchCall)
                               else [marc(1)])


def test_twenty_pipelined_requests_answered_in_order() -> None:
    """20 requests sent without waiting (the default limit is higher): every one answered,
    in arrival order, and the association stays up."""
    assoc = up()
    actions: list[Any] = []
    for n in range(20):
        actions += assoc.receive(wire(client.search_request(f"w{n}", reference_id=b"%d" % n)))
    answers = sent(run_to_end(assoc, actions))
    assert [codec.pdu_arm(p) for p in answers] == ["searchResponse"] * 20
    assert [codec.pdu_body(p)["referenceId"].asOctets() for p in answers] == \
        [b"%d" % n for n in range(20)]
    assert assoc.state is State.UP and association.MAX_QUEUED_REQUESTS >= 20


def test_past_the_pipeline_limit_what_is_owed_is_answered_then_close_resources() -> None:
    """max_queued_requests 2: the running request and the two queued are answered in order;
    the requests past the limit are not; then Close(resources) and a drop."""
    assoc = up(AssociationSettings(max_queued_requests=2))
    actions: list[Any] = []
    for n in range(5):
        actions += assoc.receive(wire(client.search_request("x", reference_id=b"%d" % n)))
    assert assoc.state is State.UP  # nothing is lost before the owed answers go out
    out = run_to_end(assoc, actions)
    answers = sent(out)
    assert [codec.pdu_arm(p) for p in answers] == ["searchResponse"] * 3 + ["close"]
    assert [codec.pdu_body(p)["referenceId"].asOctets() for p in answers[:3]] == \
        [b"0", b"1", b"2"]
    assert int(codec.pdu_body(answers[-1])["closeReason"]) == CloseReason.resources
    assert isinstance(out[-1], Disconnect) and out[-1].reason is CloseReason.resources
    assert state_of(assoc) is State.CLOSING


def test_over_the_caps_init_refused_with_1018_then_dropped() -> None:
    """An association over the connection caps: InitResponse result false with diagnostic
    1018 (system temporarily out of resources) and its addinfo, then a drop (resources)."""
    refusal = Diagnostic(1018, "250 associations from this address", v2=True)
    assoc = Association(AssociationSettings(refusal=refusal))
    actions = assoc.receive(wire(client.init_request(reference_id=b"r1", options=ALL_OPTIONS)))
    body = one(actions)
    assert not bool(body["result"]) and body["referenceId"].asOctets() == b"r1"
    [diag] = client.read_init_diagnostics(body)
    assert (diag.condition, diag.addinfo) == (1018, "250 associations from this address")
    assert isinstance(actions[-1], Disconnect) and actions[-1].reason is CloseReason.resources
    assert assoc.state is State.CLOSING


def test_second_init_reinitialises() -> None:
    """A second Init is re-initialisation (as GFS): accepted, result sets gone, new
    credentials in force; a refused second Init ends the association."""
    peer = PeerIdentity("reshare", user="rs", password="pw")
    assoc = up(AssociationSettings(peers=(peer,)))
    search(assoc, 2, name="default")
    actions = assoc.receive(wire(client.init_request(
        reference_id=b"again", options=ALL_OPTIONS,
        authentication=Authentication("idPass", user="rs", password="pw"))))
    body = one(actions)
    assert bool(body["result"]) and body["referenceId"].asOctets() == b"again"
    assert assoc.state is State.UP and assoc.peer == peer and assoc.result_sets == {}
    assert "re-initialisation (1 result sets deleted)" in (reports(actions)[0].detail or "")
    body = one(assoc.receive(wire(client.present_request(result_set_id="default"))))
    assert client.read_diagnostics(body)[0].condition == 30
    actions = assoc.receive(wire(client.init_request(
        options=ALL_OPTIONS, authentication=Authentication("idPass", user="rs",
                                                            password="wrong"))))
    assert not bool(one(actions)["result"]) and isinstance(actions[-1], Disconnect)
    assert state_of(assoc) is State.CLOSING


def test_client_close_answered_with_finished() -> None:
    """A client Close gets Close(finished, "Association terminated by client"), then drop."""
    assoc = up()
    actions = assoc.receive(wire(codec.close(CloseReason.peerAbort)))
    body = one(actions)
    assert int(body["closeReason"]) == 0
    assert str(body["diagnosticInformation"]) == "Association terminated by client"
    assert isinstance(actions[-1], Disconnect) and assoc.state is State.CLOSING


def test_client_close_on_v2_is_still_answered() -> None:
    """GFS answers a client Close even on a version-2 association."""
    assoc = up(versions=(2,))
    assert int(one(assoc.receive(wire(codec.close())))["closeReason"]) == 0


def test_timeouts_and_shutdown() -> None:
    """Idle before Init: drop with no PDU; after Init: Close(lackOfActivity); stop: shutdown."""
    fresh = Association()
    actions = fresh.timeout()
    assert sent(actions) == [] and isinstance(actions[-1], Disconnect)
    assoc = up()
    assert int(one(assoc.timeout())["closeReason"]) == CloseReason.lackOfActivity
    other = up()
    actions = other.shutdown()
    assert int(one(actions)["closeReason"]) == CloseReason.shutdown
    assert reports(actions)[0].operation == "close"


def test_report_tags_come_back() -> None:
    """The tag given with a request comes back in its report (for timing and sizes)."""
    assoc = Association()
    actions = assoc.receive(wire(client.init_request()), tag=("t0", 25))
    assert reports(actions)[0].tag == ("t0", 25)


def test_resume_without_pending_call_is_an_error() -> None:
    """resume() with nothing pending is a caller bug."""
    with pytest.raises(RuntimeError):
        up().resume(None)


def test_trigger_resource_control_is_ignored() -> None:
    """TriggerResourceControlRequest gets no answer (GFS ignores it); the association stays up."""
    assoc = up()
    assert assoc.receive(codec.decode_request(bytes.fromhex("bf20049f2e0101"))) == []
    assert assoc.state is State.UP


def test_extended_services_not_in_table_closes() -> None:
    """An ES request (not implemented) is not in the table: Close(protocolError)."""
    assoc = up()
    es = codec.decode_request(bytes.fromhex("bf2e0f83010184072a8648ce1309048b0101"))
    assert es == codec.UnhandledRequest("extendedServicesRequest", None)
    actions = assoc.receive(es)
    assert int(one(actions)["closeReason"]) == CloseReason.protocolError
    assert "extendedServicesRequest" in (reports(actions)[0].detail or "")


def test_one_input_type_whichever_path_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The association takes the codec's requests only; read by the fast path or by pyasn1,
    an Init and a Search get the same answers."""
    def run() -> list[Any]:
        assoc = Association()
        init = codec.decode_request(codec.encode_pdu(client.init_request(reference_id=b"r")))
        search = codec.decode_request(codec.encode_pdu(client.search_request("x")))
        return assoc.receive(init) + assoc.receive(search)

    fast = run()
    monkeypatch.setattr(fastber, "ENABLED", False)
    assert run() == fast
    assert one(fast[:1])["referenceId"].asOctets() == b"r"
    assert isinstance(fast[-1], SearchCall)
