# -*- test-case-name: tests.gateway.upstream_ncip -*-
"""The library's own NCIP responder as :class:`ICirculation`, with the outbox.

The workflow steps see the circulation system through the synchronous facade
(:class:`ICirculationChanges`). Here it is the gateway's own tables used as a *mirror* of what
the LMS holds for resource sharing (the patrons it named, the temporary items, holds and loans
made through Interlend), and every change is made in the LMS first, with its NCIP service, in
its dialect (:mod:`.profiles`). A unit of work is run until it needs nothing more from the LMS
(:mod:`.unit`): the store's writer is never held during an LMS call, and the last run commits
the mirror, the broker's reply, its idempotency record and the audit rows of both legs
together. A state-changing call's outbox row is durable in its own file (:mod:`.outbox`) before
the call. A crash or a time-out between the LMS's change and our commit is settled from the
outbox: the recorded answer is used, or the call is resent with the same upstream RequestId
where the profile allows it, or refused for staff to settle -- a second temporary item, hold
or loan is never made.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.logger import Logger
from zope.interface import implementer

from gateway.backends.embedded import operations as ops
from gateway.backends.embedded import queries
from gateway.backends.embedded.circulation import EmbeddedChanges, EmbeddedCirculation
from gateway.backends.embedded.records import PatronData, upsert_patron
from gateway.backends.upstream.ncip.client import NcipHttpClient, UpstreamCallFailed
from gateway.backends.upstream.ncip.outbox import Outbox
from gateway.backends.upstream.ncip.profiles import (
    Profile,
    UpstreamUnavailable,
    UpstreamUnsupported,
)
from gateway.backends.upstream.ncip.settlement import Settlement, lock_for
from gateway.backends.upstream.ncip.unit import (
    Answer,
    ItemLocks,
    NeedsUpstream,
    Unit,
    lock_name,
)
from gateway.domain import model as domain
from gateway.domain.books import Books, ReplayKey
from gateway.domain.circulation import ICirculation, ICirculationChanges
from gateway.domain.model import BriefRecord, Item, Loan, Patron, PatronDetails
from gateway.storage.audit_log import AuditEntry, audit_time
from gateway.storage.books import StoreBooks
from gateway.storage.store import Store
from gateway.storage.timestamps import iso
from protocols.ncip.upstream import (
    Bibliographic,
    UpstreamReply,
    UpstreamRequest,
    read_reply,
    write_request,
)

T = TypeVar("T")
log = Logger()

@dataclass(frozen=True)
class Upstream:
    """The LMS as one unit of work needs it."""

    client: NcipHttpClient
    profile: Profile
    outbox: Outbox
    from_agency: str
    to_agency: str
    tz: tzinfo
    reactor: Any
    audit: Any = None      # the gateway's AuditLog: upstream bodies redacted as brokers' are
    lms_user: Callable[[str, str], str] = lambda barcode, agency: barcode
    """The LMS patron standing for a borrowing library (our institutional barcode, agency)."""


class _KeyedReplies:
    """The reply book, noting which broker request the unit serves (its replay key)."""

    def __init__(self, inner: Any, unit: Unit) -> None:
        self._inner = inner
        self._unit = unit

    def replay(self, key: ReplayKey, opener: Callable[[bytes], bytes | None]) -> bytes | None:
        self._unit.key = "|".join(key.ident)
        result: bytes | None = self._inner.replay(key, opener)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _KeyedBooks:
    """The gateway's books, with the reply book keyed as above."""

    def __init__(self, inner: StoreBooks, unit: Unit) -> None:
        self._inner = inner
        self.replies = _KeyedReplies(inner.replies, unit)

    @property
    def requests(self) -> Any:
        return self._inner.requests

    def audit(self, entry: Any) -> None:
        self._inner.audit(entry)


def _post(up: Upstream, body: bytes,
          unsent: Callable[[], None] = lambda: None) -> tuple[int, bytes]:
    """One HTTP exchange from a worker thread; a failure to get any answer is raised
    (``unsent`` is called first when the request surely never reached the LMS)."""
    post: Callable[[bytes], Any] = up.client.post
    try:
        result: tuple[int, bytes] = blockingCallFromThread(up.reactor, post, body)
    except UpstreamCallFailed as e:
        if e.unsent:
            unsent()
        raise UpstreamUnavailable(f"{up.profile.name}: {e}") from e
    return result


def _call(up: Upstream, body: bytes) -> UpstreamReply:
    """One exchange, read."""
    status, data = _post(up, body)
    return read_reply(status, data, up.tz)


@implementer(ICirculationChanges)
class UpstreamChanges(EmbeddedChanges):
    """The facade: the mirror in the gateway's tables, every change made in the LMS first."""

    __slots__ = ("_up", "_unit", "_writable")

    def __init__(self, conn: sqlite3.Connection, up: Upstream, unit: Unit, *,
                 writable: bool) -> None:
        super().__init__(conn)
        self._up = up
        self._unit = unit
        self._writable = writable

    # -- the LMS ------------------------------------------------------------------------------

    def _request(self, service: str, **kwargs: Any) -> UpstreamRequest:
        return UpstreamRequest(service, self._up.from_agency, self._up.to_agency, **kwargs)

    def _read(self, request: UpstreamRequest) -> UpstreamReply:
        """A read: from a reader (``inspect``) the LMS is asked there and then; in a unit of
        work the run stops for it (:class:`NeedsUpstream`) and the next run has its answer."""
        body = write_request(request, self._up.profile.shape)
        if not self._writable:
            return _call(self._up, body)
        got = self._unit.reads.get(body)
        if got is None:
            raise NeedsUpstream(body=body, service=request.service)
        if isinstance(got, BaseException):
            raise got
        return got

    def _change(self, request: UpstreamRequest) -> UpstreamReply:
        """A state-changing call through the outbox (see :mod:`.unit` and :mod:`.outbox`):
        the answer this unit already got, or the answer an earlier process recorded, or the run
        stops here for the call (its outbox row durable first, the item's lock held)."""
        up, unit, service = self._up, self._unit, request.service
        profile = up.profile
        if not profile.supports(service):
            raise UpstreamUnsupported(f"{profile.name} has no {service}")
        if not self._writable:
            raise UpstreamUnavailable(f"{service} asked of a read-only view")
        seq = unit.next_seq()
        got = unit.answers.get(seq)
        if got is not None:
            if got.service != service:
                raise UpstreamUnavailable(
                    f"unit {unit.key} changed course between runs ({got.service} answered,"
                    f" {service} asked): staff")
            if got.error is not None:
                raise got.error
            reply = got.reply or read_reply(got.status, got.data, up.tz)
            self._leg(service, got.upstream_id, got.request, got.data, reply, got.how)
            return self._outcome(service, reply, resent=got.how == "resent")
        row = up.outbox.find(unit.key, seq)
        row_replaced = row is not None and row.state in ("committed", "abandoned")
        # (committed: done before and the broker's stored reply since forgotten, say; abandoned:
        # refused by the LMS. Either way this run is a new one and asks the LMS afresh.)
        if row is not None and not row_replaced and row.service != service:
            raise UpstreamUnavailable(
                f"outbox row {row.id} is {row.service}, this retry needs {service}: staff")
        if row is not None and row.state == "answered" and row.status:
            log.info("outbox: {service} {id} already answered by the LMS; its answer is used",
                     service=service, id=row.upstream_id)
            reply = read_reply(row.status, row.reply or b"", up.tz)
            self._leg(service, row.upstream_id, row.request, row.reply or b"", reply, "reused")
            return self._outcome(service, reply, resent=False)
        lock = lock_name(request.item_id, request.request_id, request.user_id)
        if not unit.claim(lock):
            raise NeedsUpstream(lock=lock)
        if row is not None and row.state == "pending":
            if not unit.claim(lock_for(row)):       # the start-up settlement has it now
                raise NeedsUpstream(lock=lock_for(row))
            if service in profile.never_resend and not profile.dedups_request_id:
                raise UpstreamUnavailable(
                    f"the LMS's answer to {service} {row.upstream_id} was lost (outbox row "
                    f"{row.id}); not resent: {profile.name} might do it twice")
            log.info("outbox: resending {service} {id} after a lost answer", service=service,
                     id=row.upstream_id)
            raise NeedsUpstream(body=row.request, service=service, seq=seq, how="resent",
                                upstream_id=row.upstream_id)
        upstream_id = unit.upstream_id(seq)
        if request.request_id is None and service in ("AcceptItem", "RequestItem",
                                                      "CheckOutItem"):
            request = UpstreamRequest(**{**request.__dict__, "request_id": upstream_id})
        body = write_request(request, profile.shape)
        up.outbox.record(unit.key, seq, service, upstream_id, body, replace=row_replaced)
        raise NeedsUpstream(body=body, service=service, seq=seq, how="sent",
                            upstream_id=upstream_id)

    def _leg(self, service: str, upstream_id: str, request: bytes, answer: bytes,
             reply: UpstreamReply, how: str) -> None:
        """The upstream exchange's audit row, linked to the broker request it served; it
        commits with the unit (the outbox keeps the exchange either way)."""
        audit = self._up.audit
        outcome = "success" if reply.ok else f"{reply.kind}: {'; '.join(reply.texts)[:80]}"
        self._unit.legs.append(AuditEntry(
            protocol="ncip-upstream", operation=service, outcome=outcome,
            peer=f"lms:{self._up.profile.name}", broker_request_id=upstream_id,
            item_barcode=reply.item_id, request_size=len(request), response_size=len(answer),
            request_body=_redacted(audit, request), response_body=_redacted(audit, answer),
            time=audit_time(datetime.now(timezone.utc)),
            notes=f"{how}; for {self._unit.key.split('#')[0]}"))

    def _outcome(self, service: str, reply: UpstreamReply, *, resent: bool) -> UpstreamReply:
        profile = self._up.profile
        if reply.ok:
            return reply
        if reply.kind == "problem" and profile.is_already_done(service, reply):
            # The mirror asked for a change the LMS already has (a resend after a lost
            # answer, or a retry the broker sent without a RequestId): done, not an error.
            log.info("{service}: the LMS already has this change ({why})", service=service,
                     why="; ".join(reply.texts)[:120], resent=resent)
            return UpstreamReply("ok", service=service)
        if reply.kind == "problem":
            raise profile.error_for(service, reply)
        raise UpstreamUnavailable(f"{profile.name}: {service}: {reply.kind} "
                                  f"(HTTP {reply.status}) {reply.detail[:200]}")

    # -- mirror helpers -----------------------------------------------------------------------

    def _link(self, kind: str, local_id: int, upstream_id: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO upstream_links (kind, local_id, upstream_id, unit,"
            " created_at) VALUES (?, ?, ?, ?, ?)",
            (kind, local_id, upstream_id, self._unit.key, iso(datetime.now(timezone.utc))))

    def _linked(self, kind: str, local_id: int) -> str | None:
        row = self._conn.execute("SELECT upstream_id FROM upstream_links WHERE kind = ? AND"
                                 " local_id = ?", (kind, local_id)).fetchone()
        return str(row[0]) if row is not None else None

    def _lms_barcode(self, item_id: int) -> str:
        linked = self._linked("item", item_id)
        if linked is not None:
            return linked
        item = super().item_by_id(item_id)
        if item is None:
            raise domain.UnknownItem(value=str(item_id))
        return item.barcode

    def _patron_barcode(self, patron_id: int) -> str:
        patron = super().patron_by_id(patron_id)
        if patron is None:
            raise domain.UnknownPatron(value=str(patron_id))
        if patron.institutional_peer:
            return self._up.lms_user(patron.barcode, patron.family_name)
        return patron.barcode

    # -- reads ----------------------------------------------------------------------------------

    def find_patron(self, identifier: str,
                    kinds: tuple[str, ...] = ("barcode", "username")) -> Patron | None:
        """The LMS's patron (LookupUser), mirrored; the borrowing libraries' institutional
        patrons are ours."""
        canonical = self._up.profile.broker_id("p", identifier)
        if canonical is None:
            return None                     # a record number with a wrong check digit
        identifier = canonical
        local = super().find_patron(identifier, kinds)
        if local is not None and local.institutional_peer:
            return local
        reply = self._read(self._request("LookupUser", user_id=identifier,
                                         user_elements=self._up.profile.user_elements))
        if not reply.ok:
            if reply.kind == "problem":
                error = self._up.profile.error_for("LookupUser", reply)
                if isinstance(error, domain.UnknownPatron):
                    return None
                raise error
            if self._up.profile.unknown_user_page(reply):
                return None
            raise UpstreamUnavailable(f"LookupUser: {reply.kind} {reply.detail[:200]}")
        if not self._writable:
            return local
        status = "blocked" if reply.blocked else "active"
        upsert_patron(self._conn, PatronData(
            barcode=identifier, given_name=reply.given_name, family_name=reply.surname,
            status=status, patron_group="lms",
            expires=reply.valid_to.date().isoformat() if reply.valid_to else None))
        return super().find_patron(identifier, ("barcode",))

    def record_by_identifier(self, kind: str, value: str) -> int | None:
        """The mirror's record; a Sierra bib number in any written form finds it, whichever
        form the catalogue keeps it under."""
        forms = self._up.profile.record_forms(value) if kind == "local" else [value]
        for form in forms:
            found = super().record_by_identifier(kind, form)
            if found is not None:
                return found
        return None

    def item_by_barcode(self, barcode: str) -> Item | None:
        """The mirrored item, or the LMS's own item (LookupItem, or taken on trust where the
        LMS cannot look items up: its CheckOutItem then says if it is unknown)."""
        canonical = self._up.profile.broker_id("i", barcode)
        if canonical is None:
            return None                     # a record number with a wrong check digit
        barcode = canonical
        local = super().item_by_barcode(barcode)
        if local is not None or not self._writable:
            return local
        title = ""
        status = "available"
        if self._up.profile.supports("LookupItem"):
            reply = self._read(self._request("LookupItem", item_id=barcode))
            if reply.kind == "problem":
                return None
            if not reply.ok:
                raise UpstreamUnavailable(f"LookupItem: {reply.kind} {reply.detail[:200]}")
            title = reply.title
        record_id = ops.create_brief_record(self._conn, f"lms-{barcode}",
                                            BriefRecord(title=title or "[LMS item]"))
        now = iso(datetime.now(timezone.utc))
        self._conn.execute(
            "INSERT INTO items (barcode, record_id, status, temporary, created_at, updated_at)"
            " VALUES (?, ?, ?, 0, ?, ?)", (barcode, record_id, status, now, now))
        return super().item_by_barcode(barcode)

    # -- changes -----------------------------------------------------------------------------

    def create_brief_record(self, local_id: str, brief: BriefRecord) -> int:
        """See :meth:`ICirculationChanges.create_brief_record` (sent with AcceptItem)."""
        record_id = super().create_brief_record(local_id, brief)
        self._unit.briefs[record_id] = brief
        return record_id

    def _title_request(self, record_id: int) -> dict[str, str]:
        """For an LMS that holds titles (Sierra): the record's id and the Title scope, where
        the record carries one (else the item is requested)."""
        if not self._up.profile.title_holds:
            return {}
        row = self._conn.execute("SELECT local_id FROM records WHERE id = ?",
                                 (record_id,)).fetchone()
        if row is None or not row[0] or str(row[0]).startswith("lms-"):
            return {}
        return {"bib_id": str(row[0]), "request_scope": "Title"}

    def create_temporary_item(self, *, barcode: str, record_id: int, peer: str, location: str,
                              call_number: str = "") -> int:
        """A temporary item: made in the LMS by the AcceptItem of its hold or loan."""
        item_id = super().create_temporary_item(barcode=barcode, record_id=record_id,
                                                peer=peer, location=location,
                                                call_number=call_number)
        self._unit.pending[item_id] = (barcode, self._unit.briefs.get(record_id), location)
        return item_id

    def _accept(self, item_id: int, patron_id: int, action: str,
                due: datetime | None) -> UpstreamReply:
        barcode, brief, location = self._unit.pending.pop(item_id)
        bib = Bibliographic(title=brief.title, author=brief.author, publisher=brief.publisher,
                            date=brief.date, isbn=brief.isbn) if brief else None
        reply = self._change(self._request(
            "AcceptItem", user_id=self._patron_barcode(patron_id), item_id=barcode,
            requested_action=action, pickup_location=location or None, bibliographic=bib,
            date_due=due))
        self._link("item", item_id, reply.item_id or barcode)
        return reply

    def place_hold(self, *, patron_id: int, record_id: int, item_id: int | None,
                   pickup_location: str, now: datetime,
                   pickup_expires: datetime | None = None) -> int:
        """A hold: AcceptItem for a new temporary item, RequestItem for an LMS item."""
        upstream_request: str | None = None
        if item_id is not None and item_id in self._unit.pending:
            reply = self._accept(item_id, patron_id, self._up.profile.hold_action, None)
            upstream_request = reply.request_id
        elif item_id is not None and self._up.profile.supports("RequestItem"):
            reply = self._change(self._request(
                "RequestItem", user_id=self._patron_barcode(patron_id),
                item_id=self._lms_barcode(item_id), pickup_location=pickup_location or None,
                **self._title_request(record_id)))
            upstream_request = reply.request_id
        hold_id = super().place_hold(patron_id=patron_id, record_id=record_id, item_id=item_id,
                                     pickup_location=pickup_location, now=now,
                                     pickup_expires=pickup_expires)
        if upstream_request:
            self._link("hold", hold_id, upstream_request)
        return hold_id

    def set_hold_status(self, hold_id: int, status: str, now: datetime) -> None:
        """Cancelling a hold the LMS knows by a RequestId cancels it there too."""
        if status == "cancelled":
            row = self._conn.execute("SELECT item_id FROM holds WHERE id = ?",
                                     (hold_id,)).fetchone()
            item_id = row[0] if row is not None else None
            linked = self._linked("hold", hold_id)
            if item_id is not None and self._linked("item", item_id) is not None:
                # A hold on a temporary item the LMS made with AcceptItem (never picked up):
                # the LMS ends it as we would, by checking the item in.
                self._change(self._request("CheckInItem",
                                           item_id=self._lms_barcode(item_id)))
            elif linked and self._up.profile.supports("CancelRequestItem"):
                self._change(self._request("CancelRequestItem", request_id=linked,
                                           request_agency=self._up.from_agency))
        super().set_hold_status(hold_id, status, now)

    def check_out(self, *, item_id: int, patron_id: int, due_at: datetime,
                  now: datetime) -> Loan:
        """CheckOutItem in the LMS (AcceptItem first for a new temporary item); the LMS's
        due date is the loan's."""
        profile = self._up.profile
        if item_id in self._unit.pending:
            if profile.circulate_action is not None:
                reply = self._accept(item_id, patron_id, profile.circulate_action, due_at)
                return super().check_out(item_id=item_id, patron_id=patron_id,
                                         due_at=reply.date_due or due_at, now=now)
            self._accept(item_id, patron_id, profile.hold_action, due_at)
        reply = self._change(self._request(
            "CheckOutItem", user_id=self._patron_barcode(patron_id),
            item_id=self._lms_barcode(item_id), date_due=due_at))
        return super().check_out(item_id=item_id, patron_id=patron_id,
                                 due_at=reply.date_due or due_at, now=now)

    def check_in(self, *, item_id: int, now: datetime, status: str = "available") -> Loan:
        """CheckInItem in the LMS, then the mirror."""
        self._change(self._request("CheckInItem", item_id=self._lms_barcode(item_id)))
        return super().check_in(item_id=item_id, now=now, status=status)

    def renew(self, loan: Loan, due_at: datetime) -> Loan:
        """RenewItem in the LMS (where it has one)."""
        if not self._up.profile.supports("RenewItem"):
            raise domain.ItemNotRenewable(
                f"{self._up.profile.name} cannot renew over NCIP",
                element="ItemIdentifierValue", value=loan.item_barcode)
        reply = self._change(self._request(
            "RenewItem", user_id=self._patron_barcode(loan.patron_id),
            item_id=self._lms_barcode(loan.item_id), date_due=due_at))
        return super().renew(loan, reply.date_due or due_at)

    def delete_temporary_item(self, barcode: str, now: datetime) -> int:
        """DeleteItem in the LMS where it has one; else the LMS keeps its copy (staff
        withdraw it) and only the mirror forgets it."""
        item = super().item_by_barcode(barcode)
        if item is not None and self._up.profile.supports("DeleteItem"):
            self._change(self._request("DeleteItem", item_id=self._lms_barcode(item.id)))
        return super().delete_temporary_item(barcode, now)


def _redacted(audit: Any, body: bytes) -> str | None:
    """A body as the audit log keeps brokers' (None when bodies are not kept, or when the
    LMS's body is not NCIP enough to redact: never stored unredacted)."""
    if audit is None:
        return None
    try:
        kept = audit.ncip_body(body)
        return str(kept) if kept is not None else None
    except Exception:  # an HTML page or malformed XML: not kept
        return None


_MIRRORED = ("username", "given_name", "family_name", "email", "status", "patron_group",
             "expires")
"""The patron columns a LookupUser mirror writes (the PIN hash and peer link it leaves)."""


def _mirrors(row: sqlite3.Row, data: PatronData) -> bool:
    """Whether the patron ``row`` already holds what ``upsert_patron(data)`` would write (an
    upstream patron has no PIN or peer link from the LMS: those columns are left alone)."""
    wanted = (data.username or None, data.given_name, data.family_name, data.email,
              data.status, data.patron_group, data.expires)
    return data.pin is None and data.institutional_peer is None and \
        tuple(row[c] for c in _MIRRORED) == wanted


@implementer(ICirculation)
class UpstreamNcipCirculation:
    """:class:`ICirculation` on the library's own NCIP responder (see the module docstring)."""

    def __init__(self, store: Store, upstream: Upstream) -> None:
        self.store = store
        self.upstream = upstream
        self.mirror = EmbeddedCirculation(store)  # what resource sharing made, read as is
        self.locks = ItemLocks()
        self.settlement = Settlement(store, upstream, self.locks)
        for row in upstream.outbox.open_rows():
            log.warn("outbox: {service} {id} for {unit} not committed here ({state}): settled "
                     "with the LMS now, the broker's retry answered from it",
                     service=row.service, id=row.upstream_id, unit=row.unit.split("#")[0],
                     state=row.state)
        self.settlement.start()

    def health(self) -> dict[str, Any]:
        """For ``/healthz``: the LMS's state, latency and errors, and unsettled changes."""
        up = self.upstream
        return {"kind": "ncip", "profile": up.profile.name, **up.client.health.as_dict(),
                "outbox_open": up.outbox.count("pending"),
                "outbox_answered": up.outbox.count("answered"),
                "settlement": self.settlement.state.as_dict()}

    # reads on the reactor thread: the LMS directly

    async def _lookup_user(self, identifier: str) -> UpstreamReply:
        up = self.upstream
        request = UpstreamRequest("LookupUser", up.from_agency, up.to_agency,
                                  user_id=identifier, user_elements=up.profile.user_elements)
        try:
            status, data = await up.client.post(write_request(request, up.profile.shape))
        except UpstreamCallFailed as e:
            raise UpstreamUnavailable(f"{up.profile.name}: {e}") from e
        return read_reply(status, data, up.tz)

    async def _lookup_patron(self, identifier: str) -> PatronDetails | None:
        reply = await self._lookup_user(identifier)
        profile = self.upstream.profile
        if not reply.ok:
            if reply.kind == "problem":
                error = profile.error_for("LookupUser", reply)
                if isinstance(error, domain.UnknownPatron):
                    return None
                raise error
            if profile.unknown_user_page(reply):
                return None
            raise UpstreamUnavailable(f"LookupUser: {reply.kind} {reply.detail[:200]}")

        data = PatronData(
            barcode=identifier, given_name=reply.given_name, family_name=reply.surname,
            status="blocked" if reply.blocked else "active", patron_group="lms",
            expires=reply.valid_to.date().isoformat() if reply.valid_to else None)

        def details(conn: sqlite3.Connection) -> PatronDetails | None:
            patron = queries.find_patron(conn, identifier, ("barcode",))
            if patron is None:
                return None
            return PatronDetails(patron, tuple(queries.loans_of_patron(conn, patron.id)),
                                 tuple(queries.holds_of_patron(conn, patron.id)))

        def current(conn: sqlite3.Connection) -> PatronDetails | None:
            """The mirror as it is when the LMS said nothing new (None: it must be written)."""
            row = conn.execute("SELECT * FROM patrons WHERE barcode = ?",
                               (identifier,)).fetchone()
            return details(conn) if row is not None and _mirrors(row, data) else None

        def mirror(conn: sqlite3.Connection) -> PatronDetails | None:
            upsert_patron(conn, data)
            return details(conn)

        # the LMS's answer is usually what the mirror already holds: read it then, without a
        # writer job (a commit) per lookup; anything new is written, as before
        unchanged = await self.store.read(current)
        if unchanged is not None:
            return unchanged
        return await self.store.write(mirror)

    def lookup_patron(self, identifier: str, *, loans: bool = False,
                      holds: bool = False) -> Deferred[PatronDetails | None]:
        """LookupUser in the LMS; the patron mirrored, with the loans and holds made through
        Interlend (the LMS's own lists are not read: not every LMS gives them)."""
        canonical = self.upstream.profile.broker_id("p", identifier)
        if canonical is None:
            return succeed(None)
        return Deferred.fromCoroutine(self._lookup_patron(canonical))

    def authenticate(self, patron: Patron, secret: str) -> Deferred[bool]:
        """PINs stay ours: checked against the gateway's own hash (none: refused)."""
        return self.mirror.authenticate(patron, secret)

    def item(self, barcode: str) -> Deferred[Item | None]:
        """The mirrored item."""
        canonical = self.upstream.profile.broker_id("i", barcode)
        return self.mirror.item(canonical) if canonical is not None else succeed(None)

    def record_items(self, identifiers: list[tuple[str, str]]) -> Deferred[
            list[tuple[int | None, list[Item]]]]:
        """The mirror's records (the LMS's catalogue is the catalogue backend's); a Sierra
        bib number in any written form finds its record, whichever form the catalogue keeps."""
        profile = self.upstream.profile
        forms = [profile.record_forms(value) if code == "local" else [value]
                 for code, value in identifiers]
        if all(len(f) == 1 for f in forms):
            return self.mirror.record_items(identifiers)
        flat = [(code, form) for (code, _), fs in zip(identifiers, forms) for form in fs]

        def first_found(found: list[tuple[int | None, list[Item]]]) -> list[
                tuple[int | None, list[Item]]]:
            out, at = [], 0
            for fs in forms:
                tried = found[at:at + len(fs)]
                at += len(fs)
                out.append(next((t for t in tried if t[0] is not None), tried[-1]))
            return out
        return self.mirror.record_items(flat).addCallback(first_found)

    def transact(self, work: Callable[[ICirculationChanges, Books], T]) -> Deferred[T]:
        """The unit of work, run until it needs nothing more from the LMS (see :mod:`.unit`):
        the writer is free during every LMS call; the last run commits the mirror, the books
        and both legs' audit rows together."""
        return Deferred.fromCoroutine(self._transact(work))

    async def _transact(self, work: Callable[[ICirculationChanges, Books], T]) -> T:
        unit = Unit(self.locks)

        def job(conn: sqlite3.Connection) -> T:
            store_books = StoreBooks(conn)
            books = _KeyedBooks(store_books, unit)
            result = work(UpstreamChanges(conn, self.upstream, unit, writable=True), books)
            for leg in unit.legs:
                store_books.audit(leg)
            return result

        try:
            while True:
                unit.begin_run()
                try:
                    result: T = await self.store.write(job)
                except NeedsUpstream as need:
                    await self._serve(unit, need)
                    continue
                break
        finally:
            self.locks.release_all(unit)
        if unit.seq:
            deferToThread(self.upstream.outbox.committed, unit.key).addErrback(
                lambda f: log.failure("outbox: marking committed failed", f))
        return result

    async def _serve(self, unit: Unit, need: NeedsUpstream) -> None:
        """What a run stopped for, on the reactor with the writer free: a lock, a read, or a
        change (its outbox row already durable; its answer recorded there before the unit
        runs again)."""
        up = self.upstream
        if need.lock is not None:
            await self.locks.acquire(need.lock, unit)
            return
        if need.how == "read":
            try:
                status, data = await up.client.post(need.body)
                unit.reads[need.body] = read_reply(status, data, up.tz)
            except UpstreamCallFailed as e:
                unit.reads[need.body] = UpstreamUnavailable(f"{up.profile.name}: {e}")
            return
        outbox, key, seq, service = up.outbox, unit.key, need.seq, need.service
        try:
            status, data = await up.client.post(need.body)
        except UpstreamCallFailed as e:
            if e.unsent and need.how == "sent":
                await deferToThread(outbox.abandon, key, seq)   # never reached the LMS
            unit.answers[seq] = Answer(service, need.how, need.upstream_id, need.body,
                                       error=UpstreamUnavailable(f"{up.profile.name}: {e}"))
            return
        await deferToThread(outbox.answered, key, seq, status, data)
        reply = read_reply(status, data, up.tz)
        if reply.kind == "problem" and (need.how == "sent"
                                        or not up.profile.is_already_done(service, reply)):
            await deferToThread(outbox.abandon, key, seq)  # refused, nothing done: asked afresh
        elif reply.kind != "problem" and not reply.ok:
            await deferToThread(outbox.unknown, key, seq)  # a 500 page: done or not, unknown
        unit.answers[seq] = Answer(service, need.how, need.upstream_id, need.body, status, data,
                                   reply=reply)

    def inspect(self, work: Callable[[ICirculationChanges, Books], T]) -> Deferred[T]:
        """Read-only work on the mirror (LookupUser still asks the LMS)."""
        unit = Unit(self.locks)
        return self.store.read(lambda conn: work(
            UpstreamChanges(conn, self.upstream, unit, writable=False),
            StoreBooks(conn)))
