# -*- test-case-name: tests.gateway.upstream_ncip.test_settings_and_shapes -*-
"""``[backend.ncip]`` checked with its paths; the request each profile writes; the reply
reader's tolerance."""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from lxml import etree
from twisted.internet.task import Clock

from gateway.backends.registry import BackendUnavailable, registered_kinds
from gateway.backends.upstream.ncip.backend import backend
from gateway.backends.upstream.ncip.profiles import PROFILES
from gateway.config import deployment_problems, parse_config
from gateway.daemon.gateway import Gateway
from protocols.ncip.upstream import Bibliographic, UpstreamRequest, read_reply, write_request

NS = "http://www.niso.org/2008/ncip"
GOOD = {"url": "http://lms.example.org/ncip", "profile": "generic-ncip2",
        "from_agency": "ILL", "to_agency": "LMS"}


def test_the_kind_is_registered_and_serves_circulation_only() -> None:
    assert "ncip" in registered_kinds()
    assert backend.settings_problems(GOOD, "backend.ncip") == []


def test_settings_problems_name_their_paths(tmp_path: Path) -> None:
    problems = backend.settings_problems({
        "url": "ftp://x", "profile": "koha", "to_agency": "", "timeout": 0,
        "max_in_flight": 100, "auth": "bearer", "colour": "red", "timezone": "Mars/Base"},
        "backend.ncip")
    text = "\n".join(problems)
    for path in ("backend.ncip.colour: unknown key", "backend.ncip.url: 'ftp://x'",
                 "backend.ncip.profile: 'koha' is not one of", "backend.ncip.from_agency:",
                 "backend.ncip.to_agency:", "backend.ncip.timeout:",
                 "backend.ncip.max_in_flight:", "backend.ncip.token: required with auth",
                 "backend.ncip.timezone:"):
        assert path in text, (path, text)
    koha = backend.settings_problems({**GOOD, "profile": "koha-ncipserver"}, "backend.ncip")
    assert koha and "CPomAG" in koha[0]
    cert = backend.settings_problems({**GOOD, "auth": "client-cert"}, "backend.ncip")
    assert any("client_cert" in p for p in cert) and any("https://" in p for p in cert)


def test_a_configuration_with_a_bad_table_is_refused_with_paths(tmp_path: Path) -> None:
    text = f"""
[gateway]
agency_id = "X"
database = "{tmp_path / 'db.sqlite3'}"
[backend]
kind = "embedded"
circulation = "ncip"
[backend.ncip]
url = "http://lms/ncip"
profile = "nope"
from_agency = "A"
to_agency = "B"
"""
    config = parse_config(tomllib.loads(text))
    problems = [p for p in deployment_problems(config) if p.startswith("backend")]
    assert problems == ["backend.ncip.profile: 'nope' is not one of alma, evergreen, folio, "
                        "generic-ncip1, generic-ncip2, koha-ncipserver, polaris, sierra, "
                        "symphony, xc-toolkit"]
    with pytest.raises(BackendUnavailable) as refused:
        Gateway(config, reactor=Clock(), environ={})
    assert "backend.ncip.profile" in str(refused.value)


def _tree(body: bytes) -> etree._Element:
    return etree.fromstring(body)


def test_request_shapes_per_profile() -> None:
    request = UpstreamRequest("AcceptItem", "CPomAG:il", "KOHA", user_id="P1", item_id="B1",
                              request_id="IL-1", requested_action="Hold For Pickup And Notify",
                              bibliographic=Bibliographic(title="T & U", author="A"),
                              date_due=datetime(2027, 1, 2, 23, 59, tzinfo=ZoneInfo("UTC")))
    koha = write_request(request, PROFILES["koha-ncipserver"].shape)
    root = _tree(koha)
    assert root.tag == f"{{{NS}}}NCIPMessage" and root.prefix == "ns1"
    assert root.get(f"{{{NS}}}version", "").endswith("ncip_v2_02.xsd")
    # NCIPServer takes childNodes[1] as the service: whitespace before it is required
    assert root.text is not None and root.text.strip() == ""
    names = [etree.QName(c).localname for c in root[0]]
    assert names == ["InitiationHeader", "RequestId", "RequestedActionType", "UserId", "ItemId",
                     "DateForReturn", "ItemOptionalFields"]
    assert root.find(f".//{{{NS}}}Title").text == "T & U"

    xc = _tree(write_request(request, PROFILES["xc-toolkit"].shape))
    assert xc.prefix is None and xc.tag == f"{{{NS}}}NCIPMessage"
    alma = _tree(write_request(request, PROFILES["alma"].shape))
    assert alma.find(f".//{{{NS}}}ApplicationProfileType").text == "ALMA"

    v1 = write_request(request, PROFILES["generic-ncip1"].shape)
    assert b"<!DOCTYPE NCIPMessage" in v1
    one = etree.fromstring(v1.split(b"\n", 2)[2])
    assert one.tag == "NCIPMessage" and one.get("version").endswith("ncip_v1_0.dtd")
    assert one.find("AcceptItem/UniqueUserId/UserIdentifierValue").text == "P1"
    assert one.find("AcceptItem/UniqueItemId/ItemIdentifierValue").text == "B1"
    assert one.find("AcceptItem/RequestedActionType/Value").text == \
        "Hold For Pickup And Notify"
    assert one.find("AcceptItem/UniqueRequestId/RequestIdentifierValue").text == "IL-1"


def test_reader_tolerates_what_lms_send() -> None:
    utc = ZoneInfo("UTC")
    html = read_reply(500, b"<html><head><title>Error 500</title><script>x()</script></head>"
                           b"<body><h1>Error 500</h1>Unable to process</body></html>", utc)
    assert html.kind == "http-error" and "Unable to process" in html.detail
    assert "x()" not in html.detail
    folio = read_reply(500, b"<Problem><message>Problem performing AcceptItem</message>"
                            b"<exception>java.lang.NullPointerException</exception></Problem>",
                       utc)
    assert folio.kind == "http-error" and "NullPointerException" in folio.detail
    broken = read_reply(200, b"<NCIPMessage><X></Y></NCIPMessage>", utc)
    assert broken.kind == "malformed"
    evil = read_reply(200, b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                           b'"file:///etc/passwd">]><NCIPMessage>&e;</NCIPMessage>', utc)
    assert evil.kind == "malformed"
    empty = read_reply(200, b"<NCIPMessage xmlns='http://www.niso.org/2008/ncip'>\n"
                            b"</NCIPMessage>", utc)
    assert empty.kind == "empty"
    due = read_reply(200, b"<NCIPMessage xmlns='http://www.niso.org/2008/ncip'>"
                          b"<CheckOutItemResponse><DateDue>2026-12-20T23:59:00</DateDue>"
                          b"<UniqueItemId><ItemIdentifierValue>3999</ItemIdentifierValue>"
                          b"</UniqueItemId></CheckOutItemResponse></NCIPMessage>",
                     ZoneInfo("Europe/London"))
    assert due.ok and due.item_id == "3999"
    assert due.date_due == datetime(2026, 12, 20, 23, 59, tzinfo=ZoneInfo("Europe/London"))
