# -*- test-case-name: tests.protocols.test_sru_cql,tests.protocols.test_sru_request -*-
"""The SRU diagnostics (C{info:srw/diagnostic/1/N}) by name, and the error that carries one.

Every failure the SRU layers detect (a CQL syntax error, a missing parameter, an index the
catalogue does not have) is raised as an L{SRUError} carrying its L{Diagnostic}; the response
writer turns it into a C{<diagnostic>} element. The wording is the standard list's, so a
broker's log reads the same as the specification.
"""

from __future__ import annotations

from enum import IntEnum

DIAGNOSTIC_SET = "info:srw/diagnostic/1/"
"""The URI prefix of the standard SRU diagnostic set."""


class Diagnostic(IntEnum):
    """The standard SRU diagnostics that Interlend raises, by name (a subset of the list)."""

    GENERAL_SYSTEM_ERROR = 1
    SYSTEM_TEMPORARILY_UNAVAILABLE = 2
    AUTHENTICATION_ERROR = 3
    UNSUPPORTED_OPERATION = 4
    UNSUPPORTED_VERSION = 5
    UNSUPPORTED_PARAMETER_VALUE = 6
    MANDATORY_PARAMETER_NOT_SUPPLIED = 7
    UNSUPPORTED_PARAMETER = 8
    QUERY_SYNTAX_ERROR = 10
    UNSUPPORTED_QUERY_TYPE = 11
    TOO_MANY_CHARACTERS_IN_QUERY = 12
    INVALID_PARENTHESES = 13
    INVALID_QUOTES = 14
    UNSUPPORTED_CONTEXT_SET = 15
    UNSUPPORTED_INDEX = 16
    UNSUPPORTED_COMBINATION_OF_INDEXES = 18
    UNSUPPORTED_RELATION = 19
    UNSUPPORTED_RELATION_MODIFIER = 20
    UNSUPPORTED_COMBINATION_OF_RELATION_MODIFIERS = 21
    UNSUPPORTED_COMBINATION_OF_RELATION_AND_INDEX = 22
    TOO_MANY_CHARACTERS_IN_TERM = 23
    UNSUPPORTED_COMBINATION_OF_RELATION_AND_TERM = 24
    NON_SPECIAL_CHARACTER_ESCAPED = 26
    EMPTY_TERM_UNSUPPORTED = 27
    MASKING_CHARACTER_NOT_SUPPORTED = 28
    MASKED_WORDS_TOO_SHORT = 29
    TOO_MANY_MASKING_CHARACTERS = 30
    ANCHORING_CHARACTER_NOT_SUPPORTED = 31
    ANCHORING_CHARACTER_IN_UNSUPPORTED_POSITION = 32
    TERM_IN_INVALID_FORMAT = 36
    UNSUPPORTED_BOOLEAN_OPERATOR = 37
    TOO_MANY_BOOLEAN_OPERATORS = 38
    PROXIMITY_NOT_SUPPORTED = 39
    UNSUPPORTED_PROXIMITY_RELATION = 40
    UNSUPPORTED_PROXIMITY_DISTANCE = 41
    UNSUPPORTED_PROXIMITY_UNIT = 42
    UNSUPPORTED_PROXIMITY_ORDERING = 43
    UNSUPPORTED_COMBINATION_OF_PROXIMITY_MODIFIERS = 44
    UNSUPPORTED_BOOLEAN_MODIFIER = 46
    CANNOT_PROCESS_QUERY = 47
    QUERY_FEATURE_UNSUPPORTED = 48
    MASKING_CHARACTER_IN_UNSUPPORTED_POSITION = 49
    RESULT_SETS_NOT_SUPPORTED = 50
    RESULT_SET_DOES_NOT_EXIST = 51
    RESULT_SET_TEMPORARILY_UNAVAILABLE = 52
    RESULT_SET_NOT_CREATED_TOO_MANY_RECORDS = 60
    FIRST_RECORD_POSITION_OUT_OF_RANGE = 61
    SYSTEM_ERROR_IN_PRESENTING_RECORDS = 63
    RECORD_TEMPORARILY_UNAVAILABLE = 64
    RECORD_DOES_NOT_EXIST = 65
    UNKNOWN_SCHEMA_FOR_RETRIEVAL = 66
    RECORD_NOT_AVAILABLE_IN_SCHEMA = 67
    NOT_AUTHORISED_TO_SEND_RECORD = 68
    RECORD_TOO_LARGE_TO_SEND = 70
    UNSUPPORTED_RECORD_PACKING = 71
    SORT_NOT_SUPPORTED = 80
    UNSUPPORTED_SORT_SEQUENCE = 82
    TOO_MANY_RECORDS_TO_SORT = 83
    TOO_MANY_SORT_KEYS = 84
    UNSUPPORTED_SCHEMA_FOR_SORT = 87
    UNSUPPORTED_PATH_FOR_SORT = 88
    UNSUPPORTED_DIRECTION = 90
    UNSUPPORTED_CASE = 91
    UNSUPPORTED_MISSING_VALUE_ACTION = 92
    EXPLAIN_REQUEST_TYPE_NOT_SUPPORTED = 101
    STYLESHEETS_NOT_SUPPORTED = 110
    UNSUPPORTED_STYLESHEET = 111
    RESPONSE_POSITION_OUT_OF_RANGE = 120
    TOO_MANY_TERMS_REQUESTED = 121

    @property
    def uri(self) -> str:
        """The diagnostic's identifier, as written in C{<uri>}."""
        return f"{DIAGNOSTIC_SET}{self.value}"

    @property
    def message(self) -> str:
        """The standard wording, as written in C{<message>}."""
        return _MESSAGES.get(self, self.name.replace("_", " ").capitalize())


_MESSAGES: dict[Diagnostic, str] = {
    Diagnostic.GENERAL_SYSTEM_ERROR: "General system error",
    Diagnostic.SYSTEM_TEMPORARILY_UNAVAILABLE: "System temporarily unavailable",
    Diagnostic.AUTHENTICATION_ERROR: "Authentication error",
    Diagnostic.UNSUPPORTED_OPERATION: "Unsupported operation",
    Diagnostic.UNSUPPORTED_VERSION: "Unsupported version",
    Diagnostic.UNSUPPORTED_PARAMETER_VALUE: "Unsupported parameter value",
    Diagnostic.MANDATORY_PARAMETER_NOT_SUPPLIED: "Mandatory parameter not supplied",
    Diagnostic.UNSUPPORTED_PARAMETER: "Unsupported parameter",
    Diagnostic.QUERY_SYNTAX_ERROR: "Query syntax error",
    Diagnostic.TOO_MANY_CHARACTERS_IN_QUERY: "Too many characters in query",
    Diagnostic.INVALID_PARENTHESES: "Invalid or unsupported use of parentheses",
    Diagnostic.INVALID_QUOTES: "Invalid or unsupported use of quotes",
    Diagnostic.UNSUPPORTED_CONTEXT_SET: "Unsupported context set",
    Diagnostic.UNSUPPORTED_INDEX: "Unsupported index",
    Diagnostic.EMPTY_TERM_UNSUPPORTED: "Empty term unsupported",
    Diagnostic.NON_SPECIAL_CHARACTER_ESCAPED: "Non special character escaped in term",
    Diagnostic.MASKED_WORDS_TOO_SHORT: "Masked words too short",
    Diagnostic.TOO_MANY_MASKING_CHARACTERS: "Too many masking characters in term",
    Diagnostic.ANCHORING_CHARACTER_IN_UNSUPPORTED_POSITION:
        "Anchoring character in unsupported position",
    Diagnostic.TERM_IN_INVALID_FORMAT: "Term in invalid format for index or relation",
    Diagnostic.CANNOT_PROCESS_QUERY: "Cannot process query; reason unknown",
    Diagnostic.RESULT_SET_NOT_CREATED_TOO_MANY_RECORDS:
        "Result set not created: too many matching records",
    Diagnostic.NOT_AUTHORISED_TO_SEND_RECORD: "Not authorised to send record",
    Diagnostic.SORT_NOT_SUPPORTED: "Sort not supported",
    Diagnostic.EXPLAIN_REQUEST_TYPE_NOT_SUPPORTED: "Explain request type not supported",
    Diagnostic.STYLESHEETS_NOT_SUPPORTED: "Stylesheets not supported",
    Diagnostic.RESPONSE_POSITION_OUT_OF_RANGE: "Response position out of range",
    Diagnostic.TOO_MANY_TERMS_REQUESTED: "Too many terms requested",
}


class SRUError(Exception):
    """A failure with the SRU diagnostic it implies; C{details} names what failed.

    The details go on the wire (C{<details>}), so they name the offending parameter, index
    or position, never internal state.
    """

    def __init__(self, diagnostic: Diagnostic, details: str = "", message: str = "") -> None:
        self.diagnostic = diagnostic
        self.details = details
        self.message = message or diagnostic.message
        super().__init__(f"{diagnostic.uri} {self.message}" + (f": {details}" if details else ""))
