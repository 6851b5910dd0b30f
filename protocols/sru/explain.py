# -*- test-case-name: tests.protocols.test_sru_response -*-
"""The ZeeRex explain record, built from the same profile and limits that searches obey.

The gateway will describe its SRU endpoint once (L{ServerInfo}, the record schemas it can
render) and build the record with L{explain_record} from its L{CQLProfile} and
L{RequestLimits}; L{protocols.sru.response.explain_response} wraps it. Because the indexes,
relations, sort keys and limits listed here are the very values L{protocols.sru.profile.resolve}
and L{protocols.sru.request.parse_request} enforce, explain cannot promise what a search refuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from .profile import CQLProfile
from .request import RequestLimits

__all__ = ["ZEEREX_NS", "RecordSchema", "ServerInfo", "explain_record"]

ZEEREX_NS = "http://explain.z3950.org/dtd/2.0/"


@dataclass(frozen=True)
class ServerInfo:
    """Where the endpoint is and what it holds, as brokers read it from explain."""

    host: str
    port: int
    database: str
    title: str
    description: str = ""
    versions: Sequence[str] = ("1.1", "1.2", "2.0")


@dataclass(frozen=True)
class RecordSchema:
    """A record schema the server renders: its identifier, short name and title."""

    identifier: str
    name: str
    title: str
    sortable: bool = False


def explain_record(server: ServerInfo, profile: CQLProfile, schemas: Sequence[RecordSchema],
                   limits: RequestLimits, version: str = "1.2") -> etree._Element:
    """The C{<explain>} element (ZeeRex 2.0) for this server, profile, schemas and limits."""
    def sub(parent: etree._Element, tag: str, text: object = None, /,
            **attributes: str) -> etree._Element:
        element = etree.SubElement(parent, f"{{{ZEEREX_NS}}}{tag}", attributes)
        if text is not None:
            element.text = str(text)
        return element

    root = etree.Element(f"{{{ZEEREX_NS}}}explain", nsmap={None: ZEEREX_NS})
    info = sub(root, "serverInfo", protocol="SRU", version=version, transport="http",
               method="GET POST")
    sub(info, "host", server.host)
    sub(info, "port", server.port)
    sub(info, "database", server.database)

    database = sub(root, "databaseInfo")
    sub(database, "title", server.title, lang="en", primary="true")
    if server.description:
        sub(database, "description", server.description, lang="en", primary="true")

    index_info = sub(root, "indexInfo")
    used_prefixes = sorted({name.split(".", 1)[0] for name in profile.indexes})
    for prefix in used_prefixes:
        uri = profile.context_sets.get(prefix)
        if uri is not None:
            sub(index_info, "set", name=prefix, identifier=uri)
    for name in sorted(profile.indexes):
        capability = profile.indexes[name]
        prefix, local = name.split(".", 1)
        index = sub(index_info, "index", search="true",
                    scan="true" if capability.scannable else "false",
                    sort="true" if capability.sortable else "false")
        sub(index, "title", capability.title or local, lang="en")
        sub(sub(index, "map"), "name", local, set=prefix)
        config = sub(index, "configInfo")
        for relation in sorted(capability.relations):
            sub(config, "supports", relation, type="relation")
        for modifier in sorted(capability.relation_modifiers):
            sub(config, "supports", modifier, type="relationModifier")

    schema_info = sub(root, "schemaInfo")
    for schema in schemas:
        element = sub(schema_info, "schema", identifier=schema.identifier, name=schema.name,
                      retrieve="true", sort="true" if schema.sortable else "false")
        sub(element, "title", schema.title, lang="en")

    config = sub(root, "configInfo")
    sub(config, "default", limits.default_maximum_records, type="numberOfRecords")
    sub(config, "setting", limits.maximum_records, type="maximumRecords")
    sub(config, "setting", limits.maximum_terms, type="maximumTerms")
    if schemas:
        sub(config, "default", schemas[0].identifier, type="retrieveSchema")
    for boolean in sorted(profile.booleans):
        sub(config, "supports", boolean, type="booleanModifier")
    if profile.proximity is not None:
        sub(config, "supports", type="proximity")
        for unit in sorted(profile.proximity.units):
            sub(config, "supports", unit, type="proximityModifier")
    if profile.max_sort_keys:
        sub(config, "supports", type="sort")
        sub(config, "setting", profile.max_sort_keys, type="maximumSortKeys")
    return root
