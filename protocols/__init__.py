"""Wire protocols, pure: bytes in, typed objects out, and back. No I/O, no Twisted."""
