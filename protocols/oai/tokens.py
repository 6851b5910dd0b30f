# -*- test-case-name: tests.protocols.test_oai_tokens -*-
"""Resumption tokens: the state of an incomplete list, opaque to harvesters and tamper-evident.

A token carries everything needed to continue a list (verb, metadataPrefix, set, from, until,
the cursor, the backend's continuation position and an expiry), so the repository keeps no
per-harvest state and a restarted daemon still honours tokens it issued. The state is
compact JSON in URL-safe base64, followed by a truncated HMAC-SHA256 under the key the gateway
passes in; a token that was altered, signed with another key, malformed or expired is refused
with C{badResumptionToken}. Older keys may be given for verification so that a key rotation
does not break harvests in progress. The state is signed, not encrypted: it holds only what
the harvester itself asked for and a position in the public catalogue.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import OAIError, OAIErrorCode

__all__ = ["MAX_TOKEN_LENGTH", "ResumptionState", "TokenCodec"]

MAX_TOKEN_LENGTH = 2048
"""Longer input is refused before any decoding."""

_FORMAT = 1
_DOMAIN = b"interlend-oai-resumption-token-v1\x00"
_MAC_BYTES = 16
_LIST_VERBS = frozenset({"ListRecords", "ListIdentifiers", "ListSets"})


@dataclass(frozen=True)
class ResumptionState:
    """Where an incomplete list stands.

    @ivar cursor: how many items the earlier pages delivered (the token's C{cursor}).
    @ivar position: the backend's continuation key (for example the last datestamp and
        identifier sent), opaque to the protocol layer.
    @ivar expires: when the token stops being honoured (timezone-aware UTC).
    """

    verb: str
    metadata_prefix: str | None
    set_spec: str | None
    from_: datetime | None
    until: datetime | None
    cursor: int
    position: str
    expires: datetime
    complete_list_size: int | None = None


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _moment(seconds: object) -> datetime | None:
    if seconds is None:
        return None
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise ValueError("not a timestamp")
    return datetime.fromtimestamp(seconds, timezone.utc)


class TokenCodec:
    """Signs and verifies resumption tokens with the gateway's key."""

    def __init__(self, key: bytes, *, previous_keys: Sequence[bytes] = (),
                 max_length: int = MAX_TOKEN_LENGTH) -> None:
        """@param key: the signing key (at least 16 bytes); @param previous_keys: still
        accepted when verifying, never used to sign."""
        for candidate in (key, *previous_keys):
            if len(candidate) < 16:
                raise ValueError("a resumption token key needs at least 16 bytes")
        self._key = key
        self._keys = (key, *previous_keys)
        self._max_length = max_length

    def _mac(self, key: bytes, payload: bytes) -> bytes:
        return hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, state: ResumptionState) -> str:
        """The token for C{state}: URL-safe, no padding, at most a few hundred characters."""
        body = [_FORMAT, state.verb, state.metadata_prefix, state.set_spec, _epoch(state.from_),
                _epoch(state.until), state.cursor, state.position, _epoch(state.expires),
                state.complete_list_size]
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        return f"{_b64encode(payload)}.{_b64encode(self._mac(self._key, payload))}"

    def decode(self, token: str, now: datetime) -> ResumptionState:
        """The state a token carries, or C{badResumptionToken} if it is not one of ours or
        has expired by C{now}."""
        if len(token) > self._max_length or token.count(".") != 1:
            raise OAIError(OAIErrorCode.BAD_RESUMPTION_TOKEN, "malformed token")
        encoded_payload, encoded_mac = token.split(".")
        try:
            payload = _b64decode(encoded_payload)
            mac = _b64decode(encoded_mac)
        except (binascii.Error, ValueError):
            raise OAIError(OAIErrorCode.BAD_RESUMPTION_TOKEN, "malformed token") from None
        if not any(hmac.compare_digest(mac, self._mac(key, payload)) for key in self._keys):
            raise OAIError(OAIErrorCode.BAD_RESUMPTION_TOKEN, "token not issued here")
        try:
            state = self._state(json.loads(payload))
        except (ValueError, TypeError, OverflowError, OSError):
            raise OAIError(OAIErrorCode.BAD_RESUMPTION_TOKEN, "malformed token") from None
        if state.expires <= now:
            raise OAIError(OAIErrorCode.BAD_RESUMPTION_TOKEN, "token expired")
        return state

    @staticmethod
    def _state(body: object) -> ResumptionState:
        if not isinstance(body, list) or len(body) != 10 or body[0] != _FORMAT:
            raise ValueError("unknown token format")
        _, verb, prefix, set_spec, from_, until, cursor, position, expires, size = body
        if verb not in _LIST_VERBS or not isinstance(position, str):
            raise ValueError("bad verb or position")
        for text in (prefix, set_spec):
            if text is not None and not isinstance(text, str):
                raise ValueError("bad text field")
        for number in (cursor, size):
            if number is not None and (not isinstance(number, int) or number < 0):
                raise ValueError("bad number field")
        expiry = _moment(expires)
        if expiry is None or not isinstance(cursor, int):
            raise ValueError("missing expiry or cursor")
        return ResumptionState(verb, prefix, set_spec, _moment(from_), _moment(until), cursor,
                               position, expiry, size)
