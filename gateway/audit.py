# -*- test-case-name: tests.gateway.test_audit -*-
"""The audit log: one row per exchange, with bodies kept as configured and secrets never.

This module decides what a row holds; :mod:`gateway.storage.audit_log` stores and reads rows
(with :class:`AuditEntry`, the row's type), :mod:`gateway.storage.meta` and
:mod:`gateway.storage.stored_replies` keep the rest of the SQL this log needs.

Rows for lookups and Z39.50 operations go through the store's writer, which batches them with
whatever else is waiting (group commit); :meth:`AuditLog.record` never blocks the reactor and a
failure to write is logged, never raised into the exchange. State-changing requests insert their
row with :func:`insert_entry` inside their own transaction, so the change and its record commit
together. Z39.50 rows are first gathered by an :class:`AuditBatch` for a few milliseconds and
written as one job: several exchanges cost one Deferred and one ``executemany``.

Patron identifiers are stored as a keyed hash (the key is generated once and kept in its own
file, mode 0600, beside the database by default) unless ``store_patron_ids`` is set. Bodies
are ``full`` (secrets removed), ``redacted`` (secrets removed, personal data replaced) or
``none``.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import hmac
import math
import os
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

from lxml import etree
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.config import AuditSettings
from gateway.listeners.limits import RateLimiter
from gateway.secrets import (
    KEY_BYTES,
    SEALED,
    Sealer,
    derived_key,
    read_key_file,
    write_key_file,
)
from gateway.storage import meta, stored_replies
from gateway.storage.audit_log import AuditEntry as AuditEntry
from gateway.storage.audit_log import audit_time as audit_time
from gateway.storage.audit_log import insert_entries as insert_entries
from gateway.storage.audit_log import insert_entry as insert_entry
from gateway.storage.store import Connection, Store, StoreError
from protocols.ncip.dialect import local_name
from protocols.ncip.problems import NCIPSyntaxError
from protocols.ncip.redact import PERSONAL_PLACEHOLDER, redact
from protocols.ncip.safexml import DEFAULT_MAX_BYTES, parse_xml
from protocols.ncip.writer import ReplyTree

log = Logger()

Pseudonymize = Callable[[str], "str | None"]
"""Replaces a patron identifier in a stored body (with its keyed hash)."""

def default_key_file(conn: Connection) -> Path | None:
    """Where the gateway key lives by default: ``<database>.key`` beside the database file
    (None for a database in memory)."""
    database = meta.database_file(conn)
    return Path(f"{database}.key") if database is not None else None


def load_or_create_key(conn: Connection, key_file: Path | None = None) -> bytes:
    """The gateway key from its file (``key_file``, or :func:`default_key_file`), created
    with mode 0600 on first use. A key an older version kept in the database moves to the file
    (so earlier patron hashes still match) and leaves the database. Runs in the caller's
    transaction; a database in memory gets a key for this run only."""
    legacy = meta.legacy_key(conn)
    path = key_file or default_key_file(conn)
    if path is None:
        return legacy or os.urandom(KEY_BYTES)
    key = read_key_file(path)
    if key is None:
        key = legacy or os.urandom(KEY_BYTES)
        write_key_file(path, key)
        log.info("gateway key created in {path} (mode 0600)", path=str(path))
    if legacy is not None:
        meta.forget_legacy_key(conn)
    return key


def _reply_context(key: tuple[str, str, str]) -> bytes:
    return "\0".join(key).encode("utf-8")


def seal_stored_replies(conn: Connection, sealer: Sealer) -> int:
    """Seal exactly-once replies an older version stored in clear; return how many."""
    return stored_replies.seal_clear_replies(
        conn, lambda reply: reply.startswith(SEALED),
        lambda key, reply: sealer.seal(reply, _reply_context(key)))


_SECOND_TEXT: dict[float, str] = {}
"""Whole seconds already written as ``YYYY-MM-DDTHH:MM:SS`` (rows come many per second)."""


def audit_time_at(seconds: float) -> str:
    """The audit time of a POSIX timestamp (a clock's ``seconds()``): the text of
    :func:`audit_time` for it, with the whole seconds formatted once per second."""
    fraction, whole = math.modf(seconds)
    micro = round(fraction * 1e6)  # rounded half to even, as datetime.fromtimestamp does
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    text = _SECOND_TEXT.get(whole)
    if text is None:
        if len(_SECOND_TEXT) >= 64:
            _SECOND_TEXT.clear()
        text = _SECOND_TEXT[whole] = datetime.fromtimestamp(whole, timezone.utc).isoformat()[:19]
    return f"{text}.{micro:06d}+00:00"


# A Problem names the element at fault and repeats its value: for these the value is a patron's
# identifier (Unknown User, User Blocked), personal data like the UserIdentifierValue itself.
_PATRON_PROBLEM_ELEMENTS = frozenset({"UserIdentifierValue", "UserId", "VisibleUserIdentifier",
                                      "AuthenticationInputData", "AuthenticationInput"})


def _problem_value(element: str, value: str, pseudonymize: Pseudonymize | None) -> str | None:
    """What a Problem's ProblemValue becomes when its ProblemElement names a patron
    identifier (pseudonymized, or the placeholder); None: not about a patron, kept."""
    if element.strip() not in _PATRON_PROBLEM_ELEMENTS:
        return None
    text = value.strip()
    return pseudonymize(text) if pseudonymize and text else PERSONAL_PLACEHOLDER


def _hide_problem_values(root: etree._Element, pseudonymize: Pseudonymize | None) -> None:
    """In place: ProblemValues that repeat a patron identifier pseudonymized."""
    for problem in root.iter("{*}Problem"):  # local name Problem, any namespace (C-side match)
        children = {local_name(child): child for child in problem if isinstance(child.tag, str)}
        element, value = children.get("ProblemElement"), children.get("ProblemValue")
        if element is not None and value is not None:
            hidden = _problem_value(element.text or "", value.text or "", pseudonymize)
            if hidden is not None:
                value.text = hidden


DISK_CHECK_INTERVAL = 1.0
"""Seconds between two looks at the free space under the database (when bodies are kept)."""


class AuditLog:
    """Builds and writes audit rows according to the ``[audit]`` settings."""

    def __init__(self, store: Store, settings: AuditSettings, clock: IReactorTime, *,
                 key_file: Path | None = None) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.key_file = key_file
        self._sealer: Sealer | None = None
        self._key = None
        self.written = 0
        self.failed = 0
        self.retried = 0                       # rows written again after a busy database
        self.dropped = 0                       # rows lost because the retry queue was full
        self._pending: collections.deque[AuditEntry] = collections.deque()
        self._gathering: list[AuditEntry] | None = None  # record_soon's rows not yet taken
        self._gather_lock = threading.Lock()              # (the writer thread takes them)
        self._retrying = False
        self._retry_call: IDelayedCall | None = None
        self.refused_dropped = 0
        self._refused = RateLimiter(0.0, 1.0, clock)
        self.bodies_suspended = False
        self.disk_free_bytes: int | None = None
        self._disk_checked = -math.inf

    def allow_refused(self, source: str) -> bool:
        """Whether a row for one more unauthenticated or refused request from ``source`` may be
        written (``refused_rows_per_minute_per_source``); False: counted only."""
        per_minute = self.settings.refused_rows_per_minute_per_source
        limiter = self._refused
        limiter.rate, limiter.burst = per_minute / 60.0, max(1.0, per_minute)
        if limiter.allow(source):
            return True
        self.refused_dropped += 1
        if self.refused_dropped % 1000 == 1:
            log.warn("audit rows for refused NCIP requests from {source} over {limit} a "
                     "minute: counted, not stored ({count} so far)", source=source,
                     limit=per_minute, count=self.refused_dropped)
        return False

    def keep_bodies(self) -> bool:
        """False while the database's file system has less free space than
        ``min_free_disk_mb``: rows are still written, bodies are not (checked once a second)."""
        now = self.clock.seconds()
        if now - self._disk_checked >= DISK_CHECK_INTERVAL:
            self._disk_checked = now
            self._check_disk()
        return not self.bodies_suspended

    def _check_disk(self) -> None:
        path = str(getattr(self.store, "path", ":memory:"))  # (stand-in stores have none)
        if path == ":memory:":
            return
        try:
            stats = os.statvfs(os.path.dirname(os.path.abspath(path)) or ".")
        except OSError:
            return
        free = self.disk_free_bytes = stats.f_bavail * stats.f_frsize
        floor = getattr(self.settings, "min_free_disk_mb", 0) * 1024 * 1024
        if free < floor and not self.bodies_suspended:
            self.bodies_suspended = True
            log.error("free space under {path}: {free} MiB, below audit.min_free_disk_mb "
                      "({floor} MiB): audit bodies are no longer kept", path=path,
                      free=free // 1048576, floor=self.settings.min_free_disk_mb)
        elif free >= floor and self.bodies_suspended:
            self.bodies_suspended = False
            log.info("free space under {path}: {free} MiB, above audit.min_free_disk_mb "
                     "again: audit bodies are kept", path=path, free=free // 1048576)

    @property
    def _key(self) -> bytes | None:
        return self._hash_key

    @_key.setter
    def _key(self, key: bytes | None) -> None:
        # the HMAC keyed once: each hash copies it (no key padding/initial blocks per request)
        self._hash_key = key
        self._hmac = hmac.new(key, digestmod=hashlib.sha256) if key is not None else None

    def start(self) -> Deferred[bytes]:
        """Load (or create) the gateway key, and seal replies stored in clear by an older
        version; call once the store is running."""
        def load(conn: Connection) -> bytes:
            # A real write first: a database the daemon cannot write is refused at start-up
            # (the key no longer lives in the database to prove it).
            meta.record_start(conn, self.now())
            key = load_or_create_key(conn, self.key_file)
            sealed = seal_stored_replies(conn, Sealer(derived_key(key, "replies")))
            if sealed:
                log.info("{count} stored exactly-once replies sealed", count=sealed)
            return key

        def loaded(key: bytes) -> bytes:
            self._key = key
            self._sealer = Sealer(derived_key(key, "replies"))
            return key
        return self.store.write(load).addCallback(loaded)

    def seal_reply(self, key: tuple[str, str, str], reply: bytes) -> bytes:
        """An exactly-once reply as the idempotency table keeps it: encrypted, bound to its
        (peer, service, key), so the database alone does not reveal the patrons in it."""
        if self._sealer is None:
            raise RuntimeError("AuditLog.start() has not completed")
        return self._sealer.seal(reply, _reply_context(key))

    def open_reply(self, conn: Connection, key: tuple[str, str, str],
                   stored: bytes) -> bytes | None:
        """The reply sealed by :meth:`seal_reply`; None (and the row removed, in the caller's
        transaction) when it cannot be opened -- the gateway key was replaced -- so that the
        request is answered afresh rather than never."""
        opened = self.open_sealed(key, stored)
        if opened is None:
            stored_replies.forget_reply(conn, key)
        return opened

    def open_sealed(self, key: tuple[str, str, str], stored: bytes) -> bytes | None:
        """The reply sealed by :meth:`seal_reply`, or None (logged) when it cannot be opened:
        the caller drops the record so that the request is answered afresh."""
        if self._sealer is None:
            raise RuntimeError("AuditLog.start() has not completed")
        try:
            return self._sealer.open(bytes(stored), _reply_context(key))
        except ValueError:
            log.warn("stored reply for {service} {key} from {peer} cannot be opened (gateway "
                     "key changed?): answered afresh", peer=key[0], service=key[1], key=key[2])
            return None

    def patron_ref(self, patron_id: str | None) -> str | None:
        """What the audit row keeps of a patron id: a keyed hash, or the id if configured."""
        if not patron_id:
            return None
        if self.settings.store_patron_ids:
            return patron_id
        keyed = self._hmac
        if keyed is None:
            raise RuntimeError("AuditLog.start() has not completed")
        mac = keyed.copy()  # == gateway.secrets.keyed_hash(key, patron_id)
        mac.update(patron_id.encode("utf-8"))
        return mac.hexdigest()[:32]

    def patron_refs(self) -> Callable[[str | None], str | None]:
        """:meth:`patron_ref` remembered for one exchange: its request, reply and row name the
        same patron, hashed once (the memo lives as long as the exchange, never longer)."""
        memo: dict[str | None, str | None] = {}
        patron_ref = self.patron_ref

        def refs(patron_id: str | None) -> str | None:
            try:
                return memo[patron_id]
            except KeyError:
                ref = memo[patron_id] = patron_ref(patron_id)
                return ref
        return refs

    def ncip_bodies(self, request: bytes, response: bytes, *,
                    request_tree: etree._Element | None = None,
                    response_tree: ReplyTree | None = None,
                    refs: Callable[[str | None], str | None] | None = None
                    ) -> tuple[str | None, str | None]:
        """The bodies to keep for an NCIP exchange: never a PIN or password.

        ``request_tree``: the request already parsed with the hardened parser (``parse_xml``,
        e.g. by ``parse_request``), handed over to be redacted *in place*: the caller must not
        use it afterwards. ``response_tree``: the :class:`ReplyTree` the writer kept
        (``keep_tree``), redacted without parsing the reply. Same results as from the bytes.
        """
        refs = refs or self.patron_refs()  # one exchange: its patron hashed once
        return (self.ncip_body(request, request_tree, refs=refs),
                self.ncip_body(response, response_tree, refs=refs))

    def ncip_body(self, body: bytes, tree: etree._Element | ReplyTree | None = None, *,
                  refs: Callable[[str | None], str | None] | None = None) -> str | None:
        """One body of an NCIP exchange as :meth:`ncip_bodies` keeps it (None when bodies are
        not kept): e.g. a request's, redacted before the transaction that records it."""
        mode = self.settings.bodies
        if mode == "none" or not self.keep_bodies():
            return None
        personal = mode == "redacted"
        pseudonymize = None
        if personal and self._key is not None:
            # one body names its patron several times (``refs``: one exchange's memo)
            pseudonymize = refs or self.patron_refs()
        return self._redacted(body, tree, personal, pseudonymize).decode("utf-8", "replace")

    @staticmethod
    def _redacted(body: bytes, tree: etree._Element | ReplyTree | None, personal: bool,
                  pseudonymize: Pseudonymize | None) -> bytes:
        if tree is not None and len(body) > DEFAULT_MAX_BYTES:
            tree = None  # redact() refuses to parse a body this large: keep that outcome
        if isinstance(tree, ReplyTree):  # a reply we wrote: redacted from its nodes
            return tree.redacted(personal=personal, pseudonymize=pseudonymize, problem_value=(
                functools.partial(_problem_value, pseudonymize=pseudonymize)
                if personal else None))
        if tree is None:
            if not personal:
                return redact(body)
            try:
                tree = parse_xml(body).root
            except NCIPSyntaxError:
                return redact(body, personal=True)  # unparseable: withheld altogether
        if personal:
            _hide_problem_values(tree, pseudonymize)
        # the tree is ours to spend (parsed just now, or handed over): no deep copy
        # (a token of None, for an empty identifier, is written as an empty element)
        return redact(tree, personal=personal, in_place=True,
                      pseudonymize=cast("Callable[[str], str] | None", pseudonymize))

    def now(self) -> str:
        """The audit time of this moment, by the log's clock."""
        return audit_time_at(self.clock.seconds())

    def record(self, entry: AuditEntry) -> Deferred[None]:
        """Write a row through the writer's next batch; errors are logged, not raised.

        When the database is busy or locked (the commit failed, not the row), the row is kept
        and written again later: see :meth:`_keep`."""
        stamped = entry if entry.time else replace(entry, time=self.now())
        d = self.store.write(lambda conn: insert_entry(conn, stamped))

        def done(_: object) -> None:
            self.written += 1

        def failed(failure: Failure) -> None:
            if self._keep(failure, [stamped]):
                return
            self.failed += 1
            log.error("audit row for {protocol} {operation} not written: {error}",
                      protocol=entry.protocol, operation=entry.operation,
                      error=failure.getErrorMessage())

        return d.addCallbacks(done, failed)

    def record_soon(self, entry: AuditEntry) -> None:
        """Write a stamped row with every other row handed over before the writer starts on
        them: one writer job and one ``executemany`` for all of them, instead of a job, a
        savepoint and a Deferred per row. For rows that commit with nothing (NCIP lookups and
        refusals); errors are logged, rows refused by a busy database kept for a retry, as in
        :meth:`record`. The writer closes the gathering when its job starts, so a row is never
        added to a job already running, and a store that writes at once writes each row alone.
        """
        if not entry.time:
            entry = replace(entry, time=self.now())
        with self._gather_lock:
            rows = self._gathering
            if rows is not None:
                rows.append(entry)
                return
            rows = self._gathering = [entry]
        write = getattr(self.store, "write_lazy", None) or self.store.write
        d = write(lambda conn: self._write_gathered(conn, rows))

        def done(_: object) -> None:
            self.written += len(rows)

        def failed(failure: Failure) -> None:
            self._close_gathering(rows)  # the job never ran (a stopped store): no more rows
            if self._keep(failure, rows):
                return
            self.failed += len(rows)
            log.error("{count} audit rows not written: {error}", count=len(rows),
                      error=failure.getErrorMessage())

        d.addCallbacks(done, failed)

    def _close_gathering(self, rows: list[AuditEntry]) -> None:
        with self._gather_lock:
            if self._gathering is rows:
                self._gathering = None

    def _write_gathered(self, conn: Connection, rows: list[AuditEntry]) -> None:
        """The writer's job for :meth:`record_soon`: close the gathering, insert its rows."""
        self._close_gathering(rows)
        insert_entries(conn, rows)

    def record_many(self, entries: Sequence[AuditEntry]) -> Deferred[None]:
        """Write several stamped rows as one writer job (all or none); errors are logged, and
        rows refused by a busy database are kept for a retry as in :meth:`record`."""
        rows = list(entries)
        d = self.store.write(lambda conn: insert_entries(conn, rows))

        def done(_: object) -> None:
            self.written += len(rows)

        def failed(failure: Failure) -> None:
            if self._keep(failure, rows):
                return
            self.failed += len(rows)
            log.error("{count} audit rows not written: {error}", count=len(rows),
                      error=failure.getErrorMessage())

        return d.addCallbacks(done, failed)

    # -- rows kept while the database is busy ---------------------------------------------

    @property
    def pending(self) -> int:
        """Rows waiting to be written again (the database was busy or locked)."""
        return len(self._pending)

    def _keep(self, failure: Failure, rows: list[AuditEntry]) -> bool:
        """Keep ``rows`` for a retry when the store failed the commit (busy, locked, I/O) while
        running; False when the rows themselves were at fault or the store has stopped.

        The queue is bounded by ``[audit] max_pending_rows``: past it the oldest rows are
        dropped, counted and logged (memory must not grow without bound during a long lock).
        """
        if not failure.check(StoreError) or not self.store.running:
            return False
        was_empty = not self._pending
        self._pending.extend(rows)
        limit = max(1, getattr(self.settings, "max_pending_rows", 100000))
        overflow = len(self._pending) - limit
        if overflow > 0:
            for _ in range(overflow):
                self._pending.popleft()
            self.dropped += overflow
            log.error("audit retry queue full ({limit} rows): {count} oldest row(s) dropped",
                      limit=limit, count=overflow)
        if was_empty:
            log.warn("database busy: audit rows kept in memory and written when it answers "
                     "({error})", error=failure.getErrorMessage())
        self._schedule_retry()
        return True

    def _schedule_retry(self) -> None:
        if self._retry_call is None and not self._retrying and self._pending:
            self._retry_call = self.clock.callLater(RETRY_INTERVAL, self.retry)

    def retry(self) -> Deferred[None]:
        """Write the kept rows (a bounded batch per attempt); the next attempt is scheduled
        while rows remain. Fires when this attempt is over."""
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        if self._retrying or not self._pending:
            return succeed(None)
        batch = [self._pending.popleft()
                 for _ in range(min(RETRY_BATCH_ROWS, len(self._pending)))]
        self._retrying = True
        d = self.store.write(lambda conn: insert_entries(conn, batch))

        def done(_: object) -> None:
            self.written += len(batch)
            self.retried += len(batch)
            if not self._pending:
                log.info("database answers again: {count} kept audit row(s) written",
                         count=self.retried)

        def failed(failure: Failure) -> None:
            if failure.check(StoreError) and self.store.running:
                self._pending.extendleft(reversed(batch))  # back in front, in order
                return
            self.failed += len(batch)
            log.error("{count} kept audit rows not written: {error}", count=len(batch),
                      error=failure.getErrorMessage())

        def again(_: object) -> None:
            self._retrying = False
            self._schedule_retry()

        return d.addCallbacks(done, failed).addBoth(again)

    @inlineCallbacks
    def drain(self, attempts: int = 2) -> Generator[Deferred[None], object, None]:
        """On stop, before the store closes: write every kept row (a few attempts, each
        waiting up to the busy timeout); what still cannot be written is counted and logged."""
        while self.store.pending and self.store.running:  # rows handed over just now
            yield deferLater(self.clock, 0.01, lambda: None)
        tries = 0
        while self._pending and tries < attempts and self.store.running:
            before = len(self._pending)
            yield self.retry()
            while self._retrying:
                yield deferLater(self.clock, 0.01, lambda: None)
            if len(self._pending) >= before:
                tries += 1
        if self._pending:
            count = len(self._pending)
            self._pending.clear()
            self.failed += count
            log.error("{count} kept audit row(s) lost at stop: the database stayed busy",
                      count=count)
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None


RETRY_INTERVAL = 0.5
"""Seconds between attempts to write audit rows kept while the database was busy."""

RETRY_BATCH_ROWS = 1000
"""Kept rows written per attempt (one writer job)."""

BATCH_DELAY = 0.01
"""Seconds an :class:`AuditBatch` gathers rows before it hands them to the writer."""

BATCH_ROWS = 256
"""Rows after which an :class:`AuditBatch` hands its rows over at once (the writer's batch)."""


class AuditBatch:
    """Gathers rows for a short moment and writes them as one writer job.

    For exchanges whose row does not commit with a state change (Z39.50): one Deferred, one
    job and one ``executemany`` per batch instead of per row. Each row keeps the time it was
    recorded at; :meth:`flush` hands everything over at once (call it before the store stops,
    so a graceful stop loses nothing).
    """

    def __init__(self, log: AuditLog, clock: IReactorTime, *, delay: float = BATCH_DELAY,
                 max_rows: int = BATCH_ROWS) -> None:
        self.log = log
        self.clock = clock
        self.delay = delay
        self.max_rows = max_rows
        self._pending: list[AuditEntry] = []
        self._call: IDelayedCall | None = None

    def record(self, entry: AuditEntry) -> None:
        """Stamp the row now (unless it has a time) and write it with the next batch."""
        pending = self._pending
        pending.append(entry if entry.time else replace(entry, time=self.log.now()))
        if len(pending) >= self.max_rows:
            self.flush()
        elif self._call is None:
            self._call = self.clock.callLater(self.delay, self.flush)

    def flush(self) -> None:
        """Hand every gathered row to the writer now."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        if self._pending:
            entries, self._pending = self._pending, []
            self.log.record_many(entries)
