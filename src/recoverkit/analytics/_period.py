"""The period a report covers, named as a reader names it, and the period before it.

A period is ``since`` <= t < ``until`` in epoch seconds on the engine's clock (the times the facts carry), whole
UTC days. :func:`parse_period` reads what ``recoverkit report --period`` takes; :func:`previous_period` is the
period of the same length just before, which every headline figure is compared with.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Final

__all__ = ["PERIOD_FORMS", "parse_period", "previous_period"]

#: What :func:`parse_period` accepts, as its errors list it.
PERIOD_FORMS: Final = (
    "last-7-days (any number of days from 1 to 3650: the whole UTC days before today), this-month (from its "
    "first day to the end of today), last-month, a month (2026-12), a day (2026-12-07) or days "
    "(2026-12-01..2026-12-07, both included)"
)
_LAST_DAYS: Final = re.compile(r"last-(\d{1,4})-days?")
_MONTH: Final = re.compile(r"(\d{4})-(\d{2})")
_DAY = timedelta(days=1)


def _midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _month_start(year: int, month: int) -> date:
    return date(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def _error(text: str, why: str = "") -> ValueError:
    return ValueError(f"--period {text!r}{': ' + why if why else ''}; expected {PERIOD_FORMS}")


def _day(text: str, whole: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _error(whole, f"{text!r} is not a date (YYYY-MM-DD)") from None


def parse_period(text: str, *, now: float) -> tuple[float, float]:
    """``(since, until)`` of the period ``text`` names (see :data:`PERIOD_FORMS`); ``now`` (epoch seconds, the
    engine's clock) anchors the relative forms. Raises :class:`ValueError` naming the value and what was expected.

    >>> now = datetime(2026, 12, 8, 9, 30, tzinfo=UTC).timestamp()
    >>> [datetime.fromtimestamp(t, UTC).date().isoformat() for t in parse_period("last-7-days", now=now)]
    ['2026-12-01', '2026-12-08']
    >>> [datetime.fromtimestamp(t, UTC).date().isoformat() for t in parse_period("2026-11-28..2026-12-04", now=now)]
    ['2026-11-28', '2026-12-05']
    """
    key = text.strip().lower()
    today = datetime.fromtimestamp(now, UTC).date()
    found = _LAST_DAYS.fullmatch(key)
    if found:
        days = int(found.group(1))
        if not 1 <= days <= 3650:
            raise _error(text, f"{days} days is out of range")
        return _midnight(today - days * _DAY), _midnight(today)
    if key == "this-month":
        return _midnight(today.replace(day=1)), _midnight(today + _DAY)
    if key == "last-month":
        first = today.replace(day=1)
        return _midnight(_month_start(first.year, first.month - 1)), _midnight(first)
    found = _MONTH.fullmatch(key)
    if found:
        year, month = int(found.group(1)), int(found.group(2))
        if not 1 <= month <= 12:
            raise _error(text, f"there is no month {month}")
        return _midnight(date(year, month, 1)), _midnight(_month_start(year, month + 1))
    if ".." in key:
        first_text, _, last_text = key.partition("..")
        first, last = _day(first_text, text), _day(last_text, text)
        if last < first:
            raise _error(text, f"it ends ({last}) before it starts ({first})")
        return _midnight(first), _midnight(last + _DAY)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", key):
        day = _day(key, text)
        return _midnight(day), _midnight(day + _DAY)
    raise _error(text)


def previous_period(since: float, until: float) -> tuple[float, float]:
    """The period of the same length that ends where ``since``..``until`` begins.

    >>> previous_period(700.0, 1000.0)
    (400.0, 700.0)
    """
    return since - (until - since), since
