"""The NCIP answer path without Deferred chains: ``run_inline`` and the listener's inline reply."""

from __future__ import annotations

import io
from typing import cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyRequest

from gateway.listeners.ncip_http import NcipRequestContext, NcipResource
from gateway.ncip.service import run_inline


async def _answer(d: Deferred[int]) -> int:
    return (await d) + 1


def test_fired_awaits_give_a_fired_deferred() -> None:
    """A coroutine that awaits only fired Deferreds is run to its end at once."""
    d = run_inline(_answer(succeed(41)))
    assert d.called
    assert d.result == 42


def test_waiting_coroutine_resumes_under_twisted() -> None:
    """A coroutine that waits is resumed when what it awaits fires, with its value."""
    pending: Deferred[int] = Deferred()
    d = run_inline(_answer(pending))
    assert not d.called
    pending.callback(1)
    assert d.result == 2


def test_errors_reach_the_coroutine_and_the_caller() -> None:
    """A failure of what the coroutine awaits is raised inside it (it may handle it)."""
    pending: Deferred[int] = Deferred()

    async def handles() -> str:
        try:
            await pending
        except KeyError:
            return "handled"
        return "not raised"

    d = run_inline(handles())
    pending.errback(KeyError("x"))
    assert d.result == "handled"
    d2 = run_inline(_answer(fail(ValueError("at once"))))
    caught: list[Failure] = []
    d2.addErrback(caught.append)
    assert caught and caught[0].check(ValueError)
    later: Deferred[int] = Deferred()
    d3 = run_inline(_answer(later))
    later.errback(ValueError("later"))
    failures: list[object] = []
    d3.addErrback(failures.append)
    assert len(failures) == 1


class _Handler:
    def __init__(self, answer: Deferred[bytes] | None = None, raises: bool = False) -> None:
        self.answer, self.raises = answer, raises

    def handle(self, body: bytes, context: NcipRequestContext) -> Deferred[bytes]:
        if self.raises:
            raise RuntimeError("handler bug")
        return self.answer if self.answer is not None else succeed(b"<now/>")

    def timeout_reply(self, body: bytes, context: NcipRequestContext) -> bytes:
        return b"<timeout/>"


class _Request(DummyRequest):
    path: bytes
    content: io.BytesIO


def _post(resource: NcipResource) -> _Request:
    request = _Request([b"ncip"])
    request.method = b"POST"
    request.path = b"/ncip"
    request.content = io.BytesIO(b"<x/>")
    assert resource.render(cast(Request, request)) == NOT_DONE_YET
    return request


def _resource(handler: _Handler, clock: Clock) -> NcipResource:
    return NcipResource(handler, path="/ncip", request_timeout=25.0,
                        health=lambda: {"status": "ok"}, clock=clock)


def test_inline_answer_arms_no_budget() -> None:
    """An answer already fired is written at once: finished, no timer left, none in flight."""
    clock = Clock()
    resource = _resource(_Handler(), clock)
    request = _post(resource)
    assert request.finished and b"".join(request.written) == b"<now/>"
    assert request.responseHeaders.getRawHeaders(b"content-length") == [b"6"]
    assert clock.getDelayedCalls() == [] and resource.in_flight == 0


def test_handler_raising_at_once_gets_the_failure_reply() -> None:
    """A handler that raises synchronously still gets an NCIP answer (never a 500)."""
    clock = Clock()
    request = _post(_resource(_Handler(raises=True), clock))
    assert request.finished and b"".join(request.written) == b"<timeout/>"
    assert request.responseCode == 200


def test_waiting_answer_keeps_its_budget() -> None:
    """An answer that waits keeps the time budget: past it, the timeout reply is sent."""
    clock = Clock()
    resource = _resource(_Handler(answer=Deferred()), clock)
    request = _post(resource)
    assert not request.finished and len(clock.getDelayedCalls()) == 1
    assert resource.in_flight == 1
    clock.advance(25.0)
    assert request.finished and b"".join(request.written) == b"<timeout/>"
    assert resource.in_flight == 0
