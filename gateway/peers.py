# -*- test-case-name: tests.gateway.test_peers -*-
"""Attributing a request to a configured peer, and authenticating it per that peer's settings.

A request is attributed by what it carries, most specific first: a URL token, a bearer token,
then FromAgencyId (with FromSystemId and ApplicationProfileType to choose between peers), and
finally the source address. Attribution and authentication failures are domain errors that the
NCIP layer turns into ``Unknown Agency`` or ``Agency Authentication Failed``.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import Peer


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
    candidates = [p for p in peers if agency and agency in map(_fold, p.ncip_agency_ids)]
    if not candidates and creds.from_system:
        system = _fold(creds.from_system)
        candidates = [p for p in peers if system in map(_fold, p.from_system_ids)]
    if not candidates and not agency:
        # Nothing in the message names the sender: peers allow-listed by source network.
        source = _source(creds.remote_host)
        candidates = [p for p in peers if p.allow_from and p.allows(source)]
    if len(candidates) > 1 and creds.application_profile:
        profile = _fold(creds.application_profile)
        candidates = [p for p in candidates if _fold(p.application_profile) == profile] or \
            candidates
    if not candidates:
        raise PeerError("no peer has this agency id", unknown=True, value=creds.from_agency)
    if len(candidates) > 1:
        # Never guess: the wrong peer's policies and audit attribution would apply.
        raise PeerError("several peers match: " + ", ".join(p.name for p in candidates)
                        + " (ApplicationProfileType does not tell them apart)", unknown=False)
    return candidates[0]


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
