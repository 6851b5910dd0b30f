# -*- test-case-name: tests.gateway.test_upstream_sru_reader -*-
"""An upstream SRU server's answers in domain terms: what :mod:`protocols.sru.client` reads,
with an answer that is not SRU as :class:`UpstreamGarbage` and the server's own diagnostics as
the domain errors the services map to Bib-1 (:func:`diagnostic_error`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from gateway.domain.catalogue import (
    CatalogueError,
    CatalogueUnavailable,
    MalformedTerm,
    ResourcesExhausted,
    ResultSetUnknown,
    UnsupportedCombination,
    UnsupportedIndex,
    UnsupportedSort,
    UnsupportedTruncation,
)
from protocols.sru import client
from protocols.sru.client import (
    ExplainInfo,
    ScanTermOut,
    SearchOutcome,
    SruDiagnostic,
    SruDiagnosticAnswer,
    SruResponseError,
)

__all__ = [
    "ExplainInfo",
    "ScanTermOut",
    "SearchOutcome",
    "SruDiagnostic",
    "UpstreamGarbage",
    "diagnostic_error",
    "read_explain",
    "read_scan",
    "read_search",
]

T = TypeVar("T")


class UpstreamGarbage(CatalogueUnavailable):
    """The upstream answered something that is not the SRU response asked for."""


_MAPPED: tuple[tuple[frozenset[int], type[CatalogueError]], ...] = (
    (frozenset(range(80, 97)), UnsupportedSort),
    (frozenset({28, 29, 30}), UnsupportedTruncation),
    (frozenset({18, 19, 20, 21, 22, 24, 31, 32, 33, 34, 37, *range(39, 50)}),
     UnsupportedCombination),
    (frozenset({10, 11, 12, 13, 14, 23, 26, 27, 35, 36}), MalformedTerm),
    (frozenset({15, 16, 17, 25}), UnsupportedIndex),
    (frozenset({50, 51, 52, 53}), ResultSetUnknown),
    (frozenset({38, 60, 70}), ResourcesExhausted),
)
"""SRU diagnostic set 1 numbers -> domain errors; anything else (general system error,
temporarily unavailable, authentication, unsupported version) is the upstream unavailable."""


def diagnostic_error(diagnostic: SruDiagnostic) -> CatalogueError:
    """The domain error for an upstream diagnostic (SRU diagnostic set 1 numbers)."""
    n = diagnostic.number
    detail = (f"upstream SRU diagnostic {n or diagnostic.uri}: "
              f"{diagnostic.message or 'no message'}"
              + (f" ({diagnostic.details})" if diagnostic.details else ""))
    for numbers, error in _MAPPED:
        if n in numbers:
            return error(detail)
    return CatalogueUnavailable(detail)


def _answered(read: Callable[[bytes], T], data: bytes) -> T:
    try:
        return read(data)
    except SruResponseError as e:
        raise UpstreamGarbage(f"upstream SRU: {e}") from None
    except SruDiagnosticAnswer as e:
        raise diagnostic_error(e.diagnostic) from None


def read_search(data: bytes) -> SearchOutcome:
    """A searchRetrieveResponse (:func:`protocols.sru.client.read_search`) in domain terms."""
    return _answered(client.read_search, data)


def read_scan(data: bytes) -> list[ScanTermOut]:
    """A scanResponse (:func:`protocols.sru.client.read_scan`) in domain terms."""
    return _answered(client.read_scan, data)


def read_explain(data: bytes) -> ExplainInfo:
    """An explainResponse (:func:`protocols.sru.client.read_explain`) in domain terms."""
    return _answered(client.read_explain, data)
