# -*- test-case-name: tests.gateway.test_oai_harvest,tests.gateway.test_oai_daemon -*-
"""The OAI-PMH HTTP listener: GET query or POST form to the provider, chunks to the transport.

Transport concerns only: the path, methods (GET and POST with
``application/x-www-form-urlencoded``; others 405), the body limit (the site's), a per-host
request rate (429), and one audit row per request (protocol ``oai``, operation the verb,
outcome ``ok`` or the OAI error code). Every OAI-PMH outcome, errors included, is HTTP 200
with an OAI-PMH body, as the protocol asks. The response is written chunk by chunk as the
provider returns them; a connection lost meanwhile simply stops the writing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.http import Request

from gateway.config import OaiSettings
from gateway.domain.harvest import IHarvestable
from gateway.listeners.limits import ConnectionLimitFactory, RateLimiter
from gateway.listeners.ncip_http import GatewaySite
from gateway.oai.provider import OAIProvider, ProviderSettings
from gateway.secrets import derived_key
from gateway.storage.audit_log import AuditEntry, audit_time
from gateway.z3950.retrieval import Presentation
from protocols.oai import TokenCodec

__all__ = ["OaiResource", "oai_factory"]

log = Logger()
_VERB = re.compile(rb"(?:^|&)verb=([A-Za-z]{1,30})(?:&|$)")
_ERROR = re.compile(rb'<error code="([A-Za-z]+)"')


class OaiResource(resource.Resource):
    """Serves the OAI-PMH base URL path; everything else is 404."""

    isLeaf = True

    def __init__(self, provider: OAIProvider, *, path: str, clock: Any,
                 audit: Callable[[AuditEntry], object] | None = None,
                 max_requests_per_second: float = 0.0) -> None:
        super().__init__()
        self.provider = provider
        self._path = path.rstrip("/").encode("utf-8") or b"/"
        self._clock = clock
        self._audit = audit
        self.rate = RateLimiter(max_requests_per_second, max(1.0, 2 * max_requests_per_second),
                                clock)

    def render(self, request: Request) -> bytes | int:
        if (request.path.rstrip(b"/") or b"/") != self._path:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain")
            return b"not found\n"
        if request.method == b"GET":
            query = request.uri.partition(b"?")[2]
        elif request.method == b"POST":
            ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
            if ctype != b"application/x-www-form-urlencoded":
                request.setResponseCode(415)
                request.setHeader(b"content-type", b"text/plain")
                return b"OAI-PMH POST bodies are application/x-www-form-urlencoded\n"
            query = request.content.read() if request.content is not None else b""
        else:
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, POST")
            request.setHeader(b"content-type", b"text/plain")
            return b"OAI-PMH requests are GET or POST\n"
        host = str(getattr(request.getClientAddress(), "host", "unix"))
        if not self.rate.allow(host):
            request.setResponseCode(429)
            request.setHeader(b"retry-after", b"1")
            request.setHeader(b"content-type", b"text/plain")
            return b"too many requests\n"
        started = self._clock.seconds()
        now = datetime.fromtimestamp(int(started), timezone.utc)
        finished: list[bool] = []
        request.notifyFinish().addErrback(lambda _: finished.append(False))

        def write(chunks: list[bytes]) -> None:
            if finished:
                return
            request.setHeader(b"content-type", b"text/xml; charset=utf-8")
            size = 0
            for chunk in chunks:
                size += len(chunk)
                request.write(chunk)
            request.finish()
            self._record(query, chunks, host, started, size)

        def failed(failure: Failure) -> None:
            log.failure("OAI-PMH request failed", failure)
            if not finished:
                request.setResponseCode(500)
                request.write(b"internal error\n")
                request.finish()
            self._record(query, [], host, started, 0, outcome="failed")

        self.provider.handle(query, now).addCallbacks(write, failed)
        return server.NOT_DONE_YET

    def _record(self, query: bytes, chunks: list[bytes], host: str, started: float,
                size: int, outcome: str | None = None) -> None:
        if self._audit is None:
            return
        verb = _VERB.search(query)
        error = _ERROR.search(chunks[0]) if len(chunks) == 1 else None
        entry = AuditEntry(
            protocol="oai", operation=verb.group(1).decode() if verb else "none",
            outcome=outcome or (error.group(1).decode() if error else "ok"), remote=host,
            duration_us=int((self._clock.seconds() - started) * 1e6),
            request_size=len(query), response_size=size,
            time=audit_time(datetime.fromtimestamp(self._clock.seconds(), timezone.utc)))
        try:
            self._audit(entry)
        except Exception:  # noqa: BLE001 - auditing never breaks an exchange
            log.failure("OAI-PMH audit row not written")


def oai_factory(settings: OaiSettings, harvest: IHarvestable, key: bytes, *, clock: Any,
                agency_id: str = "INTERLEND",
                audit: Callable[[AuditEntry], object] | None = None
                ) -> tuple[OaiResource, ConnectionLimitFactory]:
    """The ``[oai]`` listener's resource and connection-limited site, tokens signed with a key
    derived from the gateway key (so they survive restarts, and only this gateway's verify)."""
    provider = OAIProvider(harvest, TokenCodec(derived_key(key, "oai-resumption-token")),
                           ProviderSettings(
                               repository_name=settings.repository_name,
                               base_url=settings.base_url,
                               repository_identifier=settings.repository_identifier,
                               admin_emails=settings.admin_emails,
                               page_size=settings.page_size,
                               token_lifetime=settings.token_lifetime,
                               view=Presentation(agency_id=agency_id)))
    oai = OaiResource(provider, path=settings.path, clock=clock, audit=audit,
                      max_requests_per_second=settings.max_requests_per_second_per_peer)
    site = GatewaySite(oai, max_body_size=settings.max_body_size,
                       idle_timeout=settings.idle_timeout,
                       request_arrival_timeout=settings.request_arrival_timeout, reactor=clock)
    return oai, ConnectionLimitFactory(
        site, max_total=settings.max_connections,
        max_per_host=settings.max_connections_per_peer, name="oai", clock=clock)
