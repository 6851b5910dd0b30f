# -*- test-case-name: tests.gateway.upstream_ncip.test_settings_and_shapes -*-
"""``[backend.ncip]``: the LMS's NCIP responder, checked key by key with its path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.backends.upstream.ncip.profiles import PROFILES

AUTH_KINDS = ("none", "bearer", "header", "url-token", "client-cert")
KEYS = frozenset({"url", "profile", "from_agency", "to_agency", "timeout", "max_in_flight",
                  "auth", "token", "token_file", "header", "token_parameter", "client_cert",
                  "client_key", "timezone", "outbox", "institutional_user", "namespace"})
NAMESPACE_STYLES = ("prefix", "default", "none")


@dataclass(frozen=True)
class NcipSettings:
    """The checked settings."""

    url: str
    profile: str
    from_agency: str
    to_agency: str
    timeout: float = 10.0
    max_in_flight: int = 4
    auth: str = "none"
    token: str = field(default="", repr=False)
    header: str = "X-Api-Key"
    token_parameter: str = "token"
    client_cert: str = ""
    client_key: str = ""
    timezone: str = ""
    outbox: str = ""
    institutional_user: str = ""
    namespace: str = ""

    def lms_user(self, barcode: str, agency: str) -> str:
        """The LMS patron that stands for a borrowing library (ours: ``barcode``)."""
        if not self.institutional_user:
            return barcode
        return self.institutional_user.replace("{agency}", agency)

    def headers(self) -> dict[str, str]:
        """The authentication headers the LMS wants."""
        if self.auth == "bearer":
            return {"Authorization": f"Bearer {self.token}"}
        if self.auth == "header":
            return {self.header: self.token}
        return {}

    def request_url(self) -> str:
        """The URL to POST to (with the token as a query parameter for ``url-token``)."""
        if self.auth != "url-token":
            return self.url
        joiner = "&" if "?" in self.url else "?"
        return f"{self.url}{joiner}{self.token_parameter}={self.token}"


def problems(table: Mapping[str, Any], path: str) -> list[str]:
    """Every problem in the table, as ``path.key: why`` lines."""
    out: list[str] = []
    for key in table:
        if key not in KEYS:
            out.append(f"{path}.{key}: unknown key (known: {', '.join(sorted(KEYS))})")
    url = table.get("url")
    if not isinstance(url, str) or not url:
        out.append(f"{path}.url: required: the LMS's NCIP responder, http:// or https://")
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            out.append(f"{path}.url: {url!r} is not an http:// or https:// URL")
    profile = table.get("profile")
    if profile not in PROFILES:
        out.append(f"{path}.profile: {profile!r} is not one of {', '.join(sorted(PROFILES))}")
    for key in ("from_agency", "to_agency"):
        if not isinstance(table.get(key), str) or not table.get(key):
            out.append(f"{path}.{key}: required: "
                       + ("our agency id toward the LMS" if key == "from_agency"
                          else "the LMS's agency id"))
    rule = PROFILES[profile].from_agency_must_match if profile in PROFILES else None
    if rule and isinstance(table.get("from_agency"), str):
        import re
        if not re.search(rule, table["from_agency"]):
            out.append(f"{path}.from_agency: {profile} creates temporary items only for an "
                       f"agency id matching /{rule}/ (e.g. 'CPomAG:interlend')")
    timeout = table.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or \
            not 0 < timeout <= 300:
        out.append(f"{path}.timeout: seconds for one LMS call, above 0 and at most 300")
    flight = table.get("max_in_flight", 4)
    if isinstance(flight, bool) or not isinstance(flight, int) or not 1 <= flight <= 64:
        out.append(f"{path}.max_in_flight: a whole number of calls from 1 to 64")
    auth = table.get("auth", "none")
    if auth not in AUTH_KINDS:
        out.append(f"{path}.auth: {auth!r} is not one of {', '.join(AUTH_KINDS)}")
    elif auth in ("bearer", "header", "url-token"):
        if not table.get("token") and not table.get("token_file"):
            out.append(f"{path}.token: required with auth = {auth!r} (or token_file)")
        token_file = table.get("token_file")
        if token_file and not Path(str(token_file)).is_file():
            out.append(f"{path}.token_file: {token_file} is not a readable file")
    elif auth == "client-cert":
        for key in ("client_cert", "client_key"):
            value = table.get(key)
            if not value or not Path(str(value)).is_file():
                out.append(f"{path}.{key}: required with auth = 'client-cert': a PEM file")
        if isinstance(url, str) and not url.startswith("https://"):
            out.append(f"{path}.url: auth = 'client-cert' needs an https:// URL")
    namespace = table.get("namespace", "")
    if namespace and namespace not in NAMESPACE_STYLES:
        out.append(f"{path}.namespace: {namespace!r} is not one of "
                   f"{', '.join(NAMESPACE_STYLES)} (default: the profile's)")
    user = table.get("institutional_user", "")
    if not isinstance(user, str):
        out.append(f"{path}.institutional_user: a patron barcode in the LMS, '{{agency}}' "
                   "standing for the borrowing library's agency id")
    zone = table.get("timezone", "")
    if zone:
        try:
            ZoneInfo(str(zone))
        except (ZoneInfoNotFoundError, ValueError):
            out.append(f"{path}.timezone: {zone!r} is not an IANA time zone")
    return out


def load(table: Mapping[str, Any]) -> NcipSettings:
    """The settings from a table :func:`problems` found nothing wrong with."""
    token = str(table.get("token", ""))
    if not token and table.get("token_file"):
        token = Path(str(table["token_file"])).read_text().strip()
    return NcipSettings(
        url=str(table["url"]), profile=str(table["profile"]),
        from_agency=str(table["from_agency"]), to_agency=str(table["to_agency"]),
        timeout=float(table.get("timeout", 10.0)),
        max_in_flight=int(table.get("max_in_flight", 4)), auth=str(table.get("auth", "none")),
        token=token, header=str(table.get("header", "X-Api-Key")),
        token_parameter=str(table.get("token_parameter", "token")),
        client_cert=str(table.get("client_cert", "")),
        client_key=str(table.get("client_key", "")),
        timezone=str(table.get("timezone", "")), outbox=str(table.get("outbox", "")),
        institutional_user=str(table.get("institutional_user", "")),
        namespace=str(table.get("namespace", "")))
