"""Backends: the library circulation systems the gateway drives (embedded SQLite by default)."""
