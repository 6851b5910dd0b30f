# -*- test-case-name: tests.protocols.test_iso2709 -*-
"""ISO 2709 records in the plain layout: the structure the importer and the record renderers
check before they handle a record as bytes instead of through pymarc.

Plain is how pymarc's ``as_marc`` lays a record out: a numeric leader giving the record's own
length, a base address just past the directory, the fields contiguous and in directory order,
each with its terminator, and exactly two ASCII indicators on every data field. What the fields'
bytes mean (character set, subfield codes) is the caller's to judge.
"""

from __future__ import annotations

LEADER_LENGTH = 24
FIELD_TERMINATOR = b"\x1e"
RECORD_TERMINATOR = 0x1D


def is_control_tag(tag: str) -> bool:
    """A control field (no indicators, no subfields), the way pymarc decides it."""
    return tag < "010" and tag.isdigit()


def plain_fields(data: bytes) -> list[tuple[str, bytes]] | None:
    """Each field's tag and body (without its terminator) when ``data`` is in the plain layout;
    None for anything else (a directory with gaps, overlaps or odd entries, a terminator inside a
    field, indicators that are not two ASCII bytes, a length that is not the record's)."""
    size = len(data)
    if (size <= LEADER_LENGTH or data[-1] != RECORD_TERMINATOR
            or not data[:LEADER_LENGTH].isascii() or not data[0:5].isdigit()
            or not data[12:17].isdigit() or int(data[0:5]) != size):
        return None
    base = int(data[12:17])
    if not LEADER_LENGTH < base < size or data[base - 1:base] != FIELD_TERMINATOR:
        return None
    directory = data[LEADER_LENGTH:base - 1]
    count, rest = divmod(len(directory), 12)
    if not count or rest or not directory.isascii():
        return None
    bodies = data[base:size - 1].split(FIELD_TERMINATOR)
    if len(bodies) != count + 1 or bodies[-1]:
        return None  # a terminator inside a field, or none after the last one
    fields: list[tuple[str, bytes]] = []
    append = fields.append
    offset = 0
    for start, body in zip(range(0, len(directory), 12), bodies, strict=False):
        length = len(body) + 1
        if directory[start + 3:start + 12] != b"%04d%05d" % (length, offset):
            return None  # out of directory order, a gap or an overlap
        offset += length
        tag = directory[start:start + 3].decode("ascii")
        if not (tag < "010" and tag.isdigit()):  # a data field: two ASCII indicators first
            mark = body.find(b"\x1f", 0, 3)
            if (mark != 2 and (mark >= 0 or len(body) != 2)) or not body[:2].isascii():
                return None  # pymarc would log and guess the indicators
        append((tag, body))
    return fields
