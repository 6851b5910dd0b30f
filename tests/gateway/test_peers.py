"""Peer attribution and authentication (gateway.ncip.peers), without a reactor or a socket."""

from __future__ import annotations

import hmac
import ipaddress

import pytest

from gateway.config import Peer, PeerAuth
from gateway.ncip import peers as peers_module
from gateway.ncip.peers import (
    Credentials,
    PeerError,
    admit_version_lookup,
    attribute,
    authenticate,
    identify,
)


def net(*cidrs: str) -> tuple:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


RESHARE = Peer(name="reshare", ncip_agency_ids=("RESHARE", "Res-Alt"),
               auth=PeerAuth(kind="shared-secret", secret="s3cret"),
               allow_from=net("127.0.0.0/8", "::1/128"))
TIPASA = Peer(name="tipasa", ncip_agency_ids=("OCLC-TIPASA",), application_profile="Tipasa",
              auth=PeerAuth(kind="bearer", token="bear-tok"))
KOHA = Peer(name="koha", ncip_agency_ids=("KOHA",),
            auth=PeerAuth(kind="url-token", token="url-tok"))
OPEN = Peer(name="open", ncip_agency_ids=("OPEN",))
WSILL_A = Peer(name="wsill-a", from_system_ids=("WSILL",), application_profile="ProfileA")
WSILL_B = Peer(name="wsill-b", from_system_ids=("wsill",), application_profile="ProfileB")
FAR = Peer(name="far", ncip_agency_ids=("FAR",), allow_from=net("10.99.0.0/16"))
ALL = (RESHARE, TIPASA, KOHA, OPEN, WSILL_A, WSILL_B, FAR)


def creds(**kwargs: str | None) -> Credentials:
    return Credentials(remote_host=kwargs.pop("remote_host", None) or "127.0.0.1", **kwargs)


# -- identify -----------------------------------------------------------------------------------


def test_identify_by_agency_id_case_and_space_insensitive() -> None:
    """FromAgencyId matches any of a peer's agency ids, ignoring case and surrounding space."""
    for value in ("RESHARE", "reshare", "  ReShare\t", "res-alt", "RES-ALT"):
        assert identify(ALL, creds(from_agency=value)) is RESHARE


def test_identify_casefold_handles_non_ascii() -> None:
    """Agency ids compare with Unicode case folding (ß ~ SS), not just lower()."""
    peer = Peer(name="de", ncip_agency_ids=("STRASSE",))
    assert identify((peer,), creds(from_agency="straße")) is peer


def test_unknown_or_missing_agency_is_unknown() -> None:
    """No match, an empty or a missing FromAgencyId: PeerError(unknown=True) carrying the value."""
    with pytest.raises(PeerError) as info:
        identify(ALL, creds(from_agency="NOBODY"))
    assert info.value.unknown and info.value.value == "NOBODY"
    for value in ("", "   ", None):
        with pytest.raises(PeerError) as info:
            identify(ALL, creds(from_agency=value, remote_host="203.0.113.5"))
        assert info.value.unknown


def test_source_address_attributes_anonymous_requests() -> None:
    """A request naming no agency (Tipasa leaves FromAgencyId blank; Koha templates send no
    header) is attributed by source address to the one peer allow-listing that network, and is
    then authenticated as usual; peers without allow_from never match by address."""
    assert identify(ALL, creds(from_agency=None, remote_host="10.99.0.7")) is FAR
    assert identify(ALL, creds(from_agency="", remote_host="::ffff:10.99.0.7")) is FAR
    assert identify(ALL, creds(remote_host="127.0.0.1")) is RESHARE
    with pytest.raises(PeerError):
        attribute(ALL, creds(remote_host="127.0.0.1"))  # reshare still needs its secret
    assert attribute(ALL, creds(remote_host="127.0.0.1", agency_secret="s3cret")) is RESHARE
    with pytest.raises(PeerError) as info:  # a named but unknown agency is not guessed
        identify(ALL, creds(from_agency="NOBODY", remote_host="10.99.0.7"))
    assert info.value.unknown


def test_source_address_ambiguity_is_refused() -> None:
    """Two peers allow-listing the same network: an anonymous request is not given to either
    unless ApplicationProfileType picks one."""
    a = Peer(name="a", allow_from=net("192.0.2.0/24"), application_profile="PA")
    b = Peer(name="b", allow_from=net("192.0.2.0/24"), application_profile="PB")
    with pytest.raises(PeerError) as info:
        identify((a, b), creds(remote_host="192.0.2.1"))
    assert not info.value.unknown
    assert identify((a, b), creds(remote_host="192.0.2.1", application_profile="pb")) is b


def test_url_token_wins_over_everything() -> None:
    """A URL token identifies its peer before bearer token and FromAgencyId are looked at."""
    assert identify(ALL, creds(url_token="url-tok", bearer_token="bear-tok",
                               from_agency="RESHARE")) is KOHA
    assert identify(ALL, creds(url_token="url-tok")) is KOHA


def test_unknown_url_token_is_an_authentication_failure() -> None:
    """A URL token no peer has is refused (unknown=False: Agency Authentication Failed), even if
    the FromAgencyId names a real peer: a token is never ignored."""
    with pytest.raises(PeerError) as info:
        identify(ALL, creds(url_token="guess", from_agency="RESHARE"))
    assert not info.value.unknown


def test_url_token_of_non_url_token_peer_does_not_match() -> None:
    """A bearer peer's token presented in the URL does not identify it (kinds are not mixed)."""
    with pytest.raises(PeerError):
        identify(ALL, creds(url_token="bear-tok"))


def test_bearer_token_before_agency_id() -> None:
    """A bearer token identifies its peer before FromAgencyId; an unknown one is refused."""
    assert identify(ALL, creds(bearer_token="bear-tok", from_agency="RESHARE")) is TIPASA
    with pytest.raises(PeerError) as info:
        identify(ALL, creds(bearer_token="nope", from_agency="OCLC-TIPASA"))
    assert not info.value.unknown


def test_from_system_id_when_no_agency_matches() -> None:
    """FromSystemId (case-insensitive) attributes a request that has no known agency id."""
    assert identify((WSILL_A,), creds(from_system="wsill")) is WSILL_A
    assert identify((RESHARE, WSILL_A), creds(from_agency="NOBODY", from_system="WSILL")) \
        is WSILL_A


def test_agency_id_beats_system_id() -> None:
    """When FromAgencyId matches, FromSystemId is not used to pick another peer."""
    assert identify(ALL, creds(from_agency="RESHARE", from_system="WSILL")) is RESHARE


def test_application_profile_disambiguates() -> None:
    """Several peers sharing an identity are told apart by ApplicationProfileType (any case)."""
    assert identify(ALL, creds(from_system="WSILL", application_profile="profileb")) is WSILL_B
    assert identify(ALL, creds(from_system="WSILL", application_profile="ProfileA")) is WSILL_A


def test_application_profile_disambiguates_agency_ids() -> None:
    """The Alma pattern: one institution code, partners told apart by ApplicationProfileType."""
    a = Peer(name="a", ncip_agency_ids=("01INST",), application_profile="ILLiad")
    b = Peer(name="b", ncip_agency_ids=("01inst",), application_profile="ReShare")
    assert identify((a, b), creds(from_agency="01INST", application_profile="reshare")) is b
    assert identify((a, b), creds(from_agency="01INST", application_profile="ILLIAD")) is a


def test_ambiguous_without_profile_is_not_silently_given_to_anyone() -> None:
    """When several peers match and no ApplicationProfileType tells them apart, attribution does
    not pick one at random: it refuses."""
    with pytest.raises(PeerError):
        identify(ALL, creds(from_system="WSILL"))
    with pytest.raises(PeerError):
        identify(ALL, creds(from_system="WSILL", application_profile="Unknown"))


# -- authenticate -------------------------------------------------------------------------------


def test_shared_secret() -> None:
    """The shared secret must be present and equal (case-sensitive)."""
    authenticate(RESHARE, creds(agency_secret="s3cret"))
    for bad in ("S3CRET", "s3cret ", "", None, "s3cre"):
        with pytest.raises(PeerError) as info:
            authenticate(RESHARE, creds(agency_secret=bad))
        assert not info.value.unknown
        assert "s3cret" not in info.value.reason


def test_bearer_and_url_token_peers_need_their_token() -> None:
    """Bearer and URL-token peers named by agency id alone are refused."""
    with pytest.raises(PeerError):
        attribute(ALL, creds(from_agency="OCLC-TIPASA"))
    with pytest.raises(PeerError):
        attribute(ALL, creds(from_agency="KOHA"))
    with pytest.raises(PeerError):
        attribute(ALL, creds(from_agency="KOHA", agency_secret="url-tok"))
    assert attribute(ALL, creds(from_agency="OCLC-TIPASA", bearer_token="bear-tok")) is TIPASA
    assert attribute(ALL, creds(url_token="url-tok")) is KOHA


def test_open_peer_without_networks_fails_closed() -> None:
    """A peer with auth kind "none" and no allow_from (which the configuration refuses) is
    never authenticated by its agency id alone; with allow_from, its networks are its
    credential."""
    with pytest.raises(PeerError) as info:
        attribute(ALL, creds(from_agency="open", remote_host="203.0.113.9"))
    assert not info.value.unknown
    fenced = Peer(name="fenced", ncip_agency_ids=("FENCED",), allow_from=net("203.0.113.0/24"))
    assert attribute((fenced,), creds(from_agency="FENCED", remote_host="203.0.113.9")) is fenced


def test_allow_from() -> None:
    """allow_from restricts a peer to its networks, even with the right secret."""
    with pytest.raises(PeerError) as info:
        attribute(ALL, creds(from_agency="FAR"))
    assert not info.value.unknown
    assert attribute(ALL, creds(from_agency="FAR", remote_host="10.99.1.2")) is FAR
    with pytest.raises(PeerError):
        attribute(ALL, creds(from_agency="RESHARE", agency_secret="s3cret",
                             remote_host="192.0.2.1"))
    assert attribute(ALL, creds(from_agency="RESHARE", agency_secret="s3cret",
                                remote_host="::1")) is RESHARE
    with pytest.raises(PeerError):
        attribute(ALL, creds(from_agency="RESHARE", agency_secret="s3cret",
                             remote_host="unix"))


def test_allow_from_ipv4_mapped_ipv6() -> None:
    """On a dual-stack (tcp6) listener IPv4 clients appear as ::ffff:a.b.c.d; they still match
    IPv4 networks in allow_from (and only those)."""
    assert attribute(ALL, creds(from_agency="RESHARE", agency_secret="s3cret",
                                remote_host="::ffff:127.0.0.1")) is RESHARE
    assert attribute(ALL, creds(from_agency="FAR", remote_host="::ffff:10.99.3.4")) is FAR
    with pytest.raises(PeerError):
        attribute(ALL, creds(from_agency="FAR", remote_host="::ffff:10.98.3.4"))


def test_secrets_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every secret and token comparison goes through hmac.compare_digest."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(peers_module.hmac, "compare_digest", spy)
    attribute(ALL, creds(from_agency="RESHARE", agency_secret="s3cret"))
    assert (b"s3cret", b"s3cret") in calls
    calls.clear()
    attribute(ALL, creds(bearer_token="bear-tok"))
    assert any(b"bear-tok" in pair for pair in calls)
    calls.clear()
    attribute(ALL, creds(url_token="url-tok"))
    assert any(b"url-tok" in pair for pair in calls)


def test_non_ascii_secrets() -> None:
    """Secrets with non-ASCII characters compare correctly (compare_digest on UTF-8 bytes)."""
    peer = Peer(name="u", ncip_agency_ids=("U",), auth=PeerAuth(kind="shared-secret",
                                                                 secret="pässwörd"))
    authenticate(peer, creds(agency_secret="pässwörd"))
    with pytest.raises(PeerError):
        authenticate(peer, creds(agency_secret="passwort"))


# -- peers sharing an agency id (13.11) ---------------------------------------------------------

LIBRARY = ("01XXX_INST",)
ILLIAD = Peer(name="illiad", ncip_agency_ids=LIBRARY, application_profile="ILLiad",
              auth=PeerAuth(kind="shared-secret", secret="ill-secret"))
TIPASA_WSILL = Peer(name="tipasa", ncip_agency_ids=LIBRARY, application_profile="2.00",
                    from_system_ids=("WSILL",))
TIPASA_BEARER = Peer(name="tipasa-bearer", ncip_agency_ids=LIBRARY,
                     auth=PeerAuth(kind="bearer", token="tip-tok"))
ILLIAD_URL = Peer(name="illiad-url", ncip_agency_ids=LIBRARY,
                  auth=PeerAuth(kind="url-token", token="ill-url"))


def test_shared_agency_id_told_apart_by_profile_and_system() -> None:
    """ILLiad and Tipasa both send the library's agency id: the request's
    ApplicationProfileType and FromSystemId pick the one whose configuration it matches."""
    pair = (ILLIAD, TIPASA_WSILL)
    assert identify(pair, creds(from_agency="01xxx_inst", application_profile="illiad")) \
        is ILLIAD
    assert identify(pair, creds(from_agency="01XXX_INST", application_profile="2.00",
                                from_system="wsill")) is TIPASA_WSILL
    # Tipasa's configured FromSystemId is part of its identity: without it, it is not Tipasa.
    with pytest.raises(PeerError) as info:
        identify(pair, creds(from_agency="01XXX_INST", application_profile="2.00"))
    assert not info.value.unknown and "share this identity" in info.value.reason
    with pytest.raises(PeerError):
        identify(pair, creds(from_agency="01XXX_INST"))


def test_shared_agency_id_told_apart_by_token() -> None:
    """A token peer is the one that sent its token; a request without a token is never a
    token peer's, so it goes to the peer that authenticates otherwise."""
    trio = (ILLIAD, TIPASA_BEARER, ILLIAD_URL)
    assert identify(trio, creds(from_agency="01XXX_INST", bearer_token="tip-tok")) \
        is TIPASA_BEARER
    assert identify(trio, creds(from_agency="01XXX_INST", url_token="ill-url")) is ILLIAD_URL
    plain = {"from_agency": "01XXX_INST", "application_profile": "ILLiad"}
    assert identify(trio, creds(**plain)) is ILLIAD
    assert attribute(trio, creds(**plain, agency_secret="ill-secret")) is ILLIAD
    with pytest.raises(PeerError):  # attributed, then its own authentication still applies
        attribute(trio, creds(**plain, agency_secret="wrong"))


def test_single_peer_attribution_unchanged_by_disambiguators() -> None:
    """With one peer per agency id nothing changes: a token peer without its token is still
    attributed (and then fails authentication), a profile mismatch is still that peer's."""
    assert identify((ILLIAD_URL,), creds(from_agency="01XXX_INST")) is ILLIAD_URL
    with pytest.raises(PeerError) as info:
        attribute((ILLIAD_URL,), creds(from_agency="01XXX_INST"))
    assert "URL token" in info.value.reason
    assert identify((ILLIAD,), creds(from_agency="01XXX_INST", application_profile="x")) \
        is ILLIAD


# -- version discovery (13.10) ------------------------------------------------------------------


def test_version_lookup_needs_no_agency_authentication() -> None:
    """An NCIPVersionMessage cannot carry credentials: the shared-secret peer it names is
    admitted without its secret; an unknown or shared agency id is admitted anonymously."""
    assert admit_version_lookup(ALL, creds(from_agency="RESHARE")) is RESHARE
    assert admit_version_lookup(ALL, creds(from_agency="NOBODY")) is None
    assert admit_version_lookup((ILLIAD, TIPASA_WSILL), creds(from_agency="01XXX_INST")) is None


def test_version_lookup_still_checks_source_networks() -> None:
    """The named peer's allow_from applies; an anonymous request needs some peer that allows
    its address; a URL or bearer token that matches nobody is refused."""
    with pytest.raises(PeerError):
        admit_version_lookup(ALL, creds(from_agency="FAR", remote_host="192.0.2.1"))
    assert admit_version_lookup(ALL, creds(from_agency="FAR", remote_host="10.99.1.2")) is FAR
    fenced = (RESHARE, FAR)
    with pytest.raises(PeerError):
        admit_version_lookup(fenced, creds(from_agency="NOBODY", remote_host="192.0.2.1"))
    assert admit_version_lookup(fenced, creds(from_agency="NOBODY",
                                              remote_host="10.99.0.7")) is None
    with pytest.raises(PeerError):
        admit_version_lookup(ALL, creds(from_agency="NOBODY", bearer_token="forged"))


def test_a_reloaded_peer_list_is_looked_up_afresh() -> None:
    """The lookup index kept for one configuration's peers never answers for another: after
    a reload the agency id names the new peer; a list changed in place is read as it is."""
    before = (Peer(name="old", ncip_agency_ids=("AG",)), OPEN)
    assert identify(before, creds(from_agency="ag")).name == "old"
    after = (Peer(name="new", ncip_agency_ids=("AG",)), OPEN)
    assert identify(after, creds(from_agency="ag")).name == "new"
    assert identify(before, creds(from_agency="ag")).name == "old"
    listed = [OPEN]
    with pytest.raises(PeerError):
        identify(listed, creds(from_agency="ag"))
    listed.append(Peer(name="added", ncip_agency_ids=("AG",)))
    assert identify(listed, creds(from_agency="ag")).name == "added"
