"""BER framing: PDU boundaries on a TCP stream, indefinite-length rewriting, and limits
checked on the header before anything is buffered."""

from __future__ import annotations

import time

import pytest

from protocols.z3950.ber import (
    BERFramer,
    encode_length,
    to_definite,
)
from protocols.z3950.errors import BERLimitError, CloseReason, Z3950ProtocolError

# A Close PDU (close [48], closeReason finished) and a small InitRequest, definite lengths.
CLOSE = bytes.fromhex("bf30059f81530100")
INIT = bytes.fromhex("b411830200e0840300e9a2850203e8860203e8")


def _indefinite(tag: bytes, *children: bytes) -> bytes:
    return tag + b"\x80" + b"".join(children) + b"\x00\x00"


def _definite(tag: bytes, *children: bytes) -> bytes:
    content = b"".join(children)
    return tag + encode_length(len(content)) + content


def test_encode_length_forms() -> None:
    """Short form below 128, long form with the minimum number of octets above."""
    assert encode_length(0) == b"\x00"
    assert encode_length(127) == b"\x7f"
    assert encode_length(128) == b"\x81\x80"
    assert encode_length(256) == b"\x82\x01\x00"
    assert encode_length(2**24) == b"\x84\x01\x00\x00\x00"


def test_single_pdu_passes_through_unchanged() -> None:
    """A definite-length PDU comes out exactly as it went in."""
    assert BERFramer().feed(CLOSE) == [CLOSE]
    assert BERFramer().feed(INIT) == [INIT]


def test_split_at_every_byte_boundary() -> None:
    """Whatever the cut point, two chunks give exactly one PDU, after the second chunk."""
    records = _indefinite(b"\xbc", _indefinite(b"\x30", b"\x80\x01x"))
    data = _indefinite(b"\xb9", b"\x98\x01\x01", records)
    expected = to_definite(data)
    for cut in range(len(data) + 1):
        framer = BERFramer()
        first = framer.feed(data[:cut])
        second = framer.feed(data[cut:])
        assert first + second == [expected], cut
        if cut < len(data):
            assert first == []
        assert framer.buffered == 0


def test_multiple_pdus_in_one_chunk_and_a_partial_tail() -> None:
    """Several PDUs in one chunk all come out; a partial one waits for its remaining bytes."""
    framer = BERFramer()
    out = framer.feed(CLOSE + INIT + CLOSE + INIT[:5])
    assert out == [CLOSE, INIT, CLOSE]
    assert framer.buffered == 5
    assert framer.feed(INIT[5:]) == [INIT]
    assert framer.buffered == 0


def test_empty_feed_returns_nothing() -> None:
    """Feeding no bytes is harmless."""
    assert BERFramer().feed(b"") == []


def test_indefinite_lengths_rewritten_to_definite() -> None:
    """Indefinite lengths nested 40 deep come out definite and equivalent."""
    inner = b"\x80\x03abc"
    data = inner
    expected = inner
    for _ in range(40):
        data = _indefinite(b"\xa1", data)
        expected = _definite(b"\xa1", expected)
    data = _indefinite(b"\xb4", data)
    expected = _definite(b"\xb4", expected)
    assert BERFramer().feed(data) == [expected]


def test_definite_parent_containing_indefinite_child() -> None:
    """A definite-length parent whose child is indefinite is rewritten with a new length."""
    child = _indefinite(b"\x30", b"\x02\x01\x05")
    data = _definite(b"\xb5", child)
    assert BERFramer().feed(data) == [_definite(b"\xb5", _definite(b"\x30", b"\x02\x01\x05"))]


def test_high_tag_numbers_within_limit() -> None:
    """Multi-octet tags (close [48] = bf 30, [211] = 9f 81 53) are framed correctly."""
    data = _definite(b"\xbf\x81\x80\x80\x01", b"\x9f\x81\x53\x01\x00")  # 5 tag octets
    assert BERFramer().feed(data) == [data]


def test_tag_longer_than_five_octets_refused() -> None:
    """Six tag octets are refused as soon as the sixth is seen."""
    with pytest.raises(BERLimitError):
        BERFramer().feed(b"\xbf\x81\x81\x81\x81\x01\x00")


def test_length_of_2_to_63_refused_on_header() -> None:
    """An 8-octet length (2**63, pyasn1's OverflowError input) is refused by the framer."""
    with pytest.raises(BERLimitError) as info:
        BERFramer().feed(bytes.fromhex("b4 88 80 00 00 00 00 00 00 00"))
    assert info.value.close_reason == CloseReason.protocolError


def test_five_length_octets_refused() -> None:
    """Lengths need at most 4 octets; 0x85 and the reserved 0xff are refused."""
    with pytest.raises(BERLimitError):
        BERFramer().feed(b"\xb4\x85\x00\x00\x00\x00\x01")
    with pytest.raises(BERLimitError):
        BERFramer().feed(b"\xb4\xff")


def test_gigabyte_declared_refused_before_buffering() -> None:
    """A PDU declaring 1 GB with only 10 bytes sent is refused on its header."""
    header = b"\xb4\x84" + (1 << 30).to_bytes(4, "big")
    framer = BERFramer(max_pdu_size=1 << 20)
    with pytest.raises(BERLimitError):
        framer.feed(header + b"\x00" * 4)


def test_nested_declared_length_over_cap_refused() -> None:
    """A child declaring more than the cap inside an indefinite PDU is refused at once."""
    framer = BERFramer(max_pdu_size=1000)
    with pytest.raises(BERLimitError):
        framer.feed(b"\xb4\x80\x04\x82\x10\x00")


def test_indefinite_pdu_growing_past_cap_refused() -> None:
    """An indefinite PDU whose bytes keep coming is refused once it passes the cap."""
    framer = BERFramer(max_pdu_size=100)
    framer.feed(b"\xb4\x80")
    with pytest.raises(BERLimitError):
        for _ in range(30):
            framer.feed(b"\x04\x02ab")


def test_buffer_stays_bounded_while_waiting() -> None:
    """Byte-by-byte feeding of a big primitive never buffers more than the PDU itself."""
    framer = BERFramer(max_pdu_size=5000)
    data = _definite(b"\xb4", _definite(b"\x04", b"x" * 4000))
    for i in range(len(data) - 1):
        assert framer.feed(data[i : i + 1]) == []
        assert framer.buffered == i + 1
    assert framer.feed(data[-1:]) == [data]


def test_depth_limit() -> None:
    """Nesting exactly at the limit is fine; one more level is refused."""
    def nest(levels: int) -> bytes:
        data = b"\x80\x00"
        for level in range(levels - 1):
            data = _indefinite(b"\xa1" if level % 2 else b"\xa2", data)
        return _indefinite(b"\xb4", data)

    assert len(BERFramer(max_depth=10).feed(nest(10))) == 1
    with pytest.raises(BERLimitError):
        BERFramer(max_depth=10).feed(nest(11))


def test_recursive_nesting_has_its_own_limit() -> None:
    """An RPN operator (rpnRpnOp, [1] constructed) directly inside an operator counts against
    max_recursion, not max_depth: a 300-operator query passes a framer whose depth limit is
    10, and one level past max_recursion is refused; other self-nesting counts as depth."""
    def chain(repeats: int) -> bytes:
        data = b"\x80\x00"
        for _ in range(repeats + 1):
            data = _definite(b"\xa1", data)
        return _definite(b"\xb4", data)

    assert len(BERFramer(max_depth=10).feed(chain(300))) == 1
    assert len(BERFramer(max_depth=10, max_recursion=300).feed(chain(300))) == 1
    with pytest.raises(BERLimitError, match="recursive"):
        BERFramer(max_depth=10, max_recursion=300).feed(chain(301))
    # what is not a repetition still counts against max_depth
    operators = b"\x80\x00"
    for _ in range(6):
        operators = _definite(b"\xa1", operators)
    mixed = _definite(b"\xb4", _definite(b"\xa2", operators))  # 3 levels and 5 repetitions
    assert len(BERFramer(max_depth=3).feed(mixed)) == 1
    with pytest.raises(BERLimitError, match="nesting deeper than 2"):
        BERFramer(max_depth=2).feed(mixed)
    sequences = b"\x80\x00"
    for _ in range(11):
        sequences = _definite(b"\xa0", sequences)
    with pytest.raises(BERLimitError, match="nesting deeper than 10"):
        BERFramer(max_depth=10).feed(_definite(b"\xb4", sequences))


def test_ten_thousand_deep_nesting_refused_fast() -> None:
    """10,000 nested indefinite (and definite) encodings are refused quickly, no recursion."""
    deep = b"\xb4\x80" + b"\xa1\x80" * 10_000 + b"\x00\x00" * 10_001
    started = time.perf_counter()
    with pytest.raises(BERLimitError):
        BERFramer(max_pdu_size=1 << 20, max_recursion=5000).feed(deep)
    deep_definite = b"\x80\x00"
    for _ in range(10_000):
        deep_definite = _definite(b"\xa1", deep_definite)
    with pytest.raises(BERLimitError):
        BERFramer(max_pdu_size=1 << 20, max_recursion=5000).feed(
            _definite(b"\xb4", deep_definite))
    with pytest.raises(BERLimitError):  # any other identifier: the depth limit, at once
        BERFramer(max_pdu_size=1 << 20).feed(b"\xb4\x80" + b"\xa0\x80" * 10_000)
    # alternating identifiers count against max_depth, whatever max_recursion allows
    alternating = b"\x80\x00"
    for level in range(10_000):
        alternating = _definite(b"\xa1" if level % 2 else b"\xa2", alternating)
    with pytest.raises(BERLimitError, match="nesting deeper than 64"):
        BERFramer(max_pdu_size=1 << 20).feed(_definite(b"\xb4", alternating))
    assert time.perf_counter() - started < 1.0


def test_indefinite_length_on_primitive_refused() -> None:
    """Indefinite length is only valid on constructed encodings."""
    with pytest.raises(Z3950ProtocolError):
        BERFramer().feed(b"\xb4\x80\x04\x80abc\x00\x00\x00\x00")


def test_primitive_or_eoc_at_top_level_refused() -> None:
    """A PDU must be constructed: primitives and stray end-of-contents are garbage."""
    with pytest.raises(Z3950ProtocolError):
        BERFramer().feed(bytes.fromhex("04 88 ff ff ff ff ff ff ff ff"))
    with pytest.raises(Z3950ProtocolError):
        BERFramer().feed(b"\x00\x00")
    with pytest.raises(Z3950ProtocolError):
        BERFramer().feed(b"GET / HTTP/1.0\r\n\r\n")


def test_malformed_end_of_contents_refused() -> None:
    """Inside an indefinite encoding, 00 must be followed by 00."""
    with pytest.raises(Z3950ProtocolError):
        BERFramer().feed(b"\xb4\x80\x00\x01")


def test_child_overrunning_parent_refused() -> None:
    """A child whose length runs past its definite parent's end is malformed."""
    with pytest.raises(Z3950ProtocolError):
        BERFramer().feed(b"\xb4\x03\x04\x05abcde")


def test_framer_stays_failed_after_error() -> None:
    """After an error every further feed raises the same error: the link must close."""
    framer = BERFramer()
    with pytest.raises(Z3950ProtocolError) as first:
        framer.feed(b"\x00\x00")
    with pytest.raises(Z3950ProtocolError) as second:
        framer.feed(CLOSE)
    assert second.value is first.value


def test_truncated_pdu_waits_and_to_definite_refuses() -> None:
    """A truncated PDU is simply incomplete on a stream; as a whole PDU it is an error."""
    framer = BERFramer()
    assert framer.feed(INIT[:-1]) == []
    with pytest.raises(Z3950ProtocolError):
        to_definite(INIT[:-1])
    with pytest.raises(Z3950ProtocolError):
        to_definite(INIT + b"\x00")


def test_constructor_validates_limits() -> None:
    """Nonsensical limits are a configuration error."""
    with pytest.raises(ValueError):
        BERFramer(max_pdu_size=0)
    with pytest.raises(ValueError):
        BERFramer(max_depth=0)


def test_many_small_pdus_linear_time() -> None:
    """20,000 PDUs in one chunk are framed quickly (one compaction per feed)."""
    started = time.perf_counter()
    assert len(BERFramer().feed(CLOSE * 20_000)) == 20_000
    assert time.perf_counter() - started < 2.0
