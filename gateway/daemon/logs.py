# -*- test-case-name: tests.gateway.test_running -*-
"""Logging set-up: ``twisted.logger`` to stdout, as plain text or JSON lines (for journald).

JSON lines carry the rendered message, the level as a word, the logger (the event's namespace)
and the event's own fields -- none of Twisted's internals (``log_format``, ``log_logger``...).
Under systemd (``$JOURNAL_STREAM`` names our stdout) every line starts with its syslog priority
(``<3>`` for an error), which journald turns into the entry's priority, so
``journalctl -u interlend -p err`` works in both formats. Twisted's per-port chatter (``Site
starting on 8080``, ``Starting factory``, ``(TCP Port 8080 Closed)``) is dropped: start-up says
where to go in its own lines.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import IO, Any, cast

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    formatEventAsClassicLogText,
    globalLogBeginner,
)
from zope.interface import implementer

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warn", "error")

SYSLOG_PRIORITY = {LogLevel.critical: 2, LogLevel.error: 3, LogLevel.warn: 4,
                   LogLevel.info: 6, LogLevel.debug: 7}
"""Twisted levels as syslog priorities (the ``<N>`` prefix journald reads)."""

_NOISE = re.compile(r"^(\S+ starting on \S+|\(\S+ Port \S+ Closed\)|Starting factory .*|"
                    r"Stopping factory .*)$")
"""Twisted's per-listener messages, logged at info for every port and factory."""


def _level(event: Mapping[str, Any]) -> Any:
    """The event's level (a ``LogLevel`` constant); info when it has none."""
    level = event.get("log_level")
    return level if level in SYSLOG_PRIORITY else LogLevel.info


def is_noise(event: Mapping[str, Any]) -> bool:
    """True for Twisted's port and factory chatter (legacy ``log.msg`` events at info)."""
    if _level(event) is not LogLevel.info or event.get("log_namespace") != "log_legacy":
        return False
    return bool(_NOISE.match(formatEvent(dict(event)) or ""))


def _plain(value: Any) -> Any:
    """A field's value as JSON can carry it (anything else as its text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def event_as_json(event: Mapping[str, Any]) -> dict[str, Any]:
    """One event as the JSON object written for it."""
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(float(event.get("log_time") or 0), timezone.utc)
        .isoformat(timespec="milliseconds"),
        "level": _level(event).name,
        "logger": event.get("log_namespace") or "-",
        "message": formatEvent(dict(event)),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in ("message", "format", "isError", "system", "why",
                                             "failure", "time"):
            continue
        if key in record:
            key = f"field_{key}"
        record[key] = _plain(value)
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    return record


@implementer(ILogObserver)
class LineObserver:
    """Writes each event as one line (JSON) or as classic text, with an optional syslog
    priority prefix on every line."""

    def __init__(self, stream: IO[str], *, log_format: str = "text",
                 syslog_prefix: bool = False) -> None:
        self.stream = stream
        self.json = log_format == "json"
        self.syslog_prefix = syslog_prefix

    def __call__(self, event: Mapping[str, Any]) -> None:
        if is_noise(event):
            return
        if self.json:
            text = json.dumps(event_as_json(event), ensure_ascii=False) + "\n"
        else:
            text = formatEventAsClassicLogText(
                dict(event), formatTime=lambda t: datetime.fromtimestamp(t or 0).astimezone()
                .strftime("%Y-%m-%dT%H:%M:%S%z")) or ""
            if not text:
                return
        if self.syslog_prefix:
            prefix = f"<{SYSLOG_PRIORITY.get(_level(event), 6)}>"
            text = "".join(prefix + line for line in text.splitlines(keepends=True))
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stdout gone (journald restarted, pipe closed): nowhere left to report it


def under_journald(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd connected us to
    (``$JOURNAL_STREAM`` is ``device:inode`` of that stream)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return stat.st_dev == int(device) and stat.st_ino == int(inode)


def make_observer(stream: IO[str], *, log_format: str = "text", level: str = "info",
                  syslog_prefix: bool | None = None,
                  environ: Mapping[str, str] | None = None) -> ILogObserver:
    """An observer writing events at ``level`` or above to ``stream``; ``syslog_prefix`` None:
    prefix priorities when ``stream`` is systemd's journal stream."""
    if syslog_prefix is None:
        syslog_prefix = under_journald(stream, environ)
    observer = LineObserver(stream, log_format=log_format, syslog_prefix=syslog_prefix)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))

    def not_noise(event: Mapping[str, Any]) -> PredicateResult:
        return PredicateResult.no if is_noise(event) else PredicateResult.maybe

    predicates = [cast(ILogFilterPredicate, not_noise), cast(ILogFilterPredicate, predicate)]
    return cast(ILogObserver, FilteringLogObserver(cast(ILogObserver, observer), predicates))


def start_logging(stream: IO[str], *, log_format: str = "text", level: str = "info") -> None:
    """Send every ``twisted.logger`` event to ``stream`` from now on (once per process)."""
    globalLogBeginner.beginLoggingTo(
        [make_observer(stream, log_format=log_format, level=level)],
        redirectStandardIO=False, discardBuffer=False)


__all__ = ["LOG_FORMATS", "LOG_LEVELS", "event_as_json", "make_observer", "start_logging",
           "under_journald"]
