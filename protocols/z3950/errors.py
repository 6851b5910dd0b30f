# -*- test-case-name: tests.protocols.test_z3950_ber,tests.protocols.test_z3950_codec -*-
"""Errors raised by the Z39.50 codec layer, each carrying the Close reason to send.

Whatever goes wrong below the association layer (framing, limits, undecodable BER, a PDU
that does not match the ASN.1) surfaces as one exception type, L{Z3950ProtocolError}, so
the server has a single place that turns it into ``Close(protocolError)`` and a TCP close.
"""

from __future__ import annotations

from enum import IntEnum


class CloseReason(IntEnum):
    """Z39.50 ``CloseReason`` values ([211] IMPLICIT INTEGER)."""

    finished = 0
    shutdown = 1
    systemProblem = 2
    costLimit = 3
    resources = 4
    securityViolation = 5
    protocolError = 6
    lackOfActivity = 7
    peerAbort = 8
    unspecified = 9


class Z3950ProtocolError(Exception):
    """Malformed, over-limit or undecodable input: answer with a Close PDU and drop the link.

    @ivar close_reason: the L{CloseReason} the association should send before closing.
    """

    def __init__(self, message: str, close_reason: CloseReason = CloseReason.protocolError) -> None:
        super().__init__(message)
        self.close_reason = close_reason


class BERLimitError(Z3950ProtocolError):
    """A configured limit (PDU size, nesting depth, tag or length octets) was exceeded."""


class PQFError(ValueError):
    """A PQF query string could not be parsed; C{position} is the offending character offset."""

    def __init__(self, message: str, position: int | None = None) -> None:
        where = f" at offset {position}" if position is not None else ""
        super().__init__(f"{message}{where}")
        self.position = position


class QueryConversionError(ValueError):
    """An RPN query uses a construct the query model does not represent (e.g. prox, type-101)."""
