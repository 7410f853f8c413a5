"""Uplift against the holdout: rates, the interval and the incremental revenue against a hand computation, which
carts each comparison takes, and the "too small to tell" verdict."""

from __future__ import annotations

import math
from typing import Any

import pytest

from helpers import T0
from recoverkit.analytics import Facts, uplift
from recoverkit.facts import Assignment, Conversion

HOUR, DAY = 3600.0, 86_400.0


def carts(prefix: str, n: int, converted: int, *, group: str = "treatment", scope: str | None = None,
          flow: str = "f", currency: str = "EUR", value: int = 5000, after: float = HOUR) -> list[Any]:  # fmt: skip
    """``n`` carts assigned at T0, the first ``converted`` of them bought ``after`` seconds later for ``value``."""
    items: list[Any] = []
    for i in range(n):
        cart = f"{prefix}{i}"
        items.append(Assignment(cart_key=cart, flow=flow, group=group, scope=scope, contact_key=f"c-{cart}",  # type: ignore[arg-type]
                                assigned_at=T0, value=value, currency=currency))  # fmt: skip
        if i < converted:
            bought = Conversion(cart_key=cart, contact_key=f"c-{cart}", at=T0 + after, value=value, currency=currency)
            items.append(bought)
    return items


def facts(*groups: list[Any]) -> Facts:
    items = [x for g in groups for x in g]
    return Facts(assignments=[x for x in items if type(x) is Assignment],
                 conversions=[x for x in items if type(x) is Conversion], outcomes=[], visits=[], codes=[])  # fmt: skip


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_uplift_matches_a_hand_computation() -> None:
    found = uplift(facts(carts("t", 200, 60), carts("h", 200, 40, group="holdout", scope="global")))
    (row,) = found.rows
    assert (row.flow, row.scope, row.treated, row.treated_converted, row.holdout, row.holdout_converted) == (
        "*", "global", 200, 60, 200, 40
    )
    assert (row.treated_rate, row.holdout_rate) == (0.3, 0.2)
    assert row.difference == pytest.approx(0.1) and row.relative == pytest.approx(0.5)
    (l1, u1), (l2, u2) = wilson_by_hand(60, 200), wilson_by_hand(40, 200)
    low = 0.1 - math.sqrt((0.3 - l1) ** 2 + (u2 - 0.2) ** 2)
    high = 0.1 + math.sqrt((u1 - 0.3) ** 2 + (0.2 - l2) ** 2)
    assert (row.low, row.high) == (pytest.approx(low), pytest.approx(high))
    assert (round(row.low, 4), round(row.high, 4)) == (0.0151, 0.1832)
    assert row.incremental_conversions == pytest.approx(20.0)
    assert (row.incremental_low, row.incremental_high) == (pytest.approx(low * 200), pytest.approx(high * 200))
    # 0.1 x 200 treated carts x 50.00 mean order = 1000.00 EUR, with the same interval.
    (revenue,) = row.revenue
    assert (revenue.currency, revenue.treated_carts, revenue.mean_order, revenue.value) == ("EUR", 200, 5000, 100_000)
    assert (revenue.low, revenue.high) == (round(low * 200 * 5000), round(high * 200 * 5000))
    assert row.verdict == "uplift" and "10.0 percentage points more" in row.explanation


def test_only_conversions_after_assignment_and_within_the_window_count() -> None:
    early = carts("e", 50, 50, after=-60)  # bought before they were assigned
    late = carts("l", 50, 50, after=5 * DAY + 1)  # bought after the window
    held = carts("h", 50, 20, group="holdout", scope="global")
    (row,) = uplift(facts(early, late, held)).rows
    assert (row.treated, row.treated_converted) == (100, 0)
    (wide,) = uplift(facts(early, late, held), window=6 * DAY).rows
    assert wide.treated_converted == 50


def test_too_few_holdout_conversions_is_too_small_to_tell_whatever_the_interval() -> None:
    (row,) = uplift(facts(carts("t", 400, 300), carts("h", 20, 3, group="holdout", scope="global"))).rows
    assert row.low > 0  # the interval alone would call it
    assert row.verdict == "too_small"
    assert row.explanation.startswith("Too small to tell: 3 of 20 holdout carts converted; at least 10")


def test_an_interval_including_zero_is_too_small_to_tell() -> None:
    (row,) = uplift(facts(carts("t", 100, 30), carts("h", 100, 28, group="holdout", scope="global"))).rows
    assert row.low < 0 < row.high and row.verdict == "too_small"
    assert "includes no effect" in row.explanation


def test_messages_that_lower_conversion_are_called_harm() -> None:
    (row,) = uplift(facts(carts("t", 300, 30), carts("h", 300, 90, group="holdout", scope="global"))).rows
    assert row.verdict == "harm" and row.high < 0 and "less often" in row.explanation


def test_the_shop_wide_holdout_is_compared_with_every_other_cart_of_the_flows() -> None:
    # Intention to treat: carts in a flow's own holdout were eligible for the shop-wide treatment and count in it.
    found = uplift(facts(
        carts("a", 100, 40, flow="a"), carts("af", 50, 10, group="holdout", scope="flow", flow="a"),
        carts("b", 100, 30, flow="b"),
        carts("ga", 40, 12, group="holdout", scope="global", flow="a"),
        carts("gb", 40, 8, group="holdout", scope="global", flow="b"),
    ))  # fmt: skip
    rows = {(r.flow, r.scope): r for r in found.rows}
    assert set(rows) == {("*", "global"), ("a", "global"), ("b", "global"), ("a", "flow")}
    assert (rows["*", "global"].treated, rows["*", "global"].treated_converted) == (250, 80)
    assert (rows["*", "global"].holdout, rows["*", "global"].holdout_converted) == (80, 20)
    assert (rows["a", "global"].treated, rows["a", "global"].holdout) == (150, 40)
    assert (rows["a", "flow"].treated, rows["a", "flow"].treated_converted, rows["a", "flow"].holdout) == (100, 40, 50)


def test_incremental_revenue_is_per_currency() -> None:
    (row,) = uplift(facts(
        carts("e", 100, 50, value=2000), carts("y", 100, 50, currency="JPY", value=3000),
        carts("h", 200, 40, group="holdout", scope="global"),
    )).rows  # fmt: skip
    revenue = {r.currency: r for r in row.revenue}
    diff = 100 / 200 - 40 / 200
    assert (revenue["EUR"].mean_order, revenue["EUR"].value) == (2000, round(diff * 100 * 2000))
    assert (revenue["JPY"].mean_order, revenue["JPY"].value) == (3000, round(diff * 100 * 3000))


def test_without_order_values_there_is_no_revenue_figure_only_the_rates() -> None:
    treated = [x if type(x) is Assignment else Conversion(cart_key=x.cart_key, contact_key=x.contact_key, at=x.at)
               for x in carts("t", 100, 50)]  # fmt: skip
    (row,) = uplift(facts(treated, carts("h", 100, 20, group="holdout", scope="global"))).rows
    assert row.verdict == "uplift"
    assert [(r.currency, r.mean_order, r.value, r.low) for r in row.revenue] == [("EUR", None, None, None)]


def test_without_a_holdout_it_says_so() -> None:
    found = uplift(facts(carts("t", 100, 50)))
    assert found.rows == [] and found.note is not None and "No holdout" in found.note
    assert "nothing to compare" in str(uplift(facts()).note)
