# -*- test-case-name: tests.gateway.test_running -*-
"""Reload bookkeeping shared by the daemon and ``interlend reload``: the outcome of the last
reload (for ``/healthz``, the metrics and the caller), what a reload changed (never a secret),
and the two files exchanged through ``$RUNTIME_DIRECTORY`` (``/run/interlend`` under systemd):
the configuration ``interlend reload -c FILE`` staged, and the daemon's outcome."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from gateway.config import Config

log = Logger()


@dataclass
class ReloadOutcome:
    """The last reload, as ``/healthz`` and ``interlend reload`` report it."""

    generation: int = 0
    ok: bool | None = None
    at: float | None = None
    errors: list[str] | None = None
    changes: list[str] | None = None

    def describe(self) -> dict[str, Any]:
        return {"generation": self.generation,
                "outcome": None if self.ok is None else "applied" if self.ok else "refused",
                "at": (None if self.at is None else
                       datetime.fromtimestamp(self.at, timezone.utc).isoformat()),
                "errors": list(self.errors or ()), "changes": list(self.changes or ())}


STAGED_CONFIG_FILE = "staged-config.toml"
"""The configuration ``interlend reload -c FILE`` copies into ``$RUNTIME_DIRECTORY`` for the
daemon's next reload."""

RELOAD_STATUS_FILE = "reload-status.json"
"""Where the daemon writes each reload's outcome in ``$RUNTIME_DIRECTORY`` (``/run/interlend``
under systemd), for ``interlend reload`` (the unit's ExecReload) to wait on."""


def peer_changes(old: Config, new: Config) -> list[str]:
    """What a reload changes in the peers, as log lines that never show a secret: peers added,
    removed, and for a changed peer the names of its changed settings only."""
    before = {peer.name: peer for peer in old.peers}
    after = {peer.name: peer for peer in new.peers}
    lines = [f"peer {name} added" for name in after if name not in before]
    lines += [f"peer {name} removed" for name in before if name not in after]
    for name in after:
        if name in before and after[name] != before[name]:
            changed = [f.name for f in fields(after[name])
                       if getattr(after[name], f.name) != getattr(before[name], f.name)]
            lines.append(f"peer {name} changed: {', '.join(changed)}")
    for section in ("z3950", "ncip", "audit", "circulation", "admin", "stats", "gateway"):
        old_settings, new_settings = getattr(old, section), getattr(new, section)
        if old_settings != new_settings:
            changed = [f"{section}.{f.name}" for f in fields(new_settings)
                       if getattr(new_settings, f.name) != getattr(old_settings, f.name)]
            lines.append(f"settings changed: {', '.join(changed)}")
    return lines




def runtime_directory(environ: Mapping[str, str]) -> Path | None:
    """``$RUNTIME_DIRECTORY`` (its first entry), or None outside systemd."""
    directory = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(directory) if directory else None


def staged_config(environ: Mapping[str, str]) -> Path | None:
    """The configuration staged for the next reload, if there is one."""
    directory = runtime_directory(environ)
    staged = directory / STAGED_CONFIG_FILE if directory is not None else None
    return staged if staged is not None and staged.exists() else None


def forget_staged_config(environ: Mapping[str, str]) -> None:
    """At start: a copy staged for an earlier run's reload is older than the file just read."""
    directory = runtime_directory(environ)
    if directory is not None:
        try:
            (directory / STAGED_CONFIG_FILE).unlink(missing_ok=True)
        except OSError as e:
            log.warn("cannot remove the staged configuration in {dir}: {error}",
                     dir=str(directory), error=str(e))


def write_status(environ: Mapping[str, str], outcome: ReloadOutcome) -> None:
    """Write ``outcome`` where ``interlend reload`` waits for it (atomically)."""
    directory = runtime_directory(environ)
    if directory is None:
        return
    path = directory / RELOAD_STATUS_FILE
    try:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(outcome.describe()))
        temporary.replace(path)
    except OSError as e:
        log.warn("cannot write the reload status to {path}: {error}", path=str(path),
                 error=str(e))
