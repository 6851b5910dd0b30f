"""Twisted adapters only: bytes in and out of the protocols, with limits and timeouts."""
