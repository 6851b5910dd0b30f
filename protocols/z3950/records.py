# -*- test-case-name: tests.protocols.test_z3950_records -*-
"""Retrieval records: the EXTERNAL one record travels in, and the OPAC record model.

MARC and XML records travel as C{octet-aligned} and stay bytes (ISO 2709 lengths count
bytes); SUTRS and OPAC as C{single-ASN1-type} (L{external} builds and decodes EXTERNALs).
The OPAC record has a small dataclass model (L{OpacRecord}, L{Holding}, L{CirculationItem},
L{VolumeInfo}) so the catalogue layer never touches pyasn1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyasn1.type import base, univ

from . import oids
from .asn1 import External
from .asn1_records import (
    HOLDINGS_STRING_FIELDS,
    CircRecord,
    HoldingsAndCircData,
    OPACRecord,
    SutrsRecord,
    Volume,
)
from .charset import TermDecoder, decode_text
from .external import (
    EXTERNAL_TYPES,
    DecodedExternal,
    decode_external,
    fill_external,
    make_external,
)

__all__ = [
    "EXTERNAL_TYPES",
    "CirculationItem",
    "DecodedExternal",
    "Holding",
    "OpacRecord",
    "VolumeInfo",
    "decode_external",
    "fill_external",
    "make_external",
    "opac_from_asn1",
    "opac_to_asn1",
    "retrieval_record",
]


def _to_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def retrieval_record(syntax: oids.Oid, record: bytes | str | base.Asn1Item) -> External:
    """Return the EXTERNAL for one retrieval record in C{syntax}.

    C{bytes}/C{str} are sent C{octet-aligned} (USMARC, XML...), except SUTRS text, which is
    a C{single-ASN1-type} InternationalString as YAZ sends it. pyasn1 values (e.g. an
    L{OPACRecord} from L{opac_to_asn1}) go as C{single-ASN1-type}.
    """
    syntax = tuple(syntax)
    if isinstance(record, (bytes, str)):
        if syntax == oids.SUTRS:
            return make_external(syntax, SutrsRecord(_to_bytes(record)))
        return make_external(syntax, octets=_to_bytes(record))
    return make_external(syntax, record)


# --------------------------------------------------------------------------------------
# OPAC model


def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper():
            out.append("_" + ch.lower())
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class VolumeInfo:
    """OPAC C{Volume}."""

    enumeration: str | None = None
    chronology: str | None = None
    enum_and_chron: str | None = None


@dataclass(frozen=True)
class CirculationItem:
    """OPAC C{CircRecord}: one item. ReShare reads C{available_now} (``availableNow``)."""

    available_now: bool
    item_id: str | None = None
    availability_date: str | None = None
    available_thru: str | None = None
    restrictions: str | None = None
    renewable: bool = False
    on_hold: bool = False
    enum_and_chron: str | None = None
    midspine: str | None = None
    temporary_location: str | None = None


@dataclass(frozen=True)
class Holding:
    """OPAC C{HoldingsAndCircData} (or, with C{marc_holdings}, a C{marcHoldingsRecord}).

    String fields are named after the ASN.1 in snake case (C{local_location} is 852$b).
    """

    type_of_record: str | None = None
    encoding_level: str | None = None
    format: str | None = None
    receipt_acq_status: str | None = None
    general_retention: str | None = None
    completeness: str | None = None
    date_of_report: str | None = None
    nuc_code: str | None = None
    local_location: str | None = None
    shelving_location: str | None = None
    call_number: str | None = None
    shelving_data: str | None = None
    copy_number: str | None = None
    public_note: str | None = None
    reproduction_note: str | None = None
    terms_use_repro: str | None = None
    enum_and_chron: str | None = None
    volumes: tuple[VolumeInfo, ...] = ()
    circulation: tuple[CirculationItem, ...] = ()
    marc_holdings: bytes | None = None
    """If set, this holding is a MARC holdings record (USMARC, octet-aligned) instead."""


@dataclass(frozen=True)
class OpacRecord:
    """An OPAC record: the bibliographic record (bytes in C{bib_syntax}) and holdings."""

    bibliographic: bytes | None = None
    bib_syntax: oids.Oid = oids.USMARC
    holdings: tuple[Holding, ...] = field(default_factory=tuple)


_CIRC_FIELDS = {
    "availablityDate": "availability_date",
    "availableThru": "available_thru",
    "restrictions": "restrictions",
    "itemId": "item_id",
    "enumAndChron": "enum_and_chron",
    "midspine": "midspine",
    "temporaryLocation": "temporary_location",
}


def opac_to_asn1(record: OpacRecord) -> OPACRecord:
    """Build the pyasn1 L{OPACRecord} for C{record} (strings encoded as UTF-8)."""
    opac = OPACRecord()
    if record.bibliographic is not None:
        fill_external(opac["bibliographicRecord"], record.bib_syntax, octets=record.bibliographic)
    if record.holdings:
        holdings = opac["holdingsData"]
        for hold in record.holdings:
            item = holdings.componentType.clone()
            if hold.marc_holdings is not None:
                fill_external(item["marcHoldingsRecord"], oids.USMARC, octets=hold.marc_holdings)
            else:
                _fill_holding(item["holdingsAndCirc"], hold)
            holdings.append(item)
    return opac


def _fill_holding(target: HoldingsAndCircData, hold: Holding) -> None:
    for name in HOLDINGS_STRING_FIELDS:
        text = getattr(hold, _snake(name))
        if text is not None:
            target[name] = _to_bytes(text)
    if hold.volumes:
        vols = target["volumes"]
        for vol in hold.volumes:
            v = Volume()
            for asn_name in ("enumeration", "chronology", "enumAndChron"):
                text = getattr(vol, _snake(asn_name))
                if text is not None:
                    v[asn_name] = _to_bytes(text)
            vols.append(v)
    if hold.circulation:
        circs = target["circulationData"]
        for circ in hold.circulation:
            c = CircRecord()
            c["availableNow"] = bool(circ.available_now)
            for asn_name, attr in _CIRC_FIELDS.items():
                text = getattr(circ, attr)
                if text is not None:
                    c[asn_name] = _to_bytes(text)
            c["renewable"] = bool(circ.renewable)
            c["onHold"] = bool(circ.on_hold)
            circs.append(c)


def _text(value: univ.OctetString, decoder_: TermDecoder | None) -> str | None:
    if not value.isValue:
        return None
    if decoder_ is None:
        return decode_text(value.asOctets())
    return decode_text(value.asOctets(), decoder_)


def opac_from_asn1(opac: OPACRecord, decoder_: TermDecoder | None = None) -> OpacRecord:
    """Convert a decoded pyasn1 L{OPACRecord} into the dataclass model."""
    bib: bytes | None = None
    bib_syntax = oids.USMARC
    if opac["bibliographicRecord"].isValue:
        dec = decode_external(opac["bibliographicRecord"], types={})
        bib = dec.data
        bib_syntax = dec.oid or oids.USMARC
    holdings: list[Holding] = []
    if opac["holdingsData"].isValue:
        for item in opac["holdingsData"]:
            if item.getName() == "marcHoldingsRecord":
                dec = decode_external(item["marcHoldingsRecord"], types={})
                holdings.append(Holding(marc_holdings=dec.data))
                continue
            h = item["holdingsAndCirc"]
            kwargs: dict[str, Any] = {
                _snake(name): _text(h[name], decoder_) for name in HOLDINGS_STRING_FIELDS
            }
            vols = []
            if h["volumes"].isValue:
                for v in h["volumes"]:
                    vols.append(
                        VolumeInfo(
                            _text(v["enumeration"], decoder_),
                            _text(v["chronology"], decoder_),
                            _text(v["enumAndChron"], decoder_),
                        )
                    )
            circs = []
            if h["circulationData"].isValue:
                for c in h["circulationData"]:
                    ckw: dict[str, Any] = {
                        attr: _text(c[asn_name], decoder_)
                        for asn_name, attr in _CIRC_FIELDS.items()
                    }
                    circs.append(
                        CirculationItem(
                            available_now=bool(c["availableNow"]),
                            renewable=bool(c["renewable"]),
                            on_hold=bool(c["onHold"]),
                            **ckw,
                        )
                    )
            holdings.append(Holding(volumes=tuple(vols), circulation=tuple(circs), **kwargs))
    return OpacRecord(bibliographic=bib, bib_syntax=bib_syntax, holdings=tuple(holdings))
