"""Reusable pieces for the resource-sharing workflow tests.

* a seed catalogue and patron file written straight into a test database (before the daemon
  starts), through the embedded backend's own upsert functions;
* a daemon configuration with one peer per broker family, each with its own preferences;
* NCIP message builders in each broker's dialect (our own XML, modelled on the shapes described
  in ``docs/ncip.md`` §6 — no sample file is copied);
* read-only database inspection and reply parsing helpers.
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from pathlib import Path
from typing import Any, TypeAlias
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

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
from tests import z3950_clients as zc
from tests.daemon import Daemon, start_daemon

# -- seed data -----------------------------------------------------------------------------------

AGENCY = "OURLIB"
TIMEZONE = "Europe/London"
LOAN_DAYS = 28            # [circulation] loan_period_days
BORROWED_DAYS = 21        # [circulation] borrowed_loan_period_days
MAX_RENEWALS = 2


@dataclass(frozen=True)
class SeedRecord:
    local_id: str
    title: str
    author: str = "Anon"
    isbn: str | None = None
    oclc: str | None = None
    items: tuple[tuple[str, str], ...] = ()   # (barcode, status)


SEED_RECORDS = (
    SeedRecord("b1001", "Structure and interpretation", "Abelson, Harold", isbn="0-262-01153-0",
               oclc="(OCoLC)ocm00012345", items=(("LEND-001", "available"),
                                                 ("LEND-002", "available"))),
    SeedRecord("b1002", "The C programming language", "Kernighan, Brian",
               isbn="9780131103627", oclc="(OCoLC)555", items=(("LEND-010", "available"),)),
    SeedRecord("b1003", "Goedel, Escher, Bach", "Hofstadter, Douglas",
               items=(("LEND-020", "available"),)),
    SeedRecord("b1004", "A pattern language", "Alexander, Christopher",
               items=(("LEND-030", "available"), ("LEND-031", "available"))),
    SeedRecord("b1005", "Mythical man-month", "Brooks, Fred",
               items=(("LEND-040", "available"),)),
    SeedRecord("b1006", "Local book whose barcode collides", "Local, Author",
               items=(("COLLIDE-1", "available"), ("39000111", "available"),
                      ("TIP-COLLIDE-2", "available"))),
    SeedRecord("b1007", "Art of computer programming", "Knuth, Donald",
               items=tuple((f"LEND-{n:03d}", "available") for n in range(50, 70))),
)

SEED_PATRONS = (
    PatronData(barcode="P100", username="alice", pin="1234", given_name="Alice",
               family_name="Reader", email="alice@example.org", patron_group="staff"),
    PatronData(barcode="P101", username="bob", given_name="Bob", family_name="Borrower"),
    PatronData(barcode="P200", username="blocked", given_name="Bea", family_name="Blocked",
               status="blocked"),
    PatronData(barcode="P300", given_name="Ed", family_name="Expired", status="expired"),
    PatronData(barcode="P301", given_name="Old", family_name="Card", expires="2001-01-01"),
)


def _marc(seed: SeedRecord) -> pymarc.Record:
    record = pymarc.Record(force_utf8=True)
    record.add_field(pymarc.Field(tag="001", data=seed.local_id))
    if seed.isbn:
        record.add_field(pymarc.Field(tag="020", indicators=pymarc.Indicators(" ", " "),
                                      subfields=[pymarc.Subfield("a", seed.isbn)]))
    if seed.oclc:
        record.add_field(pymarc.Field(tag="035", indicators=pymarc.Indicators(" ", " "),
                                      subfields=[pymarc.Subfield("a", seed.oclc)]))
    record.add_field(pymarc.Field(tag="100", indicators=pymarc.Indicators("1", " "),
                                  subfields=[pymarc.Subfield("a", seed.author)]))
    record.add_field(pymarc.Field(tag="245", indicators=pymarc.Indicators("1", "0"),
                                  subfields=[pymarc.Subfield("a", seed.title)]))
    return record


def seed_database(path: Path) -> None:
    """Create and migrate the database at ``path`` and load the seed catalogue and patrons."""
    conn = open_database(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for seed in SEED_RECORDS:
            record_id, _ = upsert_record(conn, _marc(seed))
            for barcode, status in seed.items:
                upsert_item(conn, record_id, ItemData(barcode=barcode, location="MAIN",
                                                      call_number=f"QA {seed.local_id}",
                                                      status=status))
        for patron in SEED_PATRONS:
            upsert_patron(conn, patron)
        conn.execute("COMMIT")
    finally:
        conn.close()


# -- configuration --------------------------------------------------------------------------------

RESHARE_SECRET = "rs-shared-secret"
TIPASA_TOKEN = "tipasa-bearer-token"

CONFIG = f"""
[gateway]
agency_id = "{AGENCY}"
name = "Workflow test library"
timezone = "{TIMEZONE}"

[ncip]
path = "/ncip"

[audit]
bodies = "redacted"

[circulation]
loan_period_days = {LOAN_DAYS}
borrowed_loan_period_days = {BORROWED_DAYS}
max_renewals = {MAX_RENEWALS}
pickup_period_days = 7

[[peers]]
name = "reshare"
ncip_agency_ids = ["RESHARE"]
application_profile = "EZBORROW"
auth = {{ kind = "shared-secret", secret = "{RESHARE_SECRET}" }}
allow_from = ["127.0.0.0/8"]
namespace_style = "ns1"
code = "RS"
temporary_barcode = "request-id"
institutional_patron = "INST-{{agency}}"
pickup_locations = {{ "EAST-DESK" = "EAST", "WEST-DESK" = "WEST" }}
default_pickup_location = "MAIN"
delete_on_checkin = false
checkin_not_on_loan = "success"

[[peers]]
name = "tipasa"
ncip_agency_ids = ["TIPASA"]
from_system_ids = ["WSILL"]
auth = {{ kind = "bearer", token = "{TIPASA_TOKEN}" }}
namespace_style = "default"
code = "TIP"
temporary_barcode = "prefixed"
pickup_locations = {{ "Main Library" = "MAIN", "East Branch" = "EAST" }}
default_pickup_location = "MAIN"
delete_on_checkin = true
checkin_not_on_loan = "problem"
title_prefix = "[TIPASA]"

[[peers]]
name = "illiad"
auth = {{ kind = "none" }}
allow_from = ["127.0.0.0/8", "::1/128"]
ncip_agency_ids = ["01XXX_INST"]
application_profile = "ILLiad"
namespace_style = "ns1"
code = "ILL"
temporary_barcode = "request-id"
default_pickup_location = "MAIN"
checkin_not_on_loan = "problem"

[[peers]]
name = "relais"
auth = {{ kind = "none" }}
allow_from = ["127.0.0.0/8", "::1/128"]
ncip_agency_ids = ["Relais"]
namespace_style = "default"
code = "REL"
temporary_barcode = "request-id"
pickup_locations = {{ "DELIVERY" = "EAST" }}
default_pickup_location = "MAIN"

[[peers]]
name = "dcb"
auth = {{ kind = "none" }}
allow_from = ["127.0.0.0/8", "::1/128"]
ncip_agency_ids = ["dcb-host"]
from_system_ids = ["DCB"]
namespace_style = "default"
code = "DCB"
temporary_barcode = "lender-barcode"
institutional_patron = "dcb-vpatron-{{agency}}"   # the virtual patron DCB names at a supplier
default_pickup_location = "MAIN"

[[peers]]
name = "innreach"
auth = {{ kind = "none" }}
allow_from = ["127.0.0.0/8", "::1/128"]
ncip_agency_ids = ["zv010", "zv247"]
namespace_style = "none"
code = "IR"
temporary_barcode = "prefixed"
default_pickup_location = "MAIN"
"""


# -- NCIP 2 builders -----------------------------------------------------------------------------

Node: TypeAlias = tuple[str, Any] | tuple[str, Any, dict[str, str]]
NS = "http://www.niso.org/2008/ncip"
V2_02 = "http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd"
V2_0_IMP1 = "http://www.niso.org/schemas/ncip/v2_0/imp1/xsd/ncip_v2_0.xsd"


def _render(nodes: list[Node], p: str) -> str:
    out = []
    for node in nodes:
        if node is None:
            continue
        name, content = node[0], node[1]
        attrs = "".join(f" {p}{k}={quoteattr(v)}" for k, v in (node[2] if len(node) > 2
                                                                   else {}).items())
        if content is None:
            out.append(f"<{p}{name}{attrs}/>")
        elif isinstance(content, list):
            out.append(f"<{p}{name}{attrs}>{_render(content, p)}</{p}{name}>")
        else:
            out.append(f"<{p}{name}{attrs}>{escape(str(content))}</{p}{name}>")
    return "".join(out)


def ncip2(service: str, body: list[Node], *, style: str = "ns1",
          version: str = V2_0_IMP1, declaration: str = '<?xml version="1.0" encoding="UTF-8"?>',
          stray: str = "") -> bytes:
    """An NCIP 2 message in one of the field dialects.

    ``style``: ``ns1`` (XC toolkit: ReShare, WSILL), ``default`` (default namespace, unqualified
    version: ILLiad, Tipasa as configured here), ``dcb`` (default namespace plus an ``ncip:``
    prefix for the version), ``none`` (FOLIO test inputs: no namespace at all). ``stray`` is
    text put straight after the root's start tag (FOLIO's sloppy fixture).
    """
    if style == "ns1":
        p, root = "ns1:", f'<ns1:NCIPMessage xmlns:ns1="{NS}" ns1:version="{version}">'
        end = "</ns1:NCIPMessage>"
    elif style == "default":
        p, root = "", f'<NCIPMessage xmlns="{NS}" version="{version}">'
        end = "</NCIPMessage>"
    elif style == "dcb":
        p, root = "", f'<NCIPMessage xmlns="{NS}" xmlns:ncip="{NS}" ncip:version="2.02">'
        end = "</NCIPMessage>"
    elif style == "none":
        p, root = "", f"<NCIPMessage version='{version}'>"
        end = "</NCIPMessage>"
    else:
        raise ValueError(style)
    text = f"{declaration}\n{root}{stray}{_render([(service, body)], p)}{end}"
    return text.encode("utf-8")


def header(from_agency: str | None, to_agency: str = AGENCY, *, secret: str | None = None,
           from_system: str | None = None, to_system: str | None = None,
           profile: str | None = None) -> Node:
    children: list[Node] = []
    if from_system:
        children.append(("FromSystemId", from_system))
    if from_agency is not None:
        children.append(("FromAgencyId", [("AgencyId", from_agency)]))
    if secret:
        children.append(("FromAgencyAuthentication", secret))
    if to_system:
        children.append(("ToSystemId", to_system))
    children.append(("ToAgencyId", [("AgencyId", to_agency)]))
    if profile:
        children.append(("ApplicationProfileType", profile))
    return ("InitiationHeader", children)


def user_id(value: str, agency: str | None = None, id_type: str | None = None) -> Node:
    children: list[Node] = []
    if agency:
        children.append(("AgencyId", agency))
    if id_type:
        children.append(("UserIdentifierType", id_type))
    children.append(("UserIdentifierValue", value))
    return ("UserId", children)


def item_id(value: str, agency: str | None = None, id_type: str | None = None) -> Node:
    children: list[Node] = []
    if agency:
        children.append(("AgencyId", agency))
    if id_type:
        children.append(("ItemIdentifierType", id_type))
    children.append(("ItemIdentifierValue", value))
    return ("ItemId", children)


def request_id(value: str, agency: str | None = None, id_type: str | None = None) -> Node:
    children: list[Node] = []
    if agency:
        children.append(("AgencyId", agency))
    if id_type:
        children.append(("RequestIdentifierType", id_type))
    children.append(("RequestIdentifierValue", value))
    return ("RequestId", children)


def bib_description(title: str, author: str = "Lender, A.", **extra: str) -> Node:
    children: list[Node] = [("Author", author)]
    for name in ("Publisher", "PublicationDate"):
        if name in extra:
            children.append((name, extra[name]))
    children.append(("Title", title))
    return ("BibliographicDescription", children)


def item_optional(title: str, author: str = "Lender, A.", call_number: str | None = None,
                  **extra: str) -> Node:
    children: list[Node] = [bib_description(title, author, **extra)]
    if call_number:
        children.append(("ItemDescription", [("CallNumber", call_number)]))
    return ("ItemOptionalFields", children)


def bib_record_id(identifier: str, code: str = "SYSNUMBER", agency: str | None = None) -> Node:
    children: list[Node] = [("BibliographicRecordIdentifier", identifier)]
    if agency:
        children.append(("AgencyId", agency))
    children.append(("BibliographicRecordIdentifierCode", code))
    return ("BibliographicId", [("BibliographicRecordId", children)])


def bib_item_id(identifier: str, code: str = "ISBN") -> Node:
    return ("BibliographicId", [("BibliographicItemId", [
        ("BibliographicItemIdentifier", identifier),
        ("BibliographicItemIdentifierCode", code)])])


# ReShare (lib-ncip-client NCIP 2: ns1: prefix, shared secret, every AgencyId = from agency) ------

RS = "RESHARE"


def _rs_header() -> Node:
    return header(RS, secret=RESHARE_SECRET, profile="EZBORROW")


def reshare_lookup_user(patron: str) -> bytes:
    return ncip2("LookupUser", [_rs_header(), user_id(patron, RS)] + [
        ("UserElementType", t) for t in ("Name Information", "User Address Information",
                                          "User Privilege", "User Id")])


def reshare_accept_item(rid: str, patron: str, *, barcode: str | None = None,
                        title: str = "Borrowed book", pickup: str = "EAST-DESK",
                        action: str = "Hold For Pickup", date_for_return: str | None = None,
                        renewal_not_permitted: bool = False, isbn: str | None = None,
                        with_user: bool = True) -> bytes:
    body: list[Node] = [_rs_header(), request_id(rid, RS), ("RequestedActionType", action)]
    if with_user:
        body.append(user_id(patron, RS))
    if barcode is not None:
        body.append(item_id(barcode, RS))
    if date_for_return:
        body.append(("DateForReturn", date_for_return))
    if renewal_not_permitted:
        body.append(("RenewalNotPermitted", None))
    optional = item_optional(title, "Lender, Ann", "ILL 123", Publisher="Pub House",
                             PublicationDate="2001")
    if isbn:
        optional[1][0][1].append(("BibliographicItemId", [
            ("BibliographicItemIdentifier", isbn),
            ("BibliographicItemIdentifierCode", "ISBN")]))
    body += [optional,
             ("PickupLocation", pickup),
             ("FiscalTransactionInformation", [
                 ("FiscalActionType", "charge-default-patron-fee"),
                 ("FiscalTransactionType", "ILL-fee"),
                 ("Amount", [("CurrencyCode", "USD"), ("MonetaryValue", "0")])])]
    return ncip2("AcceptItem", body)


def reshare_check_out(barcode: str, patron: str, rid: str | None = None,
                      desired: str | None = None) -> bytes:
    body: list[Node] = [_rs_header(), user_id(patron, RS), item_id(barcode, RS)]
    if rid:
        body.append(request_id(rid, RS))
    if desired:
        body.append(("DesiredDateDue", desired))
    return ncip2("CheckOutItem", body)


def reshare_check_in(barcode: str) -> bytes:
    return ncip2("CheckInItem", [_rs_header(), item_id(barcode, RS),
                                 ("ItemElementType", "Bibliographic Description")])


def reshare_delete_item(barcode: str) -> bytes:
    return ncip2("DeleteItem", [_rs_header(), item_id(barcode, RS)])


def reshare_renew(barcode: str, patron: str, desired: str | None = None) -> bytes:
    body: list[Node] = [_rs_header(), user_id(patron, RS), item_id(barcode, RS)]
    if desired:
        body.append(("DesiredDateDue", desired))
    return ncip2("RenewItem", body)


def reshare_request_item(rid: str, *, sysnumber: str | None = None,
                         bib: Node | None = None, barcode: str | None = None,
                         patron: str | None = "INST-EAST", request_type: str = "Loan",
                         scope: str = "Bibliographic Item", pickup: str | None = None) -> bytes:
    body: list[Node] = [_rs_header()]
    if patron:
        body.append(user_id(patron, RS))
    if barcode:
        body.append(item_id(barcode, RS))
    if sysnumber:
        body.append(bib_record_id(sysnumber, "SYSNUMBER", RS))
    if bib is not None:
        body.append(bib)
    body += [request_id(rid, RS), ("RequestType", request_type), ("RequestScopeType", scope)]
    if pickup:
        body.append(("PickupLocation", pickup))
    body.append(("ItemOptionalFields", [("Location", [
        ("LocationType", "Permanent"), ("LocationName", [("LocationNameInstance", [
            ("LocationNameLevel", "1"), ("LocationNameValue", "MAIN")])])])]))
    return ncip2("RequestItem", body)


def reshare_cancel_request(rid: str | None = None, *, barcode: str | None = None,
                           patron: str = "INST-EAST") -> bytes:
    body: list[Node] = [_rs_header(), user_id(patron, RS)]
    if barcode:
        body.append(item_id(barcode, RS))
    if rid:
        body.append(request_id(rid, RS))
    body += [("RequestType", "Loan"), ("RequestScopeType", "Bibliographic Item")]
    return ncip2("CancelRequestItem", body)


def reshare_fee(patron: str, amount: str = "1250", rid: str = "EAST-FEE-1") -> bytes:
    return ncip2("CreateUserFiscalTransaction", [
        _rs_header(), user_id(patron, RS),
        ("FiscalTransactionInformation", [
            ("FiscalActionType", "charge-default-patron-fee"),
            ("FiscalTransactionType", "ILL-fee"),
            ("Amount", [("CurrencyCode", "USD"), ("MonetaryValue", amount)]),
            ("FiscalTransactionDescription", "interlibrary loan fee"),
            ("RequestId", [("AgencyId", RS), ("RequestIdentifierValue", rid)])])])


# Tipasa / WSILL (default namespace here, OCLC systems and symbols, bearer token) ---------------

TIPASA_HEADERS = {"Authorization": f"Bearer {TIPASA_TOKEN}"}


def _tip_header() -> Node:
    return header("TIPASA", from_system="WSILL", to_system="OURLMS")


def tipasa_accept_item(rid: str, patron: str, lender_barcode: str, *,
                       date_for_return: str = "2040-01-31T23:59:00Z",
                       pickup: str = "East Branch") -> bytes:
    return ncip2("AcceptItem", [
        _tip_header(), request_id(rid, "TIPASA", "ILL Request Id"),
        ("RequestedActionType", "Hold For Pickup And Notify"),
        user_id(patron, "TIPASA", "Barcode"), item_id(lender_barcode, "NDOSU"),
        ("DateForReturn", date_for_return),
        item_optional("Tipasa book", "Lender, Tip", "TIP 1"),
        ("PickupLocation", pickup), ("PickupExpiryDate", "2040-01-10T23:59:00Z")],
        style="default", version=V2_02)


def tipasa_check_out(barcode: str, patron: str) -> bytes:
    return ncip2("CheckOutItem", [_tip_header(), user_id(patron, "TIPASA", "Barcode"),
                                  item_id(barcode, "TIPASA")], style="default", version=V2_02)


def tipasa_check_in(barcode: str) -> bytes:
    return ncip2("CheckInItem", [_tip_header(), item_id(barcode, "TIPASA", "Barcode")],
                 style="default", version=V2_02)


# ILLiad (default namespace, ISO-8859-1 declared, no whitespace, institution code both ways) ------

ILLIAD_DECL = '<?xml version="1.0" encoding="ISO-8859-1"?>'


def _il_header() -> Node:
    return header("01XXX_INST", "01XXX_INST", profile="ILLiad")


def illiad_accept_item(tn: str, patron: str, title: str = "ILLiad book") -> bytes:
    return ncip2("AcceptItem", [
        _il_header(), request_id(tn, "01XXX_INST"),
        ("RequestedActionType", "Hold For Pickup And Notify"),
        user_id(patron, "01XXX_INST", "Barcode Id"), item_id(tn, "01XXX_INST"),
        ("DateForReturn", "2040-03-01T23:59:00"), ("PickupLocation", "MAIN"),
        item_optional(title, "Author, Ill")],
        style="default", version=V2_02, declaration=ILLIAD_DECL)


def illiad_check_out(barcode: str, patron: str, tn: str, desired: str | None) -> bytes:
    body: list[Node] = [_il_header(), user_id(patron), item_id(barcode), request_id(tn)]
    if desired:
        body.append(("DesiredDateDue", desired))
    return ncip2("CheckOutItem", body, style="default", version=V2_02, declaration=ILLIAD_DECL)


def illiad_renew(barcode: str, patron: str, desired: str) -> bytes:
    return ncip2("RenewItem", [_il_header(), user_id(patron), item_id(barcode),
                               ("DesiredDateDue", desired)],
                 style="default", version=V2_02, declaration=ILLIAD_DECL)


def illiad_check_in(barcode: str, patron: str, tn: str) -> bytes:
    return ncip2("CheckInItem", [_il_header(), user_id(patron), item_id(barcode),
                                 request_id(tn)],
                 style="default", version=V2_02, declaration=ILLIAD_DECL)


# Relais D2D towards FOLIO (no namespace, sloppy prolog, stray text after the root tag) ---------

FOLIO_DECL = "<?xml version = '1.0' encoding='UTF-8'?>"
FOLIO_STRAY = "xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'\n"


def _rel_header() -> Node:
    return header("Relais", "LEHI")


def relais_accept_item(rid: str, patron: str) -> bytes:
    return ncip2("AcceptItem", [
        _rel_header(), request_id(rid, "Relais"), ("RequestedActionType", "Hold For Pickup"),
        user_id(patron, "LEH"), item_id(rid, "LEH"),
        item_optional("Relais book", "Author", "Call Number"),
        ("PickupLocation", "DELIVERY"),
        ("FiscalTransactionInformation", [
            ("FiscalActionType", "charge-default-patron-fee"),
            ("FiscalTransactionType", "ILL-fee"), ("Amount", [("MonetaryValue", "0")])])],
        style="none", version="http://www.niso.org/schemas/ncip/v2_0/ncip_v2_0.xsd",
        declaration=FOLIO_DECL, stray=FOLIO_STRAY)


def relais_check_in(barcode: str) -> bytes:
    return ncip2("CheckInItem", [_rel_header(), item_id(barcode, "LEH")], style="none",
                 version="http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd",
                 declaration=FOLIO_DECL, stray=FOLIO_STRAY)


# DCB ORS appliance (default namespace + ncip: prefixed version "2.02", system ids) ---------------

def _dcb_header() -> Node:
    return header("dcb-host", from_system="DCB", to_system="interlend")


def dcb_request_item(pr_id: str, bib: str, barcode: str, patron: str = "dcb-vpatron-1") -> bytes:
    return ncip2("RequestItem", [
        _dcb_header(), user_id(patron, "dcb-host"),
        bib_record_id(bib, "SYSNUMBER", AGENCY),
        item_id(barcode, AGENCY),
        request_id(f"{pr_id}:SUPPLIER"), ("RequestType", "Hold"),
        ("RequestScopeType", "Bibliographic Item"),
        ("ItemOptionalFields", [bib_description("DCB title", "Dcb, Author")])],
        style="dcb")


def dcb_accept_item(pr_id: str, patron: str, supplier_barcode: str) -> bytes:
    return ncip2("AcceptItem", [
        _dcb_header(), request_id(f"{pr_id}:BORROWER"),
        ("RequestedActionType", "Accept For Loan"), user_id(patron),
        item_id(supplier_barcode), item_optional("DCB borrowed title", "Dcb, Author")],
        style="dcb")


# NCIP 1 (INN-Reach DCB box: Unique* identifiers, Scheme/Value pairs, datatype attributes) ------

IR_SCHEME = "http://192.0.2.1:6601/IRCIRCD?target=get_scheme_values&scheme="


def _sv(name: str, value: str, scheme: str | None = None) -> str:
    scheme = scheme or IR_SCHEME + name
    return (f'<{name}><Scheme datatype="string">{escape(scheme)}</Scheme>'
            f'<Value datatype="string">{escape(value)}</Value></{name}>')


def _ua(agency: str) -> str:
    return _sv("UniqueAgencyId", agency, IR_SCHEME + "UniqueAgencyId")


def ncip1(service: str, inner: str, from_agency: str = "zv010", to_agency: str = AGENCY) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1.0//EN" '
        '"http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">\n'
        '<NCIPMessage version="http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">'
        f"<{service}><InitiationHeader><FromAgencyId>{_ua(from_agency)}</FromAgencyId>"
        f"<ToAgencyId>{_ua(to_agency)}</ToAgencyId></InitiationHeader>{inner}</{service}>"
        "</NCIPMessage>").encode()


def _v1_item(barcode: str, agency: str) -> str:
    return (f'<UniqueItemId>{_ua(agency)}<ItemIdentifierValue datatype="string">'
            f"{escape(barcode)}</ItemIdentifierValue></UniqueItemId>")


def _v1_request(rid: str, agency: str) -> str:
    return (f'<UniqueRequestId>{_ua(agency)}<RequestIdentifierValue datatype="string">'
            f"{escape(rid)}</RequestIdentifierValue></UniqueRequestId>")


def _v1_user(patron: str, agency: str) -> str:
    return (f'<UniqueUserId>{_ua(agency)}<UserIdentifierValue datatype="string">'
            f"{escape(patron)}</UserIdentifierValue></UniqueUserId>")


def innreach_item_requested(tracking: str, barcode: str, patron: str = "INST-zv010") -> bytes:
    inner = (_v1_user(patron, "zv010") + _v1_item(barcode, AGENCY) + _v1_request(tracking, "zv010")
             + _sv("RequestType", "hold") + _sv("RequestScopeType", "item")
             + '<DateOfUserRequest datatype="dateTime">2026-06-15T16:00:45Z</DateOfUserRequest>'
             "<ItemOptionalFields><BibliographicDescription>"
             '<Author datatype="string">Someone</Author><Title datatype="string">A title.</Title>'
             "</BibliographicDescription></ItemOptionalFields>")
    return ncip1("ItemRequested", inner)


def innreach_item_shipped(tracking: str, barcode: str) -> bytes:
    inner = (_v1_request(tracking, "zv010") + _v1_item(barcode, AGENCY)
             + '<DateShipped datatype="dateTime">2026-06-16T16:01:37Z</DateShipped>')
    return ncip1("ItemShipped", inner)


def innreach_item_checked_in(tracking: str, barcode: str) -> bytes:
    inner = (_v1_request(tracking, "zv010") + _v1_item(barcode, AGENCY)
             + '<DateCheckedIn datatype="dateTime">2026-07-01T10:00:00Z</DateCheckedIn>')
    return ncip1("ItemCheckedIn", inner)


def innreach_check_out(barcode: str, patron: str, tracking: str) -> bytes:
    inner = (_v1_user(patron, "zv010") + _v1_item(barcode, AGENCY) + _v1_request(tracking, "zv010"))
    return ncip1("CheckOutItem", inner)


def innreach_accept_item(tracking: str, patron: str, barcode: str) -> bytes:
    inner = (_v1_request(tracking, "zv247") + _sv("RequestedActionType", "Hold For Pickup")
             + _v1_user(patron, AGENCY) + _v1_item(barcode, "zv247")
             + "<ItemOptionalFields><BibliographicDescription>"
             '<Author datatype="string">Inn, Reach</Author>'
             '<Title datatype="string">Virtual title</Title>'
             "</BibliographicDescription></ItemOptionalFields>")
    return ncip1("AcceptItem", inner, from_agency="zv247")


# -- replies -------------------------------------------------------------------------------------

def parse(reply: bytes) -> etree._Element:
    return etree.fromstring(reply)


def texts(reply: bytes, name: str) -> list[str]:
    """Text of every element called ``name`` (any namespace) in a reply."""
    root = parse(reply)
    return [(e.text or "").strip() for e in root.iter() if isinstance(e.tag, str)
            and etree.QName(e).localname == name]


def text(reply: bytes, name: str) -> str | None:
    """Text of the first element called ``name`` in a reply, or None when there is none."""
    found = texts(reply, name)
    return found[0] if found else None


def the_text(reply: bytes, name: str) -> str:
    """Text of the first element called ``name`` in a reply, which must have one."""
    found = texts(reply, name)
    assert found, (name, reply)
    return found[0]


def problem(reply: bytes) -> str | None:
    """The ProblemType (NCIP 2) or ProcessingErrorType/MessagingErrorType value (NCIP 1)."""
    found = text(reply, "ProblemType")
    if found is not None:
        return found
    root = parse(reply)
    for e in root.iter():
        if isinstance(e.tag, str) and etree.QName(e).localname in (
                "ProcessingErrorType", "MessagingErrorType"):
            values = [c.text for c in e if etree.QName(c).localname == "Value"]
            return (values[0] or "").strip() if values else None
    return None


def response_name(reply: bytes) -> str:
    root = parse(reply)
    first = next(c for c in root if isinstance(c.tag, str))
    return etree.QName(first).localname


# -- daemons -------------------------------------------------------------------------------------

def launched_daemons(tmp_path_factory: Any) -> Iterator[Callable[..., Daemon]]:
    """Body of a module-scoped ``launch`` fixture (``yield from`` it): a daemon on a freshly
    seeded database of its own, all killed at module end; ``prepare`` may change the database
    before the daemon starts."""
    started: list[Daemon] = []

    def _launch(name: str, prepare: Callable[[Path], None] | None = None) -> Daemon:
        tmp = tmp_path_factory.mktemp(name)
        seed_database(tmp / "interlend.sqlite3")
        if prepare is not None:
            prepare(tmp / "interlend.sqlite3")
        daemon = start_daemon(tmp, CONFIG)
        started.append(daemon)
        return daemon

    yield _launch
    for daemon in started:
        daemon.kill()


def call(daemon: Daemon, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """POST one NCIP request; HTTP 200 expected."""
    status, reply = daemon.post(body, headers=headers)
    assert status == 200, reply
    return reply


# -- database inspection -------------------------------------------------------------------------

def db(path: Path) -> sqlite3.Connection:
    """A read-only connection to the daemon's database."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def rows(path: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    conn = db(path)
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def one(path: Path, sql: str, *params: Any) -> dict[str, Any] | None:
    """The row ``sql`` finds, or None when it finds none (more than one is a failure)."""
    found = rows(path, sql, *params)
    assert len(found) <= 1, found
    return found[0] if found else None


def row(path: Path, sql: str, *params: Any) -> dict[str, Any]:
    """The one row ``sql`` finds: none or more than one is a failure (for tests that index it)."""
    found = rows(path, sql, *params)
    assert len(found) == 1, found
    return found[0]


def counts(path: Path) -> dict[str, int]:
    """Row counts of every circulation table (for "nothing duplicated" checks)."""
    found = {table: rows(path, f"SELECT count(*) AS n FROM {table}")[0]["n"]
             for table in ("records", "items", "holds", "loans", "rs_requests", "patrons",
                           "fees")}
    found["idempotency"] = rows(path, "SELECT count(*) AS n FROM idempotency"
                                " WHERE key NOT LIKE 'barrier-%'")[0]["n"]
    return found


_barriers = iter(range(1, 10**9))


def barrier(daemon: Any) -> None:
    """Wait until every audit row queued so far is committed, without sleeping.

    Replays and Problems are audited through the store's writer queue after the reply is
    built; the writer commits in order, so once a later write-through request (an
    ``ItemReceived`` notification that matches no request) has been answered, every earlier
    queued row is in the database. Its own rows are keyed ``barrier-N``.
    """
    body = ncip2("ItemReceived", [_rs_header(), request_id(f"barrier-{next(_barriers)}", RS)])
    status, reply = daemon.post(body)
    assert status == 200 and problem(reply) is None, reply


def audit_rows(path: Path, **where: Any) -> list[dict[str, Any]]:
    """Audit rows (barrier rows excluded), filtered by column equality."""
    sql = ("SELECT * FROM audit WHERE coalesce(broker_request_id, '') NOT LIKE 'barrier-%'")
    params: list[Any] = []
    for column, value in where.items():
        sql += f" AND {column} = ?"
        params.append(value)
    return rows(path, sql + " ORDER BY id", *params)


# -- dates ---------------------------------------------------------------------------------------

def local_day(days: int) -> date:
    """Today (in the gateway's time zone) plus ``days``."""
    return datetime.now(ZoneInfo(TIMEZONE)).date() + timedelta(days=days)


def end_of_day(days: int) -> datetime:
    """23:59:59 local time, ``days`` from today: how the gateway expresses loan periods."""
    return datetime.combine(local_day(days), dtime(23, 59, 59), ZoneInfo(TIMEZONE))


def stored(moment: datetime) -> str:
    """A moment as the database stores it (UTC, seconds)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def on_wire(moment: datetime) -> str:
    """A moment as NCIP replies carry it (``YYYY-MM-DDThh:mm:ssZ``)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def relais_delete_item(barcode: str) -> bytes:
    return ncip2("DeleteItem", [_rel_header(), item_id(barcode, "LEH")], style="none",
                 version="http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd")


def wsill_create_item(barcode: str, title: str = "Created item") -> bytes:
    """OCLC circill CreateItem (ns1: prefix, as WSILL/Relais D2D send to WMS Circ)."""
    return ncip2("CreateItem", [
        header("TIPASA", from_system="WSILL", to_system="OURLMS"),
        item_id(barcode, "NDOSU"),
        item_optional(title, "Maker, C.", "CI 1")], style="ns1", version=V2_02)


def innreach_item_request_cancelled(tracking: str, barcode: str) -> bytes:
    inner = (_v1_request(tracking, "zv010") + _v1_item(barcode, AGENCY)
             + '<DateCancelled datatype="dateTime">2026-06-17T09:00:00Z</DateCancelled>')
    return ncip1("ItemRequestCancelled", inner)


# -- Z39.50 checks with a real yaz-client ----------------------------------------------------------


def z3950(daemon: Any, commands: list[str]) -> list[Any] | None:
    """One yaz-client session (batched commands) against the daemon's Z39.50 port: the
    steps after the Init, or None when yaz-client is not installed (a warning is issued)."""
    if zc.YAZ_CLIENT is None:
        warnings.warn("yaz-client not installed (Debian package yaz): Z39.50 checks skipped",
                      stacklevel=2)
        return None
    init, *rest = zc.steps(zc.yaz_client(daemon.config_path.parent, daemon.ports["z3950"],
                                         commands))
    assert init.find(r"Connection (accepted)"), init.lines
    return rest


def z3950_items(daemon: Any, local_id: str) -> dict[str, dict[str, str]] | None:
    """itemId → CircRecord fields of the record ``local_id`` as a yaz-client sees them in OPAC
    (one yaz-client process: search 1=12, present OPAC)."""
    found = z3950(daemon, [f"find @attr 1=12 {local_id}", "format opac", "show 1"])
    if found is None:
        return None
    search, show = found
    assert search.hits == 1, search.lines
    return zc.opac_circulation(show)
