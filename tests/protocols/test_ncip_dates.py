"""NCIP date reading (every form seen in the field) and writing (UTC with Z)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from protocols.ncip import end_of_day, format_ncip_datetime, parse_ncip_date

UTC = UTC
EST = timezone(timedelta(hours=-5))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-20T00:00:00.000Z", datetime(2026, 6, 20, tzinfo=UTC)),  # Alma
        ("2026-06-26T12:03:00Z", datetime(2026, 6, 26, 12, 3, tzinfo=UTC)),  # DCB
        ("2026-10-13T03:59Z", datetime(2026, 10, 13, 3, 59, tzinfo=UTC)),  # no seconds
        ("2026-10-12T23:59:00.000-04:00", datetime(2026, 10, 13, 3, 59, tzinfo=UTC)),  # Symphony
        ("2026-10-12T23:59:00-0400", datetime(2026, 10, 13, 3, 59, tzinfo=UTC)),
        ("2026-10-06T11:14:00.592Z", datetime(2026, 10, 6, 11, 14, 0, 592000, tzinfo=UTC)),
        ("2026-01-01T00:00:00.123456789+00:00", datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        (" 2026-05-31 23:59:00 ", datetime(2026, 5, 31, 23, 59, tzinfo=UTC)),
    ],
)
def test_aware_forms(text: str, expected: datetime) -> None:
    """Offset, Z, missing seconds, milliseconds, space separator: all become aware datetimes."""
    parsed = parse_ncip_date(text)
    assert isinstance(parsed, datetime) and parsed.tzinfo is not None
    assert parsed == expected


def test_naive_datetime_uses_caller_zone() -> None:
    """A naive datetime (ILLiad) is interpreted in the zone the caller passes, UTC by default."""
    assert parse_ncip_date("2026-05-31T23:59:00") == datetime(2026, 5, 31, 23, 59, tzinfo=UTC)
    local = parse_ncip_date("2026-05-31T23:59:00", EST)
    assert local == datetime(2026, 6, 1, 4, 59, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-07-15", "15/7/2026", "15/07/2026"])
def test_date_only_forms(text: str) -> None:
    """Date-only input (ILLiad RenewItem, ReShare fixtures) comes back as a date."""
    assert parse_ncip_date(text) == date(2026, 7, 15)
    assert not isinstance(parse_ncip_date(text), datetime)


@pytest.mark.parametrize(
    "text", ["", "DATE_TIMESTAMP", "%s", "2026-13-01", "2026-02-30T10:00:00Z", "tomorrow"]
)
def test_garbage_raises_value_error(text: str) -> None:
    """Placeholders and impossible dates raise ValueError (the parser turns that into an issue)."""
    with pytest.raises(ValueError):
        parse_ncip_date(text)


def test_format_is_utc_with_z() -> None:
    """Output is YYYY-MM-DDThh:mm:ssZ in UTC; dates mean the end of that day in the given zone."""
    assert (
        format_ncip_datetime(datetime(2026, 5, 1, 18, 30, 15, 999, tzinfo=EST))
        == "2026-05-01T23:30:15Z"
    )
    assert format_ncip_datetime(date(2026, 7, 15)) == "2026-07-15T23:59:59Z"
    assert format_ncip_datetime(date(2026, 7, 15), EST) == "2026-07-16T04:59:59Z"
    assert end_of_day(date(2026, 7, 15), EST) == datetime(2026, 7, 15, 23, 59, 59, tzinfo=EST)


def test_remembered_formats_keep_the_zone_and_the_fold() -> None:
    """The same day in two zones, a naive time read in two zones, and an ambiguous local time
    with either fold (equal as values, different instants): each formatted as its own
    instant, asked for first or again."""
    berlin, new_york = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
    for _ in range(2):  # the second round is answered from what was remembered
        assert format_ncip_datetime(date(2026, 7, 15), berlin) == "2026-07-15T21:59:59Z"
        assert format_ncip_datetime(date(2026, 7, 15), new_york) == "2026-07-16T03:59:59Z"
        naive = datetime(2026, 1, 10, 12, 0)
        assert format_ncip_datetime(naive, berlin) == "2026-01-10T11:00:00Z"
        assert format_ncip_datetime(naive, new_york) == "2026-01-10T17:00:00Z"
        first = datetime(2026, 10, 25, 2, 30, tzinfo=berlin)  # clocks go back at 03:00
        second = first.replace(fold=1)
        assert first == second
        assert format_ncip_datetime(first) == "2026-10-25T00:30:00Z"
        assert format_ncip_datetime(second) == "2026-10-25T01:30:00Z"
