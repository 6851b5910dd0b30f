"""Records handed to the SRU response writer as ``WellFormed`` text are written as they are.

The document must be byte for byte the one the writer makes from the same record as plain
bytes (parsed, checked and re-serialised): every version, both packings, surrogate diagnostics
between records, a stylesheet, a kept result set; and valid against the OASIS schema in 2.0.
"""

from __future__ import annotations

import pytest

from protocols.oai.writer import ListWriter, RecordHeader
from protocols.sru.diagnostics import Diagnostic, SRUError
from protocols.sru.response import ResponseRecord, search_retrieve_response
from protocols.xmltext import WellFormed
from tests.protocols.test_sru_response import dc_record, search, sru2_schema, xml

__all__ = ["sru2_schema"]

MARC = (b'<record xmlns="http://www.loc.gov/MARC21/slim"><leader>00000nam a2200000 a 4500'
        b'</leader><datafield ind1="1" ind2="0" tag="245"><subfield code="a">Tom &amp; '
        b'Jerry &lt;1&gt; "q"</subfield></datafield></record>')


def _page(kind: type[bytes]) -> list[ResponseRecord]:
    return [ResponseRecord("marcxml", 3, kind(MARC)),
            ResponseRecord("marcxml", 4, diagnostic=SRUError(
                Diagnostic.RECORD_TEMPORARILY_UNAVAILABLE, "gone")),
            ResponseRecord("dc", 5, kind(dc_record("Rivers &amp; lakes"))),
            ResponseRecord("marcxml", 6, None),
            ResponseRecord("info:x?a=1&b=<2>", 7, kind(MARC))]


@pytest.mark.parametrize("version", ["1.1", "1.2", "2.0"])
@pytest.mark.parametrize("packing", ["xml", "string"])
def test_spliced_document_is_the_parsed_one(version: str, packing: str) -> None:
    escaping = "recordXMLEscaping" if version == "2.0" else "recordPacking"
    request = search(f"version={version}&query=frog&startRecord=3&maximumRecords=5"
                     f"&{escaping}={packing}&stylesheet=/s.xsl&resultSetTTL=30")
    documents = [search_retrieve_response(
        request, number_of_records=9, records=_page(kind), result_set_id="rs",
        result_set_ttl=30, next_record_position=7) for kind in (bytes, WellFormed)]
    assert documents[0] == documents[1]
    xml(documents[1])


def test_spliced_sru2_document_is_schema_valid(sru2_schema: object) -> None:
    request = search("version=2.0&query=frog&maximumRecords=5")
    document = search_retrieve_response(request, number_of_records=4,
                                         records=_page(WellFormed))
    sru2_schema.assertValid(xml(document))  # type: ignore[attr-defined]


def test_malformed_plain_bytes_still_refused() -> None:
    """Plain bytes are still parsed: a broken record is still a presenting error."""
    request = search("version=1.2&query=frog")
    with pytest.raises(SRUError):
        search_retrieve_response(request, number_of_records=1,
                                 records=[ResponseRecord("marcxml", 1, b"<record>")])


def test_oai_list_writer_embeds_well_formed_as_the_parsed_one() -> None:
    from datetime import UTC, datetime

    header = RecordHeader("oai:x:1", datetime(2026, 1, 1, tzinfo=UTC))
    chunks = []
    for kind in (bytes, WellFormed):
        writer = ListWriter("ListRecords", "http://x/oai", datetime(2026, 1, 2, tzinfo=UTC), [])
        writer.start()
        chunks.append(writer.record(header, kind(MARC)))
    assert chunks[0] == chunks[1]
