"""Birthdays, solar or lunar (the Chinese calendar, by lunar-python): whether today is one, how
the card names it, a customer's age.
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal, Protocol

from lunar_python import LunarMonth, Solar

BirthdayKind = Literal["solar", "lunar"]
LUNAR_MONTH_NAMES = ("正月", "二月", "三月", "四月", "五月", "六月")
LUNAR_MONTH_NAMES += ("七月", "八月", "九月", "十月", "冬月", "腊月")
_CHINESE_DIGITS = "一二三四五六七八九十"


class BirthdayHolder(Protocol):
    """What the birthday functions read of a customer: a :class:`Customer` or a row."""

    @property
    def birthday(self) -> date | None: ...

    @property
    def lunar_birthday(self) -> bool: ...

    @property
    def lunar_birth_month(self) -> int | None: ...

    @property
    def lunar_birth_day(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class LunarDay:
    """A date of the Chinese lunar calendar; ``days_in_month`` is 29 or 30."""

    year: int
    month: int
    day: int
    leap: bool
    days_in_month: int


def is_birthday_today(customer: BirthdayHolder, today: date) -> tuple[bool, BirthdayKind | None]:
    """Whether ``today`` (the date in the center's zone) is the customer's birthday, and which
    birthday the customer keeps (None: none known).

    Solar: the same month and day; a 29 February birthday is greeted on 28 February in a common
    year. Lunar (``lunar_birthday`` with the lunar month and day): the same lunar month and day,
    with two rules for days a lunar year may lack:

    - a customer born in a leap month (闰月; the archive keeps only the month's number) is
      greeted in the ordinary month of that number, so nobody is greeted during a leap month;
    - a 30th is greeted on the 29th when this year's month has only 29 days.
    """
    lunar = _lunar_month_day(customer)
    if lunar is not None:
        return _is_lunar_birthday(*lunar, lunar_date(today)), "lunar"
    if customer.birthday is not None:
        return _same_day_in_year(customer.birthday, today.year) == today, "solar"
    return False, None


def birthday_label(customer: BirthdayHolder) -> str | None:
    """The birthday as the agent reads it: ``农历八月十五`` or ``3月5日``."""
    lunar = _lunar_month_day(customer)
    if lunar is not None:
        month, day = lunar
        return f"农历{LUNAR_MONTH_NAMES[month - 1]}{lunar_day_name(day)}"
    if customer.birthday is not None:
        return f"{customer.birthday.month}月{customer.birthday.day}日"
    return None


def _lunar_month_day(customer: BirthdayHolder) -> tuple[int, int] | None:
    """The lunar month and day of a customer who keeps a (complete) lunar birthday."""
    month, day = customer.lunar_birth_month, customer.lunar_birth_day
    if customer.lunar_birthday and month and day:
        return month, day
    return None


def lunar_day_name(day: int) -> str:
    """初一 ... 初十, 十一 ... 十九, 二十, 廿一 ... 廿九, 三十."""
    if day <= 10:
        return "初" + _CHINESE_DIGITS[day - 1]
    if day < 20:
        return "十" + _CHINESE_DIGITS[day - 11]
    if day == 20:
        return "二十"
    if day < 30:
        return "廿" + _CHINESE_DIGITS[day - 21]
    return "三十"


def age_on(birthday: date | None, today: date) -> int | None:
    """Full years on ``today``; a 29 February child turns older on 28 February in a common year,
    the day they are greeted. None without a date of birth or with one in the future.
    """
    if birthday is None or birthday > today:
        return None
    years = today.year - birthday.year
    if _same_day_in_year(birthday, today.year) > today:
        years -= 1
    return years


def born_by_for_age(years: int, today: date) -> date:
    """The latest date of birth that makes ``years`` full years on ``today`` by
    :func:`age_on`: whoever is born after it is younger. A query compares dates of birth with
    it (an index range) instead of working out each customer's age."""
    day = _same_day_in_year(today, today.year - years)
    following = day + timedelta(days=1)
    return following if (age_on(following, today) or 0) >= years else day


@functools.lru_cache(maxsize=64)
def lunar_date(solar: date) -> LunarDay:
    """The Chinese lunar date of a solar date.

    Cached: a center asks for the same few days all day, and one conversion costs a fraction of
    a millisecond (much more on the first day of a lunar year not yet seen).
    """
    lunar = Solar.fromYmd(solar.year, solar.month, solar.day).getLunar()
    month = lunar.getMonth()  # negative in a leap month
    days = LunarMonth.fromYm(lunar.getYear(), month).getDayCount()
    return LunarDay(lunar.getYear(), abs(month), lunar.getDay(), month < 0, days)


def _is_lunar_birthday(month: int, day: int, today: LunarDay) -> bool:
    if today.leap or today.month != month:
        return False
    return today.day == min(day, today.days_in_month)


def _same_day_in_year(day: date, year: int) -> date:
    """``day`` moved to ``year``; 29 February becomes 28 February in a common year."""
    if (day.month, day.day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return day.replace(year=year)
