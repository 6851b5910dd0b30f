"""Pieces shared by the audit, reports, admin, privacy and dashboard tests.

Self-contained on purpose (the workflow tests have their own builders): a small seed catalogue
and patron set written through the embedded backend's upsert functions, a daemon configuration
whose ``[audit]``/``[admin]``/``[stats]`` sections the tests choose, minimal NCIP 2 message
builders in ReShare's (``ns1:``, shared secret) and Tipasa's (default namespace, bearer token)
dialects, and helpers to poll the database, call the command line and read admin pages.
"""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast
from xml.sax.saxutils import escape

import pymarc
from lxml import etree

from gateway.backends.embedded.records import (
    ItemData,
    PatronData,
    upsert_item,
    upsert_patron,
    upsert_record,
)
from gateway.config import AuditSettings
from gateway.storage.store import Store, open_database

T = TypeVar("T")

AGENCY = "AUDITLIB"
RESHARE_SECRET = "rs-audit-secret-Q7"
TIPASA_TOKEN = "tipasa-audit-token-Z9"
COST = 12.5
CURRENCY = "GBP"

# Patrons: every PIN, name, id and e-mail is a distinctive string, so a byte scan finds it.
PATRONS = (
    PatronData(barcode="PBAR-100", username="quillon", pin="8302-PIN-alpha",
               given_name="Quentina", family_name="Marchbanks",
               email="quentina.marchbanks@example.org", patron_group="staff"),
    PatronData(barcode="PBAR-101", username="velmont", pin="5517-PIN-bravo",
               given_name="Zoë", family_name="Ashgrove", email="zoe.ashgrove@example.net"),
)
RECORDS = (
    ("b1", "Structure and interpretation", ("LEND-1", "LEND-2")),
    ("b2", "Mythical man-month", ("LEND-3",)),
)


def seed_database(path: Path) -> None:
    """Create and migrate the database at ``path``; load two records, three items, patrons."""
    conn = open_database(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for local_id, title, barcodes in RECORDS:
            record = pymarc.Record(force_utf8=True)
            record.add_field(pymarc.Field(tag="001", data=local_id))
            record.add_field(pymarc.Field(tag="245", indicators=pymarc.Indicators("1", "0"),
                                          subfields=[pymarc.Subfield("a", title)]))
            record_id, _ = upsert_record(conn, record)
            for barcode in barcodes:
                upsert_item(conn, record_id, ItemData(barcode=barcode, location="MAIN"))
        for patron in PATRONS:
            upsert_patron(conn, patron)
        conn.execute("COMMIT")
    finally:
        conn.close()


def config_text(*, bodies: str = "redacted", admin_password: str | None = None,
                body_days: int = 30, row_days: int = 365) -> str:
    """A daemon configuration with a ReShare-style and a Tipasa-style peer."""
    admin = ""
    if admin_password is not None:
        admin = f'[admin]\nusername = "staff"\npassword = "{admin_password}"\n'
    return f"""
[gateway]
agency_id = "{AGENCY}"
name = "Audit test library"
timezone = "Europe/London"

[ncip]
path = "/ncip"

[audit]
bodies = "{bodies}"
body_retention_days = {body_days}
row_retention_days = {row_days}

[stats]
document_supply_cost = {COST}
currency = "{CURRENCY}"

{admin}
[[peers]]
name = "reshare"
ncip_agency_ids = ["RESHARE"]
auth = {{ kind = "shared-secret", secret = "{RESHARE_SECRET}" }}
allow_from = ["127.0.0.0/8"]
namespace_style = "ns1"
code = "RS"
temporary_barcode = "request-id"
institutional_patron = "INST-{{agency}}"
default_pickup_location = "MAIN"
delete_on_checkin = false
checkin_not_on_loan = "success"

[[peers]]
name = "tipasa"
ncip_agency_ids = ["TIPASA"]
auth = {{ kind = "bearer", token = "{TIPASA_TOKEN}" }}
allow_from = ["127.0.0.0/8"]
namespace_style = "default"
code = "TIP"
temporary_barcode = "prefixed"
default_pickup_location = "MAIN"
delete_on_checkin = true
"""


def with_z3950_login(config: str, user: str, password: str) -> str:
    """``config`` with a Z39.50 user and password for the ReShare peer."""
    anchor = 'checkin_not_on_loan = "success"'
    assert anchor in config
    return config.replace(anchor, f'{anchor}\nz3950_user = "{user}"\n'
                                  f'z3950_password = "{password}"')


def z3950_init(port: int, auth: str) -> bool | None:
    """A Z39.50 Init through ``yaz-client`` with ``authentication AUTH`` ("user password" is
    idPass, "user/password" the open form); True if accepted, None without yaz-client."""
    import shutil
    import subprocess

    client = shutil.which("yaz-client")
    if client is None:
        return None
    done = subprocess.run([client], input=f"authentication {auth}\nopen tcp:127.0.0.1:{port}\n"
                          "quit\n", capture_output=True, text=True, timeout=30, check=True)
    return "Connection accepted" in done.stdout


# -- NCIP 2 builders ------------------------------------------------------------------------------

NS = "http://www.niso.org/2008/ncip"
VERSION = "http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd"


def _render(nodes: list[Any], p: str) -> str:
    out = []
    for name, content in nodes:
        if isinstance(content, list):
            out.append(f"<{p}{name}>{_render(content, p)}</{p}{name}>")
        else:
            out.append(f"<{p}{name}>{escape(str(content))}</{p}{name}>")
    return "".join(out)


def ncip2(service: str, body: list[Any], *, prefixed: bool = True) -> bytes:
    """An NCIP 2 message: ``ns1:`` prefixed (ReShare) or in the default namespace (Tipasa)."""
    if prefixed:
        p, root, end = "ns1:", f'<ns1:NCIPMessage xmlns:ns1="{NS}" ns1:version="{VERSION}">', \
            "</ns1:NCIPMessage>"
    else:
        p, root, end = "", f'<NCIPMessage xmlns="{NS}" version="{VERSION}">', "</NCIPMessage>"
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n{root}{_render([(service, body)], p)}{end}'
            ).encode()


def _header(agency: str, secret: str | None = None) -> tuple[str, list[Any]]:
    children: list[Any] = [("FromAgencyId", [("AgencyId", agency)])]
    if secret:
        children.append(("FromAgencyAuthentication", secret))
    children.append(("ToAgencyId", [("AgencyId", AGENCY)]))
    return ("InitiationHeader", children)


def _id(kind: str, value: str, agency: str = "RESHARE") -> tuple[str, list[Any]]:
    return (f"{kind}Id", [("AgencyId", agency), (f"{kind}IdentifierValue", value)])


def _rs() -> tuple[str, list[Any]]:
    return _header("RESHARE", RESHARE_SECRET)


def lookup_user(patron: str | None, *, pin: str | None = None, password: str | None = None,
                barcode_input: str | None = None) -> bytes:
    """ReShare LookupUser by UserId, or by AuthenticationInput (barcode + PIN/password)."""
    body: list[Any] = [_rs()]
    if patron is not None:
        body.append(_id("User", patron))
    for kind, value in (("Barcode Id", barcode_input), ("PIN", pin), ("Password", password)):
        if value is not None:
            body.append(("AuthenticationInput", [
                ("AuthenticationInputData", value), ("AuthenticationDataFormatType", "text"),
                ("AuthenticationInputType", kind)]))
    body += [("UserElementType", t) for t in ("Name Information", "User Address Information",
                                               "User Privilege", "User Id")]
    return ncip2("LookupUser", body)


def accept_item(rid: str, patron: str, title: str = "Borrowed book") -> bytes:
    return ncip2("AcceptItem", [
        _rs(), _id("Request", rid), ("RequestedActionType", "Hold For Pickup"),
        _id("User", patron),
        ("ItemOptionalFields", [("BibliographicDescription", [("Author", "Lender, Ann"),
                                                              ("Title", title)])]),
        ("PickupLocation", "MAIN")])


def check_out(barcode: str, patron: str, rid: str | None = None) -> bytes:
    body = [_rs(), _id("User", patron), _id("Item", barcode)]
    if rid:
        body.append(_id("Request", rid))
    return ncip2("CheckOutItem", body)


def check_in(barcode: str) -> bytes:
    return ncip2("CheckInItem", [_rs(), _id("Item", barcode)])


def delete_item(barcode: str) -> bytes:
    return ncip2("DeleteItem", [_rs(), _id("Item", barcode)])


def request_item(rid: str, sysnumber: str, patron: str = "INST-EAST") -> bytes:
    return ncip2("RequestItem", [
        _rs(), _id("User", patron),
        ("BibliographicId", [("BibliographicRecordId", [
            ("BibliographicRecordIdentifier", sysnumber),
            ("BibliographicRecordIdentifierCode", "SYSNUMBER")])]),
        _id("Request", rid), ("RequestType", "Loan"),
        ("RequestScopeType", "Bibliographic Item")])


def cancel_request(rid: str, patron: str = "INST-EAST") -> bytes:
    return ncip2("CancelRequestItem", [_rs(), _id("User", patron), _id("Request", rid),
                                       ("RequestType", "Loan")])


TIPASA_HEADERS = {"Authorization": f"Bearer {TIPASA_TOKEN}"}


def tipasa_accept_item(rid: str, patron: str, lender_barcode: str) -> bytes:
    return ncip2("AcceptItem", [
        _header("TIPASA"), _id("Request", rid, "TIPASA"),
        ("RequestedActionType", "Hold For Pickup And Notify"), _id("User", patron, "TIPASA"),
        _id("Item", lender_barcode, "NDOSU"),
        ("ItemOptionalFields", [("BibliographicDescription", [("Title", "Tipasa book")])]),
        ("PickupLocation", "MAIN")], prefixed=False)


# -- replies ------------------------------------------------------------------------------------


def texts(reply: bytes, name: str) -> list[str]:
    """The text of every element named ``name`` (any namespace)."""
    root = etree.fromstring(reply)
    return [(e.text or "").strip() for e in root.iter()
            if isinstance(e.tag, str) and etree.QName(e).localname == name]


def problem(reply: bytes) -> str | None:
    found = texts(reply, "ProblemType")
    return found[0] if found else None


def send(daemon: Any, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """POST one NCIP message; return the reply (HTTP 200 required)."""
    status, reply = daemon.post(body, headers=headers)
    assert status == 200, (status, reply)
    return reply


# -- polling, database, command line, admin -----------------------------------------------------


def wait_until(check: Callable[[], T | None], timeout: float = 10.0,
               interval: float = 0.02) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        time.sleep(interval)


def query(path: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows from a read-only connection to the daemon's database."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def wait_for_audit_rows(path: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every audit row, once there are at least ``count`` (rows after a reply land shortly)."""
    return wait_until(lambda: (lambda rows: rows if len(rows) >= count else None)(
        query(path, "SELECT * FROM audit ORDER BY id")), timeout)


def cli(*args: str) -> tuple[int, str, str]:
    """Run ``interlend ARGS`` in-process; return (status, stdout, stderr)."""
    from gateway.daemon.cli import main

    out, err = io.StringIO(), io.StringIO()
    status = main(list(args), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def admin_get(daemon: Any, path: str, *, auth: tuple[str, str] | None = None,
              timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """GET an admin path; return (status, headers, body)."""
    headers = {}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(daemon.admin_url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _lower(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, _lower(e.headers), e.read()


def admin_json(daemon: Any, path: str, **kwargs: Any) -> Any:
    status, _, body = admin_get(daemon, path, **kwargs)
    assert status == 200, (status, body)
    return json.loads(body)


# -- the broker scenario ----------------------------------------------------------------------


@dataclass
class Sent:
    """One exchange the scenario sent, with what its audit row must say (known from the test)."""

    operation: str
    peer: str
    body: bytes
    broker_request_id: str | None
    item_barcode: str | None
    outcome: str = "success"
    patron: str | None = None
    headers: dict[str, str] | None = None
    reply: bytes = b""
    our_request_id: str | None = None


def scenario() -> list[Sent]:
    """ReShare borrower and lender sequences, a cancelled request, a Problem, and Tipasa.

    * borrower (ReShare): LookupUser → AcceptItem RS-B-1 → CheckOutItem → CheckInItem →
      DeleteItem (temporary barcode = the request id, per the peer's policy);
    * lender (ReShare): RequestItem RS-L-1 for record b1 (gets LEND-1) → CheckOutItem →
      CheckInItem;
    * lender, cancelled: RequestItem RS-L-2 for b2 (LEND-3) → CancelRequestItem;
    * a Problem: CheckOutItem of an unknown item;
    * lender again on b1: RequestItem RS-L-3 gets LEND-1 again (it came back) → CheckOutItem:
      an active loan whose item an earlier request also used;
    * borrower (Tipasa): AcceptItem TIP-1, barcode prefixed "TIP-": an active borrow.
    """
    return [
        Sent("LookupUser", "reshare", lookup_user("PBAR-100"), None, None, patron="PBAR-100"),
        Sent("AcceptItem", "reshare", accept_item("RS-B-1", "PBAR-100"), "RS-B-1", "RS-B-1",
             patron="PBAR-100"),
        Sent("CheckOutItem", "reshare", check_out("RS-B-1", "PBAR-100", "RS-B-1"), "RS-B-1",
             "RS-B-1", patron="PBAR-100"),
        Sent("CheckInItem", "reshare", check_in("RS-B-1"), None, "RS-B-1"),
        Sent("DeleteItem", "reshare", delete_item("RS-B-1"), None, "RS-B-1"),
        Sent("RequestItem", "reshare", request_item("RS-L-1", "b1"), "RS-L-1", "LEND-1",
             patron="INST-EAST"),
        Sent("CheckOutItem", "reshare", check_out("LEND-1", "INST-EAST", "RS-L-1"), "RS-L-1",
             "LEND-1", patron="INST-EAST"),
        Sent("CheckInItem", "reshare", check_in("LEND-1"), None, "LEND-1"),
        Sent("RequestItem", "reshare", request_item("RS-L-2", "b2"), "RS-L-2", "LEND-3",
             patron="INST-EAST"),
        Sent("CancelRequestItem", "reshare", cancel_request("RS-L-2"), "RS-L-2", "LEND-3",
             patron="INST-EAST"),                  # the reply names the item (issue 13.4)
        Sent("CheckOutItem", "reshare", check_out("NOPE-1", "PBAR-100"), None, "NOPE-1",
             outcome="Unknown Item", patron="PBAR-100"),
        Sent("RequestItem", "reshare", request_item("RS-L-3", "b1"), "RS-L-3", "LEND-1",
             patron="INST-EAST"),
        Sent("CheckOutItem", "reshare", check_out("LEND-1", "INST-EAST", "RS-L-3"), "RS-L-3",
             "LEND-1", patron="INST-EAST"),
        Sent("AcceptItem", "tipasa", tipasa_accept_item("TIP-1", "PBAR-101", "NDOSU-9"),
             "TIP-1", "TIP-NDOSU-9", patron="PBAR-101", headers=TIPASA_HEADERS),
    ]


def run_scenario(daemon: Any) -> list[Sent]:
    """Send the scenario to a running daemon; return it once every audit row is committed."""
    sent = scenario()
    for exchange in sent:
        exchange.reply = send(daemon, exchange.body, exchange.headers)
        assert problem(exchange.reply) == (None if exchange.outcome == "success"
                                           else exchange.outcome), exchange.reply
        if exchange.operation == "RequestItem":
            exchange.our_request_id = texts(exchange.reply, "RequestIdentifierValue")[-1]
    wait_for_audit_rows(daemon.database, len(sent))
    return sent


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


class SyncStore:
    """The store's ``write``, run at once in a transaction on a real connection; counts jobs."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.jobs = 0

    def write(self, work: Any) -> Any:
        """Run ``work(conn)`` in ``BEGIN IMMEDIATE`` … ``COMMIT``; a fired Deferred."""
        from twisted.internet.defer import fail, succeed

        self.jobs += 1
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(self.conn)
        except Exception:
            self.conn.execute("ROLLBACK")
            return fail()
        self.conn.execute("COMMIT")
        return succeed(result)


def as_store(stand_in: SyncStore) -> Store:
    """``stand_in`` where the audit log takes a store: AuditLog types its store as the concrete
    :class:`Store`, of which the audit tests need only ``write``."""
    return cast(Store, stand_in)


def audit_settings(bodies: str = "redacted", store_patron_ids: bool = False) -> AuditSettings:
    """``[audit]`` settings for an AuditLog under test, with no free-disk floor (the limit the
    log reads as 0 when a settings object leaves it out)."""
    return AuditSettings(bodies=bodies, store_patron_ids=store_patron_ids, min_free_disk_mb=0)
