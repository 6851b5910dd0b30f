"""Resumption tokens: round trip, tamper evidence, key rotation, expiry, hostile input."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.oai.errors import OAIError, OAIErrorCode
from protocols.oai.tokens import MAX_TOKEN_LENGTH, ResumptionState, TokenCodec

KEY = b"k" * 32
NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=timezone.utc)
STATE = ResumptionState(
    verb="ListRecords", metadata_prefix="marc21", set_spec="branch:main",
    from_=datetime(2026, 11, 1, tzinfo=timezone.utc),
    until=datetime(2026, 12, 6, 11, 59, 59, tzinfo=timezone.utc),
    cursor=500, position="1764000000|rec000123", expires=NOW + timedelta(hours=1),
    complete_list_size=1_000_000)


def refused(codec: TokenCodec, token: str, now: datetime = NOW) -> str:
    with pytest.raises(OAIError) as caught:
        codec.decode(token, now)
    assert caught.value.code is OAIErrorCode.BAD_RESUMPTION_TOKEN
    return caught.value.message


def test_round_trip() -> None:
    """Every field survives encoding; the token is URL-safe and short."""
    codec = TokenCodec(KEY)
    token = codec.encode(STATE)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert len(token) < 300
    assert codec.decode(token, NOW) == STATE


def test_optional_fields_round_trip() -> None:
    """Absent set, dates, prefix and size come back absent."""
    state = replace(STATE, verb="ListSets", metadata_prefix=None, set_spec=None, from_=None,
                    until=None, complete_list_size=None, position="")
    codec = TokenCodec(KEY)
    assert codec.decode(codec.encode(state), NOW) == state


def test_every_altered_character_is_refused() -> None:
    """Changing any one character of a token makes it fail verification or decoding."""
    codec = TokenCodec(KEY)
    token = codec.encode(STATE)
    for index in range(len(token)):
        replacement = "A" if token[index] != "A" else "B"
        altered = token[:index] + replacement + token[index + 1:]
        if altered != token:
            refused(codec, altered)


def test_a_forged_cursor_is_refused() -> None:
    """Re-encoding the payload with a changed cursor but the old MAC is refused."""
    import base64
    import json

    codec = TokenCodec(KEY)
    payload, mac = codec.encode(STATE).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body[6] = 0
    forged = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode())
    assert refused(codec, forged.decode().rstrip("=") + "." + mac) == "token not issued here"


def test_other_key_refused_previous_key_accepted() -> None:
    """A token from another key is refused; after rotation the previous key still verifies."""
    old = TokenCodec(b"o" * 32)
    token = old.encode(STATE)
    assert refused(TokenCodec(KEY), token) == "token not issued here"
    rotated = TokenCodec(KEY, previous_keys=[b"o" * 32])
    assert rotated.decode(token, NOW) == STATE
    refused(TokenCodec(b"o" * 32), rotated.encode(STATE))


def test_expiry() -> None:
    """A token is honoured until its expiry and refused from then on."""
    codec = TokenCodec(KEY)
    token = codec.encode(STATE)
    assert codec.decode(token, STATE.expires - timedelta(seconds=1)) == STATE
    assert refused(codec, token, STATE.expires) == "token expired"


def test_limits_and_keys() -> None:
    """Over-long tokens are refused unread; keys shorter than 16 bytes are a setup error."""
    codec = TokenCodec(KEY)
    assert refused(codec, "a" * (MAX_TOKEN_LENGTH + 1)) == "malformed token"
    with pytest.raises(ValueError):
        TokenCodec(b"short")
    with pytest.raises(ValueError):
        TokenCodec(KEY, previous_keys=[b"short"])


def test_signed_garbage_is_still_refused() -> None:
    """A correctly signed payload that is not a token state is refused, not a crash."""
    import base64
    import hashlib
    import hmac

    codec = TokenCodec(KEY)
    for payload in (b"[]", b"{}", b"[1,\"ListRecords\"]", b"not json", b"[2" + b",0" * 9 + b"]",
                    b'[1,"GetRecord",null,null,null,null,0,"",9,null]',
                    b'[1,"ListRecords","p",null,null,null,-1,"",9999999999,null]',
                    b'[1,"ListRecords","p",null,1e400,null,0,"",9999999999,null]',
                    b'[1,"ListRecords","p",null,99999999999999999,null,0,"",9999999999,null]'):
        mac = hmac.new(KEY, b"interlend-oai-resumption-token-v1\x00" + payload,
                       hashlib.sha256).digest()[:16]
        token = (base64.urlsafe_b64encode(payload).rstrip(b"=") + b"." +
                 base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
        refused(codec, token)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_any_text_is_refused_cleanly(token: str) -> None:
    """Arbitrary input never raises anything but C{badResumptionToken}."""
    refused(TokenCodec(KEY), token)
