"""Problems: the standard registry, every reply shape, and never echoing a PIN or password."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from protocols.ncip import (
    Dialect,
    NCIPProblem,
    NCIPSyntaxError,
    PrefixStyle,
    ProblemType,
    parse_message,
    problem_scheme,
    render_problem,
)
from protocols.ncip.problems import GENERAL_SCHEME, MESSAGING_SCHEME
from tests.protocols.test_ncip_writer import Schemas, load_schemas

NS = "http://www.niso.org/2008/ncip"
BASE = "http://www.niso.org/ncip/v1_0/schemes/processingerrortype/"
N = {"n": NS}


@pytest.fixture
def schemas(shared_dir: Path) -> Schemas:
    """Compiled reference schemas from ../shared."""
    return load_schemas(shared_dir)


def lookup_user_with_pin(pin: str = "8642", dialect: str = "v2") -> bytes:
    """A LookupUser by barcode and PIN, in NCIP 2 (ns1) or NCIP 1."""
    if dialect == "v1":
        return (
            '<NCIPMessage version="1"><LookupUser><InitiationHeader><FromAgencyId><UniqueAgencyId>'
            "<Scheme>s</Scheme><Value>A</Value></UniqueAgencyId></FromAgencyId><ToAgencyId>"
            "<UniqueAgencyId><Scheme>s</Scheme><Value>B</Value></UniqueAgencyId></ToAgencyId>"
            "</InitiationHeader><AuthenticationInput><AuthenticationInputData>21000"
            "</AuthenticationInputData><AuthenticationDataFormatType><Scheme>s</Scheme><Value>text"
            "</Value></AuthenticationDataFormatType><AuthenticationInputType><Scheme>s</Scheme>"
            "<Value>Barcode Id</Value></AuthenticationInputType></AuthenticationInput>"
            f"<AuthenticationInput><AuthenticationInputData>{pin}</AuthenticationInputData>"
            "<AuthenticationDataFormatType><Scheme>s</Scheme><Value>text</Value>"
            "</AuthenticationDataFormatType><AuthenticationInputType><Scheme>s</Scheme><Value>PIN"
            "</Value></AuthenticationInputType></AuthenticationInput><UserElementType><Scheme>s"
            "</Scheme><Value>Name Information</Value></UserElementType></LookupUser></NCIPMessage>"
        ).encode()
    return (
        f'<ns1:NCIPMessage xmlns:ns1="{NS}" ns1:version="2"><ns1:LookupUser><ns1:InitiationHeader>'
        "<ns1:FromAgencyId><ns1:AgencyId>BROKER</ns1:AgencyId></ns1:FromAgencyId>"
        "<ns1:FromAgencyAuthentication>agency-pw</ns1:FromAgencyAuthentication>"
        "<ns1:ToAgencyId><ns1:AgencyId>LIB</ns1:AgencyId></ns1:ToAgencyId></ns1:InitiationHeader>"
        "<ns1:AuthenticationInput><ns1:AuthenticationInputData>21000</ns1:AuthenticationInputData>"
        "<ns1:AuthenticationDataFormatType>text</ns1:AuthenticationDataFormatType>"
        "<ns1:AuthenticationInputType>Barcode Id</ns1:AuthenticationInputType>"
        "</ns1:AuthenticationInput><ns1:AuthenticationInput><ns1:AuthenticationInputData>"
        f"{pin}</ns1:AuthenticationInputData><ns1:AuthenticationDataFormatType>text"
        "</ns1:AuthenticationDataFormatType><ns1:AuthenticationInputType>PIN"
        "</ns1:AuthenticationInputType></ns1:AuthenticationInput></ns1:LookupUser></ns1:NCIPMessage>"
    ).encode()


def test_registry_picks_the_service_specific_scheme() -> None:
    """The same value maps to the scheme of the service it answers, general/messaging otherwise."""
    assert problem_scheme("Unknown User", "LookupUser") == BASE + "lookupuserprocessingerror.scm"
    assert (
        problem_scheme("unknown user", "CheckOutItem") == BASE + "checkoutitemprocessingerror.scm"
    )
    assert problem_scheme(ProblemType.ITEM_NOT_CHECKED_OUT, "CheckInItem") == (
        BASE + "checkinitemprocessingerror.scm"
    )
    assert problem_scheme(ProblemType.REQUEST_ALREADY_PROCESSED, "CancelRequestItem") == (
        BASE + "cancelrequestitemprocessingerror.scm"
    )
    assert problem_scheme(ProblemType.UNSUPPORTED_SERVICE, "LookupUser") == GENERAL_SCHEME
    assert problem_scheme(ProblemType.INVALID_MESSAGE_SYNTAX_ERROR, None) == MESSAGING_SCHEME
    assert (
        problem_scheme(ProblemType.UNKNOWN_ITEM, "DeleteItem")
        == BASE + "lookupitemprocessingerror.scm"
    )
    assert problem_scheme(ProblemType.DUPLICATE_REQUEST, "AcceptItem") == (
        BASE + "requestitemprocessingerror.scm"
    )
    assert problem_scheme("Pickup Library Invalid", "RequestItem") is None


def test_standard_problem_values_present() -> None:
    """Every Problem type the gateway needs exists with its standard spelling."""
    for value in (
        "Unknown User",
        "User Authentication Failed",
        "User Blocked",
        "Unknown Item",
        "Item Not Checked Out",
        "Item Not Renewable",
        "Needed Data Missing",
        "Unsupported Service",
        "Invalid Message Syntax Error",
        "Agency Authentication Failed",
        "Unknown Agency",
        "Duplicate Request",
        "Request Already Processed",
        "Unknown Request",
        "Temporary Processing Failure",
        "Cannot Accept Item",
    ):
        assert ProblemType(value) == value
        assert problem_scheme(value, None) is not None


def test_service_level_problem_ncip2(schemas: Schemas) -> None:
    """An NCIPProblem in answer to a parsed request: <LookupUserResponse><Problem>, XSD-valid."""
    request = parse_message(lookup_user_with_pin())
    problem = NCIPProblem(
        ProblemType.UNKNOWN_USER,
        element="AuthenticationInput",
        value="21000",
        detail="No such patron.",
    )
    for style in PrefixStyle:
        reply = render_problem(problem, request, prefix_style=style)
        schemas.check(reply, Dialect.NCIP2, style)
    root = etree.fromstring(render_problem(problem, request))
    found = root.find("n:LookupUserResponse/n:Problem", N)
    assert found is not None
    problem_type = found.find("n:ProblemType", N)
    assert problem_type is not None and problem_type.text == "Unknown User"
    assert problem_type.get(f"{{{NS}}}Scheme") == BASE + "lookupuserprocessingerror.scm"
    assert found.findtext("n:ProblemDetail", namespaces=N) == "No such patron."
    assert found.findtext("n:ProblemElement", namespaces=N) == "AuthenticationInput"
    assert found.findtext("n:ProblemValue", namespaces=N) == "21000"
    assert root.find("n:LookupUserResponse/n:ResponseHeader", N) is not None


def test_several_problems_in_one_response(schemas: Schemas) -> None:
    """Problem+ : several problems render in order, still valid."""
    request = parse_message(lookup_user_with_pin())
    reply = render_problem(
        [NCIPProblem("Needed Data Missing", element="UserId"), NCIPProblem("Unknown Agency")],
        request,
    )
    root = schemas.check(reply, Dialect.NCIP2)
    assert [p.text for p in root.iterfind(".//n:ProblemType", N)] == [
        "Needed Data Missing",
        "Unknown Agency",
    ]


def test_ncip1_processing_and_messaging_errors(schemas: Schemas) -> None:
    """NCIP 1: Problem/ProcessingError with ElementName and value; messaging types as
    MessagingError; both DTD-valid."""
    request = parse_message(lookup_user_with_pin(dialect="v1"))
    assert request.dialect is Dialect.NCIP1
    reply = render_problem(
        NCIPProblem("User Blocked", element="UniqueUserId", value="21000"), request
    )
    root = schemas.check(reply, Dialect.NCIP1)
    error = root.find("LookupUserResponse/Problem/ProcessingError")
    assert error is not None
    assert error.findtext("ProcessingErrorType/Value") == "User Blocked"
    assert error.findtext("ProcessingErrorElement/ElementName") == "UniqueUserId"
    assert error.findtext("ProcessingErrorElement/ProcessingErrorValue") == "21000"
    messaging = render_problem(NCIPProblem(ProblemType.UNKNOWN_ELEMENT, element="Foo"), request)
    root = schemas.check(messaging, Dialect.NCIP1)
    assert root.find("LookupUserResponse/Problem/MessagingError/MessagingErrorType") is not None


def test_ncip1_notification_problem_is_bare_messaging_error(schemas: Schemas) -> None:
    """NCIP 1 notification responses carry only ResponseHeader and MessagingError*."""
    request = parse_message(
        b'<NCIPMessage version="1"><ItemShipped><InitiationHeader><FromAgencyId><UniqueAgencyId>'
        b"<Scheme>s</Scheme><Value>A</Value></UniqueAgencyId></FromAgencyId><ToAgencyId>"
        b"<UniqueAgencyId><Scheme>s</Scheme><Value>B</Value></UniqueAgencyId></ToAgencyId>"
        b"</InitiationHeader><UniqueItemId><UniqueAgencyId><Scheme>s</Scheme><Value>A</Value>"
        b"</UniqueAgencyId><ItemIdentifierValue>i</ItemIdentifierValue></UniqueItemId>"
        b"</ItemShipped></NCIPMessage>"
    )
    reply = render_problem(NCIPProblem(ProblemType.UNKNOWN_ITEM, element="UniqueItemId"), request)
    root = schemas.check(reply, Dialect.NCIP1)
    assert root.find("ItemShippedResponse/MessagingError") is not None
    assert root.find("ItemShippedResponse/Problem") is None


def test_message_level_problem_for_unparseable_input(schemas: Schemas) -> None:
    """Unparseable input: Problem directly under NCIPMessage, Invalid Message Syntax Error,
    generic detail, never the parser's exception text."""
    with pytest.raises(NCIPSyntaxError) as info:
        parse_message(b"<NCIPMessage><LookupUser>&bogus;</LookupUser></NCIPMessage>")
    for style in PrefixStyle:
        reply = render_problem(info.value, None, prefix_style=style)
        schemas.check(reply, Dialect.NCIP2, style)
    reply = render_problem(info.value, None)
    root = etree.fromstring(reply)
    problem = root.find("n:Problem", N)
    assert problem is not None
    problem_type = problem.find("n:ProblemType", N)
    assert problem_type is not None and problem_type.text == "Invalid Message Syntax Error"
    assert problem_type.get(f"{{{NS}}}Scheme") == MESSAGING_SCHEME
    assert b"bogus" not in reply and b"not well-formed" not in reply and b"line" not in reply


def test_unknown_service_and_responses_get_message_level_problems(schemas: Schemas) -> None:
    """A service NCIP does not define, or a response sent to us, cannot get an XxxResponse."""
    unknown = parse_message(f'<NCIPMessage xmlns="{NS}"><Frobnicate/></NCIPMessage>'.encode())
    reply = render_problem(NCIPProblem(ProblemType.UNSUPPORTED_SERVICE), unknown)
    root = schemas.check(reply, Dialect.NCIP2)
    assert root.find("n:Problem", N) is not None
    response = parse_message(
        f'<NCIPMessage xmlns="{NS}"><AcceptItemResponse><RequestId><RequestIdentifierValue>r'
        "</RequestIdentifierValue></RequestId></AcceptItemResponse></NCIPMessage>".encode()
    )
    assert response.is_response
    reply = render_problem(NCIPProblem(ProblemType.UNSUPPORTED_SERVICE), response)
    assert etree.fromstring(reply).find("n:Problem", N) is not None


def test_unsupported_service_inside_its_response(schemas: Schemas) -> None:
    """A known but unimplemented service gets Unsupported Service in <UpdateUserResponse>."""
    request = parse_message(
        f'<NCIPMessage xmlns="{NS}"><UpdateUser><UserId><UserIdentifierValue>u'
        "</UserIdentifierValue></UserId></UpdateUser></NCIPMessage>".encode()
    )
    reply = render_problem(
        NCIPProblem(ProblemType.UNSUPPORTED_SERVICE, element="UpdateUser"), request
    )
    root = schemas.check(reply, Dialect.NCIP2)
    assert root.findtext("n:UpdateUserResponse/n:Problem/n:ProblemType", namespaces=N) == (
        "Unsupported Service"
    )
    assert root.findtext("n:UpdateUserResponse/n:Problem/n:ProblemDetail", namespaces=N)


@pytest.mark.parametrize("dialect", ["v1", "v2"])
def test_pin_and_passwords_never_echoed(dialect: str) -> None:
    """Even if a raiser puts the PIN in value or detail, or names the PIN element, it never
    appears in the reply; nor does the agency authentication secret."""
    pin = "739154"
    request = parse_message(lookup_user_with_pin(pin, dialect))
    careless = [
        NCIPProblem(
            ProblemType.USER_AUTHENTICATION_FAILED, element="AuthenticationInputData", value=pin
        ),
        NCIPProblem(
            ProblemType.USER_AUTHENTICATION_FAILED,
            element="AuthenticationInput",
            value=f"pin={pin}",
            detail=f"PIN {pin} does not match",
        ),
        NCIPProblem(
            ProblemType.AGENCY_AUTHENTICATION_FAILED,
            element="FromAgencyAuthentication",
            value="agency-pw",
            detail="expected agency-pw",
        ),
    ]
    for problem in careless:
        reply = render_problem(problem, request)
        assert pin.encode() not in reply
        assert b"agency-pw" not in reply
        assert problem.problem_type.encode() in reply
    assert pin not in repr(request) and pin not in repr(request.message)


def test_override_service_and_force_message_level() -> None:
    """Callers may name the service (e.g. unparsed but sniffed) or force a message-level reply."""
    request = parse_message(lookup_user_with_pin())
    forced = etree.fromstring(
        render_problem(NCIPProblem("Unknown Agency"), request, message_level=True)
    )
    assert forced.find("n:Problem", N) is not None
    named = etree.fromstring(
        render_problem(NCIPProblem("Unknown Item"), None, service="CheckInItem")
    )
    assert named.find("n:CheckInItemResponse/n:Problem", N) is not None


def test_exception_repr_and_defaults() -> None:
    """NCIPProblem defaults a generic detail; its repr carries no value (ids stay out of logs)."""
    problem = NCIPProblem(ProblemType.TEMPORARY_PROCESSING_FAILURE, value="secret-ish")
    assert problem.detail and "secret-ish" not in repr(problem)
    assert NCIPSyntaxError("x").problem_type == "Invalid Message Syntax Error"
