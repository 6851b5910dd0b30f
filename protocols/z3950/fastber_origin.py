# -*- test-case-name: tests.protocols.test_z3950_fastber_origin -*-
"""BER fast path for the responses an origin reads most: Search and Present; pyasn1 stays
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
``fastber.ENABLED`` (``INTERLEND_Z3950_PYASN1=1``) switches it off too.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pyasn1.codec.ber import decoder as ber_decoder

from . import asn1, fastber
from .client import PresentResponseInfo, SearchResponseInfo
from .external import DecodedExternal
from .fastber import _CTX_C, _CTX_P, Fallback, _bool, _Fields, _int, _oid, _tlv

__all__ = ["read_response"]

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
    try:
        data = bytes(data)
        _, _, start, end = _tlv(data, 0, len(data))
        if end != len(data):
            return None
        result: SearchResponseInfo | PresentResponseInfo = reader(data, start, end)
        return result
    except (Fallback, IndexError, ValueError, RecursionError):
        return None


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


def _ref(f: _Fields, data: bytes) -> bytes | None:
    got = f.take(_CTX_P, 2)
    return None if got is None else data[got[0]:got[1]]


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
