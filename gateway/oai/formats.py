# -*- test-case-name: tests.gateway.test_oai_harvest -*-
"""The metadata formats the OAI-PMH provider disseminates, each a record → XML element function.

- ``oai_dc``: unqualified Dublin Core, mapped from MARC (the crosswalk's core fields).
- ``marc21``: the bibliographic record as MARCXML (MARC 21 slim), stored holdings fields removed.
- ``marc21_holdings``: MARCXML with one 852 per item carrying location, call number and live
  availability (``AVAILABLE`` / ``DUE date`` in 852$z): what RapidILL and DCB ingest.
"""

from __future__ import annotations

from collections.abc import Callable

import pymarc
from lxml import etree

from gateway.domain.holdings import CatalogueRecord
from gateway.z3950.plain_marc import PlainRecord, plain_bibliographic
from gateway.z3950.retrieval import Presentation, bibliographic, bibliographic_marcxml, marcxml
from protocols import xmltext
from protocols.oai import MetadataFormat

__all__ = ["FORMATS", "RENDERERS", "render"]

MARC_NS = "http://www.loc.gov/MARC21/slim"
MARC_SCHEMA = "http://www.loc.gov/standards/marcxml/schema/MARC21slim.xsd"
OAI_DC_NS = "http://www.openarchives.org/OAI/2.0/oai_dc/"
DC_NS = "http://purl.org/dc/elements/1.1/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

FORMATS = (
    MetadataFormat("oai_dc", "http://www.openarchives.org/OAI/2.0/oai_dc.xsd", OAI_DC_NS),
    MetadataFormat("marc21", MARC_SCHEMA, MARC_NS),
    MetadataFormat("marc21_holdings", MARC_SCHEMA, MARC_NS),
)

_TYPES = {"a": "Text", "t": "Text", "c": "Text", "d": "Text", "e": "Image", "f": "Image",
          "g": "MovingImage", "i": "Sound", "j": "Sound", "k": "StillImage", "m": "Software",
          "o": "Collection", "p": "Collection", "r": "PhysicalObject"}


def marc21(record: CatalogueRecord, view: Presentation) -> bytes:
    """The bibliographic record as MARCXML (written as text, see
    :func:`gateway.z3950.retrieval.bibliographic_marcxml`)."""
    return bibliographic_marcxml(record, "F")


def marc21_holdings(record: CatalogueRecord, view: Presentation) -> bytes:
    """MARCXML with live holdings and availability (852 per item), as Z39.50 and SRU send it."""
    return marcxml(record, "F", view)


def _subfields(marc: pymarc.Record | PlainRecord, tags: tuple[str, ...], codes: str) -> list[str]:
    values = []
    for field in marc.get_fields(*tags):
        text = " ".join(s.value for s in field.subfields if s.code in codes).strip()
        text = text.rstrip(" /:;,.=") if text else text
        if text:
            values.append(text)
    return values


def oai_dc(record: CatalogueRecord, view: Presentation) -> bytes | etree._Element:
    """Unqualified Dublin Core from the MARC record: read without pymarc where the stored
    record allows (:mod:`gateway.z3950.plain_marc`), written as text byte for byte what lxml
    writes (lxml builds what text cannot carry, and refuses it)."""
    marc = plain_bibliographic(record, "F") or bibliographic(record, "F")
    leader = str(marc.leader)
    control = {f.tag: f.data or "" for f in marc.fields if f.is_control_field()}
    fields = [
        ("title", _subfields(marc, ("245",), "abnp")),
        ("creator", _subfields(marc, ("100", "110", "111"), "abcdq")),
        ("contributor", _subfields(marc, ("700", "710", "711"), "abcdq")),
        ("subject", _subfields(marc, ("600", "610", "650", "651"), "abcdvxyz")),
        ("description", _subfields(marc, ("520",), "a")),
        ("publisher", _subfields(marc, ("260", "264"), "b")),
        ("date", _subfields(marc, ("260", "264"), "c")),
        ("type", [_TYPES[leader[6]]] if len(leader) > 6 and leader[6] in _TYPES else []),
        ("format", _subfields(marc, ("300",), "a")),
        ("identifier", [f"ISBN {v}" for v in _subfields(marc, ("020",), "a")]
         + [f"ISSN {v}" for v in _subfields(marc, ("022",), "a")]
         + [record.local_id]),
        ("language", [control["008"][35:38]] if len(control.get("008", "")) >= 38 else []),
    ]
    children = [(name, value) for name, values in fields for value in dict.fromkeys(values)]
    text = xmltext.with_children(_OAI_DC_HEAD, "</oai_dc:dc>",
                                 [(f"dc:{name}", value) for name, value in children])
    return text if text is not None else _oai_dc_tree(children)


def _oai_dc_tree(children: list[tuple[str, str]]) -> etree._Element:
    root = etree.Element(f"{{{OAI_DC_NS}}}dc", nsmap={"oai_dc": OAI_DC_NS, "dc": DC_NS,
                                                        "xsi": XSI_NS})
    root.set(f"{{{XSI_NS}}}schemaLocation",
             f"{OAI_DC_NS} http://www.openarchives.org/OAI/2.0/oai_dc.xsd")
    for name, value in children:
        etree.SubElement(root, f"{{{DC_NS}}}{name}").text = value
    return root


_OAI_DC_HEAD = etree.tostring(_oai_dc_tree([]), encoding="unicode").removesuffix("/>") + ">"
"""``<oai_dc:dc xmlns:...>`` as lxml writes it."""


RENDERERS: dict[str, Callable[[CatalogueRecord, Presentation], bytes | etree._Element]] = {
    "oai_dc": oai_dc, "marc21": marc21, "marc21_holdings": marc21_holdings,
}


def render(prefix: str, record: CatalogueRecord, view: Presentation) -> bytes | etree._Element:
    """The record in the format named by ``prefix`` (one of FORMATS)."""
    return RENDERERS[prefix](record, view)
