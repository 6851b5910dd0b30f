# -*- test-case-name: tests.gateway.test_oai_harvest -*-
"""The OAI-PMH provider: verbs turned into harvest calls on the catalogue, answers as bytes.

Over an :class:`IHarvestable` catalogue. Sets: ``location:<code>`` for each branch/location
that holds items (characters outside the setSpec alphabet, and ``~``, written ``~XX`` per UTF-8
byte: ``Main Library`` is ``location:Main~20Library``) and ``kind:<name>`` by
record type (leader/06), plus ``kind:serial`` (leader/07). Lists come ``page_size`` records a
response, in keyset order on (datestamp, record id): the resumption token carries the last
position (signed, with an expiry and the completeListSize counted once, on the first page), so
a page of a million-record harvest costs what the first does and holds one page in memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

from gateway.domain.harvest import (
    HarvestedRecord,
    HarvestHeader,
    HarvestPosition,
    HarvestSelection,
    IHarvestable,
)
from gateway.oai.formats import FORMATS, render
from gateway.z3950.retrieval import Presentation
from protocols.oai import (
    GetRecord,
    Identify,
    ListMetadataFormats,
    ListRequest,
    ListSets,
    ListWriter,
    OAIError,
    OAIErrorCode,
    OAIIdentifierScheme,
    RecordHeader,
    RepositoryInfo,
    ResumptionState,
    ResumptionToken,
    SetInfo,
    TokenCodec,
    error_response,
    get_record_response,
    identify_response,
    list_metadata_formats_response,
    parameters_from_query,
    parse_request,
)

__all__ = ["KIND_SETS", "OAIProvider", "ProviderSettings"]

log = Logger()

KIND_SETS: dict[str, frozenset[str]] = {
    "text": frozenset("at"), "score": frozenset("cd"), "map": frozenset("ef"),
    "video": frozenset("g"), "sound": frozenset("ij"), "image": frozenset("k"),
    "software": frozenset("m"), "kit": frozenset("o"), "mixed": frozenset("p"),
    "object": frozenset("r"),
}
"""``kind:<name>`` sets by leader/06 codes; ``kind:serial`` is leader/07 = s."""
_KIND_NAMES = {code: name for name, codes in KIND_SETS.items() for code in codes}
_SPEC_CHAR = re.compile(r"[A-Za-z0-9\-_.!*'()]")
_ESCAPE = re.compile(r"~([0-9A-F]{2})")
_PREFIXES = tuple(f.prefix for f in FORMATS)


@dataclass(frozen=True)
class ProviderSettings:
    """What the provider says about itself and how it pages."""

    repository_name: str = "Interlend"
    base_url: str = "http://localhost/oai"
    repository_identifier: str = "interlend.example.org"
    admin_emails: tuple[str, ...] = ("admin@example.org",)
    page_size: int = 100
    token_lifetime: float = 86400.0
    view: Presentation = field(default_factory=Presentation)


def location_spec(location: str) -> str:
    """A location's set spec (reversible escaping, see the module docstring)."""
    return "location:" + "".join(
        c if _SPEC_CHAR.fullmatch(c) else "".join(f"~{b:02X}" for b in c.encode())
        for c in location)


def location_of(name: str) -> str | None:
    """The location a set spec's name part encodes, None if it is not a valid encoding."""
    if not name or "~" in _ESCAPE.sub("", name):
        return None
    try:
        return bytes(_unescape(name)).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _unescape(name: str) -> list[int]:
    out: list[int] = []
    i = 0
    while i < len(name):
        if name[i] == "~":
            out.append(int(name[i + 1:i + 3], 16))
            i += 3
        else:
            out += name[i].encode()
            i += 1
    return out


def _set_specs(header: HarvestHeader) -> tuple[str, ...]:
    specs = [location_spec(loc) for loc in header.locations]
    if header.kind[:1] in _KIND_NAMES:
        specs.append(f"kind:{_KIND_NAMES[header.kind[:1]]}")
    if header.kind[1:2] == "s":
        specs.append("kind:serial")
    return tuple(specs)


def _selection(request: ListRequest) -> HarvestSelection | None:
    """The harvest selection, or None for a set that cannot hold anything."""
    base = HarvestSelection(from_=request.from_, until=request.until)
    spec = request.set_spec
    if spec is None:
        return base
    family, _, name = spec.partition(":")
    location = location_of(name) if family == "location" and ":" not in name else None
    if location is not None:
        return replace(base, location=location)
    if family == "kind" and name == "serial":
        return replace(base, serial=True)
    if family == "kind" and name in KIND_SETS:
        return replace(base, kinds=KIND_SETS[name])
    return None


def _position(text: str) -> HarvestPosition:
    try:
        seconds, record_id = text.split(":")
        return HarvestPosition(datetime.fromtimestamp(int(seconds), timezone.utc),
                               int(record_id))
    except ValueError:
        raise OAIError(OAIErrorCode.BAD_RESUMPTION_TOKEN, "malformed position") from None


class OAIProvider:
    """Answers OAI-PMH requests (decoded query or form bytes) with response chunks."""

    def __init__(self, harvest: IHarvestable, codec: TokenCodec,
                 settings: ProviderSettings) -> None:
        self.harvest = harvest
        self.codec = codec
        self.settings = settings
        self.scheme = OAIIdentifierScheme(settings.repository_identifier)

    def handle(self, query: bytes, now: datetime) -> Deferred[list[bytes]]:
        """The response to one request, as chunks to write in order."""
        return ensureDeferred(self._handle(query, now))

    async def _handle(self, query: bytes, now: datetime) -> list[bytes]:
        arguments: list[tuple[str, str]] = []
        base = self.settings.base_url
        try:
            arguments = parameters_from_query(query)
            request = parse_request(arguments, codec=self.codec, now=now,
                                    metadata_prefixes=_PREFIXES)
            if isinstance(request, Identify):
                return [await self._identify(now)]
            if isinstance(request, ListMetadataFormats):
                if request.identifier is not None:
                    await self._lookup(request.identifier)
                return [list_metadata_formats_response(base, now, FORMATS, arguments)]
            if isinstance(request, ListSets):
                return await self._list_sets(now, arguments)
            if isinstance(request, GetRecord):
                return [await self._get_record(request, now, arguments)]
            return await self._list(request, now, arguments)
        except OAIError as error:
            return [error_response(base, now, [error], arguments)]

    async def _identify(self, now: datetime) -> bytes:
        earliest = await self.harvest.earliest()
        s = self.settings
        info = RepositoryInfo(
            s.repository_name, s.base_url, s.admin_emails,
            earliest or datetime(1970, 1, 1, tzinfo=timezone.utc),
            descriptions=(self.scheme.description(),))
        return identify_response(info, now)

    async def _lookup(self, identifier: str) -> HarvestedRecord:
        found = await self.harvest.get(self.scheme.local_id(identifier))
        if found is None:
            raise OAIError(OAIErrorCode.ID_DOES_NOT_EXIST, identifier[:200])
        return found

    def _header(self, header: HarvestHeader) -> RecordHeader:
        return RecordHeader(self.scheme.identifier(header.local_id), header.datestamp,
                            _set_specs(header), header.deleted)

    async def _get_record(self, request: GetRecord, now: datetime,
                          arguments: Sequence[tuple[str, str]]) -> bytes:
        found = await self._lookup(request.identifier)
        metadata = (None if found.record is None
                    else render(request.metadata_prefix, found.record, self.settings.view))
        header = self._header(found.header)
        if found.record is None and not header.deleted:
            header = replace(header, deleted=True)
        return get_record_response(self.settings.base_url, now, header, metadata, arguments)

    async def _list_sets(self, now: datetime, arguments: Sequence[tuple[str, str]]
                         ) -> list[bytes]:
        sets = await self.harvest.sets()
        infos = [SetInfo(location_spec(loc), f"Items at {loc}") for loc in sets.locations]
        names = sorted({_KIND_NAMES[k] for k in sets.kinds if k in _KIND_NAMES})
        infos += [SetInfo(f"kind:{name}", f"Records of kind {name}") for name in names]
        infos.append(SetInfo("kind:serial", "Serials"))
        if not sets.locations and not sets.kinds:
            raise OAIError(OAIErrorCode.NO_SET_HIERARCHY, "the catalogue is empty")
        writer = ListWriter("ListSets", self.settings.base_url, now, arguments)
        return [writer.start(), *(writer.set(info) for info in infos), writer.finish()]

    async def _list(self, request: ListRequest, now: datetime,
                    arguments: Sequence[tuple[str, str]]) -> list[bytes]:
        selection = _selection(request)
        if selection is None:
            raise OAIError(OAIErrorCode.NO_RECORDS_MATCH, "no such set")
        state = request.resumption
        after = None if state is None else _position(state.position)
        size = self.settings.page_size
        records = request.verb == "ListRecords"
        prefix = request.metadata_prefix
        view = self.settings.view
        page = await self.harvest.page(selection, after, size + 1, records,
                                       lambda record: render(prefix, record, view))
        if not page:
            if state is None:
                raise OAIError(OAIErrorCode.NO_RECORDS_MATCH, "no records match")
            raise OAIError(OAIErrorCode.BAD_RESUMPTION_TOKEN, "the list has changed")
        more = len(page) > size
        page = page[:size]
        cursor = 0 if state is None else state.cursor
        total = (state.complete_list_size if state is not None
                 else (len(page) if not more else await self.harvest.count(selection)))
        writer = ListWriter(request.verb, self.settings.base_url, now, arguments)
        chunks = [writer.start()]
        for item in page:
            header = self._header(item.header)
            if not records:
                chunks.append(writer.header(header))
                continue
            if item.record is None:  # deleted (or deleted since the page was read)
                chunks.append(writer.record(replace(header, deleted=True), None))
                continue
            if isinstance(item.record, ValueError):  # unreadable stored record: logged, skipped
                log.warn("OAI-PMH: record {id} not rendered: {why}", id=item.header.local_id,
                         why=item.record)
                continue
            chunks.append(writer.record(header, item.record))
        token = None
        if more:
            last = page[-1].header
            expires = now + timedelta(seconds=self.settings.token_lifetime)
            next_state = ResumptionState(
                request.verb, prefix, request.set_spec, request.from_, request.until,
                cursor + len(page), f"{int(last.datestamp.timestamp())}:{last.record_id}",
                expires, total)
            token = ResumptionToken(self.codec.encode(next_state), cursor, total, expires)
        elif state is not None:
            token = ResumptionToken("", cursor, total)
        if writer.count == 0:
            # every record of the page failed to render: skip to the next page rather than
            # send an empty list (rare; logged above)
            raise OAIError(OAIErrorCode.NO_RECORDS_MATCH, "no renderable records")
        chunks.append(writer.finish(token))
        return chunks
