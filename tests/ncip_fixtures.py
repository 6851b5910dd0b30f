"""Shared helpers for the NCIP end-to-end tests: a small seeded database, a test configuration,
NCIP request builders and reply readers.

Everything here is the project's own test data; nothing is copied from ../shared.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pymarc
from lxml import etree

from gateway.backends.embedded.records import (
    ItemData,
    PatronData,
    upsert_item,
    upsert_patron,
    upsert_record,
)
from gateway.storage.store import open_database

NS = "http://www.niso.org/2008/ncip"
V2_VERSION = "http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd"
V1_VERSION = "http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd"
AGENCY = "TESTLIB"

RESHARE_SECRET = "s3cret-reshare"
TIPASA_TOKEN = "tipasa-bearer-token-123"
URL_TOKEN = "url-token-9f8e7d"
FAR_SECRET = "far-secret"

PIN = "4321"
LOAN_DUE = datetime(2031, 3, 14, 12, 0, 0, tzinfo=UTC)

# -- configuration -----------------------------------------------------------------------------


def config_text(*, request_timeout: float = 25.0, max_body_size: int = 256 * 1024,
                lockout_after: int = 3, extra_peers: str = "", rate_limits: bool = True) -> str:
    """A configuration with one peer of every kind the tests need (``rate_limits=False`` turns
    the per-source connection and request rate limits off, for bulk replays from loopback)."""
    unlimited = ("max_connection_rate_per_peer = 0\nmax_requests_per_second_per_peer = 0\n"
                 if not rate_limits else "")
    return f"""
[gateway]
agency_id = "{AGENCY}"
timezone = "Europe/London"

[ncip]
path = "/ncip"
max_body_size = {max_body_size}
request_timeout = {request_timeout}
auth_failures_before_lockout = {lockout_after}
lockout_seconds = 600
{unlimited}
[audit]
bodies = "redacted"

[[peers]]
name = "reshare"
ncip_agency_ids = ["RESHARE"]
auth = {{ kind = "shared-secret", secret = "{RESHARE_SECRET}" }}
allow_from = ["127.0.0.0/8", "::1/128"]
namespace_style = "ns1"
temporary_barcode = "request-id"
default_pickup_location = "MAIN"

[[peers]]
name = "tipasa"
ncip_agency_ids = ["OCLC-TIPASA"]
application_profile = "Tipasa"
auth = {{ kind = "bearer", token = "{TIPASA_TOKEN}" }}
allow_from = ["127.0.0.0/8", "::1/128"]
namespace_style = "default"
code = "TIP"
temporary_barcode = "prefixed"
default_pickup_location = "MAIN"

[[peers]]
name = "plain"
auth = {{ kind = "none" }}
allow_from = ["127.0.0.0/8", "::1/128"]
ncip_agency_ids = ["PLAIN"]
namespace_style = "none"
default_pickup_location = "MAIN"

[[peers]]
name = "koha-style"
ncip_agency_ids = ["KOHATOK"]
auth = {{ kind = "url-token", token = "{URL_TOKEN}" }}
default_pickup_location = "MAIN"

[[peers]]
name = "faraway"
ncip_agency_ids = ["FARAWAY"]
auth = {{ kind = "shared-secret", secret = "{FAR_SECRET}" }}
allow_from = ["10.99.0.0/16"]
default_pickup_location = "MAIN"
{extra_peers}
"""


# -- seed data ---------------------------------------------------------------------------------


def _record(local_id: str, title: str, author: str, *, isbn: str | None = None,
            oclc: str | None = None, publisher: str = "", year: str = "") -> pymarc.Record:
    record = pymarc.Record(force_utf8=True)
    record.add_field(pymarc.Field(tag="001", data=local_id))
    if isbn:
        record.add_field(pymarc.Field(tag="020", indicators=pymarc.Indicators(" ", " "),
                                      subfields=[pymarc.Subfield("a", isbn)]))
    if oclc:
        record.add_field(pymarc.Field(tag="035", indicators=pymarc.Indicators(" ", " "),
                                      subfields=[pymarc.Subfield("a", f"(OCoLC){oclc}")]))
    record.add_field(pymarc.Field(tag="100", indicators=pymarc.Indicators("1", " "),
                                  subfields=[pymarc.Subfield("a", author)]))
    record.add_field(pymarc.Field(tag="245", indicators=pymarc.Indicators("1", "0"),
                                  subfields=[pymarc.Subfield("a", title)]))
    if publisher or year:
        record.add_field(pymarc.Field(tag="264", indicators=pymarc.Indicators(" ", "1"), subfields=[
            pymarc.Subfield("b", publisher), pymarc.Subfield("c", year)]))
    return record


@dataclass(frozen=True)
class Seed:
    """What :func:`seed_database` created (barcodes and ids the tests refer to)."""

    record_ids: dict[str, int]


def seed_database(path: Path) -> Seed:
    """A small catalogue and patron file: records, items (one on loan, one on hold), patrons."""
    conn = open_database(path)
    try:
        with conn:
            ids = {}
            ids["rec-taocp"], _ = upsert_record(conn, _record(
                "rec-taocp", "The art of computer programming", "Knuth, Donald E.",
                isbn="0-201-89683-4", oclc="ocm00012345", publisher="Addison-Wesley",
                year="1997"))
            ids["rec-sicp"], _ = upsert_record(conn, _record(
                "rec-sicp", "Structure and interpretation of computer programs",
                "Abelson, Harold", isbn="9780262011532", publisher="MIT Press", year="1996"))
            ids["rec-empty"], _ = upsert_record(conn, _record(
                "rec-empty", "A record without items", "Nobody"))
            upsert_item(conn, ids["rec-taocp"], ItemData(
                barcode="ITEM-AVAIL", location="MAIN", shelving_location="Stacks",
                call_number="QA76.6 .K64 1997"))
            loaned, _ = upsert_item(conn, ids["rec-taocp"], ItemData(
                barcode="ITEM-LOAN", location="EAST", call_number="QA76.6 .K64 1997 c.2",
                status="on_loan"))
            held, _ = upsert_item(conn, ids["rec-sicp"], ItemData(
                barcode="ITEM-HELD", location="MAIN", call_number="QA76.6 .A25"))
            patrons = {}
            for data in (
                PatronData(barcode="P-ADA", username="ada", pin=PIN, given_name="Ada",
                           family_name="Lovelace", email="ada@example.org",
                           patron_group="faculty", expires="2099-12-31"),
                PatronData(barcode="P-BLOCKED", username="bob", pin=PIN, given_name="Bob",
                           family_name="Blocked", status="blocked", patron_group="undergrad",
                           expires="2099-12-31"),
                PatronData(barcode="P-EXPIRED", given_name="Eve", family_name="Expired",
                           patron_group="alumni", expires="2001-01-31"),
                PatronData(barcode="P-LOCK", username="lockme", pin=PIN, given_name="Lou",
                           family_name="Locked", patron_group="staff", expires="2099-12-31"),
                PatronData(barcode="P-LOCK-RS", pin=PIN, given_name="Rae",
                           family_name="Locked", patron_group="staff", expires="2099-12-31"),
                PatronData(barcode="P-SLOW", pin=PIN, given_name="Sam", family_name="Slow",
                           patron_group="staff", expires="2099-12-31"),
                PatronData(barcode="P-PLAIN", given_name="Pat", family_name="Plain",
                           email="pat@example.org", patron_group="staff"),
            ):
                patrons[data.barcode], _ = upsert_patron(conn, data)
            now = datetime.now(UTC).isoformat(timespec="seconds")
            conn.execute(
                "INSERT INTO loans (item_id, patron_id, checked_out_at, due_at)"
                " VALUES (?, ?, ?, ?)", (loaned, patrons["P-ADA"], now,
                                         LOAN_DUE.isoformat(timespec="seconds")))
            conn.execute(
                "INSERT INTO holds (patron_id, record_id, item_id, pickup_location, status,"
                " placed_at, pickup_expires, updated_at) VALUES (?, ?, ?, 'MAIN', 'active',"
                " ?, ?, ?)", (patrons["P-ADA"], ids["rec-sicp"], held, now,
                              (datetime.now(UTC) + timedelta(days=7)).isoformat(
                                  timespec="seconds"), now))
        return Seed(ids)
    finally:
        conn.close()


def count_rows(database: Path, sql: str, params: tuple = ()) -> int:
    """``SELECT count(*)`` on the daemon's database, read-only."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


# -- request builders --------------------------------------------------------------------------

_TAG = re.compile(r"<(/?)([A-Za-z]\w*)")


def ncip2(service: str, body: str, *, from_agency: str | None = "RESHARE",
          secret: str | None = None, style: str = "ns1", from_system: str | None = None,
          profile: str | None = None, to_agency: str = AGENCY) -> bytes:
    """An NCIP 2 request. ``body`` is written without prefixes; ``style`` is ns1/default/none."""
    header = ""
    if from_system:
        header += f"<FromSystemId>{from_system}</FromSystemId>"
    if from_agency is not None:
        header += f"<FromAgencyId><AgencyId>{from_agency}</AgencyId></FromAgencyId>"
    if secret is not None:
        header += f"<FromAgencyAuthentication>{secret}</FromAgencyAuthentication>"
    header += f"<ToAgencyId><AgencyId>{to_agency}</AgencyId></ToAgencyId>"
    if profile:
        header += f"<ApplicationProfileType>{profile}</ApplicationProfileType>"
    inner = f"<{service}><InitiationHeader>{header}</InitiationHeader>{body}</{service}>"
    if style == "ns1":
        inner = _TAG.sub(r"<\1ns1:\2", inner)
        root = (f'<ns1:NCIPMessage xmlns:ns1="{NS}" ns1:version="{V2_VERSION}">{inner}'
                "</ns1:NCIPMessage>")
    elif style == "default":
        root = f'<NCIPMessage xmlns="{NS}" version="{V2_VERSION}">{inner}</NCIPMessage>'
    else:
        root = f'<NCIPMessage version="{V2_VERSION}">{inner}</NCIPMessage>'
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + root).encode("utf-8")


def ncip1(service: str, body: str, *, from_agency: str = "PLAIN",
          secret: str | None = None) -> bytes:
    """An NCIP 1 request (no namespace, Scheme/Value pairs, Unique* identifiers)."""
    header = (f"<FromAgencyId><UniqueAgencyId><Scheme>urn:agency</Scheme><Value>{from_agency}"
              "</Value></UniqueAgencyId></FromAgencyId>")
    if secret is not None:
        header += f"<FromAgencyAuthentication>{secret}</FromAgencyAuthentication>"
    header += (f"<ToAgencyId><UniqueAgencyId><Scheme>urn:agency</Scheme><Value>{AGENCY}</Value>"
               "</UniqueAgencyId></ToAgencyId>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<NCIPMessage version="{V1_VERSION}">'
            f"<{service}><InitiationHeader>{header}</InitiationHeader>{body}</{service}>"
            "</NCIPMessage>").encode()


USER_ELEMENTS = "".join(
    f"<UserElementType>{e}</UserElementType>"
    for e in ("Name Information", "User Address Information", "User Privilege", "User Id",
              "Block Or Trap"))


def lookup_user_by_id(user: str, *, loans: bool = False, holds: bool = False) -> str:
    body = f"<UserId><UserIdentifierValue>{user}</UserIdentifierValue></UserId>" + USER_ELEMENTS
    if loans:
        body += "<LoanedItemsDesired/>"
    if holds:
        body += "<RequestedItemsDesired/>"
    return body


def authentication_input(value: str, kind: str) -> str:
    return (f"<AuthenticationInput><AuthenticationInputData>{value}</AuthenticationInputData>"
            "<AuthenticationDataFormatType>text</AuthenticationDataFormatType>"
            f"<AuthenticationInputType>{kind}</AuthenticationInputType></AuthenticationInput>")


def lookup_user_by_login(identifier: str, kind: str = "Barcode Id",
                         pin: str | None = None) -> str:
    body = authentication_input(identifier, kind)
    if pin is not None:
        body += authentication_input(pin, "PIN")
    return body + USER_ELEMENTS


def accept_item(request_id: str, user: str = "P-ADA", item: str | None = None) -> str:
    item_id = f"<ItemId><ItemIdentifierValue>{item}</ItemIdentifierValue></ItemId>" if item \
        else ""
    return (f"<RequestId><RequestIdentifierValue>{request_id}</RequestIdentifierValue></RequestId>"
            "<RequestedActionType>Hold For Pickup</RequestedActionType>"
            f"<UserId><UserIdentifierValue>{user}</UserIdentifierValue></UserId>{item_id}"
            "<ItemOptionalFields><BibliographicDescription><Author>Someone</Author>"
            "<Title>Borrowed book</Title></BibliographicDescription></ItemOptionalFields>"
            "<PickupLocation>MAIN</PickupLocation>")


# -- reply readers -----------------------------------------------------------------------------


def local(element: etree._Element) -> str:
    return etree.QName(element).localname


def parse_reply(data: bytes) -> etree._Element:
    """The reply's root (well-formedness asserted by lxml); no DTD, no entities, no network."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(data, parser)


def find_all(root: etree._Element, name: str) -> list[etree._Element]:
    """Every element with this local-name, whatever its namespace."""
    return [e for e in root.iter() if isinstance(e.tag, str) and local(e) == name]


def text_of(root: etree._Element, name: str) -> str | None:
    """Text of the first element with this local-name (NCIP 1 ``Value`` children read too)."""
    for element in find_all(root, name):
        value = [c for c in element if isinstance(c.tag, str) and local(c) == "Value"]
        if value:
            return (value[0].text or "").strip()
        return (element.text or "").strip()
    return None


def texts_of(root: etree._Element, name: str) -> list[str]:
    return [(e.text or "").strip() for e in find_all(root, name)]


def problem_types(data: bytes) -> list[str]:
    """Every ProblemType (NCIP 2) or Processing/MessagingErrorType (NCIP 1) value in a reply."""
    root = parse_reply(data)
    return [_value_of(e) for name in ("ProblemType", "ProcessingErrorType", "MessagingErrorType")
            for e in find_all(root, name)]


def _value_of(element: etree._Element) -> str:
    value = [c for c in element if isinstance(c.tag, str) and local(c) == "Value"]
    return ((value[0].text if value else element.text) or "").strip()


# -- curl --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurlResult:
    status: int
    headers: dict[str, str]
    body: bytes


def curl(url: str, *, data: bytes | None = None, method: str | None = None,
         headers: dict[str, str] | None = None, chunked: bool = False,
         timeout: float = 20.0) -> CurlResult:
    """Run the real ``curl`` binary; the body goes through stdin (``--data-binary @-``)."""
    args = ["curl", "-sS", "--max-time", str(timeout), "-o", "-", "-D", "/dev/stderr",
            "--http1.1"]
    if method:
        args += ["-X", method]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    if data is not None:
        args += ["--data-binary", "@-"]
        if chunked:
            args += ["-H", "Transfer-Encoding: chunked"]
    args.append(url)
    done = subprocess.run(args, input=data, capture_output=True, timeout=timeout + 10)
    header_text = done.stderr.decode("latin-1")
    blocks = [b for b in re.split(r"\r?\n\r?\n", header_text) if b.startswith("HTTP/")]
    if done.returncode != 0 and not blocks:
        raise AssertionError(f"curl failed ({done.returncode}): {header_text}")
    final = blocks[-1].splitlines()
    status = int(final[0].split()[1])
    parsed = {}
    for line in final[1:]:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return CurlResult(status, parsed, done.stdout)
