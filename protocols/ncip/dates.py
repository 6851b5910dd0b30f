# -*- test-case-name: tests.protocols.test_ncip_dates -*-
"""NCIP dates: read every form seen in the field, write C{YYYY-MM-DDThh:mm:ssZ}.

Brokers send date-only values (ILLiad RenewItem), naive datetimes (ILLiad AcceptItem),
offsets, C{Z}, with or without seconds and milliseconds, and ReShare fixtures even use
C{d/m/yyyy}. Date-only values come back as L{datetime.date} so the caller decides what a
bare day means (usually L{end_of_day} in the library's time zone); naive datetimes are
interpreted in the time zone the caller passes (UTC by default).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

_ISO = re.compile(
    r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})"
    r"(?:[T ](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<f>\d+))?)?"
    r"\s*(?P<z>Z|z|[+-]\d{2}(?::?\d{2})?)?)?$"
)
_DMY = re.compile(r"^(?P<d>\d{1,2})/(?P<m>\d{1,2})/(?P<y>\d{4})$")


def _offset(text: str) -> tzinfo:
    if text in ("Z", "z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4]) if len(digits) > 2 else 0
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def parse_ncip_date(text: str, tz: tzinfo = UTC) -> datetime | date:
    """Parse an NCIP date or dateTime.

    @param text: the element text as received (surrounding whitespace is ignored).
    @param tz: zone for naive datetimes (no C{Z} and no offset).
    @return: an aware L{datetime}, or a L{date} for date-only input.
    @raise ValueError: the text is not a date in any accepted form.
    """
    value = text.strip()
    match = _ISO.match(value)
    if match is None:
        dmy = _DMY.match(value)
        if dmy is None:
            raise ValueError("not an NCIP date")
        return date(int(dmy["y"]), int(dmy["m"]), int(dmy["d"]))
    day = date(int(match["y"]), int(match["m"]), int(match["d"]))
    if match["H"] is None:
        return day
    fraction = (match["f"] or "0")[:6].ljust(6, "0")
    zone = match["z"]
    moment = datetime.combine(
        day,
        time(int(match["H"]), int(match["M"]), int(match["S"] or 0), int(fraction)),
    )
    return moment.replace(tzinfo=_offset(zone) if zone else tz)


def end_of_day(day: date, tz: tzinfo = UTC) -> datetime:
    """The last second of C{day} in C{tz}: what a date-only due date means."""
    return datetime.combine(day, time(23, 59, 59)).replace(tzinfo=tz)


def as_datetime(value: datetime | date, tz: tzinfo = UTC) -> datetime:
    """An aware datetime for C{value}: dates become L{end_of_day}, naive datetimes get C{tz}."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=tz)
    return end_of_day(value, tz)


def format_ncip_datetime(value: datetime | date, tz: tzinfo = UTC) -> str:
    """Write C{value} as C{YYYY-MM-DDThh:mm:ssZ} in UTC (IP1 style, no fraction).

    Remembered per value: a reply names the same few dates again and again (today's end,
    a privilege's validity, due dates), and formatting one costs ~15 µs. Values are
    immutable; C{fold} is part of the key (an ambiguous local time is equal, and hashes
    alike, with either fold, but is a different instant)."""
    return _formatted(value, tz, getattr(value, "fold", 0))


@functools.lru_cache(maxsize=4096)
def _formatted(value: datetime | date, tz: tzinfo, fold: int) -> str:
    moment = as_datetime(value, tz).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
