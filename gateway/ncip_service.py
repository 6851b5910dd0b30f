# -*- test-case-name: tests.gateway.test_ncip_service -*-
"""The NCIP service: parse, attribute to a peer, dispatch, and map every failure to a Problem.

This is the one place where NCIP failures become replies: a body that cannot be parsed gets a
message-level ``Invalid Message Syntax Error``; a request that cannot be attributed gets
``Unknown Agency`` or ``Agency Authentication Failed`` and nothing is done; a known domain error
(:class:`NCIPProblem`) is written in the request's dialect; anything unexpected is logged and
answered with ``Temporary Processing Failure``. Services not handled yet get ``Unsupported
Service``. The reply is always NCIP bytes: the HTTP layer sends it with status 200.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gateway.config import Peer
from gateway.http import NcipRequestContext
from gateway.peers import Credentials, PeerError, attribute
from protocols.ncip.dialect import PrefixStyle
from protocols.ncip.messages import Envelope
from protocols.ncip.parser import parse_message
from protocols.ncip.problems import NCIPProblem, NCIPSyntaxError, ProblemType
from protocols.ncip.responses import NCIPResponse
from protocols.ncip.writer import render_problem, render_response

log = Logger()

PREFIX_STYLES = {"ns1": PrefixStyle.NS1, "default": PrefixStyle.DEFAULT,
                 "none": PrefixStyle.NONE}


@dataclass(frozen=True)
class NcipCall:
    """One parsed, attributed request, as a service handler receives it."""

    envelope: Envelope
    peer: Peer
    context: NcipRequestContext


Handler = Callable[[NcipCall], Awaitable[NCIPResponse]]


class NcipService:
    """Turns NCIP request bodies into reply bodies for the gateway's configured peers."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.handlers: dict[str, Handler] = {}

    def handle(self, body: bytes, context: NcipRequestContext) -> Deferred[bytes]:
        """The reply to one request body (never fails: errors are written as Problems)."""
        return Deferred.fromCoroutine(self._handle(body, context))

    async def _handle(self, body: bytes, context: NcipRequestContext) -> bytes:
        config = self.gateway.config
        agency = config.gateway.agency_id
        try:
            envelope = parse_message(body, max_bytes=config.ncip.max_body_size,
                                     tz=ZoneInfo(config.gateway.timezone))
        except NCIPSyntaxError as e:
            log.info("NCIP message from {host} refused: {reason}", host=context.remote_host,
                     reason=e.reason)
            return render_problem(e, None, local_agency=agency)
        header = envelope.message.header
        creds = Credentials(
            remote_host=context.remote_host,
            from_agency=header.from_agency.value if header and header.from_agency else None,
            from_system=header.from_system.value if header and header.from_system else None,
            application_profile=str(header.application_profile)
            if header and header.application_profile else None,
            agency_secret=header.from_agency_authentication if header else None,
            url_token=context.url_token, bearer_token=context.bearer_token)
        try:
            peer = attribute(config.peers, creds)
        except PeerError as e:
            log.warn("NCIP {service} from {host} refused: {reason}", service=envelope.service,
                     host=context.remote_host, reason=e.reason)
            problem_type = (ProblemType.UNKNOWN_AGENCY if e.unknown
                            else ProblemType.AGENCY_AUTHENTICATION_FAILED)
            return render_problem(
                NCIPProblem(problem_type, element="FromAgencyId",
                            value=e.value if e.unknown else None),
                envelope, prefix_style=envelope.prefix_style, local_agency=agency)
        style = PREFIX_STYLES[peer.namespace_style]
        try:
            handler = self.handlers.get(envelope.service)
            if handler is None:
                raise NCIPProblem(ProblemType.UNSUPPORTED_SERVICE, element=envelope.service)
            response = await handler(NcipCall(envelope, peer, context))
            return render_response(response, envelope, prefix_style=style, local_agency=agency)
        except NCIPProblem as problem:
            return render_problem(problem, envelope, prefix_style=style, local_agency=agency)
        except Exception:
            log.failure("NCIP {service} from peer {peer} failed", service=envelope.service,
                        peer=peer.name)
            return render_problem(NCIPProblem(ProblemType.TEMPORARY_PROCESSING_FAILURE),
                                  envelope, prefix_style=style, local_agency=agency)

    def timeout_reply(self, body: bytes, context: NcipRequestContext) -> bytes:
        """The reply when a request ran out of its time budget: Temporary Processing Failure."""
        problem = NCIPProblem(ProblemType.TEMPORARY_PROCESSING_FAILURE)
        agency = self.gateway.config.gateway.agency_id
        try:
            envelope = parse_message(body, max_bytes=self.gateway.config.ncip.max_body_size)
        except NCIPProblem:
            return render_problem(problem, None, local_agency=agency)
        return render_problem(problem, envelope, prefix_style=envelope.prefix_style,
                              local_agency=agency)
