"""Hand-assembled MARC records for the importer tests.

Built byte by byte rather than with pymarc, so that MARC-8 and broken records can be made.
"""

from __future__ import annotations


def iso2709(fields: list[tuple[str, bytes]], *, coding: bytes = b"a") -> bytes:
    """An ISO 2709 record from (tag, body) pairs, bodies without terminators."""
    directory, data = b"", b""
    for tag, body in fields:
        body += b"\x1e"
        directory += tag.encode() + b"%04d%05d" % (len(body), len(data))
        data += body
    directory += b"\x1e"
    base = 24 + len(directory)
    length = base + len(data) + 1
    leader = b"%05dnam " % length + coding + b"22%05d   4500" % base
    return leader + directory + data + b"\x1d"


def datafield(indicators: str, *pairs: str) -> bytes:
    """The body of a data field from (code, value) pairs, UTF-8."""
    body = indicators.encode()
    for i in range(0, len(pairs), 2):
        body += b"\x1f" + pairs[i].encode() + pairs[i + 1].encode("utf-8")
    return body
