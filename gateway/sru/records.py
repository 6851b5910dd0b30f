# -*- test-case-name: tests.gateway.test_sru_clients,tests.gateway.test_sru_http -*-
"""The record schemas SRU serves, rendered from the same records Z39.50 presents.

MARCXML and the OPAC schema reuse :mod:`gateway.z3950.retrieval` (live holdings in the peer's
layout; ``<opacRecord>`` as YAZ's ``opacxml.xsd`` has it, which is what Index Data's SRU
front ends hand to ReShare). Dublin Core is the SRU ``srw_dc`` record: the bibliographic fields
a discovery layer shows, read from the MARC record without its holdings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pymarc
from lxml import etree

from gateway.domain.holdings import CatalogueRecord
from gateway.z3950 import retrieval as render
from gateway.z3950.plain_marc import PlainRecord, plain_bibliographic
from protocols import xmltext
from protocols.sru.explain import RecordSchema
from protocols.xmltext import WellFormed

SRW_DC_NS = "info:srw/schema/1/dc-schema"
DC_NS = "http://purl.org/dc/elements/1.1/"


@dataclass(frozen=True)
class Schema:
    """A record schema: its explain entry, the names it answers to and its builder."""

    info: RecordSchema
    aliases: tuple[str, ...]
    build: Callable[[CatalogueRecord, render.Presentation], bytes]


def _strip(text: str) -> str:
    return text.strip().rstrip(" /:;,.").strip()


def dublin_core(record: CatalogueRecord, view: render.Presentation) -> bytes:
    """``<srw_dc:dc>`` with title, creators, subjects, publisher, date, identifiers, language.

    Read without pymarc where the stored record allows (:mod:`gateway.z3950.plain_marc`) and
    written as text, byte for byte what lxml writes (lxml builds what text cannot carry, and
    refuses it)."""
    marc = plain_bibliographic(record, "F") or render.bibliographic(record, "F")
    children: list[tuple[str, str]] = []

    def add(name: str, text: str | None) -> None:
        if text and _strip(text):
            children.append((name, _strip(text)))

    for f in marc.get_fields("245"):
        add("title", " ".join(f.get_subfields("a", "b", "n", "p")))
    for f in marc.get_fields("100", "110", "111", "700", "710", "711"):
        add("creator" if f.tag.startswith("1") else "contributor",
            " ".join(f.get_subfields("a", "b", "c", "d", "q")))
    for f in marc.get_fields("600", "610", "611", "630", "650", "651"):
        add("subject", " -- ".join(f.get_subfields("a", "b", "x", "y", "z", "v")))
    for f in marc.get_fields("520"):
        add("description", " ".join(f.get_subfields("a")))
    for f in marc.get_fields("260", "264"):
        for value in f.get_subfields("b"):
            add("publisher", value)
        for value in f.get_subfields("c"):
            add("date", value)
    for tag, prefix in (("020", "URN:ISBN:"), ("022", "URN:ISSN:")):
        for f in marc.get_fields(tag):
            for value in f.get_subfields("a"):
                add("identifier", prefix + value.split()[0] if value.split() else "")
    for f in marc.get_fields("001"):
        add("identifier", f.data)
    language = _language(marc)
    add("language", language)
    add("type", "Text")
    text = xmltext.with_children(_DC_HEAD, "</srw_dc:dc>",
                                 [(f"dc:{name}", value) for name, value in children])
    return text if text is not None else _dublin_core_tree(children)


def _dublin_core_tree(children: list[tuple[str, str]]) -> WellFormed:
    root = etree.Element(f"{{{SRW_DC_NS}}}dc", nsmap={"srw_dc": SRW_DC_NS, "dc": DC_NS})
    for name, value in children:
        etree.SubElement(root, f"{{{DC_NS}}}{name}").text = value
    return WellFormed(etree.tostring(root, encoding="utf-8"))


_DC_HEAD = _dublin_core_tree([]).decode("utf-8").removesuffix("/>") + ">"
"""``<srw_dc:dc xmlns:...>`` as lxml writes it."""


def _language(marc: pymarc.Record | PlainRecord) -> str | None:
    fixed = marc.get_fields("008")
    if fixed and fixed[0].data and len(fixed[0].data) >= 38:
        code = fixed[0].data[35:38].strip()
        if code and code != "|||":
            return code
    return None


def _marcxml(record: CatalogueRecord, view: render.Presentation) -> bytes:
    return render.marcxml(record, "F", view)


def _opac(record: CatalogueRecord, view: render.Presentation) -> bytes:
    return render.opac_xml(record, "F", view)


SCHEMAS: tuple[Schema, ...] = (
    Schema(RecordSchema("info:srw/schema/1/marcxml-v1.1", "marcxml", "MARC 21 slim (MARCXML)",
                        sortable=False),
           ("marcxml", "marc21", "marc", "info:srw/schema/1/marcxml-v1.1",
            "http://www.loc.gov/marc21/slim", "http://www.loc.gov/MARC21/slim"), _marcxml),
    Schema(RecordSchema("info:srw/schema/1/dc-v1.1", "dc", "Dublin Core"),
           ("dc", "info:srw/schema/1/dc-v1.1", "info:srw/schema/1/dc-schema",
            "http://purl.org/dc/elements/1.1/"), dublin_core),
    Schema(RecordSchema("http://www.indexdata.com/opac", "opac",
                        "OPAC record with holdings and availability (YAZ opacxml)"),
           ("opac", "opacxml", "http://www.indexdata.com/opac", "info:srw/schema/1/opac"),
           _opac),
)
"""Every schema served; the first is the default."""

_BY_NAME = {alias.lower(): schema for schema in SCHEMAS for alias in schema.aliases}


def schema_named(name: str | None) -> Schema | None:
    """The schema a ``recordSchema`` value names (case-insensitive); the default for None."""
    if name is None:
        return SCHEMAS[0]
    return _BY_NAME.get(name.strip().lower())


__all__ = ["SCHEMAS", "Schema", "dublin_core", "schema_named"]
