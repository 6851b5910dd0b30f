# -*- test-case-name: tests.gateway.test_store -*-
"""The SQLite store: connections, migrations, one writer thread with group commit, reader threads.

Every state change goes through :meth:`Store.write`. The writer thread takes every job waiting in
its queue, runs each inside its own SAVEPOINT of one ``BEGIN IMMEDIATE`` transaction and commits
once (group commit). A job's Deferred fires only after that COMMIT returned, with
``synchronous=FULL`` in WAL mode, so a reply sent from its callback means "durably done".

Reads go through :meth:`Store.read` on a small pool of reader threads with their own connections,
so the reactor never waits on SQLite. Catalogue work (Z39.50 search, scan, sort, present), which
anonymous clients can make expensive, runs on a pool of its own under a time budget
(:meth:`Store.read_budgeted`), so an NCIP lookup never waits behind it; stopping the store
interrupts every reader.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from gateway.backends.embedded.indexing import register_functions
from gateway.storage.deferred_indexes import restore_indexes
from gateway.storage.schema import MIGRATIONS, SCHEMA_VERSION

T = TypeVar("T")
log = Logger()

Connection = sqlite3.Connection
"""The handle a store job is given. Only :mod:`gateway.storage` and the embedded backend run
SQL on it; the admin pages and the command line pass it on to their functions, so that several
reads share one snapshot."""

DatabaseError = sqlite3.Error
"""What the database raises when it cannot do what was asked (locked, corrupt, missing)."""

DatabaseBusy = sqlite3.OperationalError
"""What a command against a locked (or otherwise unusable) database raises mid-way."""

SQLITE_VERSION = sqlite3.sqlite_version
"""The SQLite library's version (the metrics' build info shows it)."""



class StoreError(Exception):
    """The store could not do what was asked (database unavailable, full, locked, closed)."""


class SchemaTooNew(StoreError):
    """The database was written by a newer Interlend than this one."""


class ReadInterrupted(Exception):
    """A budgeted read (:meth:`Store.read_budgeted`) ran past its time budget, or the store
    is stopping: SQLite stopped it between two steps of its virtual machine."""


class NotNow(Exception):
    """Raised by a :meth:`Store.read_now` work that finds it cannot finish at once (a count not
    cached, a page far into a result set): the read goes to a reader thread instead."""


def connect(path: str | Path, *, busy_timeout: float = 5.0, readonly: bool = False,
            check_same_thread: bool = True) -> sqlite3.Connection:
    """Open a connection with the gateway's settings: WAL, ``synchronous=FULL``, busy timeout,
    temporary storage in memory.

    The connection is in autocommit mode (``isolation_level=None``): callers open transactions
    explicitly, which keeps ``BEGIN IMMEDIATE`` and SAVEPOINT under our control.
    """
    if not readonly:
        _create_private(path)
    conn = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None,
                           check_same_thread=check_same_thread)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    # Statement journals (every record write fires the catalogue-generation trigger) and
    # temporary B-trees in memory, not in a temporary file opened and removed per statement:
    # that doubled an import's system time.
    conn.execute("PRAGMA temp_store = MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(path) != ":memory:" and mode.lower() != "wal":
            raise StoreError(f"{path}: could not switch to WAL journal mode (got {mode})")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _create_private(path: str | Path) -> None:
    """Create a new database file with mode 0600 (whatever the umask): it holds patron data.
    SQLite gives the ``-wal`` and ``-shm`` files the mode of the database file."""
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except FileNotFoundError:
        pass  # no such directory: sqlite3.connect reports it


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date, one migration per transaction; return the version reached."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this Interlend ({SCHEMA_VERSION})")
    if version < SCHEMA_VERSION:
        register_functions(conn)  # the re-indexing migrations call them
    for number in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("database migrated to schema version {version}", version=number)
    try:
        built = restore_indexes(conn)  # left out by a bulk load that did not finish
    except sqlite3.OperationalError as e:  # a load still running holds the write lock
        log.warn("indexes left out by a bulk load not built yet: {error}", error=str(e))
    else:
        if built:
            log.info("indexes left out by a bulk load built: {names}", names=", ".join(built))
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    """Split a migration script into complete statements (executescript would COMMIT for us)."""
    statements, pending = [], ""
    for piece in script.split(";")[:-1]:
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if (pending + script.rsplit(";", 1)[-1]).strip():
        raise ValueError(f"incomplete statement in migration: {pending.strip()[:60]}")
    return statements


def open_read_only(path: str | Path, *, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """A read-only connection to an existing database file (never creates one)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout)


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on a connection of :func:`open_database` (the command
    line's own; the daemon writes through :meth:`Store.write`); ``ROLLBACK`` on an error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def open_database(path: str | Path, *, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the database; for the command line and start-up."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path, busy_timeout=busy_timeout)
    migrate(conn)
    return conn


@dataclass
class _Job:
    work: Callable[[sqlite3.Connection], Any]
    deferred: Deferred[Any]
    result: Any = None
    failure: Failure | None = None
    lazy: bool = False  # nobody waits for its commit (see Store.write_lazy)


LAZY_WAIT = 0.005
"""Seconds the writer waits for more work before committing a batch made only of lazy jobs
(rows nobody waits for), so that they share a commit; any other job ends the wait."""


@dataclass
class WriterStats:
    """Counters the metrics endpoint and health check read."""

    commits: int = 0
    jobs: int = 0
    failed_commits: int = 0
    last_commit_seconds: float = 0.0
    last_error: str | None = None
    commit_seconds_total: float = 0.0


_STOP = object()

PROGRESS_STEPS = 1000
"""SQLite virtual-machine steps between two checks of a budgeted read's deadline (a few tens
of microseconds of work; the check itself costs well under a microsecond)."""


class Store:
    """The gateway's database: one writer thread (group commit) and a pool of reader threads."""

    def __init__(self, path: str | Path, reactor: IReactorFromThreads, *, busy_timeout: float = 5.0,
                 readers: int = 2, max_batch: int = 256, catalogue_readers: int = 1) -> None:
        self.path = Path(path)
        self._reactor = reactor
        self._busy_timeout = busy_timeout
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._pool = ThreadPool(minthreads=1, maxthreads=readers, name="interlend-reader")
        self._catalogue_pool = ThreadPool(minthreads=1, maxthreads=catalogue_readers,
                                          name="interlend-catalogue")
        self._stopping = False  # budgeted reads stop at their next progress check
        self._local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._stopped: Deferred[None] | None = None
        self.stats = WriterStats()
        self.pending = 0
        self._wal_path = Path(f"{self.path}-wal")
        self._generation = 0          # bumped when every connection must be reopened
        self._writer_conn: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None   # read_now's, on the reactor thread
        self._inline_generation = 0

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Migrate the schema, then start the writer thread and the reader pool."""
        try:
            open_database(self.path, busy_timeout=self._busy_timeout).close()
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as e:
            # e.g. "unable to open database file" / "attempt to write a readonly database":
            # say which file, and keep it one line in the start-up failure
            raise StoreError(f"{self.path}: cannot open the database: {e}") from e
        ready = threading.Event()
        errors: list[BaseException] = []
        self._writer = threading.Thread(target=self._run_writer, args=(ready, errors),
                                        name="interlend-writer", daemon=True)
        self._writer.start()
        ready.wait()
        if errors:
            raise StoreError(f"{self.path}: cannot open for writing: {errors[0]}")
        self._pool.start()
        self._catalogue_pool.start()

    def start_readers(self) -> None:
        """Start the reader pools only, with no writer: a worker process
        (:mod:`gateway.workers.child`) reads the database the primary writes (WAL); it must
        already exist and be migrated."""
        self._pool.start()
        self._catalogue_pool.start()

    def stop(self) -> Deferred[None]:
        """Finish every queued write, then close all connections. Fires when done."""
        if self._stopped is None:
            self._stopped = Deferred()
            if self._writer is None or not self._writer.is_alive():
                # never started (start-up failed) or already gone: nothing to wait for --
                # waiting here used to hang the daemon's shutdown after a failed start
                self._stopped.callback(None)
            self._queue.put(_STOP)
            # Whatever a reader is doing, it ends now: joining the pools below blocks the
            # reactor until every reader thread has returned.
            self._stopping = True
            self.interrupt_readers()
            self._pool.stop()
            self._catalogue_pool.stop()
            with self._lock:
                for conn in self._reader_connections:
                    conn.close()
                self._reader_connections.clear()
        return self._stopped

    @property
    def running(self) -> bool:
        """True while the writer thread is alive and accepting work."""
        return self._writer is not None and self._writer.is_alive() and self._stopped is None

    # -- writes -----------------------------------------------------------------------------

    def write(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """Run ``work(conn)`` in the writer thread, inside a transaction shared with other jobs.

        The Deferred fires with ``work``'s result after the COMMIT, or fails with ``work``'s
        exception (its changes rolled back, others unaffected) or with :class:`StoreError` when
        the commit itself failed (nothing of the batch was kept).
        """
        if not self.running:
            return fail(StoreError("the store is not running"))
        d: Deferred[T] = Deferred()
        self.pending += 1
        self._queue.put(_Job(work, d))
        return d

    def write_lazy(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """:meth:`write` for work nobody waits for (audit rows of lookups): a batch made only
        of such jobs waits up to :data:`LAZY_WAIT` for more before its commit, so that a
        stream of them shares commits (and their fsyncs). A job someone waits for is never
        delayed: it ends the wait and commits with them at once."""
        if not self.running:
            return fail(StoreError("the store is not running"))
        d: Deferred[T] = Deferred()
        self.pending += 1
        self._queue.put(_Job(work, d, lazy=True))
        return d

    def _gather_lazy(self, batch: list[_Job]) -> bool:
        """Add to a batch of lazy jobs what arrives within :data:`LAZY_WAIT` (until a job
        someone waits for, or the batch is full); True when the stop sentinel came."""
        deadline = time.monotonic() + LAZY_WAIT
        while len(batch) < self._max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                job = self._queue.get(timeout=left)
            except queue.Empty:
                return False
            if job is _STOP:
                return True
            batch.append(job)
            if not job.lazy:
                return False
        return False

    def _run_writer(self, ready: threading.Event, errors: list[BaseException]) -> None:
        try:
            conn = connect(self.path, busy_timeout=self._busy_timeout)
        except BaseException as e:  # reported to start(); the thread ends
            errors.append(e)
            ready.set()
            return
        self._writer_conn = conn
        ready.set()
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch = [first]
                stop_after = False
                while len(batch) < self._max_batch:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is _STOP:
                        stop_after = True
                        break
                    batch.append(job)
                if not stop_after and all(job.lazy for job in batch):
                    stop_after = self._gather_lazy(batch)
                self._commit_batch(self._writer_conn, batch)
                if stop_after:
                    break
            try:
                self._writer_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
        finally:
            self._writer_conn.close()
            self._reactor.callFromThread(self._writer_stopped)

    def _writer_stopped(self) -> None:
        if self._stopped is not None and not self._stopped.called:
            self._stopped.callback(None)

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        started = time.monotonic()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            self._fail_batch(batch, e)
            return
        if len(batch) == 1:
            # A batch of one needs no SAVEPOINT: the transaction is the job's alone, so a
            # failing job rolls the transaction back (two statements fewer per request when
            # requests come one at a time).
            self._commit_one(conn, batch, started)
            return
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                job.result = job.work(conn)
            except BaseException:
                job.failure = Failure()
                try:
                    conn.execute("ROLLBACK TO job")
                except sqlite3.Error:
                    pass
            try:
                conn.execute("RELEASE job")
            except sqlite3.Error as e:
                # The transaction is gone (e.g. disk I/O error): nothing of the batch survives.
                self._rollback(conn)
                self._fail_batch(batch, e)
                return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback(conn)
            self._fail_batch(batch, e)
            return
        self._committed(conn, batch, started)

    def _commit_one(self, conn: sqlite3.Connection, batch: list[_Job], started: float) -> None:
        """A batch of one job: ``BEGIN IMMEDIATE`` (done), the job, then COMMIT -- or, when the
        job fails, ROLLBACK of its transaction, which holds nothing else. As in a batch of
        many, a transaction SQLite itself ended under the job (a disk I/O error) or a failed
        COMMIT or ROLLBACK fails the job with :class:`StoreError`."""
        job = batch[0]
        try:
            job.result = job.work(conn)
        except BaseException:
            job.failure = Failure()
            end = "ROLLBACK"
        else:
            end = "COMMIT"
        try:
            if not conn.in_transaction:
                raise sqlite3.OperationalError("the transaction was rolled back under the job")
            conn.execute(end)
        except sqlite3.Error as e:
            self._rollback(conn)
            self._fail_batch(batch, e)
            return
        self._committed(conn, batch, started)

    def _committed(self, conn: sqlite3.Connection, batch: list[_Job], started: float) -> None:
        """After a batch's COMMIT returned: check the WAL, count, deliver the results."""
        wal_error = self._check_wal(conn)
        elapsed = time.monotonic() - started
        self.stats.commits += 1
        self.stats.jobs += len(batch)
        self.stats.last_commit_seconds = elapsed
        self.stats.commit_seconds_total += elapsed
        self.stats.last_error = wal_error
        self._reactor.callFromThread(self._deliver, batch)

    def _check_wal(self, conn: sqlite3.Connection) -> str | None:
        """After a commit: is the -wal file still there? If someone deleted it, SQLite keeps
        writing into the unlinked file (lost at the next crash) and connections opened later
        would create a second, different WAL. So: checkpoint everything into the main file
        (before the replies leave, so a reply still means durably done), then reopen the
        writer's connection -- which creates a fresh WAL -- and make every reader reconnect
        before its next read. Logged as an error; returns the note for ``/healthz``."""
        if str(self.path) == ":memory:" or self._wal_path.exists():
            return None
        log.error("WAL file {wal} was deleted while running: checkpointing into the "
                  "database and reopening connections", wal=str(self._wal_path))
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if busy:
                raise sqlite3.OperationalError("checkpoint could not complete (busy)")
            self._writer_conn = connect(self.path, busy_timeout=self._busy_timeout)
            conn.close()
        except sqlite3.Error as e:
            log.error("recovering from the deleted WAL failed: {error}; restart the daemon",
                      error=str(e))
            return f"WAL file deleted, recovery failed ({e}): restart to recreate the WAL"
        self._generation += 1
        return "WAL file was deleted while running (recovered: checkpointed, new WAL)"

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _fail_batch(self, batch: list[_Job], error: Exception) -> None:
        self.stats.failed_commits += 1
        self.stats.last_error = str(error)
        log.error("database commit failed: {error}", error=str(error))
        for job in batch:
            job.failure = Failure(StoreError(f"database write failed: {error}"))
        self._reactor.callFromThread(self._deliver, batch)

    def _deliver(self, batch: list[_Job]) -> None:
        for job in batch:
            self.pending -= 1
            if job.failure is not None:
                job.deferred.errback(job.failure)
            else:
                job.deferred.callback(job.result)

    # -- reads ------------------------------------------------------------------------------

    def read(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """Run ``work(conn)`` on a reader thread with a read-only connection."""
        return deferToThreadPool(self._reactor, self._pool, self._read, work)

    def read_budgeted(self, work: Callable[[sqlite3.Connection], T], seconds: float,
                      cancelled: Callable[[], bool] | None = None) -> Deferred[T]:
        """Run ``work(conn)`` on a catalogue reader thread, for at most ``seconds`` of SQLite.

        SQLite's progress handler checks the deadline (and ``cancelled``, and whether the store
        is stopping) every :data:`PROGRESS_STEPS` steps; past it the statement is interrupted
        and the Deferred fails with :class:`ReadInterrupted`. Python code between statements
        (including SQL functions it calls, such as the regular-expression match) is checked at
        each step too, so ``work`` must keep its own loops bounded.
        """
        return deferToThreadPool(self._reactor, self._catalogue_pool, self._read_budgeted,
                                 work, seconds, cancelled)

    def _read_budgeted(self, work: Callable[[sqlite3.Connection], T], seconds: float,
                       cancelled: Callable[[], bool] | None) -> T:
        deadline = time.monotonic() + seconds
        why: list[str] = []

        def progress() -> int:
            if self._stopping:
                why.append("the gateway is stopping")
            elif time.monotonic() > deadline:
                why.append(f"time limit of {seconds:g} s exceeded")
            elif cancelled is not None and cancelled():
                why.append("cancelled")
            else:
                return 0
            return 1

        def guarded(conn: sqlite3.Connection) -> T:
            conn.set_progress_handler(progress, PROGRESS_STEPS)
            try:
                return work(conn)
            except sqlite3.OperationalError as exc:
                if why or "interrupted" in str(exc):
                    raise ReadInterrupted(why[0] if why else "interrupted") from None
                raise
            finally:
                conn.set_progress_handler(None, 0)

        if self._stopping:
            raise ReadInterrupted("the gateway is stopping")
        return self._read(guarded)

    def interrupt_readers(self) -> None:
        """Interrupt the statement every reader connection is running (any thread may call)."""
        with self._lock:
            connections = list(self._reader_connections)
        for conn in connections:
            try:
                conn.interrupt()
            except sqlite3.Error:
                pass

    def read_now(self, work: Callable[[sqlite3.Connection], T],
                 fallback: Callable[[sqlite3.Connection], T] | None = None, *,
                 slow: Callable[[Callable[[sqlite3.Connection], T]], Deferred[T]] | None = None
                 ) -> Deferred[T]:
        """Like :meth:`read`, but run on the calling (reactor) thread when SQLite answers at once.

        Only for reads bounded by an index to a row or two (a patron by barcode or username),
        where the hand-off to a reader thread and back costs more than the read (figures in
        the performance log). The reactor never waits on a lock: this connection has no busy
        timeout, so a busy database (WAL recovery, a checkpoint) or any other SQLite error
        sends the read to a reader thread instead, as :meth:`read` would run it. Reads see the
        same committed state either way (WAL snapshot per statement, autocommit).

        ``fallback`` is what a reader thread runs instead (default: ``work``); ``work`` may
        raise :class:`NotNow` to send the read there, so it can refuse to do unbounded work
        on the reactor and ``fallback`` does it without that check. ``slow`` runs the fallback
        (default :meth:`read`; the catalogue passes its budgeted read).
        """
        later = self.read if slow is None else slow
        if self._stopped is not None:
            return later(work if fallback is None else fallback)
        try:
            conn = self._inline
            if conn is None or self._inline_generation != self._generation:
                if conn is not None:
                    with self._lock:
                        if conn in self._reader_connections:
                            self._reader_connections.remove(conn)
                    conn.close()
                self._inline = None
                conn = connect(self.path, busy_timeout=0.0, readonly=True,
                               check_same_thread=False)
                self._inline, self._inline_generation = conn, self._generation
                with self._lock:
                    self._reader_connections.append(conn)  # closed by stop()
            result = work(conn)
        except (sqlite3.Error, NotNow):
            # busy, locked, failing or not bounded: the reader threads decide
            return later(work if fallback is None else fallback)
        except BaseException:
            return fail()
        d: Deferred[T] = Deferred()
        d.callback(result)
        return d

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "generation", 0) != self._generation:
            with self._lock:                  # the WAL was replaced: reconnect (see _check_wal)
                if conn in self._reader_connections:
                    self._reader_connections.remove(conn)
            conn.close()
            conn = None
        if conn is None:
            conn = connect(self.path, busy_timeout=self._busy_timeout, readonly=True,
                           check_same_thread=False)
            self._local.conn = conn
            self._local.generation = self._generation
            with self._lock:
                self._reader_connections.append(conn)
        return work(conn)

    def health(self) -> dict[str, Any]:
        """The state of the database for ``/healthz``: writer alive, last error, queue depth."""
        return {
            "path": str(self.path),
            "writer": "running" if self.running else "stopped",
            "pending_writes": self.pending,
            "commits": self.stats.commits,
            "last_error": self.stats.last_error,
            "ok": self.running and self.stats.last_error is None,
        }

