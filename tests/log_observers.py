"""A plain function or bound method as the log observer Twisted's publisher is typed to take.

``LogPublisher.addObserver`` calls any callable it is given, but types its parameter as the
zope interface ``ILogObserver``, which a function cannot declare; tests collecting events with
``events.append`` go through :func:`log_observer` instead of an ignore at every call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.logger import ILogObserver


def log_observer(receive: Callable[[dict[str, Any]], None]) -> ILogObserver:
    """``receive`` typed as an ``ILogObserver`` (the same object: add and remove it alike)."""
    return cast(ILogObserver, receive)
