"""The Z39.50 upstream when the target misbehaves, against real targets: YAZ's test target
(``yaz-ztest``: its ``search-delay`` database option makes it slow, an unknown database makes it
answer diagnostic 109) and Koha's Zebra as a tarball install sets it up (refusing an Init
without Koha's credentials). Whatever the target does, the catalogue answers a domain error
(Bib-1 109 to the broker) within the request time, and recovers when the target is back.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from gateway.backends.upstream.z3950.backend import open_association
from gateway.backends.upstream.z3950.catalogue import UpstreamZ3950Catalogue
from gateway.backends.upstream.z3950.pool import AssociationPool
from gateway.backends.upstream.z3950.settings import read_settings
from gateway.domain.catalogue import CatalogueUnavailable
from gateway.domain.query import WordTerm
from tests.conftest import SHARED

reactor: Any = _reactor
clock: IReactorTime = _reactor
YAZ_ZTEST = shutil.which("yaz-ztest")
KOHA_ZEBRA = SHARED / "lms" / "koha-zebra"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ZTest:
    """yaz-ztest on a loopback port, in its own process group (stopped as a whole)."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        if YAZ_ZTEST is None:
            pytest.skip("yaz-ztest not installed (Debian package yaz)")
        self.port = port or free_port()
        self.log = tmp / f"ztest-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ZTest:
        assert YAZ_ZTEST is not None
        self.log.write_text("")
        self.process = subprocess.Popen(
            [YAZ_ZTEST, "-v", "all", "-l", str(self.log), f"tcp:127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                continue
        raise AssertionError("yaz-ztest did not listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None


@pytest.fixture
def ztest(tmp_path: Path) -> Iterator[ZTest]:
    target = ZTest(tmp_path).start()
    try:
        yield target
    finally:
        target.stop()


def catalogue(port: int, database: str = "Default", **more: Any) -> UpstreamZ3950Catalogue:
    settings = read_settings({"host": "127.0.0.1", "port": port, "database": database,
                              "request_timeout": 1.0, "connect_timeout": 1.0,
                              "backoff_initial": 0.2, "backoff_max": 0.4, **more})
    pool = AssociationPool(clock, lambda: open_association(reactor, settings), settings.limits)
    return UpstreamZ3950Catalogue(settings, pool, clock)


async def unavailable(found: Any) -> CatalogueUnavailable:
    """The CatalogueUnavailable the Deferred fails with."""
    with pytest.raises(CatalogueUnavailable) as caught:
        await found
    return caught.value


@pytest_twisted.ensureDeferred
async def test_ztest_searched_and_presented(ztest: ZTest) -> None:
    """YAZ's test target (its hit count is a numeric term's value): count and USMARC records,
    the association reused for the second search."""
    upstream = catalogue(ztest.port)
    try:
        found = await upstream.search(WordTerm("title", "27"))
        assert found.count == 27
        records = await upstream.fetch(found, 1, 3)
        assert len(records) == 3 and all(r is not None and r.marc[5:6] for r in records)
        again = await upstream.search(WordTerm("title", "5"))
        assert again.count == 5
        for _ in range(20):   # more than the 16 result sets kept on an association
            await upstream.search(WordTerm("title", "2"))
        assert len(upstream.pool.idle[0].result_sets) == 16
        assert len(await upstream.fetch(found, 1, 27)) == 27   # searched again
        assert upstream.pool.opened == 1
    finally:
        upstream.pool.close()


@pytest_twisted.ensureDeferred
async def test_slow_upstream_answers_within_the_request_time(ztest: ZTest) -> None:
    """A search the target takes 4 s over fails after the 1 s request time, not later."""
    upstream = catalogue(ztest.port, "Default?search-delay=4")
    try:
        started = time.monotonic()
        error = await unavailable(upstream.search(WordTerm("title", "3")))
        assert "did not answer within 1 s" in str(error)
        assert time.monotonic() - started < 3.5
    finally:
        upstream.pool.close()


@pytest_twisted.ensureDeferred
async def test_upstream_diagnostic_is_a_domain_error(ztest: ZTest) -> None:
    """The target's own diagnostic (109 for a database it does not have) becomes
    CatalogueUnavailable with the upstream's code in its detail."""
    upstream = catalogue(ztest.port, "nosuchdatabase")
    try:
        error = await unavailable(upstream.search(WordTerm("title", "3")))
        assert "upstream diagnostic 109" in str(error)
    finally:
        upstream.pool.close()


@pytest_twisted.ensureDeferred
async def test_upstream_stopped_mid_search(ztest: ZTest) -> None:
    """The target is killed while it works on our search: the search fails at once."""
    upstream = catalogue(ztest.port, "Default?search-delay=5", request_timeout=30.0)
    try:
        searching = upstream.search(WordTerm("title", "3"))
        while "parsed search request" not in ztest.log.read_text(errors="replace"):
            await deferLater(reactor, 0.02, lambda: None)
        started = time.monotonic()
        ztest.stop()
        error = await unavailable(searching)
        assert "lost" in str(error) or "closed" in str(error)
        assert time.monotonic() - started < 5
    finally:
        upstream.pool.close()


@pytest_twisted.ensureDeferred
async def test_closed_associations_are_replaced(tmp_path: Path) -> None:
    """The target goes away between searches (its associations closed) and comes back: the
    next search runs on a new association; a result set of the old one is searched again."""
    target = ZTest(tmp_path).start()
    upstream = catalogue(target.port)
    try:
        found = await upstream.search(WordTerm("title", "7"))
        target.stop()
        target.start()
        again = await upstream.search(WordTerm("title", "4"))
        assert again.count == 4
        records = await upstream.fetch(found, 1, 7)   # the first set, from the new association
        assert len(records) == 7
        assert upstream.pool.opened == 2
    finally:
        upstream.pool.close()
        target.stop()


@pytest_twisted.ensureDeferred
async def test_down_upstream_backs_off_then_recovers(tmp_path: Path) -> None:
    """Nothing listens: an immediate failure, then failures without connecting during the
    back-off, and searches again once the target is up and the back-off has passed."""
    target = ZTest(tmp_path)
    upstream = catalogue(target.port)
    try:
        error = await unavailable(upstream.search(WordTerm("title", "3")))
        assert "refused" in str(error).lower() or "cannot reach" in str(error)
        state = upstream.pool.state()
        assert state["up"] is False and state["retry_in"] > 0
        error = await unavailable(upstream.search(WordTerm("title", "3")))
        assert "retrying in" in str(error)
        target.start()
        await deferLater(reactor, 0.3, lambda: None)
        found = await upstream.search(WordTerm("title", "3"))
        assert found.count == 3 and upstream.pool.state()["up"] is True
    finally:
        upstream.pool.close()
        target.stop()


@pytest.fixture(scope="module")
def tarball_zebra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Koha's Zebra as Koha's own installer sets it up: Init needs kohauser/zebrastripes."""
    script = KOHA_ZEBRA / "setup-and-run.sh"
    if not script.is_file():
        pytest.skip(f"{script} not found")
    for tool in ("bash", "zebrasrv", "zebraidx", "yaz-marcdump", "yaz-client"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian packages idzebra-2.0, yaz)")
    work, port = tmp_path_factory.mktemp("tarball-zebra") / "zebra", free_port()
    started = subprocess.run(["bash", str(script), str(work), str(port)], capture_output=True,
                             text=True, timeout=180, env={**os.environ, "KOHA_FLAVOUR": "tarball"})
    if started.returncode != 0:
        pytest.fail(f"koha-zebra did not start: {started.stderr[-2000:]}")
    try:
        yield port
    finally:
        subprocess.run(["bash", str(KOHA_ZEBRA / "stop.sh"), str(work)], capture_output=True,
                       timeout=60)


@pytest_twisted.ensureDeferred
async def test_refused_init_then_credentials(tarball_zebra: int) -> None:
    """Without credentials Zebra refuses the Init: unavailable, with Zebra's reason; with
    Koha's credentials the same search finds Koha's records."""
    anonymous = catalogue(tarball_zebra, "biblios")
    try:
        error = await unavailable(anonymous.search(WordTerm("title", "gardens")))
        assert "refused Init" in str(error)
    finally:
        anonymous.pool.close()
    koha = catalogue(tarball_zebra, "biblios", user="kohauser", password="zebrastripes")
    try:
        found = await koha.search(WordTerm("title", "gardens"))
        assert found.count == 1
    finally:
        koha.pool.close()


@pytest_twisted.ensureDeferred
async def test_ztest_opac_holdings_as_yaz_client_reads_them(ztest: ZTest, tmp_path: Path
                                                            ) -> None:
    """OPAC records from YAZ's test target (``record_syntax = "opac"``, the generic OPAC
    profile): each record's items are the circulation records yaz-client shows for the same
    positions, available exactly where ``availableNow`` is 1."""
    from tests.z3950_clients import YAZ_CLIENT, need, opac_circulation, steps, yaz_client

    need(("yaz-client", YAZ_CLIENT))
    upstream = catalogue(ztest.port, record_syntax="opac", profile="generic-opac")
    try:
        found = await upstream.search(WordTerm("title", "3"))
        records = await upstream.fetch(found, 1, 3)
    finally:
        upstream.pool.close()
    out = yaz_client(tmp_path, ztest.port, ["format opac", "find @attr 1=4 3", "show 1+3"])
    shown = [s for s in steps(out) if s.request.startswith("presentRequest")]
    expected = opac_circulation(shown[0])
    assert expected and all(r is not None for r in records)
    ours = {item.barcode: item.available_now for r in records if r for item in r.items}
    assert ours == {item: fields.get("availableNow") == "1"
                    for item, fields in expected.items()}
