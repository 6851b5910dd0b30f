# -*- test-case-name: tests.protocols.test_ncip_problems -*-
"""NCIP Problem types, their standard schemes, and the exception upper layers raise.

Brokers match on the ProblemType text, so values are the standard ones from the NCIP
Version 1 schemes (which NCIP 2 reuses). The scheme written with a value depends on the
service: C{Unknown User} is a LookupUser processing error in a LookupUserResponse and a
CheckOutItem processing error in a CheckOutItemResponse. L{problem_scheme} makes that choice
in one place; L{NCIPProblem} carries no scheme, only the type.
"""

from __future__ import annotations

from enum import StrEnum

from .codes import normalize_code

_BASE = "http://www.niso.org/ncip/v1_0/schemes/"


class ProblemType(StrEnum):
    """Standard NCIP Problem Type values (the text brokers match on)."""

    # messaging errors
    INVALID_MESSAGE_SYNTAX_ERROR = "Invalid Message Syntax Error"
    PROTOCOL_ERROR = "Protocol Error"
    UNKNOWN_ELEMENT = "Unknown Element"
    UNKNOWN_SCHEME = "Unknown Scheme"
    UNKNOWN_SERVICE = "Unknown Service"
    UNKNOWN_VALUE_FROM_KNOWN_SCHEME = "Unknown Value From Known Scheme"
    # general processing errors
    AGENCY_AUTHENTICATION_FAILED = "Agency Authentication Failed"
    INVALID_AMOUNT = "Invalid Amount"
    INVALID_DATE = "Invalid Date"
    NEEDED_DATA_MISSING = "Needed Data Missing"
    SYSTEM_AUTHENTICATION_FAILED = "System Authentication Failed"
    TEMPORARY_PROCESSING_FAILURE = "Temporary Processing Failure"
    UNAUTHORIZED_COMBINATION_FOR_AGENCY = "Unauthorized Combination Of Element Values For Agency"
    UNAUTHORIZED_COMBINATION_FOR_SYSTEM = "Unauthorized Combination Of Element Values For System"
    UNAUTHORIZED_SERVICE_FOR_AGENCY = "Unauthorized Service For Agency"
    UNAUTHORIZED_SERVICE_FOR_SYSTEM = "Unauthorized Service For System"
    UNKNOWN_AGENCY = "Unknown Agency"
    UNKNOWN_SYSTEM = "Unknown System"
    UNSUPPORTED_SERVICE = "Unsupported Service"
    # service-specific processing errors
    ELEMENT_RULE_VIOLATED = "Element Rule Violated"
    NON_UNIQUE_USER = "Non-Unique User"
    UNKNOWN_USER = "Unknown User"
    USER_ACCESS_DENIED = "User Access Denied"
    USER_AUTHENTICATION_FAILED = "User Authentication Failed"
    CANNOT_ACCEPT_ITEM = "Cannot Accept Item"
    CANNOT_GUARANTEE_RESTRICTIONS_ON_USE = "Cannot Guarantee Restrictions On Use"
    UNKNOWN_ITEM = "Unknown Item"
    UNKNOWN_REQUEST = "Unknown Request"
    USER_INELIGIBLE_TO_CHECK_OUT_THIS_ITEM = "User Ineligible To Check Out This Item"
    ITEM_DOES_NOT_CIRCULATE = "Item Does Not Circulate"
    MAXIMUM_CHECK_OUTS_EXCEEDED = "Maximum Check Outs Exceeded"
    RESOURCE_CANNOT_BE_PROVIDED = "Resource Cannot Be Provided"
    UNSUPPORTED_SHIPPING_ADDRESS_TYPE = "Unsupported Shipping Address Type"
    USER_BLOCKED = "User Blocked"
    ITEM_NOT_CHECKED_OUT = "Item Not Checked Out"
    DUPLICATE_REQUEST = "Duplicate Request"
    ITEM_NOT_AVAILABLE_BY_NEED_BEFORE_DATE = "Item Not Available By Need Before Date"
    USER_INELIGIBLE_TO_REQUEST_THIS_ITEM = "User Ineligible To Request This Item"
    REQUEST_ALREADY_PROCESSED = "Request Already Processed"
    ITEM_NOT_RENEWABLE = "Item Not Renewable"
    MAXIMUM_RENEWALS_EXCEEDED = "Maximum Renewals Exceeded"
    RENEWAL_NOT_ALLOWED_OUTSTANDING_REQUESTS = "Renewal Not Allowed - Item Has Outstanding Requests"
    USER_INELIGIBLE_TO_RENEW_THIS_ITEM = "User Ineligible To Renew This Item"
    ITEM_ACCESS_DENIED = "Item Access Denied"
    NON_UNIQUE_ITEM = "Non-Unique Item"
    UNABLE_TO_ADD_ELEMENT = "Unable To Add Element"
    UNABLE_TO_DELETE_ELEMENT = "Unable To Delete Element"


P = ProblemType

MESSAGING_SCHEME = _BASE + "messagingerrortype/messagingerrortype.scm"
GENERAL_SCHEME = _BASE + "processingerrortype/generalprocessingerror.scm"

MESSAGING_TYPES = frozenset(
    {
        P.INVALID_MESSAGE_SYNTAX_ERROR,
        P.PROTOCOL_ERROR,
        P.UNKNOWN_ELEMENT,
        P.UNKNOWN_SCHEME,
        P.UNKNOWN_SERVICE,
        P.UNKNOWN_VALUE_FROM_KNOWN_SCHEME,
    }
)
GENERAL_TYPES = frozenset(
    {
        P.AGENCY_AUTHENTICATION_FAILED,
        P.INVALID_AMOUNT,
        P.INVALID_DATE,
        P.NEEDED_DATA_MISSING,
        P.SYSTEM_AUTHENTICATION_FAILED,
        P.TEMPORARY_PROCESSING_FAILURE,
        P.UNAUTHORIZED_COMBINATION_FOR_AGENCY,
        P.UNAUTHORIZED_COMBINATION_FOR_SYSTEM,
        P.UNAUTHORIZED_SERVICE_FOR_AGENCY,
        P.UNAUTHORIZED_SERVICE_FOR_SYSTEM,
        P.UNKNOWN_AGENCY,
        P.UNKNOWN_SYSTEM,
        P.UNSUPPORTED_SERVICE,
    }
)


def _scheme(name: str) -> str:
    return f"{_BASE}processingerrortype/{name.lower()}processingerror.scm"


SERVICE_PROBLEMS: dict[str, tuple[str, frozenset[ProblemType]]] = {
    "LookupUser": (
        _scheme("LookupUser"),
        frozenset(
            {
                P.ELEMENT_RULE_VIOLATED,
                P.NON_UNIQUE_USER,
                P.UNKNOWN_USER,
                P.USER_ACCESS_DENIED,
                P.USER_AUTHENTICATION_FAILED,
            }
        ),
    ),
    "AcceptItem": (
        _scheme("AcceptItem"),
        frozenset(
            {
                P.CANNOT_ACCEPT_ITEM,
                P.CANNOT_GUARANTEE_RESTRICTIONS_ON_USE,
                P.ELEMENT_RULE_VIOLATED,
                P.UNKNOWN_ITEM,
                P.UNKNOWN_REQUEST,
                P.UNKNOWN_USER,
                P.USER_INELIGIBLE_TO_CHECK_OUT_THIS_ITEM,
            }
        ),
    ),
    "CheckOutItem": (
        _scheme("CheckOutItem"),
        frozenset(
            {
                P.ITEM_DOES_NOT_CIRCULATE,
                P.MAXIMUM_CHECK_OUTS_EXCEEDED,
                P.RESOURCE_CANNOT_BE_PROVIDED,
                P.UNKNOWN_ITEM,
                P.UNKNOWN_REQUEST,
                P.UNKNOWN_USER,
                P.UNSUPPORTED_SHIPPING_ADDRESS_TYPE,
                P.USER_AUTHENTICATION_FAILED,
                P.USER_BLOCKED,
                P.USER_INELIGIBLE_TO_CHECK_OUT_THIS_ITEM,
            }
        ),
    ),
    "CheckInItem": (_scheme("CheckInItem"), frozenset({P.ITEM_NOT_CHECKED_OUT, P.UNKNOWN_ITEM})),
    "RequestItem": (
        _scheme("RequestItem"),
        frozenset(
            {
                P.DUPLICATE_REQUEST,
                P.ELEMENT_RULE_VIOLATED,
                P.ITEM_DOES_NOT_CIRCULATE,
                P.ITEM_NOT_AVAILABLE_BY_NEED_BEFORE_DATE,
                P.UNKNOWN_ITEM,
                P.UNKNOWN_USER,
                P.USER_AUTHENTICATION_FAILED,
                P.USER_BLOCKED,
                P.USER_INELIGIBLE_TO_REQUEST_THIS_ITEM,
            }
        ),
    ),
    "CancelRequestItem": (
        _scheme("CancelRequestItem"),
        frozenset(
            {
                P.ELEMENT_RULE_VIOLATED,
                P.REQUEST_ALREADY_PROCESSED,
                P.UNKNOWN_ITEM,
                P.UNKNOWN_REQUEST,
                P.UNKNOWN_USER,
                P.USER_AUTHENTICATION_FAILED,
            }
        ),
    ),
    "RenewItem": (
        _scheme("RenewItem"),
        frozenset(
            {
                P.ITEM_NOT_CHECKED_OUT,
                P.ITEM_NOT_RENEWABLE,
                P.MAXIMUM_RENEWALS_EXCEEDED,
                P.RENEWAL_NOT_ALLOWED_OUTSTANDING_REQUESTS,
                P.UNKNOWN_ITEM,
                P.UNKNOWN_USER,
                P.USER_AUTHENTICATION_FAILED,
                P.USER_BLOCKED,
                P.USER_INELIGIBLE_TO_RENEW_THIS_ITEM,
            }
        ),
    ),
    "LookupItem": (
        _scheme("LookupItem"),
        frozenset(
            {P.ELEMENT_RULE_VIOLATED, P.ITEM_ACCESS_DENIED, P.NON_UNIQUE_ITEM, P.UNKNOWN_ITEM}
        ),
    ),
    "LookupRequest": (
        _scheme("LookupRequest"),
        frozenset({P.ELEMENT_RULE_VIOLATED, P.UNKNOWN_REQUEST}),
    ),
    "UpdateRequestItem": (
        _scheme("UpdateRequestItem"),
        frozenset(
            {
                P.ELEMENT_RULE_VIOLATED,
                P.ITEM_ACCESS_DENIED,
                P.UNABLE_TO_ADD_ELEMENT,
                P.UNABLE_TO_DELETE_ELEMENT,
                P.UNKNOWN_ITEM,
                P.UNKNOWN_REQUEST,
                P.UNKNOWN_USER,
                P.USER_AUTHENTICATION_FAILED,
            }
        ),
    ),
}
"""Per-service processing-error scheme and the values it defines."""

_BORROWED_SCHEMES = ("LookupItem", "LookupUser", "AcceptItem", "RequestItem", "RenewItem")
"""Where to borrow a scheme for services without their own (DeleteItem, CreateItem, ...)."""

GENERIC_DETAILS: dict[str, str] = {
    P.INVALID_MESSAGE_SYNTAX_ERROR: "The message could not be read as NCIP.",
    P.UNSUPPORTED_SERVICE: "This service is not supported by this responder.",
    P.TEMPORARY_PROCESSING_FAILURE: "Temporary failure; please try again later.",
    P.NEEDED_DATA_MISSING: "A required element is missing or empty.",
    P.USER_AUTHENTICATION_FAILED: "The user could not be authenticated.",
    P.AGENCY_AUTHENTICATION_FAILED: "The calling agency could not be authenticated.",
}
"""Short human text used as ProblemDetail when the raiser gives none."""


_BY_NORMAL = {normalize_code(p): p for p in ProblemType}


def problem_scheme(problem_type: str, service: str | None) -> str | None:
    """The standard Scheme URI for C{problem_type} in a reply to C{service}, or None if local."""
    kind = _BY_NORMAL.get(normalize_code(problem_type))
    if kind is None:
        return None
    if kind in MESSAGING_TYPES:
        return MESSAGING_SCHEME
    if service in SERVICE_PROBLEMS and kind in SERVICE_PROBLEMS[service][1]:
        return SERVICE_PROBLEMS[service][0]
    if kind in GENERAL_TYPES:
        return GENERAL_SCHEME
    for donor in _BORROWED_SCHEMES:
        scheme, values = SERVICE_PROBLEMS[donor]
        if kind in values:
            return scheme
    for scheme, values in SERVICE_PROBLEMS.values():
        if kind in values:
            return scheme
    return None


def is_messaging_problem(problem_type: str) -> bool:
    """True for messaging-error types (NCIP 1 writes them as C{MessagingError})."""
    return _BY_NORMAL.get(normalize_code(problem_type)) in MESSAGING_TYPES


class NCIPProblem(Exception):
    """A known failure to report as an NCIP Problem in the request's dialect.

    Upper layers raise it; L{protocols.ncip.writer.render_problem} turns it into bytes.
    Never put a PIN or password in C{value} or C{detail}: the writer drops any value that
    matches the request's secrets, but the exception itself may be logged.

    @ivar problem_type: a L{ProblemType} or a local value (written without a Scheme).
    @ivar element: the element at fault, as a local-name or short path.
    @ivar value: the offending identifier, if any.
    @ivar detail: short human text; defaults to a generic sentence for the type.
    """

    def __init__(
        self,
        problem_type: ProblemType | str,
        element: str | None = None,
        value: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(str(problem_type))
        self.problem_type = str(problem_type)
        self.element = element
        self.value = value
        self.detail = detail if detail is not None else GENERIC_DETAILS.get(self.problem_type)

    def __repr__(self) -> str:
        return f"NCIPProblem({self.problem_type!r}, element={self.element!r})"


class NCIPSyntaxError(NCIPProblem):
    """Input that is not acceptable NCIP XML: answered with C{Invalid Message Syntax Error}.

    @ivar reason: a short internal reason for logs (never written into the reply).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(ProblemType.INVALID_MESSAGE_SYNTAX_ERROR, element="NCIPMessage")
        self.reason = reason

    def __repr__(self) -> str:
        return f"NCIPSyntaxError({self.reason!r})"
