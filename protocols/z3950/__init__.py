"""Z39.50 (ISO 23950): BER framing, pyasn1 codec, PQF, association state machine.

Pure Python, no I/O. Modules, each with one job (the import graph has no cycle:
C{tests/protocols/test_imports.py} checks it):

* L{ber}: L{BERFramer} cuts a TCP byte stream into PDUs, enforces size/depth limits and
  rewrites indefinite lengths as definite ones;
* L{asn1}, L{asn1_records}: pyasn1 types for Z39-50-APDU-1995 (as YAZ ships it), EXTERNAL,
  OPAC, SUTRS, diag-1, charneg-3, searchResult-1;
* L{pdus}: the value types (requests as read, diagnostics, records to send, option names)
  both BER paths and both sides share;
* L{codec}: the server side: C{decode_pdu}/C{encode_pdu} (the decode boundary),
  C{decode_request}, request readers and response builders;
* L{fastber}: the hand-written BER path for the hot PDUs, proven equal to pyasn1;
* L{client}: the origin side: request builders and response readers;
* L{association}: the server's state machine, fed the codec's requests;
* L{external}: EXTERNAL values and their second decoding pass; L{records}: retrieval
  records and the OPAC dataclass model;
* L{pqf}: the type-1 query model, PQF parser/printer, model <-> RPNQuery;
* L{charset}, L{marc8}: decoding client strings, charset negotiation (both sides);
* L{oids}: the object identifiers that matter; L{diagnostics}: Bib-1 diagnostics by name
  (L{diagnostics.Bib1}); L{errors}: L{Z3950ProtocolError} and L{CloseReason}.
"""

from __future__ import annotations

from .ber import BERFramer
from .codec import decode_pdu, encode_pdu, pdu_arm, read_request
from .errors import CloseReason, PQFError, Z3950ProtocolError
from .pqf import Query, parse_pqf, to_pqf

__all__ = [
    "BERFramer",
    "CloseReason",
    "PQFError",
    "Query",
    "Z3950ProtocolError",
    "decode_pdu",
    "encode_pdu",
    "parse_pqf",
    "pdu_arm",
    "read_request",
    "to_pqf",
]
