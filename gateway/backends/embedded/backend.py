# -*- test-case-name: tests.gateway.test_backends -*-
"""The embedded backend as the registry sees it: kind ``embedded``, data in the gateway's store.

Registered in ``setup.cfg`` as ``embedded = gateway.backends.embedded.backend:backend`` under
``interlend.backends``. Its catalogue and circulation read and write the gateway's own SQLite
database through the store, so a circulation change, the reply, its idempotency record and its
audit row commit in one writer job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import implementer

from gateway.backends.registry import BackendContext, IBackend

if TYPE_CHECKING:
    from gateway.domain.catalogue import ICatalogue
    from gateway.domain.circulation import ICirculation
    from gateway.domain.harvest import IHarvestable


@implementer(IBackend)
class EmbeddedBackend:
    """Catalogue and circulation in the gateway's own SQLite database."""

    kind = "embedded"

    def catalogue(self, context: BackendContext) -> ICatalogue:
        """The embedded catalogue, searching the store on its catalogue readers within
        ``z3950.operation_time_limit`` (as configured at the time of each search)."""
        from gateway.backends.embedded.catalogue import EmbeddedCatalogue

        return EmbeddedCatalogue(
            context.store, time_limit=lambda: context.config().z3950.operation_time_limit,
            stopping=context.stopping)

    def circulation(self, context: BackendContext) -> ICirculation:
        """The embedded circulation system: each unit of work is one job of the store's
        writer, committed with the gateway's books."""
        from gateway.backends.embedded.circulation import EmbeddedCirculation

        return EmbeddedCirculation(context.store)

    def harvest(self, context: BackendContext) -> IHarvestable:
        """OAI-PMH harvesting of the embedded catalogue (datestamps and tombstones kept by
        triggers): optional, the registry's contract does not ask for it."""
        from gateway.backends.embedded.harvest import EmbeddedHarvest

        return EmbeddedHarvest(context.store)


backend = EmbeddedBackend()
"""The object the ``embedded`` entry point names."""
