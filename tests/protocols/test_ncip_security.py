"""Parser hardening: XXE, entity expansion, DOCTYPE policy, size and depth limits.

Every refusal must be an NCIPSyntaxError (answered with Invalid Message Syntax Error) and must
happen without reading files, touching the network, or spending noticeable time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lxml import etree

from protocols.ncip import NCIPSyntaxError, parse_message, parse_xml, render_problem, safexml
from protocols.ncip.safexml import PARSER

NS = "http://www.niso.org/2008/ncip"
BODY = '<NCIPMessage xmlns="' + NS + '"><LookupUser><UserId><UserIdentifierValue>{v}'
BODY_END = "</UserIdentifierValue></UserId></LookupUser></NCIPMessage>"


def _refused(raw: bytes) -> bytes:
    """Parse C{raw}, expect a refusal, and return the rendered Problem reply."""
    with pytest.raises(NCIPSyntaxError) as info:
        parse_message(raw)
    reply = render_problem(info.value, None)
    assert b"Invalid Message Syntax Error" in reply
    return reply


def test_parser_never_expands_entities() -> None:
    """The module parser itself leaves entity references unexpanded (as Entity nodes)."""
    doc = etree.fromstring(b'<!DOCTYPE a [<!ENTITY e "EXPANDED">]><a>&e;</a>', PARSER)
    assert b"EXPANDED" not in etree.tostring(doc)
    assert any(True for _ in doc.iter(etree.Entity))


def test_post_parse_checks_catch_what_the_prescan_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the DOCTYPE pre-scan disabled, the DTD and entity checks after parsing still refuse."""
    monkeypatch.setattr(safexml, "_strip_doctype", lambda data, notes: data)
    with pytest.raises(NCIPSyntaxError) as info:
        parse_xml(b'<!DOCTYPE a [<!ENTITY e "x">]><NCIPMessage>&e;</NCIPMessage>')
    assert info.value.reason == "DOCTYPE slipped through"


def test_xxe_local_file_reads_nothing(tmp_path: Path) -> None:
    """An external entity pointing at a local file is refused and its content never appears."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    raw = (
        f'<?xml version="1.0"?><!DOCTYPE NCIPMessage [<!ENTITY x SYSTEM "file://{secret}">]>'
        + BODY.format(v="&x;")
        + BODY_END
    ).encode()
    reply = _refused(raw)
    assert b"TOP-SECRET-MARKER" not in reply


def test_xxe_network_entity_refused() -> None:
    """An external entity over HTTP is refused before any parsing (no network access)."""
    raw = (
        '<!DOCTYPE NCIPMessage [<!ENTITY x SYSTEM "http://127.0.0.1:9/evil">]>'
        + BODY.format(v="&x;")
        + BODY_END
    ).encode()
    _refused(raw)


def test_xxe_hidden_behind_standard_public_id() -> None:
    """The standard NCIP public id does not make an internal subset with entities acceptable."""
    raw = (
        b'<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1.0//EN" '
        b'"http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd" '
        b'[<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<NCIPMessage version="1"><LookupUser><VisibleUserId><VisibleUserIdentifier>&x;'
        b"</VisibleUserIdentifier></VisibleUserId></LookupUser></NCIPMessage>"
    )
    reply = _refused(raw)
    assert b"root:" not in reply


def test_parameter_entity_refused() -> None:
    """Parameter entities (blind XXE via an external DTD) are refused."""
    raw = (
        '<!DOCTYPE NCIPMessage [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>'
        + BODY.format(v="1")
        + BODY_END
    ).encode()
    _refused(raw)


def test_billion_laughs_refused_quickly() -> None:
    """The classic exponential entity bomb is refused without expansion."""
    entities = '<!ENTITY l0 "ha">' + "".join(
        f'<!ENTITY l{i} "' + f"&l{i - 1};" * 10 + '">' for i in range(1, 10)
    )
    raw = (f"<!DOCTYPE NCIPMessage [{entities}]>" + BODY.format(v="&l9;") + BODY_END).encode()
    started = time.perf_counter()
    _refused(raw)
    assert time.perf_counter() - started < 1.0


def test_quadratic_blowup_refused_quickly() -> None:
    """One large entity referenced many times (quadratic blowup) is refused without expansion."""
    raw = (
        '<!DOCTYPE NCIPMessage [<!ENTITY a "'
        + "x" * 20000
        + '">]>'
        + BODY.format(v="&a;" * 5000)
        + BODY_END
    ).encode()
    started = time.perf_counter()
    with pytest.raises(NCIPSyntaxError):
        parse_message(raw, max_bytes=len(raw) + 1)
    assert time.perf_counter() - started < 1.0


def test_undefined_entity_reference_refused() -> None:
    """An entity reference with no declaration is not well-formed: refused."""
    _refused((BODY.format(v="&nbsp;") + BODY_END).encode())


def test_deep_nesting_refused_quickly() -> None:
    """100,000-deep nesting is refused fast, by the size cap and by libxml2's depth limit."""
    depth = 100_000
    raw = ("<NCIPMessage>" + "<a>" * depth + "</a>" * depth + "</NCIPMessage>").encode()
    started = time.perf_counter()
    with pytest.raises(NCIPSyntaxError) as by_size:
        parse_message(raw)
    assert by_size.value.reason == "body too large"
    with pytest.raises(NCIPSyntaxError) as by_depth:
        parse_message(raw, max_bytes=len(raw))
    assert by_depth.value.reason == "not well-formed"
    assert time.perf_counter() - started < 2.0


def test_size_cap_checked_before_parsing() -> None:
    """A body over the cap is refused even if it is valid NCIP."""
    raw = (BODY.format(v="1" * 5000) + BODY_END).encode()
    parse_message(raw)
    with pytest.raises(NCIPSyntaxError) as info:
        parse_message(raw, max_bytes=1000)
    assert info.value.reason == "body too large"


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1.0//EN" '
        '"http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">',
        '<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1//EN" '
        '"http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">',
        '<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1.01//EN" '
        '"http://ncip.example.com/documentation/ncip_v1_01.dtd">',
        '<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1.0//EN" '
        '"http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd"[]>',
        '<!DOCTYPE NCIPMessage SYSTEM "ncip_v1_0.dtd">',
    ],
)
def test_standard_ncip1_doctypes_are_stripped(doctype: str) -> None:
    """Every standard NCIP 1 DOCTYPE spelling seen in the field is accepted (and ignored)."""
    raw = (
        f'<?xml version="1.0"?>\n{doctype}\n<NCIPMessage version="v1"><DeleteItem><UniqueItemId>'
        "<ItemIdentifierValue>1</ItemIdentifierValue></UniqueItemId></DeleteItem></NCIPMessage>"
    ).encode()
    document = parse_xml(raw)
    assert document.notes == ("doctype-stripped",)


@pytest.mark.parametrize(
    "doctype",
    [
        "<!DOCTYPE NCIPMessage>",
        '<!DOCTYPE NCIPMessage SYSTEM "http://evil.example/x.dtd">',
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "xhtml1-strict.dtd">',
        '<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1.0//EN" "ncip_v1_0.dtd" '
        "[<!ELEMENT NCIPMessage ANY>]>",
    ],
)
def test_other_doctypes_refused(doctype: str) -> None:
    """Any DOCTYPE that is not the bare standard NCIP one is refused."""
    _refused((doctype + BODY.format(v="1") + BODY_END).encode())


def test_two_doctypes_refused() -> None:
    """A standard DOCTYPE followed by a second one is refused."""
    standard = '<!DOCTYPE NCIPMessage SYSTEM "ncip_v1_0.dtd">'
    _refused((standard + "<!DOCTYPE x [<!ENTITY a 'b'>]>" + BODY.format(v="1") + BODY_END).encode())


@pytest.mark.parametrize("declaration", ["<!doctype NCIPMessage>", "<!DocType NCIPMessage>",
                                         "<!entity x 'y'>", "<!EnTiTy x 'y'>"])
def test_declarations_found_in_any_case(declaration: str) -> None:
    """The DOCTYPE/ENTITY pre-scan matches every spelling case, as lxml's own checks would."""
    with pytest.raises(NCIPSyntaxError) as info:
        parse_xml((declaration + BODY.format(v="1") + BODY_END).encode())
    assert info.value.reason in ("DOCTYPE refused", "entity declaration")
