# -*- test-case-name: tests.gateway.test_backends -*-
"""The backend registry: ``[backend] kind`` names a backend registered as an entry point.

A backend is a package that registers an object providing :class:`IBackend` under the entry
point group ``interlend.backends`` (``embedded`` is Interlend's own; a third party ships another
as its own package). At start-up the gateway looks the configured kind up here, checks that the
object provides the interface, and asks it for its ``ICatalogue`` and ``ICirculation``, giving
it a :class:`BackendContext` with what the gateway already runs (configuration, store, clock,
audit log, metrics). Only the names of the registered kinds are read to validate a
configuration; a backend's code is imported only when its kind is selected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from gateway.admin.metrics import Metrics
    from gateway.audit import AuditLog
    from gateway.config import BackendSettings, Config
    from gateway.domain.catalogue import ICatalogue
    from gateway.domain.circulation import ICirculation
    from gateway.storage.store import Store

ENTRY_POINT_GROUP = "interlend.backends"
"""The entry point group backends register under; the entry point's name is its kind."""

KIND_PATH = "backend.kind"
"""Where the kind is configured, as configuration errors name it."""


@dataclass(frozen=True)
class BackendContext:
    """What the gateway hands a backend to build its catalogue and circulation from.

    ``config`` answers the configuration in force: a reload replaces it (peers, limits), so a
    backend reads it when it needs it rather than keeping the one it started with. The embedded
    backend uses the store (its data lives in the gateway's own database, so a circulation
    change commits with the gateway's books); a network backend uses the configuration, the
    clock and the audit log, and may ignore the store.
    """

    config: Callable[[], Config]
    store: Store
    clock: IReactorTime
    audit: AuditLog
    metrics: Metrics
    stopping: Callable[[], bool] = lambda: False
    """True once the gateway is stopping: long reads may then give up."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """The backend's own table, ``[backend.<kind>]`` (target, credentials, profile, limits)."""
    settings_path: str = ""
    """Where that table is (``backend.<kind>``), for the errors a backend reports about it."""


class IBackend(Interface):
    """A catalogue and circulation system the gateway can drive, selected by its kind."""

    kind = Attribute("The name ``[backend] kind`` selects this backend by (its entry point's).")

    def catalogue(context: BackendContext) -> ICatalogue:
        """The catalogue the Z39.50 service searches and reads records from. A backend that
        has no catalogue raises :class:`BackendUnavailable`."""

    def circulation(context: BackendContext) -> ICirculation:
        """The circulation system the NCIP services drive. A backend that has no circulation
        raises :class:`BackendUnavailable`."""


def settings_problems(backend: IBackend, table: Mapping[str, Any], path: str) -> list[str]:
    """What is wrong with a backend's ``[backend.<kind>]`` table, as ``path.key: why`` lines.

    A backend that has settings checks them in an optional ``settings_problems(table, path)``
    method; one without (the embedded backend) refuses any key, so that a typo is not ignored.
    """
    check = getattr(backend, "settings_problems", None)
    if check is not None:
        return list(check(table, path))
    return [f"{path}.{key}: unknown key (the {backend.kind!r} backend has no settings)"
            for key in table]


class BackendUnavailable(Exception):
    """The configured backend cannot be used; ``str()`` is ``backend.kind: why`` (or the key
    that chose it: ``backend.catalogue``, ``backend.circulation``)."""

    def __init__(self, kind: str, reason: str, path: str = KIND_PATH) -> None:
        self.kind = kind
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


def _entry_points() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def registered_kinds() -> tuple[str, ...]:
    """The kinds of every installed backend, sorted (nothing is imported)."""
    return tuple(sorted(_entry_points()))


def unknown_kind_message(kind: str, kinds: tuple[str, ...]) -> str:
    """The error for a kind no installed backend has, listing the ones that exist."""
    known = ", ".join(kinds) if kinds else "none (reinstall Interlend: pip install -e .)"
    return f"no backend of kind {kind!r} is installed; registered kinds: {known}"


def select_backend(kind: str, path: str = KIND_PATH) -> IBackend:
    """The backend registered as ``kind``: loaded, and checked to provide :class:`IBackend`.

    Raises :class:`BackendUnavailable` naming ``path`` (the key that chose the kind) when no
    backend has that kind, when its package fails to import, or when what it registered is not
    a backend.
    """
    points = _entry_points()
    point = points.get(kind)
    if point is None:
        raise BackendUnavailable(kind, unknown_kind_message(kind, tuple(sorted(points))),
                                 path)
    try:
        backend = point.load()
    except Exception as e:  # a third party's import error must not read as ours
        raise BackendUnavailable(
            kind, f"backend {kind!r} ({point.value}) could not be loaded: "
                  f"{type(e).__name__}: {e}", path) from e
    try:
        verifyObject(IBackend, backend)
    except Invalid as e:
        raise BackendUnavailable(
            kind, f"{point.value} is not an Interlend backend: {e}", path) from None
    if backend.kind != kind:
        raise BackendUnavailable(
            kind, f"{point.value} calls itself {backend.kind!r}, registered as {kind!r}", path)
    return backend


def backend_for(role: str, settings: BackendSettings, context: BackendContext
                ) -> tuple[IBackend, BackendContext]:
    """The backend serving ``role`` (``"catalogue"`` or ``"circulation"``) as ``[backend]``
    chooses it, with the context that carries its ``[backend.<kind>]`` table.

    Raises :class:`BackendUnavailable` when it cannot be loaded or its table is wrong (every
    problem, each with its path).
    """
    chosen_by = getattr(settings, role)
    kind = chosen_by or settings.kind
    backend = select_backend(kind, f"backend.{role}" if chosen_by else KIND_PATH)
    table = settings.tables.get(kind, {})
    problems = settings_problems(backend, table, f"backend.{kind}")
    if problems:
        raise BackendUnavailable(kind, "; ".join(problems), path="")
    return backend, replace(context, settings=table, settings_path=f"backend.{kind}")
