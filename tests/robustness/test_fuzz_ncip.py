"""NCIP mutation fuzzing against a real daemon (bounded; the long run is fuzz/ncip_mutations.py):
the real request corpus with elements dropped, duplicated, reordered and values replaced with
huge, empty, non-UTF-8 or control-character strings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz.ncip_mutations import run
from tests.daemon import Daemon, start_daemon
from tests.gateway.test_ncip_corpus_http import CATCH_ALL, requests_of, sample_identities
from tests.ncip_fixtures import seed_database
from tests.robustness.helpers import tracebacks

pytestmark = pytest.mark.slow

MUTANTS = 1500


@pytest.fixture(scope="module")
def corpus(shared_dir: Path) -> list:
    return requests_of(shared_dir)


@pytest.fixture(scope="module")
def daemon(corpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A catch-all peer owning every agency of the corpus, so the service handlers really run."""
    tmp = tmp_path_factory.mktemp("ncip-fuzz")
    seed_database(tmp / "interlend.sqlite3")
    agencies, systems = sample_identities(corpus)
    d = start_daemon(tmp, CATCH_ALL.format(agencies=agencies, systems=systems))
    yield d
    d.kill()


def test_mutated_corpus_gets_ncip_replies_or_4xx(daemon: Daemon, corpus) -> None:
    """1,500 mutants of the 240 real requests, 8 at a time: every reply is HTTP 200 with a
    well-formed NCIP body (a Problem where the input is bad) or a 4xx (413 for a body over the
    limit); no 5xx, no connection error or hang (20 s client timeout, bounded at 90 s in all),
    no traceback in the daemon's log, and the daemon still answers a sample afterwards."""
    bodies = [s.path.read_bytes() for s in corpus]
    started = time.monotonic()
    outcomes, problems, slowest = run(daemon.ncip_url, bodies, MUTANTS, seed=7, seconds=90)
    took = time.monotonic() - started
    print(f"\n{sum(outcomes.values())} mutants in {took:.1f}s: {dict(outcomes)}, "
          f"slowest reply {slowest * 1000:.0f} ms")
    assert not problems, problems[:10]
    assert sum(outcomes.values()) == MUTANTS
    assert not any(code.startswith("5") for code in outcomes)
    assert not tracebacks(daemon), tracebacks(daemon)[:5]
    assert daemon.process.poll() is None
    status, reply = daemon.post(bodies[0])
    assert status == 200 and b"NCIP" in reply
