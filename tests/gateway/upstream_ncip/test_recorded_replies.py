# -*- test-case-name: tests.gateway.upstream_ncip.test_recorded_replies -*-
"""Real LMS replies from ``../shared/ncip/samples`` (and NCIPServer's captured answers),
served over HTTP by a small responder of our own and read through the upstream client and
each LMS's profile: what the reply says, and which standard Problem it becomes."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted

from gateway.backends.upstream.ncip.client import NcipHttpClient
from gateway.backends.upstream.ncip.profiles import PROFILES, UpstreamUnavailable
from gateway.domain import model as domain
from gateway.ncip.service import problem_for
from protocols.ncip.upstream import read_reply

UTC = ZoneInfo("UTC")

# (sample path under ../shared, HTTP status, content type, profile, service,
#  expected kind, expected standard Problem type or None)
CASES = [
    ("ncip/samples/alma-pulibrary-lib_jobs/alma-RenewItemResponse-problem-UnknownItem.xml",
     200, "text/xml", "alma", "RenewItem", "problem", "Unknown Item"),
    ("ncip/samples/alma-pulibrary-lib_jobs/alma-RenewItemResponse-success.xml",
     200, "text/xml", "alma", "RenewItem", "ok", None),
    ("ncip/samples/oclc-circill-toolkit/circillv2_0-sampleMessages/"
     "CheckOutItemResponseUserUnknown.xml", 200, "application/xml", "generic-ncip2",
     "CheckOutItem", "problem", "Unknown User"),
    ("ncip/samples/oclc-circill-toolkit/circillv2_0-sampleMessages/"
     "CheckOutItemResponseItemUnknown.xml", 200, "application/xml", "generic-ncip2",
     "CheckOutItem", "problem", "Unknown Item"),
    ("ncip/samples/oclc-circill-toolkit/circillv2_0-sampleMessages/"
     "CheckInResponseBarcodedItemNotOnLoan.xml", 200, "application/xml", "generic-ncip2",
     "CheckInItem", "problem", "Item Not Checked Out"),
    ("ncip/samples/oclc-circill-toolkit/circillv2_0-sampleMessages/"
     "CheckOutItemResponseSuccess.xml", 200, "application/xml", "generic-ncip2",
     "CheckOutItem", "ok", None),
    ("ncip/samples/reshare-lib-ncip-client/test-resources/"
     "ncipOneCheckinItemXmlErrorResponseExample.xml", 200, "text/xml", "generic-ncip1",
     "CheckInItem", "problem", "Item Not Checked Out"),
    ("ncip/samples/reshare-lib-ncip-client/test-resources/"
     "ncipOneCheckoutItemXmlResponseExample.xml", 200, "text/xml", "generic-ncip1",
     "CheckOutItem", "ok", None),
    ("ncip/samples/xc-ncip2-toolkit/ncipv2_01-sampleMessages/ProblemResponseSample1.xml",
     200, "text/xml", "xc-toolkit", "AcceptItem", "problem", "Temporary Processing Failure"),
    ("ncip/samples/xc-ncip2-toolkit/ncipv2_01-sampleMessages/CheckOutItemResponse.xml",
     200, "text/xml", "xc-toolkit", "CheckOutItem", "ok", None),
    # NCIPServer (Koha), captured from the peer: text/html, NCIP 1 Problems in NCIP 2
    ("lms/ncipserver/captured/14-CheckOutItem-blocked-user.xml", 200, "text/html; charset=utf-8",
     "koha-ncipserver", "CheckOutItem", "problem",
     "User Ineligible To Check Out This Item"),
    ("lms/ncipserver/captured/06-LookupUser-unknown.xml", 500, "text/html; charset=utf-8",
     "koha-ncipserver", "LookupUser", "http-error", None),
    ("lms/ncipserver/captured/02-LookupVersion-NCIPVersionMessage.xml", 200,
     "text/html; charset=utf-8", "koha-ncipserver", "LookupVersion", "malformed", None),
]


class _Responder:
    """Serves one recorded body with its status and content type, whatever is POSTed."""

    def __init__(self) -> None:
        responder = self
        self.status, self.kind, self.body = 200, "text/xml", b""
        self.delay, self.active, self.most = 0.0, 0, 0
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    responder.active += 1
                    responder.most = max(responder.most, responder.active)
                time.sleep(responder.delay)
                with lock:
                    responder.active -= 1
                self.send_response(responder.status)
                self.send_header("Content-Type", responder.kind)
                self.send_header("Content-Length", str(len(responder.body)))
                self.end_headers()
                self.wfile.write(responder.body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"


@pytest.fixture(scope="module")
def responder() -> Iterator[_Responder]:
    r = _Responder()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _sample(shared: Path, path: str) -> bytes:
    file = shared / path
    if not file.is_file():
        pytest.skip(f"{file} not found")
    return file.read_bytes()


@pytest.mark.parametrize("case", CASES, ids=[c[0].rsplit("/", 1)[-1] for c in CASES])
@pytest_twisted.ensureDeferred
async def test_recorded_reply_read_through_the_client(
        case: tuple[str, int, str, str, str, str, str | None], responder: _Responder,
        shared_dir: Path) -> None:
    path, status, kind, profile_name, service, expected_kind, expected_problem = case
    responder.status, responder.kind = status, kind
    responder.body = _sample(shared_dir, path)
    from twisted.internet import reactor

    client = NcipHttpClient(reactor, responder.url, timeout=5, max_in_flight=2)
    try:
        got_status, body = await client.post(b"<NCIPMessage/>")
    finally:
        await client.close()
    assert got_status == status
    reply = read_reply(got_status, body, UTC)
    assert reply.kind == expected_kind, (reply, path)
    profile = PROFILES[profile_name]
    if expected_problem is not None:
        error = profile.error_for(service, reply)
        assert isinstance(error, domain.CirculationError)
        assert str(problem_for(error).problem_type) == expected_problem, (reply, error)
    if expected_kind == "http-error":
        assert reply.detail and b"<" not in reply.detail.encode()   # read, not passed on
        assert profile.unknown_user_page(reply)


def test_koha_texts_map_to_standard_problems() -> None:
    """NCIPServer's free texts and empty Values, and other LMSs' local words."""
    from protocols.ncip.upstream import UpstreamReply

    koha = PROFILES["koha-ncipserver"]

    def problem(service: str, *texts: str, profile: str = "koha-ncipserver") -> str:
        reply = UpstreamReply("problem", problem_types=texts)
        return str(problem_for(PROFILES[profile].error_for(service, reply)).problem_type)

    assert problem("AcceptItem", "We could not find an item with that barcode") == \
        "Unknown Item"
    assert problem("CheckInItem", "The item is not on loan") == "Item Not Checked Out"
    assert problem("RequestItem", "We can not place a request, we have no borrower "
                   "information") == "Unknown User"
    assert problem("CheckOutItem") == "User Ineligible To Check Out This Item"
    assert problem("RenewItem", "User Unknown", profile="alma") == "Unknown User"
    assert problem("AcceptItem", "Duplicate Item", profile="evergreen") == "Duplicate Request"
    assert problem("CheckInItem", "Item Not Checked Out To This User",
                   profile="evergreen") == "Item Not Checked Out"
    assert problem("RenewItem", "Unsupported Service", profile="evergreen") == \
        "Unsupported Service"
    assert problem("CheckOutItem", "Item Already Checked Out", profile="generic-ncip2") == \
        "User Ineligible To Check Out This Item"
    error = PROFILES["generic-ncip2"].error_for(
        "AcceptItem", UpstreamReply("problem", problem_types=("Problem performing AcceptItem",)))
    assert isinstance(error, UpstreamUnavailable)
    assert str(problem_for(error).problem_type) == "Temporary Processing Failure"
    assert koha.is_already_done("CheckOutItem", UpstreamReply(
        "problem", problem_types=("This item is already on loan to this borrower",)))
    assert not koha.is_already_done("CheckOutItem", UpstreamReply(
        "problem", problem_types=("",)))


@pytest_twisted.ensureDeferred
async def test_calls_in_flight_are_bounded_and_time_limited(responder: _Responder,
                                                            shared_dir: Path) -> None:
    """Six calls with ``max_in_flight = 2``: never more than two at the LMS; a call past the
    time limit fails as a time-out, counted in the upstream's health."""
    from twisted.internet import reactor
    from twisted.internet.defer import gatherResults

    from gateway.backends.upstream.ncip.client import UpstreamCallFailed

    responder.status, responder.kind, responder.body = 200, "text/xml", b"<NCIPMessage/>"
    responder.delay, responder.most = 0.2, 0
    client = NcipHttpClient(reactor, responder.url, timeout=5, max_in_flight=2)
    try:
        results = await gatherResults([client.post(b"<x/>") for _ in range(6)])
        assert [status for status, _ in results] == [200] * 6
        assert responder.most == 2
        assert client.health.state == "up" and client.health.calls == 6
        slow = NcipHttpClient(reactor, responder.url, timeout=0.1, max_in_flight=1)
        try:
            with pytest.raises(UpstreamCallFailed) as caught:
                await slow.post(b"<x/>")
            assert caught.value.timed_out
            assert slow.health.state == "down" and slow.health.timeouts == 1
        finally:
            await slow.close()
    finally:
        responder.delay = 0.0
        await client.close()


@pytest_twisted.ensureDeferred
async def test_a_refused_connection_is_known_unsent() -> None:
    """Nothing listening: the call fails as never sent (the outbox may then retry it freely),
    unlike a time-out or a reset, whose request may have reached the LMS."""
    from twisted.internet import reactor

    from gateway.backends.upstream.ncip.client import UpstreamCallFailed
    from tests.gateway.upstream_ncip.peers import free_port

    client = NcipHttpClient(reactor, f"http://127.0.0.1:{free_port()}/", timeout=5,
                            max_in_flight=1)
    try:
        with pytest.raises(UpstreamCallFailed) as caught:
            await client.post(b"<x/>")
        assert caught.value.unsent and not caught.value.timed_out
        assert client.health.state == "down"
    finally:
        await client.close()
