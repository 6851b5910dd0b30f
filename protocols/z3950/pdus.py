# -*- test-case-name: tests.protocols.test_z3950_codec,tests.protocols.test_z3950_fastber -*-
"""Z39.50 value types: what a request or response says, as frozen dataclasses.

Both BER paths meet here: the pyasn1 codec (L{codec}) and the hand-written fast path
(L{fastber}) read requests into these types and build responses from them, and the origin
side (L{client}) does the same the other way round. This module imports neither path, so
neither imports the other. Also here: the Init option and version bit names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import oids, pqf
from .charset import CharsetProposal, TermDecoder

if TYPE_CHECKING:
    from .asn1 import DefaultDiagFormat

__all__ = [
    "OPTION_BITS",
    "OPTION_NAMES",
    "VERSION_BITS",
    "VERSION_NAMES",
    "Authentication",
    "CloseInfo",
    "DeleteResultSetRequestInfo",
    "Diagnostic",
    "EncodedRecord",
    "InitRequestInfo",
    "PresentRequestInfo",
    "RecordEntry",
    "Request",
    "RequestInfo",
    "ResponseRecord",
    "ScanEntry",
    "ScanRequestInfo",
    "SearchRequestInfo",
    "SortKeyInfo",
    "SortRequestInfo",
    "SurrogateDiagnostic",
    "Text",
    "UnhandledRequest",
]

Text = str | bytes

OPTION_NAMES: tuple[str, ...] = (
    "search",
    "present",
    "delSet",
    "resourceReport",
    "triggerResourceCtrl",
    "resourceCtrl",
    "accessCtrl",
    "scan",
    "sort",
    "",  # bit 9 not used
    "extendedServices",
    "level-1Segmentation",
    "level-2Segmentation",
    "concurrentOperations",
    "namedResultSets",
    "encapsulation",
    "resultCount",
    "negotiationModel",
    "duplicateDetection",
    "queryType104",
    "pQESCorrection",
    "stringSchema",
)
"""Init Options bit names by bit number."""

VERSION_NAMES: tuple[str, ...] = ("version-1", "version-2", "version-3")
"""ProtocolVersion bit names by bit number."""

OPTION_BITS = {name: bit for bit, name in enumerate(OPTION_NAMES) if name}
VERSION_BITS = {name: bit for bit, name in enumerate(VERSION_NAMES)}


def _b(value: Text) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


# --------------------------------------------------------------------------------------
# Diagnostics and records


@dataclass(frozen=True)
class Diagnostic:
    """A diagnostic in DefaultDiagFormat (bib-1 unless C{diagset} says otherwise).

    @ivar condition: the code, by name for Bib-1 (C{Bib1.DATABASE_UNAVAILABLE}).
    @ivar addinfo: additional information (text sent as UTF-8); C{None} sends an empty one.
    @ivar v2: send addinfo as VisibleString (v2Addinfo), as YAZ does, instead of v3Addinfo.
    """

    condition: int
    addinfo: Text | None = None
    diagset: oids.Oid = oids.BIB1_DIAGSET
    v2: bool = False

    def fill(self, target: DefaultDiagFormat) -> DefaultDiagFormat:
        """Fill an (empty) DefaultDiagFormat component in place and return it."""
        target["diagnosticSetId"] = tuple(self.diagset)
        target["condition"] = int(self.condition)
        info = b"" if self.addinfo is None else _b(self.addinfo)
        target["addinfo"]["v2Addinfo" if self.v2 else "v3Addinfo"] = info
        return target

    @classmethod
    def from_asn1(cls, value: DefaultDiagFormat, decoder: TermDecoder | None = None) -> Diagnostic:
        """Read a decoded DefaultDiagFormat (addinfo decoded as text)."""
        dec = decoder or TermDecoder()
        addinfo: str | None = None
        v2 = False
        if value["addinfo"].isValue:
            arm = value["addinfo"].getName()
            v2 = arm == "v2Addinfo"
            addinfo = dec.decode(value["addinfo"][arm].asOctets())
        return cls(int(value["condition"]), addinfo, tuple(value["diagnosticSetId"]), v2)


@dataclass(frozen=True)
class ResponseRecord:
    """A database record to return in a Search/Present response.

    @ivar syntax: record syntax OID (L{oids.USMARC}, L{oids.XML}, L{oids.OPAC}...).
    @ivar data: C{bytes}/C{str} (sent octet-aligned; SUTRS as InternationalString), an
        L{OpacRecord}, or a ready pyasn1 value (single-ASN1-type).
    @ivar database: database name to put in NamePlusRecord.name, if any.
    """

    syntax: oids.Oid
    data: Any
    database: Text | None = None


@dataclass(frozen=True)
class SurrogateDiagnostic:
    """A per-record diagnostic (e.g. C{Bib1.RECORD_SYNTAX_UNAVAILABLE}) in place of a record."""

    diagnostic: Diagnostic
    database: Text | None = None


@dataclass(frozen=True)
class EncodedRecord:
    """A L{ResponseRecord} already encoded, as the server measured it while packing a
    response: the response encoder writes C{tlv} as is instead of encoding the record again.

    @ivar record: the record (what the pyasn1 path encodes, should it be taken).
    @ivar tlv: its NamePlusRecord encoding.
    @ivar size: the bytes it adds to a Present response (what packing counts).
    """

    record: ResponseRecord
    tlv: bytes = field(repr=False)
    size: int

    @property
    def database(self) -> Text | None:
        """The record's database name (surrogate diagnostics replacing it keep it)."""
        return self.record.database


RecordEntry = ResponseRecord | EncodedRecord | SurrogateDiagnostic

# --------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class Authentication:
    """idAuthentication: C{kind} is C{"open"}, C{"idPass"}, C{"anonymous"} or C{"other"}.

    For C{open} (C{"user/password"}) the string is split at the first C{/}.
    """

    kind: str
    user: str | None = None
    password: str | None = None
    group: str | None = None

    def __repr__(self) -> str:  # never show passwords in logs
        return f"Authentication(kind={self.kind!r}, user={self.user!r}, group={self.group!r})"


@dataclass(frozen=True)
class InitRequestInfo:
    """What a server needs from an InitializeRequest."""

    reference_id: bytes | None
    versions: frozenset[int]
    options: frozenset[str]
    preferred_message_size: int
    exceptional_record_size: int
    authentication: Authentication | None = None
    implementation_id: str | None = None
    implementation_name: str | None = None
    implementation_version: str | None = None
    charset_proposal: CharsetProposal | None = None


@dataclass(frozen=True)
class SearchRequestInfo:
    """What a server needs from a SearchRequest.

    @ivar query: the type-1/101 query as a model, or C{None} when L{query_error} says why
        not (other query types, proximity...): answer C{UNSUPPORTED_SEARCH},
        C{QUERY_TYPE_UNSUPPORTED} or C{MALFORMED_QUERY} then.
    @ivar query_type: the Query arm, e.g. C{"type-1"}.
    """

    reference_id: bytes | None
    small_set_upper_bound: int
    large_set_lower_bound: int
    medium_set_present_number: int
    replace_indicator: bool
    result_set_name: str
    database_names: tuple[str, ...]
    query_type: str
    query: pqf.Query | None
    query_error: str | None = None
    small_set_element_set_name: str | None = None
    medium_set_element_set_name: str | None = None
    preferred_record_syntax: oids.Oid | None = None


@dataclass(frozen=True)
class PresentRequestInfo:
    """What a server needs from a PresentRequest.

    @ivar element_set_name: the simple generic ESN (or first database-specific one).
    @ivar record_syntaxes: CompSpec recordSyntax list when a complex composition was sent.
    """

    reference_id: bytes | None
    result_set_id: str
    start: int
    count: int
    element_set_name: str | None = None
    preferred_record_syntax: oids.Oid | None = None
    record_syntaxes: tuple[oids.Oid, ...] = ()
    additional_ranges: tuple[tuple[int, int], ...] = ()
    max_record_size: int | None = None


@dataclass(frozen=True)
class ScanRequestInfo:
    """What a server needs from a ScanRequest (the start term as a L{pqf.Term})."""

    reference_id: bytes | None
    database_names: tuple[str, ...]
    attribute_set: oids.Oid | None
    term: pqf.Term | None
    number_of_terms: int
    step_size: int | None = None
    preferred_position: int | None = None
    term_error: str | None = None


@dataclass(frozen=True)
class ScanEntry:
    """One term-list entry: the term, its hit count and an optional display form."""

    term: Text
    occurrences: int | None = None
    display_term: Text | None = None


@dataclass(frozen=True)
class SortKeyInfo:
    """One sort key: attributes (C{sortAttributes}) or a field name; relation 0 = ascending."""

    attributes: tuple[pqf.Attribute, ...] = ()
    sort_field: str | None = None
    relation: int = 0
    case_sensitive: bool = False


@dataclass(frozen=True)
class SortRequestInfo:
    reference_id: bytes | None
    input_result_sets: tuple[str, ...]
    sorted_result_set: str
    keys: tuple[SortKeyInfo, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class DeleteResultSetRequestInfo:
    reference_id: bytes | None
    delete_all: bool
    result_sets: tuple[str, ...] = ()


@dataclass(frozen=True)
class CloseInfo:
    reference_id: bytes | None
    reason: int
    diagnostic_information: str | None = None


@dataclass(frozen=True)
class UnhandledRequest:
    """A PDU that decoded but has no reader here (a response, an Extended Services
    request...): the association answers it by its state's rule (Close, or ignore).

    @ivar arm: the PDU arm, e.g. C{"triggerResourceControlRequest"}.
    """

    arm: str
    reference_id: bytes | None = None


RequestInfo = (InitRequestInfo | SearchRequestInfo | PresentRequestInfo | ScanRequestInfo
               | SortRequestInfo | DeleteResultSetRequestInfo | CloseInfo)
"""A request a server handles, as its reader returns it."""

Request = RequestInfo | UnhandledRequest
"""Everything a decoded PDU can be for a server: what the association takes."""
