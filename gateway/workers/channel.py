# -*- test-case-name: tests.gateway.test_workers -*-
"""The control channel between the primary and one worker: length-prefixed messages on a pipe.

A message is ``(kind, payload)``, pickled: both ends are this program, started by the primary
itself over a private pipe (nothing else can write to it), and the payloads are the gateway's
own dataclasses (a :class:`~gateway.config.Config`, :class:`~gateway.audit.AuditEntry` rows).
AMP's 64 KiB value limit is too small for a batch of audit rows with bodies; a 32-bit length
prefix is not.

Primary to worker: ``config`` (the configuration in force, at start and after each reload),
``stop`` (drain and exit). Worker to primary: ``ready``, ``rows`` (audit rows and metric
observations, batched), ``figures`` (open connections, every second), ``stopped``.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from twisted.protocols.basic import Int32StringReceiver

MAX_MESSAGE = 256 * 1024 * 1024
"""Largest message taken (a batch of audit rows with bodies of up to 4 MiB each)."""

Handler = Callable[[str, Any], None]


def encode(kind: str, payload: Any = None) -> bytes:
    """One message's bytes, without the length prefix."""
    return pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)


class Channel(Int32StringReceiver):
    """Frames messages on a byte stream; hands each ``(kind, payload)`` to ``handler``."""

    MAX_LENGTH = MAX_MESSAGE

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def send(self, kind: str, payload: Any = None) -> None:
        """Queue one message on the transport (no-op once it is gone)."""
        if self.transport is not None:
            self.sendString(encode(kind, payload))

    def stringReceived(self, string: bytes) -> None:
        kind, payload = pickle.loads(string)  # noqa: S301 - our own pipe (see module doc)
        self.handler(kind, payload)
