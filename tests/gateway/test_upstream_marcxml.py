"""MARCXML records read from the parsed tree (opac_holdings.marc_from_xml) against pymarc's
own SAX parse of the serialised element, the reference: the same record, field for field,
or the same failure, for Koha's records and for generated odd ones (namespaces, missing
attributes, comments, entities, nested records, CDATA, mixed text)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pymarc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.backends.upstream.opac_holdings import marc_from_xml
from gateway.backends.upstream.z3950.catalogue import SAFE_XML
from protocols.sru.client import PARSER

MARC_NS = "http://www.loc.gov/MARC21/slim"


def _reference(element: etree._Element) -> pymarc.Record | None:
    """What marc_from_xml gave before: pymarc's SAX parse of the serialised element."""
    records = pymarc.parse_xml_to_array(io.BytesIO(etree.tostring(element)))
    return records[0] if records and records[0] is not None else None


def _shape(record: pymarc.Record | None) -> Any:
    if record is None:
        return None
    return (str(record.leader), [
        (f.tag, f.data) if f.is_control_field() else
        (f.tag, tuple(f.indicators or ()), [(s.code, s.value) for s in f.subfields])
        for f in record.fields])


def _outcome(read: Any, element: etree._Element) -> Any:
    try:
        return "ok", _shape(read(element))
    except Exception as exc:  # noqa: BLE001 - the failure's kind is what must agree
        return "error", type(exc).__name__


def _same(xml: str) -> None:
    """Both readers agree on the element as the SRU client and the Z39.50 catalogue parse it
    (the latter keeps comments and processing instructions)."""
    for parser in (PARSER, SAFE_XML):
        element = etree.fromstring(xml.encode("utf-8"), parser)
        assert _outcome(marc_from_xml, element) == _outcome(_reference, element), xml


def test_a_plain_record() -> None:
    _same(f'<record xmlns="{MARC_NS}"><leader>00000nam a2200000 a 4500</leader>'
          '<controlfield tag="001">42</controlfield>'
          '<datafield tag="245" ind1="1" ind2="0"><subfield code="a">A title &amp; more'
          '</subfield><subfield code="c">by me</subfield></datafield>'
          '<datafield tag="952" ind1=" " ind2=" "><subfield code="p">B1</subfield>'
          '</datafield></record>')


TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
               max_size=8).map(lambda t: "".join(c for c in t if c.isprintable() or c in "\t\n"))
ESCAPED = TEXT.map(lambda t: t.replace("&", "&amp;").replace("<", "&lt;"))
MIXED = st.one_of(ESCAPED, st.sampled_from(["<!-- c -->x", "a<![CDATA[<b>]]>", "&#233;",
                                            "&unknown;", "<?pi x?>", " ", "<b>in</b>after",
                                            "<i/>t<j>u</j>v"]))
PREFIX = st.sampled_from(["", "marc:", "x:"])


def _attr(name: str) -> st.SearchStrategy[str]:
    present = ESCAPED.map(lambda v: f' {name}="{v[:3]}"')
    return st.one_of(st.just(""), present, present, present, present)


SUBFIELD = st.tuples(PREFIX, _attr("code"), MIXED).map(
    lambda t: f"<{t[0]}subfield{t[1]}>{t[2]}</{t[0]}subfield>")
FIELD = st.one_of(
    st.tuples(PREFIX, _attr("tag"), MIXED).map(
        lambda t: f"<{t[0]}controlfield{t[1]}>{t[2]}</{t[0]}controlfield>"),
    st.tuples(PREFIX, _attr("tag"), _attr("ind1"), _attr("ind2"),
              st.lists(st.one_of(SUBFIELD, MIXED), max_size=3)).map(
        lambda t: f"<{t[0]}datafield{t[1]}{t[2]}{t[3]}>{''.join(t[4])}</{t[0]}datafield>"),
    st.sampled_from(["<leader>00000nam a2200000 a 4500</leader>", "<leader>short</leader>",
                     "<record><leader>00000nam a2200000 a 4500</leader></record>"]))


@given(prefix=PREFIX, fields=st.lists(st.one_of(FIELD, MIXED), max_size=6))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_records_read_as_pymarc_reads_them(prefix: str, fields: list[str]) -> None:
    xml = (f'<{prefix}record xmlns="{MARC_NS}" xmlns:marc="{MARC_NS}" xmlns:x="urn:other">'
           f'{"".join(fields)}</{prefix}record>')
    try:
        etree.fromstring(xml.encode("utf-8"), SAFE_XML)
    except etree.XMLSyntaxError:
        return
    _same(xml)


KOHA_SAMPLE = Path("/work/shared/lms/koha-zebra")


def test_koha_sample_records(tmp_path: Path) -> None:
    """Koha's sample MARCXML (made by its recipe's make-sample.py) reads the same way."""
    import subprocess
    import sys
    script = KOHA_SAMPLE / "make-sample.py"
    if not script.is_file():
        import pytest
        pytest.skip(f"{script} not found (../shared)")
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "sample.xml")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    files = list(tmp_path.glob("*.xml"))
    if done.returncode != 0 or not files:
        import pytest
        pytest.skip(f"make-sample.py gave no sample: {done.stderr[-300:]}")
    root = etree.parse(str(files[0]), PARSER).getroot()
    records = [e for e in root.iter("{*}record")]
    assert records
    for element in records:
        assert _outcome(marc_from_xml, element) == _outcome(_reference, element)
        assert _shape(marc_from_xml(element)) is not None


def test_text_around_child_elements_and_comments() -> None:
    _same(f'<record xmlns="{MARC_NS}"><leader>00000nam a2200000 a 4500</leader>'
          '<controlfield tag="001">4<!-- a comment -->2</controlfield>'
          '<datafield tag="245" ind1="1"><subfield code="a"><b>in</b>after</subfield>'
          '<subfield code="b">x<?pi y?>z</subfield></datafield></record>')
    _same(f'<record xmlns="{MARC_NS}"><datafield tag="245" ind1="1"><subfield code="a">'
          '<b>in</b>after</subfield></datafield></record>')


def test_a_subfield_without_code_fails_both_ways() -> None:
    _same(f'<record xmlns="{MARC_NS}"><datafield tag="245"><subfield>x</subfield>'
          '</datafield></record>')
