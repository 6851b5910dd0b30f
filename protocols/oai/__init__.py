# -*- test-case-name: tests.protocols.test_oai_request,tests.protocols.test_oai_writer -*-
"""OAI-PMH 2.0: request validation, signed resumption tokens, streaming response writers.

Pure: query parameters in, a typed request out; headers and rendered metadata in, bytes out.
The gateway's OAI-PMH listener will decode the GET query string or POST form, call
L{request.parse_request} with its metadata formats, granularity and a L{tokens.TokenCodec}
keyed from the gateway key, read records from the Catalogue interface page by page (keyset
order by datestamp then identifier), and write each chunk that L{writer.ListWriter} returns
straight to the HTTP transport, so a harvest of a million records runs in constant memory.
Every L{errors.OAIError} becomes an error response through L{writer.error_response}.
"""

from __future__ import annotations

from .errors import OAIError, OAIErrorCode
from .identifiers import OAIIdentifierScheme
from .request import (
    GetRecord,
    Granularity,
    Identify,
    ListMetadataFormats,
    ListRequest,
    ListSets,
    OAIRequest,
    format_datestamp,
    parameters_from_query,
    parse_datestamp,
    parse_request,
)
from .tokens import ResumptionState, TokenCodec
from .writer import (
    DeletedRecordPolicy,
    ListWriter,
    MetadataFormat,
    RecordHeader,
    RepositoryInfo,
    ResumptionToken,
    SetInfo,
    error_response,
    get_record_response,
    identify_response,
    list_metadata_formats_response,
)

__all__ = [
    "DeletedRecordPolicy",
    "GetRecord",
    "Granularity",
    "Identify",
    "ListMetadataFormats",
    "ListRequest",
    "ListSets",
    "ListWriter",
    "MetadataFormat",
    "OAIError",
    "OAIErrorCode",
    "OAIIdentifierScheme",
    "OAIRequest",
    "RecordHeader",
    "RepositoryInfo",
    "ResumptionState",
    "ResumptionToken",
    "SetInfo",
    "TokenCodec",
    "error_response",
    "format_datestamp",
    "get_record_response",
    "identify_response",
    "list_metadata_formats_response",
    "parameters_from_query",
    "parse_datestamp",
    "parse_request",
]
