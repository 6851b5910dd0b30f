"""A daemon on a backend that is not the embedded one: the fake Catalogue and Circulation of
``gateway.testing`` registered as a third party's package registers a backend, selected by
``[backend] kind = "fake"``, answer a Z39.50 search and an NCIP LookupUser over the wire.

The daemon's database then holds only the gateway's own books (audit, request tracking): the
records and the patron exist only in the fakes' memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import testing
from tests.daemon import Daemon, start_daemon
from tests.ncip_fixtures import (
    RESHARE_SECRET,
    config_text,
    lookup_user_by_id,
    ncip2,
    parse_reply,
    problem_types,
    text_of,
)
from tests.z3950_clients import YAZ_CLIENT, steps, yaz_client

FAKE_PAIR = '''
from zope.interface import implementer

from gateway.backends.registry import IBackend
from gateway.testing import FakeCatalogue, FakeCirculation, demo_circulation_state


@implementer(IBackend)
class FakePair:
    kind = "fake"

    def catalogue(self, context):
        return FakeCatalogue()

    def circulation(self, context):
        return FakeCirculation(demo_circulation_state())


backend = FakePair()
'''


def register_fake_pair(root: Path) -> Path:
    """A package and its ``.dist-info`` registering the fake pair as kind ``fake``."""
    (root / "fake_pair").mkdir(parents=True)
    (root / "fake_pair" / "__init__.py").write_text(FAKE_PAIR)
    info = root / "fake_pair-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-pair\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[interlend.backends]\nfake = fake_pair:backend\n")
    return root


pytestmark = pytest.mark.skipif(
    not hasattr(testing, "FakeCirculation"),
    reason="needs the circulation seam (gateway.testing.FakeCirculation, branch seam-circulation)")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the module, its backend the fake pair."""
    tmp = tmp_path_factory.mktemp("fake-backend")
    site = register_fake_pair(tmp / "site")
    text = config_text() + '\n[backend]\nkind = "fake"\n'
    d = start_daemon(tmp, text, env={"PYTHONPATH": str(site)})
    yield d
    d.stop()


@pytest.mark.skipif(YAZ_CLIENT is None, reason="yaz-client is not installed")
def test_z3950_search_is_answered_from_the_fake_catalogue(daemon: Daemon,
                                                          tmp_path: Path) -> None:
    """A title search finds the fake catalogue's two Austen records (its records only: the
    daemon's database has none) and presents the first."""
    output = yaz_client(tmp_path, daemon.ports["z3950"],
                        ["find @attr 1=1003 austen", "show 1"])
    init, search, present = steps(output)[:3]
    assert search.hits == 2, output
    assert "Pride and prejudice" in present.text or "Emma" in present.text, output
    conn = sqlite3.connect(daemon.database)
    try:
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 0
    finally:
        conn.close()


def test_ncip_lookup_user_is_answered_from_the_fake_circulation(daemon: Daemon) -> None:
    """LookupUser finds the fake circulation's patron P100 (Alice Reader); an identifier the
    fake does not hold is Unknown User."""
    status, body = daemon.post(ncip2("LookupUser", lookup_user_by_id("P100"),
                                     secret=RESHARE_SECRET))
    assert status == 200
    assert not problem_types(body), body
    reply = parse_reply(body)
    assert text_of(reply, "GivenName") == "Alice" and text_of(reply, "Surname") == "Reader"
    status, body = daemon.post(ncip2("LookupUser", lookup_user_by_id("P999"),
                                     secret=RESHARE_SECRET))
    assert problem_types(body) == ["Unknown User"]
