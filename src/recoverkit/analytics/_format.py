"""How figures are written in the terminal and HTML reports, so that both say the same thing the same way."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from ..money import format_minor

__all__ = ["SHORT_STEPS", "duration", "money", "moneys", "pct", "points", "when"]

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


def money(amount: int | None, currency: str) -> str:
    """Minor units as an amount of ``currency`` (``"?"``: the facts did not say which)."""
    if amount is None:
        return "-"
    if currency == "?":
        return format_minor(amount, None) + " (currency unknown)"
    return format_minor(amount, currency)


def moneys(amounts: Mapping[str, int]) -> str:
    """Amounts in several currencies, side by side and never added together.

    >>> moneys({"EUR": 1050, "JPY": 300})
    '10.50 EUR, 300 JPY'
    """
    return ", ".join(money(v, c) for c, v in sorted(amounts.items())) or "-"


def when(ts: float | None) -> str:
    """Epoch seconds as a UTC time, ``YYYY-MM-DD HH:MM``."""
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")
