"""The Circulation interface: what the NCIP workflows ask of a circulation system.

Patrons (lookup, authenticate), items, temporary items, holds, loans, renewals, check-in, in
domain types (:mod:`gateway.domain.model`) and with its domain errors. Asynchronous (Deferreds),
because upstream circulation systems do network I/O.
"""

from __future__ import annotations

from zope.interface import Interface


class ICirculation(Interface):
    """A circulation system the gateway drives."""
