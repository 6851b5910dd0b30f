# -*- test-case-name: tests.protocols.test_z3950_charset -*-
"""Character sets: decoding wire strings, and answering charset negotiation (charneg-3).

Z39.50 has no default character set: ``InternationalString`` is a GeneralString and
``Term.general`` an OCTET STRING, so the codec hands strings over as C{bytes} and this
module turns them into text. YAZ clients send UTF-8 unless told otherwise; some send
Latin-1. L{TermDecoder} tries UTF-8 first and falls back to a configurable charset.

For negotiation (charneg-3) L{negotiation_proposal} finds a proposal in an Init request's
otherInfo, L{choose_charset} picks the first character set the client offered that we can
convert to (UTF-8, ISO-8859-1 and the other single-byte ISO 8859 / Windows / KOI8 sets Python
knows, MARC-8), or UTF-8 when the proposal names no character set at all, and
L{negotiation_response} builds the otherInfo unit for the InitResponse: ISO 10646 UTF-8 by OID
when that is what was chosen, any other set by the name the client used (YAZ proposes and
reads everything but the ISO 10646 forms by name, as a private, externally specified set). A
proposal with nothing we can convert gets no answer (charneg-3: the target ignores it).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass

from pyasn1.type import univ

from . import marc8, oids
from .asn1 import OtherInformation, OtherInformationUnit
from .asn1_records import CharSetandLanguageNegotiation
from .external import decode_external, fill_external

__all__ = [
    "TermDecoder",
    "CharsetChoice",
    "CharsetProposal",
    "choose_charset",
    "codec_for",
    "negotiation_answer",
    "negotiation_response",
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
assert marc8.NCR_ERRORS  # importing marc8 registers the "marc-8" codec TermDecoder may use


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
    offered: tuple[tuple[str, str], ...] = ()
    """Every character set proposed, in the client's order, as (C{"iso10646"}, form name:
    C{"UTF-8"}, C{"UCS-2"}...) or (C{"private"}, the name the client gave)."""


_ISO10646_FORMS = {2: "UCS-2", 4: "UCS-4", 5: "UTF-16", 8: "UTF-8"}


@dataclass(frozen=True)
class CharsetChoice:
    """The character set an association negotiated.

    @ivar name: as the client named it (echoed in the answer), or C{"UTF-8"}.
    @ivar codec: the Python codec for terms and records (C{"utf-8"}, C{"iso8859-1"},
        C{"marc-8"}...).
    @ivar iso10646: answer by the ISO 10646 UTF-8 OID (else by name).
    @ivar records: records are sent in this character set too (the client's
        C{recordsInSelectedCharSets}); else they stay UTF-8.
    """

    name: str
    codec: str
    iso10646: bool = False
    records: bool = False

    @property
    def utf8(self) -> bool:
        """True when nothing needs converting."""
        return self.codec == "utf-8"


_SINGLE_BYTE_FAMILIES = ("iso8859-", "cp125", "koi8-", "mac-roman", "ascii")


def codec_for(name: str) -> str | None:
    """The Python codec for a character set name a client proposed, if we convert to it:
    UTF-8, MARC-8 and single-byte sets that keep ASCII (ISO 8859, Windows 125x, KOI8)."""
    key = "".join(c for c in name.lower() if c.isalnum())
    if key in ("utf8", "uni", "unicode"):
        return "utf-8"
    if key in ("marc8", "marc", "ansel"):
        return "marc-8"
    try:
        python = codecs.lookup(name.strip()).name
    except (LookupError, ValueError):
        return None
    if python == "utf-8":
        return "utf-8"
    return python if python.startswith(_SINGLE_BYTE_FAMILIES) else None


def choose_charset(proposal: CharsetProposal | None) -> CharsetChoice | None:
    """The first offered character set we convert to; UTF-8 when none was named; None when
    none of those offered will do (the proposal then goes unanswered)."""
    if proposal is None:
        return None
    records = bool(proposal.records_in_selected_charsets)
    if not proposal.offered:
        return CharsetChoice("UTF-8", "utf-8", iso10646=True, records=records)
    for kind, name in proposal.offered:
        codec = codec_for(name)
        if codec is None or (kind == "iso10646" and codec != "utf-8"):
            continue
        return CharsetChoice(name, codec, iso10646=kind == "iso10646", records=records)
    return None


def negotiation_proposal(other_info: OtherInformation | None) -> CharsetProposal | None:
    """Find a charneg-3 proposal in an InitRequest's otherInfo; C{None} if there is none.

    Malformed negotiation records are ignored (C{None}): charset negotiation is optional
    and must never fail an Init.
    """
    for negotiation in _negotiations(other_info):
        if negotiation.getName() == "proposal":
            return _proposal(negotiation["proposal"])
    return None


def negotiation_answer(other_info: OtherInformation | None) -> CharsetChoice | None:
    """Find a target's charneg-3 answer in an InitResponse's otherInfo (origin side); C{None}
    when it did not answer, or answered with nothing an origin can act on.

    The choice's C{codec} is the Python codec for the set (empty when there is none) and
    C{records} says whether records come in it.
    """
    for negotiation in _negotiations(other_info):
        if negotiation.getName() == "response":
            return _answer(negotiation["response"])
    return None


def _negotiations(other_info: OtherInformation | None) -> Iterator[univ.Choice]:
    """The charneg-3 records among otherInfo's EXTERNALs; malformed ones are skipped, since
    negotiation is optional and must never fail an Init."""
    if other_info is None or not other_info.isValue:
        return
    for unit in other_info:
        info = unit["information"]
        if info.getName() != "externallyDefinedInfo":
            continue
        try:
            decoded = decode_external(info["externallyDefinedInfo"])
        except Exception:  # noqa: BLE001 - a malformed record is no negotiation
            continue
        if decoded.oid == oids.CHARSET_NEGOTIATION_3 and decoded.value is not None:
            yield decoded.value


def _answer(response: univ.Sequence) -> CharsetChoice | None:
    flag = response["recordsInSelectedCharSets"]
    records = bool(flag) if flag.isValue else False
    selected = response["selectedCharSets"]
    if not selected.isValue:
        return None
    if selected.getName() == "iso10646":
        level = selected["iso10646"]["encodingLevel"]
        name = _form_name(tuple(level) if level.isValue else ())
        return CharsetChoice(name, codec_for(name) or "", iso10646=True, records=records)
    if selected.getName() == "private":
        private = selected["private"]
        if private.getName() == "externallySpecified":
            named = _private_name(private["externallySpecified"])
            if named:
                return CharsetChoice(named, codec_for(named) or "", records=records)
    return None


def _proposal(prop: univ.Sequence) -> CharsetProposal:
    forms: list[oids.Oid] = []
    private: list[oids.Oid] = []
    offered: list[tuple[str, str]] = []
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
                offered.append(("iso10646", _form_name(form)))
            elif name == "private":
                priv = choice["private"]
                if priv.getName() == "viaOid":
                    private.extend(tuple(o) for o in priv["viaOid"])
                elif priv.getName() == "externallySpecified":
                    named = _private_name(priv["externallySpecified"])
                    if named:
                        offered.append(("private", named))
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
        offered=tuple(offered),
    )


def _form_name(form: oids.Oid) -> str:
    """An ISO 10646 encoding level as a name (no level: UTF-8, as YAZ reads it)."""
    if not form:
        return "UTF-8"
    if form[:-1] == oids.ISO10646_UTF8[:-1] and form[-1] in _ISO10646_FORMS:
        return _ISO10646_FORMS[form[-1]]
    return oids.oid_to_dotted(form)


def _private_name(external: univ.Sequence) -> str | None:
    """The character set name in a private, externally specified set (YAZ: octet-aligned)."""
    encoding = external["encoding"]
    if not encoding.isValue or encoding.getName() != "octet-aligned":
        return None
    text = encoding["octet-aligned"].asOctets()
    if not 0 < len(text) <= 64 or not text.isascii():
        return None
    return text.decode("ascii").strip() or None


def negotiation_response(choice: CharsetChoice,
                         proposal: CharsetProposal | None = None) -> OtherInformationUnit:
    """The otherInfo unit answering charneg-3 with C{choice}: ISO 10646 UTF-8 by OID, other
    sets by name (private, externally specified, as YAZ reads them).

    C{recordsInSelectedCharSets} is answered only if the origin sent it.
    """
    if choice.iso10646:
        return utf8_negotiation_response(proposal, records=choice.records)
    neg = CharSetandLanguageNegotiation()
    response = neg["response"]
    fill_external(response["selectedCharSets"]["private"]["externallySpecified"],
                  oids.NEGOTIATION_CHARSET_ID, octets=choice.name.encode("ascii"))
    if proposal is not None and proposal.records_in_selected_charsets is not None:
        response["recordsInSelectedCharSets"] = choice.records
    return _negotiation_unit(neg)


def utf8_negotiation_response(
    proposal: CharsetProposal | None = None, language: str | None = None,
    records: bool = True,
) -> OtherInformationUnit:
    """Build the otherInfo unit answering charneg-3 with UTF-8 (ISO 10646 form 8).

    Per charneg-3, C{recordsInSelectedCharSets} is echoed only if the origin sent it; we
    answer C{records} (TRUE by default: our records are UTF-8).
    """
    neg = CharSetandLanguageNegotiation()
    response = neg["response"]
    response["selectedCharSets"]["iso10646"]["encodingLevel"] = oids.ISO10646_UTF8
    if language is not None:
        response["selectedLanguage"] = language.encode("utf-8")
    if proposal is not None and proposal.records_in_selected_charsets is not None:
        response["recordsInSelectedCharSets"] = records
    return _negotiation_unit(neg)


def utf8_negotiation_proposal(
    records_in_selected_charsets: bool | None = None,
    names: tuple[str, ...] = ("UTF-8",),
) -> OtherInformationUnit:
    """Build the otherInfo unit an origin sends to propose UTF-8 (like yaz-client's
    C{charset UTF-8}), or the character sets C{names} in that order (UTF-8 by its ISO 10646
    OID, others by name, as YAZ does); for tests and client tools."""
    neg = CharSetandLanguageNegotiation()
    proposal = neg["proposal"]
    charsets = proposal["proposedCharSets"]
    for name in names:
        choice = charsets.componentType.clone()
        if codec_for(name) == "utf-8":
            choice["iso10646"]["encodingLevel"] = oids.ISO10646_UTF8
        else:
            fill_external(choice["private"]["externallySpecified"],
                          oids.NEGOTIATION_CHARSET_ID, octets=name.encode("ascii"))
        charsets.append(choice)
    if records_in_selected_charsets is not None:
        proposal["recordsInSelectedCharSets"] = records_in_selected_charsets
    return _negotiation_unit(neg)


def _negotiation_unit(neg: CharSetandLanguageNegotiation) -> OtherInformationUnit:
    unit = OtherInformationUnit()
    fill_external(unit["information"]["externallyDefinedInfo"], oids.CHARSET_NEGOTIATION_3, neg)
    return unit
