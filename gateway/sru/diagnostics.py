# -*- test-case-name: tests.gateway.test_sru_query -*-
"""The one table from the catalogue's domain errors to SRU diagnostics.

The SRU service raises :class:`~protocols.sru.diagnostics.SRUError` for what it refuses itself
(CQL the profile lacks, a record schema it does not render); every
:class:`~gateway.domain.catalogue.CatalogueError` the catalogue answers with becomes one here
(:func:`sru_error`), its detail as the diagnostic's details unless the detail repeats the
text of an internal error (as :func:`gateway.z3950.diagnostics.public_addinfo` decides).
"""

from __future__ import annotations

from gateway.domain.catalogue import (
    CatalogueError,
    CatalogueUnavailable,
    MalformedTerm,
    ResourcesExhausted,
    ResultSetUnknown,
    TimeBudgetExceeded,
    UnsupportedCombination,
    UnsupportedIndex,
    UnsupportedSort,
    UnsupportedTruncation,
)
from gateway.z3950.diagnostics import Bib1Error, public_addinfo
from protocols.sru.diagnostics import Diagnostic, SRUError

CATALOGUE_DIAGNOSTICS: dict[type[CatalogueError], Diagnostic] = {
    UnsupportedIndex: Diagnostic.UNSUPPORTED_INDEX,
    UnsupportedTruncation: Diagnostic.MASKING_CHARACTER_NOT_SUPPORTED,
    UnsupportedCombination: Diagnostic.QUERY_FEATURE_UNSUPPORTED,
    MalformedTerm: Diagnostic.TERM_IN_INVALID_FORMAT,
    UnsupportedSort: Diagnostic.UNSUPPORTED_PATH_FOR_SORT,
    ResultSetUnknown: Diagnostic.RESULT_SET_DOES_NOT_EXIST,
    TimeBudgetExceeded: Diagnostic.SYSTEM_TEMPORARILY_UNAVAILABLE,
    ResourcesExhausted: Diagnostic.RESULT_SET_NOT_CREATED_TOO_MANY_RECORDS,
    CatalogueUnavailable: Diagnostic.SYSTEM_TEMPORARILY_UNAVAILABLE,
}
"""Catalogue error → SRU diagnostic; a subclass not listed takes its nearest base's."""


def sru_error(error: CatalogueError) -> SRUError:
    """The diagnostic for a catalogue error, chained to it; internal texts withheld."""
    for kind in type(error).__mro__:
        diagnostic = CATALOGUE_DIAGNOSTICS.get(kind)
        if diagnostic is not None:
            break
    else:
        diagnostic = Diagnostic.GENERAL_SYSTEM_ERROR
    probe = Bib1Error(0, error.detail)
    probe.__cause__ = error
    details = public_addinfo(probe) or ""
    result = SRUError(diagnostic, details)
    result.__cause__ = error
    return result


__all__ = ["CATALOGUE_DIAGNOSTICS", "sru_error"]
