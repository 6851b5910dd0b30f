"""Backends: the catalogue and circulation systems the gateway drives (embedded by default)."""
