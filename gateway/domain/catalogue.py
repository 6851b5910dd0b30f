# -*- test-case-name: tests.gateway.test_embedded_catalogue,tests.gateway.test_catalogue -*-
"""The Catalogue interface: what the Z39.50 (and later SRU/OAI-PMH) services ask of a catalogue.

Protocol-free and SQL-free: a query plan (:mod:`gateway.domain.query`) in, a result set handle
(:class:`IResultSet`) out; records with holdings and live item state
(:class:`gateway.domain.holdings.CatalogueRecord`); scan; sort. Every method answers with a
Deferred, because upstream catalogues do network I/O. Failures the caller should answer (an
index the catalogue lacks, a term it cannot read, a spent budget) are the
:class:`CatalogueError` subclasses below; the protocol services map them to their own
diagnostics in one table each (:mod:`gateway.z3950.diagnostics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from gateway.domain.holdings import CatalogueRecord
    from gateway.domain.query import Plan, ScanPlan

# -- errors -------------------------------------------------------------------------------------


class CatalogueError(Exception):
    """A request the catalogue cannot answer; ``detail`` is safe to show the client."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return f"{type(self).__name__}" + (f": {self.detail}" if self.detail else "")


class UnsupportedIndex(CatalogueError):
    """The plan names an index this catalogue does not have."""


class UnsupportedTruncation(CatalogueError):
    """The catalogue cannot extend words this way (regular expressions unavailable, say)."""


class UnsupportedCombination(CatalogueError):
    """Each part is supported, not together (left truncation inside a phrase, say)."""


class MalformedTerm(CatalogueError):
    """A term the catalogue cannot read (an invalid regular expression, say)."""


class UnsupportedSort(CatalogueError):
    """The catalogue cannot sort by the key asked for."""


class ResultSetUnknown(CatalogueError):
    """A result set this catalogue did not make (or no longer holds)."""


class ResourcesExhausted(CatalogueError):
    """The request needs more than the catalogue allows (words a truncated term expands to,
    memory for result sets)."""


class TimeBudgetExceeded(ResourcesExhausted):
    """The request ran past its time budget (or the gateway is stopping) and was stopped."""


class CatalogueUnavailable(CatalogueError):
    """The catalogue cannot be reached now (an upstream server down, say)."""


# -- values -------------------------------------------------------------------------------------


class SortField(Enum):
    """What a result set can be sorted by."""

    TITLE = "title"          # leading article ignored
    AUTHOR = "author"
    YEAR = "year"            # of publication
    LOCAL_ID = "local_id"


@dataclass(frozen=True)
class SortKey:
    """One sort key; missing values sort last in either direction."""

    field: SortField
    descending: bool = False


@dataclass(frozen=True)
class IndexEntry:
    """One scanned index term: the term as indexed, how many records hold it, and the form to
    show (as a record writes it), when it differs."""

    term: str
    records: int
    display: str | None = None


@dataclass(frozen=True)
class ScanPage:
    """Index entries in term order around the scan term: the 1-based position the term has
    (or would have; 0 when only the terms after it were asked for), and whether the index ran
    out before the entries asked for."""

    entries: tuple[IndexEntry, ...]
    position_of_term: int
    ended_early: bool = False


# -- the interfaces -----------------------------------------------------------------------------


class IResultSet(Interface):
    """A search's hits, held by the catalogue that made them.

    Snapshot-stable: positions do not move when records are added later; a record deleted
    since comes back as None from :meth:`ICatalogue.fetch`.
    """

    count = Attribute("The exact number of hits (int).")
    held_bytes = Attribute("Memory the result set may hold in this process, in bytes (int), "
                           "charged to the service's memory budget while it is kept.")


class ICatalogue(Interface):
    """A library catalogue the gateway serves searches and records from."""

    def search(plan: Plan) -> Deferred[IResultSet]:
        """Run a query plan (:data:`gateway.domain.query.Plan`).

        @return: a Deferred firing with an L{IResultSet}, or failing with a
            L{CatalogueError}.
        """

    def fetch(result_set: IResultSet, start: int, count: int,
              build: Callable[[CatalogueRecord], Any] | None = None
              ) -> Deferred[list[Any | None]]:
        """The records at positions ``start`` (1-based) … ``start + count - 1`` (at most up to
        the last), with their holdings and live item state.

        ``build``, when given, is applied to each
        :class:`~gateway.domain.holdings.CatalogueRecord` where the catalogue reads it (a
        reader thread for the embedded one), so costly rendering stays off the reactor.

        @return: a Deferred firing with a list holding, per position, the record (or what
            ``build`` made of it), or None where a record has gone since the search.
        """

    def scan(plan: ScanPlan, count: int, preferred_position: int, step_size: int
             ) -> Deferred[ScanPage]:
        """Browse an index (:class:`gateway.domain.query.ScanPlan`): up to ``count`` entries
        around the term, every ``step_size + 1``-th; ``preferred_position`` 0 lists the terms
        after the term, ``count + 1`` those before it.

        @return: a Deferred firing with a L{ScanPage}.
        """

    def sort(result_set: IResultSet, keys: Sequence[SortKey]) -> Deferred[IResultSet]:
        """A new result set: the hits of ``result_set`` ordered by ``keys`` (L{SortKey}s);
        ties keep the input order.

        @return: a Deferred firing with an L{IResultSet}.
        """


__all__ = [
    "CatalogueError",
    "CatalogueUnavailable",
    "ICatalogue",
    "IResultSet",
    "IndexEntry",
    "MalformedTerm",
    "ResourcesExhausted",
    "ResultSetUnknown",
    "ScanPage",
    "SortField",
    "SortKey",
    "TimeBudgetExceeded",
    "UnsupportedCombination",
    "UnsupportedIndex",
    "UnsupportedSort",
    "UnsupportedTruncation",
]
