# -*- test-case-name: tests.gateway.test_operations,tests.gateway.ncip.test_workflow_rules -*-
"""The gateway's own books, as the workflows see them: request tracking, exactly-once replies,
the audit log, PIN failures.

These are the gateway's, whichever circulation system it drives: a backend never keeps them,
it only runs them inside its unit of work (:meth:`ICirculation.transact`) so that they commit
with the circulation change. :mod:`gateway.storage.books` keeps them in the gateway's SQLite
store; the types here are what the workflows are written against (typed records, not rows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from gateway.audit import AuditEntry

# The steps a tracked request goes through, each stamped once with its time.
RS_STEPS = ("requested", "accepted", "shipped", "received", "checked_out", "returned",
            "checked_in", "completed", "cancelled")


@dataclass(frozen=True)
class TrackedRequest:
    """One resource-sharing request the gateway tracks, with the time of each step reached."""

    id: int
    peer: str
    role: str                    # "borrower" or "lender"
    our_request_id: str
    state: str
    broker_request_id: str | None = None
    broker_item_id: str | None = None
    item_id: int | None = None
    item_barcode: str | None = None
    patron_id: int | None = None
    requested_at: datetime | None = None
    accepted_at: datetime | None = None
    shipped_at: datetime | None = None
    received_at: datetime | None = None
    checked_out_at: datetime | None = None
    returned_at: datetime | None = None
    checked_in_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    due_at: datetime | None = None
    renewable: bool = True
    end_reason: str | None = None


@dataclass(frozen=True)
class ReplayKey:
    """A state-changing request's replay key: ``key`` = its RequestId (or ``item:<ItemId>``)
    plus its fingerprint; the parts beside it find a conflicting reuse of the RequestId."""

    peer: str
    service: str
    key: str
    request: str
    item: str | None
    user: str | None  # keyed hash of the UserId value, never the value

    @property
    def ident(self) -> tuple[str, str, str]:
        """What the stored reply is filed (and sealed) under."""
        return (self.peer, self.service, self.key)


class RequestBook(Protocol):
    """Resource-sharing request tracking."""

    def find(self, *, peer: str, role: str, broker_request_id: str | None = None,
             our_request_id: str | None = None,
             item_id: int | None = None) -> TrackedRequest | None:
        """The request matching one of the identifiers given (most specific first); by item,
        only an open one."""

    def find_volume(self, *, peer: str, role: str, broker_request_id: str,
                    broker_item_id: str | None) -> TrackedRequest | None:
        """The request for one volume: the broker's RequestId and ItemId together."""

    def volumes(self, *, peer: str, role: str, broker_request_id: str) -> list[TrackedRequest]:
        """Every request (one per volume) under a broker's RequestId, oldest first."""

    def latest(self, *, peer: str, role: str, item_id: int) -> TrackedRequest | None:
        """The peer's most recent request for an item, in any state."""

    def latest_borrowed(self, *, peer: str, name: str) -> TrackedRequest | None:
        """The peer's most recent borrower request naming an item by our barcode or its own
        ItemId, in any state (also once the item is gone)."""

    def aliased_item(self, *, peer: str, broker_item_id: str) -> int | None:
        """The item the peer's own ItemId stands for (the latest request that gave it)."""

    def requested_item(self, *, peer: str, broker_request_id: str) -> int | None:
        """The one item a broker's request id stands for (None if none or several)."""

    def placed_together(self, request: TrackedRequest) -> list[int]:
        """Lender requests made for the same patron and item at the same time, in creation
        order (their holds were placed in the same order)."""

    def any_for_patron(self, *, peer: str, patron_id: int) -> bool:
        """Whether the peer has any request for this patron."""

    def next_number(self) -> int:
        """The number the next tracked request will get."""

    def create(self, *, peer: str, role: str, broker_request_id: str | None,
               our_request_id: str, state: str, step: str, now: datetime,
               item_id: int | None = None, item_barcode: str | None = None,
               patron_id: int | None = None, also_stamped: tuple[str, ...] = (),
               due_at: datetime | None = None, renewable: bool = True,
               broker_item_id: str | None = None) -> int:
        """Start tracking a request at its first step (and ``also_stamped`` later steps)."""

    def advance(self, request_id: int, *, state: str, step: str, now: datetime,
                item_id: int | None = None, item_barcode: str | None = None,
                due_at: datetime | None = None, end_reason: str | None = None) -> None:
        """Move a request to ``state``, stamping ``step`` (kept if already stamped); the
        other arguments, when given, are set too."""

    def set_due(self, request_id: int, due_at: datetime) -> None:
        """The lender's new due date for a borrowed item."""

    def forget_item(self, item_id: int) -> None:
        """An item is gone: requests keep its barcode, no longer its id."""


class ReplyBook(Protocol):
    """Exactly-once replies (the idempotency records)."""

    def replay(self, key: ReplayKey, opener: Callable[[bytes], bytes | None]) -> bytes | None:
        """The stored reply for this key, opened by ``opener`` (None: none, or unreadable --
        then the record is dropped so that the request is answered afresh)."""

    def conflicts(self, key: ReplayKey) -> bool:
        """Whether the key's RequestId already names its item for another patron."""

    def keep(self, key: ReplayKey, sealed: bytes, now: datetime) -> None:
        """File the (sealed) reply under its key."""

    def forget_item(self, peer: str, name: str) -> None:
        """An item starts a new life under ``name``: replies keyed by it answer no more."""


class Books(Protocol):
    """The gateway's books, open inside one unit of work."""

    @property
    def requests(self) -> RequestBook:
        """Request tracking."""

    @property
    def replies(self) -> ReplyBook:
        """Exactly-once replies."""

    def audit(self, entry: AuditEntry) -> None:
        """Add an audit row, committed with the unit of work."""


class PinFailureBook(Protocol):
    """Wrong PINs counted per patron and the locks they led to, across peers and restarts."""

    def state(self, patron_id: int) -> Deferred[tuple[int, float]]:
        """The patron's stored (failures, locked_until)."""

    def record_failure(self, patron_id: int, *, limit: int,
                       lock_until: float) -> Deferred[None]:
        """One more wrong PIN, committed; at ``limit`` the count restarts and the patron is
        locked until ``lock_until``."""

    def record_success(self, patron_id: int) -> Deferred[None]:
        """The right PIN: the count starts again (committed)."""
