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

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from gateway.admin.metrics import Metrics
    from gateway.audit import AuditLog
    from gateway.config import Config
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


class IBackend(Interface):
    """A catalogue and circulation system the gateway can drive, selected by its kind."""

    kind = Attribute("The name ``[backend] kind`` selects this backend by (its entry point's).")

    def catalogue(context: BackendContext) -> ICatalogue:
        """The catalogue the Z39.50 service searches and reads records from."""

    def circulation(context: BackendContext) -> ICirculation:
        """The circulation system the NCIP services drive."""


class BackendUnavailable(Exception):
    """The configured backend cannot be used; ``str()`` is ``backend.kind: why``."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"{KIND_PATH}: {reason}")


def _entry_points() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def registered_kinds() -> tuple[str, ...]:
    """The kinds of every installed backend, sorted (nothing is imported)."""
    return tuple(sorted(_entry_points()))


def unknown_kind_message(kind: str, kinds: tuple[str, ...]) -> str:
    """The error for a kind no installed backend has, listing the ones that exist."""
    known = ", ".join(kinds) if kinds else "none (reinstall Interlend: pip install -e .)"
    return f"no backend of kind {kind!r} is installed; registered kinds: {known}"


def select_backend(kind: str) -> IBackend:
    """The backend registered as ``kind``: loaded, and checked to provide :class:`IBackend`.

    Raises :class:`BackendUnavailable` naming ``backend.kind`` when no backend has that kind,
    when its package fails to import, or when what it registered is not a backend.
    """
    points = _entry_points()
    point = points.get(kind)
    if point is None:
        raise BackendUnavailable(kind, unknown_kind_message(kind, tuple(sorted(points))))
    try:
        backend = point.load()
    except Exception as e:  # a third party's import error must not read as ours
        raise BackendUnavailable(
            kind, f"backend {kind!r} ({point.value}) could not be loaded: "
                  f"{type(e).__name__}: {e}") from e
    try:
        verifyObject(IBackend, backend)
    except Invalid as e:
        raise BackendUnavailable(
            kind, f"{point.value} is not an Interlend backend: {e}") from None
    if backend.kind != kind:
        raise BackendUnavailable(
            kind, f"{point.value} calls itself {backend.kind!r}, registered as {kind!r}")
    return backend
