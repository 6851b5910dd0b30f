# -*- test-case-name: tests.gateway.test_upstream_z3950_faults -*-
"""Init on a new upstream association: credentials, options, character set negotiation."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, inlineCallbacks

from gateway.backends.upstream.z3950.connection import UpstreamAssociation, UpstreamError
from protocols.z3950.client import Authentication, InitResponseInfo, init_request

if TYPE_CHECKING:
    from gateway.backends.upstream.z3950.settings import Z3950Settings

OPTIONS = ("search", "present", "delSet", "scan", "sort", "namedResultSets")


class UpstreamRefused(UpstreamError):
    """The target refused our Init (credentials, say)."""


@inlineCallbacks
def initialise(association: UpstreamAssociation, settings: Z3950Settings
               ) -> Generator[Deferred[Any], Any, UpstreamAssociation]:
    """Send Init; fire with the association once accepted, else fail (and close it)."""
    auth = None
    if settings.user:
        auth = Authentication("open", settings.user, settings.password)
    pdu = init_request(options=OPTIONS, authentication=auth,
                       implementation_name="Interlend upstream client",
                       charsets=(settings.charset,) if settings.charset else (),
                       records_in_selected_charsets=True if settings.charset else None)
    try:
        answer = yield association.request(pdu, settings.request_timeout)
    except UpstreamError:
        association.abort()
        raise
    if not isinstance(answer, InitResponseInfo):
        association.abort()
        raise UpstreamError(f"a {type(answer).__name__} answered our Init")
    if not answer.accepted:
        association.close()
        why = "; ".join(f"{d.condition} {d.addinfo!s}" if d.addinfo else str(d.condition)
                        for d in answer.diagnostics)
        raise UpstreamRefused(f"the upstream refused Init{': ' + why if why else ''}")
    if answer.charset is not None:
        association.charset = answer.charset.codec
    return association
