# -*- test-case-name: tests.gateway.test_daemon -*-
"""Logging set-up: ``twisted.logger`` to stdout, as plain text or JSON lines (for journald)."""

from __future__ import annotations

from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
    textFileLogObserver,
)

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warn", "error")


def make_observer(stream: IO[str], *, log_format: str = "text",
                  level: str = "info") -> ILogObserver:
    """An observer writing events at ``level`` or above to ``stream``."""
    if log_format == "json":
        observer = jsonFileLogObserver(stream, recordSeparator="")
    else:
        observer = textFileLogObserver(stream, timeFormat="%Y-%m-%dT%H:%M:%S%z")
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    return FilteringLogObserver(observer, [predicate])


def start_logging(stream: IO[str], *, log_format: str = "text", level: str = "info") -> None:
    """Send every ``twisted.logger`` event to ``stream`` from now on (once per process)."""
    globalLogBeginner.beginLoggingTo(
        [make_observer(stream, log_format=log_format, level=level)],
        redirectStandardIO=False, discardBuffer=False)


__all__ = ["LOG_FORMATS", "LOG_LEVELS", "make_observer", "start_logging"]
