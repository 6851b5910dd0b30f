"""Replay every NCIP request sample under ../shared/ncip/samples to a running daemon over HTTP.

Two daemons: one with the ordinary test peers (most samples name agencies nobody configured, so
they get Unknown Agency), and one with a catch-all peer that owns every FromAgencyId and
FromSystemId found in the samples, so that the service handlers really run on them. Every reply
must be HTTP 200 with an NCIP body (schema-valid for its dialect), never a 5xx or a hang; the
three broken files get Invalid Message Syntax Error; the catch-all run must not crash a handler.
Requests are sent concurrently to keep the module fast. Files are read in place, never copied.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from protocols.ncip import Dialect, NCIPProblem, PrefixStyle, parse_message
from tests.conftest import SHARED
from tests.daemon import Daemon, start_daemon
from tests.ncip_fixtures import config_text, local, parse_reply, problem_types, seed_database
from tests.protocols.test_ncip_corpus import BROKEN, Sample, load_samples
from tests.protocols.test_ncip_writer import Schemas, load_schemas

XML = "application/xml; charset=utf-8"


@dataclass(frozen=True)
class Exchange:
    """One replayed sample and what came back."""

    sample: Sample
    status: int
    content_type: str | None
    reply: bytes


def requests_of(shared: Path) -> list[Sample]:
    """The request samples (same classification as tests/protocols/test_ncip_corpus.py)."""
    return [s for s in load_samples(shared) if not s.is_response]


def post(daemon: Daemon, body: bytes) -> tuple[int, str | None, bytes]:
    request = urllib.request.Request(daemon.ncip_url, data=body, method="POST",
                                     headers={"Content-Type": "text/xml"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers.get("content-type"), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type"), e.read()


def replay(daemon: Daemon, samples: list[Sample]) -> list[Exchange]:
    """Send every sample (8 at a time); a hang fails through the client timeout."""
    def one(sample: Sample) -> Exchange:
        started = time.monotonic()
        try:
            status, ctype, reply = post(daemon, sample.path.read_bytes())
        except OSError as e:  # refused, reset or timed out: reported per sample below
            message = f"{type(e).__name__}: {e} after {time.monotonic() - started:.1f}s"
            return Exchange(sample, -1, None, message.encode())
        return Exchange(sample, status, ctype, reply)
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, samples))


def sample_identities(samples: list[Sample]) -> tuple[list[str], list[str]]:
    """Every distinct FromAgencyId and FromSystemId value in the parseable request samples."""
    agencies: dict[str, str] = {}
    systems: dict[str, str] = {}
    for sample in samples:
        try:
            header = parse_message(sample.path.read_bytes()).message.header
        except NCIPProblem:
            continue
        if header is None:
            continue
        for found, target in ((header.from_agency, agencies), (header.from_system, systems)):
            value = (getattr(found, "value", None) or "").strip()
            if value:
                target.setdefault(value.casefold(), value)
    return sorted(agencies.values()), sorted(systems.values())


CATCH_ALL = """
[gateway]
agency_id = "TESTLIB"
timezone = "Europe/London"

[ncip]
path = "/ncip"
max_connection_rate_per_peer = 0       # the whole corpus comes from loopback within a second
max_requests_per_second_per_peer = 0

[[peers]]
name = "catch-all"
auth = {{ kind = "none" }}
ncip_agency_ids = {agencies}
from_system_ids = {systems}
allow_from = ["127.0.0.0/8", "::1/128"]
namespace_style = "ns1"
default_pickup_location = "MAIN"
"""


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    if not SHARED.is_dir():
        pytest.skip(f"reference material not found at {SHARED} (set INTERLEND_SHARED)")
    return requests_of(SHARED)


@pytest.fixture(scope="module")
def schemas(samples: list[Sample]) -> Schemas:
    return load_schemas(SHARED)


@pytest.fixture(scope="module")
def ordinary(samples: list[Sample],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, list[Exchange]]]:
    """The test peers only: the corpus replayed once, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("corpus-ordinary")
    seed_database(tmp / "interlend.sqlite3")
    daemon = start_daemon(tmp, config_text(rate_limits=False))
    try:
        yield daemon, replay(daemon, samples)
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def catch_all(samples: list[Sample],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, list[Exchange]]]:
    """A catch-all peer owning every agency and system id of the samples (and, for samples
    with no header, the loopback source address): the service handlers run."""
    agencies, systems = sample_identities(samples)
    tmp = tmp_path_factory.mktemp("corpus-catch-all")
    seed_database(tmp / "interlend.sqlite3")
    daemon = start_daemon(tmp, CATCH_ALL.format(agencies=json.dumps(agencies),
                                                systems=json.dumps(systems)))
    try:
        yield daemon, replay(daemon, samples)
    finally:
        daemon.stop()


def check_reply(exchange: Exchange, schemas: Schemas) -> str | None:
    """Why a reply breaks the contract (None when it is fine)."""
    name = exchange.sample.name
    if exchange.status != 200:
        return f"{name}: HTTP {exchange.status} {exchange.reply[:200]!r}"
    if exchange.content_type != XML:
        return f"{name}: content type {exchange.content_type}"
    try:
        root = parse_reply(exchange.reply)
    except etree.XMLSyntaxError as e:
        return f"{name}: reply not well-formed: {e}"
    if name in BROKEN:
        return None
    if root.tag == "NCIPVersionMessage":
        dialect, style = Dialect.VERSION, PrefixStyle.NS1
    elif "}" in root.tag:
        dialect, style = Dialect.NCIP2, PrefixStyle.NS1
    elif exchange.sample.expected_dialect is Dialect.NCIP1:
        dialect, style = Dialect.NCIP1, PrefixStyle.NS1
    else:
        dialect, style = Dialect.NCIP2, PrefixStyle.NONE
    # LookupVersion has no place in the NCIP 2 schema: an NCIPVersionMessage answers it in any
    # dialect (docs/ncip.md §2); and an NCIPVersionMessage cannot carry a Problem, so a refused
    # one is answered with an NCIP 2 message-level Problem.
    version_ok = exchange.sample.message == "LookupVersion" and (
        dialect is Dialect.VERSION or (dialect is Dialect.NCIP2 and local(root[0]) == "Problem"))
    if dialect is not exchange.sample.expected_dialect and not version_ok:
        return f"{name}: answered in {dialect.name}, asked in {exchange.sample.expected_dialect}"
    try:
        schemas.check(exchange.reply, dialect, style)
    except AssertionError as e:
        return f"{name}: {str(e)[:300]}"
    return None


def types_of(exchange: Exchange) -> list[str]:
    """The Problem types of a reply (a transport failure shows as ``HTTP <status>``)."""
    if exchange.status != 200:
        return [f"HTTP {exchange.status}"]
    return problem_types(exchange.reply)


def test_ordinary_peers_every_reply_is_ncip(ordinary: tuple[Daemon, list[Exchange]],
                                            schemas: Schemas) -> None:
    """With only the test peers configured, every request sample gets HTTP 200, application/xml;
    charset=utf-8 and a schema-valid NCIP reply in its own dialect (mostly Unknown Agency)."""
    daemon, exchanges = ordinary
    assert len(exchanges) == 240
    failures = [r for r in (check_reply(e, schemas) for e in exchanges) if r]
    assert not failures, "\n".join(failures)
    outcomes = Counter(tuple(types_of(e)) for e in exchanges)
    assert outcomes[("Unknown Agency",)] > 150, outcomes


def test_broken_samples_get_invalid_message_syntax_error(
        ordinary: tuple[Daemon, list[Exchange]],
        catch_all: tuple[Daemon, list[Exchange]]) -> None:
    """The three not-well-formed files get exactly one Invalid Message Syntax Error Problem from
    both daemons; everything else parses."""
    for _, exchanges in (ordinary, catch_all):
        for exchange in exchanges:
            types = types_of(exchange)
            if exchange.sample.name in BROKEN:
                assert types == ["Invalid Message Syntax Error"], exchange.sample.name
            else:
                assert "Invalid Message Syntax Error" not in types, exchange.sample.name


def test_catch_all_peer_every_reply_is_ncip(catch_all: tuple[Daemon, list[Exchange]],
                                            schemas: Schemas) -> None:
    """With a peer owning every sample's agency and system id, the samples reach the service
    handlers; every reply is still HTTP 200 and schema-valid in its dialect."""
    daemon, exchanges = catch_all
    failures = [r for r in (check_reply(e, schemas) for e in exchanges) if r]
    assert not failures, "\n".join(failures)


def test_catch_all_peer_exercises_handlers_without_crashing(
        catch_all: tuple[Daemon, list[Exchange]]) -> None:
    """Most samples are attributed (not Unknown Agency) and none is answered Temporary
    Processing Failure; the daemon logged no traceback and still serves."""
    daemon, exchanges = catch_all
    unknown = [e.sample.name for e in exchanges if "Unknown Agency" in types_of(e)]
    assert len(unknown) < 15, unknown
    crashed = [e.sample.name for e in exchanges
               if "Temporary Processing Failure" in types_of(e)]
    assert not crashed, crashed
    answered = Counter(local(parse_reply(e.reply)[0]) for e in exchanges if e.status == 200)
    assert sum(n for k, n in answered.items() if k.endswith("Response")) > 150, answered
    assert not any("Traceback" in line for line in daemon.lines), "\n".join(
        line for line in daemon.lines if "Trace" in line or "Error" in line)
    assert daemon.process.poll() is None and daemon.health()["status"] == "ok"


def test_ordinary_daemon_logged_no_traceback(ordinary: tuple[Daemon, list[Exchange]]) -> None:
    """The ordinary run did not crash anything either, and the daemon still serves."""
    daemon, _ = ordinary
    assert not any("Traceback" in line for line in daemon.lines)
    assert daemon.process.poll() is None and daemon.health()["status"] == "ok"
