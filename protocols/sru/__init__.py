# -*- test-case-name: tests.protocols.test_sru_cql,tests.protocols.test_sru_request -*-
"""SRU (Search/Retrieve via URL) 1.1, 1.2 and 2.0: CQL, request parsing, response writing.

Pure: query parameters in, a typed request out; typed results in, XML bytes out. The gateway's
SRU listener will decode the HTTP GET query string or POST form into a parameter mapping, call
L{request.parse_request}, resolve its CQL against the catalogue's L{profile.CQLProfile}, run the
search through the Catalogue interface and render the outcome with L{response}; every
L{diagnostics.SRUError} on the way becomes a diagnostic in the response of the request's version.
"""

from __future__ import annotations

from .cql import CQLQuery, masked, parse, parse_scan_clause, to_cql
from .diagnostics import Diagnostic, SRUError
from .explain import RecordSchema, ServerInfo, explain_record
from .profile import CQLProfile, IndexCapability, ProximityCapability, resolve, resolve_clause
from .request import (
    ExplainRequest,
    RecordPacking,
    RequestLimits,
    ScanRequest,
    SearchRetrieveRequest,
    SRURequest,
    SRURequestError,
    parameters_from_query,
    parse_request,
)
from .response import (
    ResponseRecord,
    ScanTerm,
    WhereInList,
    error_response,
    explain_response,
    scan_response,
    search_retrieve_response,
)

__all__ = [
    "CQLProfile",
    "CQLQuery",
    "Diagnostic",
    "ExplainRequest",
    "IndexCapability",
    "ProximityCapability",
    "RecordPacking",
    "RecordSchema",
    "RequestLimits",
    "ResponseRecord",
    "SRURequest",
    "SRURequestError",
    "SRUError",
    "ScanRequest",
    "ScanTerm",
    "SearchRetrieveRequest",
    "ServerInfo",
    "WhereInList",
    "error_response",
    "explain_record",
    "explain_response",
    "masked",
    "parameters_from_query",
    "parse",
    "parse_request",
    "parse_scan_clause",
    "resolve",
    "resolve_clause",
    "scan_response",
    "search_retrieve_response",
    "to_cql",
]
