# -*- test-case-name: tests.gateway.test_peers -*-
"""Attributing a request to a configured peer, and authenticating it per that peer's settings.

A request is attributed by what it carries, most specific first: a URL token, a bearer token,
then FromAgencyId, and finally the source address. Several peers may share an agency id (ILLiad
and Tipasa both send the library's own): the one whose configured ApplicationProfileType and
FromSystemId the request matches is chosen, and the configuration check refuses sets where a
request could match two (:func:`gateway.config.told_apart`). Attribution and authentication
failures are domain errors that the NCIP layer turns into ``Unknown Agency`` or ``Agency
Authentication Failed``.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import TOKEN_AUTH_KINDS, Peer


class PeerError(Exception):
    """The request could not be attributed to a peer, or failed its peer's authentication."""

    def __init__(self, reason: str, *, unknown: bool, value: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unknown = unknown
        self.value = value


@dataclass(frozen=True)
class Credentials:
    """What an NCIP request offers to identify and authenticate its sender."""

    remote_host: str
    from_agency: str | None = None
    from_system: str | None = None
    application_profile: str | None = None
    agency_secret: str | None = None
    url_token: str | None = None
    bearer_token: str | None = None


def _same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two secrets (False when either is missing)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _fold(value: str | None) -> str:
    return (value or "").strip().casefold()


_INDEXES: dict[int, tuple[Sequence[Peer], dict[str, list[Peer]], dict[str, list[Peer]]]] = {}


def _index(peers: Sequence[Peer]) -> tuple[dict[str, list[Peer]], dict[str, list[Peer]]]:
    """The peers by folded NCIP agency id and by folded FromSystemId (each peer once per id,
    in configuration order). Kept for a configuration's tuple of (frozen) peers, so a request
    looks its sender up instead of folding every peer's ids; built afresh for any other
    sequence (a list can change)."""
    cached = type(peers) is tuple
    if cached:
        entry = _INDEXES.get(id(peers))
        if entry is not None and entry[0] is peers:
            return entry[1], entry[2]
    agencies: dict[str, list[Peer]] = {}
    systems: dict[str, list[Peer]] = {}
    for peer in peers:
        for agency in dict.fromkeys(map(_fold, peer.ncip_agency_ids)):
            agencies.setdefault(agency, []).append(peer)
        for system in dict.fromkeys(map(_fold, peer.from_system_ids)):
            systems.setdefault(system, []).append(peer)
    if cached:
        if len(_INDEXES) >= 8:  # a few configurations (reloads): never grows
            _INDEXES.clear()
        _INDEXES[id(peers)] = (peers, agencies, systems)  # holds peers: its id stays its own
    return agencies, systems


def identify(peers: Sequence[Peer], creds: Credentials) -> Peer:
    """The peer that sent a request; raises :class:`PeerError` when none or several match."""
    if creds.url_token is not None:
        for peer in peers:
            if peer.auth.kind == "url-token" and _same(peer.auth.token, creds.url_token):
                return peer
        raise PeerError("unknown URL token", unknown=False)
    if creds.bearer_token is not None:
        for peer in peers:
            if peer.auth.kind == "bearer" and _same(peer.auth.token, creds.bearer_token):
                return peer
        raise PeerError("unknown bearer token", unknown=False)
    agency = _fold(creds.from_agency)
    agencies, systems = _index(peers)
    candidates = list(agencies.get(agency, ())) if agency else []
    if not candidates and creds.from_system:
        candidates = list(systems.get(_fold(creds.from_system), ()))
    if not candidates and not agency:
        # Nothing in the message names the sender: peers allow-listed by source network.
        source = _source(creds.remote_host)
        candidates = [p for p in peers if p.allow_from and p.allows(source)]
    if not candidates:
        raise PeerError("no peer has this agency id", unknown=True, value=creds.from_agency)
    if len(candidates) > 1:
        sharing = candidates
        candidates = [p for p in sharing if could_have_sent(p, creds)]
        if not candidates:
            raise PeerError("peers " + ", ".join(p.name for p in sharing) + " share this"
                            " identity and none has this ApplicationProfileType/FromSystemId",
                            unknown=False)
    if len(candidates) > 1:
        # Never guess: the wrong peer's policies and audit attribution would apply.
        raise PeerError("several peers match: " + ", ".join(p.name for p in candidates)
                        + " (ApplicationProfileType and FromSystemId do not tell them apart)",
                        unknown=False)
    return candidates[0]


def could_have_sent(peer: Peer, creds: Credentials) -> bool:
    """Whether a request with no URL or bearer token, naming an identity ``peer`` shares with
    others, may be ``peer``'s: each of its configured disambiguators must match (a token peer
    always sends its token; a configured ApplicationProfileType or FromSystemId is sent)."""
    if peer.auth.kind in TOKEN_AUTH_KINDS:
        return False
    if peer.application_profile and \
            _fold(peer.application_profile) != _fold(creds.application_profile):
        return False
    return not peer.from_system_ids or \
        _fold(creds.from_system) in map(_fold, peer.from_system_ids)


@functools.lru_cache(maxsize=4096)
def _source(host: str) -> str:
    """The client address as allow_from networks see it: an IPv4-mapped IPv6 address (what a
    dual-stack listener reports for IPv4 clients) becomes the plain IPv4 address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else host


def authenticate(peer: Peer, creds: Credentials) -> None:
    """Check the source address and the peer's credentials; raise :class:`PeerError` if bad."""
    if not peer.allows(_source(creds.remote_host)):
        raise PeerError(f"source address {creds.remote_host} not allowed for peer {peer.name}",
                        unknown=False)
    kind = peer.auth.kind
    if kind == "none" and not peer.allow_from:
        # The configuration refuses this (peers[n].allow_from); a peer built otherwise fails
        # closed rather than accept anyone who names its agency.
        raise PeerError(f"peer {peer.name} has neither credentials nor allow_from networks",
                        unknown=False)
    if kind == "shared-secret" and not _same(peer.auth.secret, creds.agency_secret):
        raise PeerError(f"wrong or missing FromAgencyAuthentication for peer {peer.name}",
                        unknown=False)
    if kind == "url-token" and not _same(peer.auth.token, creds.url_token):
        raise PeerError(f"peer {peer.name} must use its URL token", unknown=False)
    if kind == "bearer" and not _same(peer.auth.token, creds.bearer_token):
        raise PeerError(f"peer {peer.name} must send its bearer token", unknown=False)


def attribute(peers: Sequence[Peer], creds: Credentials) -> Peer:
    """Identify and authenticate in one step: the peer, or :class:`PeerError`."""
    peer = identify(peers, creds)
    authenticate(peer, creds)
    return peer


def admit_version_lookup(peers: Sequence[Peer], creds: Credentials) -> Peer | None:
    """Admit a version-discovery request (C{NCIPVersionMessage} has no authentication element):
    no agency authentication, but source networks still apply. The peer it names (when one
    does) must allow the address; otherwise some peer must. A URL or bearer token that matches
    no peer is still refused.

    @return: the peer named, or None when the request names none (or several) of them.
    """
    source = _source(creds.remote_host)
    try:
        peer: Peer | None = identify(peers, creds)
    except PeerError:
        if creds.url_token is not None or creds.bearer_token is not None:
            raise
        peer = None
    if peer is not None:
        if not peer.allows(source):
            raise PeerError(f"source address {creds.remote_host} not allowed for peer"
                            f" {peer.name}", unknown=False)
        return peer
    if not any(p.allows(source) for p in peers):
        raise PeerError(f"source address {creds.remote_host} is allowed for no peer",
                        unknown=False)
    return None
