# -*- test-case-name: tests.protocols.test_z3950_ber -*-
"""BER framing for a Z39.50 TCP byte stream.

L{BERFramer} cuts a byte stream into whole PDUs and rewrites every indefinite length as a
definite one, so pyasn1 never sees indefinite lengths (it crashes on an indefinite
``[0] ANY`` inside EXTERNAL, see ``docs/z3950.md`` section 4.3). Like YAZ's
``completeBER_n`` it is incremental (bytes are scanned once, whatever the chunking) and it
checks every limit on the header, before buffering what the header announces:

* maximum PDU size (a declared length above the cap is refused at once);
* maximum nesting depth of constructed encodings (default 64);
* at most 5 tag octets and 4 length octets (so 2**63 lengths never reach pyasn1);
* no indefinite length on a primitive encoding, no stray end-of-contents.

Every failure raises L{Z3950ProtocolError} (or its subclass L{BERLimitError}). After an
error the framer is dead: the connection must be closed.
"""

from __future__ import annotations

from .errors import BERLimitError, Z3950ProtocolError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_RECURSION",
    "RECURSIVE",
    "DEFAULT_MAX_PDU_SIZE",
    "MAX_LENGTH_OCTETS",
    "MAX_TAG_OCTETS",
    "BERFramer",
    "encode_length",
    "to_definite",
]

DEFAULT_MAX_PDU_SIZE = 4 * 1024 * 1024
"""Default cap on one PDU, in bytes (YAZ master uses 16 MiB; we stay well below)."""

DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_RECURSION = 100_000
"""Cap on L{RECURSIVE} encodings nested directly in one another: an RPN query's operator tree
(rpnRpnOp [1] in rpnRpnOp [1], in any shape). Those levels are counted here, not against
C{max_depth}, so a long boolean query reaches the search, which answers a Bib-1 diagnostic past
its own, much lower, limit rather than a Close; the framer and the fast decoder walk them
without recursion. 100,000 levels take at least 3 MB."""

RECURSIVE = frozenset({0xA1})
"""Identifier octets of constructed encodings that nest in themselves by design (context [1]
constructed: rpnRpnOp). Any other nesting counts against C{max_depth}."""
"""Default cap on nested constructed encodings; real Z39.50 PDUs nest at most ~13 levels."""

MAX_TAG_OCTETS = 5
"""Identifier octets allowed per TLV (first octet plus four base-128 continuation octets)."""

MAX_LENGTH_OCTETS = 4
"""Subsequent length octets allowed in the long form (lengths below 2**32)."""


class _Incomplete(Exception):
    """Internal: the header at hand needs more bytes."""


def encode_length(n: int) -> bytes:
    """Return the definite-length octets (short or long form) for a content length C{n}."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _read_header(buf: bytes | bytearray, pos: int, avail: int) -> tuple[int, int, int | None]:
    """Parse the identifier and length octets at C{buf[pos:]}.

    @return: C{(end of the identifier octets, start of the contents, length)}, the length
        being C{None} for the indefinite form.
    @raise _Incomplete: the header is not fully buffered yet.
    @raise Z3950ProtocolError: the header is malformed or over a limit.
    """
    if pos >= avail:
        raise _Incomplete
    p = pos + 1
    if buf[pos] & 0x1F == 0x1F:
        while True:
            if p - pos >= MAX_TAG_OCTETS:
                raise BERLimitError(f"tag longer than {MAX_TAG_OCTETS} octets at offset {pos}")
            if p >= avail:
                raise _Incomplete
            octet = buf[p]
            p += 1
            if not octet & 0x80:
                break
    tag_end = p
    if p >= avail:
        raise _Incomplete
    first = buf[p]
    p += 1
    if first == 0x80:
        return tag_end, p, None
    if first & 0x80:
        count = first & 0x7F
        if count > MAX_LENGTH_OCTETS:
            # Covers 0xFF (reserved) and every length of 2**32 or more.
            raise BERLimitError(f"{count} length octets at offset {pos} (max {MAX_LENGTH_OCTETS})")
        if p + count > avail:
            raise _Incomplete
        length = int.from_bytes(buf[p : p + count], "big")
        p += count
        return tag_end, p, length
    return tag_end, p, first


class BERFramer:
    """Incremental splitter of a BER byte stream into definite-length PDUs.

    Feed it whatever the transport delivers; it returns the PDUs completed by that chunk.
    The receive buffer never holds more than one incomplete PDU of at most C{max_pdu_size}
    bytes (plus the bytes of the chunk being processed), and each byte is scanned once.

    @ivar max_pdu_size: cap on the encoded size of one PDU, as received.
    @ivar max_depth: cap on nested constructed encodings (the PDU itself is depth 1), not
        counting L{RECURSIVE} encodings directly inside one another.
    @ivar max_recursion: cap on those (L{DEFAULT_MAX_RECURSION}).
    """

    def __init__(
        self, max_pdu_size: int = DEFAULT_MAX_PDU_SIZE, max_depth: int = DEFAULT_MAX_DEPTH,
        max_recursion: int = DEFAULT_MAX_RECURSION,
    ) -> None:
        if max_pdu_size < 2 or max_depth < 1 or max_recursion < 0:
            raise ValueError("max_pdu_size must be >= 2, max_depth >= 1, max_recursion >= 0")
        self.max_pdu_size = max_pdu_size
        self.max_depth = max_depth
        self.max_recursion = max_recursion
        self._idents: list[int] = []  # identifier octet of each open encoding (-1: high tag)
        self._repeated = 0  # how many open RECURSIVE encodings sit directly in their own kind
        self._buf = bytearray()
        self._start = 0  # offset in _buf of the PDU being scanned
        self._pos = 0  # scan position (absolute offset in _buf)
        self._stack: list[int | None] = []  # open constructed encodings: end offset or None
        self._indefinite = False  # current PDU uses an indefinite length somewhere
        self._failed: Z3950ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for the incomplete PDU (0 between PDUs)."""
        return len(self._buf) - self._start

    def feed(self, data: bytes) -> list[bytes]:
        """Add C{data} from the stream; return the PDUs it completed, with definite lengths.

        @raise Z3950ProtocolError: malformed or over-limit input; the framer stays failed.
        """
        if self._failed is not None:
            raise self._failed
        if not data:
            return []
        self._buf += data
        pdus: list[bytes] = []
        try:
            while self._scan():
                pdus.append(self._take())
            if len(self._buf) - self._start > self.max_pdu_size:
                raise BERLimitError(f"incomplete PDU exceeds {self.max_pdu_size} bytes")
        except Z3950ProtocolError as exc:
            self._failed = exc
            self._buf = bytearray()
            raise
        if self._start:
            # One compaction per feed, not per PDU: no quadratic copying.
            del self._buf[: self._start]
            self._pos -= self._start
            self._stack = [None if e is None else e - self._start for e in self._stack]
            self._start = 0
        return pdus

    def _take(self) -> bytes:
        """Cut the completed PDU out of the buffer and reset the scan state."""
        raw = bytes(self._buf[self._start : self._pos])
        self._start = self._pos
        indefinite, self._indefinite = self._indefinite, False
        if indefinite:
            return _rewrite(raw)
        return raw

    def _scan(self) -> bool:
        """Advance the scan over buffered bytes; return True when a whole PDU is available."""
        buf = self._buf
        avail = len(buf)
        stack = self._stack
        idents = self._idents
        pos = self._pos
        start = self._start
        limit = start + self.max_pdu_size
        try:
            while True:
                if pos > avail:
                    raise _Incomplete  # inside a primitive's content
                # Close every constructed encoding that ends here.
                if stack:
                    end = stack[-1]
                    if end is None:
                        if pos >= avail:
                            raise _Incomplete
                        if buf[pos] == 0:
                            if pos + 1 >= avail:
                                raise _Incomplete
                            if buf[pos + 1] != 0:
                                raise Z3950ProtocolError(
                                    f"malformed end-of-contents at offset {pos - start}"
                                )
                            pos += 2
                            stack.pop()
                            ident = idents.pop()
                            if ident in RECURSIVE and idents and idents[-1] == ident:
                                self._repeated -= 1
                            if not stack:
                                return True
                            continue
                    elif pos >= end:
                        stack.pop()
                        ident = idents.pop()
                        if ident in RECURSIVE and idents and idents[-1] == ident:
                            self._repeated -= 1
                        if not stack:
                            return True
                        continue
                if pos >= avail:
                    raise _Incomplete
                if not stack and buf[pos] & 0x20 == 0:
                    raise Z3950ProtocolError(
                        f"PDU must be a constructed encoding (got identifier {buf[pos]:#04x})"
                    )
                if buf[pos] == 0:
                    raise Z3950ProtocolError(f"unexpected end-of-contents at offset {pos - start}")
                tag_end, content, length = _read_header(buf, pos, avail)
                constructed = buf[pos] & 0x20
                if length is None:
                    if not constructed:
                        raise Z3950ProtocolError(
                            f"indefinite length on a primitive at offset {pos - start}"
                        )
                    self._indefinite = True
                    end = None
                else:
                    end = content + length
                    if end > limit:
                        raise BERLimitError(
                            f"declared length {length} exceeds the PDU limit of "
                            f"{self.max_pdu_size} bytes"
                        )
                    parent = _innermost_definite_end(stack)
                    if parent is not None and end > parent:
                        raise Z3950ProtocolError(
                            f"length {length} at offset {pos - start} overruns its parent"
                        )
                if constructed:
                    ident = buf[pos] if buf[pos] & 0x1F != 0x1F else -1
                    if ident in RECURSIVE and idents and idents[-1] == ident:
                        if self._repeated >= self.max_recursion:
                            raise BERLimitError(
                                f"recursive nesting deeper than {self.max_recursion} levels")
                        self._repeated += 1
                    elif len(stack) - self._repeated >= self.max_depth:
                        raise BERLimitError(f"nesting deeper than {self.max_depth} levels")
                    stack.append(end)
                    idents.append(ident)
                    pos = content
                elif end is not None:  # always true: primitives have definite lengths
                    pos = end
                if pos > limit:
                    raise BERLimitError(f"PDU exceeds {self.max_pdu_size} bytes")
        except _Incomplete:
            self._pos = pos
            if pos > limit:
                raise BERLimitError(f"PDU exceeds {self.max_pdu_size} bytes") from None
            return False
        finally:
            self._pos = pos


def _innermost_definite_end(stack: list[int | None]) -> int | None:
    """Return the end offset of the innermost enclosing definite-length encoding, if any."""
    for end in reversed(stack):
        if end is not None:
            return end
    return None


def _rewrite(raw: bytes) -> bytes:
    """Re-encode one validated TLV with definite lengths only (iteratively, no recursion)."""
    out: list[list[bytes]] = [[]]
    frames: list[tuple[bytes, int | None]] = []  # (identifier octets, end or None)
    pos = 0
    size = len(raw)
    while True:
        while frames:
            ident, end = frames[-1]
            if end is None:
                if raw[pos] == 0 and raw[pos + 1] == 0:
                    pos += 2
                else:
                    break
            elif pos < end:
                break
            frames.pop()
            content = b"".join(out.pop())
            out[-1].append(ident + encode_length(len(content)) + content)
        if not frames and out[0]:
            return out[0][0]
        if pos >= size:
            raise Z3950ProtocolError("truncated encoding")
        tag_end, content_start, length = _read_header(raw, pos, size)
        ident = raw[pos:tag_end]
        if raw[pos] & 0x20:
            frames.append((ident, None if length is None else content_start + length))
            out.append([])
            pos = content_start
        else:
            end = content_start + (length or 0)  # primitives are definite (validated)
            out[-1].append(raw[pos:end])
            pos = end


def to_definite(
    data: bytes, max_pdu_size: int | None = None, max_depth: int = DEFAULT_MAX_DEPTH
) -> bytes:
    """Validate exactly one complete PDU in C{data} and return it with definite lengths.

    Used when a whole PDU is already in hand (tests, captured files); the stream path is
    L{BERFramer.feed}.

    @raise Z3950ProtocolError: truncated, trailing bytes, malformed or over a limit.
    """
    framer = BERFramer(max(len(data), 2) if max_pdu_size is None else max_pdu_size, max_depth)
    pdus = framer.feed(data)
    if len(pdus) != 1 or framer.buffered:
        if not pdus:
            raise Z3950ProtocolError("truncated PDU")
        raise Z3950ProtocolError("trailing bytes after the PDU")
    return pdus[0]
