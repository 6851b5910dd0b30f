# -*- test-case-name: tests.gateway.test_ncip_http,tests.gateway.ncip.test_exactly_once -*-
"""The NCIP service: parse, attribute to a peer, dispatch, and map every failure to a Problem.

This is the one place where NCIP failures become replies: a body that cannot be parsed gets a
message-level ``Invalid Message Syntax Error``; a request that cannot be attributed gets
``Unknown Agency`` or ``Agency Authentication Failed`` and nothing is done; a known domain error
(:class:`NCIPProblem`) is written in the request's dialect; anything unexpected is logged and
answered with ``Temporary Processing Failure``. Services not handled yet get ``Unsupported
Service``. Version discovery (an ``NCIPVersionMessage``, which has no room for credentials) is
answered before agency authentication, source networks still applying. The reply is always NCIP
bytes: the HTTP layer sends it with status 200.
"""

from __future__ import annotations

import functools
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from gateway.audit import AuditEntry, AuditLog
from gateway.config import Config, Peer
from gateway.domain import model as domain
from gateway.listeners.ncip_http import NcipRequestContext
from gateway.ncip.peers import Credentials, PeerError, admit_version_lookup, attribute, identify
from gateway.storage.store import StoreError
from protocols.ncip.dialect import Dialect, PrefixStyle
from protocols.ncip.messages import Envelope
from protocols.ncip.parser import parse_message, parse_request
from protocols.ncip.problems import NCIPProblem, NCIPSyntaxError, ProblemType
from protocols.ncip.responses import LookupVersionResponse, NCIPResponse
from protocols.ncip.safexml import declares_latin1, needs_fallback
from protocols.ncip.writer import render_problem, render_response

if TYPE_CHECKING:  # prometheus_client stays out of a worker process's imports
    from gateway.admin.metrics import Metrics

log = Logger()
T = TypeVar("T")

# Known domain errors and the Problem each becomes (the most specific class first).
DOMAIN_PROBLEMS: tuple[tuple[type[domain.CirculationError], ProblemType], ...] = (
    (domain.UnknownPatron, ProblemType.UNKNOWN_USER),
    (domain.PatronAuthenticationFailed, ProblemType.USER_AUTHENTICATION_FAILED),
    (domain.PatronBlocked, ProblemType.USER_BLOCKED),
    (domain.UnknownItem, ProblemType.UNKNOWN_ITEM),
    (domain.UnknownRecord, ProblemType.UNKNOWN_ITEM),
    (domain.ItemNotCheckedOut, ProblemType.ITEM_NOT_CHECKED_OUT),
    (domain.MaximumRenewalsExceeded, ProblemType.MAXIMUM_RENEWALS_EXCEEDED),
    (domain.ItemNotRenewable, ProblemType.ITEM_NOT_RENEWABLE),
    (domain.ItemNotAvailable, ProblemType.RESOURCE_CANNOT_BE_PROVIDED),
    (domain.ItemAlreadyCheckedOut, ProblemType.USER_INELIGIBLE_TO_CHECK_OUT_THIS_ITEM),
    (domain.UnknownRequest, ProblemType.UNKNOWN_REQUEST),
    (domain.RequestAlreadyProcessed, ProblemType.REQUEST_ALREADY_PROCESSED),
    (domain.DuplicateRequest, ProblemType.DUPLICATE_REQUEST),
    (domain.NeededDataMissing, ProblemType.NEEDED_DATA_MISSING),
    (domain.NotTemporaryItem, ProblemType.ITEM_ACCESS_DENIED),
    (domain.ServiceUnsupported, ProblemType.UNSUPPORTED_SERVICE),
)


def problem_for(error: domain.CirculationError) -> NCIPProblem:
    """The NCIP Problem for a known domain error."""
    for cls, problem_type in DOMAIN_PROBLEMS:
        if isinstance(error, cls):
            detail = str(error) if isinstance(error, domain.ConflictingRequest) else None
            return NCIPProblem(problem_type, element=error.element, value=error.value,
                               detail=detail)
    return NCIPProblem(ProblemType.TEMPORARY_PROCESSING_FAILURE)


def identifier_value(identifier: Any) -> str | None:
    """The value of an ItemId/RequestId/UserId, stripped; None when absent or blank."""
    value = getattr(identifier, "value", None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _patron_identifier(message: Any) -> str | None:
    """The patron a message is about (UserId, or the identifier in AuthenticationInput)."""
    if message is None:
        return None
    user = identifier_value(getattr(message, "user_id", None))
    if user is None and hasattr(message, "authentication"):
        user = message.authentication("Barcode Id", "Barcode", "User Id", "Username")
    return user


@functools.lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _credentials(envelope: Envelope, context: NcipRequestContext) -> Credentials:
    """What a parsed request offers to identify and authenticate its sender."""
    header = envelope.message.header
    return Credentials(
        remote_host=context.remote_host,
        from_agency=header.from_agency.value if header and header.from_agency else None,
        from_system=header.from_system.value if header and header.from_system else None,
        application_profile=str(header.application_profile)
        if header and header.application_profile else None,
        agency_secret=header.from_agency_authentication if header else None,
        url_token=context.url_token, bearer_token=context.bearer_token)


def audit_notes(envelope: Envelope | None) -> str | None:
    """What the parser repaired or flagged in a request, for its audit row (None: nothing)."""
    return ",".join(envelope.notes) if envelope is not None and envelope.notes else None


# A peer's namespace_style as the writer takes it: None answers in the request's own style.
PREFIX_STYLES: dict[str, PrefixStyle | None] = {
    "request": None, "ns1": PrefixStyle.NS1, "default": PrefixStyle.DEFAULT,
    "none": PrefixStyle.NONE}


class ParsedTree:
    """The request's parsed tree, handed to the audit log once (to redact in place, instead of
    parsing the body again). ``take()`` gives it to the first caller only; later callers get
    None and redact from the bytes -- a tree already redacted is never redacted twice."""

    __slots__ = ("_root",)

    def __init__(self, root: Any = None) -> None:
        self._root = root

    def take(self) -> Any:
        root, self._root = self._root, None
        return root


@dataclass(frozen=True)
class NcipCall:
    """One parsed, attributed request, as a service handler receives it."""

    envelope: Envelope
    peer: Peer
    context: NcipRequestContext
    body: bytes
    tree: ParsedTree | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Reply:
    """A reply as written: its bytes, the tree they were serialized from (for the audit log;
    None when not at hand) and whether its audit row already committed with the change it
    reports (exactly-once workflows)."""

    body: bytes
    tree: Any = None
    audited: bool = False


Handler = Callable[[NcipCall], Awaitable[NCIPResponse | Reply]]


def write_reply(response: NCIPResponse, envelope: Envelope, peer: Peer, agency: str) -> Reply:
    """A response written in the request's dialect and the peer's prefix style: the one place
    a reply is rendered, wherever it is answered from."""
    tree: list[Any] = []
    body = render_response(response, envelope, prefix_style=PREFIX_STYLES[peer.namespace_style],
                           local_agency=agency, keep_tree=tree)
    return Reply(body, tree[0] if len(tree) == 1 else None)


def write_problem(problem: NCIPProblem, envelope: Envelope | None, peer: Peer | None,
                  agency: str) -> Reply:
    """A Problem written in the request's dialect (and the peer's style when attributed)."""
    tree: list[Any] = []
    style = PREFIX_STYLES[peer.namespace_style] if peer is not None else None
    body = render_problem(problem, envelope, prefix_style=style, local_agency=agency,
                          keep_tree=tree)
    return Reply(body, tree[0] if len(tree) == 1 else None)


def audit_entry(audit: AuditLog, *, body: bytes, reply: bytes, outcome: str,
                envelope: Envelope | None, peer: Peer | None, remote: str, duration_us: int,
                request_body: str | None, response_body: str | None, time: str,
                response: NCIPResponse | None = None,
                refs: Callable[[str | None], str | None] | None = None) -> AuditEntry:
    """The audit row of one NCIP exchange: the one place it is built (``response``: the
    response a workflow answered, to name the item and our request id it gave; ``refs``: the
    exchange's :meth:`AuditLog.patron_refs`)."""
    message = envelope.message if envelope is not None else None
    item = getattr(response, "item_id", None) or getattr(message, "item_id", None)
    our_request = (identifier_value(getattr(response, "request_id", None))
                   if envelope is not None and envelope.service == "RequestItem" else None)
    return AuditEntry(
        protocol="ncip", operation=envelope.service if envelope else "unparseable",
        outcome=outcome, peer=peer.name if peer else None, remote=remote,
        dialect=envelope.dialect.name.lower() if envelope else None,
        broker_request_id=identifier_value(getattr(message, "request_id", None)),
        our_request_id=our_request, item_barcode=identifier_value(item),
        patron_hash=(refs or audit.patron_ref)(_patron_identifier(message)),
        duration_us=duration_us, request_size=len(body), response_size=len(reply),
        request_body=request_body, response_body=response_body, notes=audit_notes(envelope),
        time=time)


def run_inline(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """``Deferred.fromCoroutine(coro)``, with the coroutine's first step run here: one that
    awaits nothing unfired (a read served inline) gives an already fired Deferred without
    Twisted's coroutine driver; one that waits is handed to that driver where it stands."""
    try:
        pending = coro.send(None)
    except StopIteration as done:
        return succeed(done.value)
    except BaseException:
        return fail()
    return Deferred.fromCoroutine(_resumed(coro, pending))


@types.coroutine
def _resumed(coro: Coroutine[Any, Any, T], pending: Any) -> Generator[Any, Any, T]:
    """The rest of a started coroutine, for Twisted's driver: what it awaits is passed up,
    what comes back (a result or an exception) is passed down."""
    while True:
        try:
            value = yield pending
        except BaseException as error:
            try:
                pending = coro.throw(error)
            except StopIteration as done:
                return cast(T, done.value)
        else:
            try:
                pending = coro.send(value)
            except StopIteration as done:
                return cast(T, done.value)


class ConfiguredHost(Protocol):
    """A gateway's configuration, read at each request (a reload replaces it)."""

    @property
    def config(self) -> Config:
        """The configuration in force."""


class NcipHost(ConfiguredHost, Protocol):
    """What the NCIP service reads from the gateway (its composition root)."""

    @property
    def audit(self) -> AuditLog:
        """The audit log."""

    @property
    def metrics(self) -> Metrics:
        """The metrics registry."""


@dataclass(frozen=True)
class _Answer:
    """What :meth:`NcipService._answer` made of a request: the reply, its outcome ("success" or
    the Problem type), and what was understood of the request."""

    reply: Reply
    outcome: str
    envelope: Envelope | None = None
    peer: Peer | None = None
    tree: ParsedTree | None = None


class NcipService:
    """Turns NCIP request bodies into reply bodies for the gateway's configured peers."""

    def __init__(self, gateway: NcipHost) -> None:
        self.gateway = gateway
        self.handlers: dict[str, Handler] = {}
        self._charsets: tuple[str, ...] = ()  # the peers' fallback charsets, per configuration
        self._charsets_for: Any = None
        self.audit_after: Callable[[Callable[[], None]], None] | None = None
        """Where the building of an exchange's audit row (body redaction) goes when its
        reply commits nothing (lookups, Problems): a worker runs it after the reply has
        left (:class:`gateway.workers.after_replies.AfterReplies`); None: at once."""

    def handle(self, body: bytes, context: NcipRequestContext) -> Deferred[bytes]:
        """The reply to one request body (never fails: errors are written as Problems).
        A request answered without waiting (a read served inline) comes back already fired."""
        return run_inline(self._handle(body, context))

    async def _handle(self, body: bytes, context: NcipRequestContext) -> bytes:
        started = time.monotonic()
        answer = await self._answer(body, context)
        elapsed = time.monotonic() - started
        reply = answer.reply
        if not reply.audited:
            duration_us = int(elapsed * 1_000_000)
            if self.audit_after is None:
                self._audit(body, answer, context, duration_us)
            else:  # stamped now, built once the reply is out
                self.audit_after(functools.partial(self._audit, body, answer, context,
                                                   duration_us, self.gateway.audit.now()))
        envelope = answer.envelope
        service = envelope.service if envelope and envelope.service in self.handlers else "other"
        self.gateway.metrics.observe("ncip", service,
                                     answer.peer.name if answer.peer else None,
                                     answer.outcome, elapsed)
        return reply.body

    async def _answer(self, body: bytes, context: NcipRequestContext) -> _Answer:
        """The reply, its outcome ("success" or the Problem type), and what was understood."""
        config = self.gateway.config
        agency = config.gateway.agency_id
        try:
            envelope, root = self._parse(body, context)
        except NCIPSyntaxError as e:
            log.info("NCIP message from {host} refused: {reason}", host=context.remote_host,
                     reason=e.reason)
            return _Answer(write_problem(e, None, None, agency), e.problem_type)
        tree = ParsedTree(root)
        creds = _credentials(envelope, context)
        version_lookup = envelope.dialect is Dialect.VERSION
        try:
            peer = (admit_version_lookup(config.peers, creds) if version_lookup
                    else attribute(config.peers, creds))
        except PeerError as e:
            from gateway.admin.metrics import claimed_peer  # refusals only: see TYPE_CHECKING

            log.warn("NCIP {service} from {host} refused: {reason}", service=envelope.service,
                     host=context.remote_host, reason=e.reason)
            self.gateway.metrics.auth_failure(claimed_peer(config.peers, creds),
                                              "unknown" if e.unknown else "refused")
            problem = NCIPProblem(
                ProblemType.UNKNOWN_AGENCY if e.unknown
                else ProblemType.AGENCY_AUTHENTICATION_FAILED,
                element="FromAgencyId", value=e.value if e.unknown else None)
            return _Answer(write_problem(problem, envelope, None, agency),  # in its own style
                           problem.problem_type, envelope, tree=tree)
        if version_lookup:
            # Version discovery, answered in its own form (ncip_version.xsd), before any
            # agency authentication: that form has no place for credentials.
            reply = render_response(self.version_response(), envelope, local_agency=agency)
            return _Answer(Reply(reply), "success", envelope, peer, tree)
        assert peer is not None
        try:
            handler = self.handlers.get(envelope.service)
            if handler is None:
                raise NCIPProblem(ProblemType.UNSUPPORTED_SERVICE, element=envelope.service)
            response = await handler(NcipCall(envelope, peer, context, body, tree))
            answered = (response if isinstance(response, Reply)
                        else write_reply(response, envelope, peer, agency))
            return _Answer(answered, "success", envelope, peer, tree)
        except NCIPProblem as raised:
            problem = raised  # an ``as`` name is unbound when its except block ends
        except domain.CirculationError as error:
            problem = problem_for(error)
        except StoreError as error:
            # The database is unavailable (full, read-only, locked): an operational condition
            # the store has already logged and /healthz reports -- one line here, no traceback
            # per request while brokers keep retrying.
            log.error("NCIP {service} from peer {peer} not done: {error}",
                      service=envelope.service, peer=peer.name, error=str(error))
            problem = NCIPProblem(ProblemType.TEMPORARY_PROCESSING_FAILURE)
        except Exception:
            log.failure("NCIP {service} from peer {peer} failed", service=envelope.service,
                        peer=peer.name)
            problem = NCIPProblem(ProblemType.TEMPORARY_PROCESSING_FAILURE)
        return _Answer(write_problem(problem, envelope, peer, agency), problem.problem_type,
                       envelope, peer, tree)

    def _parse(self, body: bytes, context: NcipRequestContext) -> tuple[Envelope, Any]:
        """The request parsed; a body that is not what it declares (ILLiad's Windows-1252 sent
        as UTF-8) is decoded with the fallback charset of the peer it then turns out to come
        from -- only that peer's, so one peer's setting never rewrites another's requests."""
        config = self.gateway.config
        limit, tz = config.ncip.max_body_size, _zone(config.gateway.timezone)
        error: NCIPSyntaxError | None = None
        try:
            parsed = parse_request(body, max_bytes=limit, tz=tz)
        except NCIPSyntaxError as e:
            error = e
        if self._charsets_for is not config:
            self._charsets_for = config
            self._charsets = tuple(dict.fromkeys(
                p.fallback_charset for p in config.peers if p.fallback_charset))
        if self._charsets and (error is not None or declares_latin1(body)) \
                and needs_fallback(body):
            for charset in self._charsets:
                try:
                    repaired = parse_request(body, max_bytes=limit, tz=tz,
                                             fallback_charset=charset)
                    peer = identify(config.peers, _credentials(repaired[0], context))
                except (NCIPSyntaxError, PeerError):
                    continue
                if peer.fallback_charset == charset:
                    log.info("NCIP body from peer {peer} decoded as {charset}: not the"
                             " encoding it declares", peer=peer.name, charset=charset)
                    return repaired
        if error is not None:
            raise error
        return parsed

    def version_response(self) -> LookupVersionResponse:
        """The NCIP versions we speak and every service we answer (LookupVersion)."""
        return LookupVersionResponse(services=tuple(sorted(self.handlers)))

    def _audit(self, body: bytes, answer: _Answer, context: NcipRequestContext,
               duration_us: int, stamp: str | None = None) -> None:
        audit = self.gateway.audit
        reply = answer.reply
        refs = audit.patron_refs()
        if answer.peer is None:
            # Unparseable, unattributed or unauthenticated: anyone can send these, so no body
            # is kept (the size is) and each source address gets a bounded number of rows.
            if not audit.allow_refused(context.remote_host):
                return
            request_body = response_body = None
        else:
            request_body, response_body = audit.ncip_bodies(
                body, reply.body, request_tree=answer.tree.take() if answer.tree else None,
                response_tree=reply.tree, refs=refs)
        audit.record_soon(audit_entry(
            audit, body=body, reply=reply.body, outcome=answer.outcome,
            envelope=answer.envelope, peer=answer.peer, remote=context.remote_host,
            duration_us=duration_us, request_body=request_body, response_body=response_body,
            # stamped as record() would, without copying the entry to stamp it there
            time=stamp or audit.now(), refs=refs))

    def timeout_reply(self, body: bytes, context: NcipRequestContext) -> bytes:
        """The reply when a request ran out of its time budget: Temporary Processing Failure."""
        problem = NCIPProblem(ProblemType.TEMPORARY_PROCESSING_FAILURE)
        agency = self.gateway.config.gateway.agency_id
        try:
            envelope = parse_message(body, max_bytes=self.gateway.config.ncip.max_body_size)
        except NCIPProblem:
            return render_problem(problem, None, local_agency=agency)
        return render_problem(problem, envelope, local_agency=agency)  # in its own style
