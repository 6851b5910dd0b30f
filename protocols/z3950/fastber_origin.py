# -*- test-case-name: tests.protocols.test_z3950_fastber_origin -*-
"""BER fast path for what an origin sends and reads most: Search and Present; pyasn1 stays
the reference.

:func:`read_response` turns a whole definite-length frame (as ``BERFramer.feed`` yields it)
holding a SearchResponse or PresentResponse straight into the
:class:`~protocols.z3950.client.SearchResponseInfo` /
:class:`~protocols.z3950.client.PresentResponseInfo` that
``read_response(decode_pdu(frame, framed=True))`` would give, without building pyasn1
objects. An upstream catalogue (Interlend in front of a library's Z39.50 target) reads one of
these per broker Search or Present, and pyasn1's decoder was the largest share of its CPU.

It is deliberately narrow, as the target side's :mod:`protocols.z3950.fastber`: records only
as ``retrievalRecord`` EXTERNALs with ``octet-aligned`` payloads (MARC, MARCXML as servers
send them); an ``additionalSearchInfo`` (Zebra sends one with every search; the origin does
not read it) is checked by pyasn1 alone, once per distinct value; any diagnostic, surrogate
diagnostic, ``single-ASN1-type`` payload (OPAC, SUTRS), ``otherInfo``, extension, unusual or
non-minimal encoding makes it return ``None``, and the caller takes the pyasn1 path, which
then accepts, rejects or raises exactly as before. It never accepts what pyasn1 would
reject: when in doubt it falls back.
The origin's requests go the other way: :func:`search_request` (type-1 queries of numeric
attributes and general terms) and :func:`present_request` return the bytes
``encode_pdu(client.search_request(...))`` (or ``present_request``) gives for the same
arguments, or ``None`` for anything else, and the caller builds it with pyasn1.
``fastber.ENABLED`` (``INTERLEND_Z3950_PYASN1=1``) switches all of this off too.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pyasn1.codec.ber import decoder as ber_decoder

from . import asn1, fastber, oids, pqf
from .client import PresentResponseInfo, SearchResponseInfo
from .external import DecodedExternal
from .fastber import (
    _CTX_C,
    _CTX_P,
    Fallback,
    _bool,
    _enc_int,
    _Fields,
    _int,
    _oid,
    _oid_octets,
    _ref,
    _t,
)

__all__ = ["present_request", "read_response", "search_request"]

_UNIVERSAL_EXTERNAL = 0x20   # universal, constructed (EXTERNAL is [UNIVERSAL 8])
_UNIVERSAL_P = 0x00          # universal, primitive (OBJECT IDENTIFIER is [UNIVERSAL 6])


def read_response(data: bytes) -> SearchResponseInfo | PresentResponseInfo | None:
    """The reader dataclass for a whole Search/Present response frame, or ``None``
    (another PDU, or one this path does not take: use pyasn1)."""
    if not fastber.ENABLED or len(data) < 2:
        return None
    first = data[0]
    if first == 0xB7:
        reader: Any = _search
    elif first == 0xB9:
        reader = _present
    else:
        return None
    result: SearchResponseInfo | PresentResponseInfo | None = fastber.read_whole(data, reader)
    return result


_ADDITIONAL_SEARCH_INFO = asn1.SearchResponse().componentType["additionalSearchInfo"].asn1Object


@lru_cache(maxsize=256)
def _other_information_ok(tlv: bytes) -> bool:
    """Whether pyasn1 decodes ``tlv`` as SearchResponse's ``additionalSearchInfo`` (memoized:
    a target sends the same report for the same search again and again)."""
    try:
        _, rest = ber_decoder.decode(tlv, asn1Spec=_ADDITIONAL_SEARCH_INFO.clone())
    except Exception:  # noqa: BLE001 - whatever pyasn1 raises, the whole PDU goes to pyasn1
        return False
    return not rest


def _skip_additional_search_info(f: _Fields, data: bytes) -> None:
    """Step over ``additionalSearchInfo [203]`` (not read by an origin) once pyasn1 accepts
    it; a value pyasn1 rejects sends the whole PDU to pyasn1."""
    if f.index >= len(f.items):
        return
    first, number, _, end = f.items[f.index]
    if first != _CTX_C or number != 203:
        return
    begin = f.items[f.index - 1][3]   # the TLV starts where the previous component ended
    if end - begin > 4096 or not _other_information_ok(data[begin:end]):
        raise Fallback
    f.index += 1


def _opt_int(f: _Fields, data: bytes, number: int) -> int | None:
    got = f.take(_CTX_P, number)
    return None if got is None else _int(data, *got)


def _search(data: bytes, start: int, end: int) -> SearchResponseInfo:
    f = _Fields(data, start, end)
    reference_id = _ref(f, data)
    result_count = _int(data, *f.need(_CTX_P, 23))
    returned = _int(data, *f.need(_CTX_P, 24))
    next_position = _int(data, *f.need(_CTX_P, 25))
    status = _bool(data, *f.need(_CTX_P, 22))
    result_set_status = _opt_int(f, data, 26)
    present_status = _opt_int(f, data, 27)
    records = _records(f, data)
    _skip_additional_search_info(f, data)
    f.done()
    return SearchResponseInfo(
        reference_id=reference_id, result_count=result_count,
        number_of_records_returned=returned, next_result_set_position=next_position,
        search_status=status, result_set_status=result_set_status,
        present_status=present_status, records=records, diagnostics=())


def _present(data: bytes, start: int, end: int) -> PresentResponseInfo:
    f = _Fields(data, start, end)
    reference_id = _ref(f, data)
    returned = _int(data, *f.need(_CTX_P, 24))
    next_position = _int(data, *f.need(_CTX_P, 25))
    status = _int(data, *f.need(_CTX_P, 27))
    records = _records(f, data)
    f.done()
    return PresentResponseInfo(
        reference_id=reference_id, number_of_records_returned=returned,
        next_result_set_position=next_position, present_status=status, records=records,
        diagnostics=())


def _records(f: _Fields, data: bytes) -> tuple[DecodedExternal, ...]:
    """``responseRecords [28]`` (absent: none); anything else there is for pyasn1."""
    got = f.take(_CTX_C, 28)
    if got is None:
        return ()
    out = []
    for npr in _Fields(data, *got).items:
        out.append(_name_plus_record(data, npr))
    return tuple(out)


def _name_plus_record(data: bytes, item: tuple[int, int, int, int]) -> DecodedExternal:
    first, number, start, end = item
    if first != _UNIVERSAL_EXTERNAL or number != 16:   # SEQUENCE
        raise Fallback
    f = _Fields(data, start, end)
    f.take(_CTX_P, 0)                                  # name: not read by the origin
    record = _Fields(data, *f.need(_CTX_C, 1))         # record [1] CHOICE (explicit)
    retrieval = _Fields(data, *record.need(_CTX_C, 1))  # retrievalRecord [1] (explicit)
    record.done()
    f.done()
    external = _Fields(data, *retrieval.need(_UNIVERSAL_EXTERNAL, 8))
    retrieval.done()
    got = external.take(_UNIVERSAL_P, 6)
    if got is None:
        raise Fallback       # no direct-reference: rare, pyasn1 decides
    oid = _oid(data, *got)
    payload = external.need(_CTX_P, 1)                 # octet-aligned [1] IMPLICIT
    external.done()
    return DecodedExternal(oid, "octet-aligned", data[payload[0]:payload[1]])


# --------------------------------------------------------------------------------------
# Request encoders: the bytes ``encode_pdu(client.search_request(...))`` (and present) gives,
# or None where they do not encode exactly that (then the caller builds it with pyasn1).


def _text(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    raise Fallback


def _syntax(oid: Any) -> bytes:
    return b"" if oid is None else _t(b"\x9f\x68", _oid_octets(tuple(oid)))


def _reference(reference_id: Any) -> bytes:
    return b"" if reference_id is None else _t(b"\x82", _text(reference_id))


def search_request(query: pqf.Query | str, *, database_names: Any = ("Default",),
                   result_set_name: Any = "default", reference_id: bytes | None = None,
                   small_set_upper_bound: int = 0, large_set_lower_bound: int = 1,
                   medium_set_present_number: int = 0, replace_indicator: bool = True,
                   preferred_record_syntax: oids.Oid | None = None,
                   element_set_name: Any = None, charset: str = "utf-8") -> bytes | None:
    """A SearchRequest with a type-1 query, as BER bytes, or ``None`` (use pyasn1)."""
    if not fastber.ENABLED or element_set_name is not None:
        return None
    try:
        model = pqf.parse_pqf(query) if isinstance(query, str) else query
        databases = b"".join(_t(b"\x9f\x69", _text(db)) for db in database_names)
        rpn = _t(b"\x06", _oid_octets(tuple(model.attribute_set))) + \
            _structure(model.root, charset, 0)
        body = b"".join((
            _reference(reference_id),
            _t(b"\x8d", _enc_int(small_set_upper_bound)),
            _t(b"\x8e", _enc_int(large_set_lower_bound)),
            _t(b"\x8f", _enc_int(medium_set_present_number)),
            b"\x90\x01\x01" if replace_indicator else b"\x90\x01\x00",
            _t(b"\x91", _text(result_set_name)),
            _t(b"\xb2", databases),
            _syntax(preferred_record_syntax),
            _t(b"\xb5", _t(b"\xa1", rpn))))
        return _t(b"\xb6", body)
    except Exception:  # noqa: BLE001 - anything unusual: pyasn1 builds it (or raises) as before
        return None


def _structure(node: pqf.Node, charset: str, depth: int) -> bytes:
    """RPNStructure: op [0] (an operand) or rpnRpnOp [1]."""
    if depth > pqf.MAX_QUERY_DEPTH:
        raise Fallback
    if isinstance(node, pqf.Term):
        return _t(b"\xa0", _t(b"\xbf\x66", _apt(node, charset)))
    if isinstance(node, pqf.ResultSetRef):
        return _t(b"\xa0", _t(b"\x9f\x1f", node.name.encode(charset)))
    operator = _OPERATORS.get(type(node))
    if operator is None:
        raise Fallback
    return _t(b"\xa1", _structure(node.left, charset, depth + 1)
              + _structure(node.right, charset, depth + 1)
              + operator)


_OPERATORS: dict[type, bytes] = {pqf.And: b"\xbf\x2e\x02\x80\x00",
                                 pqf.Or: b"\xbf\x2e\x02\x81\x00",
                                 pqf.AndNot: b"\xbf\x2e\x02\x82\x00"}


def _apt(term: pqf.Term, charset: str) -> bytes:
    """AttributesPlusTerm with numeric bib-1 attributes and a general term (else: pyasn1)."""
    if term.kind != "general":
        raise Fallback
    elements = []
    for attrset, kind, value in term.attributes:
        if attrset is not None or type(value) is not int or type(kind) is not int:
            raise Fallback
        elements.append(_t(b"\x30", _t(b"\x9f\x78", _enc_int(kind))
                           + _t(b"\x9f\x79", _enc_int(value))))
    return _t(b"\xbf\x2c", b"".join(elements)) + _t(b"\x9f\x2d", term.value.encode(charset))


def present_request(*, result_set_id: Any = "default", start: int = 1, count: int = 1,
                    reference_id: bytes | None = None,
                    preferred_record_syntax: oids.Oid | None = None,
                    element_set_name: Any = None) -> bytes | None:
    """A PresentRequest (simple element set name), as BER bytes, or ``None`` (use pyasn1)."""
    if not fastber.ENABLED:
        return None
    try:
        composition = b"" if element_set_name is None else \
            _t(b"\xb3", _t(b"\x80", _text(element_set_name)))
        return _t(b"\xb8", b"".join((
            _reference(reference_id),
            _t(b"\x9f\x1f", _text(result_set_id)),
            _t(b"\x9e", _enc_int(int(start))),
            _t(b"\x9d", _enc_int(int(count))),
            composition,
            _syntax(preferred_record_syntax))))
    except Exception:  # noqa: BLE001 - anything unusual: pyasn1 builds it (or raises) as before
        return None
