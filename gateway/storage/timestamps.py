"""Timestamps as the store keeps them: UTC ISO 8601 text, to the second."""

from __future__ import annotations

import functools
from datetime import datetime, timezone


def iso(moment: datetime) -> str:
    """A timestamp as stored: UTC ISO 8601, seconds."""
    if moment.tzinfo is timezone.utc:  # a request's "now": stamped on several rows, cached
        return _iso_utc(moment)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=256)
def _iso_utc(moment: datetime) -> str:
    # only for tzinfo=timezone.utc: equal means the same instant (no fold, no local zone)
    return moment.isoformat(timespec="seconds")


def parse_time(text: str | None) -> datetime | None:
    """A stored ISO 8601 timestamp as an aware datetime."""
    return datetime.fromisoformat(text) if text else None
