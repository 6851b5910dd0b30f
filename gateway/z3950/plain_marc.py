# -*- test-case-name: tests.gateway.test_records_marcxml_text -*-
"""The bibliographic record read from the stored bytes without pymarc, for the crosswalks.

Dublin Core (SRU ``srw_dc``, OAI-PMH ``oai_dc``) reads a few fields of the record; parsing it
with pymarc costs more than the whole crosswalk. For a stored record in the plain form
(:func:`gateway.z3950.retrieval._stored_fields`: what the importer and the demo write, where the
bytes are exactly what pymarc would read and write) :func:`plain_bibliographic` gives the same
fields, subfields and leader as :func:`~gateway.z3950.retrieval.bibliographic` through the part
of pymarc's record interface the crosswalks use (``get_fields``, ``fields``, ``leader``, a
field's ``tag``, ``data``, ``subfields``, ``get_subfields``, ``is_control_field``); None for
anything else, which then takes pymarc's way.
"""

from __future__ import annotations

from pymarc import Subfield

from gateway.domain.holdings import CatalogueRecord
from gateway.z3950.retrieval import BRIEF_TAGS, HOLDINGS_TAGS, _stored_fields

__all__ = ["PlainField", "PlainRecord", "plain_bibliographic"]


class PlainField:
    """One field: ``data`` for a control field, ``indicators`` and ``subfields`` otherwise."""

    __slots__ = ("data", "indicators", "subfields", "tag")

    def __init__(self, tag: str, data: str | None, indicators: str = "",
                 subfields: list[Subfield] | None = None) -> None:
        self.tag = tag
        self.data = data
        self.indicators = indicators
        self.subfields = subfields or []

    def is_control_field(self) -> bool:
        return self.data is not None

    def get_subfields(self, *codes: str) -> list[str]:
        return [sf.value for sf in self.subfields if sf.code in codes]


class PlainRecord:
    """The leader (leader/09 ``a``, as :func:`bibliographic` sets it) and the fields."""

    __slots__ = ("fields", "leader")

    def __init__(self, leader: str, fields: list[PlainField]) -> None:
        self.leader = leader
        self.fields = fields

    def get_fields(self, *tags: str) -> list[PlainField]:
        if not tags:
            return list(self.fields)
        return [f for f in self.fields if f.tag in tags]


def plain_bibliographic(record: CatalogueRecord, element_set: str = "F") -> PlainRecord | None:
    """:func:`~gateway.z3950.retrieval.bibliographic` without pymarc, or None when the stored
    record is not in the plain form."""
    stored = _stored_fields(record.marc)
    if stored is None:
        return None
    brief = element_set == "B"
    fields = []
    for tag, body in stored:
        if tag in HOLDINGS_TAGS or (brief and tag not in BRIEF_TAGS):
            continue
        value = body[:-1].decode("utf-8")
        if tag < "010" and tag.isdigit():
            fields.append(PlainField(tag, value))
        else:
            parts = value.split("\x1f")
            fields.append(PlainField(tag, None, parts[0],
                                     [Subfield(p[0], p[1:]) for p in parts[1:]]))
    leader = record.marc[:24].decode("ascii")
    return PlainRecord(leader[:9] + "a" + leader[10:], fields)
