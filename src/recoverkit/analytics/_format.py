"""How figures are written in the terminal and HTML reports, so that both say the same thing the same way."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from ..money import minor_unit_exponent

__all__ = [
    "SHORT_STEPS", "change", "count", "duration", "money", "moneys", "pct", "period", "points", "points_change",
    "when",
]  # fmt: skip

#: Step names as column headings in segment tables, which must stay narrow.
SHORT_STEPS = {
    "view_item": "view", "add_to_cart": "cart", "begin_checkout": "checkout", "add_shipping_info": "shipping",
    "add_payment_info": "payment", "purchase": "purchase",
}  # fmt: skip


def pct(value: float | None, digits: int = 1) -> str:
    """``0.1234`` as ``"12.3%"``; ``"-"`` for no value.

    >>> pct(0.1234), pct(None)
    ('12.3%', '-')
    """
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def points(value: float | None) -> str:
    """A difference of two rates in percentage points, signed: ``"+3.1 pp"``.

    >>> points(0.031), points(-0.0049)
    ('+3.1 pp', '-0.5 pp')
    """
    return "-" if value is None else f"{value * 100:+.1f} pp"


def duration(seconds: float | None) -> str:
    """A duration in the largest unit that keeps it readable.

    >>> duration(42), duration(330), duration(9000), duration(200000)
    ('42 s', '5.5 min', '2.5 h', '2.3 d')
    """
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def count(value: int | None) -> str:
    """A count with thousands separators: ``"12,345"``; ``"-"`` for no value.

    >>> count(1234567), count(0), count(None)
    ('1,234,567', '0', '-')
    """
    return "-" if value is None else f"{value:,}"


def money(amount: int | None, currency: str) -> str:
    """Minor units as an amount of ``currency``, with thousands separators and the currency's own number of
    decimals (``"?"``: the facts did not say which currency, shown with two decimals).

    >>> money(1396944, "EUR"), money(-123456, "JPY"), money(5, "?"), money(None, "EUR")
    ('13,969.44 EUR', '-123,456 JPY', '0.05 (currency unknown)', '-')
    """
    if amount is None:
        return "-"
    exp = minor_unit_exponent(None if currency == "?" else currency)
    text = f"{Decimal(amount).scaleb(-exp):,.{exp}f}"
    return f"{text} (currency unknown)" if currency == "?" else f"{text} {currency}"


def moneys(amounts: Mapping[str, int]) -> str:
    """Amounts in several currencies, side by side and never added together.

    >>> moneys({"EUR": 105000, "JPY": 3000})
    '1,050.00 EUR, 3,000 JPY'
    """
    return ", ".join(money(v, c) for c, v in sorted(amounts.items())) or "-"


def when(ts: float | None) -> str:
    """Epoch seconds as a UTC time, ``YYYY-MM-DD HH:MM``."""
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def change(current: float | None, previous: float | None) -> str:
    """The change of a figure against the previous period, relative and rounded to whole percent: ``"+12 %"``,
    ``"-3 %"``; ``"new"`` when the previous period had none and this one has some; ``"±0 %"`` when both had none;
    ``"-"`` when either is unknown.

    >>> change(112, 100), change(97, 100), change(5, 0), change(0, 0), change(None, 3), change(-50, -100)
    ('+12 %', '-3 %', 'new', '±0 %', '-', '+50 %')
    """
    if current is None or previous is None:
        return "-"
    if previous == 0:
        return "±0 %" if current == 0 else "new"
    ratio = (current - previous) / abs(previous)
    return "±0 %" if round(ratio * 100) == 0 else f"{ratio * 100:+.0f} %"


def points_change(current: float | None, previous: float | None) -> str:
    """The change of a rate against the previous period, in percentage points: ``"+3.1 pp"``.

    >>> points_change(0.25, 0.2), points_change(0.1, None)
    ('+5.0 pp', '-')
    """
    return "-" if current is None or previous is None else points(current - previous)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _day(moment: datetime, *, month: bool = True, year: bool = True) -> str:
    text = str(moment.day)
    if month:
        text += f" {_MONTHS[moment.month - 1]}"
    return f"{text} {moment.year}" if year else text


def period(since: float | None, until: float | None) -> str:
    """A period as a reader says it, in UTC: ``"1-7 Dec 2026"``, ``"28 Nov - 4 Dec 2026"``, ``"30 Dec 2026 - 5 Jan
    2027"``, ``"7 Dec 2026"`` for one day. ``until`` is exclusive: a period ending at midnight ends the day before.
    Bounds that are not midnights are written with their time; a missing bound says so.

    >>> period(1796083200, 1796688000), period(1795824000, 1796428800), period(1798588800, 1799193600)
    ('1-7 Dec 2026', '28 Nov - 4 Dec 2026', '30 Dec 2026 - 5 Jan 2027')
    >>> period(1796601600, 1796688000), period(None, None), period(1796083200, None)
    ('7 Dec 2026', 'all time', 'from 1 Dec 2026')
    >>> period(1796126400, 1796688000)
    '2026-12-01 12:00 - 2026-12-08 00:00 UTC'
    """
    if since is None and until is None:
        return "all time"
    start = None if since is None else datetime.fromtimestamp(since, UTC)
    end = None if until is None else datetime.fromtimestamp(until, UTC)
    if any(m is not None and m.time() != datetime.min.time() for m in (start, end)):
        first = when(since) if since is not None else "the beginning"
        return f"{first} - {when(until) if until is not None else 'now'} UTC"
    if end is None:
        return f"from {_day(start)}"  # type: ignore[arg-type]  # not both None
    last = end - timedelta(days=1)
    if start is None:
        return f"until {_day(last)}"
    if last <= start:
        return _day(start)
    if (start.year, start.month) == (last.year, last.month):
        return f"{_day(start, month=False, year=False)}-{_day(last)}"
    if start.year == last.year:
        return f"{_day(start, year=False)} - {_day(last)}"
    return f"{_day(start)} - {_day(last)}"
