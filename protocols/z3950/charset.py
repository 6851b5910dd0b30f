# -*- test-case-name: tests.protocols.test_z3950_charset -*-
"""Character sets: decoding wire strings, and answering charset negotiation (charneg-3).

Z39.50 has no default character set: ``InternationalString`` is a GeneralString and
``Term.general`` an OCTET STRING, so the codec hands strings over as C{bytes} and this
module turns them into text. YAZ clients send UTF-8 unless told otherwise; some send
Latin-1. L{TermDecoder} tries UTF-8 first and falls back to a configurable charset.

For negotiation the server always answers UTF-8 (ISO 10646, form 8): L{negotiation_proposal}
finds a proposal in an Init request's otherInfo and L{utf8_negotiation_response} builds the
otherInfo unit to put in the InitResponse.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from pyasn1.type import univ

from . import oids
from .asn1 import OtherInformation, OtherInformationUnit
from .asn1_records import CharSetandLanguageNegotiation

__all__ = [
    "TermDecoder",
    "CharsetProposal",
    "negotiation_proposal",
    "utf8_negotiation_response",
    "utf8_negotiation_proposal",
    "decode_text",
]


@dataclass(frozen=True)
class TermDecoder:
    """Decode client strings: C{primary} first (strict), then C{fallback} (never fails).

    @ivar primary: charset tried first, normally C{"utf-8"} (or what charneg agreed).
    @ivar fallback: charset for clients that send something else, e.g. C{"latin-1"}; a
        single-byte charset that maps every byte guarantees decoding never fails. When it
        is C{None}, undecodable bytes are replaced with U+FFFD.
    """

    primary: str = "utf-8"
    fallback: str | None = "latin-1"

    def __post_init__(self) -> None:
        codecs.lookup(self.primary)
        if self.fallback is not None:
            codecs.lookup(self.fallback)

    def decode(self, data: bytes) -> str:
        """Return C{data} as text (primary charset, else the fallback)."""
        try:
            return data.decode(self.primary)
        except UnicodeDecodeError:
            if self.fallback is None:
                return data.decode(self.primary, errors="replace")
            return data.decode(self.fallback, errors="replace")


_DEFAULT = TermDecoder()


def decode_text(data: bytes | str | None, decoder: TermDecoder = _DEFAULT) -> str | None:
    """Decode wire bytes with C{decoder} (UTF-8, then Latin-1); pass text and C{None} through."""
    if data is None or isinstance(data, str):
        return data
    return decoder.decode(bytes(data))


@dataclass(frozen=True)
class CharsetProposal:
    """What an origin proposed in charneg-3, reduced to what a server decides on.

    @ivar utf8: an ISO 10646 proposal with the UTF-8 form (or no form) was included.
    @ivar iso10646_forms: every ISO 10646 encodingLevel OID proposed, in order.
    @ivar private_oids: private character sets proposed by OID.
    @ivar languages: proposed language codes, as text.
    @ivar records_in_selected_charsets: the origin's flag, if sent.
    """

    utf8: bool
    iso10646_forms: tuple[oids.Oid, ...] = ()
    private_oids: tuple[oids.Oid, ...] = ()
    languages: tuple[str, ...] = ()
    records_in_selected_charsets: bool | None = None


def negotiation_proposal(other_info: OtherInformation | None) -> CharsetProposal | None:
    """Find a charneg-3 proposal in an InitRequest's otherInfo; C{None} if there is none.

    Malformed negotiation records are ignored (C{None}): charset negotiation is optional
    and must never fail an Init.
    """
    from .records import decode_external  # records imports this module at load time

    if other_info is None or not other_info.isValue:
        return None
    for unit in other_info:
        info = unit["information"]
        if info.getName() != "externallyDefinedInfo":
            continue
        try:
            decoded = decode_external(info["externallyDefinedInfo"])
        except Exception:  # noqa: BLE001 - negotiation is best effort
            continue
        if decoded.oid != oids.CHARSET_NEGOTIATION_3 or decoded.value is None:
            continue
        neg = decoded.value
        if neg.getName() != "proposal":
            continue
        return _proposal(neg["proposal"])
    return None


def _proposal(prop: univ.Sequence) -> CharsetProposal:
    forms: list[oids.Oid] = []
    private: list[oids.Oid] = []
    utf8 = False
    charsets = prop["proposedCharSets"]
    if charsets.isValue:
        for choice in charsets:
            name = choice.getName()
            if name == "iso10646":
                level = choice["iso10646"]["encodingLevel"]
                form = tuple(level) if level.isValue else ()
                forms.append(form)
                if form in (oids.ISO10646_UTF8, ()):
                    utf8 = True
            elif name == "private":
                priv = choice["private"]
                if priv.getName() == "viaOid":
                    private.extend(tuple(o) for o in priv["viaOid"])
    langs: list[str] = []
    if prop["proposedlanguages"].isValue:
        langs = [str(decode_text(lang.asOctets())) for lang in prop["proposedlanguages"]]
    flag = prop["recordsInSelectedCharSets"]
    return CharsetProposal(
        utf8=utf8,
        iso10646_forms=tuple(forms),
        private_oids=tuple(private),
        languages=tuple(langs),
        records_in_selected_charsets=bool(flag) if flag.isValue else None,
    )


def utf8_negotiation_response(
    proposal: CharsetProposal | None = None, language: str | None = None
) -> OtherInformationUnit:
    """Build the otherInfo unit answering charneg-3 with UTF-8 (ISO 10646 form 8).

    Per charneg-3, C{recordsInSelectedCharSets} is echoed only if the origin sent it; we
    answer TRUE when asked (our records are UTF-8).
    """
    neg = CharSetandLanguageNegotiation()
    response = neg["response"]
    response["selectedCharSets"]["iso10646"]["encodingLevel"] = oids.ISO10646_UTF8
    if language is not None:
        response["selectedLanguage"] = language.encode("utf-8")
    if proposal is not None and proposal.records_in_selected_charsets is not None:
        response["recordsInSelectedCharSets"] = True
    return _negotiation_unit(neg)


def utf8_negotiation_proposal(
    records_in_selected_charsets: bool | None = None,
) -> OtherInformationUnit:
    """Build the otherInfo unit an origin sends to propose UTF-8 (like yaz-client's
    C{charset UTF-8}); for tests and client tools."""
    neg = CharSetandLanguageNegotiation()
    proposal = neg["proposal"]
    charsets = proposal["proposedCharSets"]
    choice = charsets.componentType.clone()
    choice["iso10646"]["encodingLevel"] = oids.ISO10646_UTF8
    charsets.append(choice)
    if records_in_selected_charsets is not None:
        proposal["recordsInSelectedCharSets"] = records_in_selected_charsets
    return _negotiation_unit(neg)


def _negotiation_unit(neg: CharSetandLanguageNegotiation) -> OtherInformationUnit:
    from .records import fill_external  # records imports this module at load time

    unit = OtherInformationUnit()
    fill_external(unit["information"]["externallyDefinedInfo"], oids.CHARSET_NEGOTIATION_3, neg)
    return unit
