"""The headline as rows of text, so that the terminal and the HTML report say the same thing the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from ._format import change, count, money, pct, points_change
from .headline import Headline, HeadlineMoney
from .report import Report

__all__ = ["SummaryRow", "summary_rows"]

#: What the previous period shows when no cart was routed in it (the store has no facts that old, or none yet).
_NO_CARTS: Final = "no carts in that period"
_SIGNIFICANCE: Final = {"uplift": "significant", "harm": "significant harm", "too_small": "not significant"}


class SummaryRow(msgspec.Struct, frozen=True, kw_only=True):
    """One headline figure: ``name`` (``"recovered revenue"``...), ``key`` (a stable id for the page and tests),
    its value this period, the previous period's, the change between them (``""`` without a previous period),
    and a ``detail`` saying what it is made of."""

    key: str
    name: str
    value: str
    previous: str
    change: str
    detail: str


def _money_of(h: Headline | None, currency: str) -> HeadlineMoney | None:
    return None if h is None else next((m for m in h.money if m.currency == currency), None)


def _incremental(m: HeadlineMoney | None) -> str:
    """The incremental revenue with its interval and whether it is significant; never a point estimate alone."""
    if m is None or m.verdict is None:
        return "no holdout to measure it"
    if m.incremental is None:
        return "unknown: no order value in this currency"
    interval = f"{money(m.low, m.currency)} to {money(m.high, m.currency)}"
    return f"{money(m.incremental, m.currency)} ({interval}), {_SIGNIFICANCE.get(m.verdict or '', 'not measured')}"


def _incremental_change(now: HeadlineMoney | None, before: HeadlineMoney | None) -> str:
    # A relative change between two estimates is only meaningful when both are real (significant) gains; between
    # intervals that include zero it would be noise presented as news.
    if now is None or before is None or now.verdict != "uplift" or before.verdict != "uplift":
        return "-"
    return change(now.incremental, before.incremental)


def _amount(m: HeadlineMoney | None, field: str) -> int | None:
    """``m``'s ``field``; a currency absent from a period had 0 of every sum and no mean."""
    if m is None:
        return None if field == "per_recipient" else 0
    value: int | None = getattr(m, field)
    return value


def summary_rows(report: Report) -> list[SummaryRow]:
    """The headline rows of ``report`` in the order they are shown; empty without a store."""
    rows = _rows(report)
    if report.previous is not None and report.previous.carts == 0:  # a change against no facts at all means nothing
        return [msgspec.structs.replace(r, previous=_NO_CARTS, change="-") for r in rows]
    return rows


def _rows(report: Report) -> list[SummaryRow]:
    h, p = report.headline, report.previous
    if h is None:
        return []
    # No cart in the period: one row per figure all the same, saying there is nothing ("-").
    currencies = [m.currency for m in h.money] or [""]
    rows: list[SummaryRow] = []

    def add(key: str, name: str, now: str, before: str, delta: str, detail: str) -> None:
        rows.append(SummaryRow(key=key, name=name, value=now, previous=before if p else "", change=delta if p else "",
                               detail=detail))  # fmt: skip

    def money_rows(key: str, name: str, field: str, detail: Callable[[HeadlineMoney | None], str]) -> None:
        for c in currencies:
            now, before = _money_of(h, c), _money_of(p, c)
            amount, earlier = _amount(now, field), _amount(before, field) if p else None
            shown, before_shown = (money(amount, c), money(earlier, c)) if c else ("-", "-")
            add(f"{key}-{c}" if c else key, f"{name} ({c})" if len(currencies) > 1 else name, shown, before_shown,
                change(amount, earlier), detail(now))  # fmt: skip

    unknown = f"; {count(h.revenue_unknown)} orders of unknown value" if h.revenue_unknown else ""
    money_rows("recovered", "recovered revenue", "recovered",
               lambda _: f"orders after a message, within the attribution window{unknown}")  # fmt: skip
    add("recovery-rate", "recovery rate", pct(h.recovery_rate), pct(p.recovery_rate) if p else "",
        points_change(h.recovery_rate, p.recovery_rate if p else None),
        f"{count(h.recovered_carts)} of {count(h.messaged_carts)} messaged carts recovered")  # fmt: skip
    money_rows("per-recipient", "revenue per recipient", "per_recipient",
               lambda m: f"over {count(m.recipients if m else 0)} recipients")  # fmt: skip
    for c in currencies:
        now, before = _money_of(h, c), _money_of(p, c)
        name = "incremental revenue vs holdout" + (f" ({c})" if len(currencies) > 1 else "")
        add(f"incremental-{c}" if c else "incremental", name, _incremental(now), _incremental(before),
            _incremental_change(now, before),
            f"against the shop-wide holdout, {report.confidence:.0%} interval")  # fmt: skip
    cost_unknown = f"; {count(h.discount_cost_unknown)} of unknown cost" if h.discount_cost_unknown else ""
    money_rows("discount-cost", "discount cost", "discount_cost",
               lambda _: f"codes redeemed: {count(h.codes_redeemed)}{cost_unknown}")  # fmt: skip
    add("unsubscribes", "unsubscribes", count(h.unsubscribes), count(p.unsubscribes) if p else "",
        change(h.unsubscribes, p.unsubscribes if p else None),
        "consent withdrawn while a message was pending (a lower bound)")  # fmt: skip
    return rows
