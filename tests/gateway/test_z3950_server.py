"""The Z39.50 listener over StringTransport and a Clock: bytes in, golden bytes out.

Covers framing and decode failures (none may escape ``dataReceived``), timeouts, catalogue
errors mapped to diagnostics, one operation at a time, audit rows, graceful stop, and a
client-server pair over ``twisted.test.iosim``.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.test import iosim

from gateway import __version__
from gateway.audit import AuditBatch, AuditLog
from gateway.config import Peer
from gateway.listeners.z3950 import Z3950Factory, Z3950Protocol
from gateway.testing import Bib1Error, FakeCatalogue, FakeGateway
from protocols.z3950 import client as origin
from protocols.z3950 import codec, oids
from protocols.z3950.ber import BERFramer
from protocols.z3950.codec import Authentication
from protocols.z3950.errors import CloseReason
from tests.log_observers import log_observer

CLOSE_FINISHED_BY_CLIENT = bytes.fromhex(
    "bf30279f8153010083204173736f63696174696f6e207465726d696e6174656420627920636c69656e74")
"""GFS's answer to a client Close, as captured from yaz-ztest (last PDU of the session)."""
CLOSE_PROTOCOL_ERROR = bytes.fromhex("bf30189f8153010683114d616c666f726d6564207061636b616765")
"""Close(protocolError, "Malformed package")."""
CLOSE_LACK_OF_ACTIVITY = bytes.fromhex("bf30059f81530107")

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "z3950" / "fixtures"


class Connection:
    """A server protocol on a StringTransport, with helpers to talk to it."""

    def __init__(self, gateway: FakeGateway | None = None, host: str = "10.0.0.1") -> None:
        self.gateway = gateway or FakeGateway()
        self.factory = Z3950Factory(self.gateway)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=_Address(host))
        self.protocol.makeConnection(self.transport)

    @property
    def clock(self) -> Clock:
        return self.gateway.reactor

    def send(self, data: bytes) -> list[codec.PDU]:
        """Feed bytes; return the PDUs written in answer (and clear the transport)."""
        self.protocol.dataReceived(data)
        return self.take()

    def take(self) -> list[codec.PDU]:
        out = self.transport.value()
        self.transport.clear()
        return [codec.decode_pdu(frame) for frame in BERFramer().feed(out)]

    def ask(self, pdu: codec.PDU) -> codec.PDU:
        [answer] = self.send(codec.encode_pdu(pdu))
        return answer

    def init(self, **kwargs: Any) -> codec.PDU:
        kwargs.setdefault("options", ("search", "present", "delSet", "scan", "sort",
                                      "namedResultSets"))
        return self.ask(origin.init_request(**kwargs))

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


class _Address:
    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 4321


def body(pdu: codec.PDU) -> Any:
    return codec.pdu_body(pdu)


@pytest.fixture
def conn() -> Connection:
    return Connection()


# -- golden bytes -----------------------------------------------------------------------------


def test_client_close_answer_is_byte_identical_to_gfs(conn: Connection) -> None:
    """Init then Close: the server's Close is exactly what yaz-ztest sends, then it hangs up."""
    conn.init()
    conn.protocol.dataReceived(bytes.fromhex("bf30059f81530100"))
    assert conn.transport.value() == CLOSE_FINISHED_BY_CLIENT
    assert conn.closed


def captured_requests() -> list[bytes]:
    """The client PDUs of the captured yaz-client <-> yaz-ztest session."""
    path = FIXTURES / "yaz-ztest-session.hex"
    if not path.exists():
        pytest.skip(f"fixture {path} not found")
    return [bytes.fromhex(line.split()[2]) for line in path.read_text().splitlines()
            if line.startswith("C>S")]


def test_init_response_golden(conn: Connection) -> None:
    """yaz-client's captured InitRequest gets exactly the expected InitResponse bytes."""
    expected = codec.encode_pdu(codec.init_response(
        versions=(1, 2, 3), options=("search", "present", "delSet", "triggerResourceCtrl",
                                     "scan", "sort", "namedResultSets"),
        preferred_message_size=1024 * 1024, exceptional_record_size=4 * 1024 * 1024,
        implementation_id="Interlend", implementation_name="Interlend",
        implementation_version=__version__))
    conn.protocol.dataReceived(captured_requests()[0])
    assert conn.transport.value() == expected


def test_yaz_client_session_replayed(conn: Connection) -> None:
    """Every request of the captured yaz-client session gets one answer; the Close is GFS's."""
    requests = captured_requests()
    answers = []
    for request in requests:
        conn.protocol.dataReceived(request)
        answers.append(conn.transport.value())
        conn.transport.clear()
    arms = [codec.pdu_arm(codec.decode_pdu(a)) for a in answers]
    assert arms[0] == "initResponse" and arms[-1] == "close"
    assert len(arms) == len(requests)
    assert answers[-1] == CLOSE_FINISHED_BY_CLIENT
    decoded = [codec.decode_pdu(a) for a in answers]
    diags = [d.condition for pdu in decoded
             if codec.pdu_arm(pdu) in ("searchResponse", "presentResponse")
             for d in origin.read_diagnostics(body(pdu))]
    assert 114 in diags and 109 in diags


def test_session_fed_one_byte_at_a_time(conn: Connection) -> None:
    """Chunking does not matter: the same session byte by byte gives the same answers."""
    stream = b"".join(codec.encode_pdu(p) for p in (
        origin.init_request(), origin.search_request("@attr 1=4 computer"),
        origin.present_request(preferred_record_syntax=oids.USMARC), codec.close()))
    for i in range(len(stream)):
        conn.protocol.dataReceived(stream[i:i + 1])
    arms = [codec.pdu_arm(p) for p in conn.take()]
    assert arms == ["initResponse", "searchResponse", "presentResponse", "close"]


# -- bad input -----------------------------------------------------------------------------------


def test_pdu_before_init_dropped_without_answer(conn: Connection) -> None:
    """A SearchRequest before Init: no bytes back, connection dropped."""
    assert conn.send(codec.encode_pdu(origin.search_request("foo"))) == []
    assert conn.closed
    assert conn.gateway.audit.entries[-1].outcome == "protocolError"


def test_undecodable_pdu_after_init_is_close_protocol_error(conn: Connection) -> None:
    """A PDU that frames but does not decode: Close(protocolError, "Malformed package")."""
    conn.init()
    conn.protocol.dataReceived(bytes.fromhex("b6038d0100"))
    assert conn.transport.value() == CLOSE_PROTOCOL_ERROR
    assert conn.closed
    conn.protocol.dataReceived(codec.encode_pdu(origin.search_request("x")))
    assert conn.transport.value() == CLOSE_PROTOCOL_ERROR  # nothing more after the Close


@pytest.mark.parametrize("data", [
    bytes.fromhex("300302010000"),                      # universal SEQUENCE, not a PDU
    bytes.fromhex("9f8f7f0100"),                        # unknown context tag
    bytes.fromhex("b4880000000000000000"),              # 8 length octets
    bytes.fromhex("04 88 ff ff ff ff ff ff ff ff"),     # 2**63 length
    bytes.fromhex("3f033f030000"),                      # pyasn1 IndexError seed
    b"\xb4\x80" * 10_000,                               # 10,000-deep nesting
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",               # HTTP on the Z39.50 port
    b"\x00\x00",                                        # stray end-of-contents
], ids=["universal-seq", "wrong-tag", "long-length", "2^63", "indexerror", "deep", "http",
        "eoc"])
def test_malformed_input_before_init_is_dropped(data: bytes) -> None:
    """Malformed input before Init: nothing raised, nothing sent, connection dropped."""
    conn = Connection()
    conn.protocol.dataReceived(data)
    assert conn.transport.value() == b""
    assert conn.closed


@pytest.mark.parametrize("data", [
    bytes.fromhex("b4880000000000000000"),
    bytes.fromhex("b6 88 ff ff ff ff ff ff ff ff"),
    b"\xb6\x80" * 10_000,
    bytes.fromhex("300302010000"),
])
def test_malformed_input_after_init_is_close_protocol_error(data: bytes) -> None:
    """The same after Init: Close(protocolError) first."""
    conn = Connection()
    conn.init()
    conn.protocol.dataReceived(data)
    [close] = conn.take()
    assert codec.read_close(close).reason == CloseReason.protocolError
    assert conn.closed


def test_oversized_pdu_refused_on_its_header() -> None:
    """A declared length above max_pdu_size is refused before buffering it."""
    conn = Connection(FakeGateway(max_pdu_size=1000))
    conn.init()
    conn.protocol.dataReceived(b"\xb6\x83\x01\x00\x00")
    [close] = conn.take()
    assert codec.read_close(close).reason == CloseReason.protocolError


def test_truncated_pdu_waits_and_times_out(conn: Connection) -> None:
    """Half a PDU is buffered silently; the idle timeout still fires."""
    conn.init()
    data = codec.encode_pdu(origin.search_request("@attr 1=4 computer"))
    conn.protocol.dataReceived(data[:10])
    assert conn.transport.value() == b"" and not conn.closed
    conn.clock.advance(conn.gateway.config.z3950.idle_timeout)
    assert conn.transport.value() == CLOSE_LACK_OF_ACTIVITY and conn.closed


def test_random_garbage_never_raises() -> None:
    """300 random byte strings before and after Init: never an exception, at most a Close."""
    rng = random.Random(20261129)
    for i in range(300):
        conn = Connection()
        if i % 2:
            conn.init()
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        if i % 3 == 0:
            data = bytes([rng.choice([0xB4, 0xB6, 0xB8, 0xBF])]) + data
        conn.protocol.dataReceived(data)
        for pdu in conn.take():
            assert codec.pdu_arm(pdu) in ("close", "initResponse", "searchResponse",
                                          "presentResponse", "scanResponse", "sortResponse",
                                          "deleteResultSetResponse")


def test_connection_lost_mid_pdu_is_clean(conn: Connection) -> None:
    """The client hangs up half-way through a PDU: the association is forgotten."""
    conn.init()
    conn.protocol.dataReceived(b"\xb6\x40\x01")
    conn.protocol.connectionLost(None)
    assert conn.protocol not in conn.factory.associations


# -- timeouts --------------------------------------------------------------------------------


def test_init_timeout_drops_without_pdu(conn: Connection) -> None:
    """No Init within init_timeout: dropped, no PDU (GFS)."""
    conn.clock.advance(conn.gateway.config.z3950.init_timeout - 1)
    assert not conn.closed
    conn.clock.advance(1)
    assert conn.closed and conn.transport.value() == b""


def test_init_timeout_not_extended_by_partial_data(conn: Connection) -> None:
    """Dribbling bytes of an Init do not extend the Init deadline."""
    init = codec.encode_pdu(origin.init_request())
    for i in range(5):
        conn.protocol.dataReceived(init[i:i + 1])
        conn.clock.advance(conn.gateway.config.z3950.init_timeout / 5)
    assert conn.closed


def test_idle_timeout_after_init_is_close_lack_of_activity(conn: Connection) -> None:
    """After Init, idle_timeout without a request: Close(lackOfActivity), then hang up."""
    conn.init()
    idle = conn.gateway.config.z3950.idle_timeout
    conn.clock.advance(idle - 1)
    conn.ask(origin.search_request("@attr 1=4 computer"))  # activity re-arms the timer
    conn.clock.advance(idle - 1)
    assert not conn.closed
    conn.clock.advance(1)
    assert conn.transport.value() == CLOSE_LACK_OF_ACTIVITY and conn.closed
    assert conn.gateway.audit.entries[-1].outcome == "lackOfActivity"


def test_closing_connection_aborted_if_it_does_not_drain(conn: Connection) -> None:
    """After our Close, a peer that never reads is aborted after the close grace period."""
    conn.init()
    conn.send(codec.encode_pdu(codec.close()))
    assert conn.closed and not conn.transport.disconnected
    conn.clock.advance(20)
    assert conn.transport.disconnected


def test_no_idle_timeout_while_an_operation_runs() -> None:
    """A slow catalogue call does not count as client inactivity."""
    catalogue = FakeCatalogue(hold=True)
    conn = Connection(FakeGateway(catalogue=catalogue))
    conn.init()
    conn.protocol.dataReceived(codec.encode_pdu(origin.search_request("@attr 1=4 computer")))
    conn.clock.advance(conn.gateway.config.z3950.idle_timeout * 3)
    assert not conn.closed
    catalogue.held.pop().callback(None)
    assert codec.pdu_arm(conn.take()[0]) == "searchResponse"


# -- catalogue errors -------------------------------------------------------------------------


class RaisingCatalogue(FakeCatalogue):
    """A catalogue whose search raises what it is given."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def search(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


def test_bib1_error_becomes_a_diagnostic() -> None:
    """A Bib1Error from the catalogue is a diagnostic in the response, not a Close."""
    conn = Connection(FakeGateway(catalogue=RaisingCatalogue(Bib1Error(114, "9999"))))
    conn.init()
    answer = conn.ask(origin.search_request("@attr 1=9999 x"))
    [diag] = origin.read_diagnostics(body(answer))
    assert (diag.condition, diag.addinfo) == (114, "9999")
    assert not conn.closed


def test_unexpected_error_is_logged_and_becomes_diagnostic_2() -> None:
    """Any other exception: logged with its traceback, answered with diagnostic 2."""
    events: list[dict[str, Any]] = []
    observer = log_observer(events.append)
    globalLogPublisher.addObserver(observer)
    try:
        conn = Connection(FakeGateway(catalogue=RaisingCatalogue(KeyError("boom"))))
        conn.init()
        answer = conn.ask(origin.search_request("@attr 1=4 x"))
    finally:
        globalLogPublisher.removeObserver(observer)
    assert origin.read_diagnostics(body(answer))[0].condition == 2
    failures = [e for e in events if e.get("log_failure") is not None]
    assert failures and failures[0]["log_failure"].check(KeyError)
    assert not conn.closed


def test_fetch_errors_from_fake_catalogue() -> None:
    """Unknown syntax is 239 with the dotted OID; unknown element set is 25."""
    conn = Connection()
    conn.init()
    conn.ask(origin.search_request("@attr 1=4 computer"))
    odd = (1, 2, 840, 10003, 5, 16383)
    answer = conn.ask(origin.present_request(preferred_record_syntax=odd))
    assert origin.read_diagnostics(body(answer))[0].addinfo == "1.2.840.10003.5.16383"
    answer = conn.ask(origin.present_request(element_set_name="ZZ"))
    assert origin.read_diagnostics(body(answer))[0].condition == 25


# -- operations, audit, peers ------------------------------------------------------------------


def test_pipelined_requests_run_one_at_a_time_in_order() -> None:
    """Search and Present sent together: the Present waits for the Search, answers in order."""
    catalogue = FakeCatalogue(hold=True)
    conn = Connection(FakeGateway(catalogue=catalogue))
    conn.init()
    conn.protocol.dataReceived(
        codec.encode_pdu(origin.search_request("@attr 1=4 computer", reference_id=b"s"))
        + codec.encode_pdu(origin.present_request(reference_id=b"p")))
    assert [name for name, _ in catalogue.calls] == ["search"]
    assert conn.transport.producerState == "paused"
    catalogue.held.pop().callback(None)
    assert [name for name, _ in catalogue.calls] == ["search", "fetch"]
    catalogue.held.pop().callback(None)
    answers = conn.take()
    assert [codec.reference_id(a) for a in answers] == [b"s", b"p"]
    assert conn.transport.producerState == "producing"


def test_audit_rows_per_operation(conn: Connection) -> None:
    """One audit row per operation with query, hits, sizes and duration."""
    conn.init()
    conn.ask(origin.search_request("@attr 1=4 computer"))
    conn.ask(origin.present_request(preferred_record_syntax=oids.OPAC))
    conn.ask(origin.scan_request("@attr 1=4 c"))
    conn.ask(origin.sort_request(keys=[origin.SortKeyInfo(sort_field="title")]))
    conn.ask(origin.delete_result_set_request(delete_all=True))
    conn.ask(codec.close())
    rows = conn.gateway.audit.entries
    assert [r.operation for r in rows] == ["init", "search", "present", "scan", "sort",
                                           "delete", "close"]
    search = rows[1]
    assert search.protocol == "z3950" and search.outcome == "success"
    assert search.request_body == "@attr 1=4 computer" and search.response_body == "3 hits"
    assert search.remote == "10.0.0.1" and search.request_size and search.response_size
    assert search.duration_us == 0
    assert all(r.outcome == "success" for r in rows)


def test_duration_measured_on_the_clock() -> None:
    """duration_us is clock time from request to answer."""
    catalogue = FakeCatalogue(hold=True)
    conn = Connection(FakeGateway(catalogue=catalogue))
    conn.init()
    conn.protocol.dataReceived(codec.encode_pdu(origin.search_request("@attr 1=4 emma")))
    conn.clock.advance(0.25)
    catalogue.held.pop().callback(None)
    assert conn.gateway.audit.entries[-1].duration_us == 250_000


RESHARE = Peer(name="reshare", z3950_user="reshare", z3950_password="demo-z-pass",
               z3950_charset="latin-1")


def test_authenticated_peer_attributed_in_audit_and_calls() -> None:
    """Init as reshare: audit rows carry the peer, the catalogue gets the Peer object."""
    gateway = FakeGateway(peers=[RESHARE], require_auth=True)
    calls: list[tuple[str, dict[str, Any]]] = []
    search = gateway.catalogue.search

    def recording_search(query: Any, databases: Any, **kwargs: Any) -> Any:
        calls.append(("search", {"query": query, **kwargs}))
        return search(query, databases, **kwargs)

    gateway.catalogue.search = recording_search  # type: ignore[method-assign]
    conn = Connection(gateway)
    answer = conn.init(authentication=Authentication("open", "reshare", "demo-z-pass"))
    assert bool(body(answer)["result"]) is True
    conn.ask(origin.search_request("@attr 1=4 caf\xe9", charset="latin-1"))
    assert gateway.audit.entries[-1].peer == "reshare"
    name, args = calls[-1]
    assert args["peer"] is RESHARE
    assert args["query"].terms()[0].value == "caf\xe9"
    assert "demo-z-pass" not in repr(gateway.audit.entries)


def test_wrong_password_refused_with_1011() -> None:
    """Wrong password: InitResponse FALSE with 1011 in userInformationField, then hang up."""
    conn = Connection(FakeGateway(peers=[RESHARE]))
    answer = conn.init(authentication=Authentication("open", "reshare", "wrong"))
    assert bool(body(answer)["result"]) is False
    assert origin.read_init_diagnostics(answer)[0].condition == 1011
    assert conn.closed
    assert conn.gateway.audit.entries[-1].outcome == "diagnostic 1011"


def test_peer_source_address_checked() -> None:
    """A peer with allow_from: right credentials from elsewhere give 1016."""
    import ipaddress

    peer = Peer(name="p", z3950_user="p", z3950_password="pw",
                allow_from=(ipaddress.ip_network("192.0.2.0/24"),))
    conn = Connection(FakeGateway(peers=[peer]), host="10.9.9.9")
    answer = conn.init(authentication=Authentication("open", "p", "pw"))
    assert origin.read_init_diagnostics(answer)[0].condition == 1016


# -- graceful stop ----------------------------------------------------------------------------


def test_wait_idle_and_close_all() -> None:
    """wait_idle fires once in-flight calls finish; close_all sends Close(shutdown)."""
    catalogue = FakeCatalogue(hold=True)
    gateway = FakeGateway(catalogue=catalogue)
    factory = Z3950Factory(gateway)
    busy, fresh = factory.buildProtocol(None), factory.buildProtocol(None)
    t1, t2 = StringTransport(), StringTransport()
    busy.makeConnection(t1)
    fresh.makeConnection(t2)
    busy.dataReceived(codec.encode_pdu(origin.init_request())
                      + codec.encode_pdu(origin.search_request("@attr 1=4 emma")))
    t1.clear()
    idle = factory.wait_idle()
    fired: list[Any] = []
    idle.addCallback(fired.append)
    assert fired == [] and factory.in_flight == 1
    catalogue.held.pop().callback(None)
    assert fired == [None] and factory.in_flight == 0
    assert factory.wait_idle().called
    t1.clear()
    factory.close_all()
    [close] = [codec.decode_pdu(f) for f in BERFramer().feed(t1.value())]
    assert codec.read_close(close).reason == CloseReason.shutdown
    assert t1.disconnecting and t2.disconnecting and t2.value() == b""


def test_wait_idle_can_be_cancelled() -> None:
    """A cancelled wait (shutdown grace over) is forgotten."""
    catalogue = FakeCatalogue(hold=True)
    gateway = FakeGateway(catalogue=catalogue)
    factory = Z3950Factory(gateway)
    proto = factory.buildProtocol(None)
    proto.makeConnection(StringTransport())
    proto.dataReceived(codec.encode_pdu(origin.init_request())
                       + codec.encode_pdu(origin.search_request("@attr 1=4 emma")))
    waiting = factory.wait_idle()
    waiting.addErrback(lambda f: None)
    waiting.cancel()
    factory.close_all()
    catalogue.held.pop().callback(None)  # completes after the connection went: ignored
    assert factory.in_flight == 0


def test_factory_defaults_to_gateway_catalogue() -> None:
    """The factory uses the gateway's catalogue service when the gateway has one."""
    gateway = FakeGateway()
    assert Z3950Factory(gateway).catalogue is gateway.catalogue
    assert isinstance(Z3950Factory(gateway).buildProtocol(None), Z3950Protocol)


# -- client and server over iosim ---------------------------------------------------------------


class _Client(Protocol):
    """A scripted Z39.50 client: sends its PDUs one by one, each after the previous answer."""

    def __init__(self, script: list[codec.PDU]) -> None:
        self.script = list(script)
        self.framer = BERFramer()
        self.answers: list[codec.PDU] = []

    def connectionMade(self) -> None:
        self._next()

    def dataReceived(self, data: bytes) -> None:
        for frame in self.framer.feed(data):
            self.answers.append(codec.decode_pdu(frame))
            self._next()

    def _next(self) -> None:
        if self.script:
            assert self.transport is not None
            self.transport.write(codec.encode_pdu(self.script.pop(0)))


def test_client_server_pair_over_iosim() -> None:
    """A full association over in-memory transports: Init, Search, Present OPAC, Close."""
    gateway = FakeGateway()
    server = Z3950Factory(gateway).buildProtocol(None)
    client = _Client([origin.init_request(reference_id=b"R"),
                      origin.search_request("@attr 1=7 9780141439518"),
                      origin.present_request(preferred_record_syntax=oids.OPAC),
                      codec.close()])
    pump = iosim.connect(server, iosim.makeFakeServer(server), client,
                         iosim.makeFakeClient(client), greet=True)
    pump.flush()
    arms = [codec.pdu_arm(a) for a in client.answers]
    assert arms == ["initResponse", "searchResponse", "presentResponse", "close"]
    assert int(body(client.answers[1])["resultCount"]) == 1
    [record] = origin.read_records(body(client.answers[2]))
    assert record.oid == oids.OPAC


# -- audit batching and remembered settings -------------------------------------------------------


class _BatchLog:
    """What an AuditBatch needs of an AuditLog: the time now and record_many."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def now(self) -> str:
        return "2031-01-01T00:00:00.000000+00:00"

    def record_many(self, entries: list[Any]) -> None:
        self.batches.append(list(entries))


def test_audit_batch_rows_flushed_by_close_all() -> None:
    """With an AuditBatch, rows wait for the batch delay; close_all (graceful stop) hands
    every row over before it returns, the shutdown Close's included."""
    gateway = FakeGateway()
    log = _BatchLog()
    # the stand-in has the two methods AuditBatch calls; AuditBatch types it as the AuditLog
    factory = Z3950Factory(gateway, audit=AuditBatch(cast(AuditLog, log), gateway.reactor,
                                                     delay=5.0))
    proto = factory.buildProtocol(None)
    proto.makeConnection(StringTransport(peerAddress=_Address("10.0.0.1")))
    proto.dataReceived(codec.encode_pdu(origin.init_request())
                       + codec.encode_pdu(origin.search_request("@attr 1=4 emma")))
    assert log.batches == [] and gateway.audit.entries == []
    factory.close_all()
    [rows] = log.batches
    assert [(r.operation, r.outcome) for r in rows] == [
        ("init", "success"), ("search", "success"), ("close", "shutdown")]
    assert all(r.remote == "10.0.0.1" and r.time for r in rows)


def test_association_settings_remembered_until_reload() -> None:
    """Settings are built once per address; a new configuration (reload) builds them again."""
    gateway = FakeGateway(peers=[RESHARE])
    factory = Z3950Factory(gateway)
    first = factory.association_settings("10.0.0.1")
    assert factory.association_settings("10.0.0.1") is first
    assert factory.association_settings("10.0.0.2") is not first
    assert [p.name for p in first.peers] == ["reshare"]
    gateway.config = replace(gateway.config, peers=())
    assert factory.association_settings("10.0.0.1").peers == ()


# -- the lazy idle timer --------------------------------------------------------------------------


def test_idle_deadline_before_a_longer_init_deadline() -> None:
    """An idle_timeout shorter than init_timeout: after Init, idle_timeout counts (the Init
    timer still pending is not waited for)."""
    conn = Connection(FakeGateway(init_timeout=100.0, idle_timeout=10.0))
    conn.init()
    conn.clock.advance(9.5)
    assert not conn.closed
    conn.clock.advance(0.5)
    assert conn.transport.value() == CLOSE_LACK_OF_ACTIVITY and conn.closed


def test_requests_keep_one_timer() -> None:
    """Requests move the idle deadline without a timer each: one delayed call stays pending,
    and the association times out idle_timeout after the last request, not the first."""
    conn = Connection(FakeGateway(idle_timeout=30.0))
    conn.init()
    for _ in range(10):
        conn.clock.advance(20)
        conn.ask(origin.search_request("@attr 1=4 computer"))
        assert len(conn.clock.getDelayedCalls()) == 1
    conn.clock.advance(29)
    assert not conn.closed
    conn.clock.advance(1)
    assert conn.closed


def test_shorter_idle_timeout_after_reload_applies_from_the_next_request() -> None:
    """A reload that shortens idle_timeout: the next request's deadline uses the new value."""
    gateway = FakeGateway(idle_timeout=900.0)
    conn = Connection(gateway)
    conn.init()
    gateway.config = replace(gateway.config,
                             z3950=replace(gateway.config.z3950, idle_timeout=5.0))
    conn.ask(origin.search_request("@attr 1=4 computer"))
    conn.clock.advance(5)
    assert conn.closed


def test_no_idle_timer_when_idle_timeout_is_off() -> None:
    """idle_timeout 0: after Init no timer is left (the Init deadline is cancelled too)."""
    conn = Connection(FakeGateway(idle_timeout=0.0))
    conn.init()
    assert conn.clock.getDelayedCalls() == []
    conn.clock.advance(10_000)
    assert not conn.closed


# -- refusals in protocol, pipelining (issue 14 points 7 and 8) ---------------------------------


def limited(gateway: FakeGateway, **limits: Any) -> Any:
    """The Z39.50 factory behind the connection limiter, with the factory's refuser."""
    from gateway.listeners.limits import ConnectionLimitFactory

    factory = Z3950Factory(gateway)
    return ConnectionLimitFactory(factory, name="z39.50", clock=gateway.reactor,
                                  refuser=factory.refusal, **limits)


def connect_limited(limiter: Any, host: str = "10.0.0.1") -> tuple[Any, StringTransport]:
    from twisted.internet.address import IPv4Address

    address = IPv4Address("TCP", host, 4321)
    protocol = limiter.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    if protocol is not None:
        protocol.makeConnection(transport)
    return protocol, transport


def test_connection_over_the_cap_gets_init_refused_with_1018() -> None:
    """Over max_per_host the connection is not closed bare: its Init is answered with result
    false and diagnostic 1018 (addinfo: the limit), then the server hangs up; no audit row.
    Past the refusal slots the limiter closes at once again."""
    gateway = FakeGateway()
    limiter = limited(gateway, max_total=100, max_per_host=1, refusal_slots=1)
    first, _ = connect_limited(limiter)
    refused, transport = connect_limited(limiter)
    assert refused is not None and refused.refusal is not None and limiter.refusing == 1
    assert connect_limited(limiter)[0] is None  # the one refusal slot is taken
    refused.dataReceived(codec.encode_pdu(origin.init_request(reference_id=b"x")))
    [answer] = [codec.decode_pdu(f) for f in BERFramer().feed(transport.value())]
    assert not bool(body(answer)["result"]) and codec.reference_id(answer) == b"x"
    [diag] = origin.read_init_diagnostics(answer)
    assert diag.condition == 1018
    assert "1 connections open from this address (limit 1)" in str(diag.addinfo)
    assert transport.disconnecting and gateway.audit.entries == []
    refused.connectionLost(None)
    assert limiter.refusing == 0 and limiter.per_host["10.0.0.1"] == 1
    assert limiter.refused == 2


def test_refused_connection_without_init_is_dropped_after_the_refusal_timeout() -> None:
    """A refused connection that sends nothing holds its slot at most REFUSAL_TIMEOUT."""
    from gateway.listeners.z3950 import REFUSAL_TIMEOUT

    gateway = FakeGateway()
    limiter = limited(gateway, max_total=0, max_per_host=10, refusal_slots=5)
    refused, transport = connect_limited(limiter)
    assert refused is not None and "in total (limit 0)" in refused.refusal
    gateway.reactor.advance(REFUSAL_TIMEOUT)
    assert transport.disconnecting and transport.value() == b""


def test_default_caps_serve_200_associations_from_one_address() -> None:
    """With the default [z3950] caps, 200 connections from one address at the same instant
    are all served (a metasearcher behind one NAT address); the 251st is refused in protocol."""
    gateway = FakeGateway()
    z = gateway.config.z3950
    limiter = limited(gateway, max_total=z.max_connections,
                      max_per_host=z.max_connections_per_peer,
                      max_rate_per_host=z.max_connection_rate_per_peer,
                      refusal_slots=z.refusal_slots)
    served = [connect_limited(limiter)[0] for _ in range(200)]
    assert all(p is not None and p.refusal is None for p in served)
    gateway.reactor.advance(60)  # the rate bucket refills; the per-address cap remains
    more = [connect_limited(limiter)[0] for _ in range(51)]
    assert [p.refusal is None for p in more].count(True) == 50
    assert more[-1].refusal is not None


def test_pipeline_past_the_limit_answers_what_is_owed_then_closes_resources() -> None:
    """max_pipelined_requests 3 and 6 searches in one write: four answers in order (the one
    running and three queued), then Close(resources)."""
    catalogue = FakeCatalogue(hold=True)
    conn = Connection(FakeGateway(catalogue=catalogue, max_pipelined_requests=3))
    conn.init()
    conn.protocol.dataReceived(b"".join(
        codec.encode_pdu(origin.search_request("@attr 1=4 computer", reference_id=b"%d" % n))
        for n in range(6)))
    assert not conn.closed
    while catalogue.held:
        catalogue.held.pop().callback(None)
    answers = conn.take()
    assert [codec.pdu_arm(a) for a in answers] == ["searchResponse"] * 4 + ["close"]
    assert [codec.reference_id(a) for a in answers[:4]] == [b"0", b"1", b"2", b"3"]
    assert int(body(answers[-1])["closeReason"]) == CloseReason.resources and conn.closed
