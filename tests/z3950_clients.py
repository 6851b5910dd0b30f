"""Helpers for driving the Debian YAZ programs (yaz-client, zoomsh, yaz-marcdump) in tests.

Shared by the real-client tests (``tests/gateway/test_z3950_interop.py``,
``tests/gateway/test_z3950_clients.py``, ``tests/gateway/test_broker_flows.py``). Everything
here runs one short-lived client process and parses what it printed; nothing sleeps.
"""

from __future__ import annotations

import itertools
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pymarc
import pytest

from gateway.backends.embedded import operations
from gateway.backends.embedded.records import (
    ItemData,
    PatronData,
    upsert_item,
    upsert_patron,
    upsert_record,
)
from gateway.storage.store import open_database
from protocols.z3950 import codec
from protocols.z3950.ber import BERFramer
from tests.daemon import Daemon, start_daemon

YAZ_CLIENT = shutil.which("yaz-client")
YAZ_ZTEST = shutil.which("yaz-ztest")
ZOOMSH = shutil.which("zoomsh")
YAZ_MARCDUMP = shutil.which("yaz-marcdump")

_scripts = itertools.count(1)


def need(*programs: tuple[str, str | None]) -> None:
    """Skip the test unless every (name, path) program is installed."""
    for name, path in programs:
        if path is None:
            pytest.skip(f"{name} not installed (Debian package yaz)")


def wait_for_port(port: int, process: subprocess.Popen[Any], deadline: float = 10.0) -> None:
    """Return once something accepts on the port (connection attempts, no sleeping)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError("server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            continue
    raise AssertionError(f"nothing listening on {port}")


# -- yaz-client ---------------------------------------------------------------------------------


def yaz_client(tmp_path: Path, port: int, commands: list[str], *,
               auth: str | None = None, database: str = "Default",
               args: list[str] | None = None, before_open: list[str] | None = None) -> str:
    """Run ``yaz-client -f script`` (open, commands, quit); return what it printed."""
    assert YAZ_CLIENT is not None
    lines = ([f"auth {auth}"] if auth else []) + list(before_open or []) + [
        f"open tcp:127.0.0.1:{port}/{database}", *commands, "quit"]
    script = tmp_path / f"yaz-client-{port}-{next(_scripts)}.txt"
    script.write_text("\n".join(lines) + "\n")
    done = subprocess.run([YAZ_CLIENT, *(args or []), "-f", str(script)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=60)
    return done.stdout


@dataclass
class Step:
    """What yaz-client printed for one request."""

    request: str
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def find(self, pattern: str) -> str | None:
        for line in self.lines:
            match = re.search(pattern, line)
            if match:
                return match.group(1)
        return None

    def find_all(self, pattern: str) -> list[str]:
        return [m.group(1) for line in self.lines for m in [re.search(pattern, line)] if m]

    @property
    def hits(self) -> int | None:
        found = self.find(r"Number of hits: (\d+)")
        return int(found) if found is not None else None

    @property
    def diagnostics(self) -> list[tuple[int, str]]:
        """(code, addinfo) of each diagnostic printed (search, present, scan, sort, init)."""
        found: list[tuple[int, str]] = []
        for line in self.lines:
            m = re.search(r"^\s*\[(\d+)\] .*? -- v[23] addinfo '(.*)'", line)
            if m:
                found.append((int(m.group(1)), m.group(2)))
        return found

    def summary(self, *, hits: bool = True) -> dict[str, Any]:
        """The facts two servers should agree on."""
        out: dict[str, Any] = {
            "request": self.request,
            "search": self.find(r"Search was a (success|bloomin' failure)"),
            "records": self.find(r"^Records: (\d+)"),
            "diagnostics": self.diagnostics,
            "delete": self.find(r"deleteResultSetResponse status=(\d+)"),
            "close": self.find(r"^(Reason: .*)"),
            "options": self.find(r"^Options: (.*)"),
            "accepted": self.find(r"Connection (accepted|rejected)"),
        }
        if hits:
            out["hits"] = self.find(r"Number of hits: (\d+)")
        if out["records"] is not None:
            out["next"] = self.find(r"nextResultSetPosition = (\d+)")
        return out


_STARTS = (("Sent ", "Sent "), ("query: ", "scan "), ("Received SortResponse", "sort "))
"""yaz-client prints "Sent …" for most requests, "query: …" for a Scan and nothing before a
Sort: a step begins at any of these lines."""


def steps(output: str) -> list[Step]:
    """Split yaz-client output into one :class:`Step` per request (the first is the Init)."""
    found: list[Step] = []
    for line in output.splitlines():
        start = next((label for prefix, label in _STARTS if line.startswith(prefix)), None)
        if start == "Sent ":
            found.append(Step(line[5:].strip()))
        elif start is not None:
            found.append(Step(start + line.split(":", 1)[-1].strip(), [line]))
        elif found:
            found[-1].lines.append(line)
    return found


# -- a raw client with our codec (for what no YAZ client can send) -----------------------------


class Raw:
    """A blocking client over a socket with our codec."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.framer = BERFramer()
        self.pending: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> codec.PDU | None:
        """The next PDU, or None at end of stream."""
        while not self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.pending.extend(self.framer.feed(chunk))
        return codec.decode_pdu(self.pending.pop(0))

    def next_pdu(self) -> codec.PDU:
        """The next PDU, which must come: end of stream fails the test."""
        pdu = self.receive()
        assert pdu is not None, "end of stream where a PDU was due"
        return pdu

    def ask(self, pdu: codec.PDU | bytes) -> codec.PDU | None:
        self.send(pdu if isinstance(pdu, bytes) else codec.encode_pdu(pdu))
        return self.receive()

    def close(self) -> None:
        self.sock.close()


# -- zoomsh ---------------------------------------------------------------------------------------


def zoomsh(*commands: str) -> str:
    """Run zoomsh with the commands as arguments (``quit`` appended); stdout + stderr."""
    assert ZOOMSH is not None
    done = subprocess.run([ZOOMSH, *commands, "quit"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, errors="replace", timeout=60)
    return done.stdout + done.stderr


# -- yaz-marcdump --------------------------------------------------------------------------------


def marcdump(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``yaz-marcdump [args] FILE``: its exit status and output."""
    assert YAZ_MARCDUMP is not None
    return subprocess.run([YAZ_MARCDUMP, *args, str(path)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, errors="replace", timeout=60)


def iso2709_records(data: bytes) -> list[bytes]:
    """Split concatenated ISO 2709 records by their own length fields (strictly)."""
    out = []
    while data:
        length = int(data[:5])
        assert data[length - 1:length] == b"\x1d", "record does not end with 0x1D"
        out.append(data[:length])
        data = data[length:]
    return out


# -- a small catalogue for client tests -----------------------------------------------------------


@dataclass(frozen=True)
class Bib:
    """One seeded bibliographic record (fields as the MARC record carries them)."""

    local_id: str
    title: str
    author: str
    year: str | None = None
    subjects: tuple[str, ...] = ()
    isbn: str | None = None            # 020 $a as written (hyphens kept)
    issn: str | None = None            # 022 $a
    oclc: str | None = None            # 035 $a "(OCoLC)..."
    note: str | None = None            # 500 $a (words of the "any" index)
    items: tuple[str, ...] = ()        # barcodes (location MAIN, shelving STACKS)
    temporary: bool = False


def bib_marc(bib: Bib) -> pymarc.Record:
    """The pymarc record for a :class:`Bib` (001, 020, 022, 035, 100, 245, 264, 500, 650)."""
    record = pymarc.Record(force_utf8=True)
    record.leader = pymarc.Leader("00000nam a2200000 i 4500")
    record.add_field(pymarc.Field(tag="001", data=bib.local_id))
    record.add_field(pymarc.Field(tag="008", data="260101s" + (bib.year or "    ")
                                  + "    xxu           000 0 eng d"))

    def add(tag: str, ind: str, *pairs: tuple[str, str]) -> None:
        record.add_field(pymarc.Field(tag=tag, indicators=pymarc.Indicators(ind[0], ind[1]),
                                      subfields=[pymarc.Subfield(c, v) for c, v in pairs]))

    if bib.isbn:
        add("020", "  ", ("a", bib.isbn))
    if bib.issn:
        add("022", "  ", ("a", bib.issn))
    if bib.oclc:
        add("035", "  ", ("a", bib.oclc))
    add("100", "1 ", ("a", bib.author))
    add("245", "10", ("a", bib.title))
    if bib.year:
        add("264", " 1", ("a", "London"), ("b", "Test Press"), ("c", bib.year))
    if bib.note:
        add("500", "  ", ("a", bib.note))
    for subject in bib.subjects:
        heading, *rest = subject.split(" -- ")
        add("650", " 0", ("a", heading), *(("x", r) for r in rest))
    return record


def seed_catalogue(path: Path, bibs: tuple[Bib, ...],
                   loans: dict[str, str] | None = None) -> dict[str, int]:
    """Create the database at ``path`` with ``bibs`` and their items (embedded backend upserts);
    ``loans`` maps barcodes to a due date (YYYY-MM-DD), checked out to patron ``CL-P1`` with
    ``operations.check_out``. Returns local id → record id."""
    conn = open_database(path)
    ids: dict[str, int] = {}
    try:
        conn.execute("BEGIN IMMEDIATE")
        patron_id, _ = upsert_patron(conn, PatronData(barcode="CL-P1", given_name="Cli",
                                                      family_name="Ent"))
        items: dict[str, int] = {}
        for bib in bibs:
            record_id, _ = upsert_record(conn, bib_marc(bib), temporary=bib.temporary)
            ids[bib.local_id] = record_id
            for n, barcode in enumerate(bib.items, 1):
                items[barcode], _ = upsert_item(conn, record_id, ItemData(
                    barcode=barcode, location="MAIN", shelving_location="STACKS",
                    call_number=f"QA {bib.local_id}", copy_number=str(n),
                    temporary=bib.temporary, owning_peer="reshare" if bib.temporary else None))
        now = datetime.now(timezone.utc)
        for barcode, due in (loans or {}).items():
            operations.check_out(conn, item_id=items[barcode], patron_id=patron_id, now=now,
                                 due_at=datetime.fromisoformat(due + "T12:00:00+00:00"))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return ids



def catalogue_daemon(tmp_path_factory: pytest.TempPathFactory, name: str,
                     seed: Callable[[Path], object]) -> Iterator[Daemon]:
    """Body of a module-scoped daemon fixture (``yield from`` it): ``seed`` writes the
    database, then a daemon with the default configuration serves it until module end.
    Skipped without yaz-client."""
    need(("yaz-client", YAZ_CLIENT))
    tmp = tmp_path_factory.mktemp(name)
    seed(tmp / "interlend.sqlite3")
    running = start_daemon(tmp)
    try:
        yield running
    finally:
        running.kill()

def opac_circulation(step: Step) -> dict[str, dict[str, str]]:
    """itemId → the CircRecord fields yaz-client printed for OPAC records (``availableNow``,
    ``availablityDate`` — yaz-client writes "availabiltyDate" —, ``onHold`` …)."""
    items: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in step.lines:
        if re.match(r"^(circulation \d+|Data holdings \d+|Record type: )", line):
            current = {}
            continue
        m = re.match(r"^ (\w+): (.*)$", line)
        if m:
            name = "availablityDate" if re.fullmatch(r"availab\w*Date", m.group(1)) \
                else m.group(1)
            current[name] = m.group(2)
            if name == "itemId":
                items[m.group(2)] = current
    return items
