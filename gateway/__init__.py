"""Interlend: a resource-sharing gateway (Z39.50 server and NCIP responder)."""

__version__ = "0.1.0"
