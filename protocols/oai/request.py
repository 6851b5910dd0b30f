# -*- test-case-name: tests.protocols.test_oai_request -*-
"""OAI-PMH 2.0 requests validated into typed values (protocol section 3 and 4).

The gateway's OAI-PMH listener will pass the decoded parameters to L{parse_request} with the
metadata prefixes it can disseminate, the repository's datestamp granularity, a
L{TokenCodec} and the current time. The checks follow the protocol: a missing, unknown or
repeated verb is C{badVerb}; a repeated, illegal or missing argument, a malformed date, dates
of mixed granularity, finer than the repository's, or C{from} after C{until} are
C{badArgument}; C{resumptionToken} is exclusive; a token that does not verify, has expired or
belongs to another verb is C{badResumptionToken}; an unknown prefix is
C{cannotDisseminateFormat}. A resumed list comes back with the arguments of its first request,
read from the token, so the gateway handles first and later pages alike.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from urllib.parse import parse_qsl

from .errors import OAIError, OAIErrorCode
from .tokens import ResumptionState, TokenCodec

__all__ = [
    "GetRecord",
    "Granularity",
    "Identify",
    "ListMetadataFormats",
    "ListRequest",
    "ListSets",
    "OAIRequest",
    "format_datestamp",
    "parameters_from_query",
    "parse_datestamp",
    "parse_request",
]


class Granularity(Enum):
    """The finest datestamp a repository supports (C{Identify}'s C{granularity})."""

    DAY = "YYYY-MM-DD"
    SECONDS = "YYYY-MM-DDThh:mm:ssZ"


@dataclass(frozen=True)
class Identify:
    """C{verb=Identify}."""

    verb = "Identify"


@dataclass(frozen=True)
class ListMetadataFormats:
    """C{verb=ListMetadataFormats}, for the repository or for one item."""

    identifier: str | None = None

    verb = "ListMetadataFormats"


@dataclass(frozen=True)
class ListSets:
    """C{verb=ListSets}, first page or resumed."""

    resumption: ResumptionState | None = None

    verb = "ListSets"


@dataclass(frozen=True)
class ListRequest:
    """C{ListRecords} or C{ListIdentifiers}: the selection, and where a resumed list stands.

    C{from_} and C{until} are inclusive instants in UTC (a day-granular C{until} already
    means the end of that day); C{granularity} is the one the harvester wrote them in.
    """

    verb: str
    metadata_prefix: str
    set_spec: str | None = None
    from_: datetime | None = None
    until: datetime | None = None
    granularity: Granularity | None = None
    resumption: ResumptionState | None = None


@dataclass(frozen=True)
class GetRecord:
    """C{verb=GetRecord}."""

    identifier: str
    metadata_prefix: str

    verb = "GetRecord"


OAIRequest = Identify | ListMetadataFormats | ListSets | ListRequest | GetRecord

_ARGUMENTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # verb: (required, optional); resumptionToken is handled as exclusive
    "Identify": (frozenset(), frozenset()),
    "ListMetadataFormats": (frozenset(), frozenset({"identifier"})),
    "ListSets": (frozenset(), frozenset()),
    "ListIdentifiers": (frozenset({"metadataPrefix"}), frozenset({"from", "until", "set"})),
    "ListRecords": (frozenset({"metadataPrefix"}), frozenset({"from", "until", "set"})),
    "GetRecord": (frozenset({"identifier", "metadataPrefix"}), frozenset()),
}
_RESUMABLE = frozenset({"ListIdentifiers", "ListRecords", "ListSets"})
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_SPEC_PART = r"[A-Za-z0-9\-_.!~*'()]+"
_SET_SPEC = re.compile(rf"{_SPEC_PART}(?::{_SPEC_PART})*")
_PREFIX = re.compile(_SPEC_PART)
_MAX_VALUE = 2048


def parameters_from_query(query: str | bytes, max_parameters: int = 16) -> list[tuple[str, str]]:
    """Decode a URL query string or form body into C{(name, value)} pairs, bounded.

    More pairs than any verb takes is C{badArgument} before anything else is read.
    """
    text = query.decode("utf-8", "replace") if isinstance(query, bytes) else query
    try:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=max_parameters)
    except ValueError:
        raise OAIError(OAIErrorCode.BAD_ARGUMENT, "too many arguments") from None


def parse_datestamp(text: str) -> tuple[datetime, Granularity]:
    """A C{from}/C{until} value as a UTC instant and the granularity it was written in."""
    try:
        if _SECONDS.fullmatch(text):
            moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
            return moment.replace(tzinfo=timezone.utc), Granularity.SECONDS
        if _DAY.fullmatch(text):
            moment = datetime.strptime(text, "%Y-%m-%d")
            return moment.replace(tzinfo=timezone.utc), Granularity.DAY
    except ValueError:
        pass
    raise OAIError(OAIErrorCode.BAD_ARGUMENT, f"not a UTC datestamp: {text[:40]!r}")


def format_datestamp(moment: datetime, granularity: Granularity = Granularity.SECONDS) -> str:
    """A datestamp as OAI-PMH writes it, in UTC at the given granularity."""
    utc = moment.astimezone(timezone.utc) if moment.tzinfo else moment
    if granularity is Granularity.DAY:
        return utc.strftime("%Y-%m-%d")
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_request(
    parameters: Iterable[tuple[str, str]],
    *,
    codec: TokenCodec,
    now: datetime,
    metadata_prefixes: Collection[str],
    granularity: Granularity = Granularity.SECONDS,
) -> OAIRequest:
    """Validate OAI-PMH arguments into a request, or raise L{OAIError}.

    @param parameters: C{(name, value)} pairs as received (repeats are errors).
    @param codec: verifies resumption tokens.
    @param now: the current time (UTC), for token expiry.
    @param metadata_prefixes: the prefixes the repository disseminates.
    @param granularity: the repository's finest datestamp granularity.
    """
    values: dict[str, str] = {}
    verbs: list[str] = []
    repeated: str | None = None
    for name, value in parameters:
        if name == "verb":
            verbs.append(value)
        elif name in values:
            repeated = repeated or name
        else:
            values[name] = value
    if len(verbs) != 1 or verbs[0] not in _ARGUMENTS:
        raise OAIError(OAIErrorCode.BAD_VERB,
                       "verb repeated" if len(verbs) > 1 else "missing or illegal verb")
    verb = verbs[0]
    if repeated is not None:
        raise OAIError(OAIErrorCode.BAD_ARGUMENT, f"{repeated} repeated")
    for name, value in values.items():
        if len(value) > _MAX_VALUE:
            raise OAIError(OAIErrorCode.BAD_ARGUMENT, f"{name} too long")
    if "resumptionToken" in values:
        if verb not in _RESUMABLE:
            raise OAIError(OAIErrorCode.BAD_ARGUMENT, f"{verb} takes no resumptionToken")
        if len(values) > 1:
            raise OAIError(OAIErrorCode.BAD_ARGUMENT, "resumptionToken is exclusive")
        return _resume(verb, codec.decode(values["resumptionToken"], now))
    required, optional = _ARGUMENTS[verb]
    for name in values:
        if name not in required and name not in optional:
            raise OAIError(OAIErrorCode.BAD_ARGUMENT, f"illegal argument {name}")
    for name in sorted(required):
        if not values.get(name):
            raise OAIError(OAIErrorCode.BAD_ARGUMENT, f"missing {name}")
    if "identifier" in values and not values["identifier"].strip():
        raise OAIError(OAIErrorCode.BAD_ARGUMENT, "empty identifier")
    if verb == "Identify":
        return Identify()
    if verb == "ListMetadataFormats":
        return ListMetadataFormats(values.get("identifier"))
    if verb == "ListSets":
        return ListSets()
    prefix = _metadata_prefix(values["metadataPrefix"], metadata_prefixes)
    if verb == "GetRecord":
        return GetRecord(values["identifier"], prefix)
    return _list_request(verb, prefix, values, granularity)


def _metadata_prefix(prefix: str, known: Collection[str]) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise OAIError(OAIErrorCode.BAD_ARGUMENT, "malformed metadataPrefix")
    if prefix not in known:
        raise OAIError(OAIErrorCode.CANNOT_DISSEMINATE_FORMAT, prefix)
    return prefix


def _list_request(verb: str, prefix: str, values: dict[str, str],
                  granularity: Granularity) -> ListRequest:
    set_spec = values.get("set")
    if set_spec is not None and not _SET_SPEC.fullmatch(set_spec):
        raise OAIError(OAIErrorCode.BAD_ARGUMENT, "malformed set")
    bounds: dict[str, tuple[datetime, Granularity]] = {}
    for name in ("from", "until"):
        if name in values:
            moment, written = parse_datestamp(values[name])
            if written is Granularity.SECONDS and granularity is Granularity.DAY:
                raise OAIError(OAIErrorCode.BAD_ARGUMENT,
                               f"{name} finer than the repository's granularity")
            bounds[name] = (moment, written)
    grains = {written for _, written in bounds.values()}
    if len(grains) > 1:
        raise OAIError(OAIErrorCode.BAD_ARGUMENT, "from and until differ in granularity")
    start = bounds["from"][0] if "from" in bounds else None
    end = None
    if "until" in bounds:
        end, written = bounds["until"]
        if written is Granularity.DAY:
            end += timedelta(days=1, seconds=-1)
    if start is not None and end is not None and start > end:
        raise OAIError(OAIErrorCode.BAD_ARGUMENT, "from is later than until")
    return ListRequest(verb, prefix, set_spec, start, end, grains.pop() if grains else None)


def _resume(verb: str, state: ResumptionState) -> ListSets | ListRequest:
    if state.verb != verb:
        raise OAIError(OAIErrorCode.BAD_RESUMPTION_TOKEN, f"token belongs to {state.verb}")
    if verb == "ListSets":
        return ListSets(state)
    if state.metadata_prefix is None:
        raise OAIError(OAIErrorCode.BAD_RESUMPTION_TOKEN, "token has no metadataPrefix")
    return ListRequest(verb, state.metadata_prefix, state.set_spec, state.from_, state.until,
                       None, state)
