# -*- test-case-name: tests.protocols.test_z3950_codec,tests.protocols.test_z3950_fixtures -*-
"""Z39.50 PDU codec, server side: bytes <-> pyasn1 PDU, request readers, response builders.

* L{decode_pdu} / L{encode_pdu}: the only place pyasn1 meets the wire. Every exception
  pyasn1 raises (not only C{PyAsn1Error}: C{OverflowError}, C{IndexError},
  C{AttributeError}, C{RecursionError}...) becomes L{Z3950ProtocolError}, whose
  C{close_reason} is C{protocolError}. Output always uses definite lengths.
* Readers (C{read_*}) turn request PDUs into the frozen dataclasses of L{pdus} with text
  already decoded (L{TermDecoder}: UTF-8, fallback Latin-1) and the query as a L{pqf.Query}.
* Builders (C{*_response}, L{close}) make PDUs from plain Python values; strings may be
  C{str} (sent as UTF-8) or C{bytes} (sent as is).
* L{decode_request} and the C{encode_*} functions are what a server calls: they take the
  hand-written fast path (L{fastber}) when it applies and pyasn1 otherwise.

The origin side (request builders, response readers) is L{client}.

Typical server use::

    request = decode_request(frame)         # frame from BERFramer.feed()
    if isinstance(request, SearchRequestInfo):
        ...
        return encode_search_response(reference_id=request.reference_id, result_count=3)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.ber import encoder as ber_encoder
from pyasn1.type import univ

from . import fastber, oids, pqf
from .asn1 import (
    PDU,
    PDU_ARMS,
    DiagRec,
    External,
    OtherInformation,
    OtherInformationUnit,
)
from .asn1_records import DiagnosticFormat, DiagnosticFormatElement
from .ber import DEFAULT_MAX_DEPTH, to_definite
from .charset import TermDecoder, negotiation_proposal
from .errors import CloseReason, QueryConversionError, Z3950ProtocolError
from .external import fill_external, make_external
from .pdus import (
    OPTION_BITS,
    OPTION_NAMES,
    VERSION_BITS,
    VERSION_NAMES,
    Authentication,
    CloseInfo,
    DeleteResultSetRequestInfo,
    Diagnostic,
    EncodedRecord,
    InitRequestInfo,
    PresentRequestInfo,
    RecordEntry,
    Request,
    RequestInfo,
    ResponseRecord,
    ScanEntry,
    ScanRequestInfo,
    SearchRequestInfo,
    SortKeyInfo,
    SortRequestInfo,
    SurrogateDiagnostic,
    Text,
    UnhandledRequest,
)
from .records import OpacRecord, opac_to_asn1, retrieval_record

__all__ = [
    # wire
    "PDU",
    "decode_pdu",
    "encode_pdu",
    "new_pdu",
    "pdu_arm",
    "pdu_body",
    "reference_id",
    "bits_from_names",
    "names_from_bits",
    "fill_init_header",
    "fill_implementation",
    "make_external",
    # server: readers, builders, fast-path entry points
    "read_init_request",
    "read_search_request",
    "read_present_request",
    "read_scan_request",
    "read_sort_request",
    "read_delete_result_set_request",
    "read_close",
    "read_request",
    "decode_request",
    "encode_record",
    "init_response",
    "search_response",
    "present_response",
    "scan_response",
    "sort_response",
    "delete_result_set_response",
    "close",
    "encode_init_response",
    "encode_search_response",
    "encode_present_response",
    "encode_close",
    # value types (defined in pdus, re-exported for the server's callers)
    "OPTION_NAMES",
    "VERSION_NAMES",
    "Authentication",
    "CloseInfo",
    "DeleteResultSetRequestInfo",
    "Diagnostic",
    "EncodedRecord",
    "InitRequestInfo",
    "OtherInformationUnit",
    "PresentRequestInfo",
    "Request",
    "RequestInfo",
    "ResponseRecord",
    "ScanEntry",
    "ScanRequestInfo",
    "SearchRequestInfo",
    "SortKeyInfo",
    "SortRequestInfo",
    "SurrogateDiagnostic",
    "UnhandledRequest",
]


# --------------------------------------------------------------------------------------
# Bytes <-> PDU


def decode_pdu(data: bytes, *, framed: bool = False, max_depth: int = DEFAULT_MAX_DEPTH) -> PDU:
    """Decode one whole PDU (definite or indefinite lengths) into a pyasn1 L{PDU}.

    By default the bytes are validated and normalised to definite lengths first, so this
    is safe on arbitrary input. Pass C{framed=True} for frames from L{BERFramer.feed},
    which already went through that pass (saves a second scan).

    @raise Z3950ProtocolError: anything wrong with C{data}, whatever pyasn1 raised.
    """
    try:
        if len(data) < 2:
            raise Z3950ProtocolError("PDU too short")
        if not bytes(data[:3]).startswith(_PDU_IDENTIFIERS):
            # Checked here, not left to pyasn1: its "not in asn1Spec" error embeds the repr of
            # the whole PDU schema (~260 KB, ~15 ms to build) in the message for every stray
            # byte sequence -- a cheap way to burn CPU and flood the log.
            raise Z3950ProtocolError(f"not a Z39.50 PDU (identifier {bytes(data[:3]).hex()})")
        definite = bytes(data) if framed else to_definite(bytes(data), max_depth=max_depth)
        pdu, rest = ber_decoder.decode(definite, asn1Spec=PDU())
        if rest:
            raise Z3950ProtocolError("trailing bytes after the PDU")
        return pdu
    except Z3950ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - the decode boundary: nothing else may escape
        raise Z3950ProtocolError(f"undecodable PDU: {_brief(exc)}") from exc


MAX_ERROR_TEXT = 200
"""Characters of a decoder's exception text kept in our error (pyasn1 puts schema reprs of
hundreds of kilobytes in its messages; they would end up in the log)."""


def _brief(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."


def _identifier(tag_class: int, tag_format: int, tag_id: int) -> bytes:
    """The BER identifier octets of a tag."""
    if tag_id < 31:
        return bytes([tag_class | tag_format | tag_id])
    octets = [tag_id & 0x7F]
    tag_id >>= 7
    while tag_id:
        octets.append(0x80 | (tag_id & 0x7F))
        tag_id >>= 7
    return bytes([tag_class | tag_format | 0x1F, *reversed(octets)])


_PDU_IDENTIFIERS: tuple[bytes, ...] = tuple(
    _identifier(tag_set[-1].tagClass, tag_set[-1].tagFormat, tag_set[-1].tagId)
    for tag_set in PDU().tagMap.presentTypes)
"""Identifier octets of every PDU arm: anything else is refused before pyasn1 sees it."""


def encode_pdu(pdu: PDU) -> bytes:
    """Encode a L{PDU} with definite lengths.

    @raise Z3950ProtocolError: the value is incomplete or inconsistent (a programming error
        in the caller, reported with the same type so a server can still Close cleanly).
    """
    try:
        return bytes(ber_encoder.encode(pdu))
    except Exception as exc:  # noqa: BLE001
        raise Z3950ProtocolError(
            f"cannot encode PDU: {type(exc).__name__}: {exc}", CloseReason.systemProblem
        ) from exc


def new_pdu(arm: str) -> tuple[PDU, univ.Sequence]:
    """Return a fresh L{PDU} with arm C{arm} selected, and that arm's (empty) body to fill."""
    if arm not in PDU_ARMS:
        raise ValueError(f"unknown PDU arm {arm!r}")
    pdu = PDU()
    body = pdu.setComponentByName(arm).getComponentByName(arm)
    return pdu, body


def pdu_arm(pdu: PDU) -> str:
    """Return the chosen arm's name, e.g. C{"searchRequest"}."""
    return str(pdu.getName())


def pdu_body(pdu: PDU) -> univ.Sequence:
    """Return the chosen arm's value (the request or response SEQUENCE)."""
    return pdu.getComponent()


def reference_id(pdu_or_body: Any) -> bytes | None:
    """Return the referenceId of any PDU (or PDU body), to echo in the response."""
    body = pdu_or_body.getComponent() if isinstance(pdu_or_body, PDU) else pdu_or_body
    try:
        ref = body["referenceId"]
    except Exception:  # noqa: BLE001 - every arm has it, but be defensive
        return None
    return ref.asOctets() if ref.isValue else None


# --------------------------------------------------------------------------------------
# Small helpers


def _b(value: Text) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _opt_bytes(value: univ.OctetString) -> bytes | None:
    return value.asOctets() if value.isValue else None


def _opt_text(value: univ.OctetString, dec: TermDecoder) -> str | None:
    return dec.decode(value.asOctets()) if value.isValue else None


def _opt_int(value: univ.Integer) -> int | None:
    return int(value) if value.isValue else None


def _opt_oid(value: univ.ObjectIdentifier) -> oids.Oid | None:
    return tuple(value) if value.isValue else None


def bits_from_names(names: Iterable[str], table: dict[str, int] | None = None) -> tuple[int, ...]:
    """Return the BIT STRING bits (tuple of 0/1, padded to whole octets) for option names.

    @param table: name -> bit number (default: Init Options; use versions for
        ProtocolVersion via C{{"version-1": 0, ...}}).
    """
    mapping = OPTION_BITS if table is None else table
    positions = set()
    for name in names:
        if name not in mapping:
            raise ValueError(f"unknown bit name {name!r}")
        positions.add(mapping[name])
    size = max(8, (max(positions, default=0) // 8 + 1) * 8)
    return tuple(1 if i in positions else 0 for i in range(size))


def names_from_bits(bits: univ.BitString, names: Sequence[str]) -> frozenset[str]:
    """Return the set names of the bits that are set (unknown bit numbers are ignored)."""
    if not bits.isValue:
        return frozenset()
    return frozenset(
        names[i] for i, bit in enumerate(bits) if bit and i < len(names) and names[i]
    )


def _version_bits(versions: Iterable[int]) -> tuple[int, ...]:
    return bits_from_names((f"version-{v}" for v in versions), VERSION_BITS)


# --------------------------------------------------------------------------------------
# Diagnostics and records


def _fill_records(target: univ.Choice, records: Sequence[RecordEntry]) -> None:
    lst = target["responseRecords"]
    for entry in records:
        npr = lst.componentType.clone()
        if entry.database is not None:
            npr["name"] = _b(entry.database)
        rec = npr["record"]
        if isinstance(entry, SurrogateDiagnostic):
            entry.diagnostic.fill(rec["surrogateDiagnostic"]["defaultFormat"])
        else:
            if isinstance(entry, EncodedRecord):
                entry = entry.record
            data = entry.data
            if isinstance(data, OpacRecord):
                data = opac_to_asn1(data)
            ext = retrieval_record(entry.syntax, data)
            _copy_external(ext, rec["retrievalRecord"])
        lst.append(npr)


def _copy_external(source: External, target: External) -> None:
    for name in ("direct-reference", "indirect-reference", "data-value-descriptor"):
        if source[name].isValue:
            target[name] = source[name]
    arm = source["encoding"].getName()
    target["encoding"][arm] = source["encoding"][arm]


def _fill_diagnostics(target: univ.Choice, diagnostics: Sequence[Diagnostic]) -> None:
    if len(diagnostics) == 1:
        diagnostics[0].fill(target["nonSurrogateDiagnostic"])
        return
    lst = target["multipleNonSurDiagnostics"]
    for diag in diagnostics:
        rec = DiagRec()
        diag.fill(rec["defaultFormat"])
        lst.append(rec)


# --------------------------------------------------------------------------------------
# Init


def read_init_request(pdu: PDU, decoder: TermDecoder | None = None) -> InitRequestInfo:
    """Read an initRequest PDU (or its body)."""
    dec = decoder or TermDecoder()
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    versions = frozenset(
        int(name.rsplit("-", 1)[1])
        for name in names_from_bits(body["protocolVersion"], VERSION_NAMES)
    )
    auth: Authentication | None = None
    ida = body["idAuthentication"]
    if ida.isValue:
        kind = ida.getName()
        if kind == "open":
            user, _, password = dec.decode(ida["open"].asOctets()).partition("/")
            auth = Authentication("open", user, password or None)
        elif kind == "idPass":
            ip = ida["idPass"]
            auth = Authentication(
                "idPass",
                _opt_text(ip["userId"], dec),
                _opt_text(ip["password"], dec),
                _opt_text(ip["groupId"], dec),
            )
        else:
            auth = Authentication(kind)
    return InitRequestInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        versions=versions,
        options=names_from_bits(body["options"], OPTION_NAMES),
        preferred_message_size=int(body["preferredMessageSize"]),
        exceptional_record_size=int(body["exceptionalRecordSize"]),
        authentication=auth,
        implementation_id=_opt_text(body["implementationId"], dec),
        implementation_name=_opt_text(body["implementationName"], dec),
        implementation_version=_opt_text(body["implementationVersion"], dec),
        charset_proposal=negotiation_proposal(body["otherInfo"]),
    )


def fill_init_header(
    body: univ.Sequence,
    reference_id: bytes | None,
    versions: Iterable[int],
    options: Iterable[str],
    preferred_message_size: int,
    exceptional_record_size: int,
) -> None:
    """Fill the fields an Init request and response share (both sides build them)."""
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    body["protocolVersion"] = _version_bits(versions)
    body["options"] = bits_from_names(options)
    body["preferredMessageSize"] = int(preferred_message_size)
    body["exceptionalRecordSize"] = int(exceptional_record_size)


def fill_implementation(
    body: univ.Sequence, ident: Text | None, name: Text | None, ver: Text | None
) -> None:
    """Fill an Init PDU's implementationId, -Name and -Version (those given)."""
    if ident is not None:
        body["implementationId"] = _b(ident)
    if name is not None:
        body["implementationName"] = _b(name)
    if ver is not None:
        body["implementationVersion"] = _b(ver)


def _fill_other_info(target: univ.SequenceOf, units: Sequence[OtherInformationUnit]) -> None:
    for unit in units:
        target.append(unit)


def init_response(
    *,
    reference_id: bytes | None = None,
    accepted: bool = True,
    versions: Iterable[int] = (1, 2, 3),
    options: Iterable[str] = ("search", "present"),
    preferred_message_size: int,
    exceptional_record_size: int,
    implementation_id: Text | None = None,
    implementation_name: Text | None = None,
    implementation_version: Text | None = None,
    diagnostic: Diagnostic | None = None,
    other_info: Sequence[OtherInformationUnit] = (),
) -> PDU:
    """Build an InitializeResponse.

    A C{diagnostic} (for a refused Init, e.g. C{Bib1.AUTHENTICATION_SYSTEM_ERROR}) goes in
    userInformationField the way YAZ GFS nests it: EXTERNAL UserInfo-1 -> OtherInformation ->
    EXTERNAL diag-1 -> DiagnosticFormat -> defaultDiagRec. C{other_info} carries e.g. the
    charneg answer (L{charset.utf8_negotiation_response}).
    """
    pdu, body = new_pdu("initResponse")
    fill_init_header(
        body, reference_id, versions, options, preferred_message_size, exceptional_record_size
    )
    body["result"] = bool(accepted)
    fill_implementation(body, implementation_id, implementation_name, implementation_version)
    if diagnostic is not None:
        _fill_init_diagnostic(body["userInformationField"], diagnostic)
    if other_info:
        _fill_other_info(body["otherInfo"], other_info)
    return pdu


def _fill_init_diagnostic(target: External, diagnostic: Diagnostic) -> None:
    diag = DiagnosticFormat()
    elem = DiagnosticFormatElement()
    diagnostic.fill(elem["diagnostic"]["defaultDiagRec"])
    diag.append(elem)
    unit = OtherInformationUnit()
    fill_external(unit["information"]["externallyDefinedInfo"], oids.DIAG1_FORMAT, diag)
    other = OtherInformation()
    other.append(unit)
    fill_external(target, oids.USERINFO_1, other)


# --------------------------------------------------------------------------------------
# Search


def _esn(value: univ.Choice, dec: TermDecoder) -> str | None:
    if not value.isValue:
        return None
    if value.getName() == "genericElementSetName":
        return dec.decode(value["genericElementSetName"].asOctets())
    # databaseSpecific: take the first one (servers with one database treat them alike)
    for item in value["databaseSpecific"]:
        return dec.decode(item["esn"].asOctets())
    return None


def read_search_request(pdu: PDU, decoder: TermDecoder | None = None) -> SearchRequestInfo:
    """Read a searchRequest PDU (or its body); terms decoded with C{decoder}."""
    dec = decoder or TermDecoder()
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    query = body["query"]
    qtype = query.getName()
    model: pqf.Query | None = None
    error: str | None = None
    if qtype in ("type-1", "type-101"):
        try:
            model = pqf.query_from_rpn(query[qtype], dec)
        except QueryConversionError as exc:
            error = str(exc)
    else:
        error = f"query {qtype} not supported"
    return SearchRequestInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        small_set_upper_bound=int(body["smallSetUpperBound"]),
        large_set_lower_bound=int(body["largeSetLowerBound"]),
        medium_set_present_number=int(body["mediumSetPresentNumber"]),
        replace_indicator=bool(body["replaceIndicator"]),
        result_set_name=dec.decode(body["resultSetName"].asOctets()),
        database_names=tuple(dec.decode(d.asOctets()) for d in body["databaseNames"]),
        query_type=qtype,
        query=model,
        query_error=error,
        small_set_element_set_name=_esn(body["smallSetElementSetNames"], dec),
        medium_set_element_set_name=_esn(body["mediumSetElementSetNames"], dec),
        preferred_record_syntax=_opt_oid(body["preferredRecordSyntax"]),
    )


def search_response(
    *,
    reference_id: bytes | None = None,
    result_count: int,
    search_status: bool = True,
    next_result_set_position: int | None = None,
    result_set_status: int | None = None,
    present_status: int | None = None,
    records: Sequence[RecordEntry] | None = None,
    diagnostics: Sequence[Diagnostic] = (),
    additional_search_info: Sequence[OtherInformationUnit] = (),
) -> PDU:
    """Build a SearchResponse.

    For a failed search pass C{search_status=False}, C{result_set_status=3} (none) and the
    C{diagnostics} (one -> nonSurrogateDiagnostic, several -> multipleNonSurDiagnostics).
    C{numberOfRecordsReturned} is C{len(records)}; C{next_result_set_position} defaults to
    that plus one.
    """
    if records and diagnostics:
        raise ValueError("a response carries records or non-surrogate diagnostics, not both")
    pdu, body = new_pdu("searchResponse")
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    count = len(records) if records else 0
    body["resultCount"] = int(result_count)
    body["numberOfRecordsReturned"] = count
    body["nextResultSetPosition"] = (
        count + 1 if next_result_set_position is None else next_result_set_position
    )
    body["searchStatus"] = bool(search_status)
    if result_set_status is not None:
        body["resultSetStatus"] = int(result_set_status)
    if present_status is not None:
        body["presentStatus"] = int(present_status)
    if records:
        _fill_records(body["records"], records)
    elif diagnostics:
        _fill_diagnostics(body["records"], diagnostics)
    if additional_search_info:
        _fill_other_info(body["additionalSearchInfo"], additional_search_info)
    return pdu


# --------------------------------------------------------------------------------------
# Present


def read_present_request(pdu: PDU, decoder: TermDecoder | None = None) -> PresentRequestInfo:
    """Read a presentRequest PDU (or its body)."""
    dec = decoder or TermDecoder()
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    esn: str | None = None
    syntaxes: tuple[oids.Oid, ...] = ()
    comp = body["recordComposition"]
    if comp.isValue:
        if comp.getName() == "simple":
            esn = _esn(comp["simple"], dec)
        else:
            cs = comp["complex"]
            generic = cs["generic"]
            if generic.isValue and generic["elementSpec"].isValue:
                spec = generic["elementSpec"]
                if spec.getName() == "elementSetName":
                    esn = dec.decode(spec["elementSetName"].asOctets())
            if cs["recordSyntax"].isValue:
                syntaxes = tuple(tuple(o) for o in cs["recordSyntax"])
    ranges: tuple[tuple[int, int], ...] = ()
    if body["additionalRanges"].isValue:
        ranges = tuple(
            (int(r["startingPosition"]), int(r["numberOfRecords"]))
            for r in body["additionalRanges"]
        )
    return PresentRequestInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        result_set_id=dec.decode(body["resultSetId"].asOctets()),
        start=int(body["resultSetStartPoint"]),
        count=int(body["numberOfRecordsRequested"]),
        element_set_name=esn,
        preferred_record_syntax=_opt_oid(body["preferredRecordSyntax"]),
        record_syntaxes=syntaxes,
        additional_ranges=ranges,
        max_record_size=_opt_int(body["maxRecordSize"]),
    )


def present_response(
    *,
    reference_id: bytes | None = None,
    present_status: int = 0,
    next_result_set_position: int,
    records: Sequence[RecordEntry] = (),
    diagnostics: Sequence[Diagnostic] = (),
) -> PDU:
    """Build a PresentResponse (C{numberOfRecordsReturned} = C{len(records)}).

    Out-of-range: C{present_status=5},
    C{diagnostics=[Diagnostic(Bib1.PRESENT_OUT_OF_RANGE, str(start))]}.
    """
    if records and diagnostics:
        raise ValueError("a response carries records or non-surrogate diagnostics, not both")
    pdu, body = new_pdu("presentResponse")
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    body["numberOfRecordsReturned"] = len(records)
    body["nextResultSetPosition"] = int(next_result_set_position)
    body["presentStatus"] = int(present_status)
    if records:
        _fill_records(body["records"], records)
    elif diagnostics:
        _fill_diagnostics(body["records"], diagnostics)
    return pdu


# --------------------------------------------------------------------------------------
# Scan


def read_scan_request(pdu: PDU, decoder: TermDecoder | None = None) -> ScanRequestInfo:
    """Read a scanRequest PDU (or its body)."""
    dec = decoder or TermDecoder()
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    term: pqf.Term | None = None
    error: str | None = None
    try:
        term = pqf.term_from_apt(body["termListAndStartPoint"], dec)
    except QueryConversionError as exc:
        error = str(exc)
    return ScanRequestInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        database_names=tuple(dec.decode(d.asOctets()) for d in body["databaseNames"]),
        attribute_set=_opt_oid(body["attributeSet"]),
        term=term,
        number_of_terms=int(body["numberOfTermsRequested"]),
        step_size=_opt_int(body["stepSize"]),
        preferred_position=_opt_int(body["preferredPositionInResponse"]),
        term_error=error,
    )


def scan_response(
    *,
    reference_id: bytes | None = None,
    scan_status: int = 0,
    entries: Sequence[ScanEntry | Diagnostic] = (),
    position_of_term: int | None = None,
    step_size: int | None = None,
    diagnostics: Sequence[Diagnostic] = (),
    attribute_set: oids.Oid | None = None,
) -> PDU:
    """Build a ScanResponse; a L{Diagnostic} among C{entries} is a surrogate diagnostic.

    Failure: C{scan_status=6} with C{diagnostics} (nonsurrogateDiagnostics).
    """
    pdu, body = new_pdu("scanResponse")
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    if step_size is not None:
        body["stepSize"] = step_size
    body["scanStatus"] = int(scan_status)
    body["numberOfEntriesReturned"] = sum(1 for e in entries if isinstance(e, ScanEntry))
    if position_of_term is not None:
        body["positionOfTerm"] = int(position_of_term)
    if entries or diagnostics:
        lst = body["entries"]
        if entries:
            items = lst["entries"]
            for entry in entries:
                item = items.componentType.clone()
                if isinstance(entry, Diagnostic):
                    entry.fill(item["surrogateDiagnostic"]["defaultFormat"])
                else:
                    info = item["termInfo"]
                    info["term"]["general"] = _b(entry.term)
                    if entry.display_term is not None:
                        info["displayTerm"] = _b(entry.display_term)
                    if entry.occurrences is not None:
                        info["globalOccurrences"] = int(entry.occurrences)
                items.append(item)
        if diagnostics:
            dl = lst["nonsurrogateDiagnostics"]
            for diag in diagnostics:
                rec = DiagRec()
                diag.fill(rec["defaultFormat"])
                dl.append(rec)
    if attribute_set is not None:
        body["attributeSet"] = tuple(attribute_set)
    return pdu


# --------------------------------------------------------------------------------------
# Sort


def read_sort_request(pdu: PDU, decoder: TermDecoder | None = None) -> SortRequestInfo:
    """Read a sortRequest PDU (or its body); database-specific keys are skipped."""
    dec = decoder or TermDecoder()
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    keys: list[SortKeyInfo] = []
    for spec in body["sortSequence"]:
        elem = spec["sortElement"]
        relation = int(spec["sortRelation"])
        case_sensitive = int(spec["caseSensitivity"]) == 0
        if elem.getName() != "generic":
            continue
        key = elem["generic"]
        arm = key.getName()
        if arm == "sortAttributes":
            apt = key["sortAttributes"]
            attrs = tuple(pqf.attribute_from_asn1(e, dec) for e in apt["list"])
            keys.append(SortKeyInfo(attrs, None, relation, case_sensitive))
        elif arm == "sortfield":
            keys.append(
                SortKeyInfo((), dec.decode(key["sortfield"].asOctets()), relation, case_sensitive)
            )
    return SortRequestInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        input_result_sets=tuple(dec.decode(n.asOctets()) for n in body["inputResultSetNames"]),
        sorted_result_set=dec.decode(body["sortedResultSetName"].asOctets()),
        keys=tuple(keys),
    )


def sort_response(
    *,
    reference_id: bytes | None = None,
    sort_status: int = 0,
    result_set_status: int | None = None,
    diagnostics: Sequence[Diagnostic] = (),
    result_count: int | None = None,
) -> PDU:
    """Build a SortResponse (status 0 success, 1 partial-1, 2 failure)."""
    pdu, body = new_pdu("sortResponse")
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    body["sortStatus"] = int(sort_status)
    if result_set_status is not None:
        body["resultSetStatus"] = int(result_set_status)
    if diagnostics:
        lst = body["diagnostics"]
        for diag in diagnostics:
            rec = DiagRec()
            diag.fill(rec["defaultFormat"])
            lst.append(rec)
    if result_count is not None:
        body["resultCount"] = int(result_count)
    return pdu


# --------------------------------------------------------------------------------------
# Delete result set


def read_delete_result_set_request(
    pdu: PDU, decoder: TermDecoder | None = None
) -> DeleteResultSetRequestInfo:
    """Read a deleteResultSetRequest PDU (or its body); function 1 = all."""
    dec = decoder or TermDecoder()
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    names: tuple[str, ...] = ()
    if body["resultSetList"].isValue:
        names = tuple(dec.decode(n.asOctets()) for n in body["resultSetList"])
    return DeleteResultSetRequestInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        delete_all=int(body["deleteFunction"]) == 1,
        result_sets=names,
    )


def delete_result_set_response(
    *,
    reference_id: bytes | None = None,
    status: int = 0,
    list_statuses: Sequence[tuple[Text, int]] = (),
    number_not_deleted: int | None = None,
    message: Text | None = None,
) -> PDU:
    """Build a DeleteResultSetResponse (status 0 success, 1 resultSetDidNotExist...)."""
    pdu, body = new_pdu("deleteResultSetResponse")
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    body["deleteOperationStatus"] = int(status)
    if list_statuses:
        lst = body["deleteListStatuses"]
        for name, st in list_statuses:
            item = lst.componentType.clone()
            item["id"] = _b(name)
            item["status"] = int(st)
            lst.append(item)
    if number_not_deleted is not None:
        body["numberNotDeleted"] = int(number_not_deleted)
    if message is not None:
        body["deleteMessage"] = _b(message)
    return pdu


# --------------------------------------------------------------------------------------
# Close


def read_close(pdu: PDU, decoder: TermDecoder | None = None) -> CloseInfo:
    """Read a close PDU (or its body); C{reason} is an int (see L{CloseReason})."""
    dec = decoder or TermDecoder()
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    return CloseInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        reason=int(body["closeReason"]),
        diagnostic_information=_opt_text(body["diagnosticInformation"], dec),
    )


def close(
    reason: CloseReason | int = CloseReason.finished,
    *,
    reference_id: bytes | None = None,
    diagnostic_information: Text | None = None,
) -> PDU:
    """Build a Close PDU, e.g. C{close(CloseReason.protocolError, diagnostic_information=
    "Malformed package")}."""
    pdu, body = new_pdu("close")
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    body["closeReason"] = int(reason)
    if diagnostic_information is not None:
        body["diagnosticInformation"] = _b(diagnostic_information)
    return pdu


# --------------------------------------------------------------------------------------
# Dispatch


_READERS: dict[str, Callable[[PDU, TermDecoder | None], RequestInfo]] = {
    "initRequest": read_init_request,
    "searchRequest": read_search_request,
    "presentRequest": read_present_request,
    "scanRequest": read_scan_request,
    "sortRequest": read_sort_request,
    "deleteResultSetRequest": read_delete_result_set_request,
    "close": read_close,
}


def read_request(pdu: PDU, decoder: TermDecoder | None = None) -> RequestInfo | None:
    """Read any request a server handles into its dataclass; C{None} for other arms
    (the association answers those with a Close or an "unsupported" reply).

    @raise Z3950ProtocolError: the PDU decoded but its content is unusable.
    """
    reader = _READERS.get(pdu_arm(pdu))
    if reader is None:
        return None
    try:
        return reader(pdu, decoder)
    except Z3950ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - same boundary rule as decode_pdu
        raise Z3950ProtocolError(f"unusable {pdu_arm(pdu)}: {_brief(exc)}") from exc


# --------------------------------------------------------------------------------------
# Fast path (protocols.z3950.fastber): the hot PDUs without pyasn1, same values and bytes.
# fastber.ENABLED = False forces pyasn1 everywhere (tests, comparisons).


def decode_request(
    data: bytes, decoder: TermDecoder | None = None, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> Request:
    """Decode and read one framed PDU (from L{BERFramer.feed}) for a server.

    Requests come back as their L{read_request} dataclass (text decoded with C{decoder}),
    through the fast path when it handles them; any other arm as an L{UnhandledRequest}.

    @raise Z3950ProtocolError: the bytes do not decode, or the request is unusable.
    """
    if fastber.ENABLED:
        info = fastber.read_request(data, decoder)
        if info is not None:
            return info
    pdu = decode_pdu(data, framed=True, max_depth=max_depth)
    request = read_request(pdu, decoder)
    if request is None:
        return UnhandledRequest(pdu_arm(pdu), reference_id(pdu))
    return request


def encode_record(record: ResponseRecord) -> EncodedRecord | None:
    """The record encoded once, to measure it and then send those bytes; C{None} when the
    fast path does not apply (measure with the pyasn1 path then)."""
    return fastber.encode_record(record) if fastber.ENABLED else None


def encode_init_response(**kwargs: Any) -> bytes:
    """C{encode_pdu(init_response(**kwargs))}, through the fast path when it applies."""
    if fastber.ENABLED:
        data = fastber.init_response(**kwargs)
        if data is not None:
            return data
    return encode_pdu(init_response(**kwargs))


def encode_search_response(**kwargs: Any) -> bytes:
    """C{encode_pdu(search_response(**kwargs))}, through the fast path when it applies."""
    if fastber.ENABLED:
        data = fastber.search_response(**kwargs)
        if data is not None:
            return data
    return encode_pdu(search_response(**kwargs))


def encode_present_response(**kwargs: Any) -> bytes:
    """C{encode_pdu(present_response(**kwargs))}, through the fast path when it applies."""
    if fastber.ENABLED:
        data = fastber.present_response(**kwargs)
        if data is not None:
            return data
    return encode_pdu(present_response(**kwargs))


def encode_close(reason: CloseReason | int = CloseReason.finished, **kwargs: Any) -> bytes:
    """C{encode_pdu(close(reason, **kwargs))}, through the fast path when it applies."""
    if fastber.ENABLED:
        data = fastber.close(reason, **kwargs)
        if data is not None:
            return data
    return encode_pdu(close(reason, **kwargs))
