# -*- test-case-name: tests.gateway.test_z3950_query,tests.gateway.test_catalogue -*-
"""The one table from the catalogue's domain errors to Bib-1 diagnostics, and the error that
carries a diagnostic through the Z39.50 catalogue service.

The service raises :class:`Bib1Error` for what it refuses itself (an unknown database, an
attribute it cannot plan) and turns every :class:`~gateway.domain.catalogue.CatalogueError`
into one through :data:`CATALOGUE_DIAGNOSTICS` (:func:`bib1_error`); the listener sends the
diagnostic, with :func:`public_addinfo` keeping internal error texts from the client.
"""

from __future__ import annotations

import re

from twisted.logger import Logger

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
from protocols.z3950.diagnostics import Bib1

log = Logger()


class Bib1Error(Exception):
    """A Bib-1 diagnostic (diagnostic set 1.2.840.10003.4.1) to send instead of a result."""

    def __init__(self, code: int, addinfo: str | None = None) -> None:
        super().__init__(code, addinfo)
        self.code = code
        self.addinfo = addinfo

    def __str__(self) -> str:
        return f"Bib-1 diagnostic {self.code}" + (f": {self.addinfo}" if self.addinfo else "")


CATALOGUE_DIAGNOSTICS: dict[type[CatalogueError], Bib1] = {
    UnsupportedIndex: Bib1.UNSUPPORTED_USE_ATTRIBUTE,
    UnsupportedTruncation: Bib1.UNSUPPORTED_TRUNCATION_ATTRIBUTE,
    UnsupportedCombination: Bib1.UNSUPPORTED_ATTRIBUTE_COMBINATION,
    MalformedTerm: Bib1.MALFORMED_SEARCH_TERM,
    UnsupportedSort: Bib1.CANNOT_SORT,
    ResultSetUnknown: Bib1.RESULT_SET_DOES_NOT_EXIST,
    ResourcesExhausted: Bib1.RESOURCES_EXHAUSTED,       # TimeBudgetExceeded too
    CatalogueUnavailable: Bib1.DATABASE_UNAVAILABLE,
}
"""Catalogue error → Bib-1 diagnostic; a subclass not listed takes its nearest base's."""


def bib1_error(error: CatalogueError) -> Bib1Error:
    """The diagnostic for a catalogue error (its detail as addinfo), chained to it."""
    for kind in type(error).__mro__:
        code = CATALOGUE_DIAGNOSTICS.get(kind)
        if code is not None:
            break
    else:
        code = Bib1.TEMPORARY_SYSTEM_ERROR
    diagnostic = Bib1Error(code, error.detail)
    diagnostic.__cause__ = error
    return diagnostic


def public_addinfo(error: Bib1Error) -> str | None:
    """A diagnostic's addinfo as the client may see it: never the text of the internal error
    it was raised from (a database or regular-expression message names our internals).

    The chain of causes is followed past the diagnostic's own catalogue error; the first other
    exception withholds the addinfo when its text is in it, or when it is a regular-expression
    error.
    """
    addinfo = getattr(error, "addinfo", None)
    if addinfo is None:
        return None
    text = str(addinfo)
    cause: BaseException | None = error.__cause__ or error.__context__
    while isinstance(cause, (Bib1Error, CatalogueError)):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        inner = str(cause)
        if isinstance(cause, re.error) or (inner and inner in text):
            log.debug("diagnostic {code}: addinfo withheld ({addinfo})", code=error.code,
                      addinfo=text)
            return None
    return text


__all__ = ["CATALOGUE_DIAGNOSTICS", "Bib1Error", "bib1_error", "public_addinfo"]
