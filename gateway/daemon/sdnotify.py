# -*- test-case-name: tests.gateway.test_sdnotify -*-
"""The systemd notify protocol, spoken directly: READY=1, WATCHDOG=1, STOPPING=1, RELOADING=1;
and the sockets systemd passes (socket activation), checked before Twisted uses them.

No dependency: one datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract
namespace). Without ``NOTIFY_SOCKET`` every call is a no-op, so the daemon runs the same by hand.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from twisted.logger import Logger
from twisted.python.systemd import ListenFDs

log = Logger()


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; return True if a socket took it."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as e:
        log.warn("cannot notify systemd ({state}): {error}", state=state.split("=")[0],
                 error=str(e))
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``), or None if not enabled."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None


def inherited_sockets(environ: Mapping[str, str] | None = None) -> ListenFDs:
    """The sockets systemd passed: those Twisted's ``systemd:`` endpoints will use (read, and
    removed from the environment, when Twisted's endpoints module was imported), or those
    ``environ`` describes (a copy is read, for tests)."""
    if environ is None:
        from twisted.internet import endpoints

        parser = getattr(endpoints, "_SystemdParser", None)
        found = getattr(parser, "_sddaemon", None)
        if isinstance(found, ListenFDs):
            return found
        environ = dict(os.environ)
    return ListenFDs.fromEnvironment(dict(environ))


def endpoint_problem(endpoint: str, inherited: ListenFDs) -> str | None:
    """Why a ``systemd:`` endpoint cannot be used in this process, in words a sysadmin can act
    on (Twisted itself fails with a bare ``KeyError: 'ncip'``); None when the socket is there
    or the endpoint is not a ``systemd:`` one."""
    kind, _, rest = endpoint.partition(":")
    if kind.strip().lower() != "systemd":
        return None
    options = dict(part.split("=", 1) for part in rest.split(":") if "=" in part)
    if "name" in options:
        names = inherited.inheritedNamedDescriptors()
        if options["name"] in names:
            return None
        passed = ", ".join(sorted(names)) or "none"
        return (f"no socket named {options['name']!r} was passed by systemd (passed: {passed}); "
                f"start the service through its .socket units (FileDescriptorName="
                f"{options['name']}) or listen on a tcp: endpoint")
    try:
        index = int(options.get("index", ""))
    except ValueError:
        return "needs index= or name="
    count = len(inherited.inheritedDescriptors())
    if index < count:
        return None
    return (f"no socket at index {index} was passed by systemd ({count} passed); start the "
            f"service through its .socket units or listen on a tcp: endpoint")
