# -*- test-case-name: tests.gateway.test_audit -*-
"""The audit log: one row per exchange, with bodies kept as configured and secrets never.

Rows for lookups and Z39.50 operations go through the store's writer, which batches them with
whatever else is waiting (group commit); :meth:`AuditLog.record` never blocks the reactor and a
failure to write is logged, never raised into the exchange. State-changing requests insert their
row with :func:`insert_entry` inside their own transaction, so the change and its record commit
together.

Patron identifiers are stored as a keyed hash (the key is generated once and kept in the
database) unless ``store_patron_ids`` is set. Bodies are ``full`` (secrets removed),
``redacted`` (secrets removed, personal data replaced) or ``none``.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gateway.secrets import keyed_hash
from gateway.store import Store
from protocols.ncip.dialect import local_name
from protocols.ncip.problems import NCIPSyntaxError
from protocols.ncip.redact import PERSONAL_PLACEHOLDER, redact
from protocols.ncip.safexml import parse_xml

log = Logger()

_KEY_NAME = "patron_hash_key"


@dataclass(frozen=True)
class AuditEntry:
    """One exchange, as it is stored."""

    protocol: str
    operation: str
    outcome: str
    peer: str | None = None
    remote: str | None = None
    dialect: str | None = None
    broker_request_id: str | None = None
    our_request_id: str | None = None
    item_barcode: str | None = None
    patron_hash: str | None = None
    duration_us: int | None = None
    request_size: int | None = None
    response_size: int | None = None
    request_body: str | None = None
    response_body: str | None = None
    time: str = ""


def load_or_create_key(conn: sqlite3.Connection) -> bytes:
    """The database's patron-hash key, created on first use (inside the caller's transaction)."""
    row = conn.execute("SELECT value FROM gateway_meta WHERE key = ?", (_KEY_NAME,)).fetchone()
    if row is not None:
        return bytes.fromhex(row[0])
    key = os.urandom(32)
    conn.execute("INSERT INTO gateway_meta (key, value) VALUES (?, ?)", (_KEY_NAME, key.hex()))
    return key


def audit_time(moment: datetime) -> str:
    """An audit row's time: UTC, ISO 8601 with microseconds (sorts as text)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def insert_entry(conn: sqlite3.Connection, entry: AuditEntry) -> int:
    """Insert one audit row in the caller's transaction; return its id."""
    values = asdict(entry)
    if not values["time"]:
        values["time"] = audit_time(datetime.now(timezone.utc))
    columns = ", ".join(values)
    marks = ", ".join("?" * len(values))
    cursor = conn.execute(f"INSERT INTO audit ({columns}) VALUES ({marks})",
                          tuple(values.values()))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


# A Problem names the element at fault and repeats its value: for these the value is a patron's
# identifier (Unknown User, User Blocked), personal data like the UserIdentifierValue itself.
_PATRON_PROBLEM_ELEMENTS = frozenset({"UserIdentifierValue", "UserId", "VisibleUserIdentifier",
                                      "AuthenticationInputData", "AuthenticationInput"})


def _problem_values_hidden(body: bytes, pseudonymize: Any) -> bytes | etree._Element:
    """``body`` parsed, with ProblemValues that repeat a patron identifier pseudonymized."""
    try:
        root = parse_xml(body).root
    except NCIPSyntaxError:
        return body  # redact() withholds an unparseable body altogether in personal mode
    for problem in root.iter():
        if not isinstance(problem.tag, str) or local_name(problem) != "Problem":
            continue
        children = {local_name(child): child for child in problem if isinstance(child.tag, str)}
        element, value = children.get("ProblemElement"), children.get("ProblemValue")
        if element is not None and value is not None and (
                (element.text or "").strip() in _PATRON_PROBLEM_ELEMENTS):
            text = (value.text or "").strip()
            value.text = pseudonymize(text) if pseudonymize and text else PERSONAL_PLACEHOLDER
    return root


class AuditLog:
    """Builds and writes audit rows according to the ``[audit]`` settings."""

    def __init__(self, store: Store, settings: Any, clock: Any) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._key: bytes | None = None
        self.written = 0
        self.failed = 0

    def start(self) -> Deferred[bytes]:
        """Load (or create) the patron-hash key; call once the store is running."""
        def loaded(key: bytes) -> bytes:
            self._key = key
            return key
        return self.store.write(load_or_create_key).addCallback(loaded)

    def patron_ref(self, patron_id: str | None) -> str | None:
        """What the audit row keeps of a patron id: a keyed hash, or the id if configured."""
        if not patron_id:
            return None
        if self.settings.store_patron_ids:
            return patron_id
        if self._key is None:
            raise RuntimeError("AuditLog.start() has not completed")
        return keyed_hash(self._key, patron_id)

    def ncip_bodies(self, request: bytes, response: bytes) -> tuple[str | None, str | None]:
        """The bodies to keep for an NCIP exchange: never a PIN or password."""
        mode = self.settings.bodies
        if mode == "none":
            return None, None
        personal = mode == "redacted"
        pseudonymize = self.patron_ref if personal and self._key is not None else None
        kept = [redact(_problem_values_hidden(body, pseudonymize) if personal else body,
                       personal=personal, pseudonymize=pseudonymize)
                for body in (request, response)]
        return kept[0].decode("utf-8", "replace"), kept[1].decode("utf-8", "replace")

    def record(self, entry: AuditEntry) -> Deferred[None]:
        """Write a row through the writer's next batch; errors are logged, not raised."""
        stamped = entry if entry.time else replace(entry, time=audit_time(
            datetime.fromtimestamp(self.clock.seconds(), timezone.utc)))
        d = self.store.write(lambda conn: insert_entry(conn, stamped))

        def done(_: Any) -> None:
            self.written += 1

        def failed(failure: Any) -> None:
            self.failed += 1
            log.error("audit row for {protocol} {operation} not written: {error}",
                      protocol=entry.protocol, operation=entry.operation,
                      error=failure.getErrorMessage())

        return d.addCallbacks(done, failed)
