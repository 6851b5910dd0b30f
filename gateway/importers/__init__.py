"""Importers: MARC records with their items, and patrons from CSV, into the embedded backend."""

from __future__ import annotations

from gateway.importers.marc import ImportSummary, import_marc
from gateway.importers.patrons import PatronImportError, PatronImportSummary, import_patrons

__all__ = [
    "ImportSummary",
    "PatronImportError",
    "PatronImportSummary",
    "import_marc",
    "import_patrons",
]
