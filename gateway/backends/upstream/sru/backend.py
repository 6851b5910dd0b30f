# -*- test-case-name: tests.gateway.test_upstream_sru_settings -*-
"""The SRU upstream as the registry sees it: kind ``sru``, a catalogue only.

Registered in ``setup.cfg`` as ``sru = gateway.backends.upstream.sru.backend:backend`` under
``interlend.backends``; chosen with ``[backend] catalogue = "sru"`` (circulation stays with
another kind), configured in ``[backend.sru]`` (:mod:`.settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from gateway.backends.registry import BackendContext, BackendUnavailable, IBackend

if TYPE_CHECKING:
    from gateway.domain.catalogue import ICatalogue
    from gateway.domain.circulation import ICirculation


@implementer(IBackend)
class SruBackend:
    """The library's own catalogue behind its SRU server."""

    kind = "sru"

    def settings_problems(self, table: Mapping[str, Any], path: str) -> list[str]:
        """Every problem of ``[backend.sru]``, each as ``path.key: why``."""
        from gateway.backends.upstream.sru.settings import SruSettingsError, read_settings

        try:
            read_settings(table, path)
        except SruSettingsError as e:
            return e.problems
        return []

    def catalogue(self, context: BackendContext) -> ICatalogue:
        """The upstream SRU catalogue: a pooled client on the gateway's reactor, its calls
        counted in the gateway's metrics."""
        from gateway.backends.upstream.sru.catalogue import UpstreamSruCatalogue
        from gateway.backends.upstream.sru.client import SruClient
        from gateway.backends.upstream.sru.metrics import observe
        from gateway.backends.upstream.sru.settings import read_settings

        settings = read_settings(context.settings, context.settings_path or "backend.sru")
        client = SruClient(
            context.clock, settings.base_url, version=settings.version,
            username=settings.username, password=settings.password,
            timeout=settings.timeout, connect_timeout=settings.connect_timeout,
            max_in_flight=settings.max_in_flight, max_connections=settings.max_connections,
            max_response_bytes=settings.max_response_bytes)
        observe(client.state, context.metrics)
        explicit = frozenset(context.settings.get("indexes", {}) or {})
        return UpstreamSruCatalogue(client, settings, explicit)

    def circulation(self, context: BackendContext) -> ICirculation:
        """None: the SRU upstream is a catalogue; circulation is another backend's."""
        raise BackendUnavailable(
            self.kind, "the sru backend serves only the catalogue; set [backend] circulation "
                       "to another kind (embedded)", path="backend.circulation")


backend = SruBackend()
"""The object the ``sru`` entry point names."""
