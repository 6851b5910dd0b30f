# -*- test-case-name: tests.gateway.test_importers -*-
"""Reading MARC files, one record at a time: ISO 2709 (MARC-8 or UTF-8) and MARCXML.

The format is detected from the content: a file whose first non-blank character is ``<`` is
MARCXML, anything else ISO 2709. Records come back as Unicode :class:`pymarc.Record` objects with
leader/09 set to ``a``, whatever the file's encoding was.

A bad record never stops the file. ISO 2709 files are cut at the record terminator (0x1D) rather
than by the length in each leader, so a record with a corrupt length costs that record only and
reading resynchronises at the next one; each piece is then decoded by pymarc's ``MARCReader``
whose ``current_exception`` says what was wrong. A MARCXML file that is not well-formed is read
up to the error.

Most records are clean UTF-8 (two indicators, no empty subfields, fields where the directory
says): those are decoded by :func:`_decode_clean_utf8` into the very record pymarc would build,
in a little over half the time, and come with their bytes, which are already what ``as_marc``
would write — the importer stores them as they are. The importer itself reads them with
:func:`read_light`, as field tuples without any pymarc object (the same parse,
:func:`_clean_utf8_parts`). Everything else takes pymarc's reader.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import pymarc
from lxml import etree

from protocols.iso2709 import LEADER_LENGTH, is_control_tag, plain_fields

END_OF_RECORD = b"\x1d"
_READ_SIZE = 1 << 20
# Bytes that may separate records in files written by hand or by careless tools.
_FILLER = b"\r\n\t \x00\x1a"
MARCXML_NS = "http://www.loc.gov/MARC21/slim"
_DIGITS5 = re.compile(rb"(?=([0-9]{5}))")


@dataclass(frozen=True)
class RecordRead:
    """One record of a file: the record, or why it could not be read.

    ``number`` counts records from 1 within the file; ``notes`` are problems that did not stop
    the record from being read (a MARC-8 character that had to be replaced, for instance).
    """

    number: int
    record: pymarc.Record | None
    error: str | None = None
    notes: tuple[str, ...] = ()
    # The record in ISO 2709 exactly as ``record.as_marc()`` writes it, when the file already
    # held it that way (a clean UTF-8 record): stored as it is, saving a re-serialisation.
    marc: bytes | None = None


def _xml_start(head: bytes) -> int | None:
    """Where the markup starts, past a byte-order mark and blank lines; None if not XML."""
    rest = head.removeprefix(b"\xef\xbb\xbf").lstrip(_FILLER)
    return len(head) - len(rest) if rest.startswith(b"<") else None


def detect_format(path: Path) -> str:
    """``"marcxml"`` or ``"iso2709"``, from the first non-blank bytes of the file."""
    with path.open("rb") as handle:
        head = handle.read(512)
    return "iso2709" if _xml_start(head) is None else "marcxml"


def read_records(path: Path, *, force_utf8: bool = False) -> Iterator[RecordRead]:
    """Every record of a MARC file, in order. Raises OSError if the file cannot be opened.

    ``force_utf8`` reads ISO 2709 records as UTF-8 whatever leader/09 says, for files whose
    leaders lie; normally leader/09 ``a`` means UTF-8 and blank means MARC-8.
    """
    if detect_format(path) == "marcxml":
        yield from _read_marcxml(path)
        return
    number = 0
    with path.open("rb") as handle, _pymarc_log() as log:
        for chunk in _iso2709_chunks(handle):
            for read in _decode_chunk(number + 1, chunk, force_utf8=force_utf8, log=log):
                number = read.number
                yield read


def iso2709_chunks(path: Path) -> Iterator[bytes]:
    """The pieces of an ISO 2709 file, each ending at a record terminator (the last one may
    not): what :func:`decode_chunks` turns into records. Raises OSError if it cannot be read."""
    with path.open("rb") as handle:
        yield from _iso2709_chunks(handle)


def decode_chunks(chunks: Iterator[bytes] | list[bytes], *, force_utf8: bool = False,
                  first: int = 1) -> Iterator[RecordRead]:
    """The records of consecutive :func:`iso2709_chunks` pieces, numbered from ``first``: what
    :func:`read_records` yields for them. (A piece may hold two records, one of them truncated,
    so the numbers of the next pieces are only known once these are decoded.)"""
    number = first - 1
    with _pymarc_log() as log:
        for chunk in chunks:
            for read in _decode_chunk(number + 1, chunk, force_utf8=force_utf8, log=log):
                number = read.number
                yield read


# -- ISO 2709 ---------------------------------------------------------------------------------

def _iso2709_chunks(handle: BinaryIO) -> Iterator[bytes]:
    """The file cut after each record terminator; filler bytes between records are dropped."""
    pending = b""
    while block := handle.read(_READ_SIZE):
        pieces = (pending + block).split(END_OF_RECORD)
        pending = pieces.pop()
        for piece in pieces:
            piece = piece.lstrip(_FILLER)
            if piece:
                yield piece + END_OF_RECORD
    pending = pending.strip(_FILLER)
    if pending:
        yield pending  # the file ends inside a record: reported as such


def _leader_problem(chunk: bytes, *, force_utf8: bool) -> str | None:
    """Why the leader cannot be right, or None. (The record length is checked apart.)"""
    leader = chunk[:LEADER_LENGTH]
    if len(leader) < LEADER_LENGTH:
        return f"invalid leader: only {len(chunk)} bytes before the record terminator"
    if not leader.isascii():
        return "invalid leader: contains non-ASCII bytes"
    if not leader[0:5].isdigit():
        return f"invalid leader: record length {leader[0:5].decode()!r} is not a number"
    if not leader[12:17].isdigit():
        return f"invalid leader: base address {leader[12:17].decode()!r} is not a number"
    coding = leader[9:10].decode()
    if coding not in (" ", "a") and not force_utf8:
        return (f"invalid leader: character coding (leader/09) {coding!r} is neither"
                " ' ' (MARC-8) nor 'a' (Unicode)")
    return None


def _directory_fills(chunk: bytes) -> bool:
    """True if the directory accounts for exactly the bytes up to the record terminator."""
    base = int(chunk[12:17])
    directory = chunk[LEADER_LENGTH:base - 1]
    if not LEADER_LENGTH < base < len(chunk) or chunk[base - 1] != 0x1E \
            or not directory or len(directory) % 12:
        return False
    end = 0
    for start in range(0, len(directory), 12):
        entry = directory[start:start + 12]
        if not entry[3:12].isdigit():
            return False
        end = max(end, int(entry[7:12]) + int(entry[3:7]))
    return base + end == len(chunk) - 1


def _next_record_start(chunk: bytes) -> int | None:
    """Where a complete record starts inside ``chunk`` (after a truncated one), or None.

    A candidate is five digits giving exactly the bytes left, with a numeric base address.
    """
    for match in _DIGITS5.finditer(chunk, 1):
        start = match.start()
        if int(match.group(1)) == len(chunk) - start and chunk[start + 12:start + 17].isdigit():
            return start
    return None


def _decode_chunk(number: int, chunk: bytes, *, force_utf8: bool,
                  log: _PymarcLog) -> Iterator[RecordRead]:
    """The record(s) in a piece of file ending at a record terminator.

    A wrong record length is corrected when the directory accounts for every byte (some tools
    count characters, not bytes). A record cut short without its terminator is reported, and
    the complete record glued to it is still read.
    """
    if not chunk.endswith(END_OF_RECORD):
        if number == 1 and _leader_problem(chunk, force_utf8=force_utf8):
            yield RecordRead(number, None, "not a MARC file: neither MARCXML nor ISO 2709 (no"
                             " record terminator anywhere, no valid leader at the start)")
        else:
            yield RecordRead(number, None,
                             "the file ends inside this record (no record terminator)")
        return
    problem = _leader_problem(chunk, force_utf8=force_utf8)
    if problem:
        yield RecordRead(number, None, problem)
        return
    declared = int(chunk[0:5])
    if declared == len(chunk) or len(chunk) > 99999:
        yield _decode_iso2709(number, chunk, force_utf8=force_utf8, log=log)
        return
    if _directory_fills(chunk):
        note = f"record length in the leader ({declared}) corrected to {len(chunk)}"
        read = _decode_iso2709(number, b"%05d" % len(chunk) + chunk[5:], force_utf8=force_utf8,
                               log=log)
        yield replace(read, notes=(note, *read.notes)) if read.record is not None else read
        return
    start = _next_record_start(chunk)
    if start is None:
        yield RecordRead(number, None, (
            f"record length in the leader is {declared} but the record terminator comes after"
            f" {len(chunk)} bytes"))
        return
    yield RecordRead(number, None, (
        f"truncated record: the next record starts after {start} bytes, before this one's"
        f" terminator (its leader says {declared} bytes)"))
    yield from _decode_chunk(number + 1, chunk[start:], force_utf8=force_utf8, log=log)


def _describe(exc: BaseException | None, marc8: bool) -> str:
    if isinstance(exc, UnicodeDecodeError):
        encoding = "MARC-8" if marc8 else "UTF-8"
        return f"{encoding} decode error: {exc.reason}"
    if isinstance(exc, pymarc.exceptions.PymarcException):
        return str(exc)
    if exc is None:
        return "unreadable record"
    return f"malformed record ({type(exc).__name__}: {exc})"


class _PymarcLog(logging.Handler):
    """Collects what pymarc logs (odd indicators, say) to report it with the record."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _pymarc_log() -> Iterator[_PymarcLog]:
    """Route the ``pymarc`` logger into a collector (and nowhere else) while reading a file."""
    logger = logging.getLogger("pymarc")
    handler, propagate = _PymarcLog(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


# A field as the clean UTF-8 decoder reads it: (tag, text, subfields) where text is a control
# field's data (00X tags, no subfields) or a data field's two indicators.
CleanField = tuple[str, str, list[tuple[str, str]]]


def _clean_utf8_parts(chunk: bytes, *, force_utf8: bool
                      ) -> tuple[str, list[CleanField], bytes] | None:
    """Leader, fields and bytes of a UTF-8 record that pymarc would read without a complaint,
    or None: what :func:`_decode_clean_utf8` builds its pymarc record from, and what
    :func:`read_light` hands on as it is (no pymarc objects at all).

    The bytes returned are ``record.as_marc()`` of that record: a record in the plain layout
    (:func:`protocols.iso2709.plain_fields`) is already what ``as_marc`` writes, once its
    text is UTF-8 with no empty subfields and ASCII subfield codes. Anything else (MARC-8, odd
    indicators, a directory with gaps or overlaps, bad UTF-8) returns None and takes pymarc's
    way, with its notes and errors.
    """
    if chunk[9:10] != b"a" and not force_utf8:
        return None
    plain = plain_fields(chunk)
    if plain is None:
        return None
    fields: list[CleanField] = []
    append = fields.append
    try:
        for tag, body in plain:
            if is_control_tag(tag):
                append((tag, body.decode("utf-8"), []))
                continue
            head, *pieces = body.decode("utf-8").split("\x1f")
            subfields = []
            for piece in pieces:
                if not piece or not piece[0].isascii():
                    return None  # pymarc would drop it, or warn about the code
                subfields.append((piece[0], piece[1:]))
            append((tag, head, subfields))
    except UnicodeDecodeError:
        return None
    leader = chunk[:LEADER_LENGTH].decode("ascii")  # as read (pymarc's record keeps it)
    if chunk[9:10] != b"a":
        chunk = chunk[:9] + b"a" + chunk[10:]
    return leader, fields, chunk


def _decode_clean_utf8(chunk: bytes, *, force_utf8: bool) -> tuple[pymarc.Record, bytes] | None:
    """Decode a UTF-8 record that pymarc would read without a complaint, or return None.

    The fast path of :func:`_decode_iso2709`: the record built from
    :func:`_clean_utf8_parts` is the one pymarc's decoder builds, and the bytes returned are
    ``record.as_marc()``.
    """
    parts = _clean_utf8_parts(chunk, force_utf8=force_utf8)
    if parts is None:
        return None
    leader, clean, chunk = parts
    fields: list[pymarc.Field] = []
    append = fields.append
    new, field_cls = object.__new__, pymarc.Field
    subfield, indicators = pymarc.Subfield, pymarc.Indicators
    for tag, text, pairs in clean:
        field = new(field_cls)
        if is_control_tag(tag):
            # what pymarc.Field(tag=tag, data=...) sets
            field.tag, field.subfields, field._indicators = tag, [], None
            field.data, field.control_field = text, True
        else:
            # what pymarc.Field(tag=tag, indicators=..., subfields=...) sets
            field.tag = tag
            field.subfields = [subfield(code, value) for code, value in pairs]
            field._indicators = indicators(text[0], text[1])
            field.data, field.control_field = None, False
        append(field)
    record = pymarc.Record(force_utf8=force_utf8)
    record.leader = pymarc.Leader(leader)
    record.fields = fields
    return record, chunk


@dataclass(frozen=True)
class LightRead:
    """A clean UTF-8 record read without pymarc: its fields as ``(tag, data, subfields)``
    tuples (:data:`gateway.backends.embedded.records.LightField`: ``data`` is None for a data
    field, its subfields ``(code, value)`` pairs) and its bytes, which are ``as_marc()``."""

    number: int
    fields: list[tuple[str, str | None, list[tuple[str, str]]]]
    marc: bytes


def read_light(chunks: Iterator[bytes] | list[bytes], *, force_utf8: bool = False,
               first: int = 1) -> Iterator[RecordRead | LightRead]:
    """:func:`decode_chunks`, but a clean UTF-8 record comes as a :class:`LightRead` (the
    fields the pymarc record would have, without building it); every other record as the
    :class:`RecordRead` :func:`decode_chunks` gives."""
    number = first - 1
    with _pymarc_log() as log:
        for chunk in chunks:
            if chunk.endswith(END_OF_RECORD) and _leader_problem(chunk, force_utf8=force_utf8) \
                    is None and int(chunk[0:5]) == len(chunk):
                parts = _clean_utf8_parts(chunk, force_utf8=force_utf8)
                if parts is not None:
                    number += 1
                    yield LightRead(number, [(tag, text, pairs) if is_control_tag(tag)
                                             else (tag, None, pairs)
                                             for tag, text, pairs in parts[1]], parts[2])
                    continue
            for read in _decode_chunk(number + 1, chunk, force_utf8=force_utf8, log=log):
                number = read.number
                yield read


def _decode_iso2709(number: int, chunk: bytes, *, force_utf8: bool,
                    log: _PymarcLog) -> RecordRead:
    fast = _decode_clean_utf8(chunk, force_utf8=force_utf8)
    if fast is not None:
        fast[0].leader.coding_scheme = "a"
        return RecordRead(number, fast[0], None, (), fast[1])
    marc8 = chunk[9:10] == b" " and not force_utf8
    reader = pymarc.MARCReader(chunk, to_unicode=True, force_utf8=force_utf8,
                               hide_utf8_warnings=False, utf8_handling="strict")
    # pymarc writes MARC-8 characters it cannot map to stderr (using a space instead), warns
    # about odd subfield codes and logs odd indicators: all become notes on the record.
    stderr = io.StringIO()
    del log.messages[:]
    with warnings.catch_warnings(record=True) as warned, \
            contextlib.redirect_stderr(stderr) if marc8 else contextlib.nullcontext():
        warnings.simplefilter("always")
        record = next(reader, None)
    if record is None:
        return RecordRead(number, None, _describe(reader.current_exception, marc8))
    record.leader.coding_scheme = "a"  # decoded to Unicode; as_marc writes UTF-8
    notes = [f"MARC-8: {line.strip()} (replaced by a space)"
             for line in stderr.getvalue().splitlines() if line.strip()]
    notes += [str(warning.message) for warning in warned]
    notes += log.messages
    return RecordRead(number, record, None, tuple(notes))


# -- MARCXML ----------------------------------------------------------------------------------

def _text(element: etree._Element) -> str:
    return element.text or ""


def _record_from_xml(element: etree._Element) -> pymarc.Record:
    """A pymarc record from a MARCXML ``record`` element (namespaced or not)."""
    leader = ""
    fields: list[pymarc.Field] = []
    for child in element:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        name = etree.QName(child).localname
        if name == "leader":
            leader = _text(child)
        elif name == "controlfield":
            fields.append(pymarc.Field(tag=child.get("tag", ""), data=_text(child)))
        elif name == "datafield":
            subfields = [pymarc.Subfield(code=sub.get("code", ""), value=_text(sub))
                         for sub in child
                         if isinstance(sub.tag, str) and etree.QName(sub).localname == "subfield"]
            indicators = pymarc.Indicators((child.get("ind1") or " ")[:1],
                                           (child.get("ind2") or " ")[:1])
            fields.append(pymarc.Field(tag=child.get("tag", ""), indicators=indicators,
                                       subfields=subfields))
    if len(leader) != LEADER_LENGTH:
        raise ValueError(f"invalid leader: {len(leader)} characters, not 24")
    if not fields:
        raise ValueError("no fields")
    for field in fields:
        if len(field.tag) != 3 or not field.tag.isalnum():
            raise ValueError(f"invalid tag {field.tag!r}")
    record = pymarc.Record(leader=leader[:9] + "a" + leader[10:])
    record.add_field(*fields)
    return record


def _read_marcxml(path: Path) -> Iterator[RecordRead]:
    """Stream the ``record`` elements of a MARCXML file, freeing each one once it is read.

    Blank lines before the XML declaration (not well-formed, but common) are skipped.
    """
    with path.open("rb") as handle:
        handle.seek(_xml_start(handle.read(512)) or 0)
        yield from _parse_marcxml(handle)


def _parse_marcxml(handle: BinaryIO) -> Iterator[RecordRead]:
    events = etree.iterparse(handle, events=("end",), tag=(f"{{{MARCXML_NS}}}record", "record"),
                             resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=True)
    number = 0
    try:
        for _event, element in events:
            number += 1
            try:
                yield RecordRead(number, _record_from_xml(element))
            except ValueError as exc:
                yield RecordRead(number, None, str(exc))
            element.clear()
            while element.getprevious() is not None:
                del element.getparent()[0]
    except etree.XMLSyntaxError as exc:
        yield RecordRead(number + 1, None,
                         f"MARCXML is not well-formed ({exc}); the rest of the file was not read")
