"""Days of the center's calendar as UTC instants: times are stored in UTC, shown and filtered
in the center's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

from fastapi import HTTPException


def start_of_day(day: date, zone: tzinfo) -> datetime:
    """Midnight of ``day`` in ``zone``, in UTC."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def utc_range(
    first: date | None, last: date | None, zone: tzinfo
) -> tuple[datetime | None, datetime | None]:
    """``[start of first, start of the day after last)`` in UTC; either end may be open."""
    since = start_of_day(first, zone) if first else None
    until = start_of_day(last + timedelta(days=1), zone) if last else None
    return since, until


BAD_DAY = "日期格式应为 YYYY-MM-DD（1900 至 9000 年）/ Dates are YYYY-MM-DD, years 1900-9000"
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9000, 12, 31)
"""The days a filter may name: past these, a day's bounds in UTC (or the day after the last)
leave what ``datetime`` can hold."""


def form_days(first: str, last: str) -> tuple[date | None, date | None]:
    """The two day fields of a filter form; 422 with a bilingual message when malformed."""
    try:
        return parse_day(first), parse_day(last)
    except ValueError:
        raise HTTPException(422, detail=BAD_DAY) from None


def parse_day(value: str | None) -> date | None:
    """A ``YYYY-MM-DD`` form field, or None when blank; ValueError when malformed or outside
    :data:`FIRST_DAY` .. :data:`LAST_DAY`."""
    value = (value or "").strip()
    if not value:
        return None
    day = date.fromisoformat(value)
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{day} is outside {FIRST_DAY} .. {LAST_DAY}")
    return day
