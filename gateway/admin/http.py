# -*- test-case-name: tests.gateway.test_admin -*-
"""The admin listener: ``/stats``, ``/rs/statistics``, ``/metrics``, ``/healthz`` and the dashboard.

Loopback by default and, when a password is configured, behind HTTP Basic authentication with
the admin's own credentials (never a peer's). Database reads run on the store's reader threads.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import io
import ipaddress
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.http import Request

from gateway.admin import reports, worklist
from gateway.admin.dashboard import (
    PAGE_SIZE,
    Listing,
    render_dashboard,
    render_missing,
    render_request,
)
from gateway.admin.metrics import Metrics
from gateway.config import Config
from gateway.daemon.formatting import write_rows
from gateway.storage.audit_log import AuditFilter, audit_rows
from gateway.storage.store import Connection, Store

log = Logger()

_Route = Callable[[Request], "Deferred[tuple[bytes, bytes]]"]
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "127.0.0.1", "::1"})
"""Host names the admin listener always answers to."""


def host_name(value: str) -> str:
    """A Host header (or configured name) compared as the admin listener compares them:
    without port, brackets or trailing dot, lower case, IPv4-mapped addresses as IPv4."""
    text = value.strip().lower()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    text = text.rstrip(".")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped if mapped is not None else address)


class AdminResource(resource.Resource):
    """Every admin path, dispatched by name; read-only, GET only."""

    isLeaf = True

    def __init__(self, *, config: Callable[[], Config], store: Store, clock: IReactorTime,
                 metrics: Metrics, health: Callable[[], dict[str, Any]]) -> None:
        """``config`` answers the configuration in force (a reload replaces it); ``health``
        the daemon's state as ``/healthz`` shows it."""
        super().__init__()
        self._config = config
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self._health_state = health
        self._routes: dict[bytes, Callable[[Request], Deferred[tuple[bytes, bytes]]]] = {
            b"/": self._dashboard, b"/stats": self._stats, b"/rs/statistics": self._rs_stats,
            b"/metrics": self._metrics, b"/healthz": self._health,
        }
        self._routes[b"/requests.csv"] = self._requests_csv

    def render(self, request: Request) -> bytes | int:
        if not self._host_allowed(request):
            # DNS rebinding: a page on an attacker's name that resolves to us must not read
            # the admin pages with the staff's browser. Only names we answer to are served.
            request.setResponseCode(421)
            request.setHeader(b"content-type", b"text/plain")
            return b"unknown host name; add it to [admin] allowed_hosts\n"
        if not self._authorised(request):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Basic realm="Interlend admin"')
            request.setHeader(b"content-type", b"text/plain")
            return b"authentication required\n"
        path = request.path.rstrip(b"/") or b"/"
        route = self._routes.get(path) or self._request_route(path)
        if route is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain")
            return b"not found\n"
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET")
            return b""

        def send(result: tuple[bytes, bytes]) -> None:
            content_type, body = result
            request.setHeader(b"content-type", content_type)
            request.setHeader(b"cache-control", b"no-store")
            request.write(body)
            request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(_NotFoundPage):
                request.setResponseCode(404)
                request.setHeader(b"content-type", b"text/html; charset=utf-8")
                request.write(failure.value.args[0])
                request.finish()
                return
            log.failure("admin page {path} failed", failure, path=path.decode("latin-1"))
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"text/plain")
            request.write(b"temporarily unavailable\n")
            request.finish()

        route(request).addCallbacks(send, failed)
        return server.NOT_DONE_YET

    def _host_allowed(self, request: Request) -> bool:
        """True when the Host header names us: a loopback name, the address the request
        arrived on, or one of ``[admin] allowed_hosts``."""
        header = request.getHeader(b"host")
        if header is None:
            return False
        name = host_name(header.decode("latin-1"))
        if name in LOOPBACK_NAMES:
            return True
        if name in {host_name(h) for h in self._config().admin.allowed_hosts}:
            return True
        local = getattr(request.getHost(), "host", None)
        return local is not None and name == host_name(str(local))

    def _authorised(self, request: Request) -> bool:
        settings = self._config().admin
        if not settings.password:
            return True
        header = request.getHeader(b"authorization") or b""
        if header[:6].lower() != b"basic ":
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (hmac.compare_digest(user.encode(), settings.username.encode())
                & hmac.compare_digest(password.encode(), settings.password.encode()))

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    def _json(self, value: Any) -> tuple[bytes, bytes]:
        return b"application/json", json.dumps(value, indent=2, default=str).encode() + b"\n"

    def _stats(self, request: Request) -> Deferred[tuple[bytes, bytes]]:
        args: dict[bytes, list[bytes]] = request.args or {}
        since = (args.get(b"since") or [b""])[0].decode() or None
        peer = (args.get(b"peer") or [b""])[0].decode() or None
        cost = self._config().stats.document_supply_cost
        now = self._now()
        return self.store.read(lambda conn: self._json(reports.partner_stats(
            conn, now=now, since=since, peer=peer, cost_per_request=cost)))

    def _rs_stats(self, request: Request) -> Deferred[tuple[bytes, bytes]]:
        now = self._now()
        return self.store.read(
            lambda conn: self._json(reports.rs_statistics(conn, now=now)))

    def _metrics(self, request: Request) -> Deferred[tuple[bytes, bytes]]:
        return Deferred.fromCoroutine(self._metrics_text())

    async def _metrics_text(self) -> tuple[bytes, bytes]:
        await self.metrics.refresh()  # figures read from the database, when stale
        return b"text/plain; version=0.0.4; charset=utf-8", self.metrics.render()

    def _health(self, request: Request) -> Deferred[tuple[bytes, bytes]]:
        return Deferred.fromCoroutine(self._health_json())

    async def _health_json(self) -> tuple[bytes, bytes]:
        return self._json(self._health_state())

    # -- the staff work screen (gateway.admin.dashboard, gateway.admin.worklist) ---------------

    def _request_route(self, path: bytes) -> _Route | None:
        """``/requests/<row id>``: one request's page."""
        prefix, _, ident = path.partition(b"/requests/")
        if prefix or not ident.isdigit() or len(ident) > 18:
            return None
        return lambda request: self._request_page(int(ident))

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self._config().gateway.timezone)

    def _dashboard(self, request: Request) -> Deferred[tuple[bytes, bytes]]:
        now = self._now()
        config = self._config()
        health = self._health_state()
        listing = Listing.from_params(_params(request))

        def build(conn: Connection) -> tuple[bytes, bytes]:
            patrons = worklist.patron_policy(conn, config.audit, config.gateway.key_file)
            stats = reports.partner_stats(conn, now=now,
                                          cost_per_request=config.stats.document_supply_cost)
            actions = worklist.action_items(
                conn, now=now, patrons=patrons,
                pickup_days=config.circulation.pickup_period_days)
            shown = listing
            page = worklist.request_page(conn, shown.query(), now=now, patrons=patrons)
            if not page.rows and page.total:  # past the last page: show the last one
                shown = dataclasses.replace(listing, page=-(-page.total // PAGE_SIZE))
                page = worklist.request_page(conn, shown.query(), now=now, patrons=patrons)
            problems = audit_rows(conn, AuditFilter(), limit=500)
            problems = [row for row in problems if row["outcome"] != "success"][:20]
            body = render_dashboard(
                name=config.gateway.name, now=now, zone=self._zone(), stats=stats,
                actions=actions, listing=shown, page=page,
                peers=worklist.peers_in_use(conn), states=worklist.states_in_use(conn),
                problems=problems, health=health, currency=config.stats.currency)
            return b"text/html; charset=utf-8", body
        return self.store.read(build)

    def _requests_csv(self, request: Request) -> Deferred[tuple[bytes, bytes]]:
        """The work list's current view (its filters, every page) as CSV."""
        now = self._now()
        config = self._config()
        listing = Listing.from_params(_params(request))
        request.setHeader(b"content-disposition", b'attachment; filename="requests.csv"')

        def build(conn: Connection) -> tuple[bytes, bytes]:
            patrons = worklist.patron_policy(conn, config.audit, config.gateway.key_file)
            page = worklist.request_page(conn, listing.query(paged=False), now=now,
                                         patrons=patrons)
            out = io.StringIO()
            write_rows(worklist.csv_rows(page.rows, self._zone()), "csv", out,
                       worklist.CSV_COLUMNS)
            return b"text/csv; charset=utf-8", out.getvalue().encode("utf-8")
        return self.store.read(build)

    def _request_page(self, row_id: int) -> Deferred[tuple[bytes, bytes]]:
        now = self._now()
        config = self._config()

        def build(conn: Connection) -> tuple[bytes, bytes]:
            patrons = worklist.patron_policy(conn, config.audit, config.gateway.key_file)
            found = worklist.request_detail(conn, row_id, now=now, patrons=patrons)
            if found is None:
                raise _NotFound(str(row_id))
            history = reports.request_history(conn, str(found["our_request_id"]))
            assert history is not None
            bodies = worklist.exchange_bodies(conn, [row["id"] for row in history["exchanges"]])
            return b"text/html; charset=utf-8", render_request(
                name=config.gateway.name, now=now, zone=self._zone(), request=found,
                history=history, bodies=bodies)

        def missing(failure: Failure) -> tuple[bytes, bytes]:
            failure.trap(_NotFound)
            raise _NotFoundPage(render_missing(name=config.gateway.name,
                                               identifier=failure.value.args[0]))
        return self.store.read(build).addErrback(missing)


class _NotFound(Exception):
    """No request with that row id."""


class _NotFoundPage(Exception):
    """Answer 404 with this page."""


def _params(request: Request) -> dict[str, str]:
    """The query's parameters (the first value of each), as text."""
    args: dict[bytes, list[bytes]] = request.args or {}
    return {key.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
            for key, values in args.items() if values}
