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
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENDPOINT_KINDS = ("tcp", "tcp6", "ssl", "unix", "systemd")
AUTH_KINDS = ("none", "shared-secret", "url-token", "bearer")
NAMESPACE_STYLES = ("ns1", "default", "none")
BARCODE_POLICIES = ("request-id", "lender-barcode", "prefixed")
CHECKIN_NOT_ON_LOAN = ("success", "problem")
AUDIT_BODIES = ("full", "redacted", "none")
HOLDINGS_TAGS = ("852", "926", "952", "982")


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


@dataclass(frozen=True)
class AuditSettings:
    """What the audit log keeps, and for how long."""

    bodies: str = "redacted"
    body_retention_days: int = 30
    row_retention_days: int = 365
    store_patron_ids: bool = False


@dataclass(frozen=True)
class AdminSettings:
    """The admin listener: statistics, metrics and the staff dashboard."""

    listen: tuple[str, ...] = ("tcp:8081:interface=127.0.0.1",)
    username: str = "admin"
    password: str = field(default="", repr=False)


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
    """Which circulation system the gateway drives."""

    kind: str = "embedded"


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
    holdings_tag: str = "852"
    namespace_style: str = "ns1"
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
    audit: AuditSettings = AuditSettings()
    circulation: CirculationSettings = CirculationSettings()
    backend: BackendSettings = BackendSettings()
    admin: AdminSettings = AdminSettings()
    stats: StatsSettings = StatsSettings()
    peers: tuple[Peer, ...] = ()
    source: str = "<defaults>"

    def peer(self, name: str) -> Peer | None:
        """The peer called ``name``, if any."""
        return next((p for p in self.peers if p.name == name), None)

    def with_overrides(self, *, database: str | None = None,
                       z3950_listen: list[str] | None = None,
                       ncip_listen: list[str] | None = None,
                       admin_listen: list[str] | None = None) -> Config:
        """A copy with command-line overrides applied (for one run only)."""
        config = self
        if database:
            config = replace(config, gateway=replace(config.gateway, database=Path(database)))
        if z3950_listen:
            config = replace(config, z3950=replace(config.z3950, listen=tuple(z3950_listen)))
        if ncip_listen:
            config = replace(config, ncip=replace(config.ncip, listen=tuple(ncip_listen)))
        if admin_listen:
            config = replace(config, admin=replace(config.admin, listen=tuple(admin_listen)))
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
        names = {f.name for f in fields(cls)}
        self.unknown_keys(table, names, path)
        values = {}
        for f in fields(cls):
            if f.name in table:
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
                "z3950_password", "z3950_charset", "holdings_tag", "namespace_style", "code",
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
    extra = {"auth": _auth(check, table.get("auth"), _join(path, "auth")),
             "allow_from": _networks(check, table.get("allow_from"), _join(path, "allow_from")),
             "pickup_locations": _string_map(check, table.get("pickup_locations"),
                                             _join(path, "pickup_locations"))}
    return replace(peer, **extra)


def _auth(check: _Checker, raw: Any, path: str) -> PeerAuth:
    table = check.table(raw, path)
    check.unknown_keys(table, {"kind", "secret", "token"}, path)
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
             "audit": AuditSettings, "circulation": CirculationSettings,
             "backend": BackendSettings, "admin": AdminSettings, "stats": StatsSettings}


def parse_config(raw: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate a parsed TOML document; raise :class:`ConfigErrors` with every error found."""
    check = _Checker()
    check.unknown_keys(raw, set(_SECTIONS) | {"peers"}, "")
    sections = {name: check.settings(cls, raw.get(name), name) for name, cls in _SECTIONS.items()}
    gateway, z3950, ncip = sections["gateway"], sections["z3950"], sections["ncip"]
    audit, backend = sections["audit"], sections["backend"]
    circulation = sections["circulation"]
    admin, stats = sections["admin"], sections["stats"]
    check.endpoints(admin.listen, "admin.listen")
    if not admin.password and not all(_loopback_only(e) for e in admin.listen):
        check.error("admin.password", "required when the admin listener is not loopback-only")
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
                            "max_connections", "max_connections_per_peer"))):
        for key in keys:
            if getattr(settings, key) == 0:
                check.error(f"{section}.{key}", "must be greater than zero")
    if z3950.max_pipelined_requests == 0:
        check.error("z3950.max_pipelined_requests", "must be greater than zero")
    if z3950.max_pdu_size > 16 * 1024 * 1024:
        check.error("z3950.max_pdu_size", "must not exceed 16 MiB (16777216)")
    if not 1 <= z3950.max_nesting_depth <= 100:
        check.error("z3950.max_nesting_depth", "must be between 1 and 100")
    check.choice(audit.bodies, AUDIT_BODIES, "audit.bodies")
    if audit.row_retention_days < audit.body_retention_days:
        check.error("audit.row_retention_days", "must not be shorter than body_retention_days")
    check.choice(backend.kind, ("embedded",), "backend.kind")

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
    return Config(gateway=gateway, z3950=z3950, ncip=ncip, audit=audit,
                  circulation=circulation, backend=backend, admin=admin, stats=stats,
                  peers=tuple(peers), source=source)


def _check_unique(check: _Checker, peers: list[Peer]) -> None:
    """Names, agency ids, tokens and Z39.50 users must each identify one peer."""
    seen: dict[tuple[str, str], int] = {}
    for index, peer in enumerate(peers):
        keys = [("name", peer.name)]
        keys += [("ncip_agency_ids", a.casefold()) for a in peer.ncip_agency_ids]
        if peer.auth.kind in ("url-token", "bearer") and peer.auth.token:
            keys.append(("auth.token", peer.auth.token))
        if peer.z3950_user:
            keys.append(("z3950_user", peer.z3950_user))
        for key in keys:
            if key in seen:
                check.error(f"peers[{index}].{key[0]}",
                            f"{key[1]!r} is already used by peers[{seen[key]}]")
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
