# -*- test-case-name: tests.gateway.test_audit,tests.gateway.test_replay_keys -*-
"""Exactly-once replies at rest: sealing the ones an older version stored in clear, and
forgetting one that can no longer be opened. (Storing and finding replies is the exactly-once
machinery's; these are the audit log's maintenance of them.)"""

from __future__ import annotations

from collections.abc import Callable

from gateway.storage.store import Connection

ReplyKey = tuple[str, str, str]
"""(peer, service, key): what a stored reply is filed under."""


def seal_clear_replies(conn: Connection, is_sealed: Callable[[bytes], bool],
                       seal: Callable[[ReplyKey, bytes], bytes]) -> int:
    """Seal every stored reply that ``is_sealed`` says is in clear; return how many."""
    rows = conn.execute("SELECT peer, service, key, response FROM idempotency").fetchall()
    sealed = 0
    for peer, service, key, response in rows:
        if not is_sealed(bytes(response)):
            conn.execute("UPDATE idempotency SET response = ? WHERE peer = ? AND service = ? "
                         "AND key = ?", (seal((peer, service, key), bytes(response)),
                                         peer, service, key))
            sealed += 1
    return sealed


def forget_reply(conn: Connection, key: ReplyKey) -> None:
    """Remove one stored reply, in the caller's transaction."""
    conn.execute("DELETE FROM idempotency WHERE peer = ? AND service = ? AND key = ?", key)
