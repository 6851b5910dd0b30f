# -*- test-case-name: tests.protocols.test_z3950_fastber -*-
"""Hand-written BER fast path for the hot Z39.50 PDUs; pyasn1 stays the reference.

Decoders (L{read_request}) turn a whole definite-length frame (as L{BERFramer.feed} yields
it) straight into the value types of L{protocols.z3950.pdus} -- C{InitRequestInfo},
C{SearchRequestInfo} (type-1/101 RPN into the L{pqf} model), C{PresentRequestInfo},
C{CloseInfo} -- without building pyasn1 objects. Encoders (L{init_response},
L{search_response}, L{present_response}, L{close}) take the arguments of the codec builders
of the same names and return the bytes C{encode_pdu(builder(...))} would.

Both sides are deliberately narrow: anything they do not handle exactly (another arm,
extension fields, otherInfo/userInformationField, charset negotiation, proximity, complex
record composition, an unusual or non-minimal encoding, a value of an unexpected type...)
makes them return C{None}, and the caller takes the pyasn1 path, which then accepts,
rejects or raises exactly as before. The decoder never accepts something pyasn1 would
reject: when in doubt it falls back.

The codec (L{protocols.z3950.codec.decode_request}, L{protocols.z3950.codec.encode_record}
and the C{encode_*} functions) is the only caller, and this module never imports it (both
import L{pdus}). Nothing is kept from one call to the next but pure memoization (OID
octets; the encodings of recently sent OPAC records, bounded). Set L{ENABLED} to C{False}
(or C{INTERLEND_Z3950_PYASN1=1} in the environment) to force pyasn1 everywhere, for tests and
comparisons.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from . import oids, pqf
from .charset import TermDecoder
from .pdus import (
    OPTION_BITS,
    OPTION_NAMES,
    VERSION_BITS,
    Authentication,
    CloseInfo,
    Diagnostic,
    EncodedRecord,
    InitRequestInfo,
    PresentRequestInfo,
    ResponseRecord,
    SearchRequestInfo,
    SurrogateDiagnostic,
)
from .records import CirculationItem, Holding, OpacRecord, VolumeInfo

__all__ = [
    "ENABLED",
    "Fallback",
    "close",
    "encode_oid",
    "encode_record",
    "init_response",
    "present_response",
    "read_request",
    "record_size",
    "search_response",
]

ENABLED: bool = os.environ.get("INTERLEND_Z3950_PYASN1", "").lower() not in ("1", "true", "yes")
"""Module-level switch: C{False} sends every PDU through pyasn1."""


class Fallback(Exception):
    """Internal: this input (or value) is not for the fast path; use pyasn1."""


# --------------------------------------------------------------------------------------
# TLV reader (definite lengths only)

_MAX_INT_OCTETS = 8
"""Integers longer than this go to pyasn1 (no Z39.50 field needs more)."""


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
    """Parse one TLV header at C{pos}; return C{(class|form bits, tag number, start, end)}."""
    if pos >= end:
        raise Fallback
    first = data[pos]
    pos += 1
    number = first & 0x1F
    if number == 0x1F:
        if pos >= end:
            raise Fallback
        octet = data[pos]
        if octet == 0x80:  # non-minimal tag: pyasn1 decides
            raise Fallback
        number = 0
        count = 0
        while True:
            if pos >= end or count >= 4:
                raise Fallback
            octet = data[pos]
            pos += 1
            count += 1
            number = (number << 7) | (octet & 0x7F)
            if not octet & 0x80:
                break
        if number < 31:
            raise Fallback
    if pos >= end:
        raise Fallback
    length = data[pos]
    pos += 1
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise Fallback  # indefinite or oversized: not ours
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    stop = pos + length
    if stop > end:
        raise Fallback
    return first & 0xE0, number, pos, stop


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    out = []
    pos = start
    while pos < end:
        item = _tlv(data, pos, end)
        out.append(item)
        pos = item[3]
    return out


def _int(data: bytes, start: int, end: int) -> int:
    n = end - start
    if n == 0 or n > _MAX_INT_OCTETS:
        raise Fallback
    # Non-minimal encodings are read as pyasn1 reads them (its encoder writes -128 as ff 80).
    return int.from_bytes(data[start:end], "big", signed=True)


def _bool(data: bytes, start: int, end: int) -> bool:
    if end - start != 1:
        raise Fallback
    return data[start] != 0


def _oid(data: bytes, start: int, end: int) -> oids.Oid:
    if start >= end or data[end - 1] & 0x80:
        raise Fallback
    arcs: list[int] = []
    value = 0
    fresh = True
    for i in range(start, end):
        octet = data[i]
        if fresh and octet == 0x80:
            raise Fallback
        value = (value << 7) | (octet & 0x7F)
        if octet & 0x80:
            fresh = False
        else:
            arcs.append(value)
            value = 0
            fresh = True
    first = arcs[0]
    if first < 40:
        head = (0, first)
    elif first < 80:
        head = (1, first - 40)
    else:
        head = (2, first - 80)
    return head + tuple(arcs[1:])


def _bits(data: bytes, start: int, end: int) -> list[int]:
    """Positions of the set bits of a primitive BIT STRING."""
    if start >= end:
        raise Fallback
    unused = data[start]
    if unused > 7 or (unused and end - start == 1):
        raise Fallback
    total = (end - start - 1) * 8 - unused
    out = []
    for index in range(total):
        if data[start + 1 + (index >> 3)] & (0x80 >> (index & 7)):
            out.append(index)
    return out


# Identifier octets (first octet) for the forms used below.
_CTX_P = 0x80  # context, primitive
_CTX_C = 0xA0  # context, constructed


def _expect(item: tuple[int, int, int, int], cls: int, number: int) -> tuple[int, int]:
    first, num, start, end = item
    if first != cls or num != number:
        raise Fallback
    return start, end


class _Fields:
    """Components of a SEQUENCE in order; C{take(cls, number)} pops the next if it matches."""

    __slots__ = ("items", "index")

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.items = _children(data, start, end)
        self.index = 0

    def take(self, cls: int, number: int) -> tuple[int, int] | None:
        if self.index < len(self.items):
            first, num, start, end = self.items[self.index]
            if first == cls and num == number:
                self.index += 1
                return start, end
        return None

    def need(self, cls: int, number: int) -> tuple[int, int]:
        got = self.take(cls, number)
        if got is None:
            raise Fallback
        return got

    def done(self) -> None:
        if self.index != len(self.items):
            raise Fallback  # unknown, extra or out-of-order components: pyasn1 decides


# --------------------------------------------------------------------------------------
# Request decoders


def read_request(data: bytes, decoder: TermDecoder | None = None) -> Any:
    """Return the codec reader dataclass for a whole frame, or C{None} (use pyasn1)."""
    if len(data) < 2:
        return None
    first = data[0]
    if first == 0xB4:
        reader = _read_init
    elif first == 0xB6:
        reader = _read_search
    elif first == 0xB8:
        reader = _read_present
    elif first == 0xBF and data[1] == 0x30:
        reader = _read_close
    else:
        return None
    return read_whole(data, reader, decoder or TermDecoder())


def read_whole(data: bytes, reader: Any, *args: Any) -> Any:
    """C{reader(data, start, end, *args)} over the contents of the one PDU that is all of
    C{data}, or C{None} where the frame is not exactly one PDU or the reader falls back."""
    try:
        data = bytes(data)
        _, _, start, end = _tlv(data, 0, len(data))
        if end != len(data):
            return None
        return reader(data, start, end, *args)
    except (Fallback, IndexError, ValueError, RecursionError):
        return None


def _ref(f: _Fields, data: bytes) -> bytes | None:
    got = f.take(_CTX_P, 2)
    return None if got is None else data[got[0]:got[1]]


def _text(data: bytes, got: tuple[int, int] | None, dec: TermDecoder) -> str | None:
    return None if got is None else dec.decode(data[got[0]:got[1]])


def _read_init(data: bytes, start: int, end: int, dec: TermDecoder) -> Any:
    f = _Fields(data, start, end)
    reference_id = _ref(f, data)
    s, e = f.need(_CTX_P, 3)
    versions = frozenset(b + 1 for b in _bits(data, s, e) if b < 3)
    s, e = f.need(_CTX_P, 4)
    options = frozenset(OPTION_NAMES[b] for b in _bits(data, s, e)
                        if b < len(OPTION_NAMES) and OPTION_NAMES[b])
    pms = _int(data, *f.need(_CTX_P, 5))
    ers = _int(data, *f.need(_CTX_P, 6))
    auth = None
    got = f.take(_CTX_C, 7)
    if got is not None:
        inner = _children(data, *got)
        if len(inner) != 1:
            raise Fallback
        first, num, s, e = inner[0]
        if first == 0 and num == 26:  # open: VisibleString
            user, _, password = dec.decode(data[s:e]).partition("/")
            auth = Authentication("open", user, password or None)
        elif first == 0x20 and num == 16:  # idPass
            g = _Fields(data, s, e)
            group = _text(data, g.take(_CTX_P, 0), dec)
            user_id = _text(data, g.take(_CTX_P, 1), dec)
            secret = _text(data, g.take(_CTX_P, 2), dec)
            g.done()
            auth = Authentication("idPass", user_id, secret, group)
        elif first == 0 and num == 5:  # anonymous: NULL
            if e != s:
                raise Fallback
            auth = Authentication("anonymous")
        else:
            raise Fallback
    impl_id = _text(data, f.take(_CTX_P, 110), dec)
    impl_name = _text(data, f.take(_CTX_P, 111), dec)
    impl_version = _text(data, f.take(_CTX_P, 112), dec)
    f.done()  # userInformationField, otherInfo (charset negotiation): pyasn1
    return InitRequestInfo(
        reference_id=reference_id, versions=versions, options=options,
        preferred_message_size=pms, exceptional_record_size=ers, authentication=auth,
        implementation_id=impl_id, implementation_name=impl_name,
        implementation_version=impl_version, charset_proposal=None)


def _generic_esn(data: bytes, got: tuple[int, int] | None, dec: TermDecoder) -> str | None:
    """An explicitly tagged ElementSetNames: only the genericElementSetName arm."""
    if got is None:
        return None
    inner = _children(data, *got)
    if len(inner) != 1:
        raise Fallback
    s, e = _expect(inner[0], _CTX_P, 0)
    return dec.decode(data[s:e])


def _read_search(data: bytes, start: int, end: int, dec: TermDecoder) -> Any:
    f = _Fields(data, start, end)
    reference_id = _ref(f, data)
    small = _int(data, *f.need(_CTX_P, 13))
    large = _int(data, *f.need(_CTX_P, 14))
    medium = _int(data, *f.need(_CTX_P, 15))
    replace = _bool(data, *f.need(_CTX_P, 16))
    s, e = f.need(_CTX_P, 17)
    name = dec.decode(data[s:e])
    s, e = f.need(_CTX_C, 18)
    databases = []
    for item in _children(data, s, e):
        ds, de = _expect(item, _CTX_P, 105)
        databases.append(dec.decode(data[ds:de]))
    small_esn = _generic_esn(data, f.take(_CTX_C, 100), dec)
    medium_esn = _generic_esn(data, f.take(_CTX_C, 101), dec)
    got = f.take(_CTX_P, 104)
    syntax = None if got is None else _oid(data, *got)
    s, e = f.need(_CTX_C, 21)
    f.done()  # additionalSearchInfo, otherInfo: pyasn1
    inner = _children(data, s, e)
    if len(inner) != 1:
        raise Fallback
    first, num, qs, qe = inner[0]
    if first != _CTX_C or num not in (1, 101):
        raise Fallback  # type-0/2/100/102/104: pyasn1
    query = _rpn_query(data, qs, qe, dec)
    return SearchRequestInfo(
        reference_id=reference_id, small_set_upper_bound=small, large_set_lower_bound=large,
        medium_set_present_number=medium, replace_indicator=replace, result_set_name=name,
        database_names=tuple(databases), query_type="type-1" if num == 1 else "type-101",
        query=query, query_error=None, small_set_element_set_name=small_esn,
        medium_set_element_set_name=medium_esn, preferred_record_syntax=syntax)


def _rpn_query(data: bytes, start: int, end: int, dec: TermDecoder) -> pqf.Query:
    items = _children(data, start, end)
    if len(items) != 2:
        raise Fallback
    s, e = _expect(items[0], 0x00, 6)
    attrset = _oid(data, s, e)
    root = _structure(data, items[1], dec)
    return pqf.Query(root, attrset)


def _structure(data: bytes, item: tuple[int, int, int, int], dec: TermDecoder) -> pqf.Node:
    """The RPN structure as a L{pqf} tree, built without recursion: a long chain of operators
    (brokers OR hundreds of terms) is as deep as it is long, and the search limits it (with a
    diagnostic); the framer already bounds the nesting (L{ber.DEFAULT_MAX_RECURSION})."""
    built: list[pqf.Node] = []
    pending: list[tuple[tuple[int, int, int, int], Any]] = [(item, None)]
    while pending:
        entry, operator = pending.pop()
        if operator is not None:  # both operands built: combine them
            right = built.pop()
            built[-1] = operator(built[-1], right)
            continue
        first, num, start, end = entry
        if first == _CTX_C and num == 0:  # op [0] explicit Operand
            inner = _children(data, start, end)
            if len(inner) != 1:
                raise Fallback
            ofirst, onum, os_, oe = inner[0]
            if ofirst == _CTX_C and onum == 102:  # attrTerm
                built.append(_apt(data, os_, oe, dec))
            elif ofirst == _CTX_P and onum == 31:  # resultSet
                built.append(pqf.ResultSetRef(dec.decode(data[os_:oe])))
            else:
                raise Fallback  # resultAttr and the rest: pyasn1
            continue
        if first != _CTX_C or num != 1:  # rpnRpnOp
            raise Fallback
        parts = _children(data, start, end)
        if len(parts) != 3:
            raise Fallback
        ps, pe = _expect(parts[2], _CTX_C, 46)
        ops = _children(data, ps, pe)
        if len(ops) != 1:
            raise Fallback
        ofirst, onum, os_, oe = ops[0]
        if ofirst != _CTX_P or oe != os_ or onum not in _OPERATORS:
            raise Fallback  # prox (constructed) or a malformed NULL: pyasn1
        pending += ((entry, _OPERATORS[onum]), (parts[1], None), (parts[0], None))
    return built[0]


_OPERATORS = {0: pqf.And, 1: pqf.Or, 2: pqf.AndNot}


def _apt(data: bytes, start: int, end: int, dec: TermDecoder) -> pqf.Term:
    parts = _children(data, start, end)
    if len(parts) != 2:
        raise Fallback
    ls, le = _expect(parts[0], _CTX_C, 44)
    attrs = tuple(_attribute(data, item, dec) for item in _children(data, ls, le))
    first, num, ts, te = parts[1]
    if first == _CTX_P:
        if num == 45:
            return pqf.Term(dec.decode(data[ts:te]), attrs)
        if num == 215:
            return pqf.Term(str(_int(data, ts, te)), attrs, "numeric")
        if num == 216:
            return pqf.Term(dec.decode(data[ts:te]), attrs, "characterString")
        if num == 221 and te == ts:
            return pqf.Term("", attrs, "null")
    raise Fallback  # oid, dateTime, external, integerAndUnit: pyasn1 (query_error)


def _attribute(data: bytes, item: tuple[int, int, int, int], dec: TermDecoder) -> pqf.Attribute:
    if item[0] != 0x20 or item[1] != 16:
        raise Fallback
    f = _Fields(data, item[2], item[3])
    got = f.take(_CTX_P, 1)
    attrset = None if got is None else _oid(data, *got)
    type_ = _int(data, *f.need(_CTX_P, 120))
    value: pqf.AttributeValue
    got = f.take(_CTX_P, 121)
    if got is not None:
        value = _int(data, *got)
    else:
        cs, ce = f.need(_CTX_C, 224)
        c = _Fields(data, cs, ce)
        ls, le = c.need(_CTX_C, 1)
        items: list[int | str] = []
        for son in _children(data, ls, le):
            sfirst, snum, ss, se = son
            if sfirst == _CTX_P and snum == 1:
                items.append(dec.decode(data[ss:se]))
            elif sfirst == _CTX_P and snum == 2:
                items.append(_int(data, ss, se))
            else:
                raise Fallback
        got = c.take(_CTX_C, 2)
        if got is not None:
            for son in _children(data, *got):
                _int(data, *_expect(son, 0x00, 2))
        c.done()
        if len(items) == 1 and isinstance(items[0], str):
            value = items[0]
        else:
            value = tuple(items)
    f.done()
    return pqf.Attribute(attrset, type_, value)


def _read_present(data: bytes, start: int, end: int, dec: TermDecoder) -> Any:
    f = _Fields(data, start, end)
    reference_id = _ref(f, data)
    s, e = f.need(_CTX_P, 31)
    result_set_id = dec.decode(data[s:e])
    start_point = _int(data, *f.need(_CTX_P, 30))
    count = _int(data, *f.need(_CTX_P, 29))
    ranges: tuple[tuple[int, int], ...] = ()
    got = f.take(_CTX_C, 212)
    if got is not None:
        out = []
        for item in _children(data, *got):
            if item[0] != 0x20 or item[1] != 16:
                raise Fallback
            r = _Fields(data, item[2], item[3])
            a = _int(data, *r.need(_CTX_P, 1))
            b = _int(data, *r.need(_CTX_P, 2))
            r.done()
            out.append((a, b))
        ranges = tuple(out)
    esn = _generic_esn(data, f.take(_CTX_C, 19), dec)  # complex [209]: pyasn1
    got = f.take(_CTX_P, 104)
    syntax = None if got is None else _oid(data, *got)
    for number in (204,):
        got = f.take(_CTX_P, number)
        if got is not None:
            _int(data, *got)
    got = f.take(_CTX_P, 206)
    max_record_size = None if got is None else _int(data, *got)
    got = f.take(_CTX_P, 207)
    if got is not None:
        _int(data, *got)
    f.done()
    return PresentRequestInfo(
        reference_id=reference_id, result_set_id=result_set_id, start=start_point,
        count=count, element_set_name=esn, preferred_record_syntax=syntax,
        record_syntaxes=(), additional_ranges=ranges, max_record_size=max_record_size)


def _read_close(data: bytes, start: int, end: int, dec: TermDecoder) -> Any:
    f = _Fields(data, start, end)
    reference_id = _ref(f, data)
    reason = _int(data, *f.need(_CTX_P, 211))
    info = _text(data, f.take(_CTX_P, 3), dec)
    got = f.take(_CTX_P, 4)
    if got is not None:
        _oid(data, *got)
    f.done()  # resourceReport, otherInfo: pyasn1
    return CloseInfo(reference_id=reference_id, reason=reason, diagnostic_information=info)


# --------------------------------------------------------------------------------------
# TLV writer


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


_SHORT_LENGTHS = tuple(bytes((n,)) for n in range(0x80))


def _t(ident: bytes, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return ident + _SHORT_LENGTHS[n] + content
    return ident + _len(n) + content


def _enc_int(value: Any) -> bytes:
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Fallback
        value = int(value)
    if value == 0:
        return b"\x00"
    return value.to_bytes((value + (value < 0)).bit_length() // 8 + 1, "big", signed=True)


def encode_oid(oid: Any) -> bytes:
    """The content octets of an OBJECT IDENTIFIER."""
    return _oid_octets(tuple(oid))


@lru_cache(maxsize=256)
def _oid_octets(key: tuple[Any, ...]) -> bytes:
    """A pure function of the OID: responses name the same few OIDs, each encoded once."""
    if len(key) < 2 or any(type(a) is not int or a < 0 for a in key):
        raise Fallback
    a, b = key[0], key[1]
    if a > 2 or (a < 2 and b > 39):
        raise Fallback
    out = bytearray()
    for arc in (a * 40 + b, *key[2:]):
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def _bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise Fallback


def _octets(value: Any) -> bytes:
    """Like C{bytes(value)} for the octet-aligned payloads (no str: pyasn1 path decides)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise Fallback


def _bool_tlv(ident: bytes, value: Any) -> bytes:
    return ident + (b"\x01\x01" if value else b"\x01\x00")


def _bitstring(positions: list[int]) -> bytes:
    size = max(8, (max(positions, default=0) // 8 + 1) * 8)
    octets = bytearray(size // 8)
    for p in positions:
        octets[p >> 3] |= 0x80 >> (p & 7)
    return b"\x00" + bytes(octets)


# --------------------------------------------------------------------------------------
# Response encoders


def _diag_content(diag: Any) -> bytes:
    if type(diag) is not Diagnostic:
        raise Fallback
    info = b"" if diag.addinfo is None else _bytes(diag.addinfo)
    return (_t(b"\x06", encode_oid(diag.diagset))
            + _t(b"\x02", _enc_int(int(diag.condition)))
            + _t(b"\x1a" if diag.v2 else b"\x1b", info))


def _external(syntax: Any, encoding: bytes, ident: bytes = b"\x28") -> bytes:
    return _t(ident, _t(b"\x06", encode_oid(syntax)) + encoding)


_HOLDING_FIELDS = (
    (b"\x81", "type_of_record"), (b"\x82", "encoding_level"), (b"\x83", "format"),
    (b"\x84", "receipt_acq_status"), (b"\x85", "general_retention"),
    (b"\x86", "completeness"), (b"\x87", "date_of_report"), (b"\x88", "nuc_code"),
    (b"\x89", "local_location"), (b"\x8a", "shelving_location"), (b"\x8b", "call_number"),
    (b"\x8c", "shelving_data"), (b"\x8d", "copy_number"), (b"\x8e", "public_note"),
    (b"\x8f", "reproduction_note"), (b"\x90", "terms_use_repro"),
    (b"\x91", "enum_and_chron"),
)
_CIRC_TEXT_A = ((b"\x82", "availability_date"), (b"\x83", "available_thru"),
                (b"\x84", "restrictions"), (b"\x85", "item_id"))
_CIRC_TEXT_B = ((b"\x88", "enum_and_chron"), (b"\x89", "midspine"),
                (b"\x8a", "temporary_location"))


def _opac(record: Any) -> bytes:
    parts = []
    if record.bibliographic is not None:
        parts.append(_external(record.bib_syntax,
                               _t(b"\x81", _octets(record.bibliographic)), b"\xa1"))
    if record.holdings:
        items = []
        for hold in record.holdings:
            if type(hold) is not Holding:
                raise Fallback
            if hold.marc_holdings is not None:
                items.append(_external(oids.USMARC, _t(b"\x81", _octets(hold.marc_holdings)),
                                       b"\xa1"))
                continue
            fields = []
            for ident, attr in _HOLDING_FIELDS:
                text = getattr(hold, attr)
                if text is not None:
                    fields.append(_t(ident, _bytes(text)))
            if hold.volumes:
                vols = []
                for vol in hold.volumes:
                    if type(vol) is not VolumeInfo:
                        raise Fallback
                    v = b""
                    if vol.enumeration is not None:
                        v += _t(b"\x81", _bytes(vol.enumeration))
                    if vol.chronology is not None:
                        v += _t(b"\x82", _bytes(vol.chronology))
                    if vol.enum_and_chron is not None:
                        v += _t(b"\x83", _bytes(vol.enum_and_chron))
                    vols.append(_t(b"\x30", v))
                fields.append(_t(b"\xb2", b"".join(vols)))
            if hold.circulation:
                circs = []
                for circ in hold.circulation:
                    if type(circ) is not CirculationItem:
                        raise Fallback
                    c = [_bool_tlv(b"\x81", circ.available_now)]
                    for ident, attr in _CIRC_TEXT_A:
                        text = getattr(circ, attr)
                        if text is not None:
                            c.append(_t(ident, _bytes(text)))
                    c.append(_bool_tlv(b"\x86", circ.renewable))
                    c.append(_bool_tlv(b"\x87", circ.on_hold))
                    for ident, attr in _CIRC_TEXT_B:
                        text = getattr(circ, attr)
                        if text is not None:
                            c.append(_t(ident, _bytes(text)))
                    circs.append(_t(b"\x30", b"".join(c)))
                fields.append(_t(b"\xb3", b"".join(circs)))
            items.append(_t(b"\xa2", b"".join(fields)))
        parts.append(_t(b"\xa2", b"".join(items)))
    return _t(b"\x30", b"".join(parts))


def _record(entry: Any) -> bytes:
    """One NamePlusRecord TLV."""
    kind = type(entry)
    name = b"" if entry.database is None else _t(b"\x80", _bytes(entry.database))
    if kind is SurrogateDiagnostic:
        rec = _t(b"\xa2", _t(b"\x30", _diag_content(entry.diagnostic)))
    elif kind is ResponseRecord:
        data = entry.data
        syntax = tuple(entry.syntax)
        if type(data) is OpacRecord:
            encoding = _t(b"\xa0", _opac(data))
        elif isinstance(data, (bytes, str)):
            if syntax == oids.SUTRS:
                encoding = _t(b"\xa0", _t(b"\x1b", _bytes(data)))
            else:
                encoding = _t(b"\x81", _bytes(data))
        else:
            raise Fallback  # a ready pyasn1 value: pyasn1
        rec = _t(b"\xa1", _external(syntax, encoding))
    else:
        raise Fallback
    return _t(b"\x30", name + _t(b"\xa1", rec))


def _record_tlv(entry: Any) -> bytes:
    """One NamePlusRecord TLV: the one already made when the record was measured, if so."""
    if type(entry) is EncodedRecord:
        return entry.tlv
    return _record(entry)


def _records(records: Any, diagnostics: Any) -> bytes:
    if records:
        return _t(b"\xbc", b"".join([_record_tlv(entry) for entry in records]))
    if diagnostics:
        if len(diagnostics) == 1:
            return _t(b"\xbf\x81\x02", _diag_content(diagnostics[0]))
        return _t(b"\xbf\x81\x4d",
                  b"".join([_t(b"\x30", _diag_content(d)) for d in diagnostics]))
    return b""


def _guard(build: Any, *args: Any, **kwargs: Any) -> bytes | None:
    try:
        return build(*args, **kwargs)
    except (Fallback, TypeError, ValueError, KeyError, AttributeError, OverflowError):
        return None


def init_response(**kwargs: Any) -> bytes | None:
    """C{encode_pdu(codec.init_response(**kwargs))}, or C{None} (use pyasn1)."""
    return _guard(_init_response, **kwargs)


def _init_response(*, reference_id: bytes | None = None, accepted: bool = True,
                   versions: Any = (1, 2, 3), options: Any = ("search", "present"),
                   preferred_message_size: int, exceptional_record_size: int,
                   implementation_id: Any = None, implementation_name: Any = None,
                   implementation_version: Any = None, diagnostic: Any = None,
                   other_info: Any = ()) -> bytes:
    if diagnostic is not None or other_info:
        raise Fallback  # userInformationField / otherInfo: pyasn1
    body = b"" if reference_id is None else _t(b"\x82", bytes(reference_id))
    vbits = [VERSION_BITS[f"version-{v}"] for v in versions]
    obits = [OPTION_BITS[name] for name in options]
    body += (_t(b"\x83", _bitstring(vbits)) + _t(b"\x84", _bitstring(obits))
             + _t(b"\x85", _enc_int(int(preferred_message_size)))
             + _t(b"\x86", _enc_int(int(exceptional_record_size)))
             + _bool_tlv(b"\x8c", bool(accepted)))
    if implementation_id is not None:
        body += _t(b"\x9f\x6e", _bytes(implementation_id))
    if implementation_name is not None:
        body += _t(b"\x9f\x6f", _bytes(implementation_name))
    if implementation_version is not None:
        body += _t(b"\x9f\x70", _bytes(implementation_version))
    return _t(b"\xb5", body)


def search_response(**kwargs: Any) -> bytes | None:
    """C{encode_pdu(codec.search_response(**kwargs))}, or C{None} (use pyasn1)."""
    return _guard(_search_response, **kwargs)


def _search_response(*, reference_id: bytes | None = None, result_count: int,
                     search_status: bool = True, next_result_set_position: int | None = None,
                     result_set_status: int | None = None, present_status: int | None = None,
                     records: Any = None, diagnostics: Any = (),
                     additional_search_info: Any = ()) -> bytes:
    if (records and diagnostics) or additional_search_info:
        raise Fallback
    body = b"" if reference_id is None else _t(b"\x82", bytes(reference_id))
    count = len(records) if records else 0
    body += (_t(b"\x97", _enc_int(int(result_count))) + _t(b"\x98", _enc_int(count))
             + _t(b"\x99", _enc_int(count + 1 if next_result_set_position is None
                                    else int(next_result_set_position)))
             + _bool_tlv(b"\x96", bool(search_status)))
    if result_set_status is not None:
        body += _t(b"\x9a", _enc_int(int(result_set_status)))
    if present_status is not None:
        body += _t(b"\x9b", _enc_int(int(present_status)))
    body += _records(records, diagnostics)
    return _t(b"\xb7", body)


def present_response(**kwargs: Any) -> bytes | None:
    """C{encode_pdu(codec.present_response(**kwargs))}, or C{None} (use pyasn1)."""
    return _guard(_present_response, **kwargs)


def _present_head(reference_id: Any, count: int, next_position: Any, status: Any) -> bytes:
    body = b"" if reference_id is None else _t(b"\x82", bytes(reference_id))
    return (body + _t(b"\x98", _enc_int(count))
            + _t(b"\x99", _enc_int(int(next_position)))
            + _t(b"\x9b", _enc_int(int(status))))


def _present_response(*, reference_id: bytes | None = None, present_status: int = 0,
                      next_result_set_position: int, records: Any = (),
                      diagnostics: Any = ()) -> bytes:
    if records and diagnostics:
        raise Fallback
    body = _present_head(reference_id, len(records), next_result_set_position, present_status)
    return _t(b"\xb9", body + _records(records, diagnostics))


def record_size(record: Any) -> int | None:
    """What C{association.encoded_record_size} measures (bytes one record adds to a
    Present response with nextResultSetPosition 1), or C{None} (use pyasn1)."""
    try:
        npr = _record(record)
    except (Fallback, TypeError, ValueError, KeyError, AttributeError, OverflowError):
        return None
    return _present_growth(len(npr))


def encode_record(record: Any) -> EncodedRecord | None:
    """The record's NamePlusRecord encoding with its L{record_size}, or C{None} (use pyasn1).

    The association measures each record before packing a response; the encoding it gets
    here goes into that response as is, so each record is encoded once.
    """
    if type(record) is not ResponseRecord:
        return None
    memo = type(record.data) is OpacRecord  # frozen values all through: immutable
    if memo:
        try:
            found = _encoded_opac.get(record)
        except TypeError:  # a list where a tuple belongs: not hashable, encode as it is
            memo = False
        else:
            if found is not None:
                return found
    try:
        npr = _record(record)
    except (Fallback, TypeError, ValueError, KeyError, AttributeError, OverflowError):
        return None
    encoded = EncodedRecord(record, npr, _present_growth(len(npr)))
    if memo:
        if len(_encoded_opac) >= OPAC_MEMO_SIZE:
            _encoded_opac.clear()
        _encoded_opac[record] = encoded
    return encoded


OPAC_MEMO_SIZE = 512
"""OPAC records whose encoding L{encode_record} remembers (then it starts over). The encoding
is a pure function of the record's value, and a server presenting the same record again
(same MARC, same item states) hands an equal value, often the very same object."""

_encoded_opac: dict[ResponseRecord, EncodedRecord] = {}


def _present_growth(npr_length: int) -> int:
    """Bytes a Present response (nextResultSetPosition 1) grows by with one record whose
    NamePlusRecord is C{npr_length} long: its TLV, the responseRecords wrapper, the count."""
    empty = len(_present_head(None, 0, 1, 0))
    head = len(_present_head(None, 1, 1, 0))
    inner = head + 1 + len(_len(npr_length)) + npr_length  # [28] responseRecords wrapper
    full = 1 + len(_len(inner)) + inner
    return full - (1 + len(_len(empty)) + empty)


def close(reason: Any, **kwargs: Any) -> bytes | None:
    """C{encode_pdu(codec.close(reason, **kwargs))}, or C{None} (use pyasn1)."""
    return _guard(_close, reason, **kwargs)


def _close(reason: Any, *, reference_id: bytes | None = None,
           diagnostic_information: Any = None) -> bytes:
    body = b"" if reference_id is None else _t(b"\x82", bytes(reference_id))
    body += _t(b"\x9f\x81\x53", _enc_int(int(reason)))
    if diagnostic_information is not None:
        body += _t(b"\x83", _bytes(diagnostic_information))
    return _t(b"\xbf\x30", body)
