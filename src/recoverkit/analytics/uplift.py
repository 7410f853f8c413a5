"""Uplift against the holdout: how many more abandoned carts convert because recovery messaged them.

Every cart a flow takes is assigned at random (a keyed hash of the engine's seed and the cart) to the treatment or
to a holdout that gets no message (:class:`~recoverkit.store.Assignment`). A cart **converts** when it is bought,
in its own session or by its customer elsewhere, strictly after it was assigned and within the window (5 days by
default). Comparing the two groups' conversion rates measures what the messages changed, which the recovered
revenue of :mod:`recoverkit.analytics.recovery` cannot: it also counts the shoppers who would have come back
anyway.

Which carts are compared (each comparison is between two groups drawn by the same random draw):

- ``scope="global"``: the shop-wide holdout (``Config.holdout``) against every other cart of the same flows
  (``flow="*"``: of all flows), whether or not a message then went out (no consent, a flow's own holdout, a cap):
  the effect of recovery *as configured*, the intention-to-treat estimate;
- ``scope="flow"``: one flow's own holdout (``Flow.holdout``) against that flow's treatment carts.

For each: both rates, their difference (percentage points, as a fraction) with Newcombe's hybrid score
interval (:func:`~recoverkit.analytics._stats.newcombe_interval`), the relative uplift, the incremental
conversions and, per currency, the incremental revenue: difference x treated carts in that currency x the mean
value of the treated carts' orders in that currency. The revenue interval is the same computation at the two ends
of the rate interval: it carries the uncertainty of the rates, not of the order values.

The verdict is **too small to tell** when the holdout has fewer than :data:`MIN_HOLDOUT_CONVERSIONS`
conversions (below that, one shopper more or less moves the estimate by points) or when the interval includes
zero; otherwise ``"uplift"`` or ``"harm"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Final, Literal

import msgspec

from ..facts import Assignment, HoldoutScope
from ._facts import Facts, Orders, add_money
from ._stats import DEFAULT_CONFIDENCE, newcombe_interval
from .recovery import DEFAULT_WINDOW

__all__ = ["MIN_HOLDOUT_CONVERSIONS", "IncrementalRevenue", "Uplift", "UpliftRow", "Verdict", "uplift"]

#: Below this many conversions in the holdout the verdict is "too small to tell", whatever the interval says.
MIN_HOLDOUT_CONVERSIONS: Final = 10

#: What an uplift row concludes.
Verdict = Literal["uplift", "harm", "too_small"]


class IncrementalRevenue(msgspec.Struct, frozen=True, kw_only=True):
    """Revenue recovery added in one currency, in minor units: ``value`` with its interval ``low``..``high``.

    ``treated_carts`` is how many treated carts were in ``currency``, ``mean_order`` the mean value of their
    orders (``None``, and so the figures too, when none of their orders had a known value).
    """

    currency: str
    treated_carts: int
    mean_order: int | None
    value: int | None
    low: int | None
    high: int | None


class UpliftRow(msgspec.Struct, frozen=True, kw_only=True):
    """One comparison of a treatment group with its holdout; see the module docstring.

    Rates and the difference are fractions (0.031 is 3.1 percentage points); ``relative`` is the difference over
    the holdout's rate (``None`` when the holdout never converted).
    """

    flow: str
    scope: HoldoutScope
    treated: int
    treated_converted: int
    holdout: int
    holdout_converted: int
    treated_rate: float
    holdout_rate: float
    difference: float
    low: float
    high: float
    relative: float | None
    incremental_conversions: float
    incremental_low: float
    incremental_high: float
    revenue: list[IncrementalRevenue]
    verdict: Verdict
    explanation: str


class Uplift(msgspec.Struct, frozen=True, kw_only=True):
    """Every comparison the facts allow (``rows``), the ``window`` (seconds) and the ``confidence`` level;
    ``note`` says what is missing when there is no holdout to compare with."""

    window: float
    confidence: float
    min_holdout_conversions: int
    rows: list[UpliftRow]
    note: str | None = None


def uplift(
    facts: Facts,
    *,
    window: float = DEFAULT_WINDOW,
    confidence: float = DEFAULT_CONFIDENCE,
    min_holdout_conversions: int = MIN_HOLDOUT_CONVERSIONS,
) -> Uplift:
    """Compare treatment and holdout carts of ``facts`` (see the module docstring)."""
    if not window > 0:
        raise ValueError(f"window={window!r}; expected an attribution window in seconds > 0")
    compare = partial(
        _compare, orders=Orders(facts.conversions), window=window, confidence=confidence,
        least=min_holdout_conversions,
    )  # fmt: skip
    flows = sorted({a.flow for a in facts.assignments})
    rows = [*_global_rows(facts.assignments, flows, compare), *_flow_rows(facts.assignments, flows, compare)]
    return Uplift(
        window=window, confidence=confidence, min_holdout_conversions=min_holdout_conversions, rows=rows,
        note=_note(facts.assignments, rows),
    )  # fmt: skip


#: :func:`_compare` with the orders, the window, the confidence and the least holdout conversions given.
_Compare = Callable[[str, HoldoutScope, list[Assignment], list[Assignment]], UpliftRow]


def _global_rows(assignments: Sequence[Assignment], flows: Sequence[str], compare: _Compare) -> list[UpliftRow]:
    """Against the global holdout: every flow together, then each flow apart when there are several."""
    glob = [a for a in assignments if a.scope == "global"]
    if not glob:
        return []
    eligible = [a for a in assignments if not (a.group == "holdout" and a.scope == "global")]
    rows = [compare("*", "global", eligible, glob)]
    for flow in flows if len(flows) > 1 else ():  # with one flow its row would repeat the "*" row
        held = [a for a in glob if a.flow == flow]
        if held:
            rows.append(compare(flow, "global", [a for a in eligible if a.flow == flow], held))
    return rows


def _flow_rows(assignments: Sequence[Assignment], flows: Sequence[str], compare: _Compare) -> list[UpliftRow]:
    """Against each flow's own holdout."""
    rows = []
    for flow in flows:
        held = [a for a in assignments if a.flow == flow and a.scope == "flow"]
        if held:
            treated = [a for a in assignments if a.flow == flow and a.group == "treatment"]
            rows.append(compare(flow, "flow", treated, held))
    return rows


def _note(assignments: Sequence[Assignment], rows: Sequence[UpliftRow]) -> str | None:
    """What is missing when there is nothing to compare."""
    if not assignments:
        return "No carts were routed to a flow in this period: nothing to compare."
    if not rows:
        return (
            "No holdout: every routed cart was messaged, so there is nothing to compare with and recovered revenue "
            "cannot be told apart from orders that would have come anyway. Set `holdout = 0.1` (or a flow's "
            "`holdout`) to measure it."
        )
    return None


def _converted(group: Iterable[Assignment], orders: Orders, window: float) -> list[tuple[Assignment, int | None]]:
    """The assignments of ``group`` whose cart converted in the window, each with the order's value if known and
    in the cart's currency (a value in another currency cannot be averaged with the cart's)."""
    found = []
    for a in group:
        conversion = orders.first_after(a.cart_key, a.assigned_at, within=window)
        if conversion is not None:
            order = orders.order_of(conversion)
            same = order.value is not None and (order.currency or a.currency) == a.currency
            found.append((a, order.value if same else None))
    return found


def _compare(
    flow: str, scope: HoldoutScope, treated: list[Assignment], held: list[Assignment], *, orders: Orders,
    window: float, confidence: float, least: int,
) -> UpliftRow:  # fmt: skip
    won = _converted(treated, orders, window)
    k_t, n_t = len(won), len(treated)
    k_h, n_h = len(_converted(held, orders, window)), len(held)
    rate_t = k_t / n_t if n_t else 0.0
    rate_h = k_h / n_h if n_h else 0.0
    diff = rate_t - rate_h
    low, high = newcombe_interval(k_t, n_t, k_h, n_h, confidence)
    revenue = _revenue(treated, won, diff, low, high)
    level = f"{confidence:.0%}"
    if k_h < least:
        verdict: Verdict = "too_small"
        explanation = (
            f"Too small to tell: {k_h} of {n_h} holdout carts converted; at least {least} holdout conversions are "
            "needed before the difference means anything."
        )
    elif low <= 0.0 <= high:
        verdict = "too_small"
        explanation = (
            f"Too small to tell: the {level} interval ({_points(low)} to {_points(high)}) includes no effect at all."
        )
    else:
        verdict = "uplift" if low > 0 else "harm"
        direction = "more" if verdict == "uplift" else "less"
        explanation = (
            f"Treatment carts converted {abs(diff) * 100:.1f} percentage points {direction} often than the holdout "
            f"({level} interval {_points(low)} to {_points(high)})."
        )
    return UpliftRow(
        flow=flow, scope=scope, treated=n_t, treated_converted=k_t, holdout=n_h, holdout_converted=k_h,
        treated_rate=rate_t, holdout_rate=rate_h, difference=diff, low=low, high=high,
        relative=diff / rate_h if rate_h > 0 else None, incremental_conversions=diff * n_t,
        incremental_low=low * n_t, incremental_high=high * n_t, revenue=revenue, verdict=verdict,
        explanation=explanation,
    )  # fmt: skip


def _revenue(
    treated: list[Assignment], won: list[tuple[Assignment, int | None]], diff: float, low: float, high: float
) -> list[IncrementalRevenue]:
    carts: dict[str, int] = {}
    for a in treated:
        carts[a.currency or "?"] = carts.get(a.currency or "?", 0) + 1
    totals: dict[str, int] = {}
    counted: dict[str, int] = {}
    for a, value in won:
        if value is not None:
            add_money(totals, a.currency, value)
            counted[a.currency or "?"] = counted.get(a.currency or "?", 0) + 1
    rows = []
    for currency, n in sorted(carts.items()):
        mean = round(totals[currency] / counted[currency]) if counted.get(currency) else None
        rows.append(
            IncrementalRevenue(
                currency=currency, treated_carts=n, mean_order=mean,
                value=None if mean is None else round(diff * n * mean),
                low=None if mean is None else round(low * n * mean),
                high=None if mean is None else round(high * n * mean),
            )
        )
    return rows


def _points(fraction: float) -> str:
    """A difference of rates in percentage points: ``+3.1 pp``."""
    return f"{fraction * 100:+.1f} pp"
