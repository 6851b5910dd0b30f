"""Test-only fault injection, loaded into a daemon process by ``PYTHONPATH`` (see
:func:`tests.gateway.upstream_ncip.peers.kill_after`), never part of the gateway.

With ``INTERLEND_TEST_KILL_AFTER_UPSTREAM`` set to an NCIP service name, the process kills
itself (SIGKILL) right after the LMS's answer to that service is recorded in the outbox, that
is between the LMS's change and the gateway's own commit: the crash the outbox exists for.
"""

from __future__ import annotations

import os
import signal

SERVICE = os.environ.get("INTERLEND_TEST_KILL_AFTER_UPSTREAM")

if SERVICE:
    from gateway.backends.upstream.ncip import outbox as _outbox

    _answered = _outbox.Outbox.answered

    def _answered_then_die(self: _outbox.Outbox, unit: str, seq: int, status: int,
                           reply: bytes) -> None:
        _answered(self, unit, seq, status, reply)
        row = self.find(unit, seq)
        if row is not None and row.service == SERVICE:
            os.kill(os.getpid(), signal.SIGKILL)

    _outbox.Outbox.answered = _answered_then_die  # type: ignore[method-assign]
