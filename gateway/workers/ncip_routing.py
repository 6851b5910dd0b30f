# -*- test-case-name: tests.gateway.test_workers -*-
"""NCIP in a worker: read-only lookups answered here, everything else forwarded whole.

A worker answers LookupUser, LookupItem and LookupItemSet that carry no
``AuthenticationInput`` (a PIN check writes the lock-out book) with its own reader connections.
Every other request -- state changes, version lookups, PIN checks, anything this module cannot
classify for sure -- is forwarded as bytes to the primary, which runs it through its one
service (the exactly-once waiters, the writer, the audit row committed with the change) and
returns the reply bytes: the worker's reply still means what the primary's means.

The classification reads only the bytes (no second parse): the name of the first element
inside ``NCIPMessage``. A request it misreads as a lookup is still parsed by the worker's own
service, which has only the lookup handlers: a state change can never run in a worker.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from gateway.listeners.ncip_http import NcipRequestContext

LOCAL_SERVICES = frozenset({b"LookupUser", b"LookupItem", b"LookupItemSet"})
"""Services a worker answers itself (when no ``AuthenticationInput`` is present)."""

_SERVICE = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?NCIPMessage\b[^>]*>"        # the message element
    rb"(?:\s|<!--(?:(?!-->).)*-->)*"                       # blanks and comments
    rb"<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)[\s/>]",   # the service element
    re.DOTALL)


def answered_here(body: bytes) -> bool:
    """Whether a worker may answer ``body`` itself: a lookup it is sure of, with no
    authentication input. False whenever in doubt (the primary answers everything)."""
    if b"AuthenticationInput" in body:
        return False
    match = _SERVICE.search(body, 0, 4096)
    return match is not None and match.group(1) in LOCAL_SERVICES


class SplitHandler:
    """The worker's NCIP handler: local lookups to ``local``, the rest to ``forward``."""

    def __init__(self, local: Any,
                 forward: Callable[[bytes, NcipRequestContext], Deferred[bytes]]) -> None:
        self.local = local
        self.forward = forward
        self.forwarded = 0
        self.answered = 0

    def handle(self, body: bytes, context: NcipRequestContext) -> Deferred[bytes]:
        if answered_here(body):
            self.answered += 1
            d: Deferred[bytes] = self.local.handle(body, context)
            return d
        self.forwarded += 1
        return self.forward(body, context)

    def timeout_reply(self, body: bytes, context: NcipRequestContext) -> bytes:
        reply: bytes = self.local.timeout_reply(body, context)
        return reply
