"""The NCIP services in process, without a daemon: the real :class:`NcipService`, lookups and
workflows on a circulation system, with the gateway's books in a temporary SQLite database.

:class:`ImmediateStore` stands in for the store's writer and readers: each job runs at once on
one connection, a write inside its own transaction (rolled back when it raises), as one job of
the writer would. Replies come back synchronously, so a test reads as a sequence of exchanges.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from gateway.admin.metrics import Metrics
from gateway.audit import AuditLog
from gateway.backends.embedded.circulation import EmbeddedCirculation
from gateway.config import load_config
from gateway.domain.circulation import ICirculation
from gateway.domain.lookups import LockoutPolicy, Lookups
from gateway.listeners.ncip_http import NcipRequestContext
from gateway.ncip.lookups import LookupHandlers
from gateway.ncip.service import NcipService
from gateway.ncip.workflows import Workflows
from gateway.storage.pin_failures import StorePinFailures
from gateway.storage.store import open_database
from tests import workflow_fixtures as wf

T = TypeVar("T")


class ImmediateStore:
    """A store whose jobs run at once on one connection (test double for :class:`Store`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = open_database(path)
        self.writes = 0

    def write(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """Run ``work`` in its own transaction; committed before the Deferred fires."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(self.conn)
        except BaseException:
            self.conn.execute("ROLLBACK")
            return fail()
        self.conn.execute("COMMIT")
        self.writes += 1
        return succeed(result)

    def read(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """Run ``work`` on the committed state."""
        try:
            return succeed(work(self.conn))
        except BaseException:
            return fail()

    def close(self) -> None:
        self.conn.close()


def result_of(d: Deferred[T]) -> T:
    """The result of a Deferred that has fired (its failure raised); the Deferred keeps its
    result for later callbacks."""
    seen: list[Any] = []

    def keep(result: Any) -> Any:
        seen.append(result)
        return None if isinstance(result, Failure) else result  # a failure is raised here
    d.addBoth(keep)
    assert seen, "not finished"
    if isinstance(seen[0], Failure):
        seen[0].raiseException()
    return seen[0]


class NcipHarness:
    """An NCIP service answering in process from a seeded temporary database."""

    def __init__(self, tmp_path: Path, config_text: str = wf.CONFIG,
                 circulation: Callable[[Any], ICirculation] = EmbeddedCirculation) -> None:
        self.database = tmp_path / "interlend.sqlite3"
        wf.seed_database(self.database)
        config_path = tmp_path / "interlend.toml"
        config_path.write_text(config_text)
        self.config = load_config(config_path)
        self.clock = Clock()
        self.clock.advance(time.time())
        self.store = ImmediateStore(self.database)
        self.host: Any = SimpleNamespace(config=self.config, reactor=self.clock,
                                         store=self.store)
        self.host.audit = AuditLog(self.store, self.config.audit, self.clock)  # type: ignore
        self.host.metrics = Metrics(self.store, self.host.audit, self.clock)  # type: ignore[arg-type]
        result_of(self.host.audit.start())
        self.circulation = circulation(self.store)
        self.service = NcipService(self.host)
        pins = StorePinFailures(self.store)  # type: ignore[arg-type]
        lookups = Lookups(self.circulation, pins,
                          LockoutPolicy(limit=3, seconds=600, clock=self.clock))
        LookupHandlers(self.host, lookups, self.service.handlers).register(self.service.handlers)
        self.workflows = Workflows(self.host, self.circulation)
        self.workflows.register(self.service.handlers)

    def handle(self, body: bytes, headers: dict[str, str] | None = None) -> Deferred[bytes]:
        """The reply to one request, as a Deferred (for requests left in flight)."""
        authorization = (headers or {}).get("Authorization", "")
        bearer = authorization[7:] if authorization.lower().startswith("bearer ") else None
        return self.service.handle(body, NcipRequestContext("127.0.0.1", None, bearer))

    def reply(self, body: bytes, headers: dict[str, str] | None = None) -> bytes:
        """The reply to one request."""
        return result_of(self.handle(body, headers))

    def post(self, body: bytes, path: str = "/ncip",
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """As :meth:`tests.daemon.Daemon.post`: (HTTP status, reply); NCIP is always 200."""
        return 200, self.reply(body, headers)

    def close(self) -> None:
        self.store.close()
