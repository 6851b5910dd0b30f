"""NCIP lookup services end to end: LookupVersion, LookupUser, LookupItem and LookupItemSet
answered by a real daemon over HTTP from a small seeded database.

Replies are checked for the content brokers parse (docs/ncip.md §8) and, where ../shared is
present, validated against the NCIP 2.02 XSD, the NCIP 1.0 DTD or the version-message XSD.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from lxml import etree
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from gateway.backends.embedded.circulation import EmbeddedCirculation
from gateway.backends.embedded.records import PatronData, upsert_patron
from gateway.domain.lookups import LockoutPolicy, Lookups
from gateway.domain.model import PatronAuthenticationFailed
from gateway.storage.pin_failures import StorePinFailures, pin_state
from gateway.storage.store import open_database
from protocols.ncip import Dialect, PrefixStyle
from tests.conftest import SHARED
from tests.daemon import Daemon, start_daemon
from tests.ncip_fixtures import (
    PIN,
    RESHARE_SECRET,
    TIPASA_TOKEN,
    USER_ELEMENTS,
    authentication_input,
    config_text,
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
    texts_of,
)
from tests.protocols.test_ncip_writer import Schemas, load_schemas

XML = "application/xml; charset=utf-8"
LOCKOUT_AFTER = 3


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the module on a seeded database (lock-out after three wrong PINs)."""
    tmp = tmp_path_factory.mktemp("ncip-lookups")
    seed_database(tmp / "interlend.sqlite3")
    d = start_daemon(tmp, config_text(lockout_after=LOCKOUT_AFTER))
    yield d
    d.stop()


@pytest.fixture(scope="module")
def schemas() -> Schemas | None:
    """The reference schemas, or None without ../shared (schema assertions are then skipped)."""
    return load_schemas(SHARED) if SHARED.is_dir() else None


class Client:
    """Posts to the daemon as one peer, checks HTTP 200 + content type and schema validity."""

    def __init__(self, daemon: Daemon, schemas: Schemas | None, peer: str = "reshare") -> None:
        self.daemon = daemon
        self.schemas = schemas
        self.peer = peer

    def send(self, service: str, body: str, *, ncip_version: int = 2) -> etree._Element:
        headers = {}
        style = {"reshare": "ns1", "tipasa": "default", "plain": "none"}[self.peer]
        if ncip_version == 1:
            request = ncip1(service, body, from_agency=self.peer.upper()
                            if self.peer != "tipasa" else "OCLC-TIPASA",
                            secret=RESHARE_SECRET if self.peer == "reshare" else None)
        else:
            request = ncip2(service, body, style=style,
                            from_agency={"reshare": "RESHARE", "tipasa": "OCLC-TIPASA",
                                         "plain": "PLAIN"}[self.peer],
                            secret=RESHARE_SECRET if self.peer == "reshare" else None)
        if self.peer == "tipasa":
            headers["Authorization"] = f"Bearer {TIPASA_TOKEN}"
        status, reply = self.daemon.post(request, headers=headers)
        assert status == 200
        self.last = reply
        root = parse_reply(reply)
        if self.schemas is not None:
            dialect = Dialect.NCIP1 if ncip_version == 1 else Dialect.NCIP2
            prefix = {"reshare": PrefixStyle.NS1, "tipasa": PrefixStyle.DEFAULT,
                      "plain": PrefixStyle.NONE}[self.peer]
            self.schemas.check(reply, dialect, prefix)
        return root


@pytest.fixture
def reshare(daemon: Daemon, schemas: Schemas | None) -> Client:
    return Client(daemon, schemas, "reshare")


@pytest.fixture
def tipasa(daemon: Daemon, schemas: Schemas | None) -> Client:
    return Client(daemon, schemas, "tipasa")


@pytest.fixture
def plain(daemon: Daemon, schemas: Schemas | None) -> Client:
    return Client(daemon, schemas, "plain")


def problems(root: etree._Element) -> list[str]:
    return problem_types(etree.tostring(root))


def privileges(root: etree._Element) -> dict[str, str]:
    """AgencyUserPrivilegeType -> UserPrivilegeStatusType."""
    result = {}
    for privilege in find_all(root, "UserPrivilege"):
        kind = text_of(privilege, "AgencyUserPrivilegeType")
        result[kind or ""] = text_of(privilege, "UserPrivilegeStatusType") or ""
    return result


# -- LookupVersion --------------------------------------------------------------------------


def test_lookup_version_lists_services(daemon: Daemon, schemas: Schemas | None) -> None:
    """An NCIPVersionMessage LookupVersion is answered with the supported versions and every
    service the gateway handles (valid against ncip_version.xsd)."""
    body = (b'<?xml version="1.0"?><NCIPVersionMessage version="http://www.niso.org/ncip/v1_0/'
            b'imp1/xsd/ncip_version.xsd"><LookupVersion><FromAgencyId><UniqueAgencyId><Scheme>'
            b"urn:a</Scheme><Value>PLAIN</Value></UniqueAgencyId></FromAgencyId><ToAgencyId>"
            b"<UniqueAgencyId><Scheme>urn:a</Scheme><Value>TESTLIB</Value></UniqueAgencyId>"
            b"</ToAgencyId></LookupVersion></NCIPVersionMessage>")
    status, reply = daemon.post(body)
    assert status == 200
    root = parse_reply(reply)
    assert root.tag == "NCIPVersionMessage" and local(root[0]) == "LookupVersionResponse"
    services = set(texts_of(root, "ServiceSupported"))
    assert {"LookupVersion", "LookupUser", "LookupItem", "LookupItemSet", "AcceptItem",
            "CheckOutItem", "CheckInItem", "RequestItem", "CancelRequestItem", "DeleteItem",
            "RenewItem"} <= services
    assert texts_of(root, "VersionSupported")
    if schemas is not None:
        schemas.check(reply, Dialect.VERSION)


def test_lookup_version_inside_ncip_message(reshare: Client) -> None:
    """DCB's ping (LookupVersion inside an NCIPMessage) is answered with the service list too."""
    status, reply = reshare.daemon.post(ncip2("LookupVersion", "", secret=RESHARE_SECRET))
    assert status == 200 and problem_types(reply) == []
    assert "LookupUser" in texts_of(parse_reply(reply), "ServiceSupported")


# -- LookupUser -----------------------------------------------------------------------------


def test_lookup_user_by_user_id(reshare: Client) -> None:
    """By UserId: barcode UserId, structured and unstructured name, e-mail as mailto, STATUS
    ACTIVE and PROFILE = patron group; schema-valid in the ns1: style."""
    root = reshare.send("LookupUser", lookup_user_by_id("P-ADA"))
    assert problems(root) == []
    assert reshare.last.count(b"<ns1:") > 10 and b"<LookupUser" not in reshare.last
    assert text_of(root, "UserIdentifierValue") == "P-ADA"
    assert text_of(root, "UserIdentifierType") == "Barcode"
    assert text_of(root, "GivenName") == "Ada" and text_of(root, "Surname") == "Lovelace"
    assert text_of(root, "UnstructuredPersonalUserName") == "Ada Lovelace"
    assert text_of(root, "ElectronicAddressType") == "mailto"
    assert text_of(root, "ElectronicAddressData") == "ada@example.org"
    assert privileges(root) == {"STATUS": "ACTIVE", "PROFILE": "faculty"}
    assert find_all(root, "BlockOrTrap") == []
    assert find_all(root, "LoanedItem") == [] and find_all(root, "RequestedItem") == []


def test_lookup_user_by_barcode_with_right_pin(reshare: Client) -> None:
    """AuthenticationInput Barcode Id + the right PIN finds and authenticates the patron; the PIN
    never comes back."""
    root = reshare.send("LookupUser", lookup_user_by_login("P-ADA", "Barcode Id", PIN))
    assert problems(root) == []
    assert text_of(root, "UserIdentifierValue") == "P-ADA"
    assert PIN.encode() not in reshare.last


def test_lookup_user_by_username(reshare: Client) -> None:
    """AuthenticationInput Username (ReShare's retry form), with and without PIN, answers the
    patron with the barcode as UserId and the username as a second UserId."""
    for pin in (None, PIN):
        root = reshare.send("LookupUser", lookup_user_by_login("ada", "Username", pin))
        assert problems(root) == []
        assert text_of(root, "UserIdentifierValue") == "P-ADA"
        assert "ada" in texts_of(root, "UserIdentifierValue")


def test_lookup_user_wrong_pin(reshare: Client) -> None:
    """A wrong (or empty) PIN is User Authentication Failed; no patron data and no PIN echoed."""
    for pin in ("0000", ""):
        root = reshare.send("LookupUser", lookup_user_by_login("P-ADA", "Barcode Id", pin)
                            if pin else authentication_input("P-ADA", "Barcode Id")
                            + "<AuthenticationInput><AuthenticationInputData/>"
                              "<AuthenticationInputType>PIN</AuthenticationInputType>"
                              "</AuthenticationInput>" + USER_ELEMENTS)
        assert problems(root) == ["User Authentication Failed"]
        assert b"Lovelace" not in reshare.last and b"0000" not in reshare.last
    # one failure does not lock: the right PIN still works
    assert problems(reshare.send("LookupUser", lookup_user_by_login("P-ADA", pin=PIN))) == []


def test_lockout_after_repeated_wrong_pins(reshare: Client, tipasa: Client) -> None:
    """After auth_failures_before_lockout wrong PINs the patron is locked out: even the right
    PIN is refused, through this peer and through any other (the lock is the patron's)."""
    for _ in range(LOCKOUT_AFTER):
        root = reshare.send("LookupUser", lookup_user_by_login("P-LOCK", pin="9999"))
        assert problems(root) == ["User Authentication Failed"]
    root = reshare.send("LookupUser", lookup_user_by_login("P-LOCK", pin=PIN))
    assert problems(root) == ["User Authentication Failed"]
    root = reshare.send("LookupUser", lookup_user_by_login("lockme", "Username", PIN))
    assert problems(root) == ["User Authentication Failed"]
    root = tipasa.send("LookupUser", lookup_user_by_login("P-LOCK", pin=PIN))
    assert problems(root) == ["User Authentication Failed"]


def test_wrong_pins_below_limit_do_not_lock(reshare: Client) -> None:
    """Fewer wrong PINs than the limit, then the right one, succeeds and resets the count."""
    for _ in range(2):
        for _ in range(LOCKOUT_AFTER - 1):
            root = reshare.send("LookupUser", lookup_user_by_login("P-LOCK-RS", pin="1111"))
            assert problems(root) == ["User Authentication Failed"]
        assert problems(reshare.send("LookupUser",
                                     lookup_user_by_login("P-LOCK-RS", pin=PIN))) == []


def test_unknown_user(reshare: Client) -> None:
    """An unknown patron (by UserId or by login) is Unknown User naming the identifier."""
    root = reshare.send("LookupUser", lookup_user_by_id("NO-SUCH-PATRON"))
    assert problems(root) == ["Unknown User"]
    assert text_of(root, "ProblemValue") == "NO-SUCH-PATRON"
    root = reshare.send("LookupUser", lookup_user_by_login("nobody", "Username", PIN))
    assert problems(root) == ["Unknown User"]


def test_lookup_user_without_identifier_is_needed_data_missing(reshare: Client) -> None:
    """A LookupUser with neither UserId nor an identifying AuthenticationInput is Needed Data
    Missing, not a crash."""
    root = reshare.send("LookupUser", USER_ELEMENTS)
    assert problems(root) == ["Needed Data Missing"]


def test_blocked_patron_is_answered_not_refused(reshare: Client) -> None:
    """A blocked patron is a successful answer with STATUS=BLOCKED and BlockOrTrap entries,
    not a Problem (ReShare reads the privilege)."""
    root = reshare.send("LookupUser", lookup_user_by_id("P-BLOCKED"))
    assert problems(root) == []
    assert privileges(root) == {"STATUS": "BLOCKED", "PROFILE": "undergrad"}
    blocks = texts_of(root, "BlockOrTrapType")
    assert "Block Checkout" in blocks and "Block Interlibrary Loan" in blocks


def test_blocked_patron_with_right_pin(reshare: Client) -> None:
    """Authentication and blocking are separate: the right PIN for a blocked patron gives the
    BLOCKED answer, not User Authentication Failed."""
    root = reshare.send("LookupUser", lookup_user_by_login("bob", "Username", PIN))
    assert problems(root) == [] and privileges(root)["STATUS"] == "BLOCKED"


def test_expired_patron(reshare: Client) -> None:
    """An expired patron: STATUS=BLOCKED, a Patron Expired BlockOrTrap, ValidToDate in the
    past on the PROFILE privilege."""
    root = reshare.send("LookupUser", lookup_user_by_id("P-EXPIRED"))
    assert problems(root) == []
    assert privileges(root) == {"STATUS": "BLOCKED", "PROFILE": "alumni"}
    assert "Patron Expired" in texts_of(root, "BlockOrTrapType")
    assert text_of(root, "ValidToDate").startswith("2001-01-31")


def test_loaned_and_requested_items_when_asked(reshare: Client) -> None:
    """LoanedItemsDesired / RequestedItemsDesired add the patron's loans (with due date and
    title) and active holds (with pickup location)."""
    root = reshare.send("LookupUser", lookup_user_by_id("P-ADA", loans=True, holds=True))
    assert problems(root) == []
    (loan,) = find_all(root, "LoanedItem")
    assert text_of(loan, "ItemIdentifierValue") == "ITEM-LOAN"
    assert text_of(loan, "DateDue") == "2031-03-14T12:00:00Z"
    assert text_of(loan, "Title") == "The art of computer programming"
    (hold,) = find_all(root, "RequestedItem")
    assert text_of(hold, "ItemIdentifierValue") == "ITEM-HELD"
    assert text_of(hold, "PickupLocation") == "MAIN"
    assert text_of(hold, "RequestIdentifierValue")


def test_prefix_styles_per_peer(reshare: Client, tipasa: Client, plain: Client) -> None:
    """The same LookupUser is answered ns1: for reshare, in a default namespace for tipasa and
    with no namespace at all for the "none" peer, each schema-valid."""
    reshare.send("LookupUser", lookup_user_by_id("P-ADA"))
    assert reshare.last.split(b"\n", 1)[1].startswith(b'<ns1:NCIPMessage xmlns:ns1="')
    tipasa.send("LookupUser", lookup_user_by_id("P-ADA"))
    assert tipasa.last.split(b"\n", 1)[1].startswith(b'<NCIPMessage xmlns="http://www.niso.org/')
    assert b"ns1:" not in tipasa.last
    root = plain.send("LookupUser", lookup_user_by_id("P-PLAIN"))
    assert b"xmlns" not in plain.last and root.tag == "NCIPMessage"
    assert text_of(root, "ElectronicAddressData") == "pat@example.org"


def test_peer_style_wins_over_request_style(daemon: Daemon, schemas: Schemas | None) -> None:
    """A reshare request written in the default-namespace style is still answered ns1: (the
    peer's configured style)."""
    status, reply = daemon.post(ncip2("LookupUser", lookup_user_by_id("P-ADA"), style="default",
                                      secret=RESHARE_SECRET))
    assert status == 200 and b"<ns1:LookupUserResponse>" in reply
    if schemas is not None:
        schemas.check(reply, Dialect.NCIP2, PrefixStyle.NS1)


def test_problems_in_peer_style(tipasa: Client, plain: Client) -> None:
    """Problems are written in the peer's style too (and stay schema-valid)."""
    tipasa.send("LookupUser", lookup_user_by_id("NOPE"))
    assert b"<Problem>" in tipasa.last and b"xmlns=" in tipasa.last
    plain.send("LookupUser", lookup_user_by_id("NOPE"))
    assert b"<Problem>" in plain.last and b"xmlns" not in plain.last


def test_ncip1_lookup_user(daemon: Daemon, schemas: Schemas | None) -> None:
    """An NCIP 1 LookupUser (UniqueUserId, Scheme/Value pairs) is answered in NCIP 1 (DTD-valid):
    VisibleUserId, name, e-mail and privileges; an unknown user is an NCIP 1 Problem."""
    client = Client(daemon, schemas, "plain")
    body = ("<UniqueUserId><UniqueAgencyId><Scheme>urn:a</Scheme><Value>TESTLIB</Value>"
            "</UniqueAgencyId><UserIdentifierValue>{}</UserIdentifierValue></UniqueUserId>"
            + "".join(f"<UserElementType><Scheme>http://www.niso.org/ncip/v1_0/schemes/"
                      f"userelementtype/userelementtype.scm</Scheme><Value>{e}</Value>"
                      "</UserElementType>"
                      for e in ("Name Information", "User Address Information",
                                "User Privilege", "Visible User Id")))
    root = client.send("LookupUser", body.format("P-ADA"), ncip_version=1)
    assert b"xmlns" not in client.last and local(root[0]) == "LookupUserResponse"
    assert problems(root) == []
    assert text_of(root, "VisibleUserIdentifier") == "P-ADA"
    assert text_of(root, "GivenName") == "Ada"
    assert privileges(root) == {"STATUS": "ACTIVE", "PROFILE": "faculty"}
    root = client.send("LookupUser", body.format("NOPE"), ncip_version=1)
    assert problems(root) == ["Unknown User"]
    assert find_all(root, "ProcessingError")


def test_ncip1_login_with_pin(daemon: Daemon, schemas: Schemas | None) -> None:
    """NCIP 1 AuthenticationInput (Scheme/Value coded types) with barcode and PIN works; a
    wrong PIN is User Authentication Failed in NCIP 1 form."""
    client = Client(daemon, schemas, "reshare")

    def login(pin: str) -> str:
        def entry(value: str, kind: str) -> str:
            return ("<AuthenticationInput><AuthenticationInputData>" + value
                    + "</AuthenticationInputData><AuthenticationDataFormatType><Scheme>urn:f"
                    "</Scheme><Value>text</Value></AuthenticationDataFormatType>"
                    "<AuthenticationInputType><Scheme>urn:t</Scheme><Value>" + kind
                    + "</Value></AuthenticationInputType></AuthenticationInput>")
        return entry("P-ADA", "Barcode Id") + entry(pin, "PIN") + (
            "<UserElementType><Scheme>urn:u</Scheme><Value>Name Information</Value>"
            "</UserElementType>")

    assert problems(client.send("LookupUser", login(PIN), ncip_version=1)) == []
    assert problems(client.send("LookupUser", login("0001"), ncip_version=1)) == [
        "User Authentication Failed"]


# -- LookupItem -----------------------------------------------------------------------------


def _item(barcode: str) -> str:
    return f"<ItemId><ItemIdentifierValue>{barcode}</ItemIdentifierValue></ItemId>"


def test_lookup_item_on_loan(reshare: Client) -> None:
    """An item on loan: bibliographic description (title, author, ISBN, SYSNUMBER, publisher,
    year), On Loan, call number, location and due date."""
    root = reshare.send("LookupItem", _item("ITEM-LOAN"))
    assert problems(root) == []
    assert text_of(root, "ItemIdentifierValue") == "ITEM-LOAN"
    assert text_of(root, "Title") == "The art of computer programming"
    assert text_of(root, "Author").startswith("Knuth, Donald E")
    assert text_of(root, "Publisher") == "Addison-Wesley"
    assert text_of(root, "PublicationDate") == "1997"
    assert text_of(root, "BibliographicItemIdentifier") == "9780201896831"
    assert text_of(root, "BibliographicRecordIdentifier") == "rec-taocp"
    assert text_of(root, "CirculationStatus") == "On Loan"
    assert text_of(root, "CallNumber") == "QA76.6 .K64 1997 c.2"
    assert text_of(root, "LocationNameValue") == "EAST"
    assert text_of(root, "DateDue") == "2031-03-14T12:00:00Z"


def test_lookup_item_available(tipasa: Client) -> None:
    """An available item: Available On Shelf, its location and call number, no due date."""
    root = tipasa.send("LookupItem", _item("ITEM-AVAIL"))
    assert problems(root) == []
    assert text_of(root, "CirculationStatus") == "Available On Shelf"
    assert text_of(root, "LocationNameValue") == "MAIN"
    assert text_of(root, "CallNumber") == "QA76.6 .K64 1997"
    assert find_all(root, "DateDue") == []


def test_lookup_item_held_shows_queue(reshare: Client) -> None:
    """An item with an active hold reports HoldQueueLength 1."""
    root = reshare.send("LookupItem", _item("ITEM-HELD"))
    assert text_of(root, "HoldQueueLength") == "1"


def test_lookup_item_unknown(reshare: Client) -> None:
    """An unknown barcode is Unknown Item naming it; a missing ItemId is Needed Data Missing."""
    root = reshare.send("LookupItem", _item("NO-SUCH-ITEM"))
    assert problems(root) == ["Unknown Item"]
    assert text_of(root, "ProblemValue") == "NO-SUCH-ITEM"
    root = reshare.send("LookupItem", "<ItemElementType>Bibliographic Description"
                                      "</ItemElementType>")
    assert problems(root) == ["Needed Data Missing"]


# -- LookupItemSet --------------------------------------------------------------------------


def _record_id(value: str, code: str | None = "SYSNUMBER") -> str:
    code_element = (f"<BibliographicRecordIdentifierCode>{code}"
                    "</BibliographicRecordIdentifierCode>" if code else "")
    return (f"<BibliographicId><BibliographicRecordId><BibliographicRecordIdentifier>{value}"
            f"</BibliographicRecordIdentifier>{code_element}</BibliographicRecordId>"
            "</BibliographicId>")


def _item_bib_id(value: str, code: str) -> str:
    return (f"<BibliographicId><BibliographicItemId><BibliographicItemIdentifier>{value}"
            f"</BibliographicItemIdentifier><BibliographicItemIdentifierCode>{code}"
            "</BibliographicItemIdentifierCode></BibliographicItemId></BibliographicId>")


def _barcodes(root: etree._Element) -> set[str]:
    return {text_of(info, "ItemIdentifierValue") or ""
            for info in find_all(root, "ItemInformation")}


@pytest.mark.parametrize("bib_id", [
    _record_id("rec-taocp"), _record_id("rec-taocp", None), _record_id("rec-taocp", "BibID"),
    _item_bib_id("0201896834", "ISBN"), _item_bib_id("978-0-201-89683-1", "ISBN"),
    _record_id("0-201-89683-4", "ISBN"), _record_id("12345", "OCLC"),
    _record_id("(OCoLC)ocm00012345", "OCLC"),
], ids=["sysnumber", "no-code", "bibid", "isbn10", "isbn13-hyphens", "isbn-record-id", "oclc",
        "oclc-prefixed"])
def test_lookup_item_set_by_record_identifier(reshare: Client, bib_id: str) -> None:
    """LookupItemSet by SYSNUMBER (or no code / BibID), ISBN in either form, or OCLC number finds
    the record's items with their status, and echoes the BibliographicId."""
    root = reshare.send("LookupItemSet", bib_id)
    assert problems(root) == []
    (bib,) = find_all(root, "BibInformation")
    assert find_all(bib, "BibliographicId")
    assert _barcodes(root) == {"ITEM-AVAIL", "ITEM-LOAN"}
    statuses = {text_of(i, "ItemIdentifierValue"): text_of(i, "CirculationStatus")
                for i in find_all(root, "ItemInformation")}
    assert statuses == {"ITEM-AVAIL": "Available On Shelf", "ITEM-LOAN": "On Loan"}
    assert text_of(root, "Title") == "The art of computer programming"


def test_lookup_item_set_several_and_by_item(reshare: Client) -> None:
    """Several BibliographicIds in one request are answered in order; ItemIds are answered as
    their own BibInformation."""
    root = reshare.send("LookupItemSet", _record_id("rec-sicp") + _record_id("rec-taocp")
                        + _item("ITEM-HELD"))
    bibs = find_all(root, "BibInformation")
    assert len(bibs) == 3
    assert _barcodes(bibs[0]) == {"ITEM-HELD"}
    assert _barcodes(bibs[1]) == {"ITEM-AVAIL", "ITEM-LOAN"}
    assert _barcodes(bibs[2]) == {"ITEM-HELD"}


def test_lookup_item_set_nothing_asked(reshare: Client) -> None:
    """A LookupItemSet without any id is Needed Data Missing."""
    root = reshare.send("LookupItemSet", "")
    assert problems(root) == ["Needed Data Missing"]


def test_lookup_item_set_unknown_record_is_not_a_crash(daemon: Daemon) -> None:
    """An unknown record id (or a record without items) is answered HTTP 200 without a
    message-level failure: the other ids in the request are still answered."""
    status, reply = daemon.post(ncip2("LookupItemSet", _record_id("no-such-record")
                                      + _record_id("rec-empty") + _record_id("rec-taocp"),
                                      secret=RESHARE_SECRET))
    assert status == 200
    root = parse_reply(reply)
    assert "Temporary Processing Failure" not in problem_types(reply)
    assert len(find_all(root, "BibInformation")) == 3
    assert _barcodes(root) == {"ITEM-AVAIL", "ITEM-LOAN"}


def test_lookup_item_set_unknown_ids_schema_valid(daemon: Daemon, schemas: Schemas | None) -> None:
    """The answer for unknown record ids and records without items in a LookupItemSet is
    schema-valid (BibInformation needs HoldingsSet+ or Problem+)."""
    if schemas is None:
        pytest.skip("reference schemas not available")
    status, reply = daemon.post(ncip2("LookupItemSet", _record_id("no-such-record")
                                      + _record_id("rec-empty") + _record_id("rec-taocp"),
                                      secret=RESHARE_SECRET))
    assert status == 200
    schemas.check(reply, Dialect.NCIP2, PrefixStyle.NS1)


def test_daemon_log_has_no_traceback(daemon: Daemon) -> None:
    """No lookup above crashed a handler: the daemon logged no traceback."""
    assert daemon.process.poll() is None
    assert not any("Traceback" in line for line in daemon.lines), "\n".join(daemon.lines)


# -- lock-out under concurrency (unit level: a store whose PIN checks finish on demand) ------


class GatedStore:
    """Runs queries on a real connection at once, but holds every PIN verification until the
    test releases it (as the reader threads would while scrypt runs)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.gates: list[tuple[Deferred[bool], bool]] = []

    def read(self, work):  # type: ignore[no-untyped-def]
        result = work(self.conn)
        if isinstance(result, bool):
            gate: Deferred[bool] = Deferred()
            self.gates.append((gate, result))
            return gate
        return succeed(result)

    def write(self, work):  # type: ignore[no-untyped-def]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(self.conn)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return succeed(result)


def _outcome(d: Deferred) -> object:  # type: ignore[type-arg]
    seen: list[object] = []
    d.addBoth(seen.append)
    assert seen, "not finished"
    value = seen[0]
    return value.value if isinstance(value, Failure) else value


@pytest.fixture
def gated(tmp_path) -> tuple[Lookups, GatedStore, int]:  # type: ignore[no-untyped-def]
    conn = open_database(tmp_path / "lockout.sqlite3")
    with conn:
        patron_id, _ = upsert_patron(conn, PatronData(barcode="P-CONC", pin=PIN))
    store = GatedStore(conn)
    policy = LockoutPolicy(limit=3, seconds=600, clock=Clock())
    lookups = Lookups(EmbeddedCirculation(store), StorePinFailures(store),  # type: ignore
                      policy)
    yield lookups, store, patron_id
    conn.close()


def test_concurrent_wrong_pins_cannot_outrun_the_lockout(  # type: ignore[no-untyped-def]
        gated) -> None:
    """Guesses sent at once are not all verified before the first failure is counted: no more
    PIN checks run than the lock-out limit allows, the rest (the right PIN included) are
    refused at once, and the patron ends up locked out."""
    lookups, store, patron_id = gated
    guesses = [Deferred.fromCoroutine(lookups.patron("P-CONC", peer="x", secret=f"{n:04}"))
               for n in range(6)]
    right = Deferred.fromCoroutine(lookups.patron("P-CONC", peer="x", secret=PIN))
    assert len(store.gates) == 3
    for d in guesses[3:] + [right]:
        assert isinstance(_outcome(d), PatronAuthenticationFailed)
    for gate, result in store.gates:
        gate.callback(result)
    for d in guesses[:3]:
        assert isinstance(_outcome(d), PatronAuthenticationFailed)
    assert lookups.lockout.locked(pin_state(store.conn, patron_id))
    late = Deferred.fromCoroutine(lookups.patron("P-CONC", peer="x", secret=PIN))
    assert isinstance(_outcome(late), PatronAuthenticationFailed) and len(store.gates) == 3


def test_failed_verification_run_is_not_counted(gated) -> None:  # type: ignore[no-untyped-def]
    """A PIN check that errors (store trouble) frees its reservation without counting as a
    wrong PIN: the right PIN still works afterwards."""
    lookups, store, patron_id = gated
    broken = Deferred.fromCoroutine(lookups.patron("P-CONC", peer="x", secret="0000"))
    store.gates[0][0].errback(RuntimeError("disk on fire"))
    assert isinstance(_outcome(broken), RuntimeError)
    ok = Deferred.fromCoroutine(lookups.patron("P-CONC", peer="x", secret=PIN))
    store.gates[1][0].callback(store.gates[1][1])
    assert _outcome(ok).patron.barcode == "P-CONC"  # type: ignore[union-attr]
    assert not lookups.lockout.locked(pin_state(store.conn, patron_id))
