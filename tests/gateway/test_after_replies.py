"""A worker's audit rows for lookups are built after the reply has left
(``gateway/workers/after_replies.py``): queued work waits for a reactor poll, never longer
than two turns, and nothing is lost at a flush."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest_twisted
from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from gateway.workers.after_replies import AfterReplies


class _Call:
    def __init__(self, func: Callable[[], None]) -> None:
        self.func = func
        self.cancelled = False

    def active(self) -> bool:
        return not self.cancelled

    def cancel(self) -> None:
        self.cancelled = True


class Turns:
    """A reactor's timed calls, one iteration at a time: ``turn()`` runs the calls made
    before it (a call made during a turn waits for the next, as after a poll)."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []

    def callLater(self, delay: float, func: Callable[..., None], *args: Any) -> _Call:
        call = _Call(lambda: func(*args))
        self.calls.append(call)
        return call

    def turn(self) -> None:
        calls, self.calls = self.calls, []
        for call in calls:
            if call.active():
                call.func()


def test_work_runs_once_a_poll_has_passed() -> None:
    turns = Turns()
    after = AfterReplies(turns)
    done: list[str] = []
    after(lambda: done.append("a"))  # during poll 0 (with its reply)
    turns.turn()  # before poll 1, which sends a's reply
    assert done == [] and after.pending == 1
    after(lambda: done.append("b"))  # during poll 1
    turns.turn()
    assert done == ["a"]
    turns.turn()
    assert done == ["a", "b"]
    turns.turn()
    assert not turns.calls and after.pending == 0  # idle: no timer left


def test_flush_runs_everything_at_once_and_a_failure_loses_no_other() -> None:
    turns = Turns()
    after = AfterReplies(turns)
    done: list[int] = []
    after(lambda: done.append(1))
    turns.turn()

    def fails() -> None:
        raise ZeroDivisionError("one row's failure")

    after(fails)
    after(lambda: done.append(2))
    after.flush()
    assert done == [1, 2] and after.pending == 0
    assert all(not call.active() for call in turns.calls)


class _Answering(protocol.Protocol):
    """Answers each chunk at once and queues a check of its own send buffer."""

    def __init__(self, after: AfterReplies, seen: list[int]) -> None:
        self.after = after
        self.seen = seen

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(b"reply:" + data)  # type: ignore[union-attr]
        transport: Any = self.transport
        self.after(lambda: self.seen.append(
            transport._tempDataLen + len(transport.dataBuffer)))


class _Client(protocol.Protocol):
    def __init__(self) -> None:
        self.received = Deferred[bytes]()

    def connectionMade(self) -> None:
        self.transport.write(b"ask")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if not self.received.called:
            self.received.callback(data)


@pytest_twisted.ensureDeferred
async def test_with_the_real_reactor_the_reply_is_sent_before_the_work_runs() -> None:
    """Over loopback TCP: when the queued work runs, the reply it followed is no longer in
    the transport's buffer (Twisted has handed it to the kernel)."""
    after = AfterReplies(reactor)
    seen: list[int] = []
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(lambda: _Answering(after, seen)))
    try:
        client = _Client()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            protocol.Factory.forProtocol(lambda: client))
        assert await client.received == b"reply:ask"
        while not seen:  # the check runs on the reactor: let it turn
            waited = Deferred[None]()
            reactor.callLater(0.01, waited.callback, None)
            await waited
        assert seen == [0]
        client.transport.loseConnection()  # type: ignore[union-attr]
    finally:
        await port.stopListening()
