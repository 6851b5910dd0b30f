# -*- test-case-name: tests.protocols.test_z3950_records -*-
"""EXTERNAL values: build them, and decode their payload in a second pass.

pyasn1 decodes an EXTERNAL's C{single-ASN1-type} as opaque bytes; L{decode_external} looks
the C{direct-reference} up in L{EXTERNAL_TYPES} and decodes the payload with the matching
spec (OPAC, SUTRS, diag-1, UserInfo-1, searchResult-1, charneg-3). MARC and XML records
travel as C{octet-aligned} and stay bytes (ISO 2709 lengths count bytes).

Retrieval records (L{records}), charset negotiation (L{charset}) and the Init diagnostics
(L{codec}) all wrap their payloads here; this module imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import base

from . import oids
from .asn1 import External, OtherInformation
from .asn1_records import (
    CharSetandLanguageNegotiation,
    DiagnosticFormat,
    OPACRecord,
    SearchInfoReport,
    SutrsRecord,
)
from .errors import Z3950ProtocolError

__all__ = [
    "EXTERNAL_TYPES",
    "DecodedExternal",
    "decode_external",
    "fill_external",
    "make_external",
]

EXTERNAL_TYPES: dict[oids.Oid, type[base.Asn1Item]] = {
    oids.OPAC: OPACRecord,
    oids.SUTRS: SutrsRecord,
    oids.DIAG1_FORMAT: DiagnosticFormat,
    oids.USERINFO_1: OtherInformation,
    oids.USERINFO_SEARCH_RESULT_1: SearchInfoReport,
    oids.CHARSET_NEGOTIATION_3: CharSetandLanguageNegotiation,
}
"""direct-reference OID -> ASN.1 type of its single-ASN1-type payload."""


def fill_external(
    target: External,
    direct_reference: oids.Oid | None,
    value: base.Asn1Item | None = None,
    *,
    octets: bytes | None = None,
) -> External:
    """Fill an (empty) EXTERNAL in place and return it.

    Give exactly one of C{value} (a pyasn1 value, encoded as C{single-ASN1-type}) or
    C{octets} (raw bytes, C{octet-aligned}: MARC, XML). Filling in place lets callers use
    the correctly (implicitly) tagged component their parent already holds.
    """
    if (value is None) == (octets is None):
        raise ValueError("give exactly one of value or octets")
    if direct_reference is not None:
        target["direct-reference"] = tuple(direct_reference)
    if octets is not None:
        target["encoding"]["octet-aligned"] = bytes(octets)
    else:
        target["encoding"]["single-ASN1-type"] = encoder.encode(value)
    return target


def make_external(
    direct_reference: oids.Oid | None,
    value: base.Asn1Item | None = None,
    *,
    octets: bytes | None = None,
    template: External | None = None,
) -> External:
    """Return a new EXTERNAL (tagged like C{template}, default plain UNIVERSAL 8)."""
    target = (template if template is not None else External()).clone()
    return fill_external(target, direct_reference, value, octets=octets)


@dataclass(frozen=True)
class DecodedExternal:
    """An EXTERNAL after the second decoding pass.

    @ivar oid: the direct-reference, if present.
    @ivar encoding: C{"single-ASN1-type"}, C{"octet-aligned"} or C{"arbitrary"}.
    @ivar data: the payload bytes (the inner TLV for single-ASN1-type).
    @ivar value: the decoded pyasn1 value when the OID is in L{EXTERNAL_TYPES}, else None.
    """

    oid: oids.Oid | None
    encoding: str
    data: bytes
    value: Any = None


def decode_external(ext: External, types: dict[oids.Oid, Any] | None = None) -> DecodedExternal:
    """Decode C{ext}'s payload by its direct-reference (second pass).

    @raise Z3950ProtocolError: the payload does not decode as its registered type.
    """
    registry = EXTERNAL_TYPES if types is None else types
    ref = ext["direct-reference"]
    oid = tuple(ref) if ref.isValue else None
    enc = ext["encoding"]
    name = enc.getName()
    if name == "octet-aligned":
        return DecodedExternal(oid, name, enc[name].asOctets())
    if name == "arbitrary":
        return DecodedExternal(oid, name, enc[name].asOctets())
    data = bytes(enc[name])
    spec = registry.get(oid) if oid is not None else None
    if spec is None:
        return DecodedExternal(oid, name, data)
    try:
        value, rest = decoder.decode(data, asn1Spec=spec())
    except Exception as exc:  # pyasn1 leaks non-PyAsn1Error exceptions
        raise Z3950ProtocolError(f"undecodable EXTERNAL payload ({oid}): {exc}") from exc
    if rest:
        raise Z3950ProtocolError(f"trailing bytes in EXTERNAL payload ({oid})")
    return DecodedExternal(oid, name, data, value)
