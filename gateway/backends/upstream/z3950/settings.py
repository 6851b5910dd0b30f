# -*- test-case-name: tests.gateway.test_upstream_z3950_pqf -*-
"""``[backend.z3950]``: the upstream target, its credentials, LMS profile, timeouts and limits.

Every key is checked with its path (``backend.z3950.port: ...``); :func:`read_settings` either
returns the whole settings or raises :class:`SettingsError` listing every problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.backends.upstream.profile import HoldingsConfigError, HoldingsProfile
from gateway.backends.upstream.z3950.pool import PoolLimits
from gateway.domain.query import IDENTIFIER_INDEXES, WORD_INDEXES, YEAR_INDEX
from protocols.z3950 import oids

RECORD_SYNTAXES = {"usmarc": oids.USMARC, "xml": oids.XML, "opac": oids.OPAC}
"""What Present may fetch in: ISO 2709 MARC or MARCXML (both carry Koha's 952 items), or OPAC
(holdings and circulation records beside the MARC record: Evergreen, Sierra, Alma …)."""

_NUMBERS: dict[str, tuple[type, float, float]] = {
    "port": (int, 1, 65535), "connect_timeout": (float, 0.1, 600),
    "request_timeout": (float, 0.1, 600), "idle_timeout": (float, 1, 86400),
    "pool_size": (int, 1, 256), "max_waiting": (int, 0, 100000),
    "backoff_initial": (float, 0.0, 3600), "backoff_max": (float, 0.0, 3600),
    "present_chunk": (int, 1, 1000), "result_sets_per_association": (int, 1, 1000),
}
_TEXTS = ("host", "database", "user", "password", "charset", "record_syntax")
KEYS = frozenset({*_NUMBERS, *_TEXTS, "profile", "uses"})


class SettingsError(ValueError):
    """Every problem of a ``[backend.z3950]`` table, one ``path.key: why`` each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Z3950Settings:
    """The Z39.50 upstream's settings (defaults suit Koha's Zebra on its own host)."""

    host: str
    port: int = 210
    database: str = "biblios"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    charset: str = "UTF-8"
    """Proposed by character set negotiation; empty: none proposed."""
    record_syntax: str = "usmarc"
    profile: HoldingsProfile = field(default_factory=lambda: HoldingsProfile.named("koha"))
    uses: Mapping[str, int] = field(default_factory=dict)
    """Overrides of the profile's attribute map: our index name → Use attribute (0: none)."""
    connect_timeout: float = 5.0
    request_timeout: float = 10.0
    idle_timeout: float = 300.0
    pool_size: int = 8
    max_waiting: int = 100
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    present_chunk: int = 50
    result_sets_per_association: int = 16
    """Named result sets we keep on one upstream association (the oldest is replaced)."""

    @property
    def limits(self) -> PoolLimits:
        """The pool's limits."""
        return PoolLimits(size=self.pool_size, max_waiting=self.max_waiting,
                          idle_timeout=self.idle_timeout, backoff_initial=self.backoff_initial,
                          backoff_max=self.backoff_max)

    @property
    def element_set(self) -> str:
        """The element set Present asks for: the full record (Zebra's MARCXML is ``marcxml``)."""
        return "marcxml" if self.record_syntax == "xml" else "F"

    @property
    def syntax_oid(self) -> oids.Oid:
        """The record syntax Present asks for."""
        return RECORD_SYNTAXES[self.record_syntax]


def read_settings(table: Mapping[str, Any], path: str = "backend.z3950") -> Z3950Settings:
    """The settings in ``table``, or :class:`SettingsError` with every problem."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key in table:
        if key not in KEYS:
            problems.append(f"{path}.{key}: unknown key (known: {', '.join(sorted(KEYS))})")
    for key, (kind, low, high) in _NUMBERS.items():
        if key not in table:
            continue
        raw = table[key]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (
                kind is int and not isinstance(raw, int)):
            problems.append(f"{path}.{key}: must be {'an integer' if kind is int else 'a number'}")
        elif not low <= raw <= high:
            problems.append(f"{path}.{key}: must be between {low:g} and {high:g}")
        else:
            values[key] = kind(raw)
    for key in _TEXTS:
        if key in table:
            if not isinstance(table[key], str):
                problems.append(f"{path}.{key}: must be a string")
            else:
                values[key] = table[key]
    if not values.get("host"):
        problems.append(f"{path}.host: required (the upstream Z39.50 target's host name)")
    if "database" in values and not values["database"]:
        problems.append(f"{path}.database: must not be empty")
    if values.get("record_syntax", "usmarc") not in RECORD_SYNTAXES:
        problems.append(f"{path}.record_syntax: must be one of {', '.join(RECORD_SYNTAXES)}")
    if ("password" in values) and "user" not in values:
        problems.append(f"{path}.password: given without {path}.user")
    if values.get("backoff_initial", 1.0) > values.get("backoff_max", 30.0):
        problems.append(f"{path}.backoff_initial: must not exceed backoff_max")
    profile = table.get("profile", "koha")
    try:
        values["profile"] = (HoldingsProfile.named(profile) if isinstance(profile, str)
                             else HoldingsProfile.from_mapping(profile, f"{path}.profile"))
    except HoldingsConfigError as e:
        problems.extend(e.errors)
    except ValueError as e:
        problems.append(f"{path}.profile: {e}")
    uses = table.get("uses", {})
    known = WORD_INDEXES | IDENTIFIER_INDEXES | {YEAR_INDEX}
    if not isinstance(uses, Mapping):
        problems.append(f"{path}.uses: must be a table (index = Use attribute)")
    else:
        for index, use in uses.items():
            if index not in known:
                problems.append(f"{path}.uses.{index}: unknown index (known: "
                                f"{', '.join(sorted(known))})")
            elif isinstance(use, bool) or not isinstance(use, int) or not 0 <= use <= 65535:
                problems.append(f"{path}.uses.{index}: must be a Use attribute number "
                                "(0: not supported)")
        values["uses"] = dict(uses)
    if problems:
        raise SettingsError(problems)
    return Z3950Settings(**values)
