# -*- test-case-name: tests.gateway.test_demo -*-
"""Demo data: a deterministic catalogue of valid MARC 21 records, items, patrons, loans and holds.

``interlend demo`` fills an empty database so that the gateway can be tried — and benchmarked —
with nothing else installed. Every run produces the same records (seeded per record number), so
``demo-000042`` is always the same book and word searches keep hitting the same records.

The catalogue: records ``demo-000001`` … with 001/003/005/008, 020 (valid ISBN-13; records from
before 2007 also carry the ISBN-10), 022 (valid ISSN, serials only), 035 ``(OCoLC)``, 040, 082,
100, 245, 264, 300, 336-338, 650 and one 852 per item (1-3 items each) over three branches:
``MAIN`` Main Library, ``EAST`` East Branch, ``WEST`` West Branch. Titles, authors and subjects
come from small word lists, so e.g. a title search for "river" or a subject search for
"Astronomy" finds a useful number of records. About one item in twelve is on loan to a demo
patron (a few overdue), about one in a hundred waits on the hold shelf, and some loaned titles
have a hold queued.

Demo patrons (PINs are for the demo only):

======= ======== ===== ================= ========== ======= ==========
barcode username PIN   name              group      status  expires
======= ======== ===== ================= ========== ======= ==========
P0001   amira    1234  Amira Haddad      staff      active  2031-08-31
P0002   ben      2345  Ben Okafor        undergrad  active  2031-08-31
P0003   chloe    3456  Chloé Martin      undergrad  active  2031-08-31
P0004   dmitri   4567  Dmitri Ivanov     postgrad   active  2031-08-31
P0005   elena    5678  Elena García      postgrad   active  2031-08-31
P0006   femi     6789  Femi Adeyemi      faculty    active  2031-08-31
P0007   grace    7890  Grace Liu         faculty    active  2031-08-31
P0008   hiro     8901  Hiro Tanaka       undergrad  blocked 2031-08-31
P0009   isla     9012  Isla Murray       postgrad   expired 2024-06-30
P0010   jonas    0123  Jonas Berg        staff      active  2031-08-31
======= ======== ===== ================= ========== ======= ==========

Re-running :func:`write_demo` on a database that already holds the demo does not duplicate
anything: records, items and patrons are upserted (by 001, barcode and patron barcode), and
loans and holds are added only where the item has no open loan or the patron no active hold on
that title. It restores the demo state of every item except those on loan.
"""

from __future__ import annotations

import functools
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from pathlib import Path

import pymarc

from gateway.backends.embedded.identifiers import isbn10_check_digit, isbn13_check_digit
from gateway.backends.embedded.importers.holdings import extract_light_items
from gateway.backends.embedded.importers.loader import (
    DEFAULT_BATCH_SIZE,
    AfterStore,
    CatalogueLoader,
    StoredRecord,
)
from gateway.backends.embedded.importers.patrons import store_patrons
from gateway.backends.embedded.records import ItemData, PatronData, extract_light_fields, iso2709

SEED = 20240115
ORGANISATION = "XX-IlDem"  # 003 / 040 / 852$a: a made-up MARC organisation code
BRANCHES: tuple[tuple[str, str], ...] = (
    ("MAIN", "Main Library"), ("EAST", "East Branch"), ("WEST", "West Branch"))
LOCAL_ID_PREFIX = "demo-"


@dataclass(frozen=True)
class DemoPatron:
    """A demo patron as the README and the tests quote it."""

    barcode: str
    username: str
    pin: str
    given_name: str
    family_name: str
    patron_group: str
    status: str = "active"
    expires: str = "2031-08-31"

    @property
    def name(self) -> str:
        """Given and family name."""
        return f"{self.given_name} {self.family_name}"

    @property
    def email(self) -> str:
        """A mailbox that cannot exist (RFC 2606 domain)."""
        return f"{self.username}@example.org"


DEMO_PATRONS: tuple[DemoPatron, ...] = (
    DemoPatron("P0001", "amira", "1234", "Amira", "Haddad", "staff"),
    DemoPatron("P0002", "ben", "2345", "Ben", "Okafor", "undergrad"),
    DemoPatron("P0003", "chloe", "3456", "Chloé", "Martin", "undergrad"),
    DemoPatron("P0004", "dmitri", "4567", "Dmitri", "Ivanov", "postgrad"),
    DemoPatron("P0005", "elena", "5678", "Elena", "García", "postgrad"),
    DemoPatron("P0006", "femi", "6789", "Femi", "Adeyemi", "faculty"),
    DemoPatron("P0007", "grace", "7890", "Grace", "Liu", "faculty"),
    DemoPatron("P0008", "hiro", "8901", "Hiro", "Tanaka", "undergrad", status="blocked"),
    DemoPatron("P0009", "isla", "9012", "Isla", "Murray", "postgrad", status="expired",
               expires="2024-06-30"),
    DemoPatron("P0010", "jonas", "0123", "Jonas", "Berg", "staff"),
)
# Who borrows and who holds: active patrons, plus the blocked one (with overdue loans).
_BORROWERS = ("P0002", "P0003", "P0004", "P0005", "P0006", "P0007")
_OVERDUE_BORROWER = "P0008"

# -- word lists -------------------------------------------------------------------------------

_ADJECTIVES = (
    "silent", "hidden", "golden", "northern", "broken", "quiet", "distant", "lost", "bright",
    "wild", "ancient", "secret", "final", "endless", "little", "great", "dark", "open",
    "forgotten", "winter")
_NOUNS = (
    "river", "garden", "city", "island", "mountain", "harbour", "forest", "library", "machine",
    "kingdom", "archive", "voyage", "lighthouse", "orchard", "bridge", "market", "empire",
    "valley", "station", "letter", "map", "tide", "mirror", "clock", "engine", "sea", "star",
    "road", "house", "stone")
# subject heading -> Dewey class
_SUBJECTS = (
    ("Astronomy", "520"), ("Birds", "598"), ("Botany", "580"), ("Cooking", "641.5"),
    ("Economics", "330"), ("Gardening", "635"), ("Geology", "551"), ("Local history", "942"),
    ("Mathematics", "510"), ("Music", "780"), ("Philosophy", "100"), ("Photography", "770"),
    ("Poetry", "821"), ("Railroads", "385"), ("Sailing", "797.1"), ("Architecture", "720"),
    ("Climatic changes", "551.6"), ("Computer programming", "005.13"), ("Folklore", "398.2"),
    ("Medicine", "610"))
_SUBDIVISIONS = (("x", "History"), ("v", "Juvenile literature"), ("z", "England"),
                 ("z", "Scotland"), ("z", "Canada"), ("x", "Study and teaching"),
                 ("v", "Handbooks, manuals, etc."))
_FORENAMES = (
    "Anna", "Thomas", "Margaret", "José", "Ingrid", "Kwame", "Mei", "Oliver", "Zoë", "Rahul",
    "Sofia", "Henrik", "Aoife", "Tomasz", "Lucía", "Pierre", "Hannah", "Yusuf", "Elif", "Daniel",
    "Niamh", "Kenji", "Agnieszka", "Samuel", "Fatima", "Lars", "Chiara", "Emeka", "Ruth", "Ivan")
_SURNAMES = (
    "Smith", "Müller", "García", "Nakamura", "O'Brien", "Kowalski", "Dvořák", "Okonkwo",
    "Lindqvist", "Rossi", "Novak", "Chen", "Dubois", "Fernández", "Haddad", "Jensen", "Kaur",
    "Larsen", "MacLeod", "Nguyen", "Olsen", "Petrov", "Quinn", "Russo", "Schmidt", "Takahashi",
    "Underwood", "Varga", "Walsh", "Yilmaz", "Zhang", "Abbott", "Bianchi", "Costa", "Eriksen",
    "Fischer", "Gallagher", "Horvat", "Ibrahim", "Jovanović")
_PUBLISHERS = (  # place, 008 country code, publisher
    ("London", "enk", "Harbour Press"), ("New York", "nyu", "Meridian Books"),
    ("Oxford", "enk", "Clarendon Row"), ("Toronto", "onc", "Maple Leaf Publishing"),
    ("Edinburgh", "stk", "Thistle & Quill"), ("Boston", "mau", "Beacon Hill Press"),
    ("Sydney", "at ", "Southern Cross Books"), ("Chicago", "ilu", "Lakeside Publishers"))
_SHELVING = ("STACKS", "STACKS", "STACKS", "STACKS", "NEWBOOKS", "OVERSIZE", "JUVENILE")
_BINDINGS = ("hardcover", "paperback")


def _article_indicator(title: str) -> str:
    """245 second indicator: the number of non-filing characters ("The " = 4)."""
    for article in ("The ", "An ", "A "):
        if title.startswith(article):
            return str(len(article))
    return "0"


def _title(rng: random.Random) -> str:
    adjective, noun, other = rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_NOUNS)
    return rng.choice((
        f"The {adjective} {noun}",
        f"{noun.capitalize()} and {other}",
        f"A history of the {noun}",
        f"{adjective.capitalize()} {noun}s",
        f"Notes from the {adjective} {noun}",
        f"The {noun} of the {other}",
    ))


def _isbn13(number: int, year: int) -> str:
    """A valid, unique ISBN-13 for demo record ``number``; 979-8 for some recent books."""
    scrambled = f"{number * 48271 % 10**8:08d}"  # a bijection below 10**8: unique, varied
    first12 = (f"9798{scrambled}" if year >= 2020 and number % 3 == 0
               else f"978{number % 2}{scrambled}")
    return first12 + isbn13_check_digit(first12)


def _issn(number: int) -> str:
    """A valid ISSN (NNNN-NNNC) derived from ``number``."""
    digits = f"{(number * 7919) % 10**7:07d}"
    total = sum(int(d) * w for d, w in zip(digits, range(8, 1, -1), strict=True))
    check = (11 - total % 11) % 11
    return f"{digits[:4]}-{digits[4:]}{'X' if check == 10 else check}"


def barcode_for(number: int, copy: int) -> str:
    """The barcode of copy ``copy`` (1-3) of demo record ``number``: 10 digits, starting 3."""
    return f"3{number:07d}{copy:02d}"


def local_id_for(number: int) -> str:
    """The 001 of demo record ``number`` (``demo-000001``)."""
    return f"{LOCAL_ID_PREFIX}{number:06d}"


# A demo field before it becomes a pymarc field or ISO 2709 bytes: (tag, data, subfields,
# indicators) with data None for a data field and subfields () for a control field; the first
# three are what the field and item extractors read (embedded.LightField).
_DemoField = tuple[str, "str | None", "tuple[tuple[str, str], ...]", str]


def _control(tag: str, data: str) -> _DemoField:
    return (tag, data, (), "")


def _field(tag: str, ind: str, *pairs: str) -> _DemoField:
    codes_and_values = iter(pairs)
    return (tag, None, tuple(zip(codes_and_values, codes_and_values, strict=True)), ind)


# The fields every book has, the same in every record (tuples: shared, never modified).
_F040 = _field("040", "  ", "a", ORGANISATION, "b", "eng", "e", "rda", "c", ORGANISATION)
_F310 = _field("310", "  ", "a", "Quarterly")
_F33X = (_field("336", "  ", "a", "text", "b", "txt", "2", "rdacontent"),
         _field("337", "  ", "a", "unmediated", "b", "n", "2", "rdamedia"),
         _field("338", "  ", "a", "volume", "b", "nc", "2", "rdacarrier"))


def demo_record(number: int) -> pymarc.Record:
    """Demo record ``number`` (from 1): the same record on every run and every machine."""
    leader, fields = _demo_fields(number)
    record = pymarc.Record(leader=leader)
    record.add_field(*(
        pymarc.Field(tag=tag, data=data) if data is not None else
        pymarc.Field(tag=tag, indicators=pymarc.Indicators(ind[0], ind[1]),
                     subfields=[pymarc.Subfield(code, value) for code, value in pairs])
        for tag, data, pairs, ind in fields))
    return record


@functools.cache
def _entered(day: int) -> tuple[str, str]:
    """The date a record was entered (``day`` of 2024) as YYYYMMDD and YYMMDD."""
    entered = date(2024, 1, 1) + timedelta(days=day)
    return f"{entered:%Y%m%d}", f"{entered:%y%m%d}"


@functools.cache
def _cutter(surname: str) -> str:
    """The author part of the call number: the first three letters of the surname."""
    return "".join(c for c in surname if c.isalpha())[:3].upper()


def _demo_fields(number: int) -> tuple[str, list[_DemoField]]:
    """The leader and fields of demo record ``number``."""
    rng = random.Random(SEED * 1_000_003 + number)
    serial = number % 25 == 0
    year = rng.randint(1955, 2025)
    entered_ymd, entered_yymmdd = _entered(number % 366)
    subjects = rng.sample(_SUBJECTS, rng.choice((1, 1, 2, 2, 3)))
    dewey = subjects[0][1]
    place, country, publisher = rng.choice(_PUBLISHERS)
    forename, surname = rng.choice(_FORENAMES), rng.choice(_SURNAMES)
    cutter = _cutter(surname)

    leader = "00000na" + ("s" if serial else "m") + " a2200000 i 4500"
    fields: list[_DemoField] = []
    # 008/18-34, the part that depends on the type of material
    if serial:  # quarterly, regular, periodical, ..., not a conference, Latin script, successive
        fixed = "qr p" + " " * 7 + "0" + " " * 3 + "a0"
        dates = f"c{year}9999"
    else:  # no illustrations, audience, ..., not a conference/festschrift, index?, fiction?
        fixed = " " * 4 + rng.choice(" ej") + " " * 6 + "00" + rng.choice("01") + " " \
            + rng.choice("01") + " "
        dates = f"s{year}    "
    fields += (
        _control("001", local_id_for(number)),
        _control("003", ORGANISATION),
        _control("005", f"{entered_ymd}{number % 24:02d}0000.0"),
        _control("008", f"{entered_yymmdd}{dates}{country}{fixed}eng d"),
    )
    if serial:
        fields.append(_field("022", "0 ", "a", _issn(number)))
    else:
        isbn13 = _isbn13(number, year)
        binding = rng.choice(_BINDINGS)
        if year < 2007:
            isbn10 = isbn13[3:12] + isbn10_check_digit(isbn13[3:12])
            fields.append(_field("020", "  ", "a", isbn10, "q", binding))
        fields.append(_field("020", "  ", "a", isbn13, "q", binding))
    fields += (
        _field("035", "  ", "a", f"(OCoLC){10_000_000 + number * 7}"),
        _F040,
        _field("082", "04", "a", dewey, "2", "23"),
    )
    if serial:
        title = f"{rng.choice(_ADJECTIVES).capitalize()} {rng.choice(_NOUNS)} quarterly"
        fields.append(_field("245", "00", "a", title + "."))
    else:
        author: tuple[str, ...] = ("a", f"{surname}, {forename},")
        if rng.random() < 0.3:
            author += ("d", f"{rng.randint(1900, 1990)}-")
        fields.append(_field("100", "1 ", *author, "e", "author."))
        title = _title(rng)
        responsibility = f"{forename} {surname}."
        if rng.random() < 0.5:
            subtitle = rng.choice(("essays on", "a study of", "an introduction to",
                                   "reflections on")) + f" {subjects[0][0].lower()}"
            title_field = _field("245", "1" + _article_indicator(title), "a", f"{title} :",
                                 "b", f"{subtitle} /", "c", responsibility)
        else:
            title_field = _field("245", "1" + _article_indicator(title), "a", f"{title} /",
                                 "c", responsibility)
        fields.append(title_field)
    published = f"{year}-" if serial else f"{year}."
    fields += (
        _field("264", " 1", "a", f"{place} :", "b", f"{publisher},", "c", published),
        _field("300", "  ", "a", "volumes ;" if serial else f"{rng.randint(48, 640)} pages ;",
               "c", "24 cm"),
    )
    if serial:
        fields.append(_F310)
    fields += _F33X
    for heading, _dewey in subjects:
        pairs = ["a", heading]
        if rng.random() < 0.4:
            pairs += list(rng.choice(_SUBDIVISIONS))
        pairs[-1] += "."
        fields.append(_field("650", " 0", *pairs))
    home = rng.choice((0, 0, 0, 1, 2))
    for copy in range(1, rng.choice((1, 1, 2, 2, 3)) + 1):
        branch = BRANCHES[(home + copy - 1) % len(BRANCHES)][0]
        fields.append(_field(
            "852", "1 ", "a", ORGANISATION, "b", branch, "c", rng.choice(_SHELVING),
            "h", dewey, "i", cutter, "t", str(copy), "p", barcode_for(number, copy)))
    return leader, fields


def demo_records(count: int, *, start: int = 1) -> Iterator[pymarc.Record]:
    """Demo records ``start`` … ``start + count - 1``."""
    for number in range(start, start + count):
        yield demo_record(number)


def write_demo_marc(path: Path, records: int = 2000) -> int:
    """Write the first ``records`` demo records to ``path`` as ISO 2709 (UTF-8); return the count.

    Byte-identical on every run: for tests and benchmarks of the MARC importer.
    """
    with Path(path).open("wb") as handle:
        for number in range(1, records + 1):
            handle.write(iso2709(*_demo_fields(number)))
    return records


# -- the database -----------------------------------------------------------------------------

@dataclass
class DemoSummary:
    """What :func:`write_demo` wrote."""

    records: int = 0
    items: int = 0
    patrons: int = 0
    loans: int = 0
    holds: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        return (f"demo: {self.records:,} records, {self.items:,} items, {self.patrons} patrons,"
                f" {self.loans:,} loans added, {self.holds:,} holds added;"
                f" {self.seconds:.1f} s ({rate:,.0f} records/s)")


def _at(day: date, hour: int = 12) -> str:
    """A timestamp as the database stores them (UTC, ISO 8601, seconds)."""
    return datetime.combine(day, dtime(hour), tzinfo=timezone.utc).isoformat(timespec="seconds")


def _due(day: date) -> str:
    return datetime.combine(day, dtime(23, 59, 59), tzinfo=timezone.utc).isoformat(
        timespec="seconds")


@dataclass(frozen=True)
class _Circulation:
    """The demo circulation state of one item."""

    status: str  # available | on_loan | on_hold_shelf
    patron: str | None = None
    days_out: int = 0  # loan: checked out this many days ago
    loan_days: int = 28
    queued_hold: str | None = None  # loan: another patron waits for the title


def _circulation(barcode: str, rng: random.Random | None = None) -> _Circulation:
    """Deterministic per item: ~1 in 12 on loan (some overdue), ~1 in 100 on the hold shelf.

    ``rng`` is reseeded (cheaper than a new generator; the same sequence).
    """
    rng = rng or random.Random()
    rng.seed(f"{SEED}:{barcode}")
    draw = rng.random()
    if draw < 1 / 12:
        if rng.random() < 0.1:
            return _Circulation("on_loan", _OVERDUE_BORROWER, days_out=rng.randint(35, 90))
        borrower = rng.choice(_BORROWERS)
        waiting = rng.choice([p for p in _BORROWERS if p != borrower]) if draw < 1 / 60 else None
        return _Circulation("on_loan", borrower, days_out=rng.randint(0, 40),
                            queued_hold=waiting)
    if draw > 0.99:
        return _Circulation("on_hold_shelf", rng.choice(_BORROWERS))
    return _Circulation("available")


def _write_patrons(conn: sqlite3.Connection) -> dict[str, int]:
    store_patrons(conn, [PatronData(
        barcode=patron.barcode, username=patron.username, pin=patron.pin,
        given_name=patron.given_name, family_name=patron.family_name, email=patron.email,
        status=patron.status, patron_group=patron.patron_group, expires=patron.expires)
        for patron in DEMO_PATRONS])
    barcodes = [patron.barcode for patron in DEMO_PATRONS]
    rows = conn.execute(
        f"SELECT barcode, id FROM patrons WHERE barcode IN ({','.join('?' * len(barcodes))})",
        barcodes).fetchall()
    return {barcode: patron_id for barcode, patron_id in rows}


def _add_loan(conn: sqlite3.Connection, item_id: int, patron_id: int, state: _Circulation,
              today: date) -> bool:
    out = today - timedelta(days=state.days_out)
    cursor = conn.execute(
        "INSERT INTO loans (item_id, patron_id, checked_out_at, due_at)"
        " SELECT ?, ?, ?, ? WHERE NOT EXISTS"
        " (SELECT 1 FROM loans WHERE item_id = ? AND returned_at IS NULL)",
        (item_id, patron_id, _at(out), _due(out + timedelta(days=state.loan_days)), item_id))
    return cursor.rowcount > 0


def _add_hold(conn: sqlite3.Connection, patron_id: int, record_id: int, item_id: int | None,
              pickup: str, today: date) -> bool:
    pickup_expires = _due(today + timedelta(days=7)) if item_id is not None else None
    cursor = conn.execute(
        "INSERT INTO holds (patron_id, record_id, item_id, pickup_location, placed_at,"
        " pickup_expires, updated_at) SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS"
        " (SELECT 1 FROM holds WHERE patron_id = ? AND record_id = ? AND status = 'active')",
        (patron_id, record_id, item_id, pickup, _at(today - timedelta(days=3)), pickup_expires,
         _at(today), patron_id, record_id))
    return cursor.rowcount > 0


def holds_records(conn: sqlite3.Connection) -> bool:
    """Whether the catalogue holds any record yet (``interlend demo --if-absent``)."""
    return conn.execute("SELECT 1 FROM records LIMIT 1").fetchone() is not None


def write_demo(conn: sqlite3.Connection, *, records: int = 2000,
               progress: Callable[[int], None] | None = None,
               today: date | None = None,
               batch_size: int = DEFAULT_BATCH_SIZE) -> DemoSummary:
    """Load the demo patrons and the first ``records`` demo records with items, loans and holds.

    Safe to re-run (see the module docstring). Loan and hold dates are relative to ``today``
    (default: the current UTC date) so that the demo always has current and overdue loans.
    ``progress`` receives the running record count every thousand records and at the end.
    """
    started = time.perf_counter()
    today = today or datetime.now(timezone.utc).date()
    summary = DemoSummary()
    patron_ids = _write_patrons(conn)
    summary.patrons = len(patron_ids)

    def circulate(states: list[tuple[ItemData, _Circulation]]) -> AfterStore:
        def write(conn: sqlite3.Connection, record_id: int, item_ids: tuple[int, ...]) -> None:
            for (item, state), item_id in zip(states, item_ids, strict=True):
                if state.patron is None:
                    continue
                patron_id = patron_ids[state.patron]
                if state.status == "on_loan":
                    summary.loans += _add_loan(conn, item_id, patron_id, state, today)
                    if state.queued_hold:
                        summary.holds += _add_hold(conn, patron_ids[state.queued_hold],
                                                   record_id, None, item.location, today)
                else:
                    summary.holds += _add_hold(conn, patron_id, record_id, item_id,
                                               item.location, today)
        return write

    def count(stored: StoredRecord | None, error: Exception | None) -> None:
        if error is not None:
            raise error
        assert stored is not None
        summary.records += 1
        summary.items += len(stored.item_ids)

    # The records go straight from the generator's fields to ISO 2709 bytes, search fields and
    # items, without pymarc objects (demo_record builds the same record as a pymarc.Record).
    rng = random.Random()
    with CatalogueLoader(conn, batch_size=batch_size) as loader:
        for number in range(1, records + 1):
            leader, fields = _demo_fields(number)
            states = []
            for item in extract_light_items(fields).items:
                state = _circulation(item.barcode, rng)
                # what dataclasses.replace(item, status=state.status) makes, for a fifth of it
                states.append((ItemData(
                    barcode=item.barcode, location=item.location,
                    shelving_location=item.shelving_location, call_number=item.call_number,
                    copy_number=item.copy_number, status=state.status,
                    temporary=item.temporary, owning_peer=item.owning_peer,
                    loan_policy=item.loan_policy), state))
            circulating = any(state.patron is not None for _item, state in states)
            loader.add(None, [item for item, _state in states],
                       then=circulate(states) if circulating else None,
                       done=count, fields=extract_light_fields(fields),
                       marc=iso2709(leader, fields), skippable=())
            if progress is not None and number % 1000 == 0:
                loader.defer(functools.partial(progress, number))
    if progress is not None:
        progress(records)
    summary.seconds = time.perf_counter() - started
    return summary
