"""Names of the Bib-1 diagnostics (diagnostic set 1.2.840.10003.4.1), for logs and metrics.

A number alone (``diagnostic 114``) means nothing on a dashboard; ``Unsupported Use attribute``
does. The wording is the one YAZ clients print, so what an operator sees in Interlend's metrics
matches what a broker's yaz-client session shows.
"""

from __future__ import annotations

from enum import IntEnum

BIB1_DIAGNOSTICS: dict[int, str] = {
    1: 'Permanent system error',
    2: 'Temporary system error',
    3: 'Unsupported search',
    4: 'Terms only exclusion (stop) words',
    5: 'Too many argument words',
    6: 'Too many boolean operators',
    7: 'Too many truncated words',
    8: 'Too many incomplete subfields',
    9: 'Truncated words too short',
    10: 'Invalid format for record number (search term)',
    11: 'Too many characters in search statement',
    12: 'Too many records retrieved',
    13: 'Present request out of range',
    14: 'System error in presenting records',
    15: 'Record not authorized to be sent intersystem',
    16: 'Record exceeds Preferred-message-size',
    17: 'Record exceeds Maximum-record-size',
    18: 'Result set not supported as a search term',
    19: 'Only single result set as search term supported',
    20: 'Only ANDing of a single result set as search term supported',
    21: 'Result set exists and replace indicator off',
    22: 'Result set naming not supported',
    23: 'Combination of specified databases not supported',
    24: 'Element set names not supported',
    25: 'Specified element set name not valid for specified database',
    26: 'Only a single element set name supported',
    27: 'Result set no longer exists - unilaterally deleted by target',
    28: 'Result set is in use',
    29: 'One of the specified databases is locked',
    30: 'Specified result set does not exist',
    31: 'Resources exhausted - no results available',
    32: 'Resources exhausted - unpredictable partial results available',
    33: 'Resources exhausted - valid subset of results available',
    100: 'Unspecified error',
    101: 'Access-control failure',
    102: 'Security challenge required but could not be issued - request terminated',
    103: 'Security challenge required but could not be issued - record not included',
    104: 'Security challenge failed - record not included',
    105: 'Terminated by negative continue response',
    106: 'No abstract syntaxes agreed to for this record',
    107: 'Query type not supported',
    108: 'Malformed query',
    109: 'Database unavailable',
    110: 'Operator unsupported',
    111: 'Too many databases specified',
    112: 'Too many result sets created',
    113: 'Unsupported attribute type',
    114: 'Unsupported Use attribute',
    115: 'Unsupported value for Use attribute',
    116: 'Use attribute required but not supplied',
    117: 'Unsupported Relation attribute',
    118: 'Unsupported Structure attribute',
    119: 'Unsupported Position attribute',
    120: 'Unsupported Truncation attribute',
    121: 'Unsupported Attribute Set',
    122: 'Unsupported Completeness attribute',
    123: 'Unsupported attribute combination',
    124: 'Unsupported coded value for term',
    125: 'Malformed search term',
    126: 'Illegal term value for attribute',
    127: 'Unparsable format for un-normalized value',
    128: 'Illegal result set name',
    129: 'Proximity search of sets not supported',
    130: 'Illegal result set in proximity search',
    131: 'Unsupported proximity relation',
    132: 'Unsupported proximity unit code',
    201: 'Proximity not supported with this attribute combination',
    202: 'Unsupported distance for proximity',
    203: 'Ordered flag not supported for proximity',
    205: 'Only zero step size supported for Scan',
    206: 'Specified step size not supported for Scan',
    207: 'Cannot sort according to sequence',
    208: 'No result set name supplied on Sort',
    209: 'Generic sort not supported (database-specific sort only supported)',
    210: 'Database specific sort not supported',
    211: 'Too many sort keys',
    212: 'Duplicate sort keys',
    213: 'Unsupported missing data action',
    214: 'Illegal sort relation',
    215: 'Illegal case value',
    216: 'Illegal missing data action',
    217: 'Segmentation: Cannot guarantee records will fit in specified segments',
    218: 'ES: Package name already in use',
    219: 'ES: no such package, on modify/delete',
    220: 'ES: quota exceeded',
    221: 'ES: extended service type not supported',
    222: 'ES: permission denied on ES - id not authorized',
    223: 'ES: permission denied on ES - cannot modify or delete',
    224: 'ES: immediate execution failed',
    225: 'ES: immediate execution not supported for this service',
    226: 'ES: immediate execution not supported for these parameters',
    227: 'No data available in requested record syntax',
    228: 'Scan: malformed scan',
    229: 'Term type not supported',
    230: 'Sort: too many input results',
    231: 'Sort: incompatible record formats',
    232: 'Scan: term list not supported',
    233: 'Scan: unsupported value of position-in-response',
    234: 'Too many index terms processed',
    235: 'Database does not exist',
    236: 'Access to specified database denied',
    237: 'Sort: illegal sort',
    238: 'Record not available in requested syntax',
    239: 'Record syntax not supported',
    240: 'Scan: Resources exhausted looking for satisfying terms',
    241: 'Scan: Beginning or end of term list',
    242: 'Segmentation: max-segment-size too small to segment record',
    243: 'Present: additional-ranges parameter not supported',
    244: 'Present: comp-spec parameter not supported',
    245: "Type-1 query: restriction ('resultAttr') operand not supported",
    246: "Type-1 query: 'complex' attributeValue not supported",
    247: "Type-1 query: 'attributeSet' as part of AttributeElement not supported",
    1011: 'Init/AC: Bad Userid and/or Password',
    1014: 'Init/AC: Authentication System error',
    1016: 'Init/AC: Blocked network address',
    1018: 'Init/AC: System temporarily out of resources',
}


class Bib1(IntEnum):
    """The Bib-1 diagnostics the gateway answers with, by name (as NCIP has its Problem types).

    Code chooses a diagnostic by name (``Bib1.UNSUPPORTED_USE_ATTRIBUTE``); the wire carries the
    number. :data:`BIB1_DIAGNOSTICS` keeps the full set's wording for logs and metrics.
    """

    PERMANENT_SYSTEM_ERROR = 1
    TEMPORARY_SYSTEM_ERROR = 2
    UNSUPPORTED_SEARCH = 3
    TOO_MANY_ARGUMENT_WORDS = 5
    TOO_MANY_BOOLEAN_OPERATORS = 6
    TERM_TOO_LONG = 11
    TOO_MANY_RECORDS_RETRIEVED = 12
    PRESENT_OUT_OF_RANGE = 13
    PRESENT_FAILED = 14
    RECORD_EXCEEDS_PREFERRED_MESSAGE_SIZE = 16
    RECORD_EXCEEDS_MAXIMUM_RECORD_SIZE = 17
    RESULT_SET_EXISTS = 21
    RESULT_SET_NAMING_UNSUPPORTED = 22
    DATABASE_COMBINATION_UNSUPPORTED = 23
    ELEMENT_SET_NAME_INVALID = 25
    RESULT_SET_DELETED = 27
    RESULT_SET_IN_USE = 28
    RESULT_SET_DOES_NOT_EXIST = 30
    RESOURCES_EXHAUSTED = 31
    QUERY_TYPE_UNSUPPORTED = 107
    MALFORMED_QUERY = 108
    DATABASE_UNAVAILABLE = 109
    UNSUPPORTED_ATTRIBUTE_TYPE = 113
    UNSUPPORTED_USE_ATTRIBUTE = 114
    UNSUPPORTED_USE_VALUE = 115
    USE_ATTRIBUTE_REQUIRED = 116
    UNSUPPORTED_RELATION_ATTRIBUTE = 117
    UNSUPPORTED_STRUCTURE_ATTRIBUTE = 118
    UNSUPPORTED_POSITION_ATTRIBUTE = 119
    UNSUPPORTED_TRUNCATION_ATTRIBUTE = 120
    UNSUPPORTED_ATTRIBUTE_SET = 121
    UNSUPPORTED_COMPLETENESS_ATTRIBUTE = 122
    UNSUPPORTED_ATTRIBUTE_COMBINATION = 123
    UNSUPPORTED_CODED_TERM = 124
    MALFORMED_SEARCH_TERM = 125
    ILLEGAL_TERM_VALUE = 126
    SCAN_STEP_SIZE_UNSUPPORTED = 206
    CANNOT_SORT = 207
    SORT_TOO_MANY_KEYS = 211
    SORT_ILLEGAL_CASE = 213
    SORT_ILLEGAL_RELATION = 214
    SORT_TOO_MANY_INPUT_RESULTS = 230
    SCAN_POSITION_UNSUPPORTED = 233
    TOO_MANY_INDEX_TERMS = 234
    DATABASE_DOES_NOT_EXIST = 235
    RECORD_SYNTAX_UNAVAILABLE = 238
    RECORD_SYNTAX_UNSUPPORTED = 239
    BAD_USERID_OR_PASSWORD = 1011
    AUTHENTICATION_SYSTEM_ERROR = 1014
    BLOCKED_NETWORK_ADDRESS = 1016
    SYSTEM_OUT_OF_RESOURCES = 1018


def diagnostic_name(code: int) -> str:
    """The Bib-1 name of diagnostic ``code`` (``"unknown"`` for a code not in the set)."""
    return BIB1_DIAGNOSTICS.get(code, "unknown")


def outcome_name(outcome: str) -> str:
    """A Z39.50 exchange's outcome (``"diagnostic 114"``, ``"success"``, a Close reason) with
    the diagnostic's name, for the metrics' ``diagnostic`` label; other outcomes unchanged."""
    kind, _, code = outcome.partition(" ")
    if kind == "diagnostic" and code.isdigit():
        return diagnostic_name(int(code))
    return outcome
