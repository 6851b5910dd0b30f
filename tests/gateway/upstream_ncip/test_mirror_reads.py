# -*- test-case-name: tests.gateway.upstream_ncip.test_mirror_reads -*-
"""LookupUser through Interlend to an upstream Interlend: the patron mirror is written when
the LMS says something new and only read when it says what the mirror holds (no writer job,
no commit per lookup); either way the reply carries the LMS's answer."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import workflow_fixtures as wf
from tests.daemon import Daemon
from tests.gateway.upstream_ncip.peers import backend_config, start_gateway

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The library's 'LMS': an Interlend on the seeded workflow database (its own: this
    module renames a patron there)."""
    launch: Callable[..., Daemon]
    for launch in wf.launched_daemons(tmp_path_factory):
        yield launch("upstream-lms-mirror")


def _mirror(database: Path, barcode: str) -> tuple[str, str, str, str]:
    with sqlite3.connect(database) as conn:
        row = conn.execute("SELECT given_name, patron_group, status, updated_at FROM patrons"
                           " WHERE barcode = ?", (barcode,)).fetchone()
    assert row is not None
    return row


def test_the_mirror_is_written_when_the_lms_changes_and_read_otherwise(
        upstream: Daemon, tmp_path: Path) -> None:
    d = start_gateway(tmp_path, backend_config(upstream.base_url + "/ncip", "generic-ncip2",
                                               "01XXX_INST", wf.AGENCY))
    try:
        first = wf.call(d, wf.reshare_lookup_user("P100"))
        assert wf.problem(first) is None and b"Alice" in first
        given, group, status, _ = _mirror(d.database, "P100")
        assert (given, group, status) == ("Alice", "lms", "active")
        marker = "2000-01-01T00:00:00Z"                     # a write would set it to now
        with sqlite3.connect(d.database) as conn:
            conn.execute("UPDATE patrons SET updated_at = ? WHERE barcode = 'P100'", (marker,))

        again = wf.call(d, wf.reshare_lookup_user("P100"))
        assert again == first
        assert _mirror(d.database, "P100")[3] == marker      # nothing new: not written again

        with sqlite3.connect(upstream.database) as conn:    # the LMS renames its patron
            conn.execute("UPDATE patrons SET given_name = 'Alicia' WHERE barcode = 'P100'")
        renamed = wf.call(d, wf.reshare_lookup_user("P100"))
        assert wf.problem(renamed) is None and b"Alicia" in renamed
        given, group, status, _ = _mirror(d.database, "P100")
        assert given == "Alicia"                            # something new: written
    finally:
        d.kill()
