"""OAI-PMH request validation: verbs, arguments, dates, granularity, tokens, error codes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.oai.errors import OAIError, OAIErrorCode
from protocols.oai.request import (
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
from protocols.oai.tokens import ResumptionState, TokenCodec

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
CODEC = TokenCodec(b"t" * 32)
FORMATS = ("oai_dc", "marc21", "marc21_holdings")
UTC = timezone.utc


def request_of(query: str, granularity: Granularity = Granularity.SECONDS) -> OAIRequest:
    return parse_request(parameters_from_query(query), codec=CODEC, now=NOW,
                         metadata_prefixes=FORMATS, granularity=granularity)


def error_of(query: str, granularity: Granularity = Granularity.SECONDS) -> OAIError:
    with pytest.raises(OAIError) as caught:
        request_of(query, granularity)
    return caught.value


def test_each_verb() -> None:
    """Each verb with its arguments becomes its typed request."""
    assert request_of("verb=Identify") == Identify()
    assert request_of("verb=ListMetadataFormats") == ListMetadataFormats()
    assert request_of("verb=ListMetadataFormats&identifier=oai:x:1") == (
        ListMetadataFormats("oai:x:1"))
    assert request_of("verb=ListSets") == ListSets()
    assert request_of("verb=GetRecord&identifier=oai:x:1&metadataPrefix=marc21") == (
        GetRecord("oai:x:1", "marc21"))
    assert request_of("verb=ListRecords&metadataPrefix=oai_dc&set=branch:main") == (
        ListRequest("ListRecords", "oai_dc", "branch:main"))
    assert request_of("verb=ListIdentifiers&metadataPrefix=oai_dc") == (
        ListRequest("ListIdentifiers", "oai_dc"))


def test_dates_seconds_and_days() -> None:
    """Second-granular bounds are exact; a day-granular until covers the whole day."""
    request = request_of("verb=ListRecords&metadataPrefix=oai_dc"
                         "&from=2026-11-01T10:00:00Z&until=2026-11-02T09:30:00Z")
    assert isinstance(request, ListRequest)
    assert request.from_ == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert request.until == datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    assert request.granularity is Granularity.SECONDS
    days = request_of("verb=ListRecords&metadataPrefix=oai_dc&from=2026-11-01&until=2026-11-01")
    assert isinstance(days, ListRequest)
    assert days.from_ == datetime(2026, 11, 1, tzinfo=UTC)
    assert days.until == datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC)
    assert days.granularity is Granularity.DAY


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("", OAIErrorCode.BAD_VERB, "missing or illegal verb"),
        ("verb=Frobnicate", OAIErrorCode.BAD_VERB, "missing or illegal verb"),
        ("verb=identify", OAIErrorCode.BAD_VERB, "missing or illegal verb"),
        ("verb=Identify&verb=Identify", OAIErrorCode.BAD_VERB, "verb repeated"),
        ("verb=Identify&set=a", OAIErrorCode.BAD_ARGUMENT, "illegal argument set"),
        ("verb=ListRecords", OAIErrorCode.BAD_ARGUMENT, "missing metadataPrefix"),
        ("verb=ListRecords&metadataPrefix=", OAIErrorCode.BAD_ARGUMENT, "missing metadataPrefix"),
        ("verb=GetRecord&metadataPrefix=oai_dc", OAIErrorCode.BAD_ARGUMENT, "missing identifier"),
        ("verb=GetRecord&identifier=+&metadataPrefix=oai_dc", OAIErrorCode.BAD_ARGUMENT,
         "empty identifier"),
        ("verb=ListRecords&metadataPrefix=oai_dc&metadataPrefix=marc21",
         OAIErrorCode.BAD_ARGUMENT, "metadataPrefix repeated"),
        ("verb=ListRecords&metadataPrefix=mods", OAIErrorCode.CANNOT_DISSEMINATE_FORMAT, "mods"),
        ("verb=GetRecord&identifier=x&metadataPrefix=mods",
         OAIErrorCode.CANNOT_DISSEMINATE_FORMAT, "mods"),
        ("verb=ListRecords&metadataPrefix=a%20b", OAIErrorCode.BAD_ARGUMENT,
         "malformed metadataPrefix"),
        ("verb=ListRecords&metadataPrefix=oai_dc&set=a::b", OAIErrorCode.BAD_ARGUMENT,
         "malformed set"),
        ("verb=ListRecords&metadataPrefix=oai_dc&from=2026-13-01", OAIErrorCode.BAD_ARGUMENT,
         None),
        ("verb=ListRecords&metadataPrefix=oai_dc&from=2026-02-30", OAIErrorCode.BAD_ARGUMENT,
         None),
        ("verb=ListRecords&metadataPrefix=oai_dc&from=2026-11-01T10:00:00",
         OAIErrorCode.BAD_ARGUMENT, None),
        ("verb=ListRecords&metadataPrefix=oai_dc&from=2026-11-01T10:00:00.5Z",
         OAIErrorCode.BAD_ARGUMENT, None),
        ("verb=ListRecords&metadataPrefix=oai_dc&from=2026-11-01T10:00:00%2B01:00",
         OAIErrorCode.BAD_ARGUMENT, None),
        ("verb=ListRecords&metadataPrefix=oai_dc&from=2026-11-01&until=2026-11-02T00:00:00Z",
         OAIErrorCode.BAD_ARGUMENT, "from and until differ in granularity"),
        ("verb=ListRecords&metadataPrefix=oai_dc&from=2026-11-02&until=2026-11-01",
         OAIErrorCode.BAD_ARGUMENT, "from is later than until"),
        ("verb=Identify&resumptionToken=x", OAIErrorCode.BAD_ARGUMENT,
         "Identify takes no resumptionToken"),
        ("verb=ListRecords&metadataPrefix=oai_dc&resumptionToken=x", OAIErrorCode.BAD_ARGUMENT,
         "resumptionToken is exclusive"),
        ("verb=ListRecords&resumptionToken=x", OAIErrorCode.BAD_RESUMPTION_TOKEN,
         "malformed token"),
        ("verb=ListRecords&metadataPrefix=" + "a" * 3000, OAIErrorCode.BAD_ARGUMENT,
         "metadataPrefix too long"),
    ],
)
def test_errors(query: str, code: OAIErrorCode, message: str | None) -> None:
    """Each invalid request gets the protocol's error code and a message naming the argument."""
    error = error_of(query)
    assert error.code is code
    if message is not None:
        assert error.message == message


def test_seconds_refused_by_a_day_granular_repository() -> None:
    """A repository with day granularity refuses a seconds datestamp (badArgument)."""
    error = error_of("verb=ListRecords&metadataPrefix=oai_dc&from=2026-11-01T00:00:00Z",
                     Granularity.DAY)
    assert error.code is OAIErrorCode.BAD_ARGUMENT
    assert isinstance(request_of("verb=ListRecords&metadataPrefix=oai_dc&from=2026-11-01",
                                 Granularity.DAY), ListRequest)


def test_resumed_list_comes_back_with_its_first_arguments() -> None:
    """A token alone restores the prefix, set and dates of the list it continues."""
    state = ResumptionState("ListRecords", "marc21", "kind:book",
                            datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC),
                            100, "pos", NOW + timedelta(minutes=5), 250)
    request = request_of(f"verb=ListRecords&resumptionToken={CODEC.encode(state)}")
    assert request == ListRequest("ListRecords", "marc21", "kind:book", state.from_,
                                  state.until, None, state)
    sets_state = ResumptionState("ListSets", None, None, None, None, 10, "s",
                                 NOW + timedelta(minutes=5))
    assert request_of(f"verb=ListSets&resumptionToken={CODEC.encode(sets_state)}") == (
        ListSets(sets_state))


def test_token_for_another_verb_or_expired() -> None:
    """A ListRecords token cannot resume ListIdentifiers; an expired token is refused."""
    state = ResumptionState("ListRecords", "marc21", None, None, None, 0, "p",
                            NOW + timedelta(minutes=5))
    token = CODEC.encode(state)
    error = error_of(f"verb=ListIdentifiers&resumptionToken={token}")
    assert (error.code, error.message) == (OAIErrorCode.BAD_RESUMPTION_TOKEN,
                                           "token belongs to ListRecords")
    expired = CODEC.encode(ResumptionState("ListRecords", "marc21", None, None, None, 0, "p",
                                           NOW))
    assert error_of(f"verb=ListRecords&resumptionToken={expired}").message == "token expired"


def test_error_echo_policy() -> None:
    """badVerb and badArgument replies must not echo the request's arguments."""
    assert error_of("verb=Nope").omits_request_arguments
    assert error_of("verb=ListRecords").omits_request_arguments
    assert not error_of("verb=ListRecords&metadataPrefix=mods").omits_request_arguments


def test_too_many_parameters() -> None:
    """More argument pairs than any verb takes is badArgument before parsing."""
    with pytest.raises(OAIError) as caught:
        parameters_from_query("&".join(["a=1"] * 40))
    assert caught.value.code is OAIErrorCode.BAD_ARGUMENT


def test_datestamp_helpers() -> None:
    """Datestamps read and write in UTC at either granularity."""
    moment, grain = parse_datestamp("2026-12-06T21:05:09Z")
    assert (moment, grain) == (datetime(2026, 12, 6, 21, 5, 9, tzinfo=UTC), Granularity.SECONDS)
    assert format_datestamp(moment) == "2026-12-06T21:05:09Z"
    assert format_datestamp(moment, Granularity.DAY) == "2026-12-06"
    later = moment.astimezone(timezone(timedelta(hours=2)))
    assert format_datestamp(later) == "2026-12-06T21:05:09Z"


_NAMES = st.sampled_from(["verb", "identifier", "metadataPrefix", "from", "until", "set",
                          "resumptionToken", "bogus"])
_VALUES = st.one_of(st.sampled_from(["Identify", "ListRecords", "ListIdentifiers", "ListSets",
                                     "GetRecord", "ListMetadataFormats", "oai_dc", "marc21",
                                     "2026-01-01", "2026-01-01T00:00:00Z", "a:b", ""]),
                    st.text(max_size=20))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=6))
def test_any_arguments_give_a_request_or_an_oai_error(pairs: list[tuple[str, str]]) -> None:
    """Whatever the arguments, the result is a request or an L{OAIError}, never a crash."""
    try:
        parse_request(pairs, codec=CODEC, now=NOW, metadata_prefixes=FORMATS)
    except OAIError as error:
        assert error.code in OAIErrorCode
