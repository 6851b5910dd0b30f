# -*- test-case-name: tests.protocols.test_z3950_client -*-
"""Z39.50 origin side: request builders and response readers, for a client of any target.

The server side is L{codec}; this module is what a client needs: build the requests an origin
sends (Init with credentials and charset negotiation, Search, Present, Scan, Sort, Delete
result set, Close) and read the responses a target sends back into frozen dataclasses, with
text decoded (L{TermDecoder}) and records as L{DecodedExternal} (OPAC and SUTRS decoded,
MARC and XML as bytes). It is tested against our own server and against YAZ's test target.
Like the rest of the package it does no I/O: bring your own socket (or Twisted protocol)
and a L{BERFramer}.

Typical use::

    send(encode_pdu(init_request(authentication=Authentication("open", "me", "secret"))))
    init = read_response(decode_pdu(next_frame()))   # InitResponseInfo
    send(encode_pdu(search_request("@attr 1=4 dune")))
    found = read_response(decode_pdu(next_frame()))  # SearchResponseInfo: count, records
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyasn1.type import univ

from . import oids, pqf
from .asn1 import PDU, OtherInformationUnit
from .charset import CharsetChoice, TermDecoder, negotiation_answer, utf8_negotiation_proposal
from .codec import (
    VERSION_NAMES,
    close,
    decode_pdu,
    fill_implementation,
    fill_init_header,
    names_from_bits,
    new_pdu,
    pdu_arm,
    pdu_body,
    read_close,
)
from .errors import Z3950ProtocolError
from .external import DecodedExternal, decode_external
from .pdus import (
    OPTION_NAMES,
    Authentication,
    CloseInfo,
    Diagnostic,
    ScanEntry,
    SortKeyInfo,
    SurrogateDiagnostic,
    Text,
)

__all__ = [
    "Authentication",
    "CloseInfo",
    "DeleteResultSetResponseInfo",
    "Diagnostic",
    "InitResponseInfo",
    "PresentResponseInfo",
    "ResponseInfo",
    "ScanEntry",
    "ScanResponseInfo",
    "SearchResponseInfo",
    "SortKeyInfo",
    "SortResponseInfo",
    "SurrogateDiagnostic",
    "close",
    "decode_response",
    "delete_result_set_request",
    "init_request",
    "present_request",
    "read_close",
    "read_delete_result_set_response",
    "read_diagnostics",
    "read_init_diagnostics",
    "read_init_response",
    "read_present_response",
    "read_records",
    "read_response",
    "read_scan_response",
    "read_search_response",
    "read_sort_response",
    "scan_request",
    "search_request",
    "sort_request",
]


def _b(value: Text) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _opt_bytes(value: univ.OctetString) -> bytes | None:
    return value.asOctets() if value.isValue else None


def _opt_text(value: univ.OctetString, dec: TermDecoder) -> str | None:
    return dec.decode(value.asOctets()) if value.isValue else None


def _opt_int(value: univ.Integer) -> int | None:
    return int(value) if value.isValue else None


def _diag_recs(values: Any, decoder: TermDecoder | None) -> tuple[Diagnostic, ...]:
    """The DefaultFormat diagnostics of a SEQUENCE OF DiagRec (external ones are skipped)."""
    if not values.isValue:
        return ()
    return tuple(Diagnostic.from_asn1(rec["defaultFormat"], decoder) for rec in values
                 if rec.getName() == "defaultFormat")


# --------------------------------------------------------------------------------------
# Requests


def init_request(
    *,
    reference_id: bytes | None = None,
    versions: Iterable[int] = (1, 2, 3),
    options: Iterable[str] = ("search", "present"),
    preferred_message_size: int = 1024 * 1024,
    exceptional_record_size: int = 1024 * 1024,
    authentication: Authentication | None = None,
    implementation_id: Text | None = None,
    implementation_name: Text | None = None,
    implementation_version: Text | None = None,
    other_info: Sequence[OtherInformationUnit] = (),
    charsets: Sequence[str] = (),
    records_in_selected_charsets: bool | None = None,
) -> PDU:
    """Build an InitializeRequest.

    C{authentication} is sent as C{open} (C{"user/password"}), C{idPass} or C{anonymous};
    C{charsets} proposes character sets by charneg-3 (as yaz-client's C{charset} command:
    UTF-8 by its ISO 10646 OID, others by name), and C{records_in_selected_charsets} asks
    for records in the chosen one too; the option C{negotiationModel} is then set.
    C{other_info} adds otherInfo units as they are.
    """
    units = list(other_info)
    if charsets:
        options = tuple(dict.fromkeys([*options, "negotiationModel"]))
        units.append(utf8_negotiation_proposal(records_in_selected_charsets, tuple(charsets)))
    pdu, body = new_pdu("initRequest")
    fill_init_header(
        body, reference_id, versions, options, preferred_message_size, exceptional_record_size
    )
    if authentication is not None:
        ida = body["idAuthentication"]
        if authentication.kind == "open":
            text = authentication.user or ""
            if authentication.password is not None:
                text += "/" + authentication.password
            ida["open"] = text.encode("utf-8")
        elif authentication.kind == "idPass":
            ip = ida["idPass"]
            for key, val in (
                ("groupId", authentication.group),
                ("userId", authentication.user),
                ("password", authentication.password),
            ):
                if val is not None:
                    ip[key] = val.encode("utf-8")
        elif authentication.kind == "anonymous":
            ida["anonymous"] = ""
        else:
            raise ValueError(f"cannot build idAuthentication {authentication.kind!r}")
    fill_implementation(body, implementation_id, implementation_name, implementation_version)
    for unit in units:
        body["otherInfo"].append(unit)
    return pdu


def search_request(
    query: pqf.Query | str,
    *,
    database_names: Sequence[Text] = ("Default",),
    result_set_name: Text = "default",
    reference_id: bytes | None = None,
    small_set_upper_bound: int = 0,
    large_set_lower_bound: int = 1,
    medium_set_present_number: int = 0,
    replace_indicator: bool = True,
    preferred_record_syntax: oids.Oid | None = None,
    element_set_name: Text | None = None,
    charset: str = "utf-8",
) -> PDU:
    """Build a SearchRequest with a type-1 query (a L{pqf.Query} or PQF text)."""
    model = pqf.parse_pqf(query) if isinstance(query, str) else query
    pdu, body = new_pdu("searchRequest")
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    body["smallSetUpperBound"] = small_set_upper_bound
    body["largeSetLowerBound"] = large_set_lower_bound
    body["mediumSetPresentNumber"] = medium_set_present_number
    body["replaceIndicator"] = bool(replace_indicator)
    body["resultSetName"] = _b(result_set_name)
    dbs = body["databaseNames"]
    for db in database_names:
        dbs.append(dbs.componentType.clone(_b(db)))
    if element_set_name is not None:
        body["smallSetElementSetNames"]["genericElementSetName"] = _b(element_set_name)
        body["mediumSetElementSetNames"]["genericElementSetName"] = _b(element_set_name)
    if preferred_record_syntax is not None:
        body["preferredRecordSyntax"] = tuple(preferred_record_syntax)
    pqf.query_to_rpn(model, charset, target=body["query"]["type-1"])
    return pdu


def present_request(
    *,
    result_set_id: Text = "default",
    start: int = 1,
    count: int = 1,
    reference_id: bytes | None = None,
    preferred_record_syntax: oids.Oid | None = None,
    element_set_name: Text | None = None,
) -> PDU:
    """Build a PresentRequest (simple element set name composition)."""
    pdu, body = new_pdu("presentRequest")
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    body["resultSetId"] = _b(result_set_id)
    body["resultSetStartPoint"] = int(start)
    body["numberOfRecordsRequested"] = int(count)
    if element_set_name is not None:
        body["recordComposition"]["simple"]["genericElementSetName"] = _b(element_set_name)
    if preferred_record_syntax is not None:
        body["preferredRecordSyntax"] = tuple(preferred_record_syntax)
    return pdu


def scan_request(
    term: pqf.Term | str,
    *,
    database_names: Sequence[Text] = ("Default",),
    attribute_set: oids.Oid | None = oids.BIB1_ATTRSET,
    number_of_terms: int = 20,
    preferred_position: int | None = 1,
    step_size: int | None = None,
    reference_id: bytes | None = None,
) -> PDU:
    """Build a ScanRequest; C{term} may be PQF text of a single term (C{"@attr 1=4 a"})."""
    if isinstance(term, str):
        root = pqf.parse_pqf(term).root
        if not isinstance(root, pqf.Term):
            raise ValueError("scan needs a single term")
        term = root
    pdu, body = new_pdu("scanRequest")
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    dbs = body["databaseNames"]
    for db in database_names:
        dbs.append(dbs.componentType.clone(_b(db)))
    if attribute_set is not None:
        body["attributeSet"] = tuple(attribute_set)
    pqf.fill_apt(body["termListAndStartPoint"], term)
    if step_size is not None:
        body["stepSize"] = step_size
    body["numberOfTermsRequested"] = int(number_of_terms)
    if preferred_position is not None:
        body["preferredPositionInResponse"] = int(preferred_position)
    return pdu


def sort_request(
    *,
    input_result_sets: Sequence[Text] = ("default",),
    sorted_result_set: Text = "default",
    keys: Sequence[SortKeyInfo] = (),
    reference_id: bytes | None = None,
) -> PDU:
    """Build a SortRequest (keys as attribute lists or sort field names)."""
    pdu, body = new_pdu("sortRequest")
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    names = body["inputResultSetNames"]
    for name in input_result_sets:
        names.append(names.componentType.clone(_b(name)))
    body["sortedResultSetName"] = _b(sorted_result_set)
    seq = body["sortSequence"]
    for key in keys:
        spec = seq.componentType.clone()
        generic = spec["sortElement"]["generic"]
        if key.sort_field is not None:
            generic["sortfield"] = _b(key.sort_field)
        else:
            sa = generic["sortAttributes"]
            sa["id"] = tuple(oids.BIB1_ATTRSET)
            pqf.fill_attributes(sa["list"], key.attributes)
        spec["sortRelation"] = key.relation
        spec["caseSensitivity"] = 0 if key.case_sensitive else 1
        seq.append(spec)
    return pdu


def delete_result_set_request(
    *, result_sets: Sequence[Text] = (), delete_all: bool = False, reference_id: bytes | None = None
) -> PDU:
    """Build a DeleteResultSetRequest (list, or all when C{delete_all})."""
    pdu, body = new_pdu("deleteResultSetRequest")
    if reference_id is not None:
        body["referenceId"] = bytes(reference_id)
    body["deleteFunction"] = 1 if delete_all else 0
    if result_sets:
        lst = body["resultSetList"]
        for name in result_sets:
            lst.append(lst.componentType.clone(_b(name)))
    return pdu


# Close is the same PDU on both sides: L{codec.close} builds it, L{codec.read_close} reads it.


# --------------------------------------------------------------------------------------
# Responses


@dataclass(frozen=True)
class InitResponseInfo:
    """What an origin learns from an InitializeResponse.

    @ivar diagnostics: why the Init was refused (GFS-style userInformationField), if it was.
    @ivar charset: the target's charneg-3 answer, if any.
    """

    reference_id: bytes | None
    accepted: bool
    versions: frozenset[int]
    options: frozenset[str]
    preferred_message_size: int
    exceptional_record_size: int
    implementation_id: str | None = None
    implementation_name: str | None = None
    implementation_version: str | None = None
    diagnostics: tuple[Diagnostic, ...] = ()
    charset: CharsetChoice | None = None


def read_init_response(pdu: PDU, decoder: TermDecoder | None = None) -> InitResponseInfo:
    """Read an initResponse PDU (or its body)."""
    dec = decoder or TermDecoder()
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    return InitResponseInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        accepted=bool(body["result"]),
        versions=frozenset(int(name.rsplit("-", 1)[1])
                           for name in names_from_bits(body["protocolVersion"], VERSION_NAMES)),
        options=names_from_bits(body["options"], OPTION_NAMES),
        preferred_message_size=int(body["preferredMessageSize"]),
        exceptional_record_size=int(body["exceptionalRecordSize"]),
        implementation_id=_opt_text(body["implementationId"], dec),
        implementation_name=_opt_text(body["implementationName"], dec),
        implementation_version=_opt_text(body["implementationVersion"], dec),
        diagnostics=tuple(read_init_diagnostics(body, dec)),
        charset=negotiation_answer(body["otherInfo"]),
    )


RecordItem = DecodedExternal | SurrogateDiagnostic
"""One entry of a response's records: a retrieval record, or a diagnostic in its place."""


@dataclass(frozen=True)
class SearchResponseInfo:
    """What an origin learns from a SearchResponse.

    @ivar records: the piggy-backed records (L{read_records}); C{diagnostics} when the
        search failed (or the records could not be presented).
    """

    reference_id: bytes | None
    result_count: int
    number_of_records_returned: int
    next_result_set_position: int
    search_status: bool
    result_set_status: int | None = None
    present_status: int | None = None
    records: tuple[RecordItem, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()


def read_search_response(pdu: PDU, decoder: TermDecoder | None = None) -> SearchResponseInfo:
    """Read a searchResponse PDU (or its body)."""
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    return SearchResponseInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        result_count=int(body["resultCount"]),
        number_of_records_returned=int(body["numberOfRecordsReturned"]),
        next_result_set_position=int(body["nextResultSetPosition"]),
        search_status=bool(body["searchStatus"]),
        result_set_status=_opt_int(body["resultSetStatus"]),
        present_status=_opt_int(body["presentStatus"]),
        records=tuple(read_records(body, decoder)),
        diagnostics=tuple(read_diagnostics(body, decoder)),
    )


@dataclass(frozen=True)
class PresentResponseInfo:
    """What an origin learns from a PresentResponse (status 0 success ... 5 failure)."""

    reference_id: bytes | None
    number_of_records_returned: int
    next_result_set_position: int
    present_status: int
    records: tuple[RecordItem, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()


def read_present_response(pdu: PDU, decoder: TermDecoder | None = None) -> PresentResponseInfo:
    """Read a presentResponse PDU (or its body)."""
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    return PresentResponseInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        number_of_records_returned=int(body["numberOfRecordsReturned"]),
        next_result_set_position=int(body["nextResultSetPosition"]),
        present_status=int(body["presentStatus"]),
        records=tuple(read_records(body, decoder)),
        diagnostics=tuple(read_diagnostics(body, decoder)),
    )


@dataclass(frozen=True)
class ScanResponseInfo:
    """What an origin learns from a ScanResponse.

    @ivar entries: the term list, a L{Diagnostic} standing in for a term it could not give.
    @ivar diagnostics: why the scan failed (status 6), or partly failed.
    """

    reference_id: bytes | None
    scan_status: int
    number_of_entries_returned: int
    position_of_term: int | None = None
    step_size: int | None = None
    entries: tuple[ScanEntry | Diagnostic, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()


def read_scan_response(pdu: PDU, decoder: TermDecoder | None = None) -> ScanResponseInfo:
    """Read a scanResponse PDU (or its body); terms are decoded as text."""
    dec = decoder or TermDecoder()
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    entries: list[ScanEntry | Diagnostic] = []
    diagnostics: tuple[Diagnostic, ...] = ()
    listed = body["entries"]
    if listed.isValue:
        if listed["entries"].isValue:
            for entry in listed["entries"]:
                if entry.getName() == "termInfo":
                    entries.append(_scan_entry(entry["termInfo"], dec))
                elif entry["surrogateDiagnostic"].getName() == "defaultFormat":
                    entries.append(Diagnostic.from_asn1(
                        entry["surrogateDiagnostic"]["defaultFormat"], dec))
        diagnostics = _diag_recs(listed["nonsurrogateDiagnostics"], dec)
    return ScanResponseInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        scan_status=int(body["scanStatus"]),
        number_of_entries_returned=int(body["numberOfEntriesReturned"]),
        position_of_term=_opt_int(body["positionOfTerm"]),
        step_size=_opt_int(body["stepSize"]),
        entries=tuple(entries),
        diagnostics=diagnostics,
    )


def _scan_entry(info: univ.Sequence, dec: TermDecoder) -> ScanEntry:
    term = info["term"]
    arm = term.getName()
    value = term[arm]
    if arm == "numeric":
        text = str(int(value))
    elif isinstance(value, univ.OctetString):
        text = dec.decode(value.asOctets())
    else:
        text = str(value)
    return ScanEntry(text, _opt_int(info["globalOccurrences"]),
                     _opt_text(info["displayTerm"], dec))


@dataclass(frozen=True)
class SortResponseInfo:
    """What an origin learns from a SortResponse (status 0 success, 1 partial, 2 failure)."""

    reference_id: bytes | None
    sort_status: int
    result_set_status: int | None = None
    diagnostics: tuple[Diagnostic, ...] = ()
    result_count: int | None = None


def read_sort_response(pdu: PDU, decoder: TermDecoder | None = None) -> SortResponseInfo:
    """Read a sortResponse PDU (or its body)."""
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    return SortResponseInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        sort_status=int(body["sortStatus"]),
        result_set_status=_opt_int(body["resultSetStatus"]),
        diagnostics=_diag_recs(body["diagnostics"], decoder),
        result_count=_opt_int(body["resultCount"]),
    )


@dataclass(frozen=True)
class DeleteResultSetResponseInfo:
    """What an origin learns from a DeleteResultSetResponse (status 0 success, 1
    resultSetDidNotExist, 2 previouslyDeletedByTarget...; one per set in C{list_statuses})."""

    reference_id: bytes | None
    status: int
    list_statuses: tuple[tuple[str, int], ...] = ()
    number_not_deleted: int | None = None
    message: str | None = None


def read_delete_result_set_response(
    pdu: PDU, decoder: TermDecoder | None = None
) -> DeleteResultSetResponseInfo:
    """Read a deleteResultSetResponse PDU (or its body)."""
    dec = decoder or TermDecoder()
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    statuses: tuple[tuple[str, int], ...] = ()
    if body["deleteListStatuses"].isValue:
        statuses = tuple((dec.decode(item["id"].asOctets()), int(item["status"]))
                         for item in body["deleteListStatuses"])
    return DeleteResultSetResponseInfo(
        reference_id=_opt_bytes(body["referenceId"]),
        status=int(body["deleteOperationStatus"]),
        list_statuses=statuses,
        number_not_deleted=_opt_int(body["numberNotDeleted"]),
        message=_opt_text(body["deleteMessage"], dec),
    )


ResponseInfo = (InitResponseInfo | SearchResponseInfo | PresentResponseInfo | ScanResponseInfo
                | SortResponseInfo | DeleteResultSetResponseInfo | CloseInfo)
"""A response an origin handles, as its reader returns it."""

_READERS: dict[str, Any] = {
    "initResponse": read_init_response,
    "searchResponse": read_search_response,
    "presentResponse": read_present_response,
    "scanResponse": read_scan_response,
    "sortResponse": read_sort_response,
    "deleteResultSetResponse": read_delete_result_set_response,
    "close": read_close,
}


def read_response(pdu: PDU, decoder: TermDecoder | None = None) -> ResponseInfo:
    """Read any response an origin handles into its dataclass.

    @raise Z3950ProtocolError: another arm (a request: a target does not send those here),
        or a response whose content is unusable.
    """
    arm = pdu_arm(pdu)
    reader = _READERS.get(arm)
    if reader is None:
        raise Z3950ProtocolError(f"not a response an origin expects: {arm}")
    try:
        info: ResponseInfo = reader(pdu, decoder)
    except Z3950ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - the decode boundary, as on the server side
        raise Z3950ProtocolError(f"unusable {arm}: {type(exc).__name__}: {exc}") from exc
    return info


def decode_response(data: bytes, decoder: TermDecoder | None = None) -> ResponseInfo:
    """Decode and read one framed PDU (from L{BERFramer.feed}) a target sent.

    @raise Z3950ProtocolError: the bytes do not decode, or are not a usable response.
    """
    return read_response(decode_pdu(data, framed=True), decoder)


# --------------------------------------------------------------------------------------
# Reading records and diagnostics


def read_records(body: univ.Sequence, decoder: TermDecoder | None = None) -> list[Any]:
    """Return the records of a Search/Present response body.

    Each item is a L{SurrogateDiagnostic} or a L{DecodedExternal} (OPAC and SUTRS values
    decoded; MARC/XML as bytes in C{.data}). Non-surrogate diagnostics: L{read_diagnostics}.
    """
    recs = body["records"]
    if not recs.isValue or recs.getName() != "responseRecords":
        return []
    out: list[Any] = []
    for npr in recs["responseRecords"]:
        rec = npr["record"]
        arm = rec.getName()
        if arm == "retrievalRecord":
            out.append(decode_external(rec["retrievalRecord"]))
        elif arm == "surrogateDiagnostic":
            diag = rec["surrogateDiagnostic"]
            if diag.getName() == "defaultFormat":
                db = _opt_text(npr["name"], decoder or TermDecoder())
                out.append(
                    SurrogateDiagnostic(Diagnostic.from_asn1(diag["defaultFormat"], decoder), db)
                )
            else:
                out.append(decode_external(diag["externallyDefined"]))
        else:
            out.append(rec[arm])
    return out


def read_diagnostics(body: univ.Sequence, decoder: TermDecoder | None = None) -> list[Diagnostic]:
    """Return the non-surrogate diagnostics of a Search/Present response body."""
    recs = body["records"]
    if not recs.isValue:
        return []
    arm = recs.getName()
    if arm == "nonSurrogateDiagnostic":
        return [Diagnostic.from_asn1(recs[arm], decoder)]
    if arm == "multipleNonSurDiagnostics":
        return [
            Diagnostic.from_asn1(d["defaultFormat"], decoder)
            for d in recs[arm]
            if d.getName() == "defaultFormat"
        ]
    return []


def read_init_diagnostics(pdu: PDU | univ.Sequence,
                          decoder: TermDecoder | None = None) -> list[Diagnostic]:
    """Return diagnostics found in an InitializeResponse's userInformationField (GFS form)."""
    body = pdu_body(pdu) if isinstance(pdu, PDU) else pdu
    uif = body["userInformationField"]
    if not uif.isValue:
        return []
    out: list[Diagnostic] = []
    outer = decode_external(uif)
    if outer.oid == oids.USERINFO_1 and outer.value is not None:
        for unit in outer.value:
            info = unit["information"]
            if info.getName() != "externallyDefinedInfo":
                continue
            inner = decode_external(info["externallyDefinedInfo"])
            if inner.oid == oids.DIAG1_FORMAT and inner.value is not None:
                for elem in inner.value:
                    d = elem["diagnostic"]
                    if d.isValue and d.getName() == "defaultDiagRec":
                        out.append(Diagnostic.from_asn1(d["defaultDiagRec"], decoder))
    return out
