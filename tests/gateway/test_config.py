# -*- test-case-name: tests.gateway.test_config -*-
"""Configuration: defaults, every error reported at once with its path, the shipped files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, ConfigErrors, Peer, load_config, parse_config
from gateway.daemon.cli import main

REPO = Path(__file__).resolve().parents[2]


def errors_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        parse_config(raw, "test.toml")
    return caught.value.errors



OPEN = {"auth": {"kind": "none"}, "allow_from": ["127.0.0.0/8"]}


def authenticated(peers: list[dict]) -> list[dict]:
    """Peers given explicit ``auth`` (required) where the case leaves it out."""
    return [peer if "auth" in peer else {**OPEN, **peer} for peer in peers]

def test_defaults_are_safe() -> None:
    """An empty file gives loopback listeners and bounded limits."""
    config = parse_config({})
    assert config.z3950.listen == ("tcp:2100:interface=127.0.0.1",)
    assert config.ncip.listen == ("tcp:8080:interface=127.0.0.1",)
    assert 0 < config.z3950.max_pdu_size <= 16 * 1024 * 1024
    assert config.ncip.max_body_size == 256 * 1024
    assert config.audit.bodies == "redacted"
    assert config.peers == ()


def test_every_error_is_reported_with_its_path() -> None:
    """Several mistakes in several sections come back together, each with its path."""
    errors = errors_of({
        "gateway": {"timezone": "Mars/Olympus", "agency_id": ""},
        "z3950": {"listen": ["tcp:notaport"], "max_pdu_size": "big", "max_nesting_depth": 500},
        "ncip": {"path": "ncip", "max_body_size": 0},
        "audit": {"bodies": "everything"},
        "peers": [
            {"name": "reshare", "auth": {"kind": "shared-secret"}},
            {"name": "reshare", "auth": {"kind": "bearer"}, "allow_from": ["10.0.0.0/33"]},
        ],
    })
    assert "gateway.timezone: unknown time zone 'Mars/Olympus'" in errors
    assert "gateway.agency_id: must not be empty" in errors
    assert any(e.startswith("z3950.listen[0]: ") for e in errors)
    assert "z3950.max_pdu_size: must be an integer (got 'big')" in errors
    assert "z3950.max_nesting_depth: must be between 1 and 100" in errors
    assert "ncip.path: must start with '/' (got 'ncip')" in errors
    assert "ncip.max_body_size: must be greater than zero" in errors
    assert "audit.bodies: 'everything' is not one of full, redacted, none" in errors
    assert 'peers[0].auth.secret: required when kind = "shared-secret"' in errors
    assert 'peers[1].auth.token: required when kind = "bearer"' in errors
    assert "peers[1].allow_from[0]: '10.0.0.0/33' is not an IP address or network" in errors
    assert "peers[1].name: 'reshare' is already used by peers[0]" in errors
    assert len(errors) == 12


def test_unknown_keys_are_errors() -> None:
    """A misspelt key is an error, never silently ignored."""
    errors = errors_of({"gateway": {"agency": "X"}, "nicp": {}, "peers": [
        {"name": "a", "delete_on_check_in": True, "auth": {"kind": "none", "secrit": "x"},
         "allow_from": ["127.0.0.1"]}]})
    assert errors == ["nicp: unknown key", "gateway.agency: unknown key",
                      "peers[0].delete_on_check_in: unknown key",
                      "peers[0].auth.secrit: unknown key"]


def test_peer_keys_and_preferences() -> None:
    """The documented peer keys parse into a Peer with its preferences."""
    config = parse_config({"peers": [{
        "name": "reshare", "ncip_agency_ids": ["RESHARE"],
        "auth": {"kind": "shared-secret", "secret": "s3cret"},
        "allow_from": ["127.0.0.0/8"], "z3950_user": "reshare", "z3950_password": "zpass",
        "namespace_style": "none", "temporary_barcode": "prefixed", "code": "RS",
        "pickup_locations": {"A": "MAIN"}, "delete_on_checkin": True}]})
    peer = config.peer("reshare")
    assert peer is not None
    assert peer.auth.secret == "s3cret" and peer.z3950_password == "zpass"
    assert "s3cret" not in repr(peer) and "zpass" not in repr(peer)
    assert peer.allows("127.0.0.5") and not peer.allows("192.0.2.1")
    assert peer.pickup_locations == {"A": "MAIN"}
    assert peer.delete_on_checkin and peer.namespace_style == "none"


def test_agency_ids_must_be_unique_across_peers() -> None:
    """Two peers claiming one agency id, with nothing else to tell them apart, would make
    attribution ambiguous."""
    secret = {"kind": "shared-secret", "secret": "s"}
    errors = errors_of({"peers": [{"name": "a", "ncip_agency_ids": ["X"], "auth": secret},
                                  {"name": "b", "ncip_agency_ids": ["x"], "auth": secret}]})
    assert len(errors) == 1
    assert errors[0].startswith("peers[1].ncip_agency_ids: 'x' is already used by peers[0] and"
                                " nothing tells them apart")


def test_syntax_error_names_the_file(tmp_path: Path) -> None:
    """A file that is not TOML is reported with its name and the parser's position."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nname = 1\n")
    with pytest.raises(ConfigErrors) as caught:
        load_config(bad)
    assert str(bad) in str(caught.value) and "line 1" in str(caught.value)


@pytest.mark.parametrize("name", ["interlend.toml", "interlend.production.toml"])
def test_shipped_files_are_valid(name: str) -> None:
    """The default and the production example both pass the check."""
    config = load_config(REPO / "config" / name)
    assert isinstance(config, Config) and config.peers


def test_check_config_command(tmp_path: Path) -> None:
    """interlend check-config exits 0 on a good file and 2 with every error on a bad one."""
    out, err = io.StringIO(), io.StringIO()
    assert main(["check-config", "-c", str(REPO / "config/interlend.toml")],
                stdout=out, stderr=err) == 0
    assert "OK" in out.getvalue()
    bad = tmp_path / "bad.toml"
    bad.write_text('[z3950]\nlisten = ["udp:1"]\n[[peers]]\nauth = { kind = "url-token" }\n')
    out, err = io.StringIO(), io.StringIO()
    assert main(["check-config", "-c", str(bad)], stdout=out, stderr=err) == 2
    text = err.getvalue()
    assert "3 configuration error(s)" in text
    assert "z3950.listen[0]" in text and "peers[0].name" in text
    assert 'peers[0].auth.token: required when kind = "url-token"' in text


def test_overrides_apply_for_one_run() -> None:
    """--database and --*-listen replace the file's values."""
    config = parse_config({}).with_overrides(database="/tmp/x.db", z3950_listen=["tcp:0"],
                                             ncip_listen=["tcp:0", "tcp6:0"])
    assert str(config.gateway.database) == "/tmp/x.db"
    assert config.z3950.listen == ("tcp:0",)
    assert config.ncip.listen == ("tcp:0", "tcp6:0")


def test_peers_may_share_an_agency_id_when_told_apart() -> None:
    """ILLiad and Tipasa both send the library's own agency id: accepted when a different
    ApplicationProfileType, disjoint FromSystemIds or a token auth tells them apart (13.11)."""
    shared = ["01XXX_INST"]
    accepted: list[list[dict[str, Any]]] = [
        [{"name": "illiad", "ncip_agency_ids": shared, "application_profile": "ILLiad"},
         {"name": "tipasa", "ncip_agency_ids": ["01xxx_inst"], "application_profile": "2.00"}],
        [{"name": "illiad", "ncip_agency_ids": shared, "from_system_ids": ["ILLiad"]},
         {"name": "tipasa", "ncip_agency_ids": shared, "from_system_ids": ["WSILL"]}],
        [{"name": "illiad", "ncip_agency_ids": shared},
         {"name": "tipasa", "ncip_agency_ids": shared,
          "auth": {"kind": "bearer", "token": "t-1"}}],
        [{"name": "illiad", "ncip_agency_ids": shared,
          "auth": {"kind": "url-token", "token": "u-1"}},
         {"name": "tipasa", "ncip_agency_ids": shared,
          "auth": {"kind": "bearer", "token": "t-1"}}],
    ]
    for peers in accepted:
        parse_config({"peers": authenticated(peers)})


def test_ambiguous_shared_agency_ids_are_refused() -> None:
    """A set where one request could match two peers is refused, each clash with its path:
    the same profile, a profile on one side only, or FromSystemIds in common."""
    shared = ["01XXX_INST"]
    refused: list[list[dict[str, Any]]] = [
        [{"name": "a", "ncip_agency_ids": shared, "application_profile": "ILLiad"},
         {"name": "b", "ncip_agency_ids": shared, "application_profile": "illiad"}],
        [{"name": "a", "ncip_agency_ids": shared, "application_profile": "ILLiad"},
         {"name": "b", "ncip_agency_ids": shared, "from_system_ids": ["WSILL"]}],
        [{"name": "a", "ncip_agency_ids": shared, "from_system_ids": ["WSILL", "X"]},
         {"name": "b", "ncip_agency_ids": shared, "from_system_ids": ["wsill"]}],
        [{"name": "a", "ncip_agency_ids": shared,
          "auth": {"kind": "shared-secret", "secret": "one"}},
         {"name": "b", "ncip_agency_ids": shared,
          "auth": {"kind": "shared-secret", "secret": "two"}}],
    ]
    for peers in refused:
        errors = errors_of({"peers": authenticated(peers)})
        assert len(errors) == 1 and errors[0].startswith(
            "peers[1].ncip_agency_ids: '01xxx_inst' is already used by peers[0]"), errors
    three = errors_of({"peers": authenticated([
        {"name": "a", "ncip_agency_ids": shared, "application_profile": "A"},
        {"name": "b", "ncip_agency_ids": shared, "application_profile": "B"},
        {"name": "c", "ncip_agency_ids": shared, "application_profile": "a"}])})
    assert len(three) == 1 and three[0].startswith(
        "peers[2].ncip_agency_ids: '01xxx_inst' is already used by peers[0]")


def test_fallback_charset_must_be_known_and_ascii_compatible() -> None:
    """A peer's fallback_charset (13.13) is an ASCII-compatible character set: one that could
    turn other bytes into markup (utf-7, utf-16) is refused, as is an unknown name."""
    config = parse_config({"peers": authenticated(
        [{"name": "illiad", "fallback_charset": "windows-1252"}])})
    assert config.peers[0].fallback_charset == "windows-1252"
    assert Peer(name="x").fallback_charset == "" and Peer(name="x").namespace_style == "request"
    errors = errors_of({"peers": authenticated([{"name": "a", "fallback_charset": "utf-7"},
                                                {"name": "b", "fallback_charset": "utf-16"},
                                                {"name": "c", "fallback_charset": "klingon"}])})
    assert errors == ["peers[0].fallback_charset: 'utf-7' is not ASCII-compatible",
                      "peers[1].fallback_charset: 'utf-16' is not ASCII-compatible",
                      "peers[2].fallback_charset: unknown character set 'klingon'"]


def test_peer_without_auth_is_an_error() -> None:
    """A peer with no ``auth`` is refused (it used to mean no authentication at all); ``kind =
    "none"`` must be explicit and comes with ``allow_from`` networks."""
    errors = errors_of({"peers": [
        {"name": "silent", "ncip_agency_ids": ["S"]},
        {"name": "open", "ncip_agency_ids": ["O"], "auth": {"kind": "none"}},
        {"name": "nokind", "ncip_agency_ids": ["N"], "auth": {"secret": "x"},
         "allow_from": ["10.0.0.0/8"]},
        {"name": "fenced", "ncip_agency_ids": ["F"], "auth": {"kind": "none"},
         "allow_from": ["192.0.2.0/24"]}]})
    assert [e.split(":")[0] for e in errors] == [
        "peers[0].auth", "peers[1].allow_from", "peers[2].auth.kind"]
