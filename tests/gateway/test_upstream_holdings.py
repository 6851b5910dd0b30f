"""Tests for gateway.backends.upstream.holdings: each LMS's holdings become our item states.

Three kinds of evidence: small records of our own in the shapes the LMSs serve; the real
SRU-wrapped availability answers of 11 LMS types that ReShare keeps as fixtures (read in place
from ``../shared/brokers``); and the Koha-shaped sample catalogue of ``../shared/lms/koha-zebra``,
whose 999$x (Koha's own count of items not on loan) cross-checks the 952 reading item by item.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pymarc
import pytest
from lxml import etree

from gateway.backends.upstream.holdings import RecordHoldings, is_temporary_item, normalise
from gateway.backends.upstream.items import HoldingsItem, ItemStatus, iso_date
from gateway.backends.upstream.opac_holdings import marc_from_xml, opac_from_xml
from gateway.backends.upstream.profile import HoldingsProfile
from gateway.z3950.retrieval import holdings_fields, opac_holding
from protocols.z3950.records import CirculationItem, Holding, OpacRecord

S = ItemStatus
SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True)


# -- helpers ----------------------------------------------------------------------------------

def marc(tag: str, *items: dict[str, str], extra: tuple[pymarc.Field, ...] = ()) -> pymarc.Record:
    """A small bibliographic record with one ``tag`` field per item (subfields in order)."""
    record = pymarc.Record()
    record.add_field(pymarc.Field(tag="001", data="1"))
    record.add_field(field("245", {"a": "A history of interlibrary lending"}))
    for f in extra:
        record.add_field(f)
    for item in items:
        record.add_field(field(tag, item))
    return record


def field(tag: str, subfields: dict[str, str]) -> pymarc.Field:
    return pymarc.Field(tag=tag, indicators=pymarc.Indicators(" ", " "),
                        subfields=[pymarc.Subfield(c, v) for c, v in subfields.items()])


def profile(name: str, **settings: Any) -> HoldingsProfile:
    return HoldingsProfile.from_mapping({"name": name, **settings}, "backend.catalogue.profile")


def statuses(holdings: RecordHoldings) -> list[ItemStatus]:
    return [item.status for item in holdings.items]


def koha_item(**subfields: str) -> dict[str, str]:
    """A 952 as Koha writes it: the NOT NULL status columns present as 0, then the rest."""
    item = {"0": "0", "1": "0", "4": "0", "7": "0", "a": "CPL", "b": "CPL", "c": "GEN",
            "o": "025.62 OKA", "p": "39999000001030", "y": "BK"}
    item.update({k.removeprefix("s"): v for k, v in subfields.items()})
    return item


def opac(*holdings: Holding) -> OpacRecord:
    return OpacRecord(bibliographic=None, holdings=holdings)


def circ(available: bool, **fields: Any) -> CirculationItem:
    return CirculationItem(available_now=available, **fields)


# -- Koha 952 ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("subfields", "expected", "words"), [
    ({}, S.AVAILABLE, "Available"),
    ({"q": "2025-07-01"}, S.ON_LOAN, "Checked out"),
    ({"s1": "1"}, S.LOST, "Lost"),
    ({"s1": "2"}, S.LOST, "Long overdue (lost)"),
    ({"s1": "3"}, S.LOST, "Lost and paid for"),
    ({"s1": "4"}, S.MISSING, "Missing"),
    ({"s1": "5"}, S.MISSING, "Missing from bundle"),
    ({"s0": "1"}, S.WITHDRAWN, "Withdrawn"),
    ({"s4": "1"}, S.DAMAGED, "Damaged"),
    ({"s7": "1"}, S.NOT_FOR_LOAN, "Not for loan"),
    ({"s7": "2"}, S.NOT_FOR_LOAN, "Staff collection"),
    ({"s7": "7"}, S.NOT_FOR_LOAN, "Not for loan (7)"),
    ({"s7": "-1"}, S.ON_ORDER, "Ordered"),
    ({"s5": "1"}, S.NOT_FOR_LOAN, "Restricted access"),
    ({"b": "MPL"}, S.IN_TRANSIT, "In transit"),
    # precedence: what stops a loan outranks the loan, the loan outranks shelf-side flags
    ({"s0": "1", "q": "2025-07-01"}, S.WITHDRAWN, "Withdrawn"),
    ({"s1": "2", "q": "2025-07-01"}, S.LOST, "Long overdue (lost)"),
    ({"s4": "1", "q": "2025-07-01"}, S.ON_LOAN, "Checked out"),
    ({"s7": "1", "b": "MPL"}, S.NOT_FOR_LOAN, "Not for loan"),
])
def test_koha_952_status(subfields: dict[str, str], expected: ItemStatus, words: str) -> None:
    """Each of Koha's item status columns, with Koha's authorised-value words, and which wins."""
    holdings = normalise(profile("koha"), marc("952", koha_item(**subfields)))
    assert statuses(holdings) == [expected]
    assert holdings.items[0].lms_status == words


def test_koha_952_fields() -> None:
    """Barcode, holding branch, shelf, call number, copy, type, collection and due date."""
    item = normalise(profile("koha"), marc("952", koha_item(
        b="MPL", q="2025-07-01", t="2", s8="NFIC"))).items[0]
    assert (item.barcode, item.location, item.shelving_location, item.call_number,
            item.copy_number, item.item_type, item.collection, item.due_date) == (
        "39999000001030", "MPL", "GEN", "025.62 OKA", "2", "BK", "NFIC", "2025-07-01")


def test_koha_item_type_falls_back_to_the_record_type() -> None:
    """Without item-level types ($y) the record's 942$c is the item type."""
    item = koha_item()
    del item["y"]
    record = marc("952", item, extra=(field("942", {"2": "ddc", "c": "REF"}),))
    assert normalise(profile("koha"), record).items[0].item_type == "REF"


def test_koha_floating_collection_is_not_in_transit() -> None:
    """A library with floating collections turns the branch rule off."""
    holdings = normalise(profile("koha", transit_when_branches_differ=False),
                         marc("952", koha_item(b="MPL")))
    assert statuses(holdings) == [S.AVAILABLE]
    assert holdings.items[0].location == "MPL"


def test_koha_profile_reads_its_own_tag_only() -> None:
    """852s in a Koha record are not items; a UNIMARC-style Koha sets another tag."""
    record = marc("952", koha_item(), extra=(field("852", {"a": "X", "p": "123"}),))
    assert len(normalise(profile("koha"), record).items) == 1
    assert normalise(profile("koha", holdings_tag="995"), record).items == ()


# -- Evergreen, Polaris, Symphony, generic-marc -------------------------------------------------

@pytest.mark.parametrize(("word", "expected"), [
    ("Available", S.AVAILABLE), ("Reshelving", S.AVAILABLE), ("Checked out", S.ON_LOAN),
    ("On holds shelf", S.ON_HOLD_SHELF), ("In transit", S.IN_TRANSIT), ("Lost", S.LOST),
    ("Long Overdue", S.LOST), ("Missing", S.MISSING), ("Damaged", S.DAMAGED),
    ("Discard/Weed", S.WITHDRAWN), ("On order", S.ON_ORDER), ("Reserves", S.NOT_FOR_LOAN),
    ("Bindery", S.UNAVAILABLE), ("Something local", S.UNAVAILABLE),
])
def test_evergreen_852_status_words(word: str, expected: ItemStatus) -> None:
    """Evergreen's stock copy statuses in 852 $n; an unknown word is never available."""
    record = marc("852", {"a": "Current", "b": "EC-RC", "c": "CAR", "g": "32050009446276",
                          "n": word})
    item = normalise(profile("evergreen"), record).items[0]
    assert (item.status, item.barcode, item.location, item.shelving_location,
            item.call_number, item.lms_status) == (
        expected, "32050009446276", "EC-RC", "Current", "CAR", word)


def test_status_map_extends_the_vocabulary() -> None:
    """A library's own status word, and an override of a stock one."""
    evergreen = profile("evergreen", status_map={"Display": "available", "Reserves": "on_loan"})
    record = marc("852", {"g": "1", "n": "display"}, {"g": "2", "n": "RESERVES"})
    assert statuses(normalise(evergreen, record)) == [S.AVAILABLE, S.ON_LOAN]


@pytest.mark.parametrize(("word", "due", "expected", "due_date"), [
    ("In", "", S.AVAILABLE, None), ("Out", "Dec 15 2023 ", S.ON_LOAN, "2023-12-15"),
    ("Held", "", S.ON_HOLD_SHELF, None), ("In-Transit", "", S.IN_TRANSIT, None),
    ("Claim Returned", "", S.LOST, None), ("Non-circulating", "", S.NOT_FOR_LOAN, None),
    ("In-Repair", "", S.DAMAGED, None),
])
def test_polaris_852_r(word: str, due: str, expected: ItemStatus, due_date: str | None) -> None:
    """Polaris: 852 $r status, $u due date ("Dec 15 2023 "), $w material type."""
    fields = {"a": "Main Library", "b": "Adult nonfiction", "h": "394.268 Sa56l",
              "p": "31256016640014", "r": word, "w": "Hardcover"}
    if due:
        fields["u"] = due
    item = normalise(profile("polaris"), marc("852", fields)).items[0]
    assert (item.status, item.due_date, item.item_type, item.shelving_location) == (
        expected, due_date, "Hardcover", "Adult nonfiction")


@pytest.mark.parametrize(("location", "due", "expected", "shelf"), [
    ("STACKS", "", S.AVAILABLE, "STACKS"),
    ("SAL3-H", "", S.AVAILABLE, "SAL3-H"),
    ("STACKS", "2026-12-24", S.ON_LOAN, "STACKS"),
    ("CHECKEDOUT", "2026-12-24", S.ON_LOAN, ""),
    ("MISSING", "", S.MISSING, ""),
    ("DISCARD", "", S.WITHDRAWN, ""),
    ("RESERVES", "", S.NOT_FOR_LOAN, ""),
    ("INTRANSIT", "", S.IN_TRANSIT, ""),
])
def test_symphony_926_b(location: str, due: str, expected: ItemStatus, shelf: str) -> None:
    """Symphony: 926 $b is a shelf (available) or a status location, which is no shelf."""
    fields = {"a": "SAL3", "b": location, "c": "HV6534 .V55 J36 2017", "d": "STKS-MONO",
              "f": "1"}
    if due:
        fields["e"] = due
    item = normalise(profile("symphony"), marc("926", fields)).items[0]
    assert (item.status, item.shelving_location, item.item_type) == (
        expected, shelf, "STKS-MONO")
    assert item.due_date == (due or None if expected is S.ON_LOAN else None)


TLC = {"name": "generic-marc", "holdings_tag": "982",
       "subfields": {"status": "1", "barcode": "i", "location": "b", "shelving_location": "c",
                     "call_number": "m", "item_type": "a", "due_date": "d"},
       "status_map": {"y": "available", "n": "unavailable"}}


def test_generic_marc_tlc_982() -> None:
    """TLC's 982 through generic-marc: $1 y/n with a status map, $d due date."""
    record = marc("982", {"1": "y", "a": "WSTACKBOOK", "b": "Warner Library",
                          "i": "30094000460060", "m": "PQ2683.I32 Z52313 1996"},
                  {"1": "n", "b": "Warner Library", "i": "30094000460078",
                   "d": "2026-12-24"}, {"1": "?", "i": "30094000460086"})
    holdings = normalise(HoldingsProfile.from_mapping(TLC, "p"), record)
    assert statuses(holdings) == [S.AVAILABLE, S.UNAVAILABLE, S.UNAVAILABLE]
    assert holdings.items[0].item_type == "WSTACKBOOK"
    assert holdings.items[0].call_number == "PQ2683.I32 Z52313 1996"


def test_generic_marc_without_status_word() -> None:
    """Only a due date subfield: on loan with it, else the absent status (available)."""
    generic = profile("generic-marc", holdings_tag="949",
                      subfields={"barcode": "g", "due_date": "d", "call_number": "c"})
    record = marc("949", {"g": "1"}, {"g": "2", "d": "12/24/2026"})
    holdings = normalise(generic, record)
    assert statuses(holdings) == [S.AVAILABLE, S.ON_LOAN]
    assert holdings.items[1].due_date == "2026-12-24"
    cautious = profile("generic-marc", holdings_tag="949", absent_status="unavailable",
                       subfields={"barcode": "g", "due_date": "d"})
    assert statuses(normalise(cautious, record)) == [S.UNAVAILABLE, S.ON_LOAN]


# -- OPAC records -------------------------------------------------------------------------------

def test_generic_opac_flags() -> None:
    """availableNow, an availabilityDate (a loan's due date), onHold kept; no circ, no item."""
    holdings = normalise(profile("generic-opac"), opac(
        Holding(local_location="Main", call_number="QA76 .K5",
                circulation=(circ(True, item_id="1", available_thru="BOOK"),
                             circ(False, item_id="2", availability_date="01/25/2023"),
                             circ(False, item_id="3", on_hold=True),
                             circ(True, item_id="4", on_hold=True))),
        Holding(local_location="Branch")))
    assert statuses(holdings) == [S.AVAILABLE, S.ON_LOAN, S.UNAVAILABLE, S.AVAILABLE]
    assert [i.lendable for i in holdings.items] == [True, False, False, False]
    assert holdings.items[1].due_date == "2023-01-25"
    assert holdings.items[0].item_type == "BOOK"
    assert holdings.notes == ("holding #2: no circulation record, no item",)


def test_date_order_reads_day_first_dates() -> None:
    """A European LMS writes 01/12/2026 for the first of December."""
    record = opac(Holding(local_location="Main", circulation=(
        circ(False, item_id="1", availability_date="01/12/2026"),)))
    assert normalise(profile("alma", date_order="dmy"), record).items[0].due_date == \
        "2026-12-01"
    assert normalise(profile("alma"), record).items[0].due_date == "2026-01-12"


@pytest.mark.parametrize(("restrictions", "available", "expected"), [
    (None, True, S.AVAILABLE), ("Checked out", False, S.ON_LOAN),
    ("Awaiting pickup", False, S.ON_HOLD_SHELF), ("Declared lost", False, S.LOST),
    ("Aged to lost", False, S.LOST), ("In transit", False, S.IN_TRANSIT),
    ("Withdrawn", False, S.WITHDRAWN), ("Restricted", False, S.NOT_FOR_LOAN),
    ("Available", False, S.UNAVAILABLE), ("Paged", False, S.UNAVAILABLE),
    ("Local status", False, S.UNAVAILABLE),
])
def test_folio_item_status_names(restrictions: str | None, available: bool,
                                 expected: ItemStatus) -> None:
    """FOLIO's item status name decides; "Available" with availableNow 0 is not available."""
    record = opac(Holding(local_location="Olin Library", circulation=(circ(
        available, item_id="31924127029480", restrictions=restrictions,
        temporary_location="Olin"),)))
    item = normalise(profile("folio"), record).items[0]
    assert item.status is expected
    assert item.temporary_location == "Olin"


@pytest.mark.parametrize(("note", "expected", "due", "on_hold"), [
    ("AVAILABLE", S.AVAILABLE, None, False), ("CHECK SHELVES", S.AVAILABLE, None, False),
    ("DUE 01-11-23", S.ON_LOAN, "2023-01-11", False),
    ("DUE 01-11-23 +1 HOLD", S.ON_LOAN, "2023-01-11", True),
    ("LIB USE ONLY", S.NOT_FOR_LOAN, None, False), ("BILLED", S.LOST, None, False),
    ("ON HOLDSHELF", S.ON_HOLD_SHELF, None, False), ("IN TRANSIT", S.IN_TRANSIT, None, False),
    ("MISSING", S.MISSING, None, False), ("SOMETHING ELSE", S.UNAVAILABLE, None, False),
])
def test_sierra_public_note(note: str, expected: ItemStatus, due: str | None,
                            on_hold: bool) -> None:
    """Sierra states each item's status in the holding's public note, with no CircRecord."""
    record = opac(Holding(local_location="Circulation", call_number="608 A58a 1996",
                          public_note=note))
    item = normalise(profile("sierra"), record).items[0]
    assert (item.status, item.due_date, item.on_hold, item.lms_status) == (
        expected, due, on_hold, note)


def test_profile_and_record_kind_mismatch() -> None:
    """A MARC record to an OPAC profile gives no items and says why; an OPAC record to a
    MARC profile is read through its bibliographic record."""
    record = marc("952", koha_item())
    assert normalise(profile("alma"), record).notes == (
        "profile alma reads OPAC holdings; a MARC record has none",)
    record.force_utf8 = True
    wrapped = OpacRecord(bibliographic=record.as_marc(), holdings=())
    assert statuses(normalise(profile("koha"), wrapped)) == [S.AVAILABLE]
    assert normalise(profile("koha"), opac()).notes == (
        "profile koha reads the MARC record; the OPAC record has no readable one",)


# -- library rules ------------------------------------------------------------------------------

def test_not_for_loan_locations() -> None:
    """Available items in a location that never lends are not for loan (any location field)."""
    rule = profile("generic-opac", not_for_loan_locations=["Olin Reserve", "internet"])
    record = opac(
        Holding(local_location="Olin Library", circulation=(
            circ(True, item_id="1", temporary_location="Olin Reserve"),
            circ(False, item_id="2", availability_date="2026-12-24",
                 temporary_location="Olin Reserve"),
            circ(True, item_id="3"))),
        Holding(local_location="Internet", circulation=(circ(True, item_id="4"),)))
    assert statuses(normalise(rule, record)) == [
        S.NOT_FOR_LOAN, S.ON_LOAN, S.AVAILABLE, S.NOT_FOR_LOAN]


@pytest.mark.parametrize("temporary", [
    {"item_types": ["ill"]}, {"locations": ["ILL shelf"]}, {"collections": ["ILLBOR"]},
    {"barcode_prefixes": ["ILL-"]}, {"statuses": ["staff collection"]},
])
def test_temporary_ill_items_are_never_offered(temporary: dict[str, list[str]]) -> None:
    """Each rule recognises the LMS's temporary ILL item; it is counted, never offered."""
    koha = profile("koha", temporary=temporary)
    borrowed = koha_item(p="ILL-0042", y="ILL", c="ILL shelf", s8="ILLBOR", s7="2")
    own = koha_item()
    holdings = normalise(koha, marc("952", own, borrowed))
    assert [i.barcode for i in holdings.items] == ["39999000001030"]
    assert holdings.temporary == 1
    assert not holdings.temporary_record
    assert is_temporary_item(koha, normalise(profile("koha"),
                                             marc("952", borrowed)).items[0])
    assert not is_temporary_item(koha, holdings.items[0])


def test_a_record_of_temporary_items_only_is_temporary() -> None:
    """A record whose every item is borrowed is the LMS's temporary bib: leave it out."""
    koha = profile("koha", temporary={"item_types": ["ILL"]})
    holdings = normalise(koha, marc("952", koha_item(y="ILL"), koha_item(y="ill", p="2")))
    assert (holdings.items, holdings.temporary, holdings.temporary_record) == ((), 2, True)
    assert not normalise(koha, marc("952")).temporary_record  # no items at all: not temporary


def test_without_a_rule_nothing_is_hidden() -> None:
    """The default rule hides nothing: temporary items are the library's to name."""
    holdings = normalise(profile("koha"), marc("952", koha_item(y="ILL")))
    assert holdings.temporary == 0 and len(holdings.items) == 1


# -- the domain item state ----------------------------------------------------------------------

def test_item_state_carries_the_normalised_item() -> None:
    """What retrieval renders: status, item type as loan policy, due date only on loan."""
    loan = HoldingsItem(status=S.ON_LOAN, barcode="1", location="CPL", shelving_location="GEN",
                        call_number="025.62", copy_number="2", item_type="BK",
                        due_date="2025-07-01")
    state = loan.item_state()
    assert (state.barcode, state.location, state.shelving_location, state.call_number,
            state.copy_number, state.status, state.loan_policy, state.due_date,
            state.on_loan, state.available_now) == (
        "1", "CPL", "GEN", "025.62", "2", "on_loan", "BK", "2025-07-01", True, False)
    lost = HoldingsItem(status=S.LOST, barcode="2", due_date="2025-07-01").item_state()
    assert (lost.due_at, lost.on_loan, lost.status_text) == (None, False, "Lost")
    held = HoldingsItem(status=S.AVAILABLE, barcode="3", on_hold=True).item_state()
    assert (held.available_now, held.on_hold) == (False, True)


@pytest.mark.parametrize("status", list(ItemStatus))
@pytest.mark.parametrize("layout", ["opac", "852", "852-polaris", "852-evergreen", "952", "982"])
def test_only_available_items_render_available(status: ItemStatus, layout: str) -> None:
    """Every status, in OPAC and each holdings layout a broker reads: only an available item
    reads as available (availableNow, $r In, $n Available, $7 0 without $q, $1 y)."""
    state = HoldingsItem(status=status, barcode="1", location="CPL",
                         due_date="2026-12-24").item_state()
    if layout == "opac":
        shown = opac_holding(state, "INTERLEND").circulation[0].available_now
    else:
        values = {sf.code: sf.value for f in holdings_fields(state, layout, "INTERLEND")[:1]
                  for sf in f.subfields}
        shown = {"852": values.get("z") == "AVAILABLE",
                 "852-polaris": values.get("r") == "In",
                 "852-evergreen": values.get("n") == "Available",
                 "952": values.get("7") == "0" and "q" not in values
                 and values.get("0") == values.get("1") == "0",
                 "982": values.get("1") == "y"}[layout]
    assert shown is (status is S.AVAILABLE)


UNLENDABLE_BEYOND_SYMPHONY_WORDS = [S.LOST, S.DAMAGED, S.NOT_FOR_LOAN, S.ON_ORDER,
                                      S.UNAVAILABLE]


@pytest.mark.parametrize("status", UNLENDABLE_BEYOND_SYMPHONY_WORDS)
def test_symphony_layout_shows_extra_statuses_unavailable(status: ItemStatus) -> None:
    """In the 926 layout an unlendable item's $b is one of the current locations a Symphony
    reader (ReShare's rule) takes as unavailable, never a shelf."""
    state = HoldingsItem(status=status, barcode="1", location="SAL3",
                         shelving_location="STACKS").item_state()
    b = holdings_fields(state, "926", "INTERLEND")[0]["b"]
    assert b in {"RESERVES", "CHECKEDOUT", "MISSING", "DISCARD"}


# -- dates --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "order", "expected"), [
    ("2025-07-01", "mdy", "2025-07-01"), ("2025-06-10 09:14:26", "mdy", "2025-06-10"),
    ("20250701", "mdy", "2025-07-01"), ("01/25/2023", "mdy", "2023-01-25"),
    ("25/01/2023", "dmy", "2023-01-25"), ("01-11-23", "mdy", "2023-01-11"),
    ("Dec 15 2023 ", "mdy", "2023-12-15"), ("15 December 2023", "mdy", "2023-12-15"),
    ("25/01/2023", "mdy", None), ("2023-02-30", "mdy", None), ("soon", "mdy", None),
    ("", "mdy", None), (None, "mdy", None),
])
def test_iso_date(text: str | None, order: str, expected: str | None) -> None:
    """The date forms LMSs write in holdings; invalid dates are no dates."""
    assert iso_date(text, order) == expected


# -- real answers of 11 LMS types (ReShare's fixtures, read in place) --------------------------

BROKER_ANSWERS = Path("brokers/mod-rs/z3950-via-sru-opac-holdings")
A, L, T, H = S.AVAILABLE, S.ON_LOAN, S.IN_TRANSIT, S.ON_HOLD_SHELF

REAL_ANSWERS: list[tuple[str, dict[str, Any], list[list[tuple[Any, ...]]]]] = [
    # file, profile, per record: (status, barcode, location, due date) per item
    ("alma-dickinson-multiple.xml", {"name": "alma"}, [
        [(A, "30420200302325", "Waidner-Spahr Library", None)],
        [(A, "30420205501863", "Waidner-Spahr Library", None)],
        [(L, "30420205728698", "Waidner-Spahr Library", "2023-01-25")]]),
    ("alma-pitt-extra-eresource-record.xml", {"name": "alma"}, [
        [(A, "31735056082393", "ULS - Thomas Blvd", None)], []]),
    ("alma-princeton.xml", {"name": "alma"}, [[(A, "32101034358281", "Firestone Library", None)]]),
    ("alma-princeton-notfound.xml", {"name": "alma"}, []),
    ("evergreen-east-central-with-checked-out-item-status.xml", {"name": "evergreen"},
     [[(L, "32050009446276", "EC-RC", None)]]),
    ("evergreen-east-central-with-in-transit-item-status.xml", {"name": "evergreen"},
     [[(T, "32050009446284", "EC-PR", None)]]),
    ("evergreen-lake-agassiz-with-available-item-status.xml", {"name": "evergreen"},
     [[(A, "33500012563250", "HAWLEY", None)]]),
    ("evergreen-north-west-with-available-item-status.xml", {"name": "evergreen"},
     [[(A, "35500003682026", "ROSEAU", None)]]),
    ("evergreen-traverse-de-sioux-with-available-item-status.xml", {"name": "evergreen"},
     [[(A, "30619003213957", "AM", None)]]),
    ("folio-not-requestable.xml",
     {"name": "folio", "not_for_loan_locations": ["Olin Reserve"]},
     [[(S.NOT_FOR_LOAN, "31924128478918", "Olin Library", None),
       (L, "31924127029480", "Olin Library", None)]]),
    ("horizon-hennepin.xml", {"name": "generic-opac"},
     [[(A, "", "Minneapolis Central (1st floor General)", None)]]),
    ("horizon-jhu.xml", {"name": "generic-opac"}, [[(A, "", "Eisenhower", None)]]),
    ("horizon-southeastern.xml", {"name": "generic-opac"},
     [[(A, "", "Dodge Center Public Library", None), (A, "", "Winona Public Library", None),
       (A, "", "Kasson Public Library", None)]]),
    ("koha-chatham.xml", {"name": "koha"}, [[(A, "31437000069572", "CHATHAM", None)]]),
    ("koha-chatham_checked_out.xml", {"name": "koha"},
     [[(L, "31437000069572", "CHATHAM", "2023-03-12")]]),
    ("polaris-with-held-item-status.xml", {"name": "polaris"},
     [[(H, "31256016640014", "Main Library", None)]]),
    ("polaris-with-in-item-status.xml", {"name": "polaris"},
     [[(A, "31256015853493", "Main Library", None)]]),
    ("polaris-with-out-item-status.xml", {"name": "polaris"},
     [[(L, "31256016306970", "Main Library", "2023-12-15")]]),
    ("sierra-laroche.xml", {"name": "sierra"}, [[(A, "", "Circulation", None)]]),
    ("sierra-laroche-unavail.xml", {"name": "sierra"},
     [[(L, "", "Circulation", "2023-01-11")]]),
    ("sierra-widener-check-shelves.xml", {"name": "sierra"}, [[(A, "", "M CIRCULATING", None)]]),
    ("symphony-stanford.xml", {"name": "symphony"}, [[(A, "", "SAL3", None)]]),
    ("tlc-eastern.xml", TLC, [[(A, "30094000460060", "Warner Library", None)]]),
    ("voyager-temp.xml", {"name": "generic-opac"}, [[(A, "11529458", "BASS, Lower Level", None)]]),
    ("voyager-yale.xml", {"name": "generic-opac"},
     [[(A, "211398", "Library Shelving Facility (LSF)", None)]]),
    ("wms-lfmm.xml", {"name": "generic-opac"}, [[(A, "0111504744439", "LFMM", None)]]),
]


def sru_records(path: Path) -> list[pymarc.Record | OpacRecord]:
    """Each record of an SRU searchRetrieveResponse: OPAC records and MARCXML."""
    out: list[pymarc.Record | OpacRecord] = []
    for data in etree.parse(str(path), SAFE_XML).getroot().iter("{*}recordData"):
        element = next(e for e in data if isinstance(e.tag, str))
        if etree.QName(element).localname == "opacRecord":
            out.append(opac_from_xml(element))
        else:
            record = marc_from_xml(element)
            assert record is not None
            out.append(record)
    return out


@pytest.mark.parametrize(("name", "settings", "expected"), REAL_ANSWERS,
                         ids=[answer[0] for answer in REAL_ANSWERS])
def test_real_lms_answers(shared_dir: Path, name: str, settings: dict[str, Any],
                          expected: list[list[tuple[Any, ...]]]) -> None:
    """Availability answers from real Alma, Evergreen, FOLIO, Horizon, Koha, Polaris, Sierra,
    Symphony, TLC, Voyager and WMS catalogues, item by item."""
    path = shared_dir / BROKER_ANSWERS / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    holdings_profile = HoldingsProfile.from_mapping(settings, "backend.catalogue.profile")
    got = [[(i.status, i.barcode, i.location, i.due_date)
            for i in normalise(holdings_profile, record).items]
           for record in sru_records(path)]
    assert got == expected


def test_real_answers_cover_every_file(shared_dir: Path) -> None:
    """No broker fixture is left untested (a new one must be added to REAL_ANSWERS)."""
    folder = shared_dir / BROKER_ANSWERS
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    assert sorted(p.name for p in folder.glob("*.xml")) == sorted(a[0] for a in REAL_ANSWERS)


def test_real_koha_record_keeps_call_number_and_type(shared_dir: Path) -> None:
    """Chatham's Koha 952: the call number, shelf and item type brokers rank lenders by."""
    path = shared_dir / BROKER_ANSWERS / "koha-chatham_checked_out.xml"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    item = normalise(profile("koha"), sru_records(path)[0]).items[0]
    assert (item.call_number, item.shelving_location, item.item_type, item.collection) == (
        "580.1 G733v", "CIRC2", "BOOK", "CIRC")


# -- the Koha-shaped sample catalogue (../shared/lms/koha-zebra) -------------------------------

@pytest.fixture(scope="module")
def koha_sample(tmp_path_factory: pytest.TempPathFactory) -> list[pymarc.Record]:
    """The 30 records koha-zebra's make-sample.py writes (run in place, output in a temp dir)."""
    from tests.conftest import SHARED

    script = SHARED / "lms" / "koha-zebra" / "make-sample.py"
    if not script.is_file():
        pytest.skip(f"{script} not found")
    out = tmp_path_factory.mktemp("koha-sample") / "sample.xml"
    subprocess.run([sys.executable, str(script), str(out)], check=True, capture_output=True,
                   timeout=60)
    return [r for r in pymarc.parse_xml_to_array(str(out)) if r is not None]


def test_koha_sample_matches_koha_own_count(koha_sample: list[pymarc.Record]) -> None:
    """Per record, the items we read as not on loan are exactly Koha's 999$x count (items
    with onloan NULL, computed by Koha's EmbedItemsAvailability filter)."""
    koha = profile("koha")
    for record in koha_sample:
        items = normalise(koha, record).items
        not_on_loan = int(record.get_fields("999")[0].get("x") or 0)
        assert sum(i.status is not S.ON_LOAN for i in items) == not_on_loan, record["001"]


def test_koha_sample_item_by_item(koha_sample: list[pymarc.Record]) -> None:
    """Every 952 becomes one item, in order, with its barcode and (while on loan) its $q."""
    koha = profile("koha")
    for record in koha_sample:
        fields = record.get_fields("952")
        items = normalise(koha, record).items
        assert [i.barcode for i in items] == [f.get("p") for f in fields]
        assert [i.due_date for i in items] == [f.get("q") for f in fields]


def test_koha_sample_statuses(koha_sample: list[pymarc.Record]) -> None:
    """The sample's 53 items (README): 18 on loan, lost, withdrawn, damaged, not for loan
    (1, 2), ordered (-1), in transit; record 2 is on loan / not for loan / lost."""
    koha = profile("koha")
    counts: dict[ItemStatus, int] = {}
    for record in koha_sample:
        for item in normalise(koha, record).items:
            counts[item.status] = counts.get(item.status, 0) + 1
    assert sum(counts.values()) == 53
    assert counts == {S.AVAILABLE: 23, S.ON_LOAN: 18, S.NOT_FOR_LOAN: 5, S.LOST: 2,
                      S.WITHDRAWN: 2, S.DAMAGED: 1, S.ON_ORDER: 1, S.IN_TRANSIT: 1}
    second = next(r for r in koha_sample if r["001"].data == "2")
    assert statuses(normalise(koha, second)) == [S.ON_LOAN, S.NOT_FOR_LOAN, S.LOST]
