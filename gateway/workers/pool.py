# -*- test-case-name: tests.gateway.test_workers -*-
"""The primary's worker processes: started, told of reloads, drained at stop, restarted.

``[gateway] workers = N`` serving processes (:mod:`gateway.workers.child`), which inherit the
primary's Z39.50 and NCIP listening sockets (any endpoint string, systemd socket activation
included; the kernel wakes one process per connection); the primary accepts on them only while
no worker is ready. A plain TCP listener opened with ``SO_REUSEPORT``
(:mod:`gateway.workers.reuseport`) is a group instead: worker 1 gets the listener's socket,
every other worker a socket of its own in the group (kept by the primary across restarts), and
the primary accepts on a worker's socket while that worker is not ready. NCIP requests a
worker forwards are answered by the primary's service. Each worker's audit rows and metric
observations arrive over its channel and go through the primary's one writer and registry; its
open connections are added to the primary's figures for ``/metrics`` and ``/healthz``.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.audit import AuditEntry
from gateway.config import Config
from gateway.workers import reuseport
from gateway.workers.channel import Channel

log = Logger()

RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds before a worker that died is started again, by how many times in a row it died
soon after starting (see ``STABLE_AFTER``)."""

STABLE_AFTER = 30.0
"""Seconds after which a worker is taken to have started well: its next death restarts it
after the shortest delay again."""

STOP_MARGIN = 5.0
"""Seconds past the shutdown grace a worker gets to drain before it is killed."""


def family_name(port: IListeningPort) -> str:
    """``inet``, ``inet6`` or ``unix``: the address family of a listening port's socket."""
    sock = getattr(port, "socket", None)
    family = getattr(sock, "family", None)
    if family == socket.AF_INET6:
        return "inet6"
    if family == socket.AF_UNIX:
        return "unix"
    return "inet"


@dataclass
class WorkerFigures:
    """What a worker last reported."""

    open: int = 0
    refused: int = 0
    associations: int = 0
    ncip_open: int = 0
    ncip_refused: int = 0
    ncip_in_flight: int = 0


class _PipeTransport:
    """The channel's transport: writes go to the worker's stdin."""

    def __init__(self, process: Any) -> None:
        self.process = process

    def write(self, data: bytes) -> None:
        self.process.writeToChild(0, data)

    def writeSequence(self, data: Sequence[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.process.closeStdin()


@dataclass(eq=False)
class WorkerProcess(ProcessProtocol):
    """One worker: its process, its channel, its figures."""

    pool: WorkerPool
    index: int
    started: float = 0.0
    pid: int | None = None
    ready: bool = False
    stopped: bool = False
    figures: WorkerFigures = field(default_factory=WorkerFigures)
    ended: Deferred[None] = field(default_factory=Deferred)

    def __post_init__(self) -> None:
        self.channel = Channel(self._handle)

    def connectionMade(self) -> None:
        self.channel.transport = _PipeTransport(self.transport)  # type: ignore[assignment]
        self.pid = getattr(self.transport, "pid", None)
        if self.pool.key is not None:
            self.channel.send("key", self.pool.key)
        self.channel.send("config", self.pool.config())

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1:
            self.channel.dataReceived(data)

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "rows":
            rows, observations = payload
            self.pool.rows(rows, observations)
        elif kind == "ncip":
            request_id, body, context = payload
            self.pool.forward(body, context).addCallback(
                lambda reply: self.channel.send("ncip-reply", (request_id, reply)))
        elif kind == "figures":
            self.figures = WorkerFigures(**payload)
            self.channel.send("health", self.pool.healthy())
        elif kind == "ready":
            self.ready = True
            log.info("worker {index} (pid {pid}) ready", index=self.index, pid=payload["pid"])
            self.pool.accept_own(self.index, False)
            self.pool.ready_changed(self.pool.ready())
        elif kind == "stopped":
            self.stopped = True
            self.figures = WorkerFigures()

    def processEnded(self, reason: Failure) -> None:
        self.figures = WorkerFigures()
        self.channel.transport = None
        was_ready, self.ready = self.ready, False
        self.pool.ended(self, reason)
        if was_ready and self.pool.running:
            self.pool.ready_changed(self.pool.ready())
        self.ended.callback(None)


class WorkerPool:
    """Starts ``count`` workers on the given listening ports and keeps them running."""

    def __init__(self, count: int, *, reactor: Any, config: Callable[[], Config],
                 ports: Sequence[tuple[str, IListeningPort]],
                 record: Callable[[list[AuditEntry]], object], metrics: Any, serving: int,
                 forward: Callable[[bytes, Any], Deferred[bytes]],
                 healthy: Callable[[], bool] = lambda: True, key: bytes | None = None,
                 log_options: tuple[str, str] = ("text", "info"),
                 ready_changed: Callable[[int], None] = lambda ready: None) -> None:
        self.count = count
        self.reactor = reactor
        self.config = config
        self.ports = list(ports)
        self.record = record
        self.metrics = metrics
        self.forward = forward
        self.healthy = healthy
        self.key = key
        self.ready_changed = ready_changed
        self.serving = serving
        self.log_options = log_options
        self.workers: dict[int, WorkerProcess] = {}
        self.deaths: dict[int, int] = {}
        self.restarts = 0
        self.running = False
        self._pending: dict[int, IDelayedCall] = {}
        self._own: dict[int, list[tuple[str, IListeningPort]]] = {}

    def ports_of(self, index: int) -> list[tuple[str, IListeningPort]]:
        """The sockets worker ``index`` serves: a shared socket as it is; of a reuse-port
        group, worker 1 the listener's own socket, any other its own one in the group, opened
        at its first start and kept for the next (the primary accepts on it meanwhile)."""
        own = self._own.get(index)
        if own is None:
            own = self._own[index] = []
            for protocol, port in self.ports:
                if index > 1 and reuseport.in_group(port):
                    own.append((protocol, reuseport.another(self.reactor, port)))
                else:
                    own.append((protocol, port))
        return own

    def grouped(self, index: int) -> list[IListeningPort]:
        """Worker ``index``'s sockets that belong to a reuse-port group (its own alone)."""
        return [port for _, port in self.ports_of(index) if reuseport.in_group(port)]

    def accept_own(self, index: int, accept: bool) -> None:
        """Take (True) or leave (False) the connections on worker ``index``'s own sockets of
        a reuse-port group: nobody else accepts on them while it is not ready."""
        for port in self.grouped(index):
            if accept:
                port.startReading()  # type: ignore[attr-defined]
            else:
                port.stopReading()  # type: ignore[attr-defined]

    def start(self) -> None:
        self.running = True
        for index in range(1, self.count + 1):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._pending.pop(index, None)
        if not self.running:
            return
        fds: dict[int, int | str] = {0: "w", 1: "r", 2: 2}
        argv = [sys.executable, "-m", "gateway.workers.child", "--serving", str(self.serving),
                "--log-format", self.log_options[0], "--log-level", self.log_options[1]]
        for protocol, port in self.ports_of(index):
            fd = port.fileno()  # type: ignore[attr-defined]
            fds[fd] = fd
            argv += ["--listen", f"{protocol}:{fd}:{family_name(port)}"]
        worker = WorkerProcess(self, index, started=self.reactor.seconds())
        self.workers[index] = worker
        self.reactor.spawnProcess(worker, sys.executable, argv, env=dict(os.environ),
                                  childFDs=fds)

    def rows(self, rows: list[AuditEntry], observations: list[tuple[str, Any]]) -> None:
        """A worker's batch: rows to the writer, metrics calls to the registry."""
        if rows:
            self.record(rows)
        for method, arguments in observations:
            if method in ("observe", "auth_failure"):
                getattr(self.metrics, method)(*arguments)

    def ended(self, worker: WorkerProcess, reason: Failure) -> None:
        """A worker exited: at stop, as expected; otherwise it is started again, later the
        more often it died young."""
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if not self.running:
            return
        self.accept_own(worker.index, True)
        lived = self.reactor.seconds() - worker.started
        deaths = 0 if lived >= STABLE_AFTER else self.deaths.get(worker.index, 0)
        delay = RESTART_DELAYS[min(deaths, len(RESTART_DELAYS) - 1)]
        self.deaths[worker.index] = deaths + 1
        self.restarts += 1
        if worker.stopped:  # it drained and said so: stopped by a signal of its own
            log.warn("worker {index} (pid {pid}) stopped on its own signal; starting it again "
                     "in {delay}s", index=worker.index, pid=worker.pid, delay=delay)
        else:
            how = ("exited" if reason.check(ProcessDone) else reason.getErrorMessage())
            log.error("worker {index} (pid {pid}) ended unexpectedly ({how}) after "
                      "{lived:.1f}s; starting it again in {delay}s", index=worker.index,
                      pid=worker.pid, how=how, lived=lived, delay=delay)
        self._pending[worker.index] = self.reactor.callLater(delay, self._spawn, worker.index)

    def ready(self) -> int:
        """How many workers are serving."""
        return sum(1 for worker in self.workers.values() if worker.ready)

    def reload(self, config: Config) -> None:
        """Hand every worker the configuration a reload took."""
        for worker in self.workers.values():
            worker.channel.send("config", config)

    def figures(self) -> WorkerFigures:
        """The workers' figures, summed."""
        total = WorkerFigures()
        for worker in self.workers.values():
            for name in ("open", "refused", "associations", "ncip_open", "ncip_refused",
                         "ncip_in_flight"):
                setattr(total, name, getattr(total, name) + getattr(worker.figures, name))
        return total

    def describe(self) -> dict[str, Any]:
        """For ``/healthz``: the workers running, and how often one was started again."""
        return {"count": self.count, "restarts": self.restarts,
                "running": [{"index": w.index, "pid": w.pid, "ready": w.ready,
                             "connections": {"z3950": w.figures.open,
                                             "ncip": w.figures.ncip_open}}
                            for w in sorted(self.workers.values(), key=lambda w: w.index)]}

    def stop(self, grace: float) -> Deferred[Any]:
        """Tell every worker to drain and exit; kill those still there after ``grace`` plus a
        margin. Fires when all have exited (their last rows handed to ``record``)."""
        self.running = False
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        for index in list(self._own):
            for port in self.grouped(index):
                if index > 1:  # worker 1's is the listener's, closed with the listeners
                    port.stopListening()
        workers = list(self.workers.values())
        if not workers:
            return succeed(None)
        for worker in workers:
            worker.channel.send("stop")

        def kill() -> None:
            for worker in workers:
                if not worker.ended.called:
                    log.error("worker {index} (pid {pid}) did not stop in time: killed",
                              index=worker.index, pid=worker.pid)
                    try:
                        worker.transport.signalProcess("KILL")  # type: ignore[union-attr]
                    except ProcessExitedAlready:
                        pass

        timer = self.reactor.callLater(grace + STOP_MARGIN, kill)

        def done(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        return DeferredList([w.ended for w in workers]).addBoth(done)
