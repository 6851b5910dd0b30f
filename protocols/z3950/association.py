# -*- test-case-name: tests.protocols.test_z3950_association -*-
"""The Z39.50 association: a table-driven state machine with no I/O.

An L{Association} is fed decoded PDUs (L{Association.receive}) and returns I{actions}: bytes
to send (L{Send}), a catalogue operation to run (L{SearchCall}, L{FetchCall}, L{ScanCall},
L{SortCall}), a finished operation to audit (L{Report}) and a connection to drop
(L{Disconnect}). The caller runs a call and feeds its outcome back with
L{Association.resume}: the value (a result set, records, scan entries) or a L{Diagnostic}
when it failed. Operations run one at a time, in arrival order; PDUs that arrive while one
is running wait in a bounded queue.

States follow YAZ GFS (C{ASSOC_NEW / ASSOC_UP / ASSOC_DEAD}): C{NEW -> UP -> CLOSING ->
CLOSED}. L{TRANSITIONS} lists the (state, PDU) pairs that do something; anything else is
handled by the state's default: in C{NEW} the connection is dropped with no PDU (GFS
"Missing InitRequest"), in C{UP} the association sends Close(protocolError), in
C{CLOSING}/C{CLOSED} input is ignored. Behaviour copied from GFS (``docs/z3950.md`` section 5):
referenceId echo, min() message-size negotiation, option intersection, Init-failure
diagnostics in userInformationField, Present packing with partial-2 and surrogate
diagnostics 16/17, diag 13/21/22/30, Close(finished) in answer to a client Close and no
Close PDU on a version-2 association.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import lru_cache
from typing import Any, Protocol

from . import oids, pqf
from .asn1 import PDU
from .charset import CharsetChoice, TermDecoder, choose_charset, negotiation_response
from .codec import (
    delete_result_set_response,
    encode_close,
    encode_init_response,
    encode_pdu,
    encode_present_response,
    encode_record,
    encode_search_response,
    pdu_arm,
    present_response,
    scan_response,
    sort_response,
)
from .diagnostics import Bib1
from .errors import CloseReason, Z3950ProtocolError
from .marc8 import NCR_ERRORS
from .pdus import (
    Authentication,
    CloseInfo,
    DeleteResultSetRequestInfo,
    Diagnostic,
    EncodedRecord,
    InitRequestInfo,
    PresentRequestInfo,
    Request,
    ResponseRecord,
    ScanEntry,
    ScanRequestInfo,
    SearchRequestInfo,
    SortKeyInfo,
    SortRequestInfo,
    SurrogateDiagnostic,
    UnhandledRequest,
)

__all__ = [
    "Action",
    "Association",
    "AssociationSettings",
    "CatalogueCall",
    "Disconnect",
    "FetchCall",
    "IMPLEMENTED_OPTIONS",
    "PeerIdentity",
    "Report",
    "ScanCall",
    "SearchCall",
    "Send",
    "SortCall",
    "State",
    "TRANSITIONS",
]

IMPLEMENTED_OPTIONS: frozenset[str] = frozenset(
    {"search", "present", "delSet", "triggerResourceCtrl", "scan", "sort", "namedResultSets",
     "negotiationModel"}
)
"""Init options we confirm when asked (GFS also confirms triggerResourceCtrl when asked and
ignores the PDU; namedResultSets only with more than one result set per association;
negotiationModel only when a charneg-3 proposal came with it)."""

SUPPORTED_VERSIONS: frozenset[int] = frozenset({1, 2, 3})
"""Protocol versions: 1 and 2 are the same protocol; 3 adds Close, Sort, Scan details..."""

PRESENT_SUCCESS, PRESENT_PARTIAL_2, PRESENT_PARTIAL_4, PRESENT_FAILURE = 0, 2, 4, 5
RESULT_SET_NONE = 3
SCAN_SUCCESS, SCAN_PARTIAL_5, SCAN_FAILURE = 0, 5, 6  # partial-5: the term list ended early
SORT_SUCCESS, SORT_FAILURE = 0, 2
DELETE_SUCCESS, DELETE_NOT_EXIST, DELETE_PREVIOUSLY_DELETED, DELETE_NOT_ALL = 0, 1, 2, 9

_RESPONSE_OVERHEAD = 64
"""Bytes counted for a Present/Search response's own fields when packing records."""


class State(Enum):
    """Association states (GFS: NEW, UP, DEAD; DEAD split into closing and closed)."""

    NEW = "new"
    UP = "up"
    CLOSING = "closing"
    CLOSED = "closed"


# --------------------------------------------------------------------------------------
# Inputs the gateway provides


class ResultSetLike(Protocol):
    """What the association needs of a catalogue result set: its name and hit count."""

    name: str

    @property
    def count(self) -> int:
        """The number of hits (the records themselves are the catalogue's business)."""


@dataclass(frozen=True)
class PeerIdentity:
    """A configured peer as the association sees it: Z39.50 credentials and term charset.

    @ivar address_allowed: whether this connection's source address is allowed for the
        peer (the gateway decides it from the peer's C{allow_from}).
    """

    name: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    charset: str = "utf-8"
    address_allowed: bool = True


MAX_QUEUED_REQUESTS = 64
"""Default for C{max_queued_requests}: requests a client may send without waiting (pipelined)
while one runs; past it the association answers what it owes, then sends Close(resources)."""


@dataclass(frozen=True)
class AssociationSettings:
    """Server-side limits and identity (from C{[z3950]} in the configuration)."""

    preferred_message_size: int = 1024 * 1024
    exceptional_record_size: int = 4 * 1024 * 1024
    max_result_sets: int = 10
    max_present_records: int = 100
    require_auth: bool = False
    peers: tuple[PeerIdentity, ...] = ()
    implementation_id: str = "Interlend"
    implementation_name: str = "Interlend"
    implementation_version: str = "Interlend"
    max_queued_requests: int = MAX_QUEUED_REQUESTS
    refusal: Diagnostic | None = None
    """When set, the Init is refused with this diagnostic (the connection is over the
    listener's caps), then the connection is dropped with reason resources."""


# --------------------------------------------------------------------------------------
# Actions


@dataclass(frozen=True)
class Send:
    """Write these bytes (one encoded PDU, named by its arm)."""

    data: bytes
    pdu: str


@dataclass(frozen=True)
class Disconnect:
    """Close the TCP connection once everything sent so far is written."""

    reason: CloseReason
    message: str | None = None


@dataclass(frozen=True)
class Report:
    """An operation finished: what to put in the audit log.

    @ivar outcome: C{"success"}, C{"diagnostic <code>"}, or a close reason name.
    @ivar query: the PQF text of a search or scan term, if any.
    @ivar detail: hit count, records returned, or the diagnostic with its addinfo.
    @ivar tag: whatever the caller passed to L{Association.receive} with the request this
        reports on (e.g. arrival time and size), so it can measure the exchange.
    """

    operation: str
    outcome: str
    query: str | None = None
    detail: str | None = None
    tag: Any = None


@dataclass(frozen=True)
class SearchCall:
    """Run C{CatalogueService.search}; resume with the L{ResultSetLike} or a L{Diagnostic}."""

    query: pqf.Query
    databases: tuple[str, ...]
    result_sets: Mapping[str, Any]
    name: str


@dataclass(frozen=True)
class FetchCall:
    """Run C{CatalogueService.fetch}; resume with the record list or a L{Diagnostic}."""

    result_set: Any
    start: int
    count: int
    syntax: oids.Oid | None
    element_set: str | None
    database: str
    charset: str | None = None
    """The codec records are to be sent in (negotiated), or None for UTF-8."""


@dataclass(frozen=True)
class ScanCall:
    """Run C{CatalogueService.scan}; resume with a list of L{ScanEntry} or a L{Diagnostic}."""

    term: pqf.Term
    databases: tuple[str, ...]
    count: int
    preferred_position: int
    step_size: int


@dataclass(frozen=True)
class SortCall:
    """Run C{CatalogueService.sort}; resume with the sorted result set or a L{Diagnostic}."""

    result_set: Any
    keys: tuple[SortKeyInfo, ...]
    name: str


CatalogueCall = SearchCall | FetchCall | ScanCall | SortCall
Action = Send | Disconnect | Report | SearchCall | FetchCall | ScanCall | SortCall

_Op = Generator[CatalogueCall, Any, list[Action]]

TRANSITIONS: dict[tuple[State, str], str] = {
    (State.NEW, "initRequest"): "_on_init",
    (State.UP, "initRequest"): "_on_reinit",
    (State.UP, "searchRequest"): "_on_search",
    (State.UP, "presentRequest"): "_on_present",
    (State.UP, "scanRequest"): "_on_scan",
    (State.UP, "sortRequest"): "_on_sort",
    (State.UP, "deleteResultSetRequest"): "_on_delete",
    (State.UP, "triggerResourceControlRequest"): "_on_ignore",
    (State.UP, "close"): "_on_close",
}
"""(state, PDU arm) -> handler. Pairs not listed fall to the state's default."""

_INFO_ARMS: dict[type, str] = {
    InitRequestInfo: "initRequest",
    SearchRequestInfo: "searchRequest",
    PresentRequestInfo: "presentRequest",
    ScanRequestInfo: "scanRequest",
    SortRequestInfo: "sortRequest",
    DeleteResultSetRequestInfo: "deleteResultSetRequest",
    CloseInfo: "close",
}


def negotiate_size(client: int, server: int) -> int:
    """GFS's rule: min(client, server); a client value <= 0 means "the server maximum"."""
    return server if client <= 0 else min(client, server)


def _same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two secrets (False when either is missing)."""
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _diag_text(diag: Diagnostic) -> str:
    addinfo = diag.addinfo.decode("utf-8", "replace") if isinstance(diag.addinfo, bytes) \
        else diag.addinfo
    return f"diagnostic {diag.condition}" + (f" ({addinfo})" if addinfo else "")


class Association:
    """One Z39.50 association, from Init to Close. Pure: it never performs I/O.

    @ivar state: the current L{State}.
    @ivar peer: the L{PeerIdentity} the Init authenticated as, or C{None} (anonymous).
    @ivar version: the protocol version in force (0 before Init).
    @ivar result_sets: live result sets by name, oldest first.
    """

    def __init__(self, settings: AssociationSettings | None = None,
                 size_of: Callable[[ResponseRecord], int] | None = None) -> None:
        """@param size_of: measures a record for packing (default: encode it once and send
            that encoding, L{measure_record}); tests inject simpler sizes."""
        self.settings = settings or AssociationSettings()
        self.state = State.NEW
        self.peer: PeerIdentity | None = None
        self.version = 0
        self.options: frozenset[str] = frozenset()
        self.preferred_message_size = self.settings.preferred_message_size
        self.exceptional_record_size = self.settings.exceptional_record_size
        self.decoder = TermDecoder()
        self.charset: CharsetChoice | None = None  # what charset negotiation agreed on
        self.record_charset: str | None = None  # records converted to this codec (else UTF-8)
        self.result_sets: OrderedDict[str, Any] = OrderedDict()
        self._databases: dict[str, tuple[str, ...]] = {}
        self._dropped: set[str] = set()
        self._running: _Op | None = None
        self._queue: deque[tuple[Request, Any]] = deque()
        self._tag: Any = None
        self._overflow = False  # the pipeline limit was passed: Close(resources) once drained
        self._size_of = size_of

    # -- public API -----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while an operation waits for a catalogue call to complete."""
        return self._running is not None

    def receive(self, request: Request, tag: Any = None) -> list[Action]:
        """Handle one request (as L{codec.decode_request} returns it); return what to do.

        C{tag} is opaque; it comes back in the L{Report} of this request.
        """
        if self.state in (State.CLOSING, State.CLOSED):
            return []
        if self._running is not None or self._overflow:
            if self._overflow or len(self._queue) >= self.settings.max_queued_requests:
                # Past the pipeline limit: this request and any later one are not read; the
                # queued ones are still answered, in order, then Close(resources).
                self._overflow = True
                return []
            self._queue.append((request, tag))
            return []
        return self._dispatch(request, tag) + self._drain()

    def resume(self, outcome: Any) -> list[Action]:
        """Feed the outcome of the pending catalogue call (its value or a L{Diagnostic})."""
        if self._running is None:
            raise RuntimeError("no catalogue call is pending")
        if self.state in (State.CLOSING, State.CLOSED):
            self._running = None
            return []
        return self._step(outcome) + self._drain()

    def timeout(self) -> list[Action]:
        """The idle timer fired: Close(lackOfActivity) (just drop before Init, as GFS)."""
        return self.abort(CloseReason.lackOfActivity)

    def shutdown(self) -> list[Action]:
        """The server is stopping: Close(shutdown)."""
        return self.abort(CloseReason.shutdown, "Server shutting down")

    def abort(self, reason: CloseReason, message: str | None = None) -> list[Action]:
        """End the association: a Close PDU when one is allowed (UP, version 3), then drop."""
        self._tag = None
        return self._abort(reason, message)

    def _abort(self, reason: CloseReason, message: str | None) -> list[Action]:
        if self.state in (State.CLOSING, State.CLOSED):
            return []
        actions: list[Action] = []
        if self.state is State.UP and self.version >= 3:
            actions.append(Send(encode_close(reason, diagnostic_information=message), "close"))
        self._enter_closing()
        actions.append(Report("close", reason.name, detail=message, tag=self._tag))
        actions.append(Disconnect(reason, message))
        return actions

    def connection_lost(self) -> None:
        """The transport is gone: nothing more will be sent."""
        self.state = State.CLOSED
        self._running = None
        self._queue.clear()

    # -- driving operations -----------------------------------------------------------------

    def _dispatch(self, request: Request, tag: Any) -> list[Action]:
        self._tag = tag
        arm = request.arm if isinstance(request, UnhandledRequest) else _INFO_ARMS[type(request)]
        handler = TRANSITIONS.get((self.state, arm))
        if handler is None:
            return self._unexpected(arm)
        if handler == "_on_ignore":
            return []
        self._running = getattr(self, handler)(request)
        return self._step(None)

    def _step(self, value: Any) -> list[Action]:
        assert self._running is not None
        try:
            call = self._running.send(value)
        except StopIteration as stop:
            self._running = None
            tag = self._tag  # Reports get the request's tag (built directly: replace() is slow)
            return [Report(a.operation, a.outcome, a.query, a.detail, tag)
                    if type(a) is Report else replace(a, tag=tag) if isinstance(a, Report)
                    else a for a in stop.value]
        except Z3950ProtocolError as exc:  # a response that would not encode
            self._running = None
            return self._abort(exc.close_reason, "Cannot encode response")
        return [call]

    def _drain(self) -> list[Action]:
        actions: list[Action] = []
        while self._queue and self._running is None and self.state is State.UP:
            actions += self._dispatch(*self._queue.popleft())
        if self._overflow and self._running is None and not self._queue:
            self._overflow = False
            actions += self.abort(CloseReason.resources,
                                  f"More than {self.settings.max_queued_requests} requests"
                                  " pipelined")
        return actions

    def _unexpected(self, arm: str) -> list[Action]:
        if self.state is State.NEW:
            return self._abort(CloseReason.protocolError, f"Missing InitRequest ({arm})")
        if self.state is State.UP:
            return self._abort(CloseReason.protocolError, f"Unexpected {arm}")
        return []

    def _enter_closing(self) -> None:
        self.state = State.CLOSING
        self._queue.clear()

    def _send(self, pdu: PDU) -> Send:
        return Send(encode_pdu(pdu), pdu_arm(pdu))

    @staticmethod
    def _send_search(**kwargs: Any) -> Send:
        return Send(encode_search_response(**kwargs), "searchResponse")

    @staticmethod
    def _send_present(**kwargs: Any) -> Send:
        return Send(encode_present_response(**kwargs), "presentResponse")

    # -- Init -------------------------------------------------------------------------------

    def _on_init(self, req: InitRequestInfo) -> _Op:
        s = self.settings
        versions = req.versions & SUPPORTED_VERSIONS
        self.version = max(versions, default=0)
        options = set(req.options & IMPLEMENTED_OPTIONS)
        if s.max_result_sets <= 1:
            options.discard("namedResultSets")
        other_info = []
        choice = (choose_charset(req.charset_proposal) if "negotiationModel" in options
                  else None)
        if choice is not None:
            other_info.append(negotiation_response(choice, req.charset_proposal))
        else:
            options.discard("negotiationModel")
        self.options = frozenset(options)
        self.preferred_message_size = negotiate_size(req.preferred_message_size,
                                                     s.preferred_message_size)
        self.exceptional_record_size = negotiate_size(req.exceptional_record_size,
                                                      s.exceptional_record_size)
        peer, refusal = ((None, s.refusal) if s.refusal is not None
                         else self._authenticate(req.authentication))
        if refusal is None and not versions:
            refusal = Diagnostic(Bib1.PERMANENT_SYSTEM_ERROR, "no common protocol version", v2=True)
        reply_versions, reply_options = tuple(sorted(versions)) or (1, 2, 3), tuple(
            sorted(self.options))
        response = dict(
            reference_id=req.reference_id, accepted=refusal is None,
            versions=reply_versions, options=reply_options,
            preferred_message_size=self.preferred_message_size,
            exceptional_record_size=self.exceptional_record_size,
            implementation_id=s.implementation_id, implementation_name=s.implementation_name,
            implementation_version=s.implementation_version,
            diagnostic=refusal, other_info=other_info if refusal is None else ())
        if refusal is not None:
            self._enter_closing()
            return [Send(encode_init_response(**response), "initResponse"),
                    Report("init", f"diagnostic {refusal.condition}",
                           detail=_diag_text(refusal)),
                    Disconnect(CloseReason.resources if refusal is s.refusal
                               else CloseReason.securityViolation, "Init refused")]
        self.peer = peer
        self.charset = choice
        self.record_charset = choice.codec if choice and choice.records and not choice.utf8 \
            else None
        if choice is not None and not choice.utf8:
            self.decoder = TermDecoder(choice.codec, None)  # single-byte or MARC-8: total
        else:
            fallback = peer.charset if peer and peer.charset.lower().replace("_", "-") not in (
                "utf-8", "utf8") else "latin-1"
            self.decoder = TermDecoder("utf-8", fallback)
        self.state = State.UP
        if other_info or not _cacheable(req.reference_id):
            reply = encode_init_response(**response)
        else:
            reply = _accepted_init_response(
                req.reference_id, reply_versions, reply_options, self.preferred_message_size,
                self.exceptional_record_size, s.implementation_id, s.implementation_name,
                s.implementation_version)
        return [Send(reply, "initResponse"),
                Report("init", "success", detail=(
            f"v{self.version} options {' '.join(sorted(self.options))}"))]
        yield  # a generator, like every handler

    def _on_reinit(self, req: InitRequestInfo) -> _Op:
        """A second Init on a live association: re-initialisation, as YAZ GFS does it.

        The association starts over (result sets deleted, credentials, options, sizes and
        character set negotiated again); a refused re-Init ends the association like a refused
        first Init.
        """
        dropped = len(self.result_sets)
        self.result_sets.clear()
        self._databases.clear()
        self._dropped.clear()
        self.peer = None
        self.state = State.NEW
        actions = yield from self._on_init(req)
        return [Report(a.operation, a.outcome, a.query,
                       f"re-initialisation ({dropped} result sets deleted): {a.detail}")
                if isinstance(a, Report) else a for a in actions]

    def _authenticate(self, auth: Authentication | None
                      ) -> tuple[PeerIdentity | None, Diagnostic | None]:
        """The peer these credentials belong to, or the Init diagnostic that refuses them."""
        if auth is None or auth.kind == "anonymous":
            if self.settings.require_auth:
                return None, Diagnostic(Bib1.BAD_USERID_OR_PASSWORD, "authentication required",
                                        v2=True)
            return None, None
        if auth.kind not in ("open", "idPass"):
            return None, Diagnostic(Bib1.AUTHENTICATION_SYSTEM_ERROR,
                                    f"unsupported idAuthentication {auth.kind}", v2=True)
        for peer in self.settings.peers:
            if peer.user is not None and _same(peer.user, auth.user):
                if not _same(peer.password, auth.password):
                    break
                if not peer.address_allowed:
                    return None, Diagnostic(Bib1.BLOCKED_NETWORK_ADDRESS, None, v2=True)
                return peer, None
        return None, Diagnostic(Bib1.BAD_USERID_OR_PASSWORD, None, v2=True)

    # -- Search -----------------------------------------------------------------------------

    def _on_search(self, req: SearchRequestInfo) -> _Op:
        query_text = pqf.to_pqf(req.query) if req.query is not None else None
        name = req.result_set_name
        diag: Diagnostic | None = None
        if req.query is None:
            diag = (Diagnostic(Bib1.UNSUPPORTED_SEARCH, req.query_error, v2=True)
                    if req.query_type in ("type-1", "type-101")
                    else Diagnostic(Bib1.QUERY_TYPE_UNSUPPORTED, req.query_type, v2=True))
        elif name != "default" and self.settings.max_result_sets <= 1:
            diag = Diagnostic(Bib1.RESULT_SET_NAMING_UNSUPPORTED, name, v2=True)
        elif not req.replace_indicator and name in self.result_sets:
            diag = Diagnostic(Bib1.RESULT_SET_EXISTS, name, v2=True)
        result: Any = None
        if diag is None:
            assert req.query is not None
            result = yield SearchCall(req.query, req.database_names, dict(self.result_sets), name)
            if isinstance(result, Diagnostic):
                diag = result
        if diag is not None:
            return [self._send_search(
                reference_id=req.reference_id, result_count=0, search_status=False,
                next_result_set_position=0, result_set_status=RESULT_SET_NONE,
                diagnostics=[diag]),
                Report("search", f"diagnostic {diag.condition}", query_text, _diag_text(diag))]
        self._store(name, result, req.database_names)
        hits = result.count
        if hits <= req.small_set_upper_bound:
            wanted, esn = hits, req.small_set_element_set_name
        elif hits < req.large_set_lower_bound:
            wanted, esn = min(req.medium_set_present_number, hits), \
                req.medium_set_element_set_name
        else:
            wanted, esn = 0, None
        wanted = max(0, wanted)
        if wanted == 0:
            return [self._send_search(
                reference_id=req.reference_id, result_count=hits,
                next_result_set_position=1 if hits else 0),
                Report("search", "success", query_text, f"{hits} hits")]
        limited = min(wanted, self.settings.max_present_records)
        fetched = yield FetchCall(result, 1, limited, req.preferred_record_syntax, esn,
                                  self._database(name), self.record_charset)
        if isinstance(fetched, Diagnostic):
            return [self._send_search(
                reference_id=req.reference_id, result_count=hits, next_result_set_position=1,
                present_status=PRESENT_FAILURE, diagnostics=[fetched]),
                Report("search", "success", query_text,
                       f"{hits} hits; records: {_diag_text(fetched)}")]
        records, status, next_position = self._pack(list(fetched)[:limited], 1, wanted)
        return [self._send_search(
            reference_id=req.reference_id, result_count=hits, records=records,
            next_result_set_position=next_position, present_status=status),
            Report("search", "success", query_text, f"{hits} hits, {len(records)} records")]

    def _store(self, name: str, result: Any, databases: Sequence[str]) -> None:
        """Keep a result set under C{name}; past the limit the oldest set is dropped."""
        self.result_sets.pop(name, None)
        while len(self.result_sets) >= max(1, self.settings.max_result_sets):
            oldest, _ = self.result_sets.popitem(last=False)
            self._databases.pop(oldest, None)
            self._dropped.add(oldest)
        self.result_sets[name] = result
        self._databases[name] = tuple(databases)
        self._dropped.discard(name)

    def _missing_result_set(self, name: str) -> Bib1:
        """Why result set C{name} is not there: deleted by us to stay within
        C{max_result_sets}, or it never existed (or the client deleted it)."""
        return Bib1.RESULT_SET_DELETED if name in self._dropped else Bib1.RESULT_SET_DOES_NOT_EXIST

    def _database(self, name: str) -> str:
        databases = self._databases.get(name) or ("Default",)
        return databases[0]

    # -- Present ----------------------------------------------------------------------------

    def _on_present(self, req: PresentRequestInfo) -> _Op:
        name = req.result_set_id
        result = self.result_sets.get(name)
        diag: Diagnostic | None = None
        hits = 0
        if result is None:
            diag = Diagnostic(self._missing_result_set(name), name, v2=True)
        else:
            hits = result.count
            if req.start < 1 or req.start > hits or req.count < 0:
                diag = Diagnostic(Bib1.PRESENT_OUT_OF_RANGE, str(req.start), v2=True)
            elif req.start + req.count - 1 > hits:
                diag = Diagnostic(Bib1.PRESENT_OUT_OF_RANGE, str(hits + 1), v2=True)
        detail = f"{name} {req.start}+{req.count}"
        if diag is None and req.count == 0:
            return [self._send_present(reference_id=req.reference_id,
                                       next_result_set_position=req.start),
                    Report("present", "success", None, f"{detail}: 0 records")]
        if diag is None:
            syntax = req.preferred_record_syntax or (
                req.record_syntaxes[0] if req.record_syntaxes else None)
            limited = min(req.count, self.settings.max_present_records)
            fetched = yield FetchCall(result, req.start, limited, syntax,
                                      req.element_set_name, self._database(name),
                                      self.record_charset)
            if isinstance(fetched, Diagnostic):
                diag = fetched
        if diag is not None:
            return [self._send_present(
                reference_id=req.reference_id, present_status=PRESENT_FAILURE,
                next_result_set_position=0, diagnostics=[diag]),
                Report("present", f"diagnostic {diag.condition}", None,
                       f"{detail}: {_diag_text(diag)}")]
        records, status, next_position = self._pack(list(fetched)[:limited], req.start,
                                                    req.count)
        return [self._send_present(
            reference_id=req.reference_id, present_status=status,
            next_result_set_position=next_position, records=records),
            Report("present", "success", None,
                   f"{detail}: {len(records)} records, status {status}")]

    def _pack(self, entries: list[Any], start: int, requested: int
              ) -> tuple[list[Any], int, int]:
        """Fit records into the preferred message size, as GFS C{pack_records} does.

        Stop before a normal-sized record that no longer fits (partial-2); a record larger
        than the message but within the exceptional record size goes alone, or becomes
        surrogate diagnostic 16 when more than one record was asked for; a record larger
        than the exceptional record size becomes surrogate diagnostic 17. Fewer records
        than requested because of C{max_present_records} gives partial-4.

        @return: (entries to send, presentStatus, nextResultSetPosition)
        """
        pms, ers = self.preferred_message_size, self.exceptional_record_size
        total = _RESPONSE_OVERHEAD
        out: list[Any] = []
        status = PRESENT_SUCCESS
        for index, entry in enumerate(entries):
            if isinstance(entry, ResponseRecord):
                size, entry = self._measure(entry)
                if size > ers:
                    entry = SurrogateDiagnostic(
                        Diagnostic(Bib1.RECORD_EXCEEDS_MAXIMUM_RECORD_SIZE, None, v2=True),
                        entry.database)
                elif total + size > pms:
                    if index > 0 and size <= pms:
                        status = PRESENT_PARTIAL_2
                        break
                    if requested > 1 and size > pms:
                        entry = SurrogateDiagnostic(
                            Diagnostic(Bib1.RECORD_EXCEEDS_PREFERRED_MESSAGE_SIZE, None, v2=True),
                            entry.database)
                    else:
                        total += size
                else:
                    total += size
            if isinstance(entry, SurrogateDiagnostic):
                total += 32
            out.append(entry)
        if status == PRESENT_SUCCESS and len(out) < requested:
            status = PRESENT_PARTIAL_4
        return out, status, start + len(out)

    def _measure(self, record: ResponseRecord) -> tuple[int, ResponseRecord | EncodedRecord]:
        """The record's size for packing, and what to send for it."""
        if self._size_of is not None:
            return self._size_of(record), record
        return measure_record(record)

    # -- Scan, Sort, Delete -------------------------------------------------------------------

    def _on_scan(self, req: ScanRequestInfo) -> _Op:
        query_text = pqf.to_pqf(pqf.Query(req.term)) if req.term is not None else None
        diag: Diagnostic | None = None
        entries: Any = ()
        if req.term is None:
            diag = Diagnostic(Bib1.MALFORMED_QUERY, req.term_error, v2=True)
        else:
            count = max(0, min(req.number_of_terms, self.settings.max_present_records))
            position = req.preferred_position if req.preferred_position is not None else 1
            entries = yield ScanCall(_in_attribute_set(req.term, req.attribute_set),
                                     req.database_names, count, position, req.step_size or 0)
            if isinstance(entries, Diagnostic):
                diag = entries
        if diag is not None:
            return [self._send(scan_response(reference_id=req.reference_id,
                                             scan_status=SCAN_FAILURE, diagnostics=[diag])),
                    Report("scan", f"diagnostic {diag.condition}", query_text, _diag_text(diag))]
        found = getattr(entries, "position_of_term", None)
        term_position = int(found) if found is not None else (req.preferred_position or 1)
        status = SCAN_PARTIAL_5 if getattr(entries, "ended_early", False) else SCAN_SUCCESS
        entries = list(entries)
        if self.charset is not None and not self.charset.utf8:
            entries = [_in_charset(e, self.charset.codec) for e in entries]
        return [self._send(scan_response(
            reference_id=req.reference_id, scan_status=status, entries=entries,
            position_of_term=term_position if entries else None,
            step_size=req.step_size or 0)),
            Report("scan", "success", query_text, f"{len(entries)} terms")]

    def _on_sort(self, req: SortRequestInfo) -> _Op:
        diag: Diagnostic | None = None
        detail = f"{'+'.join(req.input_result_sets)} -> {req.sorted_result_set}"
        missing = [n for n in req.input_result_sets if n not in self.result_sets]
        result: Any = None
        if len(req.input_result_sets) != 1:
            diag = Diagnostic(Bib1.SORT_TOO_MANY_INPUT_RESULTS, str(len(req.input_result_sets)),
                              v2=True)
        elif missing:
            diag = Diagnostic(self._missing_result_set(missing[0]), missing[0],
                              v2=True)
        elif req.sorted_result_set != "default" and self.settings.max_result_sets <= 1:
            diag = Diagnostic(Bib1.RESULT_SET_NAMING_UNSUPPORTED, req.sorted_result_set, v2=True)
        else:
            source = req.input_result_sets[0]
            result = yield SortCall(self.result_sets[source], req.keys, req.sorted_result_set)
            if isinstance(result, Diagnostic):
                diag = result
            else:
                self._store(req.sorted_result_set, result, self._databases.get(source, ()))
        if diag is not None:
            return [self._send(sort_response(reference_id=req.reference_id,
                                             sort_status=SORT_FAILURE, diagnostics=[diag])),
                    Report("sort", f"diagnostic {diag.condition}", None,
                           f"{detail}: {_diag_text(diag)}")]
        return [self._send(sort_response(reference_id=req.reference_id,
                                         sort_status=SORT_SUCCESS)),
                Report("sort", "success", None, detail)]

    def _on_delete(self, req: DeleteResultSetRequestInfo) -> _Op:
        if req.delete_all:
            count = len(self.result_sets)
            self.result_sets.clear()
            self._databases.clear()
            return [self._send(delete_result_set_response(reference_id=req.reference_id)),
                    Report("delete", "success", None, f"all ({count})")]
        statuses: list[tuple[str, int]] = []
        for name in req.result_sets:
            if name in self.result_sets:
                del self.result_sets[name]
                self._databases.pop(name, None)
                statuses.append((name, DELETE_SUCCESS))
            elif name in self._dropped:
                statuses.append((name, DELETE_PREVIOUSLY_DELETED))
            else:
                statuses.append((name, DELETE_NOT_EXIST))
        failed = [st for _, st in statuses if st != DELETE_SUCCESS]
        if not failed:
            overall = DELETE_SUCCESS
        elif len(statuses) == 1:
            overall = failed[0]
        else:
            overall = DELETE_NOT_ALL
        return [self._send(delete_result_set_response(
            reference_id=req.reference_id, status=overall, list_statuses=statuses)),
            Report("delete", "success" if overall == DELETE_SUCCESS else f"status {overall}",
                   None, " ".join(f"{n}={st}" for n, st in statuses))]
        yield  # a generator, like every handler

    # -- Close ------------------------------------------------------------------------------

    def _on_close(self, req: CloseInfo) -> _Op:
        """Client Close: answer Close(finished) whatever the version (as GFS), then drop."""
        reply = (_finished_close(req.reference_id) if _cacheable(req.reference_id)
                 else _encode_finished_close(req.reference_id))
        self._enter_closing()
        return [Send(reply, "close"),
                Report("close", "success", None, f"client reason {req.reason}"),
                Disconnect(CloseReason.finished, "Association terminated by client")]
        yield  # a generator, like every handler


def _in_charset(entry: Any, codec: str) -> Any:
    """A scan entry with its terms encoded in the negotiated character set."""
    if not isinstance(entry, ScanEntry):
        return entry
    return replace(entry, term=_encoded(entry.term, codec),
                   display_term=_encoded(entry.display_term, codec))


def _encoded(text: Any, codec: str) -> Any:
    return text.encode(codec, NCR_ERRORS) if isinstance(text, str) else text


def _in_attribute_set(term: pqf.Term, attribute_set: oids.Oid | None) -> pqf.Term:
    """The scan term with the ScanRequest's C{attributeSet} made explicit on every attribute
    that names no set of its own (they are in the request's set, as a query's attributes are in
    the query's set), so the catalogue refuses a set it does not support (121)."""
    if attribute_set is None or tuple(attribute_set) == oids.BIB1_ATTRSET:
        return term
    return replace(term, attributes=tuple(
        a if a.attrset is not None else a._replace(attrset=tuple(attribute_set))
        for a in term.attributes))


CACHED_REFERENCE_ID = 64
"""Replies kept for reuse (Init, Close) echo a referenceId of at most this many bytes: a client
cannot fill the caches with large ones."""


def _cacheable(reference_id: bytes | None) -> bool:
    return reference_id is None or len(reference_id) <= CACHED_REFERENCE_ID


@lru_cache(maxsize=256)
def _accepted_init_response(reference_id: bytes | None, versions: tuple[int, ...],
                            options: tuple[str, ...], preferred_message_size: int,
                            exceptional_record_size: int, implementation_id: str,
                            implementation_name: str, implementation_version: str) -> bytes:
    """An accepted InitResponse without charset negotiation: associations ask for the same few
    versions, options and sizes, so each combination is encoded once."""
    return encode_init_response(
        reference_id=reference_id, accepted=True, versions=versions, options=options,
        preferred_message_size=preferred_message_size,
        exceptional_record_size=exceptional_record_size, implementation_id=implementation_id,
        implementation_name=implementation_name, implementation_version=implementation_version,
        diagnostic=None, other_info=())


def _encode_finished_close(reference_id: bytes | None) -> bytes:
    """The answer to a client's Close."""
    return encode_close(CloseReason.finished, reference_id=reference_id,
                        diagnostic_information="Association terminated by client")


_finished_close = lru_cache(maxsize=64)(_encode_finished_close)
"""The answer to a client's Close (the same on every association): encoded once."""


@lru_cache(maxsize=1)
def _empty_present_size() -> int:
    return len(encode_pdu(present_response(next_result_set_position=1)))


def measure_record(record: ResponseRecord) -> tuple[int, ResponseRecord | EncodedRecord]:
    """Bytes one record adds to a Present response, and what to put in the response: the
    encoding made to measure it (sent as is, not encoded twice) when the fast path applies."""
    encoded = encode_record(record)
    if encoded is not None:
        return encoded.size, encoded
    return encoded_record_size(record), record


def encoded_record_size(record: ResponseRecord) -> int:
    """Bytes one record adds to a Present response (encodes it alone and measures)."""
    encoded = encode_record(record)
    if encoded is not None:
        return encoded.size
    full = len(encode_pdu(present_response(next_result_set_position=1, records=[record])))
    return full - _empty_present_size()
