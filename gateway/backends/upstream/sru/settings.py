# -*- test-case-name: tests.gateway.test_upstream_sru_settings -*-
"""The ``[backend.sru]`` table: where the upstream SRU server is and how to talk to it.

:func:`read_settings` checks every key and reports every problem at once, each as
``backend.sru.key: why`` (the registry joins them into the start-up error).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gateway.backends.upstream.profile import HoldingsConfigError, HoldingsProfile
from gateway.backends.upstream.sru.cql_writer import DEFAULT_INDEXES
from gateway.domain.catalogue import SortField
from gateway.domain.query import IDENTIFIER_INDEXES, WORD_INDEXES, YEAR_INDEX

__all__ = ["SruSettings", "SruSettingsError", "read_settings"]

DOMAIN_INDEXES = frozenset(WORD_INDEXES | IDENTIFIER_INDEXES | {YEAR_INDEX})
VERSIONS = ("1.1", "1.2")
INDEX_SOURCES = ("profile", "explain")


class SruSettingsError(ValueError):
    """Every problem of the table, each as ``path.key: why``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class SruSettings:
    """The upstream SRU server's settings (see ``config/interlend.production.toml``)."""

    base_url: str
    version: str = "1.1"
    username: str | None = None
    password: str | None = None
    record_schema: str = "marcxml"
    profile: HoldingsProfile = field(default_factory=lambda: HoldingsProfile.named("koha"))
    indexes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_INDEXES))
    index_source: str = "profile"
    """``explain``: an index the table does not name is looked up in the explain record
    (searched only if the server lists it); ``profile``: the table alone."""
    phrase_relation: str = "="
    sort_keys: Mapping[SortField, str] = field(default_factory=dict)
    """Sort field -> the server's sort index; a field without one is refused."""
    timeout: float = 10.0
    connect_timeout: float = 5.0
    max_in_flight: int = 8
    max_connections: int = 4
    page_size: int = 50
    max_response_bytes: int = 16 * 1024 * 1024


_NUMBERS: Mapping[str, tuple[type, float, float]] = {
    "timeout": (float, 0.1, 3600.0),
    "connect_timeout": (float, 0.1, 600.0),
    "max_in_flight": (int, 1, 1024),
    "max_connections": (int, 1, 1024),
    "page_size": (int, 1, 1000),
    "max_response_bytes": (int, 1024, 1024 ** 3),
}
_STRINGS = ("username", "password", "record_schema", "phrase_relation")
_KEYS = frozenset({"base_url", "version", "profile", "indexes", "index_source", "sort_keys",
                   *_NUMBERS, *_STRINGS})


def read_settings(table: Mapping[str, Any], path: str) -> SruSettings:
    """The settings of ``table`` (at ``path``); :class:`SruSettingsError` lists every problem."""
    problems: list[str] = []

    def problem(key: str, why: str) -> None:
        problems.append(f"{path}.{key}: {why}")

    values: dict[str, Any] = {}
    for key in table:
        if key not in _KEYS:
            problem(str(key), "unknown key")
    base_url = table.get("base_url")
    if base_url is None:
        problem("base_url", "required: the server's SRU address, e.g. "
                            "http://catalogue.example.org:9999/biblios")
    elif not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https") \
            or not urlsplit(base_url).hostname:
        problem("base_url", f"must be an http:// or https:// URL with a host (got {base_url!r})")
    else:
        values["base_url"] = base_url
    if "version" in table:
        if table["version"] in VERSIONS:
            values["version"] = table["version"]
        else:
            problem("version", f"{table['version']!r} is not one of {', '.join(VERSIONS)}")
    for key in _STRINGS:
        if key in table:
            if isinstance(table[key], str) and table[key]:
                values[key] = table[key]
            else:
                problem(key, "must be a non-empty string")
    if "password" in values and "username" not in values:
        problem("password", "given without a username")
    for key, (kind, low, high) in _NUMBERS.items():
        if key not in table:
            continue
        raw = table[key]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) \
                or (kind is int and not isinstance(raw, int)) or not low <= raw <= high:
            what = "a whole number" if kind is int else "a number of seconds"
            problem(key, f"must be {what} from {low:g} to {high:g} (got {raw!r})")
        else:
            values[key] = kind(raw)
    if "profile" in table:
        raw_profile = table["profile"]
        if isinstance(raw_profile, str):
            raw_profile = {"name": raw_profile}
        try:
            values["profile"] = HoldingsProfile.from_mapping(raw_profile, f"{path}.profile")
        except HoldingsConfigError as e:
            problems.extend(e.errors)
    if "indexes" in table:
        raw = table["indexes"]
        if not isinstance(raw, Mapping):
            problem("indexes", "must be a table of domain index = CQL index name")
        else:
            indexes = dict(DEFAULT_INDEXES)
            for name, cql in raw.items():
                if name not in DOMAIN_INDEXES:
                    problem(f"indexes.{name}",
                            f"unknown index: one of {', '.join(sorted(DOMAIN_INDEXES))}")
                elif not isinstance(cql, str):
                    problem(f"indexes.{name}", "must be a CQL index name, or \"\" for none")
                else:
                    indexes[name] = cql
            values["indexes"] = {k: v for k, v in indexes.items() if v}
    if "index_source" in table:
        if table["index_source"] in INDEX_SOURCES:
            values["index_source"] = table["index_source"]
        else:
            problem("index_source", f"{table['index_source']!r} is not one of "
                                    f"{', '.join(INDEX_SOURCES)}")
    if "sort_keys" in table:
        raw = table["sort_keys"]
        fields = {f.value: f for f in SortField}
        if not isinstance(raw, Mapping):
            problem("sort_keys", "must be a table of sort field = CQL sort index")
        else:
            keys = {}
            for name, index in raw.items():
                if name not in fields:
                    problem(f"sort_keys.{name}", f"unknown field: one of {', '.join(fields)}")
                elif not isinstance(index, str) or not index:
                    problem(f"sort_keys.{name}", "must be a CQL index name")
                else:
                    keys[fields[name]] = index
            values["sort_keys"] = keys
    if problems:
        raise SruSettingsError(problems)
    return SruSettings(**values)
