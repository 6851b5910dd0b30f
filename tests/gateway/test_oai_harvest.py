# -*- test-case-name: tests.gateway.test_oai_harvest -*-
"""The OAI-PMH provider over the embedded catalogue, harvested by Sickle (PyPI) over HTTP.

The seeded catalogue of ``test_catalogue`` (six lendable records, one temporary) behind a real
listening OaiResource; datestamps of the seed are moved back to 2000 so that changes made by the
test (at the wall clock, as the triggers stamp them) stand apart from them without sleeping.
Every response is checked against what the OAI-PMH 2.0 schema requires
(``tests.protocols.test_oai_writer.check_oai``), and MARCXML against MARC 21 slim's content model.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_twisted
import requests
from lxml import etree
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.web import server
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from gateway.backends.embedded.harvest import EmbeddedHarvest
from gateway.backends.embedded.operations import check_out
from gateway.backends.embedded.records import delete_record, upsert_record
from gateway.domain.harvest import IHarvestable
from gateway.listeners.oai_http import OaiResource
from gateway.oai.provider import OAIProvider, ProviderSettings
from gateway.storage.audit_log import AuditEntry
from gateway.storage.store import Store, open_database
from protocols.oai import TokenCodec
from tests.gateway.test_catalogue import Seeded, make_record, seed
from tests.protocols.test_oai_writer import check_oai

sickle = pytest.importorskip("sickle", reason="Sickle (PyPI, test extras) is the harvester")

MARC = "{http://www.loc.gov/MARC21/slim}"
OAI = "{http://www.openarchives.org/OAI/2.0/}"
PREFIX = "oai:library.example.org:"
OLD = "2000-01-01T00:00:00Z"


@dataclass
class Harness:
    store: Store
    seeded: Seeded
    url: str
    audit: list[AuditEntry]
    port: Any

    def get(self, **params: str) -> bytes:
        """One raw response (blocking: call from a thread)."""
        reply = requests.get(self.url, params=params, timeout=30)
        assert reply.status_code == 200
        return reply.content


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """The seeded catalogue (datestamps in 2000) behind a real OAI listener, page size 2."""
    path = tmp_path / "catalogue.sqlite3"
    conn = open_database(path)
    seeded = seed(conn)
    with conn:
        conn.execute("UPDATE oai_records SET datestamp = ?", (OLD,))
    conn.close()
    store = Store(path, cast(Any, reactor))
    store.start()
    audit: list[AuditEntry] = []
    provider = OAIProvider(EmbeddedHarvest(store), TokenCodec(b"k" * 32), ProviderSettings(
        base_url="http://127.0.0.1/oai", repository_identifier="library.example.org",
        page_size=2))
    site = server.Site(OaiResource(provider, path="/oai", clock=reactor, audit=audit.append))
    port = cast(Any, reactor).listenTCP(0, site, interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/oai"
    yield Harness(store, seeded, url, audit, port)
    pytest_twisted.blockon(port.stopListening())
    pytest_twisted.blockon(store.stop())


def harvest(url: str, verb: str = "ListRecords", **params: str) -> list[Any]:
    """A whole list through Sickle, following every resumption token (blocking)."""
    harvester = sickle.Sickle(url, max_retries=0)
    return list(getattr(harvester, verb)(**params))


def check_marcxml(record: etree._Element) -> None:
    """MARC 21 slim's content model for a record: leader, then control fields, then data
    fields with two one-character indicators and one-character subfield codes."""
    assert record.tag == f"{MARC}record"
    children = list(record)
    assert children[0].tag == f"{MARC}leader" and len(children[0].text or "") == 24
    tags = []
    for child in children[1:]:
        assert child.tag in (f"{MARC}controlfield", f"{MARC}datafield")
        assert re.fullmatch(r"[0-9A-Za-z]{3}", child.get("tag", ""))
        tags.append(child.tag)
        if child.tag == f"{MARC}datafield":
            assert len(child.get("ind1", "")) == 1 and len(child.get("ind2", "")) == 1
            assert len(child) >= 1
            for sub in child:
                assert sub.tag == f"{MARC}subfield"
                assert re.fullmatch(r"[0-9a-z!\"#$%&'()*+,./:;<=>?{}_^`~\[\]\\-]",
                                    sub.get("code", ""))
    assert tags == sorted(tags, key=lambda t: t != f"{MARC}controlfield")


def test_embedded_harvest_provides_the_interface(harness: Harness) -> None:
    """The embedded harvest side provides IHarvestable as declared."""
    verifyObject(IHarvestable, EmbeddedHarvest(harness.store))


@pytest_twisted.ensureDeferred
async def test_full_harvest_with_sickle_follows_tokens_and_leaves_out_temporary(
        harness: Harness) -> None:
    """Sickle follows every token of a full harvest: each lendable record once, never the
    temporary one; tokens carry cursor and completeListSize; MARCXML keeps to MARC 21 slim;
    one audit row per request."""
    records = await deferToThread(harvest, harness.url, metadataPrefix="oai_dc")
    ids = sorted(r.header.identifier for r in records)
    assert ids == [f"{PREFIX}rec000{n}" for n in range(1, 7)]  # not ILL-0001
    assert not any(r.header.deleted for r in records)
    titles = {r.header.identifier: r.metadata["title"][0] for r in records}
    assert titles[f"{PREFIX}rec0006"] == "Emma"
    # page size 2: three pages, with tokens carrying cursor and completeListSize
    first = await deferToThread(harness.get, verb="ListRecords", metadataPrefix="marc21")
    root = check_oai(first)
    token = root.find(f"{OAI}ListRecords/{OAI}resumptionToken")
    assert token is not None and token.get("completeListSize") == "6"
    assert token.get("cursor") == "0"
    for record in root.iterfind(f"{OAI}ListRecords/{OAI}record/{OAI}metadata/{MARC}record"):
        check_marcxml(record)
    assert {e.operation for e in harness.audit} == {"ListRecords"}
    assert all(e.protocol == "oai" and e.outcome == "ok" for e in harness.audit)


@pytest_twisted.ensureDeferred
async def test_incremental_harvest_sees_exactly_an_update_a_checkout_and_a_deletion(
        harness: Harness) -> None:
    """After a record update, a check-out and a deletion, a harvest from before them sees
    exactly those three: the update with its new title, the check-out as a due date in the
    holdings, the deletion as a deleted header (kept: GetRecord and full lists report it)."""
    ids = harness.seeded.ids
    handbook_item = harness.seeded.item_ids["B-HAND-1"]
    now = datetime.now(timezone.utc)

    def change(conn: sqlite3.Connection) -> None:
        upsert_record(conn, make_record("rec0002", "Sense and sensibility (rev. ed.)",
                                        author="Austen, Jane", year=1811))
        check_out(conn, item_id=handbook_item, patron_id=harness.seeded.patron_id,
                  due_at=now + timedelta(days=21), now=now)
        delete_record(conn, ids["cafe"])

    await harness.store.write(change)
    since = "2000-01-02T00:00:00Z"
    changed = await deferToThread(harvest, harness.url, metadataPrefix="marc21_holdings",
                                  **{"from": since})
    seen = {r.header.identifier: r for r in changed}
    assert sorted(seen) == [f"{PREFIX}rec0002", f"{PREFIX}rec0004", f"{PREFIX}rec0005"]
    assert seen[f"{PREFIX}rec0005"].header.deleted
    assert not seen[f"{PREFIX}rec0002"].header.deleted
    assert "rev. ed." in seen[f"{PREFIX}rec0002"].raw
    # the check-out shows in the embedded holdings as a due date
    handbook = etree.fromstring(seen[f"{PREFIX}rec0004"].raw.encode())
    notes = [s.text for s in handbook.iter(f"{MARC}subfield") if s.getparent().get("tag") == "852"
             and s.get("code") == "z"]
    assert any(n and n.startswith("DUE ") for n in notes), notes
    # the full list still reports the deletion (persistent), and GetRecord answers its header
    everything = await deferToThread(harvest, harness.url, verb="ListIdentifiers",
                                     metadataPrefix="oai_dc")
    assert len(everything) == 6 and sum(h.deleted for h in everything) == 1
    gone = await deferToThread(harness.get, verb="GetRecord", metadataPrefix="oai_dc",
                               identifier=f"{PREFIX}rec0005")
    root = check_oai(gone)
    assert root.find(f"{OAI}GetRecord/{OAI}record/{OAI}header").get("status") == "deleted"
    # and nothing before the change window
    old = await deferToThread(harness.get, verb="ListRecords", metadataPrefix="oai_dc",
                              until="2000-01-01T12:00:00Z")
    root = check_oai(old)
    assert [e.get("code") for e in root.iter(f"{OAI}error")] == []
    assert {h.findtext(f"{OAI}identifier") for h in root.iter(f"{OAI}header")} <= {
        f"{PREFIX}rec000{n}" for n in (1, 3, 4, 6)}


@pytest_twisted.ensureDeferred
async def test_error_codes(harness: Harness) -> None:
    """Each standard error code for the request that calls for it, audited as the outcome."""
    cases = [
        ({"verb": "Nonsense"}, "badVerb"),
        ({"verb": "ListRecords"}, "badArgument"),
        ({"verb": "ListRecords", "metadataPrefix": "mods"}, "cannotDisseminateFormat"),
        ({"verb": "GetRecord", "metadataPrefix": "oai_dc", "identifier": f"{PREFIX}nope"},
         "idDoesNotExist"),
        ({"verb": "GetRecord", "metadataPrefix": "oai_dc", "identifier": "oai:other.org:1"},
         "idDoesNotExist"),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2099-01-01"},
         "noRecordsMatch"),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "set": "kind:nothing"},
         "noRecordsMatch"),
        ({"verb": "ListRecords", "resumptionToken": "forged"}, "badResumptionToken"),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2000-01-01",
          "until": "2000-01-01T00:00:00Z"}, "badArgument"),
    ]
    for params, code in cases:
        root = check_oai(await deferToThread(harness.get, **params))
        assert [e.get("code") for e in root.iter(f"{OAI}error")] == [code], params
    outcomes = [e.outcome for e in harness.audit]
    assert outcomes == [code for _, code in cases]


@pytest_twisted.ensureDeferred
async def test_identify_formats_sets_and_post(harness: Harness) -> None:
    """Identify (persistent deletions, second granularity), the three formats, location and
    kind sets, a set-selective list, POST, and 405 for other methods."""
    identify = await deferToThread(harvest_identify, harness.url)
    assert identify.deletedRecord == "persistent"
    assert identify.granularity == "YYYY-MM-DDThh:mm:ssZ"
    assert identify.earliestDatestamp == OLD
    formats = await deferToThread(harvest, harness.url, "ListMetadataFormats")
    assert {f.metadataPrefix for f in formats} == {"oai_dc", "marc21", "marc21_holdings"}
    sets = await deferToThread(harvest, harness.url, "ListSets")
    specs = {s.setSpec for s in sets}
    assert {"location:Main~20Library", "location:Branch", "kind:text"} <= specs
    branch = await deferToThread(harvest, harness.url, "ListIdentifiers",
                                 metadataPrefix="oai_dc", set="location:Branch")
    assert [h.identifier for h in branch] == [f"{PREFIX}rec0001"]
    assert "location:Branch" in branch[0].setSpecs
    reply = await deferToThread(
        requests.post, harness.url, data={"verb": "GetRecord", "metadataPrefix": "marc21",
                                          "identifier": f"{PREFIX}rec0006"}, timeout=30)
    root = check_oai(reply.content)
    marc = root.find(f"{OAI}GetRecord/{OAI}record/{OAI}metadata/{MARC}record")
    assert marc is not None
    check_marcxml(marc)
    wrong = await deferToThread(requests.put, harness.url, timeout=30)
    assert wrong.status_code == 405


def harvest_identify(url: str) -> Any:
    """Identify through Sickle (blocking)."""
    return sickle.Sickle(url, max_retries=0).Identify()


@pytest_twisted.ensureDeferred
async def test_sets_by_kind_and_a_deleted_record_stays_in_its_location_set(
        harness: Harness) -> None:
    """Kind sets select by leader/06 and /07; a deleted record still answers in the location
    set its items were in."""
    text = await deferToThread(harvest, harness.url, "ListIdentifiers", metadataPrefix="oai_dc",
                               set="kind:text")
    assert len(text) == 6 and all("kind:text" in h.setSpecs for h in text)
    serials = await deferToThread(harness.get, verb="ListIdentifiers", metadataPrefix="oai_dc",
                                  set="kind:serial")
    assert [e.get("code") for e in check_oai(serials).iter(f"{OAI}error")] == ["noRecordsMatch"]
    pride = harness.seeded.ids["pride"]
    await harness.store.write(lambda conn: delete_record(conn, pride))
    branch = await deferToThread(harvest, harness.url, "ListIdentifiers",
                                 metadataPrefix="oai_dc", set="location:Branch")
    assert [(h.identifier, h.deleted) for h in branch] == [(f"{PREFIX}rec0001", True)]
    assert "location:Branch" in branch[0].setSpecs


@pytest_twisted.ensureDeferred
async def test_an_empty_catalogue_has_no_set_hierarchy_and_no_records(tmp_path: Path) -> None:
    """An empty catalogue: ListSets is noSetHierarchy, ListRecords noRecordsMatch."""
    path = tmp_path / "empty.sqlite3"
    open_database(path).close()
    store = Store(path, cast(Any, reactor))
    store.start()
    try:
        provider = OAIProvider(EmbeddedHarvest(store), TokenCodec(b"e" * 32), ProviderSettings())
        now = datetime(2026, 12, 6, tzinfo=timezone.utc)
        for query, code in ((b"verb=ListSets", "noSetHierarchy"),
                            (b"verb=ListRecords&metadataPrefix=oai_dc", "noRecordsMatch")):
            root = check_oai(b"".join(await provider.handle(query, now)))
            assert [e.get("code") for e in root.iter(f"{OAI}error")] == [code]
        root = check_oai(b"".join(await provider.handle(b"verb=Identify", now)))
        assert root.findtext(f"{OAI}Identify/{OAI}deletedRecord") == "persistent"
    finally:
        await store.stop()


def test_datestamps_move_on_changes_only(tmp_path: Path) -> None:
    """Triggers: re-importing an unchanged record or re-saving an unchanged item leaves the
    datestamp alone (a monthly re-import does not make every record new to harvesters); a
    changed record and an item status change move it; a temporary record has none."""
    conn = open_database(tmp_path / "stamps.sqlite3")
    seeded = seed(conn)

    def stamps() -> dict[int, str]:
        return dict(conn.execute("SELECT record_id, datestamp FROM oai_records"))

    assert harness_ids(seeded) == set(stamps())
    with conn:
        conn.execute("UPDATE oai_records SET datestamp = ?", (OLD,))
        upsert_record(conn, make_record("rec0006", "Emma", author="Austen, Jane", year=1815,
                                        oclc="12345"))
        conn.execute("UPDATE items SET status = status, location = location")
    assert set(stamps().values()) == {OLD}
    with conn:
        upsert_record(conn, make_record("rec0006", "Emma (new)", author="Austen, Jane"))
        conn.execute("UPDATE items SET status = 'missing' WHERE barcode = 'B-SENSE-1'")
    moved = {rid for rid, stamp in stamps().items() if stamp != OLD}
    assert moved == {seeded.ids["emma"], seeded.ids["sense"]}
    conn.close()


def harness_ids(seeded: Seeded) -> set[int]:
    """The seeded lendable records' ids (the temporary one left out)."""
    return {rid for name, rid in seeded.ids.items() if name != "borrowed"}


def test_listener_refuses_what_is_not_oai_pmh() -> None:
    """Transport answers, with no provider call: 404 off the path, 405 for other methods,
    415 for a POST that is not a form, 429 past the per-host rate (burst 2 at 1/s)."""
    calls: list[bytes] = []

    class Provider:
        def handle(self, query: bytes, now: datetime) -> Any:
            calls.append(query)
            return succeed([b"<OAI-PMH/>"])

    clock = Clock()
    oai = OaiResource(cast(Any, Provider()), path="/oai", clock=clock,
                      max_requests_per_second=1)

    def request(method: bytes, path: bytes, ctype: bytes | None = None) -> Any:
        r: Any = DummyRequest(path.lstrip(b"/").split(b"/"))
        r.method, r.path, r.uri = method, path, path + b"?verb=Identify"
        if ctype is not None:
            r.requestHeaders.setRawHeaders(b"content-type", [ctype])
        r.content = BytesIO(b"verb=Identify")
        return r

    for method, path, ctype, status in [(b"GET", b"/other", None, 404),
                                        (b"DELETE", b"/oai", None, 405),
                                        (b"POST", b"/oai", b"text/xml", 415)]:
        r = request(method, path, ctype)
        oai.render(cast(Any, r))
        assert r.responseCode == status
    assert calls == []
    served = []
    for _ in range(3):
        r = request(b"POST", b"/oai", b"application/x-www-form-urlencoded")
        oai.render(cast(Any, r))
        served.append(r.responseCode or 200)
    assert served == [200, 200, 429] and calls == [b"verb=Identify"] * 2
    clock.advance(2)
    r = request(b"GET", b"/oai")
    oai.render(cast(Any, r))
    assert (r.responseCode or 200) == 200 and calls[-1] == b"verb=Identify"
