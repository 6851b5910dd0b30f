"""The audit log: how rows are built and kept, and the operator's ``interlend audit`` command.

Unit tests of :class:`gateway.audit.AuditLog` run on a real SQLite database through a
synchronous stand-in for the store's writer and a :class:`twisted.internet.task.Clock`. The
command-line tests prepare a database with rows at known times and read the output as an
operator's script would (JSON, CSV); ``--follow`` runs as a real subprocess. The database is
also read with the stdlib ``sqlite3`` module, the ``sqlite3`` shell when installed and
sqlite-utils, exactly as the README suggests. (Datasette can browse the same file, read-only,
but is not required and not installed: nothing here depends on it.)
"""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlite_utils
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from gateway.audit import AuditEntry, AuditLog, audit_time, insert_entry, load_or_create_key
from gateway.secrets import keyed_hash
from gateway.storage.store import open_database
from protocols.ncip.parser import parse_request
from tests import audit_fixtures as af
from tests.log_observers import log_observer

REPO = Path(__file__).resolve().parents[2]


def _settings(bodies: str = "redacted", store_patron_ids: bool = False) -> Any:
    return SimpleNamespace(bodies=bodies, store_patron_ids=store_patron_ids)


@pytest.fixture
def conn(tmp_path: Path) -> Any:
    connection = open_database(tmp_path / "db.sqlite3")
    yield connection
    connection.close()


def _started(conn: sqlite3.Connection, clock: Any = None, **settings: Any) -> AuditLog:
    audit = AuditLog(af.as_store(af.SyncStore(conn)), _settings(**settings), clock or Clock())
    audit.start()
    return audit


# -- AuditLog -----------------------------------------------------------------------------------


def test_record_stamps_rows_with_the_injected_clock(conn: sqlite3.Connection) -> None:
    """AuditLog.record writes one row whose time is the injected clock's, in UTC with
    microseconds; an entry that already has a time keeps it; ``written`` counts them."""
    clock = Clock()
    moment = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    clock.advance(moment.timestamp())
    audit = _started(conn, clock)
    audit.record(AuditEntry(protocol="ncip", operation="LookupItem", outcome="success",
                            peer="reshare", duration_us=5))
    audit.record(AuditEntry(protocol="z3950", operation="search", outcome="success",
                            time="2031-01-01T00:00:00.000000+00:00"))
    rows = [dict(r) for r in conn.execute("SELECT time, protocol, operation, peer FROM audit")]
    assert rows == [
        {"time": "2031-05-06T07:08:09.123456+00:00", "protocol": "ncip",
         "operation": "LookupItem", "peer": "reshare"},
        {"time": "2031-01-01T00:00:00.000000+00:00", "protocol": "z3950",
         "operation": "search", "peer": None}]
    assert (audit.written, audit.failed) == (2, 0)


def test_record_failure_is_logged_and_counted_not_raised() -> None:
    """A row the store cannot write is logged (protocol, operation, error) and counted in
    ``failed``; the Deferred the exchange waits on still succeeds."""
    class Broken:
        def write(self, work: Any) -> Deferred[Any]:
            return fail(RuntimeError("disk full"))

    audit = AuditLog(Broken(), _settings(), Clock())  # type: ignore[arg-type]
    events: list[dict[str, Any]] = []
    observer = log_observer(events.append)
    globalLogPublisher.addObserver(observer)
    try:
        results: list[Any] = []
        audit.record(AuditEntry(protocol="ncip", operation="CheckInItem",
                                outcome="success")).addBoth(results.append)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert results == [None]
    assert (audit.written, audit.failed) == (0, 1)
    [event] = [e for e in events if "not written" in e.get("log_format", "")]
    assert (event["protocol"], event["operation"], event["error"]) == (
        "ncip", "CheckInItem", "disk full")


def test_patron_reference_is_a_keyed_hash_unless_configured(conn: sqlite3.Connection,
                                                           tmp_path: Path) -> None:
    """Patron ids are stored as an HMAC under the gateway key (created once, mode 0600, in a
    file beside the database, never in it; then reused); ``store_patron_ids`` keeps the id
    itself; nothing is computed before the key is loaded."""
    audit = _started(conn)
    key_file = tmp_path / "db.sqlite3.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text())
    assert not conn.execute("SELECT 1 FROM gateway_meta WHERE key = 'patron_hash_key'").fetchall()
    assert len(key) == 32
    assert audit.patron_ref("PBAR-100") == keyed_hash(key, "PBAR-100")
    assert audit.patron_ref("PBAR-100") != audit.patron_ref("PBAR-101")
    assert audit.patron_ref(None) is None and audit.patron_ref("") is None
    again = _started(conn)
    assert again.patron_ref("PBAR-100") == audit.patron_ref("PBAR-100")
    conn.execute("BEGIN")
    assert load_or_create_key(conn) == key
    conn.execute("COMMIT")
    assert _started(conn, store_patron_ids=True).patron_ref("PBAR-100") == "PBAR-100"
    with pytest.raises(RuntimeError):
        AuditLog(af.as_store(af.SyncStore(conn)), _settings(), Clock()).patron_ref("PBAR-100")


LOOKUP = af.lookup_user(None, barcode_input="PBAR-100", pin="8302-PIN-alpha",
                        password="hunter2-password")
USER_REPLY = (
    b'<?xml version="1.0" encoding="UTF-8"?><ns1:NCIPMessage xmlns:ns1="'
    + af.NS.encode() + b'"><ns1:LookupUserResponse><ns1:UserId><ns1:UserIdentifierValue>'
    b'PBAR-100</ns1:UserIdentifierValue></ns1:UserId><ns1:UserOptionalFields>'
    b'<ns1:NameInformation><ns1:PersonalNameInformation><ns1:StructuredPersonalUserName>'
    b'<ns1:GivenName>Quentina</ns1:GivenName><ns1:Surname>Marchbanks</ns1:Surname>'
    b'</ns1:StructuredPersonalUserName></ns1:PersonalNameInformation></ns1:NameInformation>'
    b'<ns1:UserAddressInformation><ns1:ElectronicAddress><ns1:ElectronicAddressData>'
    b'quentina.marchbanks@example.org</ns1:ElectronicAddressData></ns1:ElectronicAddress>'
    b'</ns1:UserAddressInformation></ns1:UserOptionalFields></ns1:LookupUserResponse>'
    b'</ns1:NCIPMessage>')


def test_bodies_full_keeps_personal_data_but_never_secrets(conn: sqlite3.Connection) -> None:
    """``bodies = "full"``: names, e-mail and ids stay; the PIN, the password and the peer's
    shared secret are replaced."""
    request, response = _started(conn, bodies="full").ncip_bodies(LOOKUP, USER_REPLY)
    assert request is not None and response is not None
    for secret in ("8302-PIN-alpha", "hunter2-password", af.RESHARE_SECRET):
        assert secret not in request
    assert request.count("***") == 4      # barcode, PIN and password inputs, agency secret
    for kept in ("Quentina", "Marchbanks", "quentina.marchbanks@example.org", "PBAR-100"):
        assert kept in response


def test_bodies_redacted_pseudonymizes_ids_and_hides_names(conn: sqlite3.Connection) -> None:
    """``bodies = "redacted"``: secrets gone, names and e-mail replaced, patron ids replaced by
    the same keyed hash the row's patron_hash column uses."""
    audit = _started(conn)
    request, response = audit.ncip_bodies(LOOKUP, USER_REPLY)
    assert request is not None and response is not None
    for gone in ("8302-PIN-alpha", "hunter2-password", af.RESHARE_SECRET, "PBAR-100",
                 "Quentina", "Marchbanks", "quentina.marchbanks@example.org"):
        assert gone not in request and gone not in response
    ref = audit.patron_ref("PBAR-100")
    assert ref is not None and ref in response
    assert "[redacted]" in response


def test_one_exchange_hashes_its_patron_once(conn: sqlite3.Connection,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The request, the reply and the row of one exchange name the same patron: with the
    exchange's ``patron_refs`` it is hashed once, to the same keyed hash as ``patron_ref``;
    another exchange hashes it afresh (the memo never outlives its exchange)."""
    audit = _started(conn)
    expected = audit.patron_ref("PBAR-100")
    calls: list[str | None] = []
    real = audit.patron_ref

    def counted(patron_id: str | None) -> str | None:
        calls.append(patron_id)
        return real(patron_id)
    monkeypatch.setattr(audit, "patron_ref", counted)
    refs = audit.patron_refs()
    request, response = audit.ncip_bodies(LOOKUP, USER_REPLY, refs=refs)
    assert refs("PBAR-100") == expected
    assert calls == ["PBAR-100"]
    assert expected is not None and request is not None and response is not None
    assert expected in response
    audit.ncip_bodies(LOOKUP, USER_REPLY)
    assert calls == ["PBAR-100", "PBAR-100"]


def test_bodies_redacted_hides_patron_ids_repeated_in_problems(conn: sqlite3.Connection) -> None:
    """An Unknown User or User Blocked Problem repeats the patron id as its ProblemValue;
    in ``redacted`` mode that value is pseudonymized like any other patron id, while a
    Problem about an item keeps its (non-personal) value."""
    audit = _started(conn)
    reply = (b'<?xml version="1.0"?><NCIPMessage xmlns="' + af.NS.encode() + b'">'
             b"<LookupUserResponse><Problem><ProblemType>Unknown User</ProblemType>"
             b"<ProblemElement>UserIdentifierValue</ProblemElement>"
             b"<ProblemValue>GHOST-77</ProblemValue></Problem></LookupUserResponse>"
             b"</NCIPMessage>")
    _, response = audit.ncip_bodies(af.lookup_user("GHOST-77"), reply)
    assert response is not None and "GHOST-77" not in response
    ref = audit.patron_ref("GHOST-77")
    assert ref is not None and ref in response
    item_problem = reply.replace(b"UserIdentifierValue", b"ItemIdentifierValue")
    _, response = audit.ncip_bodies(af.check_in("NOPE-1"), item_problem)
    assert response is not None and "GHOST-77" in response


def test_bodies_none_keeps_nothing(conn: sqlite3.Connection) -> None:
    """``bodies = "none"``: neither body is kept."""
    assert _started(conn, bodies="none").ncip_bodies(LOOKUP, USER_REPLY) == (None, None)


@pytest.mark.parametrize("bodies", ["full", "redacted", "none"])
def test_one_body_is_kept_as_with_both(conn: sqlite3.Connection, bodies: str) -> None:
    """``ncip_body`` (a request redacted ahead of its transaction) keeps each body exactly as
    ``ncip_bodies`` does, from the bytes or from a parsed tree handed over."""
    audit = _started(conn, bodies=bodies)
    both = audit.ncip_bodies(LOOKUP, USER_REPLY)
    assert (audit.ncip_body(LOOKUP), audit.ncip_body(USER_REPLY)) == both
    trees = [parse_request(body)[1] for body in (LOOKUP, USER_REPLY)]
    assert (audit.ncip_body(LOOKUP, trees[0]), audit.ncip_body(USER_REPLY, trees[1])) == both
    if bodies != "none":
        assert both[0] is not None and "8302-PIN-alpha" not in both[0]


def test_unparseable_bodies_lose_secrets_by_pattern(conn: sqlite3.Connection) -> None:
    """A body that is not well-formed XML still loses its secrets in ``full`` mode and is
    withheld altogether in ``redacted`` mode."""
    broken = LOOKUP[:-20]
    request, _ = _started(conn, bodies="full").ncip_bodies(broken, b"")
    assert request is not None and "8302-PIN-alpha" not in request
    assert "hunter2-password" not in request and af.RESHARE_SECRET not in request
    assert "<ns1:AuthenticationInputType>PIN</ns1:AuthenticationInputType>" in request
    request, _ = _started(conn).ncip_bodies(broken, b"")
    assert request == "<!-- unparseable body withheld -->"


# -- interlend audit ------------------------------------------------------------------------------

BASE = datetime(2030, 1, 1, 12, tzinfo=timezone.utc)
ROWS = [
    # minutes after BASE, protocol, peer, operation, broker id, our id, item, outcome
    (0, "ncip", "reshare", "AcceptItem", "RS-1", None, "RS-1", "success"),
    (10, "ncip", "reshare", "CheckOutItem", "RS-1", None, "RS-1", "success"),
    (20, "ncip", "tipasa", "RequestItem", "TIP-9", "L-7", "LEND-1", "success"),
    (30, "ncip", "tipasa", "CheckOutItem", None, None, "NOPE", "Unknown Item"),
    (40, "z3950", "reshare", "search", None, None, None, "success"),
    (50, "z3950", None, "init", None, None, None, "bib1:1010"),
]


def _prepare(path: Path) -> Path:
    """A database holding ROWS, and a configuration file; returns the configuration."""
    conn = open_database(path)
    conn.execute("BEGIN IMMEDIATE")
    for minutes, protocol, peer, operation, broker, ours, item, outcome in ROWS:
        insert_entry(conn, AuditEntry(
            protocol=protocol, peer=peer, operation=operation, broker_request_id=broker,
            our_request_id=ours, item_barcode=item, outcome=outcome, duration_us=100 + minutes,
            request_size=10, response_size=20, request_body=f"<q n='{minutes}'/>",
            response_body="<r/>", time=audit_time(BASE + timedelta(minutes=minutes))))
    conn.execute("COMMIT")
    conn.close()
    config = path.parent / "interlend.toml"
    config.write_text(af.config_text())
    return config


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[str, ...]:
    database = tmp_path / "db.sqlite3"
    return ("-c", str(_prepare(database)), "--database", str(database))


def _ops(args: tuple[str, ...], *filters: str) -> list[str]:
    status, out, err = af.cli("audit", *filters, "--format", "json", *args)
    assert status == 0, err
    return [row["operation"] for row in json.loads(out)]


@pytest.mark.parametrize(("filters", "expected"), [
    ((), ["AcceptItem", "CheckOutItem", "RequestItem", "CheckOutItem", "search", "init"]),
    (("--peer", "tipasa"), ["RequestItem", "CheckOutItem"]),
    (("--peer", "TIPASA"), ["RequestItem", "CheckOutItem"]),
    (("--protocol", "z3950"), ["search", "init"]),
    (("--service", "CheckOutItem"), ["CheckOutItem", "CheckOutItem"]),
    (("--request-id", "RS-1"), ["AcceptItem", "CheckOutItem"]),
    (("--request-id", "L-7"), ["RequestItem"]),
    (("--item", "NOPE"), ["CheckOutItem"]),
    (("--outcome", "unknown item"), ["CheckOutItem"]),
    (("--outcome", "success", "--protocol", "ncip", "--peer", "reshare"),
     ["AcceptItem", "CheckOutItem"]),
    (("--since", "2030-01-01T12:20:00"), ["RequestItem", "CheckOutItem", "search", "init"]),
    (("--until", "2030-01-01T12:20:00"), ["AcceptItem", "CheckOutItem"]),
    (("--since", "2030-01-01T12:10:00Z", "--until", "2030-01-01T12:40:00+00:00"),
     ["CheckOutItem", "RequestItem", "CheckOutItem"]),
    (("--since", "2030-01-01T13:30:00+01:00"), ["CheckOutItem", "search", "init"]),
    (("--since", "2030-01-01"), ["AcceptItem", "CheckOutItem", "RequestItem", "CheckOutItem",
                                 "search", "init"]),
    (("--since", "2030-01-02"), []),
    (("--limit", "2"), ["search", "init"]),
])
def test_audit_filters(prepared: tuple[str, ...], filters: tuple[str, ...],
                       expected: list[str]) -> None:
    """Each ``interlend audit`` filter selects exactly the rows it names (peer and outcome
    case-insensitively; request id matches the broker's or ours; ``--since`` inclusive,
    ``--until`` exclusive, a time with an offset converted to UTC); rows are listed oldest
    first; ``--limit`` keeps the newest N."""
    assert _ops(prepared, *filters) == expected


def test_audit_bad_time_is_a_usage_error(prepared: tuple[str, ...]) -> None:
    """A ``--since`` that is not an ISO date or time exits with status 2 and says why."""
    status, out, err = af.cli("audit", "--since", "yesterday", *prepared)
    assert status == 2 and "--since" in err and out == ""


def test_audit_formats_parse(prepared: tuple[str, ...]) -> None:
    """``--format json`` is one JSON array, ``--format csv`` one CSV table with a header and
    the same values, the table has one header line plus one line per row; ``--bodies`` adds
    both bodies; an empty selection is still a valid CSV header / JSON array."""
    status, out, _ = af.cli("audit", "--format", "json", *prepared)
    as_json = json.loads(out)
    status, out, _ = af.cli("audit", "--format", "csv", *prepared)
    as_csv = list(csv.DictReader(io.StringIO(out)))
    assert len(as_json) == len(as_csv) == len(ROWS)
    for j, c in zip(as_json, as_csv):
        assert {k: "" if v is None else str(v) for k, v in j.items()} == c
    assert [r["time"] for r in as_json] == [
        audit_time(BASE + timedelta(minutes=m[0])) for m in ROWS]
    status, out, _ = af.cli("audit", *prepared)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["id", "time", "protocol"] and len(lines) == len(ROWS) + 1
    status, out, _ = af.cli("audit", "--bodies", "--format", "json", "--item", "RS-1",
                            *prepared)
    assert [(r["request_body"], r["response_body"]) for r in json.loads(out)] == [
        ("<q n='0'/>", "<r/>"), ("<q n='10'/>", "<r/>")]
    # (an unknown --peer is a usage error now: an item no row has selects nothing)
    status, out, _ = af.cli("audit", "--format", "csv", "--item", "nothing", *prepared)
    reader = csv.reader(io.StringIO(out))
    assert next(reader)[:3] == ["id", "time", "protocol"] and list(reader) == []
    status, out, _ = af.cli("audit", "--format", "json", "--item", "nothing", *prepared)
    assert json.loads(out) == []


class _Lines:
    """A subprocess's stdout, read line by line on a thread, with deadlines."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.queue.put(line)
            self.queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def take(self, count: int, timeout: float = 10.0) -> list[str]:
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while len(lines) < count:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"only {lines!r} within {timeout}s") from None
            assert line is not None, f"process ended after {lines!r}"
            lines.append(line)
        return lines


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_audit_follow_prints_new_rows(tmp_path: Path) -> None:
    """``interlend audit --follow --format csv --peer reshare`` (a real subprocess) prints the
    existing rows at once (flushed, although stdout is a pipe), then each new matching row as
    it is committed — and only matching ones — continuing the same CSV table (one header in
    all); SIGINT ends it with status 0."""
    database = tmp_path / "db.sqlite3"
    config = _prepare(database)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.daemon.cli", "audit", "--follow", "--format", "csv",
         "--peer", "reshare", "-c", str(config), "--database", str(database)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
        # a suite run in the background (or by a runner that ignores SIGINT) hands the child
        # SIGINT ignored, and Python then never raises KeyboardInterrupt: give it back the
        # default disposition, as a terminal would
        preexec_fn=_default_sigint)
    try:
        lines = _Lines(process)
        first = lines.take(4)          # header + AcceptItem, CheckOutItem, search
        conn = open_database(database)
        conn.execute("BEGIN IMMEDIATE")
        for operation, peer in (("CheckInItem", "reshare"), ("LookupUser", "tipasa"),
                                ("DeleteItem", "reshare")):
            insert_entry(conn, AuditEntry(protocol="ncip", peer=peer, operation=operation,
                                          outcome="success"))
        conn.execute("COMMIT")
        conn.close()
        later = lines.take(2)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        rest = []
        while (line := lines.queue.get(timeout=10)) is not None:
            rest.append(line)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    table = list(csv.DictReader(io.StringIO("".join(first + later + rest))))
    assert [r["operation"] for r in table] == ["AcceptItem", "CheckOutItem", "search",
                                               "CheckInItem", "DeleteItem"]
    assert {r["peer"] for r in table} == {"reshare"}


def test_database_is_readable_by_ordinary_sqlite_tools(prepared: tuple[str, ...],
                                                       tmp_path: Path) -> None:
    """The audit table is an ordinary SQLite table: the stdlib ``sqlite3`` module, the
    README's ``sqlite3`` shell command (when the shell is installed) and its
    ``sqlite-utils rows`` command (and the sqlite-utils library) all read the rows."""
    database = tmp_path / "db.sqlite3"
    plain = sqlite3.connect(database)
    assert [r[0] for r in plain.execute("SELECT operation FROM audit ORDER BY id")] == [
        r[3] for r in ROWS]
    plain.close()
    db = sqlite_utils.Database(sqlite3.connect(database))
    assert db["audit"].count == len(ROWS)
    assert {c.name for c in db["audit"].columns} >= {"time", "peer", "operation", "outcome",
                                                    "request_body", "patron_hash"}
    tool = Path(sys.executable).parent / "sqlite-utils"
    out = subprocess.run([str(tool), "rows", str(database), "audit", "--limit", "20"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    assert [r["operation"] for r in json.loads(out)] == [r[3] for r in ROWS]
    shell = shutil.which("sqlite3")
    if shell:
        out = subprocess.run(
            [shell, str(database), "select time, peer, operation, outcome from audit order by"
             " id desc limit 20"], capture_output=True, text=True, check=True, timeout=30).stdout
        assert out.splitlines()[0].split("|")[2:] == ["init", "bib1:1010"]


def test_key_in_the_database_moves_to_its_file(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """A key an older version kept in ``gateway_meta`` moves to the key file (earlier hashes
    still match) and leaves the database; a key file others could read is made 0600."""
    old = bytes(range(32))
    with conn:
        conn.execute("INSERT INTO gateway_meta (key, value) VALUES ('patron_hash_key', ?)",
                     (old.hex(),))
    audit = _started(conn)
    assert audit.patron_ref("PBAR-100") == keyed_hash(old, "PBAR-100")
    key_file = tmp_path / "db.sqlite3.key"
    assert bytes.fromhex(key_file.read_text()) == old
    assert not conn.execute("SELECT 1 FROM gateway_meta WHERE key = 'patron_hash_key'").fetchall()
    key_file.chmod(0o644)
    assert _started(conn).patron_ref("PBAR-100") == keyed_hash(old, "PBAR-100")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_replies_are_sealed_and_bound_to_their_row(conn: sqlite3.Connection) -> None:
    """An exactly-once reply is kept encrypted: the stored bytes do not contain the reply,
    open only for the same (peer, service, key), and a row that cannot be opened is dropped
    (answered afresh) rather than replayed wrong."""
    audit = _started(conn)
    reply = b"<UserIdentifierValue>PBAR-100</UserIdentifierValue>"
    key = ("reshare", "CheckOutItem", "R-1")
    sealed = audit.seal_reply(key, reply)
    assert b"PBAR-100" not in sealed
    with conn:
        conn.execute("INSERT INTO idempotency (peer, service, key, response, created_at)"
                     " VALUES (?, ?, ?, ?, 'now')", (*key, sealed))
        assert audit.open_reply(conn, key, sealed) == reply
        assert audit.open_reply(conn, ("reshare", "CheckOutItem", "R-2"), sealed) is None
        assert audit.open_reply(conn, key, b"<clear/>") is None
        assert conn.execute("SELECT count(*) FROM idempotency").fetchone()[0] == 0
