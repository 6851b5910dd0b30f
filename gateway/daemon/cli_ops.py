# -*- test-case-name: tests.gateway.test_cli_ops -*-
"""Command-line checks and commands for operating the service.

:func:`preflight` refuses, before any work, what would otherwise give a misleading answer: a
read-only report against a database file that does not exist (opening it would create an empty
one and print zeros), an unknown ``--peer`` or ``--state``, a ``--since`` that is not a date.
:func:`run` implements the commands that need no configuration: ``reload`` (the unit's
ExecReload: signal the daemon and wait for the outcome) and ``manpage``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path
from typing import IO, Any

from gateway.config import Config, ConfigErrors, load_config
from gateway.storage.request_reports import recorded_peers, recorded_states
from gateway.storage.store import DatabaseBusy

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

READ_ONLY_COMMANDS = ("stats", "requests", "audit")
"""Commands that only report: they never create the database they are pointed at."""

REQUEST_STATES = ("requested", "filled", "shipped", "awaiting_pickup", "checked_out",
                  "returned", "checked_in", "completed", "cancelled")
"""The states a resource-sharing request goes through (``rs_requests.state``)."""

DATABASE_BUSY = (DatabaseBusy,)
"""What a command against a locked (or otherwise unusable) database raises mid-way."""

RELOAD_TIMEOUT = 30.0
"""Seconds ``interlend reload`` waits for the daemon's outcome (the unit's TimeoutSec)."""


def preflight(args: argparse.Namespace, config: Config) -> tuple[int, str] | None:
    """(exit status, one line) when the command must not run as asked; None when it may."""
    command = args.command
    if command not in READ_ONLY_COMMANDS:
        return None
    database = Path(config.gateway.database)
    if not database.is_file():
        return EXIT_FAILED, (f"{database}: no such database (set --database or [gateway] "
                             f"database; under systemd it is in the service's StateDirectory)")
    since = getattr(args, "since", None)
    if command == "stats" and since is not None and not _is_iso_moment(since):
        return EXIT_USAGE, (f"interlend stats: --since {since!r} is not an ISO date or time "
                            f"(valid: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM])")
    peer = getattr(args, "peer", None)
    configured = {p.name.casefold() for p in config.peers}
    if peer is not None and peer.casefold() not in configured:  # peer filters ignore case
        known = sorted({p.name for p in config.peers} | set(recorded_peers(database)))
        if peer.casefold() not in {name.casefold() for name in known}:
            return EXIT_USAGE, (f"interlend {command}: --peer {peer!r} is neither configured "
                                f"nor recorded; valid: {', '.join(known) or '(none yet)'}")
    state = getattr(args, "state", None)
    if command == "requests" and state is not None and state not in REQUEST_STATES:
        known = sorted(set(REQUEST_STATES) | set(recorded_states(database)))
        if state not in known:
            return EXIT_USAGE, (f"interlend requests: --state {state!r} is not a request "
                                f"state; valid: {', '.join(known)}")
    return None


def _is_iso_moment(text: str) -> bool:
    from datetime import date, datetime

    try:
        if len(text.strip()) == 10:
            date.fromisoformat(text.strip())
        else:
            datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def busy_message(config: Config, error: Exception) -> str:
    """One line for a command that met a locked or unusable database mid-way."""
    text = str(error)
    hint = ""
    if "locked" in text or "busy" in text:
        hint = (f" (another process holds it for longer than busy_timeout = "
                f"{config.gateway.busy_timeout:g}s; nothing was changed by the unfinished "
                f"step: try again)")
    return f"{config.gateway.database}: {text}{hint}"


# -- commands that need no configuration ----------------------------------------------------

def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: IO[str],
        err: IO[str]) -> int:
    """``interlend reload`` and ``interlend manpage``."""
    if args.command == "manpage":
        from gateway.daemon.cli_docs import manpage

        out.write(manpage(parser))
        return EXIT_OK
    return reload_daemon(args, out, err)


def _runtime_directory(args: argparse.Namespace) -> Path | None:
    given = args.runtime_directory or os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(given) if given else None


def reload_daemon(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Check and stage the configuration, SIGHUP the daemon, wait for and print its outcome.

    Exit 0 when the daemon applied it, 1 when it was refused (by this check or by the daemon)
    or no outcome came in time: ``systemctl reload`` then fails, visibly.
    """
    from gateway.daemon.reloading import RELOAD_STATUS_FILE, STAGED_CONFIG_FILE

    runtime = _runtime_directory(args)
    if args.config is not None:
        try:
            load_config(args.config)
        except ConfigErrors as e:
            print(str(e), file=err)
            print("reload refused: the daemon keeps its configuration (nothing signalled)",
                  file=err)
            return EXIT_FAILED
        if runtime is not None:
            _stage(args.config, runtime / STAGED_CONFIG_FILE)
    status_path = runtime / RELOAD_STATUS_FILE if runtime is not None else None
    before = _generation(status_path)
    try:
        os.kill(args.pid, signal.SIGHUP)
    except OSError as e:
        print(f"cannot signal process {args.pid}: {e.strerror or e}", file=err)
        return EXIT_FAILED
    if status_path is None:
        print(f"SIGHUP sent to {args.pid}; no runtime directory to read the outcome from "
              f"(see the daemon's log)", file=out)
        return EXIT_OK
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        outcome = _status(status_path)
        if outcome is not None and outcome.get("generation", -1) > before:
            if outcome.get("outcome") == "applied":
                changes = outcome.get("changes") or ["no change"]
                print(f"configuration reloaded: {'; '.join(changes)}", file=out)
                return EXIT_OK
            for line in outcome.get("errors") or ():
                print(line, file=err)
            print("reload refused by the daemon: it keeps its configuration", file=err)
            return EXIT_FAILED
        time.sleep(0.05)
    print(f"no reload outcome from process {args.pid} within {args.timeout:g}s", file=err)
    return EXIT_FAILED


def _stage(source: Path, target: Path) -> None:
    """Copy the checked configuration where the daemon reads it on reload, readable by the
    daemon's user (the runtime directory's owner) and nobody else."""
    directory = target.parent
    owner = directory.stat()
    temporary = target.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, source.read_bytes())
        if os.geteuid() == 0:
            os.fchown(fd, owner.st_uid, owner.st_gid)
        os.fchmod(fd, 0o400)
    finally:
        os.close(fd)
    temporary.replace(target)


def _status(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _generation(path: Path | None) -> int:
    status = _status(path) if path is not None else None
    generation = status.get("generation") if status else None
    return generation if isinstance(generation, int) else -1
