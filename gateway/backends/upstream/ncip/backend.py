# -*- test-case-name: tests.gateway.upstream_ncip.test_settings_and_shapes -*-
"""The ``ncip`` backend as the registry sees it: circulation only, settings in
``[backend.ncip]``.

Registered in ``setup.cfg`` as ``ncip = gateway.backends.upstream.ncip.backend:backend``
under ``interlend.backends``; chosen with ``[backend] circulation = "ncip"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from zope.interface import implementer

from gateway.backends.registry import BackendContext, BackendUnavailable, IBackend
from gateway.backends.upstream.ncip import settings as ncip_settings

if TYPE_CHECKING:
    from gateway.backends.upstream.ncip.circulation import UpstreamNcipCirculation
    from gateway.domain.catalogue import ICatalogue


@implementer(IBackend)
class NcipBackend:
    """Circulation on the library's own NCIP responder; no catalogue."""

    kind = "ncip"

    def settings_problems(self, table: Mapping[str, Any], path: str) -> list[str]:
        """See :func:`gateway.backends.registry.settings_problems`."""
        return ncip_settings.problems(table, path)

    def catalogue(self, context: BackendContext) -> ICatalogue:
        """None here: the catalogue is another backend's (``[backend] catalogue``)."""
        raise BackendUnavailable(self.kind, "the ncip backend serves circulation only; set "
                                 "[backend] catalogue to another kind", "backend.catalogue")

    def circulation(self, context: BackendContext) -> UpstreamNcipCirculation:
        """The upstream circulation, its HTTP client and its outbox beside the database."""
        from gateway.backends.upstream.ncip.circulation import Upstream, UpstreamNcipCirculation
        from gateway.backends.upstream.ncip.client import NcipHttpClient
        from gateway.backends.upstream.ncip.outbox import Outbox
        from gateway.backends.upstream.ncip.profiles import PROFILES

        s = ncip_settings.load(context.settings)
        config = context.config()
        database = Path(config.gateway.database)
        outbox = Path(s.outbox) if s.outbox else database.with_name(
            database.name + ".ncip-outbox")
        client = NcipHttpClient(context.clock, s.request_url(), timeout=s.timeout,
                                max_in_flight=s.max_in_flight, headers=s.headers(),
                                tls=(s.client_cert, s.client_key)
                                if s.auth == "client-cert" else None)
        tz = ZoneInfo(s.timezone or config.gateway.timezone)
        profile = PROFILES[s.profile]
        if s.namespace and not profile.shape.ncip1:
            from dataclasses import replace
            from typing import cast

            from protocols.ncip.upstream import Style

            profile = replace(profile, shape=replace(profile.shape,
                                                     style=cast(Style, s.namespace)))
        upstream = Upstream(client=client, profile=profile, outbox=Outbox(outbox),
                            from_agency=s.from_agency, to_agency=s.to_agency, tz=tz,
                            reactor=context.clock, audit=context.audit, lms_user=s.lms_user)
        from gateway.backends.upstream.ncip.metrics import UpstreamCollector

        box = upstream.outbox
        context.metrics.registry.register(UpstreamCollector(
            client.health, s.profile, lambda: box.count("pending")))
        return UpstreamNcipCirculation(context.store, upstream)


backend = NcipBackend()
"""The object the ``ncip`` entry point names."""
