# -*- test-case-name: tests.gateway.test_upstream_sru_reader -*-
"""The origin side of SRU: reading a server's searchRetrieve, scan and explain responses.

Pure and safe: bytes in (parsed by lxml with entities, DTDs and the network off), typed values
out. SRU 1.1/1.2 (``http://www.loc.gov/zing/srw/``) and 2.0 namespaces are read alike (by local
name). A response that is not one raises :class:`SruResponseError`; an answer that is a
diagnostic instead of results raises :class:`SruDiagnosticAnswer`. The upstream SRU backend
(``gateway/backends/upstream/sru/``) maps both to domain errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

__all__ = [
    "ExplainInfo",
    "ScanTermOut",
    "SearchOutcome",
    "SruDiagnostic",
    "SruDiagnosticAnswer",
    "SruResponseError",
    "read_explain",
    "read_scan",
    "read_search",
]

PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                         dtd_validation=False, huge_tree=False, remove_comments=True)
_DIAGNOSTIC_PREFIX = "info:srw/diagnostic/1/"


class SruResponseError(ValueError):
    """The answer is not the SRU response asked for (not XML, HTML from a proxy, the wrong
    root, a count that is not one)."""


class SruDiagnosticAnswer(Exception):
    """The server answered with a diagnostic instead of what was asked."""

    def __init__(self, diagnostic: SruDiagnostic) -> None:
        super().__init__(diagnostic.uri)
        self.diagnostic = diagnostic


@dataclass(frozen=True)
class SruDiagnostic:
    """One diagnostic of the upstream: its number (0 for a URI outside the SRU set), URI,
    details and message."""

    number: int
    uri: str
    details: str = ""
    message: str = ""


@dataclass(frozen=True)
class SearchOutcome:
    """A searchRetrieve answer: the hit count, each record's data element (or None for a
    surrogate diagnostic in its place), and the upstream's result set id, if it kept one."""

    count: int
    records: tuple[etree._Element | None, ...]
    result_set_id: str | None = None
    result_set_ttl: int | None = None


@dataclass(frozen=True)
class ScanTermOut:
    """One scanned term as the upstream listed it."""

    value: str
    records: int
    display: str | None = None


@dataclass(frozen=True)
class ExplainInfo:
    """What the explain record says: the index names (``set.name``) that can be searched,
    those that can be sorted by, and the server's maximumRecords limit if it states one."""

    searchable: frozenset[str]
    sortable: frozenset[str]
    maximum_records: int | None = None


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _child(element: etree._Element, name: str) -> etree._Element | None:
    for child in element:
        if _local(child) == name:
            return child
    return None


def _text(element: etree._Element, name: str) -> str | None:
    child = _child(element, name)
    return (child.text or "").strip() if child is not None else None


def _parse(data: bytes, root_name: str) -> etree._Element:
    try:
        root = etree.fromstring(data, PARSER)
    except (etree.XMLSyntaxError, ValueError) as e:
        raise SruResponseError(f"the answer is not XML: {e}") from None
    if root is None or _local(root) != root_name:
        got = _local(root) if root is not None else "nothing"
        raise SruResponseError(f"the answer is {got!r}, not {root_name!r}")
    return root


def _diagnostic(element: etree._Element) -> SruDiagnostic:
    uri = _text(element, "uri") or ""
    number = 0
    if uri.startswith(_DIAGNOSTIC_PREFIX) and uri[len(_DIAGNOSTIC_PREFIX):].isdigit():
        number = int(uri[len(_DIAGNOSTIC_PREFIX):])
    return SruDiagnostic(number, uri, _text(element, "details") or "",
                         _text(element, "message") or "")


def _diagnostics(root: etree._Element) -> list[SruDiagnostic]:
    group = _child(root, "diagnostics")
    if group is None:
        return []
    return [_diagnostic(d) for d in group if _local(d) == "diagnostic"]


def _integer(text: str | None, what: str) -> int:
    if text is None or not text.isdigit():
        raise SruResponseError(f"the {what} is {text!r}, not a count")
    return int(text)


def read_search(data: bytes) -> SearchOutcome:
    """A searchRetrieveResponse; a diagnostic without a count or records raises
    :class:`SruDiagnosticAnswer`."""
    root = _parse(data, "searchRetrieveResponse")
    diagnostics = _diagnostics(root)
    count_text = _text(root, "numberOfRecords")
    if diagnostics and (count_text is None or _child(root, "records") is None):
        raise SruDiagnosticAnswer(diagnostics[0])
    count = _integer(count_text, "numberOfRecords")
    records: list[etree._Element | None] = []
    group = _child(root, "records")
    for record in group if group is not None else ():
        if _local(record) != "record":
            continue
        data_element = _child(record, "recordData")
        content = None
        if data_element is not None:
            content = next((c for c in data_element if isinstance(c.tag, str)), None)
            if content is None and (data_element.text or "").strip():
                # recordPacking=string: the record is escaped text inside recordData
                content = _parse_packed(data_element.text or "")
        records.append(content)
    ttl = _text(root, "resultSetIdleTime")
    return SearchOutcome(count, tuple(records), _text(root, "resultSetId") or None,
                         int(ttl) if ttl and ttl.isdigit() else None)


def _parse_packed(text: str) -> etree._Element | None:
    try:
        return etree.fromstring(text.encode("utf-8"), PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return None


def read_scan(data: bytes) -> list[ScanTermOut]:
    """A scanResponse's terms, in the server's order; a diagnostic without terms raises
    :class:`SruDiagnosticAnswer`."""
    root = _parse(data, "scanResponse")
    group = _child(root, "terms")
    diagnostics = _diagnostics(root)
    if group is None and diagnostics:
        raise SruDiagnosticAnswer(diagnostics[0])
    terms = []
    for term in group if group is not None else ():
        if _local(term) != "term":
            continue
        value = _text(term, "value")
        if value is None:
            raise SruResponseError("a scanned term without a value")
        terms.append(ScanTermOut(value, _integer(_text(term, "numberOfRecords") or "0",
                                                 "numberOfRecords"),
                                 _text(term, "displayTerm") or None))
    return terms


def read_explain(data: bytes) -> ExplainInfo:
    """The index names and limits of an explainResponse's ZeeRex record."""
    root = _parse(data, "explainResponse")
    diagnostics = _diagnostics(root)
    explain = next((e for e in root.iter() if _local(e) == "explain"), None)
    if explain is None:
        if diagnostics:
            raise SruDiagnosticAnswer(diagnostics[0])
        raise SruResponseError("the explain response holds no ZeeRex record")
    searchable: set[str] = set()
    sortable: set[str] = set()
    for index in (e for e in explain.iter() if _local(e) == "index"):
        for name in (n for n in index if _local(n) == "map"
                     for n in n if _local(n) == "name"):
            full = f"{name.get('set')}.{(name.text or '').strip()}" if name.get("set") \
                else (name.text or "").strip()
            if index.get("search", "true") != "false":
                searchable.add(full)
            if index.get("sort") == "true":
                sortable.add(full)
    maximum = None
    for setting in (e for e in explain.iter() if _local(e) in ("setting", "default")):
        if setting.get("type") == "maximumRecords" and (setting.text or "").strip().isdigit():
            maximum = int((setting.text or "").strip())
    return ExplainInfo(frozenset(searchable), frozenset(sortable), maximum)
