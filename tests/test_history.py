"""Labelled abandonments from a history: the engine's own abandonment and purchase logic, the window, censoring."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from helpers import T0, add, event, page
from recoverkit.config import Config
from recoverkit.events import BaseEvent, Purchase
from recoverkit.history import Example, abandonment_history, split_by_time

HOUR = 3600.0


def buy(session: str, t: float, **fields: Any) -> Purchase:
    return event(Purchase, session, t, value=Decimal("10.00"), transaction_id=f"T-{session}-{t}", **fields)


def history(*events: BaseEvent, window: float = 2 * HOUR, **settings: Any) -> Any:
    config = Config(abandon_after=1800, **settings)
    # The last event sets the end of the data: every window below closes before it.
    return abandonment_history([*events, page("clock", 100 * HOUR)], config=config, window=window)


def test_an_abandoned_cart_bought_within_the_window_is_converted() -> None:
    h = history(add("s1", 0), buy("s1", HOUR))
    [example] = h.examples
    assert (example.cart_key, example.at, example.converted, example.converted_at) == ("s1", T0 + 1800, True, T0 + HOUR)


def test_a_purchase_after_the_window_does_not_count() -> None:
    [example] = history(add("s1", 0), buy("s1", 1800 + 2 * HOUR + 1)).examples
    assert not example.converted and example.converted_at is None


def test_a_cart_left_for_good_is_not_converted() -> None:
    [example] = history(add("s1", 0)).examples
    assert not example.converted


def test_a_purchase_by_the_customer_in_another_session_converts_the_cart() -> None:
    h = history(add("s1", 0, customer_id="c1"), buy("s2", HOUR, customer_id="c1"))
    [example] = h.examples
    assert example.cart_key == "s1" and example.converted


def test_a_purchase_by_someone_else_does_not() -> None:
    [example] = history(add("s1", 0, customer_id="c1"), buy("s2", HOUR, customer_id="c2")).examples
    assert not example.converted


def test_a_cart_bought_before_it_was_abandoned_is_no_example() -> None:
    h = history(add("s1", 0), buy("s1", 600))
    assert (h.abandonments, h.examples) == (0, [])


def test_features_are_those_at_abandonment() -> None:
    [example] = history(add("s1", 0, price="40.00"), add("s1", 60, item_id="B", price="2.50")).examples
    assert (example.features.value, example.features.lines, example.features.session_seconds) == (42.5, 2, 60.0)


def test_abandonments_whose_window_outlasts_the_events_are_censored_whatever_happened() -> None:
    events = [add("early", 0), add("late", 10 * HOUR), add("late-bought", 10 * HOUR), buy("late-bought", 11 * HOUR),
              page("end", 12 * HOUR)]  # fmt: skip
    h = abandonment_history(events, config=Config(), window=3 * HOUR)
    assert [e.cart_key for e in h.examples] == ["early"]
    assert (h.abandonments, h.censored) == (3, 2)


def test_the_window_cannot_outlast_the_recovery_window() -> None:
    with pytest.raises(ValueError, match="recovery_window"):
        abandonment_history([], config=Config(recovery_window=HOUR), window=2 * HOUR)


def test_the_window_defaults_to_the_recovery_window() -> None:
    assert history(window=None, recovery_window=5 * HOUR).window == 5 * HOUR  # type: ignore[arg-type]


def _example(at: float) -> Example:
    [template] = history(add("s1", 0)).examples
    return Example(cart_key=f"c{at}", at=at, features=template.features, converted=False)


def test_the_split_by_time_puts_the_later_share_last() -> None:
    examples = [_example(t) for t in (5, 1, 4, 2, 3, 6, 8, 7)]
    train, test = split_by_time(examples, 0.25)
    assert [e.at for e in train] == [1, 2, 3, 4, 5, 6] and [e.at for e in test] == [7, 8]


def test_the_split_keeps_abandonments_of_one_instant_together() -> None:
    train, test = split_by_time([_example(t) for t in (1, 2, 3, 3, 3, 4)], 0.5)
    assert [e.at for e in train] == [1, 2, 3, 3, 3] and [e.at for e in test] == [4]


def test_no_test_share_keeps_everything_for_training() -> None:
    train, test = split_by_time([_example(t) for t in (1, 2)], 0)
    assert (len(train), test) == (2, [])
