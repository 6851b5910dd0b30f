# -*- test-case-name: tests.gateway.test_z3950_server,tests.gateway.test_z3950_interop -*-
"""The Z39.50 listener: frames BER PDUs, feeds an association, runs its catalogue calls.

L{Z3950Protocol} is a thin adapter around the pure L{Association}: bytes go through
L{BERFramer} (size and depth limits from C{[z3950]}) and L{decode_pdu}; every failure there
becomes Close(protocolError) and a TCP close, and nothing escapes C{dataReceived}. The
association's actions are carried out in order: bytes written (sent at once while nothing is
buffered, L{write_now}), catalogue calls run (one at a time per association; the transport is
paused meanwhile), audit rows written, connections dropped. Errors from the catalogue are
mapped to replies in one place, L{Z3950Protocol._diagnostic}: a C{Bib1Error} becomes its
diagnostic, anything else is logged and becomes diagnostic 2 (temporary system error).

Timeouts use the injected clock (the gateway's reactor): C{init_timeout} from connect until
Init, C{idle_timeout} between requests, C{pdu_timeout} from the first byte of a PDU until its
last (bytes trickled in do not extend it); all end in Close(lackOfActivity) (before Init the
connection is just dropped, as GFS does).

Memory: the bytes of a partially received PDU are charged to the listener's
L{MemoryBudget} (C{memory_budget}, shared with saved result sets); a connection whose PDU would
pass it is closed with Close(resources). Log lines a client can cause at will (malformed or
slow PDUs, idle connections, failed requests) go through a L{LogLimiter}.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway import __version__
from gateway.audit import AuditBatch, AuditEntry, audit_time_at
from gateway.listeners.limits import LogLimiter, MemoryBudget, source_address
from gateway.listeners.sendnow import drained, write_now
from gateway.z3950.diagnostics import Bib1Error, public_addinfo
from protocols.z3950.association import (
    Action,
    Association,
    AssociationSettings,
    Disconnect,
    FetchCall,
    PeerIdentity,
    Report,
    ScanCall,
    SearchCall,
    Send,
    SortCall,
    State,
)
from protocols.z3950.ber import BERFramer
from protocols.z3950.codec import Diagnostic, decode_request
from protocols.z3950.diagnostics import Bib1

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from gateway.config import Config
    from gateway.z3950.catalogue import CatalogueService
from protocols.z3950.errors import CloseReason, Z3950ProtocolError

log = Logger()


CLOSE_GRACE = 20.0
"""Seconds a closing connection may take to drain before it is aborted (GFS waits 20 s)."""

SETTINGS_CACHE_SIZE = 1024
"""Source addresses whose association settings a factory remembers (then it starts over)."""

# A connection over the listener's caps (gateway.listeners.limits) gets a *refusing* protocol
# (Z3950Factory.refusal): its Init is answered with result false and diagnostic 1018 (system
# temporarily out of resources, the reason as addinfo), then the connection closes. It reads at
# most REFUSAL_MAX_PDU bytes, waits at most REFUSAL_TIMEOUT seconds and writes no audit row (the
# limiter counts and logs the refusal).

REFUSAL_MAX_PDU = 64 * 1024
"""Bytes a refused connection may send as its Init (an Init is a few hundred bytes)."""

REFUSAL_TIMEOUT = 10.0
"""Seconds a refused connection may take to send its Init (at most C{init_timeout})."""

REFUSAL_DIAGNOSTIC = 1018
"""Bib-1 "Init/AC: System temporarily out of resources"."""

__all__ = ["Z3950Factory", "Z3950Protocol"]


class Z3950Protocol(Protocol):
    """One Z39.50 association over one TCP connection."""

    def __init__(self, factory: Z3950Factory, refusal: str | None = None) -> None:
        self.factory = factory
        settings = factory.gateway.config.z3950
        self.refusal = refusal  # why this connection is refused (its Init gets 1018), or None
        self._framer = BERFramer(
            max_pdu_size=settings.max_pdu_size if refusal is None
            else min(settings.max_pdu_size, REFUSAL_MAX_PDU),
            max_depth=settings.max_nesting_depth)
        self.association: Association  # made in connectionMade, with the peer's settings
        self.remote = "?"
        self._timer: Any = None
        self._deadline = 0.0  # when the association counts as idle (once Init is done)
        self._abort_timer: Any = None
        self._closing = False
        self._busy = False
        self._paused = False  # the transport, while a call runs on a reader thread
        self._sent = 0
        self._held = 0  # bytes of the partial PDU charged to the factory's memory budget
        self._pdu_timer: Any = None  # the deadline of the partial PDU

    # -- connection events ------------------------------------------------------------------

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.remote = source_address(str(getattr(self.transport.getPeer(), "host", "?")))
        self.association = Association(self.factory.association_settings(self.remote))
        self.factory.associations.add(self)
        self._arm_timer()
        if self.refusal is not None:  # over the caps: the Init gets 1018
            self.association.settings = replace(self.association.settings, refusal=Diagnostic(
                REFUSAL_DIAGNOSTIC, self.refusal, v2=True))

    def dataReceived(self, data: bytes) -> None:
        """Frame, decode and handle; nothing raised here ever reaches the reactor."""
        if self._closing:
            return
        try:
            frames = self._framer.feed(data)
        except Z3950ProtocolError as exc:
            self._log("framing", "Z39.50 framing error from {remote}: {error}", error=exc)
            self._perform(self.association.abort(exc.close_reason, "Malformed package"))
            return
        except Exception:  # noqa: BLE001 - the framing boundary
            self._log("framer", "Z39.50 framer failed on input from {remote}", level="failure")
            self._perform(self.association.abort(CloseReason.protocolError, "Malformed package"))
            return
        if self._framer.buffered != self._held and not self._hold(self._framer.buffered):
            return
        for frame in frames:
            if self._closing:
                return
            self._handle_frame(frame)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closing = True
        self._cancel_timer()
        self._release()
        if self._abort_timer is not None and self._abort_timer.active():
            self._abort_timer.cancel()
        self.association.connection_lost()
        self.association.result_sets.clear()  # their memory goes back to the budget now
        self.factory.associations.discard(self)

    # -- partial PDUs: memory and deadline ---------------------------------------------------

    def _hold(self, held: int) -> bool:
        """The framer now holds ``held`` bytes of a partial PDU: charge the memory budget (or
        close with Close(resources) when it is spent), and run the PDU's deadline while any
        byte of it is held."""
        more = held - self._held
        if more > 0 and not self.factory.memory.take(more):
            self._log("memory", "Z39.50 memory budget spent: closing the connection from "
                      "{remote} (partial PDU of {size} bytes)", level="warn", size=held)
            self._perform(self.association.abort(CloseReason.resources, "Resources exhausted"))
            return False
        if more < 0:
            self.factory.memory.give(-more)
        self._held = held
        if held and self._pdu_timer is None:
            seconds = self.factory.gateway.config.z3950.pdu_timeout
            self._pdu_timer = self.factory.clock.callLater(seconds, self._pdu_overdue)
        elif not held and self._pdu_timer is not None:
            if self._pdu_timer.active():
                self._pdu_timer.cancel()
            self._pdu_timer = None
        return True

    def _release(self) -> None:
        """The connection is gone: give its partial PDU's bytes back, stop its deadline."""
        if self._held:
            self.factory.memory.give(self._held)
            self._held = 0
        if self._pdu_timer is not None and self._pdu_timer.active():
            self._pdu_timer.cancel()
        self._pdu_timer = None

    def _pdu_overdue(self) -> None:
        """A PDU did not arrive whole within ``pdu_timeout`` of its first byte."""
        seconds = self.factory.gateway.config.z3950.pdu_timeout
        self._pdu_timer = None
        if self._closing:
            return
        if self._busy:  # reading is paused while a call runs: the deadline starts again
            self._pdu_timer = self.factory.clock.callLater(seconds, self._pdu_overdue)
            return
        self._log("slow", "Z39.50 PDU from {remote} not complete within {seconds:g} s "
                  "({size} bytes received): closing", seconds=seconds, size=self._held)
        self._perform(self.association.timeout())

    def _log(self, kind: str, text: str, *, level: str = "info", failure: Failure | None = None,
             **fields: Any) -> None:
        """Log a line a client can cause, within the factory's rate limit for ``kind``."""
        dropped = self.factory.log_limiter.allow(kind)
        if dropped is None:
            return
        if dropped:
            text += " ({dropped} similar lines not logged)"
        fields.update(remote=self.remote, dropped=dropped)
        if level == "failure":
            log.failure(text, failure, **fields)
        else:
            getattr(log, level)(text, **fields)

    # -- frames and actions -----------------------------------------------------------------

    def _handle_frame(self, frame: bytes) -> None:
        clock = self.factory.clock
        try:
            # Hot requests come back already read (text decoded with the association's
            # current decoder, which only changes while an Init is handled, before the next
            # frame is decoded); anything else as a pyasn1 PDU.
            pdu = decode_request(frame, self.association.decoder,
                                 max_depth=self.factory.gateway.config.z3950.max_nesting_depth)
        except Exception as exc:  # noqa: BLE001 - decode_request raises Z3950ProtocolError only
            self._log("undecodable", "undecodable Z39.50 PDU from {remote}: {error}", error=exc)
            self._perform(self.association.abort(CloseReason.protocolError, "Malformed package"))
            return
        try:
            actions = self.association.receive(pdu, tag=(clock.seconds(), len(frame)))
        except Exception:  # noqa: BLE001 - a bug must not kill the reactor
            self._log("association", "Z39.50 association failed on a PDU from {remote}",
                      level="failure")
            actions = self.association.abort(CloseReason.systemProblem, "Internal error")
        self._perform(actions)
        self._rearm()

    def _rearm(self) -> None:
        """A complete request was handled: the idle clock starts again (once Init is done)."""
        if self.association.state is State.UP and not self._busy and not self._closing:
            self._arm_timer()

    def _perform(self, actions: list[Action]) -> None:
        """Carry out the association's actions, in order."""
        for action in actions:
            if isinstance(action, Send):
                if not self._closing:
                    assert self.transport is not None
                    write_now(self.transport, action.data)
                    self._sent += len(action.data)
            elif isinstance(action, Report):
                if self.refusal is None:
                    self._audit(action)
            elif isinstance(action, Disconnect):
                self._disconnect(action)
            else:
                self._call(action)

    def _disconnect(self, action: Disconnect) -> None:
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()  # the reason and message are in the close's audit row
        assert self.transport is not None
        self.transport.loseConnection()
        if not drained(self.transport):  # a peer that does not read gets CLOSE_GRACE seconds
            self._abort_timer = self.factory.clock.callLater(CLOSE_GRACE, self._force_close)

    def _force_close(self) -> None:
        """The peer did not read our last bytes in time: drop the connection hard."""
        self._abort_timer = None
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()

    # -- catalogue calls --------------------------------------------------------------------

    def _call(self, call: Any) -> None:
        """Run one catalogue call; feed its outcome back to the association.

        The transport is paused while the call runs on a reader thread; a call answered at
        once (a bounded read on the reactor) needs no pause.
        """
        self._busy = True  # the idle timer, if it fires meanwhile, waits for the end
        self.factory.operation_started()
        d = self._start(call)
        if not d.called and not self._closing:
            pause = getattr(self.transport, "pauseProducing", None)
            if pause is not None:
                pause()
                self._paused = True
        d.addCallbacks(self._resume, self._resume_failed, errbackArgs=(call,))
        d.addErrback(self._completion_failed)

    def _resume_failed(self, failure: Failure, call: Any) -> None:
        """The call failed: its diagnostic goes back to the association."""
        self._resume(self._diagnostic(failure, call))

    def _completion_failed(self, failure: Failure) -> None:
        self._log("completion", "Z39.50 call completion failed for {remote}", level="failure",
                  failure=failure)

    def _start(self, call: Any) -> Deferred[Any]:
        """The catalogue method for one call, started."""
        catalogue = self.factory.catalogue
        peer = self._peer()
        if isinstance(call, SearchCall):
            d = maybeDeferred(catalogue.search, call.query, list(call.databases), peer=peer,
                              result_sets=call.result_sets, name=call.name)
        elif isinstance(call, FetchCall):
            extra = {"charset": call.charset} if call.charset else {}  # negotiated
            d = maybeDeferred(catalogue.fetch, call.result_set, call.start, call.count,
                              syntax=call.syntax, element_set=call.element_set,
                              database=call.database, peer=peer, **extra)
        elif isinstance(call, ScanCall):
            d = maybeDeferred(catalogue.scan, call.term, list(call.databases), count=call.count,
                              preferred_position=call.preferred_position,
                              step_size=call.step_size, peer=peer)
        elif isinstance(call, SortCall):
            d = maybeDeferred(catalogue.sort, call.result_set, list(call.keys), name=call.name)
        else:  # pragma: no cover - every action type is handled above
            d = fail(TypeError(f"unknown action {call!r}"))
        return d

    def _diagnostic(self, failure: Failure, call: Any) -> Diagnostic:
        """The one place catalogue errors become Z39.50 diagnostics."""
        if failure.check(Bib1Error):
            error = failure.value
            return Diagnostic(int(error.code), public_addinfo(error), v2=True)
        self._log("catalogue", "catalogue {call} failed for {remote}", level="failure",
                  failure=failure, call=type(call).__name__)
        return Diagnostic(Bib1.TEMPORARY_SYSTEM_ERROR, None, v2=True)

    def _resume(self, outcome: Any) -> None:
        self._busy = False
        self.factory.operation_finished()
        resume = getattr(self.transport, "resumeProducing", None)
        if self._paused and resume is not None and not self._closing:
            resume()
        self._paused = False
        if self._closing:
            return  # the connection went away (or is going) while the call ran
        try:
            actions = self.association.resume(outcome)
        except Exception:  # noqa: BLE001
            self._log("association", "Z39.50 association failed resuming for {remote}",
                      level="failure")
            actions = self.association.abort(CloseReason.systemProblem, "Internal error")
        self._perform(actions)
        self._rearm()

    def _peer(self) -> Any:
        identity = self.association.peer
        if identity is None:
            return None
        config = self.factory.gateway.config
        finder = getattr(config, "peer", None)
        return finder(identity.name) if finder is not None else identity

    # -- audit and timers -------------------------------------------------------------------

    def _audit(self, report: Report) -> None:
        factory = self.factory
        now = factory.clock.seconds()
        started, request_size = report.tag if report.tag else (None, None)
        duration = None if started is None else int((now - started) * 1_000_000)
        response_size, self._sent = self._sent, 0
        peer = self.association.peer.name if self.association.peer else None
        floor = getattr(getattr(factory.audit, "log", None), "keep_bodies", None)
        keep_bodies = factory.gateway.config.audit.bodies != "none" and (
            floor is None or floor())  # no bodies under the free-space floor
        entry = AuditEntry(protocol="z3950", operation=report.operation, outcome=report.outcome,
                           peer=peer, remote=self.remote, duration_us=duration,
                           request_size=request_size, response_size=response_size or None,
                           request_body=report.query if keep_bodies else None,
                           response_body=report.detail if keep_bodies else None,
                           time=audit_time_at(now))
        try:
            factory.audit.record(entry)
        except Exception:  # noqa: BLE001 - auditing never breaks an exchange
            self._log("audit", "Z39.50 audit row not written", level="failure")
        metrics = getattr(factory.gateway, "metrics", None)
        if metrics is not None:
            # Closes for malformed input carry no request tag (no duration) but must still be
            # counted: they are how an attack shows up in /metrics.
            try:
                metrics.observe("z3950", report.operation, peer, report.outcome,
                                None if duration is None else duration / 1_000_000)
            except Exception:  # noqa: BLE001
                self._log("metrics", "Z39.50 metrics not updated", level="failure")

    def _arm_timer(self) -> None:
        """Before Init: the Init deadline, from connect. After: the idle deadline, from now.

        The idle timer is lazy: a request moves the deadline, and a timer that fires before
        it (or while an operation runs) is armed again for the rest, so requests cost no
        timer of their own.
        """
        settings = self.factory.gateway.config.z3950
        timer = self._timer
        active = timer is not None and timer.active()
        if self.association.state is not State.UP:
            seconds = settings.init_timeout
            if self.refusal is not None:
                seconds = min(seconds or REFUSAL_TIMEOUT, REFUSAL_TIMEOUT)
            if not active and seconds and seconds > 0:
                self._timer = self.factory.clock.callLater(seconds, self._timed_out)
            return  # the Init deadline runs from connect; it is not extended
        seconds = settings.idle_timeout
        if not seconds or seconds <= 0:
            self._cancel_timer()
            return
        clock = self.factory.clock
        self._deadline = clock.seconds() + seconds
        if active and timer.getTime() > self._deadline:
            timer.cancel()  # the Init timer, or one armed with a longer idle_timeout
            active = False
        if not active:
            self._timer = clock.callLater(seconds, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self._busy or self._closing:
            return  # an operation's end arms the idle timer again
        if self.association.state is State.UP:
            remaining = self._deadline - self.factory.clock.seconds()
            if remaining > 0:
                self._timer = self.factory.clock.callLater(remaining, self._timed_out)
                return
        self._log("idle", "Z39.50 association with {remote} idle: closing")
        self._perform(self.association.timeout())

    def shutdown(self) -> None:
        """Close(shutdown) and drop the connection."""
        if not self._closing:
            self._perform(self.association.shutdown())


class AuditSink(TypingProtocol):
    """Where the listener's audit rows go: the audit log, or a batch in front of it."""

    def record(self, entry: AuditEntry) -> object:
        """Take one row."""


class Z3950Host(TypingProtocol):
    """What the Z39.50 listener reads from the gateway (its composition root)."""

    @property
    def config(self) -> Config:
        """The configuration in force (a reload replaces it)."""

    @property
    def catalogue(self) -> CatalogueService:
        """The catalogue service the associations search."""

    @property
    def reactor(self) -> IReactorTime:
        """Time, for timeouts."""

    @property
    def audit(self) -> AuditSink:
        """The audit log."""


class Z3950Factory(Factory):
    """Builds associations; knows them all and their operations in flight, for a clean stop.

    @ivar catalogue: the C{CatalogueService} the associations search.
    @ivar clock: the reactor (or a L{twisted.internet.task.Clock}) for timeouts.
    @ivar audit: where audit rows go: the gateway's audit log, or an L{AuditBatch} in front
        of it (flushed by L{close_all}).
    """

    noisy = False
    protocol = Z3950Protocol

    def __init__(self, gateway: Z3950Host, catalogue: CatalogueService | None = None,
                 clock: IReactorTime | None = None, audit: AuditSink | None = None) -> None:
        self.gateway = gateway
        self.catalogue = catalogue if catalogue is not None else gateway.catalogue
        self.clock = clock if clock is not None else gateway.reactor
        self.audit = audit if audit is not None else gateway.audit
        self.associations: set[Z3950Protocol] = set()
        self.in_flight = 0
        self._idle_waiters: list[Deferred[None]] = []
        self._settings_config: Any = None
        self._settings: dict[str, AssociationSettings] = {}
        # one budget for partial PDUs and the catalogue's saved result sets
        memory = getattr(self.catalogue, "memory", None)
        if not isinstance(memory, MemoryBudget):  # a stand-in catalogue keeps no result sets
            memory = MemoryBudget(gateway.config.z3950.memory_budget)
        self.memory: MemoryBudget = memory
        self.log_limiter = LogLimiter(self.clock)

    def buildProtocol(self, addr: Any) -> Z3950Protocol:
        return Z3950Protocol(self)

    def refusal(self, addr: Any, why: str) -> Z3950Protocol:
        """A protocol for a connection over the caps: its Init is refused with diagnostic
        1018 and C{why} as addinfo, then it closes (the limiter's refuser)."""
        return Z3950Protocol(self, refusal=why)

    def association_settings(self, remote: str) -> AssociationSettings:
        """Limits, identity and peer credentials for a new association from C{remote}.

        Remembered per address until the configuration changes (a reload replaces it).
        """
        config = self.gateway.config
        if config is not self._settings_config:
            self._settings_config, self._settings = config, {}
            self.memory.limit = config.z3950.memory_budget
        settings = self._settings.get(remote)
        if settings is None:
            if len(self._settings) >= SETTINGS_CACHE_SIZE:
                self._settings.clear()
            settings = self._settings[remote] = self._make_settings(config, remote)
        return settings

    @staticmethod
    def _make_settings(config: Any, remote: str) -> AssociationSettings:
        z = config.z3950
        peers = tuple(
            PeerIdentity(name=p.name, user=p.z3950_user, password=p.z3950_password,
                         charset=p.z3950_charset, address_allowed=p.allows(remote))
            for p in config.peers if p.z3950_user)
        return AssociationSettings(
            preferred_message_size=z.preferred_message_size,
            exceptional_record_size=z.exceptional_record_size,
            max_result_sets=z.max_result_sets, max_present_records=z.max_present_records,
            max_queued_requests=z.max_pipelined_requests,
            require_auth=z.require_auth, peers=peers, implementation_id="Interlend",
            implementation_name="Interlend", implementation_version=__version__)

    def operation_started(self) -> None:
        self.in_flight += 1

    def operation_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def wait_idle(self) -> Deferred[None]:
        """Fires when no catalogue operation is in progress on any association."""
        if self.in_flight == 0:
            return succeed(None)

        def cancel(d: Deferred[None]) -> None:
            if d in self._idle_waiters:
                self._idle_waiters.remove(d)

        waiter: Deferred[None] = Deferred(cancel)
        self._idle_waiters.append(waiter)
        return waiter

    def close_all(self) -> None:
        """Send Close(shutdown) on every open association and drop the connections.

        Audit rows still gathered in a batch go to the writer now, before the store stops.
        """
        for association in list(self.associations):
            association.shutdown()
        if isinstance(self.audit, AuditBatch):
            self.audit.flush()
