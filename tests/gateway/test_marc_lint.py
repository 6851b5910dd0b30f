"""Served MARC is valid MARC 21 (issue 14, point 11): MARC::Lint over the demo catalogue.

The whole demo catalogue (``interlend demo``'s 2,000 records, with loans and holds) is served by
a real ``interlend serve``; yaz-client fetches every record as USMARC (F) and dumps them as
received (``set_marcdump``); Debian's MARC::Lint (``libmarc-lint-perl``) checks each one. The
default holdings layout (852 + 876) must give no warning at all. Skipped without yaz-client or
MARC::Lint.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.backends.embedded.demo import write_demo
from gateway.storage.store import open_database
from tests.daemon import start_daemon
from tests.z3950_clients import YAZ_CLIENT, iso2709_records, need, steps, yaz_client

pytestmark = pytest.mark.slow

DEMO_RECORDS = 2000

LINT = r"""
use strict;
use MARC::Batch;
use MARC::Lint;
my $batch = MARC::Batch->new('USMARC', $ARGV[0]);
$batch->strict_off();
my $lint = MARC::Lint->new;
my $n = 0;
while (my $record = $batch->next) {
    $n++;
    $lint->check_record($record);
    my $id = $record->field('001') ? $record->field('001')->data : "#$n";
    print "$id: $_\n" for $lint->warnings;
}
print "checked $n\n";
"""


def marc_lint_available() -> bool:
    perl = shutil.which("perl")
    return perl is not None and subprocess.run(
        [perl, "-MMARC::Lint", "-MMARC::Batch", "-e", "1"], capture_output=True,
        check=False).returncode == 0


def lint(path: Path) -> list[str]:
    """MARC::Lint's warnings for every record in the file, then ``checked N``."""
    done = subprocess.run(["perl", "-e", LINT, str(path)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_every_served_demo_record_passes_marc_lint(tmp_path: Path) -> None:
    """2,000 demo records fetched by yaz-client as USMARC: MARC::Lint reports nothing."""
    need(("yaz-client", YAZ_CLIENT))
    if not marc_lint_available():
        pytest.skip("MARC::Lint not installed (Debian package libmarc-lint-perl)")
    database = tmp_path / "interlend.sqlite3"
    conn = open_database(database)
    try:
        write_demo(conn, records=DEMO_RECORDS)
    finally:
        conn.close()
    daemon = start_daemon(tmp_path, database=database)
    dump = tmp_path / "served.mrc"
    try:
        shows = [f"show {start}+100" for start in range(1, DEMO_RECORDS + 1, 100)]
        out = steps(yaz_client(tmp_path, daemon.ports["z3950"], [
            f"set_marcdump {dump}", "format usmarc", "elements F",
            "find @attr 1=12 @attr 5=1 demo", *shows]))
    finally:
        daemon.kill()
    assert out[1].hits == DEMO_RECORDS
    records = iso2709_records(dump.read_bytes())
    assert len(records) == DEMO_RECORDS
    directories = [r[24:int(r[12:17]) - 1] for r in records]
    tags = [{d[i:i + 3] for i in range(0, len(d), 12)} for d in directories]
    assert all({b"852", b"876"} <= t for t in tags)  # every demo record has items
    report = lint(dump)
    assert report == [f"checked {DEMO_RECORDS}"], "\n".join(report[:40])


def test_record_with_1200_items_says_its_holdings_are_cut(tmp_path: Path) -> None:
    """A title with 1,200 copies would pass ISO 2709's 99,999 bytes as USMARC: yaz-client gets a
    valid record (MARC::Lint clean) with the items that fit and a 500 note saying how many of the
    1,200 are shown; OPAC lists all 1,200."""
    need(("yaz-client", YAZ_CLIENT))
    from tests.z3950_clients import Bib, seed_catalogue

    barcodes = tuple(f"BIG-{n:05d}" for n in range(1, 1201))
    seed_catalogue(tmp_path / "interlend.sqlite3",
                   (Bib("big-001", "Popular title.", "Writer, Wendy", "2020", items=barcodes),))
    daemon = start_daemon(tmp_path)
    dump = tmp_path / "big.mrc"
    try:
        search, marc, opac = steps(yaz_client(tmp_path, daemon.ports["z3950"], [
            "find @attr 1=12 big-001", f"set_marcdump {dump}", "format usmarc", "show 1",
            f"set_marcdump {tmp_path / 'unused.mrc'}", "format opac", "show 1"]))[1:]
    finally:
        daemon.kill()
    assert search.hits == 1
    [record] = iso2709_records(dump.read_bytes())
    assert len(record) <= 99999
    shown = marc.text.count("\n852 ") + marc.text.startswith("852 ")
    note = marc.find(r"^500 .*\$a (Holdings: \d+ of 1200 items shown)")
    assert note == f"Holdings: {shown} of 1200 items shown" and 100 < shown < 1200
    assert len(opac.find_all(r"^ itemId: (BIG-\d+)")) == 1200
    if marc_lint_available():
        assert lint(dump) == ["checked 1"]
