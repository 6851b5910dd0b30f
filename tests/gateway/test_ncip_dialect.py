"""Issue 13 points 9-13 over a real daemon: reply style follows the caller, LookupVersion
without agency authentication, peers sharing an agency id, INN-Reach's AcceptItem by
VisibleUserId and its notifications, Windows-1252 bodies from ILLiad.

Every peer authenticates as the configuration requires (``kind`` explicit, ``"none"`` only
with ``allow_from``). Replies are validated against the NCIP schemas read in place from
../shared when it is present (skipped otherwise).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from protocols.ncip import Dialect, PrefixStyle
from tests.audit_fixtures import wait_until
from tests.conftest import SHARED
from tests.daemon import Daemon, start_daemon
from tests.ncip_fixtures import (
    AGENCY,
    NS,
    RESHARE_SECRET,
    accept_item,
    lookup_user_by_id,
    ncip2,
    parse_reply,
    problem_types,
    seed_database,
    texts_of,
)
from tests.protocols.test_ncip_writer import Schemas, load_schemas

LIBRARY = "01XXX_INST"  # ILLiad and Tipasa both send the library's own agency id
TIPASA_TOKEN = "tipasa-bearer-13"
FAR_SECRET = "far-secret-13"

CONFIG = f"""
[gateway]
agency_id = "{AGENCY}"
timezone = "Europe/London"

[ncip]
path = "/ncip"

[audit]
bodies = "redacted"

[[peers]]
name = "reshare"
ncip_agency_ids = ["RESHARE"]
auth = {{ kind = "shared-secret", secret = "{RESHARE_SECRET}" }}
default_pickup_location = "MAIN"

[[peers]]
name = "dcb"
ncip_agency_ids = ["dcb-host"]
from_system_ids = ["DCB"]
auth = {{ kind = "none" }}
allow_from = ["127.0.0.0/8", "::1/128"]
default_pickup_location = "MAIN"

[[peers]]
name = "illiad"
ncip_agency_ids = ["{LIBRARY}"]
application_profile = "ILLiad"
auth = {{ kind = "none" }}
allow_from = ["127.0.0.0/8", "::1/128"]
namespace_style = "ns1"
fallback_charset = "windows-1252"
default_pickup_location = "MAIN"

[[peers]]
name = "tipasa"
ncip_agency_ids = ["{LIBRARY}"]
from_system_ids = ["WSILL"]
auth = {{ kind = "bearer", token = "{TIPASA_TOKEN}" }}
default_pickup_location = "MAIN"

[[peers]]
name = "far"
ncip_agency_ids = ["FAR"]
auth = {{ kind = "shared-secret", secret = "{FAR_SECRET}" }}
allow_from = ["10.99.0.0/16"]

[[peers]]
name = "innreach"
ncip_agency_ids = ["zv247"]
auth = {{ kind = "none" }}
allow_from = ["127.0.0.0/8", "::1/128"]
temporary_barcode = "request-id"
default_pickup_location = "MAIN"
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("ncip-dialect")
    seed_database(tmp / "interlend.sqlite3")
    d = start_daemon(tmp, CONFIG)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def schemas() -> Schemas | None:
    return load_schemas(SHARED) if SHARED.is_dir() else None


def query(d: Daemon, sql: str, *params: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{d.database}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def post(d: Daemon, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """POST one request (HTTP 200 expected) and wait for its audit row: a lookup's row lands
    shortly after its reply (a state change's commits before it)."""
    before = query(d, "SELECT COALESCE(MAX(id), 0) AS n FROM audit")[0]["n"]
    status, reply = d.post(body, headers=headers)
    assert status == 200
    wait_until(lambda: query(d, "SELECT id FROM audit WHERE id > ?", before))
    return reply


def last_audit(d: Daemon, operation: str) -> sqlite3.Row:
    return query(d, "SELECT * FROM audit WHERE operation = ? ORDER BY id DESC LIMIT 1",
                 operation)[0]


# -- 13.9 reply style ---------------------------------------------------------------------------


def test_reply_follows_the_caller_style(daemon: Daemon, schemas: Schemas | None) -> None:
    """Peers with no namespace_style are answered in their request's style: DCB's
    default-namespace request gets a literal ``<Problem>`` (what its adaptor searches for),
    ReShare's ``ns1:`` request gets ``ns1:``, an un-namespaced one gets no namespace."""
    dcb = post(daemon, ncip2("LookupUser", lookup_user_by_id("NO-SUCH-PATRON"),
                             from_agency="dcb-host", from_system="DCB", style="default"))
    assert b"<Problem>" in dcb and b"ns1:" not in dcb
    assert problem_types(dcb) == ["Unknown User"]
    reshare = post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"),
                                 secret=RESHARE_SECRET, style="ns1"))
    assert b"<ns1:LookupUserResponse>" in reshare
    bare = post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"),
                              secret=RESHARE_SECRET, style="none"))
    assert b"xmlns" not in bare and b"<LookupUserResponse>" in bare
    if schemas is not None:
        schemas.check(dcb, Dialect.NCIP2, PrefixStyle.DEFAULT)
        schemas.check(reshare, Dialect.NCIP2, PrefixStyle.NS1)
        schemas.check(bare, Dialect.NCIP2, PrefixStyle.NONE)


def test_explicit_style_still_wins(daemon: Daemon, schemas: Schemas | None) -> None:
    """ILLiad sends a default namespace and string-matches ``<ns1:...>``: its configured
    ``namespace_style = "ns1"`` is what it gets."""
    reply = post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"), from_agency=LIBRARY,
                               profile="ILLiad", style="default"))
    assert b"<ns1:LookupUserResponse>" in reply and problem_types(reply) == []
    if schemas is not None:
        schemas.check(reply, Dialect.NCIP2, PrefixStyle.NS1)


# -- 13.10 LookupVersion ------------------------------------------------------------------------


def version_lookup(agency: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<NCIPVersionMessage version="http://www.'
            'niso.org/ncip/v1_0/imp1/xsd/ncip_version.xsd"><LookupVersion><FromAgencyId>'
            f"<UniqueAgencyId><Scheme>urn:a</Scheme><Value>{agency}</Value></UniqueAgencyId>"
            "</FromAgencyId><ToAgencyId><UniqueAgencyId><Scheme>urn:a</Scheme>"
            f"<Value>{AGENCY}</Value></UniqueAgencyId></ToAgencyId></LookupVersion>"
            "</NCIPVersionMessage>").encode()


def test_lookup_version_without_agency_authentication(daemon: Daemon,
                                                      schemas: Schemas | None) -> None:
    """An NCIPVersionMessage (no room for credentials) naming a shared-secret peer, or naming
    nobody we know, is answered in its own form with our versions and services; a peer whose
    allow_from excludes the caller is still refused."""
    for agency, peer in (("RESHARE", "reshare"), ("NOBODY", None)):
        reply = post(daemon, version_lookup(agency))
        root = parse_reply(reply)
        assert root.tag == "NCIPVersionMessage" and root[0].tag == "LookupVersionResponse"
        assert root.findtext("LookupVersionResponse/ToAgencyId/UniqueAgencyId/Value") == agency
        assert root.findtext("LookupVersionResponse/FromAgencyId/UniqueAgencyId/Value") == AGENCY
        assert "http://www.niso.org/2008/ncip" in texts_of(root, "VersionSupported")
        assert {"LookupVersion", "LookupUser", "AcceptItem", "CheckInItem",
                "ItemShipped"} <= set(texts_of(root, "ServiceSupported"))
        if schemas is not None:
            schemas.check(reply, Dialect.VERSION)
        row = last_audit(daemon, "LookupVersion")
        assert row["outcome"] == "success" and row["peer"] == peer
    refused = post(daemon, version_lookup("FAR"))
    assert problem_types(refused) == ["Agency Authentication Failed"]
    assert last_audit(daemon, "LookupVersion")["outcome"] == "Agency Authentication Failed"


# -- 13.11 peers sharing an agency id -----------------------------------------------------------


def test_peers_sharing_an_agency_id_are_told_apart(daemon: Daemon) -> None:
    """ILLiad (ApplicationProfileType ILLiad) and Tipasa (bearer token, FromSystemId WSILL)
    both send FromAgencyId 01XXX_INST: each request is attributed to its own peer in the
    audit log; a request matching neither is refused."""
    post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"), from_agency=LIBRARY,
                       profile="ILLiad", style="default"))
    assert last_audit(daemon, "LookupUser")["peer"] == "illiad"
    reply = post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"), from_agency=LIBRARY,
                               from_system="WSILL", profile="2.00"),
                 headers={"Authorization": f"Bearer {TIPASA_TOKEN}"})
    assert problem_types(reply) == []
    assert last_audit(daemon, "LookupUser")["peer"] == "tipasa"
    stranger = post(daemon, ncip2("LookupUser", lookup_user_by_id("P-ADA"), from_agency=LIBRARY,
                                  profile="Someone else"))
    assert problem_types(stranger) == ["Agency Authentication Failed"]
    row = last_audit(daemon, "LookupUser")
    assert row["peer"] is None and row["outcome"] == "Agency Authentication Failed"


# -- 13.13 Windows-1252 from ILLiad -------------------------------------------------------------

TITLE = "Caf\u00e9 \u201cNo\u00ebl\u201d \u2013 \u20ac5"


def illiad_accept_item(request_id: str, declaration: str) -> bytes:
    inner = accept_item(request_id).replace("Borrowed book", TITLE)
    header = (f"<FromAgencyId><AgencyId>{LIBRARY}</AgencyId></FromAgencyId><ToAgencyId>"
              f"<AgencyId>{LIBRARY}</AgencyId></ToAgencyId>"
              "<ApplicationProfileType>ILLiad</ApplicationProfileType>")
    return (f'{declaration}<NCIPMessage xmlns="{NS}" version="http://www.niso.org/schemas/ncip/'
            f'v2_02/ncip_v2_02.xsd"><AcceptItem><InitiationHeader>{header}</InitiationHeader>'
            f"{inner}</AcceptItem></NCIPMessage>").encode("cp1252")


@pytest.mark.parametrize(("request_id", "declaration"), [
    ("TN-1252-A", '<?xml version="1.0" encoding="UTF-8"?>'), ("TN-1252-B", "")])
def test_windows_1252_body_decoded_with_the_peer_fallback(daemon: Daemon, request_id: str,
                                                          declaration: str) -> None:
    """ILLiad's AcceptItem in Windows-1252, declared UTF-8 or undeclared: the temporary
    record's title keeps every character and the audit row records the repair."""
    reply = post(daemon, illiad_accept_item(request_id, declaration))
    assert problem_types(reply) == [] and b"<ns1:AcceptItemResponse>" in reply
    titles = [r["title"] for r in query(
        daemon, "SELECT r.title FROM rs_requests q JOIN items i ON i.id = q.item_id"
                " JOIN records r ON r.id = i.record_id WHERE q.broker_request_id = ?",
        request_id)]
    assert len(titles) == 1 and TITLE in titles[0]
    row = last_audit(daemon, "AcceptItem")
    assert row["peer"] == "illiad" and row["broker_request_id"] == request_id
    assert "charset-fallback:windows-1252" in (row["notes"] or "").split(",")


def test_no_fallback_for_a_peer_without_one(daemon: Daemon) -> None:
    """The same bytes claiming to be DCB's (no fallback configured) are refused as before,
    and nothing is created."""
    body = illiad_accept_item("TN-1252-DCB", '<?xml version="1.0" encoding="UTF-8"?>')
    body = body.replace(f"<AgencyId>{LIBRARY}</AgencyId></FromAgencyId>".encode(),
                        b"<AgencyId>dcb-host</AgencyId></FromAgencyId>")
    reply = post(daemon, body)
    assert problem_types(reply) == ["Invalid Message Syntax Error"]
    assert not query(daemon, "SELECT id FROM rs_requests WHERE broker_request_id = ?",
                     "TN-1252-DCB")


# -- 13.12 INN-Reach NCIP 1 ---------------------------------------------------------------------

IR = "http://192.0.2.1:6601/IRCIRCD?target=get_scheme_values&amp;scheme="


def _sv(name: str, value: str) -> str:
    return (f'<{name}><Scheme datatype="string">{IR}{name}</Scheme>'
            f'<Value datatype="string">{value}</Value></{name}>')


def innreach(service: str, inner: str) -> bytes:
    """An INN-Reach DCB box message: NCIP 1 with its DOCTYPE and datatype attributes."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE NCIPMessage PUBLIC "-//NISO//'
            'NCIP DTD Version 1.0//EN" "http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd"[]>'
            '\n<NCIPMessage version="http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">'
            f"<{service}><InitiationHeader><FromAgencyId>{_sv('UniqueAgencyId', 'zv247')}"
            f"</FromAgencyId><ToAgencyId>{_sv('UniqueAgencyId', AGENCY)}</ToAgencyId>"
            f"</InitiationHeader>{inner}</{service}></NCIPMessage>").encode()


def ir_request(tracking: str) -> str:
    return (f"<UniqueRequestId>{_sv('UniqueAgencyId', 'zv247')}<RequestIdentifierValue "
            f'datatype="string">{tracking}</RequestIdentifierValue></UniqueRequestId>')


def ir_item(barcode: str) -> str:
    return (f"<UniqueItemId>{_sv('UniqueAgencyId', 'zv247')}<ItemIdentifierValue "
            f'datatype="string">{barcode}</ItemIdentifierValue></UniqueItemId>')


def test_innreach_accept_item_by_visible_user_id_and_notifications(daemon: Daemon,
                                                                   schemas: Schemas | None
                                                                   ) -> None:
    """INN-Reach's AcceptItem naming the patron only by its local barcode (VisibleUserId)
    holds the item for that patron; its notifications then move the tracked request through
    received / checked out / checked in / shipped, each stamped with the message's own date
    (and the due date it reports); a retried notification replays the same bytes."""
    accept = innreach("AcceptItem", ir_request("IR-77") + _sv(
        "RequestedActionType", "Hold for Pickup") + ir_item("i4812148")
        + "<ItemOptionalFields><BibliographicDescription><Title datatype=\"string\">Virtual"
        " title</Title></BibliographicDescription></ItemOptionalFields><UserOptionalFields>"
        f"<VisibleUserId>{_sv('VisibleUserIdentifierType', 'Barcode')}<VisibleUserIdentifier"
        ' datatype="string">P-ADA</VisibleUserIdentifier></VisibleUserId></UserOptionalFields>')
    reply = post(daemon, accept)
    assert problem_types(reply) == [] and b"<AcceptItemResponse>" in reply
    if schemas is not None:
        schemas.check(reply, Dialect.NCIP1)
    rs = query(daemon, "SELECT q.*, p.barcode AS patron FROM rs_requests q JOIN patrons p"
                       " ON p.id = q.patron_id WHERE q.peer = 'innreach' AND"
                       " q.broker_request_id = 'IR-77'")[0]
    assert rs["patron"] == "P-ADA" and rs["role"] == "borrower"
    holds = query(daemon, "SELECT status FROM holds WHERE item_id = ?", rs["item_id"])
    assert [h["status"] for h in holds] == ["active"]

    received_at = query(daemon, "SELECT received_at FROM rs_requests WHERE id = ?",
                        rs["id"])[0]["received_at"]
    steps = [
        ("ItemReceived", "DateReceived", "2026-06-16T10:00:00Z", "received"),
        ("ItemCheckedOut", "DateCheckedOut", "2026-06-17T11:00:00Z", "checked_out"),
        ("ItemCheckedIn", "DateCheckedIn", "2026-07-01T12:00:00Z", "checked_in"),
        ("ItemShipped", "DateShipped", "2026-07-02T13:00:00Z", "shipped"),
    ]
    for service, element, when, state in steps:
        due = ('<DateDue datatype="dateTime">2026-07-15T22:59:59Z</DateDue>'
               if service == "ItemCheckedOut" else "")
        body = innreach(service, ir_request("IR-77") + ir_item("i4812148")
                        + f'<{element} datatype="dateTime">{when}</{element}>{due}')
        reply = post(daemon, body)
        assert problem_types(reply) == [] and f"<{service}Response>".encode() in reply
        row = query(daemon, "SELECT * FROM rs_requests WHERE id = ?", rs["id"])[0]
        assert row["state"] == state
        # a step already stamped keeps its first time (AcceptItem is the item's receipt)
        expected = received_at if state == "received" and received_at else when
        assert row[f"{state}_at"] == expected.replace("Z", "+00:00")
        if service == "ItemCheckedOut":
            assert row["due_at"] == "2026-07-15T22:59:59+00:00"
            before = [tuple(r) for r in query(daemon, "SELECT * FROM rs_requests")]
            assert post(daemon, body) == reply  # a retry: same bytes, nothing changes
            assert [tuple(r) for r in query(daemon, "SELECT * FROM rs_requests")] == before
    renewed = innreach("ItemRenewed", ir_request("IR-77") + ir_item("i4812148")
                       + '<DateDue datatype="dateTime">2026-08-01T22:59:59Z</DateDue>')
    assert problem_types(post(daemon, renewed)) == []
    assert query(daemon, "SELECT due_at FROM rs_requests WHERE id = ?",
                 rs["id"])[0]["due_at"] == "2026-08-01T22:59:59+00:00"


# -- 13.14 the demo configuration: each broker as it authenticates in practice -------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The daemon on config/interlend.toml as shipped (an empty database)."""
    d = start_daemon(tmp_path_factory.mktemp("ncip-demo-peers"))
    yield d
    d.stop()


def innreach_lookup_user() -> bytes:
    return innreach("LookupUser", f"<VisibleUserId>{_sv('VisibleUserIdentifierType', 'Barcode')}"
                    '<VisibleUserIdentifier datatype="string">NOBODY-1</VisibleUserIdentifier>'
                    f"</VisibleUserId>{_sv('UserElementType', 'Name Information')}")


DEMO_BROKERS: list[tuple[str, bytes, str, dict[str, str]]] = [  # (peer, request, path, headers)
    ("reshare", ncip2("LookupUser", lookup_user_by_id("NOBODY-1"), from_agency="RESHARE",
                      profile="EZBORROW", to_agency="DEMO"), "/ncip", {}),
    ("crosslink", ncip2("LookupUser", lookup_user_by_id("NOBODY-1"), from_agency="CROSSLINK",
                        secret="demo-crosslink-secret", to_agency="DEMO"), "/ncip", {}),
    ("d2d", ncip2("LookupUser", lookup_user_by_id("NOBODY-1"), from_agency="Relais",
                  profile="EZBORROW", style="default", to_agency="DEMO"),
     "/ncip/demo-d2d-url-token", {}),
    ("illiad", ncip2("LookupUser", lookup_user_by_id("NOBODY-1"), from_agency="DEMO",
                     profile="ILLiad", style="default", to_agency="DEMO"), "/ncip", {}),
    ("tipasa", ncip2("LookupUser", lookup_user_by_id("NOBODY-1"), from_agency="DEMO",
                     from_system="WSILL", to_agency="DEMO"), "/ncip/demo-tipasa-url-token", {}),
    ("tipasa", ncip2("LookupUser", lookup_user_by_id("NOBODY-1"), from_agency=None,
                     to_agency="DEMO"), "/ncip/demo-tipasa-url-token", {}),
    ("dcb", ncip2("LookupUser", lookup_user_by_id("NOBODY-1"), from_agency="DCB",
                  from_system="DCB", style="default", to_agency="DEMO"), "/ncip", {}),
    ("innreach", innreach_lookup_user().replace(b"zv247", b"zv010"), "/ncip", {}),
]


@pytest.mark.parametrize(("peer", "body", "path", "headers"), DEMO_BROKERS,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(DEMO_BROKERS)])
def test_demo_configuration_admits_each_broker_as_it_sends(
        demo: Daemon, peer: str, body: bytes, path: str, headers: dict[str, str]) -> None:
    """Each demo peer, sending what that broker sends (no secret for ReShare's default
    profile, ILLiad, DCB and INN-Reach; a URL token for D2D and Tipasa; a secret for
    CrossLink), is attributed to its own peer and served (Unknown User: no such patron)."""
    before = query(demo, "SELECT COALESCE(MAX(id), 0) AS n FROM audit")[0]["n"]
    status, reply = demo.post(body, path=path, headers=headers)
    assert status == 200
    assert problem_types(reply) == ["Unknown User"], reply
    rows = wait_until(lambda: query(demo, "SELECT * FROM audit WHERE id > ?", before))
    assert rows[-1]["peer"] == peer


def test_demo_configuration_refuses_what_it_should(demo: Daemon) -> None:
    """CrossLink without its secret, and a request with the library's agency id that neither
    has ILLiad's ApplicationProfileType nor carries Tipasa's URL token, are not served."""
    no_secret = ncip2("LookupUser", lookup_user_by_id("NOBODY-1"), from_agency="CROSSLINK",
                      to_agency="DEMO")
    wrong_profile = ncip2("LookupUser", lookup_user_by_id("NOBODY-1"), from_agency="DEMO",
                          profile="Somebody", to_agency="DEMO")
    for body in (no_secret, wrong_profile):
        status, reply = demo.post(body)
        assert status == 200 and problem_types(reply) == ["Agency Authentication Failed"]
