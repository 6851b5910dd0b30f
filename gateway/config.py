# -*- test-case-name: tests.gateway.test_config -*-
"""The configuration: one TOML file, validated completely, every error reported with its path.

:func:`load_config` reads and checks the whole file and raises :class:`ConfigErrors` listing
every problem at once (``peers[1].auth.secret: required when kind = "shared-secret"``). Unknown
keys are errors, so a typo never silently falls back to a default. Every limit has a named setting
with a safe default.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENDPOINT_KINDS = ("tcp", "tcp6", "ssl", "unix", "systemd")
AUTH_KINDS = ("none", "shared-secret", "url-token", "bearer")
TOKEN_AUTH_KINDS = ("url-token", "bearer")  # a request carries the token: it names its peer
NAMESPACE_STYLES = ("request", "ns1", "default", "none")
BARCODE_POLICIES = ("request-id", "lender-barcode", "prefixed")
CHECKIN_NOT_ON_LOAN = ("success", "problem")
AUDIT_BODIES = ("full", "redacted", "none")
HOLDINGS_TAGS = ("852", "926", "952", "982")
SECRET_KEYS = frozenset({"secret", "token", "password", "z3950_password"})
"""Keys whose values no error message may show (they would land in journald)."""
PLACEHOLDER = "change-me"
"""Secrets in the shipped example configuration contain this: it must be replaced."""


class ConfigErrors(Exception):
    """Every error found in a configuration file, each as ``path: message``."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} configuration error(s)")

    def __str__(self) -> str:
        return "\n".join([f"{self.source}: {len(self.errors)} configuration error(s):"]
                         + [f"  {e}" for e in self.errors])


@dataclass(frozen=True)
class GatewaySettings:
    """Who we are and where our data lives."""

    agency_id: str = "INTERLEND"
    name: str = "Interlend gateway"
    database: Path = Path("var/interlend.sqlite3")
    timezone: str = "UTC"
    shutdown_grace: float = 10.0
    busy_timeout: float = 5.0
    # The gateway key (patron-id hashes, sealed replies): created 0600 on first start.
    # Empty: "<database>.key" beside the database.
    key_file: str = ""
    catalogue_readers: int = 1
    # Worker processes serving the Z39.50 and NCIP listeners (gateway.workers); 1: none, the
    # daemon serves everything itself; "auto" in the file: one per CPU.
    workers: int = 1


@dataclass(frozen=True)
class Z3950Settings:
    """The Z39.50 listener and its limits."""

    listen: tuple[str, ...] = ("tcp:2100:interface=127.0.0.1",)
    databases: tuple[str, ...] = ("Default",)
    max_pdu_size: int = 4 * 1024 * 1024
    max_nesting_depth: int = 64
    preferred_message_size: int = 1024 * 1024
    exceptional_record_size: int = 4 * 1024 * 1024
    idle_timeout: float = 900.0
    init_timeout: float = 60.0
    max_result_sets: int = 100
    max_present_records: int = 100
    max_pipelined_requests: int = 64
    refusal_slots: int = 100
    max_connections: int = 1000
    max_connections_per_peer: int = 250
    max_connection_rate_per_peer: float = 200.0
    require_auth: bool = False
    max_term_length: int = 1024
    max_term_words: int = 32
    operation_time_limit: float = 5.0
    pdu_timeout: float = 30.0
    memory_budget: int = 128 * 1024 * 1024
    max_scan_step: int = 100
    max_sort_records: int = 10000
    max_query_operators: int = 1000


@dataclass(frozen=True)
class NcipSettings:
    """The NCIP listener and its limits."""

    listen: tuple[str, ...] = ("tcp:8080:interface=127.0.0.1",)
    path: str = "/ncip"
    max_body_size: int = 256 * 1024
    max_nesting_depth: int = 64
    request_timeout: float = 25.0
    idle_timeout: float = 60.0
    max_connections: int = 1000
    max_connections_per_peer: int = 50
    max_connection_rate_per_peer: float = 100.0
    max_requests_per_second_per_peer: float = 200.0
    auth_failures_before_lockout: int = 5
    lockout_seconds: float = 900.0
    request_arrival_timeout: float = 20.0


@dataclass(frozen=True)
class OaiSettings:
    """The OAI-PMH provider (issue 19): off until ``listen`` names an endpoint."""

    listen: tuple[str, ...] = ()
    path: str = "/oai"
    base_url: str = ""                 # what harvesters use; required with listen
    repository_name: str = "Interlend"
    repository_identifier: str = ""    # a domain name, for oai:<domain>:<record id>
    admin_emails: tuple[str, ...] = ()
    page_size: int = 100
    token_lifetime: float = 86400.0
    max_body_size: int = 16 * 1024
    idle_timeout: float = 60.0
    request_arrival_timeout: float = 20.0
    max_connections: int = 200
    max_connections_per_peer: int = 20
    max_requests_per_second_per_peer: float = 20.0


def oai_problems(oai: OaiSettings) -> list[tuple[str, str]]:
    """What is wrong with ``[oai]``, as (path, message); nothing is checked while it is off
    except the numbers."""
    problems = [(f"oai.{key}", "must be greater than zero")
                for key in ("page_size", "token_lifetime", "max_body_size", "idle_timeout",
                            "request_arrival_timeout", "max_connections",
                            "max_connections_per_peer") if getattr(oai, key) <= 0]
    if oai.page_size > 1000:
        problems.append(("oai.page_size", "must not exceed 1000"))
    if not oai.listen:
        return problems
    if not oai.path.startswith("/"):
        problems.append(("oai.path", f"must start with '/' (got {oai.path!r})"))
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", oai.base_url):
        problems.append(("oai.base_url", "required with oai.listen: the http(s) URL harvesters "
                                         "use, e.g. https://library.example.org/oai"))
    if not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9-]*(\.[a-zA-Z][a-zA-Z0-9-]*)+",
                        oai.repository_identifier):
        problems.append(("oai.repository_identifier",
                         "required with oai.listen: a domain name, e.g. library.example.org"))
    if not oai.admin_emails or not all(re.fullmatch(r"[^@\s]+@[^@\s]+", e)
                                       for e in oai.admin_emails):
        problems.append(("oai.admin_emails", "required with oai.listen: e-mail addresses"))
    return problems


@dataclass(frozen=True)
class SruSettings:
    """The SRU listener (off while ``listen`` is empty), its limits and result sets."""

    listen: tuple[str, ...] = ()
    path: str = "/sru"
    database: str = "Default"
    max_body_size: int = 64 * 1024
    request_timeout: float = 25.0
    idle_timeout: float = 60.0
    request_arrival_timeout: float = 20.0
    max_connections: int = 1000
    max_connections_per_peer: int = 50
    max_connection_rate_per_peer: float = 100.0
    max_requests_per_second_per_peer: float = 100.0
    default_maximum_records: int = 10
    maximum_records: int = 100
    maximum_terms: int = 100
    max_result_sets: int = 1000
    max_result_set_ttl: int = 600
    max_sort_records: int = 10000


@dataclass(frozen=True)
class AuditSettings:
    """What the audit log keeps, and for how long."""

    bodies: str = "redacted"
    body_retention_days: int = 30
    row_retention_days: int = 365
    store_patron_ids: bool = False
    max_pending_rows: int = 100000
    # Unauthenticated or refused NCIP requests: rows kept per source address and minute (no
    # bodies, ever); past it they are counted, not stored, so one address cannot fill the disk.
    refused_rows_per_minute_per_source: float = 60.0
    # Below this much free space (MiB) on the database's file system no bodies are kept.
    min_free_disk_mb: int = 256


@dataclass(frozen=True)
class AdminSettings:
    """The admin listener: statistics, metrics and the staff dashboard."""

    listen: tuple[str, ...] = ("tcp:8081:interface=127.0.0.1",)
    username: str = "admin"
    password: str = field(default="", repr=False)
    # Host header values the admin listener answers (DNS rebinding). Loopback names and the
    # address a request arrived on are always accepted; add the names staff browse to.
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatsSettings:
    """How partner statistics value the requests we did not have to buy elsewhere."""

    document_supply_cost: float = 0.0
    currency: str = ""


@dataclass(frozen=True)
class CirculationSettings:
    """Local loan policy applied to resource-sharing loans (ours and borrowed items)."""

    loan_period_days: int = 28
    borrowed_loan_period_days: int = 21
    max_renewals: int = 2
    pickup_period_days: int = 7


@dataclass(frozen=True)
class BackendSettings:
    """Which catalogue and circulation system the gateway drives: the kinds of backends
    registered under the ``interlend.backends`` entry points (:mod:`gateway.backends.registry`).

    ``kind`` serves both; ``catalogue`` or ``circulation`` name another kind for one of them
    (the library's own Z39.50 server for the catalogue, say, with circulation kept embedded).
    Each backend's own settings are the table ``[backend.<kind>]``.
    """

    kind: str = "embedded"
    catalogue: str = ""
    circulation: str = ""
    tables: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict, metadata={"subtables": True})

    @property
    def catalogue_kind(self) -> str:
        """The kind of backend serving the catalogue."""
        return self.catalogue or self.kind

    @property
    def circulation_kind(self) -> str:
        """The kind of backend serving circulation."""
        return self.circulation or self.kind

    def chosen(self) -> list[tuple[str, str]]:
        """(kind, the key that chose it) for each backend in use, each kind once."""
        chosen = [(self.catalogue_kind, "backend.catalogue" if self.catalogue else "backend.kind"),
                  (self.circulation_kind,
                   "backend.circulation" if self.circulation else "backend.kind")]
        return [pair for index, pair in enumerate(chosen)
                if pair[0] not in [kind for kind, _ in chosen[:index]]]


@dataclass(frozen=True)
class PeerAuth:
    """How a peer proves who it is."""

    kind: str = "none"
    secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Peer:
    """A broker that calls us: its identities, credentials and preferences."""

    name: str
    ncip_agency_ids: tuple[str, ...] = ()
    from_system_ids: tuple[str, ...] = ()
    application_profile: str | None = None
    auth: PeerAuth = PeerAuth()
    allow_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    z3950_user: str | None = None
    z3950_password: str | None = field(default=None, repr=False)
    z3950_charset: str = "utf-8"
    fallback_charset: str = ""  # NCIP bodies that are not what they declare: e.g. windows-1252
    holdings_tag: str = "852"
    namespace_style: str = "request"  # answer in the request's own style
    code: str = ""
    temporary_barcode: str = "request-id"
    institutional_patron: str = "INST-{agency}"
    pickup_locations: Mapping[str, str] = field(default_factory=dict)
    default_pickup_location: str = ""
    delete_on_checkin: bool = False
    checkin_not_on_loan: str = "success"
    title_prefix: str = "[ILL]"

    def allows(self, host: str) -> bool:
        """True if a request from ``host`` may be attributed to this peer."""
        if not self.allow_from:
            return True
        return _allowed(self.allow_from, host)


@functools.lru_cache(maxsize=4096)
def _allowed(allow_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
             host: str) -> bool:
    """``Peer.allows``, remembered per (networks, address): brokers call from a few addresses,
    and parsing the address and testing the networks cost more than the rest of attribution."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in allow_from)


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    gateway: GatewaySettings = GatewaySettings()
    z3950: Z3950Settings = Z3950Settings()
    ncip: NcipSettings = NcipSettings()
    sru: SruSettings = SruSettings()
    audit: AuditSettings = AuditSettings()
    circulation: CirculationSettings = CirculationSettings()
    backend: BackendSettings = BackendSettings()
    admin: AdminSettings = AdminSettings()
    stats: StatsSettings = StatsSettings()
    oai: OaiSettings = OaiSettings()
    peers: tuple[Peer, ...] = ()
    source: str = "<defaults>"

    def peer(self, name: str) -> Peer | None:
        """The peer called ``name``, if any."""
        return next((p for p in self.peers if p.name == name), None)

    def with_overrides(self, *, database: str | None = None,
                       z3950_listen: list[str] | None = None,
                       ncip_listen: list[str] | None = None,
                       admin_listen: list[str] | None = None,
                       sru_listen: list[str] | None = None) -> Config:
        """A copy with command-line overrides applied (for one run only)."""
        config = self
        if database:
            config = replace(config, gateway=replace(config.gateway, database=Path(database)))
        if z3950_listen:
            config = replace(config, z3950=replace(config.z3950, listen=tuple(z3950_listen)))
        if ncip_listen:
            config = replace(config, ncip=replace(config.ncip, listen=tuple(ncip_listen)))
        if sru_listen:
            config = replace(config, sru=replace(config.sru, listen=tuple(sru_listen)))
        if admin_listen:
            config = replace(config, admin=replace(config.admin, listen=tuple(admin_listen)))
            # The same rule as for the file: a command line must not open what it forbids.
            errors = [f"{path}: {message} (--admin-listen {', '.join(admin_listen)})"
                      for path, message in admin_problems(config.admin)]
            if errors:
                raise ConfigErrors(config.source, errors)
        return config


# -- validation ---------------------------------------------------------------------------------


class _Checker:
    """Collects errors while a raw TOML table is turned into settings objects."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def table(self, raw: Any, path: str) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.error(path, f"must be a table, not {type(raw).__name__}")
            return {}
        return raw

    def unknown_keys(self, raw: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in raw:
            if key not in allowed:
                self.error(_join(path, key), "unknown key")

    def settings(self, cls: type, raw: Any, path: str) -> Any:
        """Build a flat settings dataclass, type-checking each value against its default."""
        table = self.table(raw, path)
        subtables = {f.name for f in fields(cls) if f.metadata.get("subtables")}
        values: dict[str, Any] = {}
        for name in subtables:  # the keys whose values are tables: [section.<key>]
            values[name] = {key: value for key, value in table.items() if isinstance(value, dict)}
            table = {key: value for key, value in table.items() if not isinstance(value, dict)}
        names = {f.name for f in fields(cls)} - subtables
        self.unknown_keys(table, names, path)
        for f in fields(cls):
            if f.name in table and f.name not in subtables:
                value = self.value(table[f.name], f.default, _join(path, f.name))
                if value is not _INVALID:
                    values[f.name] = value
        return cls(**values)

    def value(self, raw: Any, default: Any, path: str) -> Any:
        """Check ``raw`` has the type of ``default`` (bool, int, float, str, Path, tuple[str])."""
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            return self._bad(path, "must be true or false", raw)
        if isinstance(default, int):
            if isinstance(raw, int) and not isinstance(raw, bool):
                if raw < 0:
                    return self._bad(path, "must not be negative", raw)
                return raw
            return self._bad(path, "must be an integer", raw)
        if isinstance(default, float):
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                if raw < 0:
                    return self._bad(path, "must not be negative", raw)
                return float(raw)
            return self._bad(path, "must be a number", raw)
        if isinstance(default, Path):
            if isinstance(raw, str) and raw:
                return Path(raw)
            return self._bad(path, "must be a non-empty path", raw)
        if isinstance(default, tuple):
            if isinstance(raw, list) and all(isinstance(v, str) for v in raw):
                return tuple(raw)
            return self._bad(path, "must be a list of strings", raw)
        if isinstance(raw, str):
            return raw
        return self._bad(path, "must be a string", raw)

    def _bad(self, path: str, message: str, raw: Any) -> object:
        if path.rsplit(".", 1)[-1] in SECRET_KEYS:  # never echo a secret, even a mistyped one
            self.error(path, f"{message} (got a {type(raw).__name__}; value not shown)")
            return _INVALID
        self.error(path, f"{message} (got {raw!r})" if not isinstance(raw, (dict, list)) else
                   f"{message} (got a {type(raw).__name__})")
        return _INVALID

    def choice(self, value: str, choices: tuple[str, ...], path: str) -> None:
        if value not in choices:
            self.error(path, f"{value!r} is not one of {', '.join(choices)}")

    def endpoints(self, endpoints: tuple[str, ...], path: str) -> None:
        if not endpoints:
            self.error(path, "at least one listen endpoint is required")
        for index, description in enumerate(endpoints):
            problem = endpoint_problem(description)
            if problem:
                self.error(f"{path}[{index}]", problem)


_INVALID = object()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def endpoint_problem(description: str) -> str | None:
    """Why a Twisted server endpoint string is unusable, or None if it looks right."""
    kind, _, rest = description.partition(":")
    if kind not in ENDPOINT_KINDS:
        return f"{description!r}: endpoint type must be one of {', '.join(ENDPOINT_KINDS)}"
    if kind in ("tcp", "tcp6", "ssl"):
        port = rest.split(":", 1)[0]
        if port.startswith("port="):
            port = port[5:]
        if not port.isdigit() or int(port) > 65535:
            return f"{description!r}: needs a port number, as in tcp:2100:interface=127.0.0.1"
    if kind == "ssl" and "privateKey=" not in rest:
        return f"{description!r}: ssl endpoints need privateKey= (and certKey=)"
    if kind == "unix" and not rest:
        return f"{description!r}: needs a socket path"
    if kind == "systemd" and "index=" not in rest and "name=" not in rest:
        return f"{description!r}: needs index= or name=, as in systemd:domain=INET:index=0"
    return None


def _loopback_only(description: str) -> bool:
    """True for an endpoint bound to a loopback interface (or a Unix socket)."""
    if description.startswith("unix:"):
        return True
    match = re.search(r"interface=((?:\\:|[^:])+)", description)
    if not match:
        return False
    host = match.group(1).replace("\\:", ":").strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def admin_problems(admin: AdminSettings) -> list[tuple[str, str]]:
    """What is wrong with the admin listener's settings, as (path, message): the one rule for
    the file, the command line and a reload."""
    if not admin.password and not all(_loopback_only(e) for e in admin.listen):
        return [("admin.password", "required when the admin listener is not loopback-only")]
    return []


_PEER_KEYS = {f.name for f in fields(Peer)}


HOLDINGS_LAYOUTS = HOLDINGS_TAGS + ("852-polaris", "852-evergreen")
"""A peer's ``holdings_tag``: a holdings tag, or an 852 profile for a broker (README)."""


def _peer(check: _Checker, raw: Any, path: str) -> Peer | None:
    table = check.table(raw, path)
    check.unknown_keys(table, _PEER_KEYS, path)
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        check.error(_join(path, "name"), "required, a non-empty string")
        name = f"<peer {path}>"
    values: dict[str, Any] = {"name": name}
    defaults = Peer(name=name)
    for key in ("ncip_agency_ids", "from_system_ids", "application_profile", "z3950_user",
                "z3950_password", "z3950_charset", "fallback_charset", "holdings_tag",
                "namespace_style", "code",
                "temporary_barcode", "institutional_patron", "default_pickup_location",
                "delete_on_checkin", "checkin_not_on_loan", "title_prefix"):
        if key in table:
            default = getattr(defaults, key)
            value = check.value(table[key], "" if default is None else default,
                                _join(path, key))
            if value is not _INVALID:
                values[key] = value
    peer = Peer(**values)
    check.choice(peer.namespace_style, NAMESPACE_STYLES, _join(path, "namespace_style"))
    check.choice(peer.temporary_barcode, BARCODE_POLICIES, _join(path, "temporary_barcode"))
    check.choice(peer.checkin_not_on_loan, CHECKIN_NOT_ON_LOAN,
                 _join(path, "checkin_not_on_loan"))
    check.choice(peer.holdings_tag, HOLDINGS_LAYOUTS, _join(path, "holdings_tag"))
    try:
        "".encode(peer.z3950_charset)
    except LookupError:
        check.error(_join(path, "z3950_charset"), f"unknown character set {peer.z3950_charset!r}")
    if peer.fallback_charset:
        problem = _fallback_charset_problem(peer.fallback_charset)
        if problem:
            check.error(_join(path, "fallback_charset"), problem)
    if peer.temporary_barcode == "prefixed" and not peer.code:
        check.error(_join(path, "code"), 'required when temporary_barcode = "prefixed"')
    if (peer.z3950_user is None) != (peer.z3950_password is None):
        missing = "z3950_password" if peer.z3950_password is None else "z3950_user"
        check.error(_join(path, missing), "z3950_user and z3950_password go together")
    try:
        peer.institutional_patron.format(agency="X")
    except (KeyError, IndexError, ValueError):
        check.error(_join(path, "institutional_patron"),
                    "may only use the placeholder {agency}")
    auth = _auth(check, table.get("auth"), _join(path, "auth"))
    extra: dict[str, Any] = {
        "auth": auth,
        "allow_from": _networks(check, table.get("allow_from"), _join(path, "allow_from")),
        "pickup_locations": _string_map(check, table.get("pickup_locations"),
                                        _join(path, "pickup_locations"))}
    if auth.kind == "none" and "auth" in table and not extra["allow_from"]:
        check.error(_join(path, "allow_from"), 'required when auth kind = "none": the source '
                    "networks are then the peer's only authentication")
    return replace(peer, **extra)


def _fallback_charset_problem(charset: str) -> str | None:
    """Why a peer's fallback_charset is unusable, or None. ASCII-compatible charsets only
    (windows-1252, iso-8859-15...): one that turns other bytes into markup (utf-7 reads
    "+ADw-" as "<"; utf-16) would slip past the DOCTYPE checks made on the raw bytes."""
    probe = bytes(range(128)) + b"+ADw-"
    try:
        decoded = probe.decode(charset)
    except LookupError:
        return f"unknown character set {charset!r}"
    except UnicodeDecodeError:
        decoded = None
    if decoded != probe.decode("ascii"):
        return f"{charset!r} is not ASCII-compatible"
    return None


def _auth(check: _Checker, raw: Any, path: str) -> PeerAuth:
    if raw is None:
        # No default: a peer without credentials must say so (kind = "none" with allow_from).
        check.error(path, 'required: { kind = "shared-secret" | "url-token" | "bearer", ... }, '
                    'or { kind = "none" } with allow_from networks')
        return PeerAuth()
    table = check.table(raw, path)
    check.unknown_keys(table, {"kind", "secret", "token"}, path)
    if "kind" not in table:
        check.error(_join(path, "kind"), f"required, one of {', '.join(AUTH_KINDS)}")
    kind = table.get("kind", "none")
    if not isinstance(kind, str):
        check.error(_join(path, "kind"), "must be a string")
        kind = "none"
    check.choice(kind, AUTH_KINDS, _join(path, "kind"))
    values = {}
    for key in ("secret", "token"):
        if key in table:
            if isinstance(table[key], str) and table[key]:
                values[key] = table[key]
            else:
                check.error(_join(path, key), "must be a non-empty string")
    needed = {"shared-secret": "secret", "url-token": "token", "bearer": "token"}.get(kind)
    if needed and needed not in table:
        check.error(_join(path, needed), f'required when kind = "{kind}"')
    return PeerAuth(kind=kind, **values)


def _networks(check: _Checker, raw: Any, path: str) -> tuple[Any, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        check.error(path, "must be a list of networks such as \"127.0.0.0/8\"")
        return ()
    networks = []
    for index, value in enumerate(raw):
        try:
            networks.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            check.error(f"{path}[{index}]", f"{value!r} is not an IP address or network")
    return tuple(networks)


def _string_map(check: _Checker, raw: Any, path: str) -> dict[str, str]:
    table = check.table(raw, path)
    result = {}
    for key, value in table.items():
        if isinstance(value, str):
            result[key] = value
        else:
            check.error(_join(path, key), "must be a string")
    return result


_SECTIONS = {"gateway": GatewaySettings, "z3950": Z3950Settings, "ncip": NcipSettings,
             "sru": SruSettings,
             "audit": AuditSettings, "circulation": CirculationSettings,
             "backend": BackendSettings, "admin": AdminSettings, "stats": StatsSettings,
             "oai": OaiSettings}


MAX_WORKERS = 64
"""Most serving processes ``gateway.workers`` may ask for."""


def _auto_workers(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """``[gateway] workers = "auto"`` read as the number of CPUs this process may use."""
    gateway = raw.get("gateway")
    if isinstance(gateway, Mapping) and gateway.get("workers") == "auto":
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return {**raw, "gateway": {**gateway, "workers": cpus or os.cpu_count() or 1}}
    return raw


def parse_config(raw: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate a parsed TOML document; raise :class:`ConfigErrors` with every error found."""
    check = _Checker()
    check.unknown_keys(raw, set(_SECTIONS) | {"peers"}, "")
    raw = _auto_workers(raw)
    sections = {name: check.settings(cls, raw.get(name), name) for name, cls in _SECTIONS.items()}
    gateway, z3950, ncip = sections["gateway"], sections["z3950"], sections["ncip"]
    audit, backend = sections["audit"], sections["backend"]
    circulation = sections["circulation"]
    admin, stats = sections["admin"], sections["stats"]
    check.endpoints(admin.listen, "admin.listen")
    for problem_path, message in admin_problems(admin):
        check.error(problem_path, message)
    for key in ("loan_period_days", "borrowed_loan_period_days", "pickup_period_days"):
        if getattr(circulation, key) == 0:
            check.error(f"circulation.{key}", "must be greater than zero")
    try:
        ZoneInfo(gateway.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        check.error("gateway.timezone", f"unknown time zone {gateway.timezone!r}")
    if not gateway.agency_id.strip():
        check.error("gateway.agency_id", "must not be empty")
    check.endpoints(z3950.listen, "z3950.listen")
    check.endpoints(ncip.listen, "ncip.listen")
    if not z3950.databases:
        check.error("z3950.databases", "at least one database name is required")
    if not ncip.path.startswith("/"):
        check.error("ncip.path", f"must start with '/' (got {ncip.path!r})")
    for section, settings, keys in (
            ("z3950", z3950, ("max_pdu_size", "max_nesting_depth", "preferred_message_size",
                              "max_result_sets", "max_present_records", "max_connections",
                              "max_connections_per_peer", "idle_timeout", "init_timeout")),
            ("ncip", ncip, ("max_body_size", "max_nesting_depth", "request_timeout",
                            "max_connections", "max_connections_per_peer",
                            "request_arrival_timeout"))):
        for key in keys:
            if getattr(settings, key) == 0:
                check.error(f"{section}.{key}", "must be greater than zero")
    if z3950.max_pipelined_requests == 0:
        check.error("z3950.max_pipelined_requests", "must be greater than zero")
    if z3950.max_pdu_size > 16 * 1024 * 1024:
        check.error("z3950.max_pdu_size", "must not exceed 16 MiB (16777216)")
    if not 1 <= z3950.max_nesting_depth <= 100:
        check.error("z3950.max_nesting_depth", "must be between 1 and 100")
    for key in ("max_term_length", "max_term_words", "operation_time_limit", "pdu_timeout",
                "memory_budget", "max_sort_records"):
        if getattr(z3950, key) == 0:
            check.error(f"z3950.{key}", "must be greater than zero")
    if z3950.memory_budget < 2 * z3950.max_pdu_size:
        check.error("z3950.memory_budget", "must hold at least two PDUs of max_pdu_size")
    if gateway.catalogue_readers == 0:
        check.error("gateway.catalogue_readers", "must be greater than zero")
    if not 1 <= gateway.workers <= MAX_WORKERS:
        check.error("gateway.workers", f'must be between 1 and {MAX_WORKERS}, or "auto"')
    if not 1 <= z3950.max_query_operators <= 4000:
        check.error("z3950.max_query_operators", "must be between 1 and 4000")
    check.choice(audit.bodies, AUDIT_BODIES, "audit.bodies")
    if audit.max_pending_rows == 0:
        check.error("audit.max_pending_rows", "must be greater than zero")
    if audit.row_retention_days < audit.body_retention_days:
        check.error("audit.row_retention_days", "must not be shorter than body_retention_days")
    _check_backend_kinds(check, backend)
    if sections["oai"].listen:  # off when empty
        check.endpoints(sections["oai"].listen, "oai.listen")
    for problem_path, message in oai_problems(sections["oai"]):
        check.error(problem_path, message)
    sru = sections["sru"]
    _check_sru(check, sru)

    raw_peers = raw.get("peers", [])
    peers: list[Peer] = []
    if not isinstance(raw_peers, list):
        check.error("peers", "must be an array of tables ([[peers]])")
        raw_peers = []
    for index, raw_peer in enumerate(raw_peers):
        peer = _peer(check, raw_peer, f"peers[{index}]")
        if peer is not None:
            peers.append(peer)
    _check_unique(check, peers)
    if check.errors:
        raise ConfigErrors(source, check.errors)
    return Config(gateway=gateway, z3950=z3950, ncip=ncip, sru=sru, audit=audit,
                  circulation=circulation, backend=backend, admin=admin, stats=stats,
                  oai=sections["oai"], peers=tuple(peers), source=source)


def _check_sru(check: _Checker, sru: SruSettings) -> None:
    """The ``[sru]`` rules: endpoints, the path, positive limits, records within the cap."""
    if sru.listen:  # empty: SRU is off
        check.endpoints(sru.listen, "sru.listen")
    if not sru.path.startswith("/"):
        check.error("sru.path", f"must start with '/' (got {sru.path!r})")
    if not sru.database.strip():
        check.error("sru.database", "must not be empty")
    for key in ("max_body_size", "request_timeout", "idle_timeout", "request_arrival_timeout",
                "max_connections", "max_connections_per_peer", "maximum_records",
                "maximum_terms", "max_result_sets", "max_sort_records"):
        if getattr(sru, key) == 0:
            check.error(f"sru.{key}", "must be greater than zero")
    if sru.default_maximum_records > sru.maximum_records:
        check.error("sru.default_maximum_records", "must not exceed sru.maximum_records")


def _check_backend_kinds(check: _Checker, backend: BackendSettings) -> None:
    """An error at the key naming a kind no installed backend has (``backend.kind``,
    ``backend.catalogue``, ``backend.circulation``, a ``[backend.<kind>]`` table). The registry
    is imported here, not with this module: the modules that read a Config load without the
    backends package; a backend's own code loads only at start-up and in ``check-config``."""
    from gateway.backends.registry import registered_kinds, unknown_kind_message

    kinds = registered_kinds()
    named = [("backend.kind", backend.kind), ("backend.catalogue", backend.catalogue),
             ("backend.circulation", backend.circulation)]
    named += [(f"backend.{kind}", kind) for kind in backend.tables]
    for path, kind in named:
        if kind and kind not in kinds:
            check.error(path, unknown_kind_message(kind, kinds))


def told_apart(a: Peer, b: Peer) -> bool:
    """Whether two peers that share an agency id can never both match one request: one
    authenticates by token (tokens are unique, and a request without one is no token peer's),
    or both configure an application_profile (different ones), or both configure
    from_system_ids (none in common). What ``gateway.ncip.peers.identify`` relies on."""
    if a.auth.kind in TOKEN_AUTH_KINDS or b.auth.kind in TOKEN_AUTH_KINDS:
        return True
    profile_a = (a.application_profile or "").strip().casefold()
    profile_b = (b.application_profile or "").strip().casefold()
    if profile_a and profile_b and profile_a != profile_b:
        return True
    systems_a = {s.strip().casefold() for s in a.from_system_ids}
    systems_b = {s.strip().casefold() for s in b.from_system_ids}
    return bool(systems_a and systems_b and not systems_a & systems_b)


def _check_unique(check: _Checker, peers: list[Peer]) -> None:
    """Names, tokens and Z39.50 users must each identify one peer; peers may share an agency
    id only when something else tells them apart (:func:`told_apart`)."""
    seen: dict[tuple[str, str], int] = {}
    agencies: dict[str, list[int]] = {}
    for index, peer in enumerate(peers):
        for agency in dict.fromkeys(a.strip().casefold() for a in peer.ncip_agency_ids):
            for other in agencies.setdefault(agency, []):
                if not told_apart(peers[other], peer):
                    check.error(f"peers[{index}].ncip_agency_ids",
                                f"{agency!r} is already used by peers[{other}] and nothing tells"
                                " them apart: give both a different application_profile, or"
                                " from_system_ids with none in common, or authenticate one by"
                                ' auth.kind = "url-token" or "bearer"')
            agencies[agency].append(index)
        keys = [("name", peer.name)]
        if peer.auth.kind in TOKEN_AUTH_KINDS and peer.auth.token:
            keys.append(("auth.token", peer.auth.token))
        if peer.z3950_user:
            keys.append(("z3950_user", peer.z3950_user))
        for key in keys:
            if key in seen:
                shown = ("the same token" if key[0] == "auth.token" else f"{key[1]!r}")
                check.error(f"peers[{index}].{key[0]}",
                            f"{shown} is already used by peers[{seen[key]}]")
            else:
                seen[key] = index


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML file (or the built-in defaults when ``path`` is None)."""
    if path is None:
        return Config()
    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise ConfigErrors(source, [f"cannot read: {e.strerror or e}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigErrors(source, [f"not valid TOML: {e}"]) from None
    except UnicodeDecodeError as e:  # tomllib decodes the bytes first, outside its own errors
        raise ConfigErrors(source, [f"not valid TOML: not UTF-8 text ({e.reason} at byte "
                                    f"{e.start})"]) from None
    return parse_config(raw, source)


# -- what would fail at start (check-config) -----------------------------------------------------


def deployment_problems(config: Config) -> list[str]:
    """What a valid file would still fail at (or should not go live with), as ``path: message``
    lines: two listeners on one port, a database directory that is missing and cannot be
    created or is not writable, a backend that cannot be loaded, placeholder secrets left in.
    Never shows a secret."""
    problems = _port_clashes(config)
    problems += _database_problems(Path(config.gateway.database))
    problems += _backend_problems(config)
    problems += [f"{path}: still the example placeholder ({PLACEHOLDER}...); set a real secret"
                 for path in _placeholder_paths(config)]
    return problems


def _backend_problems(config: Config) -> list[str]:
    """Why a configured backend cannot be loaded (its package fails to import, or what it
    registered is not a backend), and what is wrong with its ``[backend.<kind>]`` table, one
    line per problem with its path; nothing when all is well."""
    from gateway.backends.registry import BackendUnavailable, select_backend, settings_problems

    problems: list[str] = []
    for kind, path in config.backend.chosen():
        try:
            backend = select_backend(kind, path)
        except BackendUnavailable as e:
            problems.append(str(e))
            continue
        problems += settings_problems(backend, config.backend.tables.get(kind, {}),
                                      f"backend.{kind}")
    return problems


def _listen_key(description: str) -> tuple[str, str, str] | None:
    """(family, interface, port) of a tcp/tcp6/ssl endpoint, ("systemd", "", name-or-index)
    of a passed socket, ("unix", "", path); None for port 0 (the system picks one)."""
    kind, _, rest = description.partition(":")
    parts = re.split(r"(?<!\\):", rest)
    options = dict(part.split("=", 1) for part in parts if "=" in part)
    if kind == "systemd":
        return "systemd", "", options.get("name") or f"index={options.get('index')}"
    if kind == "unix":
        return "unix", "", parts[0]
    port = options.get("port") or (parts[0] if parts and "=" not in parts[0] else "")
    if not port.isdigit() or int(port) == 0:
        return None
    interface = options.get("interface", "").replace("\\:", ":").strip("[]")
    return "tcp", interface, str(int(port))


def _port_clashes(config: Config) -> list[str]:
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    problems = []
    for section in ("z3950", "ncip", "sru", "admin"):
        for index, description in enumerate(getattr(config, section).listen):
            key = _listen_key(description)
            if key is None:
                continue
            family, interface, port = key
            path = f"{section}.listen[{index}]"
            for (other_family, other_port), (other_path, other_interface) in seen.items():
                if (family, port) != (other_family, other_port):
                    continue
                wildcard = ("", "0.0.0.0", "::")
                if (family != "tcp" or interface == other_interface or interface in wildcard
                        or other_interface in wildcard):
                    what = "socket" if family == "systemd" else "path" if family == "unix" \
                        else "port"
                    problems.append(f"{path}: {description!r} uses the same {what} as "
                                    f"{other_path}")
                    break
            seen.setdefault((family, port), (path, interface))
    return problems


def _database_problems(database: Path) -> list[str]:
    directory = database.parent if str(database.parent) else Path(".")
    if database.is_dir():
        return [f"gateway.database: {database} is a directory, not a database file"]
    if database.exists() and not os.access(database, os.R_OK | os.W_OK):
        return [f"gateway.database: {database} is not readable and writable by this user"]
    if directory.is_dir():
        if not os.access(directory, os.W_OK | os.X_OK):
            return [f"gateway.database: directory {directory} is not writable by this user "
                    f"(SQLite writes its -wal and -shm files beside the database)"]
        return []
    ancestor = directory
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        return [f"gateway.database: directory {directory} does not exist and cannot be "
                f"created by this user (under systemd, StateDirectory= creates "
                f"/var/lib/interlend)"]
    return []


def _placeholder_paths(config: Config) -> list[str]:
    paths = []
    if PLACEHOLDER in (config.admin.password or "").lower():
        paths.append("admin.password")
    for index, peer in enumerate(config.peers):
        for path, value in ((f"peers[{index}].auth.secret", peer.auth.secret),
                            (f"peers[{index}].auth.token", peer.auth.token),
                            (f"peers[{index}].z3950_password", peer.z3950_password)):
            if value and PLACEHOLDER in value.lower():
                paths.append(path)
    return paths
