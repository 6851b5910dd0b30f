"""The NCIP responder over real HTTP: a real ``interlend serve`` process on loopback, driven by
the real ``curl`` binary and by Twisted's own HTTP client (``Agent``).

Covers peer authentication (shared secret, bearer token, URL token, source networks, unknown
agencies) and that a refused request changes nothing; transport limits (413 by Content-Length and
chunked, 405, 404); parser security (XXE by file and by network, entity bombs); and the
per-request time budget.
"""

from __future__ import annotations

import io
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from tests.daemon import Daemon, start_daemon
from tests.ncip_fixtures import (
    FAR_SECRET,
    PIN,
    RESHARE_SECRET,
    TIPASA_TOKEN,
    URL_TOKEN,
    accept_item,
    config_text,
    count_rows,
    curl,
    find_all,
    local,
    lookup_user_by_id,
    lookup_user_by_login,
    ncip1,
    ncip2,
    parse_reply,
    problem_types,
    seed_database,
    text_of,
)

XML = "application/xml; charset=utf-8"
MAX_BODY = 64 * 1024

# Twisted's readBody warns about its own client transport; nothing to act on here.
pytestmark = pytest.mark.filterwarnings("ignore:Using readBody:DeprecationWarning")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the module, on a seeded database, with every kind of peer configured."""
    tmp = tmp_path_factory.mktemp("ncip-http")
    seed_database(tmp / "interlend.sqlite3")
    d = start_daemon(tmp, config_text(max_body_size=MAX_BODY))
    yield d
    d.stop()


def post(daemon: Daemon, body: bytes, path: str = "/ncip",
         headers: dict[str, str] | None = None) -> bytes:
    """POST with curl; assert the NCIP contract (HTTP 200, application/xml; charset=utf-8)."""
    result = curl(daemon.base_url + path, data=body,
                  headers={"Content-Type": "application/xml", **(headers or {})})
    assert result.status == 200, (result.status, result.body[:300])
    assert result.headers["content-type"] == XML
    parse_reply(result.body)
    return result.body


def totals(database: Path) -> dict[str, int]:
    """Row counts of every table a state-changing request could touch."""
    return {table: count_rows(database, f"SELECT count(*) FROM {table}")
            for table in ("records", "items", "holds", "loans", "rs_requests", "idempotency",
                          "fees")}


def audit_outcomes(database: Path, operation: str) -> list[tuple[str, str | None]]:
    """(outcome, peer) of the audit rows for an operation (polled: audit rows are queued)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT outcome, peer FROM audit WHERE operation = ?",
                            (operation,)).fetchall()
    finally:
        conn.close()


def wait_until(predicate, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true (no fixed sleeps: fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# -- authentication -------------------------------------------------------------------------


def test_shared_secret_right_is_served(daemon: Daemon) -> None:
    """A shared-secret peer with the right FromAgencyAuthentication gets a real LookupUser
    answer (HTTP 200, application/xml; charset=utf-8, no Problem) in its ns1: style."""
    reply = post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"), secret=RESHARE_SECRET))
    assert b"<ns1:LookupUserResponse>" in reply
    assert problem_types(reply) == []
    assert text_of(parse_reply(reply), "GivenName") == "Ada"


@pytest.mark.parametrize("secret", ["wrong-secret", None, ""], ids=["wrong", "missing", "empty"])
def test_shared_secret_wrong_or_missing_refused_and_nothing_done(
        daemon: Daemon, secret: str | None) -> None:
    """A wrong, missing or empty shared secret gets Agency Authentication Failed, and the
    AcceptItem it carried creates no record, item, hold or request."""
    before = totals(daemon.database)
    reply = post(daemon, ncip2("AcceptItem", accept_item(f"RS-BAD-{secret}"), secret=secret))
    assert problem_types(reply) == ["Agency Authentication Failed"]
    assert RESHARE_SECRET.encode() not in reply
    assert totals(daemon.database) == before


def test_accept_item_with_right_secret_does_change_state(daemon: Daemon) -> None:
    """Control for the refusal tests: the same AcceptItem with the right secret does create a
    temporary item and a hold, so "nothing changed" above is meaningful."""
    before = totals(daemon.database)
    reply = post(daemon, ncip2("AcceptItem", accept_item("RS-GOOD-1"), secret=RESHARE_SECRET))
    assert problem_types(reply) == [], reply
    after = totals(daemon.database)
    assert after["items"] == before["items"] + 1 and after["holds"] == before["holds"] + 1
    assert count_rows(daemon.database, "SELECT count(*) FROM items WHERE barcode = ?",
                      ("RS-GOOD-1",)) == 1


def test_bearer_token_right_is_served(daemon: Daemon) -> None:
    """A bearer peer with the right Authorization header is answered in its default-namespace
    style (no prefix)."""
    reply = post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"), style="default",
                               from_agency="OCLC-TIPASA"),
                 headers={"Authorization": f"Bearer {TIPASA_TOKEN}"})
    assert b'<NCIPMessage xmlns="http://www.niso.org/2008/ncip"' in reply
    assert problem_types(reply) == []


@pytest.mark.parametrize("authorization", [f"Bearer {TIPASA_TOKEN}x", "Bearer ", None,
                                           f"Basic {TIPASA_TOKEN}"],
                         ids=["wrong", "empty", "missing", "not-bearer"])
def test_bearer_token_wrong_refused_and_nothing_done(daemon: Daemon,
                                                     authorization: str | None) -> None:
    """A wrong, empty, missing or non-Bearer Authorization for the bearer peer gets Agency
    Authentication Failed and its AcceptItem changes nothing."""
    before = totals(daemon.database)
    headers = {"Authorization": authorization} if authorization is not None else {}
    reply = post(daemon, ncip2("AcceptItem", accept_item("TIP-BAD-1"), style="default",
                               from_agency="OCLC-TIPASA"), headers=headers)
    assert problem_types(reply) == ["Agency Authentication Failed"]
    assert totals(daemon.database) == before


def test_url_token_peer(daemon: Daemon) -> None:
    """/ncip/<token> attributes the request to the URL-token peer, even with no FromAgencyId."""
    for from_agency in ("KOHATOK", None):
        reply = post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"),
                                   from_agency=from_agency), path=f"/ncip/{URL_TOKEN}")
        assert problem_types(reply) == [], reply
        assert b"LookupUserResponse" in reply


@pytest.mark.parametrize("path", [f"/ncip/{URL_TOKEN}x", "/ncip"], ids=["wrong", "bare-path"])
def test_url_token_wrong_or_missing_refused_and_nothing_done(daemon: Daemon, path: str) -> None:
    """The URL-token peer on a wrong token or on the bare path gets Agency Authentication
    Failed; its AcceptItem changes nothing."""
    before = totals(daemon.database)
    reply = post(daemon, ncip2("AcceptItem", accept_item("URL-BAD-1"), from_agency="KOHATOK"),
                 path=path)
    assert problem_types(reply) == ["Agency Authentication Failed"]
    assert totals(daemon.database) == before


def test_allow_from_refuses_other_networks_and_nothing_done(daemon: Daemon) -> None:
    """A peer whose allow_from does not include 127.0.0.1 is refused even with its right secret,
    and its AcceptItem changes nothing."""
    before = totals(daemon.database)
    reply = post(daemon, ncip2("AcceptItem", accept_item("FAR-1"), from_agency="FARAWAY",
                               secret=FAR_SECRET))
    assert problem_types(reply) == ["Agency Authentication Failed"]
    assert totals(daemon.database) == before


def test_unknown_agency_refused_and_nothing_done(daemon: Daemon) -> None:
    """An unknown FromAgencyId gets Unknown Agency naming it; a missing one cannot be told apart
    by source address (two peers allow-list loopback) and is refused too; nothing done; the
    refusal is audited without a peer."""
    before = totals(daemon.database)
    reply = post(daemon, ncip2("AcceptItem", accept_item("NOBODY-1"), from_agency="NOBODY"))
    assert problem_types(reply) == ["Unknown Agency"]
    assert text_of(parse_reply(reply), "ProblemValue") == "NOBODY"
    reply = post(daemon, ncip2("AcceptItem", accept_item("NOBODY-2"), from_agency=None))
    assert problem_types(reply) == ["Agency Authentication Failed"]
    assert totals(daemon.database) == before
    wait_until(lambda: ("Unknown Agency", None) in audit_outcomes(daemon.database, "AcceptItem"))


def test_agency_ids_match_case_insensitively(daemon: Daemon) -> None:
    """FromAgencyId is matched case-insensitively and with surrounding whitespace ignored."""
    reply = post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"),
                               from_agency=" reShare ", secret=RESHARE_SECRET))
    assert problem_types(reply) == []


def test_ncip1_request_authenticated_and_answered_in_ncip1(daemon: Daemon) -> None:
    """An NCIP 1 request from a shared-secret peer is authenticated the same way and refused
    in NCIP 1 form when the secret is wrong."""
    body = ("<UniqueUserId><UniqueAgencyId><Scheme>urn:a</Scheme><Value>TESTLIB</Value>"
            "</UniqueAgencyId><UserIdentifierValue>P-ADA</UserIdentifierValue></UniqueUserId>")
    good = post(daemon, ncip1("LookupUser", body, from_agency="RESHARE", secret=RESHARE_SECRET))
    assert b"<LookupUserResponse>" in good and problem_types(good) == []
    bad = post(daemon, ncip1("LookupUser", body, from_agency="RESHARE", secret="nope"))
    assert b"xmlns" not in bad
    assert problem_types(bad) == ["Agency Authentication Failed"]


def test_unsupported_service_is_a_problem_not_a_crash(daemon: Daemon) -> None:
    """A service the gateway does not implement (LookupAgency, UpdateUser, NCIP 1 CreateUser)
    from an authenticated peer gets Unsupported Service inside its response element — not a
    Temporary Processing Failure from a crash in the error mapping."""
    for body in (
            ncip2("LookupAgency", "<AgencyId>TESTLIB</AgencyId><AgencyElementType>Agency "
                  "Address Information</AgencyElementType>", secret=RESHARE_SECRET),
            ncip2("UpdateUser", lookup_user_by_id("P-ADA"), secret=RESHARE_SECRET),
            ncip1("CreateUser", "", from_agency="PLAIN")):
        reply = post(daemon, body)
        assert problem_types(reply) == ["Unsupported Service"], reply
        root = parse_reply(reply)
        assert text_of(root, "ProblemType") in (None, "Unsupported Service")
        assert local(root[0]).endswith("Response")


# -- limits ---------------------------------------------------------------------------------


def test_body_over_limit_content_length_gets_413(daemon: Daemon) -> None:
    """A body over ncip.max_body_size announced by Content-Length is refused with 413."""
    body = ncip2("LookupUser", lookup_user_by_id("P-ADA") + "<!--" + "x" * MAX_BODY + "-->",
                 secret=RESHARE_SECRET)
    result = curl(daemon.ncip_url, data=body, headers={"Content-Type": "application/xml"})
    assert result.status == 413


def test_body_over_limit_chunked_gets_413(daemon: Daemon) -> None:
    """A chunked body that grows past ncip.max_body_size is refused with 413."""
    body = b"<a>" + b"y" * (MAX_BODY * 2) + b"</a>"
    result = curl(daemon.ncip_url, data=body, chunked=True)
    assert result.status == 413


def test_body_just_under_limit_is_an_ncip_answer(daemon: Daemon) -> None:
    """A body just under the limit is read and answered as NCIP (HTTP 200), not refused."""
    padding = " " * (MAX_BODY - 2000)
    reply = post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA") + padding,
                               secret=RESHARE_SECRET))
    assert problem_types(reply) == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405(daemon: Daemon, method: str) -> None:
    """Only POST is NCIP: other methods on the NCIP path (and token paths) get 405 Allow: POST."""
    for path in ("/ncip", f"/ncip/{URL_TOKEN}"):
        result = curl(daemon.base_url + path, method=method)
        assert result.status == 405, (method, path)
        assert result.headers.get("allow") == "POST"


@pytest.mark.parametrize("path", ["/", "/other", "/ncip/a/b", "/ncipx", "/NCIP"])
def test_unknown_path_gets_404(daemon: Daemon, path: str) -> None:
    """Paths that are not the NCIP path, a token below it, or /healthz get 404."""
    result = curl(daemon.base_url + path, data=b"<x/>")
    assert result.status == 404


def test_healthz(daemon: Daemon) -> None:
    """/healthz answers JSON with status ok while the daemon serves."""
    result = curl(daemon.base_url + "/healthz")
    assert result.status == 200 and result.headers["content-type"] == "application/json"
    assert b'"status": "ok"' in result.body


def test_garbage_and_empty_bodies_are_ncip_problems(daemon: Daemon) -> None:
    """Non-XML, empty and non-NCIP bodies are answered HTTP 200 with a message-level Invalid
    Message Syntax Error, whatever the request Content-Type."""
    for body, ctype in ((b"", "application/xml"), (b"hello", "text/plain"),
                        (b"<html><body/></html>", "text/html"),
                        (b"\xff\xfe\x00<", "application/octet-stream")):
        result = curl(daemon.ncip_url, data=body, headers={"Content-Type": ctype})
        assert result.status == 200 and result.headers["content-type"] == XML
        assert problem_types(result.body) == ["Invalid Message Syntax Error"], body


# -- parser security ------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP socket nobody should ever connect to (to catch network entity fetches)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    sock.setblocking(False)
    yield sock
    sock.close()


def assert_never_contacted(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        sock.accept()


def _lookup_with(doctype: str, value: str) -> bytes:
    body = ncip2("LookupUser", lookup_user_by_id(value), secret=RESHARE_SECRET)
    return body.replace(b"?>\n", b"?>\n" + doctype.encode() + b"\n", 1)


def test_xxe_file_entity_refused(daemon: Daemon, tmp_path: Path) -> None:
    """An external entity naming a local file (also inside an otherwise accepted NCIP 1 DOCTYPE)
    is refused with Invalid Message Syntax Error; XInclude is not processed; the file's contents
    appear neither in a reply nor in the daemon's log."""
    marker = "XXE-MARKER-7b1e0c"
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(marker)
    for doctype, ref in (
            (f'<!DOCTYPE NCIPMessage [<!ENTITY xxe SYSTEM "file://{secret_file}">]>', "&xxe;"),
            (f'<!DOCTYPE NCIPMessage [<!ENTITY xxe SYSTEM "{secret_file}">]>', "&xxe;"),
            (f'<!DOCTYPE NCIPMessage SYSTEM "file://{secret_file}">', "P-ADA"),
            # the NCIP 1 public id that is otherwise stripped, but with an entity subset
            ('<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1.0//EN" "http://www.niso'
             '.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd" '
             f'[<!ENTITY xxe SYSTEM "file://{secret_file}">]>',
             "&xxe;")):
        reply = post(daemon, _lookup_with(doctype, ref))
        assert problem_types(reply) == ["Invalid Message Syntax Error"], reply
        assert marker.encode() not in reply
    # XInclude is never processed: the element is just an unknown child, the file is not read
    body = ncip2("LookupUser", lookup_user_by_id("P-ADA") + '<xi:include xmlns:xi="http://www.w3.'
                 f'org/2001/XInclude" href="file://{secret_file}" parse="text"/>',
                 secret=RESHARE_SECRET, style="default")
    reply = post(daemon, body)
    assert problem_types(reply) == [] and b"LookupUserResponse" in reply
    assert marker.encode() not in reply
    assert not any(marker in line for line in daemon.lines)


def test_xxe_network_entity_refused(daemon: Daemon, listener: socket.socket) -> None:
    """External general and parameter entities and an external DTD over the network are
    refused with Invalid Message Syntax Error, and no connection is ever attempted."""
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/evil"
    for doctype, ref in (
            (f'<!DOCTYPE NCIPMessage [<!ENTITY xxe SYSTEM "{url}">]>', "&xxe;"),
            (f'<!DOCTYPE NCIPMessage [<!ENTITY % p SYSTEM "{url}"> %p;]>', "P-ADA"),
            (f'<!DOCTYPE NCIPMessage PUBLIC "-//X//Y" "{url}.dtd">', "P-ADA")):
        reply = post(daemon, _lookup_with(doctype, ref))
        assert problem_types(reply) == ["Invalid Message Syntax Error"], (doctype, reply)
    assert_never_contacted(listener)


def test_ncip1_doctype_is_stripped_and_never_fetched(daemon: Daemon,
                                                     listener: socket.socket) -> None:
    """The NCIP 1 DOCTYPE real senders include is accepted (stripped), and its DTD URL is never
    fetched even when it points somewhere reachable."""
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/ncip_v1_0.dtd"
    body = ncip1("LookupUser", "<UniqueUserId><UniqueAgencyId><Scheme>urn:a</Scheme><Value>"
                 "TESTLIB</Value></UniqueAgencyId><UserIdentifierValue>P-ADA"
                 "</UserIdentifierValue></UniqueUserId>", from_agency="PLAIN")
    body = body.replace(b"?>\n", b'?>\n<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version'
                        b' 1.0//EN" "' + url.encode() + b'">\n', 1)
    reply = post(daemon, body)
    assert problem_types(reply) == [] and b"<LookupUserResponse>" in reply
    assert_never_contacted(listener)


BILLION_LAUGHS = (
    '<!DOCTYPE NCIPMessage [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">'
              for i in range(1, 10))
    + "]>")


def test_entity_bombs_refused_and_daemon_keeps_serving(daemon: Daemon) -> None:
    """Billion laughs and quadratic blowup are refused quickly with Invalid Message Syntax Error,
    and the daemon goes on serving normal requests."""
    quadratic = '<!DOCTYPE NCIPMessage [<!ENTITY a "' + "A" * 20000 + '">]>'
    for doctype, ref in ((BILLION_LAUGHS, "&lol9;"), (quadratic, "&a;" * 2000)):
        started = time.monotonic()
        reply = post(daemon, _lookup_with(doctype, ref))
        assert time.monotonic() - started < 5
        assert problem_types(reply) == ["Invalid Message Syntax Error"]
        assert b"lollollol" not in reply and b"AAAAAAAAAA" not in reply
    reply = post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"), secret=RESHARE_SECRET))
    assert problem_types(reply) == []
    assert daemon.process.poll() is None


# -- Twisted's own HTTP client --------------------------------------------------------------


async def agent_post(daemon: Daemon, body: bytes, path: str = "/ncip",
                     headers: dict[bytes, list[bytes]] | None = None,
                     length_known: bool = True) -> tuple[int, list[bytes], bytes]:
    """POST with twisted.web.client.Agent (chunked when the producer's length is unknown)."""
    producer = FileBodyProducer(io.BytesIO(body))
    if not length_known:
        from twisted.web.iweb import UNKNOWN_LENGTH
        producer.length = UNKNOWN_LENGTH
    agent = Agent(reactor)
    response = await agent.request(
        b"POST", (daemon.base_url + path).encode(),
        Headers({b"content-type": [b"text/xml"], **(headers or {})}), producer)
    data = await readBody(response)
    return response.code, response.headers.getRawHeaders(b"content-type") or [], data


@pytest_twisted.ensureDeferred
async def test_agent_shared_secret_and_bearer(daemon: Daemon) -> None:
    """Twisted's Agent: right credentials are served, wrong ones get Agency Authentication
    Failed, always HTTP 200 application/xml; charset=utf-8."""
    cases = [
        (ncip2("LookupUser", lookup_user_by_id("P-ADA"), secret=RESHARE_SECRET), {}, []),
        (ncip2("LookupUser", lookup_user_by_id("P-ADA"), secret="bad"), {},
         ["Agency Authentication Failed"]),
        (ncip2("LookupUser", lookup_user_by_id("P-ADA"), style="default",
               from_agency="OCLC-TIPASA"),
         {b"authorization": [f"Bearer {TIPASA_TOKEN}".encode()]}, []),
        (ncip2("LookupUser", lookup_user_by_id("P-ADA"), style="default",
               from_agency="OCLC-TIPASA"), {b"authorization": [b"Bearer nope"]},
         ["Agency Authentication Failed"]),
        (ncip2("LookupUser", lookup_user_by_id("P-ADA"), from_agency="WHO"), {},
         ["Unknown Agency"]),
    ]
    for body, headers, expected in cases:
        code, ctype, data = await agent_post(daemon, body, headers=headers)
        assert code == 200 and ctype == [XML.encode()]
        assert problem_types(data) == expected


@pytest_twisted.ensureDeferred
async def test_agent_url_token_and_limits(daemon: Daemon) -> None:
    """Twisted's Agent: URL-token peer served; a chunked over-limit body gets 413; GET 405."""
    code, _, data = await agent_post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"),
                                                   from_agency=None), path=f"/ncip/{URL_TOKEN}")
    assert code == 200 and problem_types(data) == []
    code, _, _ = await agent_post(daemon, b"<a>" + b"z" * (MAX_BODY + 10) + b"</a>",
                                  length_known=False)
    assert code == 413
    response = await Agent(reactor).request(b"GET", daemon.ncip_url.encode())
    await readBody(response)
    assert response.code == 405


@pytest_twisted.ensureDeferred
async def test_agent_xxe_refused(daemon: Daemon, tmp_path: Path) -> None:
    """Twisted's Agent: an XXE file entity is refused and its marker never comes back."""
    secret_file = tmp_path / "agent-secret.txt"
    secret_file.write_text("AGENT-XXE-MARKER")
    body = _lookup_with(f'<!DOCTYPE NCIPMessage [<!ENTITY x SYSTEM "file://{secret_file}">]>',
                        "&x;")
    code, _, data = await agent_post(daemon, body)
    assert code == 200 and problem_types(data) == ["Invalid Message Syntax Error"]
    assert b"AGENT-XXE-MARKER" not in data


# -- time budget ----------------------------------------------------------------------------


def test_request_over_time_budget_gets_temporary_processing_failure(tmp_path: Path) -> None:
    """With ncip.request_timeout = 1 ms, a LookupUser with a PIN (scrypt verification takes tens
    of milliseconds) is answered Temporary Processing Failure, HTTP 200, in the request's style
    (NCIP 2 ns1:, and NCIP 1);
    a request that completes at once (LookupVersion) is still answered normally, and the
    daemon keeps serving."""
    seed_database(tmp_path / "interlend.sqlite3")
    d = start_daemon(tmp_path, config_text(request_timeout=0.001))
    try:
        reply = post(d, ncip2("LookupUser", lookup_user_by_login("P-SLOW", pin=PIN),
                              secret=RESHARE_SECRET))
        assert problem_types(reply) == ["Temporary Processing Failure"]
        assert b"<ns1:" in reply and PIN.encode() not in reply
        d.wait_for(r"exceeded its 0\.001s budget")
        ncip1_login = ncip1("LookupUser", "".join(
            f"<AuthenticationInput><AuthenticationInputData>{value}</AuthenticationInputData>"
            "<AuthenticationInputType><Scheme>urn:t</Scheme><Value>" + kind
            + "</Value></AuthenticationInputType></AuthenticationInput>"
            for value, kind in (("P-SLOW", "Barcode Id"), (PIN, "PIN"))),
            from_agency="RESHARE", secret=RESHARE_SECRET)
        reply = post(d, ncip1_login)
        assert b"xmlns" not in reply and b"<LookupUserResponse>" in reply
        assert problem_types(reply) == ["Temporary Processing Failure"]
        version = post(d, ncip2("LookupVersion", "", secret=RESHARE_SECRET))
        assert problem_types(version) == [] and b"ServiceSupported" in version
        assert find_all(parse_reply(version), "ServiceSupported")
    finally:
        d.stop()
    assert not any("Traceback" in line for line in d.lines)


def test_audit_rows_hold_no_credentials(daemon: Daemon) -> None:
    """Every request above is in the audit log (refusals without a peer, attributed requests
    with theirs), and no stored body holds a shared secret, a PIN or a file marker."""
    post(daemon, ncip2("LookupItem", "<ItemId><ItemIdentifierValue>AUDIT-BARRIER"
                       "</ItemIdentifierValue></ItemId>", secret=RESHARE_SECRET))
    # audit rows are written in order by one writer: once this one is there, all are
    wait_until(lambda: count_rows(daemon.database, "SELECT count(*) FROM audit WHERE"
                                  " item_barcode = 'AUDIT-BARRIER'") == 1)
    conn = sqlite3.connect(f"file:{daemon.database}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT peer, outcome, coalesce(request_body, '') || "
                            "coalesce(response_body, '') FROM audit WHERE protocol = 'ncip'"
                            ).fetchall()
    finally:
        conn.close()
    assert len(rows) >= 45  # every NCIP request of this module (413/405/404 are not NCIP)
    peers = {peer for peer, _, _ in rows}
    assert {"reshare", "tipasa", "koha-style", None} <= peers
    assert {"Agency Authentication Failed", "Unknown Agency", "Invalid Message Syntax Error",
            "success"} <= {outcome for _, outcome, _ in rows}
    for _, _, bodies in rows:
        for secret in (RESHARE_SECRET, FAR_SECRET, TIPASA_TOKEN, f">{PIN}<",
                       "XXE-MARKER-7b1e0c"):
            assert secret not in bodies


def test_daemon_log_has_no_traceback(daemon: Daemon) -> None:
    """After everything above, the module's daemon is alive and logged no traceback."""
    assert daemon.process.poll() is None
    assert daemon.health()["status"] == "ok"
    assert not any("Traceback" in line for line in daemon.lines), "\n".join(daemon.lines)
