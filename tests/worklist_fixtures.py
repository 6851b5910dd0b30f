"""A work list to look at: many resource-sharing requests in every state, written through the
embedded backend's own operations into a database, with long titles, overdue loans and
borrowed items waiting past their pickup date.

Every request's facts are returned, so tests compute what they expect from what was written.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from gateway.backends.embedded import operations as ops
from gateway.backends.embedded.records import ItemData, PatronData, upsert_item, upsert_patron
from gateway.storage import tracking

NOW = datetime(2030, 3, 10, 12, 0, tzinfo=timezone.utc)
"""The moment the tests look at the list."""

LONG_TITLE = ("Proceedings of the International Symposium on the Conservation of Nineteenth-"
              "Century Bound Periodicals and Pamphlets, Volume 12: Adhesives <and> Boards")
PEERS = ("reshare", "tipasa", "illiad-consortium-east")


@dataclass(frozen=True)
class Seeded:
    """One request written: its ids, partner, role, state, patron and due date."""

    our_request_id: str
    broker_request_id: str
    peer: str
    role: str
    state: str
    title: str
    patron: str
    institutional: bool
    due: datetime | None
    overdue: bool
    requested: datetime
    pickup_expired: bool = False


def seed_worklist(conn: sqlite3.Connection, count: int = 60, *,
                  now: datetime = NOW) -> list[Seeded]:
    """``count`` requests (at least 12): lender requests shipped to an institutional patron
    (some overdue), borrowed items awaiting pickup (some past their hold's expiry), checked
    out to a person (some overdue), and a few completed or cancelled, all within 40 days
    before ``now``. Committed."""
    now = now.replace(microsecond=0)  # as stored
    conn.execute("BEGIN IMMEDIATE")
    people = [upsert_patron(conn, PatronData(barcode=f"PW-{n:03d}"))[0] for n in range(4)]
    institutions = {peer: upsert_patron(conn, PatronData(
        barcode=f"INST-{peer.upper()}", institutional_peer=peer))[0] for peer in PEERS}
    seeded: list[Seeded] = []
    for n in range(count):
        peer = PEERS[n % len(PEERS)]
        requested = now - timedelta(days=40 - (n % 40), hours=n % 7)
        title = LONG_TITLE if n % 5 == 0 else f"Work list book {n:03d}"
        record = ops.create_brief_record(conn, f"wl-{n}", ops.BriefRecord(title=title))
        kind = n % 6
        our, broker = f"W-{n:03d}", f"BRK-{n:03d}"
        if kind in (0, 1):  # lender: our item shipped to the borrowing library
            barcode = f"WL-{n:03d}"
            item, _ = upsert_item(conn, record, ItemData(barcode=barcode))
            due = requested + timedelta(days=28)
            ops.check_out(conn, item_id=item, patron_id=institutions[peer], due_at=due,
                          now=requested)
            tracking.create_rs_request(conn, peer=peer, role="lender", broker_request_id=broker,
                                  our_request_id=our, state="shipped", step="requested",
                                  also_stamped=("shipped",), now=requested, item_id=item,
                                  item_barcode=barcode, patron_id=institutions[peer])
            seeded.append(Seeded(our, broker, peer, "lender", "shipped", title,
                                 f"INST-{peer.upper()}", True, due, due < now, requested))
        elif kind in (2, 3):  # borrower: their item on our hold shelf
            barcode = f"TMP-{n:03d}"
            item = ops.create_temporary_item(conn, barcode=barcode, record_id=record, peer=peer,
                                             location="MAIN")
            patron = people[n % len(people)]
            expires = requested + timedelta(days=7)
            ops.place_hold(conn, patron_id=patron, record_id=record, item_id=item,
                           pickup_location="MAIN", now=requested, pickup_expires=expires)
            tracking.create_rs_request(conn, peer=peer, role="borrower", broker_request_id=broker,
                                  our_request_id=our, state="awaiting_pickup", step="accepted",
                                  also_stamped=("received",), now=requested, item_id=item,
                                  item_barcode=barcode, patron_id=patron)
            seeded.append(Seeded(our, broker, peer, "borrower", "awaiting_pickup", title,
                                 f"PW-{n % len(people):03d}", False, None, False, requested,
                                 pickup_expired=expires < now))
        elif kind == 4:  # borrower: their item out with our patron
            barcode = f"TMP-{n:03d}"
            item = ops.create_temporary_item(conn, barcode=barcode, record_id=record, peer=peer,
                                             location="MAIN")
            patron = people[n % len(people)]
            due = requested + timedelta(days=21)
            rs = tracking.create_rs_request(conn, peer=peer, role="borrower",
                                       broker_request_id=broker, our_request_id=our,
                                       state="awaiting_pickup", step="accepted",
                                       also_stamped=("received",), now=requested, item_id=item,
                                       item_barcode=barcode, patron_id=patron)
            ops.check_out(conn, item_id=item, patron_id=patron, due_at=due, now=requested)
            tracking.advance_rs_request(conn, rs, state="checked_out", step="checked_out",
                                   now=requested)
            seeded.append(Seeded(our, broker, peer, "borrower", "checked_out", title,
                                 f"PW-{n % len(people):03d}", False, due, due < now, requested))
        else:  # closed: completed or cancelled
            state = "completed" if n % 12 == 5 else "cancelled"
            tracking.create_rs_request(conn, peer=peer, role="lender", broker_request_id=broker,
                                  our_request_id=our, state=state, step="requested",
                                  also_stamped=(state,), now=requested,
                                  patron_id=institutions[peer])
            seeded.append(Seeded(our, broker, peer, "lender", state, "",
                                 f"INST-{peer.upper()}", True, None, False, requested))
    conn.execute("COMMIT")
    return seeded
