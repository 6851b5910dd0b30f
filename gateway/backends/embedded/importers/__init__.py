"""Importers: MARC records with their items, and patrons from CSV, into the embedded backend."""

from __future__ import annotations

from gateway.backends.embedded.importers.marc import ImportSummary, import_marc
from gateway.backends.embedded.importers.patrons import (
    PatronImportError,
    PatronImportSummary,
    import_patrons,
)

__all__ = [
    "ImportSummary",
    "PatronImportError",
    "PatronImportSummary",
    "import_marc",
    "import_patrons",
]
