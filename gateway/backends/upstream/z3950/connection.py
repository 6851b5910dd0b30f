# -*- test-case-name: tests.gateway.test_upstream_z3950_pqf -*-
"""One upstream association: a Twisted protocol that sends a request and waits for its answer.

Z39.50 answers requests in order, and we send one at a time, so a request is a Deferred fired
by the next PDU; a request that is not answered within its time closes the association (a late
answer would be read as the answer to the next request). Failures are
:class:`UpstreamError`; the catalogue turns them into domain errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from protocols.z3950.ber import BERFramer
from protocols.z3950.client import ResponseInfo, read_response
from protocols.z3950.codec import decode_pdu, encode_pdu, pdu_arm
from protocols.z3950.errors import Z3950ProtocolError
from protocols.z3950.fastber_origin import read_response as fast_read_response

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from protocols.z3950.asn1 import PDU


class UpstreamError(Exception):
    """The upstream target failed us: down, slow, closed, or it answered garbage."""


class UpstreamClosed(UpstreamError):
    """The upstream closed the association (or it was lost)."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the request time."""


class UpstreamAssociation(Protocol):
    """The origin side of one Z39.50 association; one request in flight at a time."""

    def __init__(self, clock: IReactorTime, max_pdu_size: int = 16 * 1024 * 1024) -> None:
        self.clock = clock
        self._framer = BERFramer(max_pdu_size=max_pdu_size)
        self._waiting: Deferred[ResponseInfo] | None = None
        self._timer: IDelayedCall | None = None
        self.closed = False
        self.connected_deferred: Deferred[UpstreamAssociation] = Deferred()
        self.result_sets: dict[str, object] = {}
        """The upstream result sets this association holds: name → the handle it serves."""
        self._next_set = 0
        self.last_used = 0.0
        self.charset = "utf-8"
        self.answered = 0
        """Responses read so far (Init included): a reused association has answered before."""

    # -- Twisted ------------------------------------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        # one small request, then wait for its answer: Nagle's algorithm would hold each
        # request back for the previous answer's delayed ACK
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.last_used = self.clock.seconds()
        self.connected_deferred.callback(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        try:
            frames = self._framer.feed(data)
            for frame in frames:
                # Search and Present responses with plain records are read without pyasn1
                # (the same dataclasses); everything else is decoded by pyasn1 as before
                info = fast_read_response(frame)
                if info is not None:
                    self._answered(info)
                else:
                    self._answer(decode_pdu(frame, framed=True))
        except (Z3950ProtocolError, ValueError) as e:
            self._fail(UpstreamError(f"garbage from the upstream: {e}"))
            self.abort()

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self.closed = True
        why = reason.getErrorMessage() if reason is not None else "closed"
        self._fail(UpstreamClosed(f"upstream association lost: {why}"))

    # -- requests -----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a request waits for its answer."""
        return self._waiting is not None

    def request(self, pdu: PDU | bytes, timeout: float) -> Deferred[ResponseInfo]:
        """Send ``pdu`` (or its BER bytes, as the fast encoders give them); fire with the
        response read (:func:`read_response`), or fail with an :class:`UpstreamError` (the
        association is then closed)."""
        if self.closed or self.transport is None:
            raise UpstreamClosed("upstream association closed")
        if self._waiting is not None:
            raise RuntimeError("one request at a time on an upstream association")
        waiting: Deferred[ResponseInfo] = Deferred()
        self._waiting = waiting
        self._timer = self.clock.callLater(timeout, self._timed_out, timeout)
        self.last_used = self.clock.seconds()
        self.transport.write(pdu if isinstance(pdu, bytes) else encode_pdu(pdu))
        return waiting

    def claim_set_name(self, slots: int) -> str:
        """The name for the next result set: ``slots`` names used in turn, each search
        replacing the oldest set, so the target never holds more than ``slots`` of ours."""
        name = f"il{self._next_set % slots}"
        self._next_set += 1
        self.result_sets.pop(name, None)
        return name

    def close(self) -> None:
        """Close the association (no Close PDU: the target frees it when the socket goes)."""
        self.closed = True
        if self.transport is not None:
            self.transport.loseConnection()

    def abort(self) -> None:
        """Drop the connection at once."""
        self.closed = True
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _timed_out(self, timeout: float) -> None:
        self._timer = None
        self._fail(UpstreamTimeout(f"the upstream did not answer within {timeout:g} s"))
        self.abort()

    def _answer(self, pdu: PDU) -> None:
        waiting = self._take()
        if waiting is None:
            raise Z3950ProtocolError(f"unexpected {pdu_arm(pdu)} from the upstream")
        if pdu_arm(pdu) == "close":
            self.closed = True
            waiting.errback(UpstreamClosed("the upstream closed the association"))
            self.close()
            return
        try:
            info: Any = read_response(pdu)
        except Exception as e:  # a response we cannot read is garbage, whatever the cause
            waiting.errback(UpstreamError(f"unreadable {pdu_arm(pdu)}: {e}"))
            self.abort()
            return
        self._deliver(waiting, info)

    def _answered(self, info: ResponseInfo) -> None:
        """A response read on the fast path (a Search or Present response)."""
        waiting = self._take()
        if waiting is None:
            raise Z3950ProtocolError(f"unexpected {type(info).__name__} from the upstream")
        self._deliver(waiting, info)

    def _deliver(self, waiting: Deferred[ResponseInfo], info: ResponseInfo) -> None:
        self.last_used = self.clock.seconds()
        self.answered += 1
        waiting.callback(info)

    def _take(self) -> Deferred[ResponseInfo] | None:
        waiting, self._waiting = self._waiting, None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return waiting

    def _fail(self, error: UpstreamError) -> None:
        waiting = self._take()
        if waiting is not None:
            waiting.errback(error)
