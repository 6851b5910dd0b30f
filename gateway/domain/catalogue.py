"""The Catalogue interface: what the Z39.50 (and later SRU/OAI-PMH) services ask of a catalogue.

Protocol-free and SQL-free: a query plan in, a result set handle out; records with holdings and
live item state; scan; sort. Every method answers with a Deferred, because upstream catalogues
do network I/O.
"""

from __future__ import annotations

from zope.interface import Interface


class ICatalogue(Interface):
    """A library catalogue the gateway serves searches and records from."""
