"""The ``checkout_signal`` event: what a shop's page says about how a step went, validated at the edge, added up
on the cart by sessionize (across checkpoints and moves), and handed to the model as features."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from helpers import SessionizeRun, add, event, legacy_checkpoint
from recoverkit.cart import CheckoutSignals
from recoverkit.errors import InvalidEvent
from recoverkit.events import CheckoutSignal, Purchase, decode_event
from recoverkit.score import features_of
from recoverkit.sessionize import Abandoned


def signal(session: str, t: float, **fields: Any) -> CheckoutSignal:
    return event(CheckoutSignal, session, t, **fields)


# -- the contract ---------------------------------------------------------------------------------------------


def test_a_checkout_signal_decodes_with_every_field() -> None:
    got = decode_event(
        b'{"event": "checkout_signal", "session_id": "s1", "checkout_step": "shipping", "seconds_on_step": 95.5,'
        b' "dead_clicks": 3, "tab_aways": 2, "hidden_seconds": 40, "slow": true}'
    )
    assert got == CheckoutSignal(
        session_id="s1",
        checkout_step="shipping",
        seconds_on_step=95.5,
        dead_clicks=3,
        tab_aways=2,
        hidden_seconds=40.0,
        slow=True,
    )


def test_every_field_of_a_checkout_signal_is_optional() -> None:
    got = decode_event({"event": "checkout_signal", "session_id": "s1"})
    assert type(got) is CheckoutSignal
    assert (got.checkout_step, got.seconds_on_step, got.dead_clicks, got.tab_aways, got.hidden_seconds, got.slow) == (
        None,
        None,
        0,
        0,
        0.0,
        False,
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("seconds_on_step", -1, "`float` >= 0.0"),
        ("seconds_on_step", 90_000, "`float` <= 86400.0"),  # over a day: milliseconds sent as seconds
        ("hidden_seconds", -0.5, "`float` >= 0.0"),
        ("dead_clicks", -1, "`int` >= 0"),
        ("dead_clicks", 1.5, "`int`"),
        ("tab_aways", 20_000, "`int` <= 10000"),
        ("slow", "yes", "`bool`"),
        ("checkout_step", "paying", "one of browse, cart, checkout, shipping, payment"),
    ],
)
def test_a_bad_signal_is_refused_naming_field_value_and_expectation(field: str, value: Any, expected: str) -> None:
    data = {"event": "checkout_signal", "session_id": "s1", field: value}
    with pytest.raises(InvalidEvent) as caught:
        decode_event(msgspec.json.encode(data))
    message = str(caught.value)
    assert f"`$.{field}`" in message and expected in message and repr(value) in message, message
    assert caught.value.field == f"$.{field}"
    with pytest.raises(InvalidEvent, match=rf"\$\.{field}"):
        decode_event(data)  # a dict is held to the same rules


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_signal_time_that_is_not_finite_is_refused(value: float) -> None:
    with pytest.raises(InvalidEvent, match=r"\$\.hidden_seconds"):
        decode_event({"event": "checkout_signal", "session_id": "s1", "hidden_seconds": value})


# -- on the cart ----------------------------------------------------------------------------------------------


def test_signals_are_added_up_on_the_abandoned_cart() -> None:
    run = SessionizeRun(abandon_after=1800).feed(
        add("s1", 0),
        signal("s1", 10, checkout_step="cart", seconds_on_step=30, tab_aways=1, hidden_seconds=20.5),
        signal("s1", 20, checkout_step="checkout", seconds_on_step=310, dead_clicks=2, slow=True),
        signal("s1", 30, checkout_step="shipping", seconds_on_step=120, dead_clicks=1, tab_aways=2, hidden_seconds=9),
    )
    run.advance(1830)
    (left,) = run.of(Abandoned)
    assert left.cart.signals == CheckoutSignals(
        dead_clicks=3, slow_steps=1, tab_aways=3, hidden_seconds=29.5, longest_form_step=310.0
    )


def test_only_form_pages_count_towards_the_longest_form_step() -> None:
    run = SessionizeRun(abandon_after=1800).feed(
        add("s1", 0),
        signal("s1", 1, checkout_step="cart", seconds_on_step=900),
        signal("s1", 2, checkout_step="browse", seconds_on_step=800),
        signal("s1", 3, seconds_on_step=700),  # no page named: not known to be a form
        signal("s1", 4, checkout_step="payment", seconds_on_step=45),
    )
    (left,) = run.advance(1804).of(Abandoned)
    assert left.cart.signals is not None and left.cart.signals.longest_form_step == 45.0


def test_a_signal_is_activity_that_postpones_abandonment() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0), signal("s1", 600, checkout_step="cart"))
    assert run.advance(1800).of(Abandoned) == []
    assert len(run.advance(2400).of(Abandoned)) == 1


def test_a_cart_whose_shop_sends_no_signal_has_none() -> None:
    (left,) = SessionizeRun(abandon_after=1800).feed(add("s1", 0)).advance(1800).of(Abandoned)
    assert left.cart.signals is None
    f = features_of(left)
    assert (f.signals, f.dead_clicks, f.tab_aways, f.hidden_seconds, f.longest_form_step) == (False, 0, 0, 0.0, 0.0)


def test_the_next_cart_after_a_purchase_starts_without_the_last_ones_signals() -> None:
    run = SessionizeRun(abandon_after=1800).feed(
        add("s1", 0), signal("s1", 1, dead_clicks=5), event(Purchase, "s1", 2), add("s1", 3, "B")
    )
    (left,) = run.advance(1803).of(Abandoned)
    assert left.cart.signals is None


def test_signals_follow_a_cart_into_another_session_and_add_up() -> None:
    run = SessionizeRun(abandon_after=1800).feed(
        add("laptop", 0, cart_id="cart-7"),
        signal("laptop", 1, cart_id="cart-7", checkout_step="checkout", seconds_on_step=200, tab_aways=1),
        signal("phone", 60, cart_id="cart-7", checkout_step="shipping", seconds_on_step=90, tab_aways=2),
        add("phone", 61, "B", cart_id="cart-7"),
    )
    (left,) = run.advance(10 * 86_400).of(Abandoned)
    assert left.cart.session_id == "phone"
    assert left.cart.signals == CheckoutSignals(tab_aways=3, longest_form_step=200.0)


def test_features_carry_the_cart_signals() -> None:
    run = SessionizeRun(abandon_after=1800).feed(
        add("s1", 0),
        signal("s1", 5, checkout_step="checkout", seconds_on_step=250, dead_clicks=4, slow=True, tab_aways=1),
    )
    (left,) = run.advance(1805).of(Abandoned)
    f = features_of(left)
    assert (f.signals, f.dead_clicks, f.slow_steps, f.tab_aways, f.hidden_seconds, f.longest_form_step) == (
        True,
        4,
        1,
        1,
        0.0,
        250.0,
    )


# -- across a checkpoint --------------------------------------------------------------------------------------


def test_signals_survive_a_checkpoint() -> None:
    first = SessionizeRun(abandon_after=1800).feed(add("s1", 0), signal("s1", 5, dead_clicks=2, hidden_seconds=7))
    second = SessionizeRun(abandon_after=1800)
    second.stage.restore(first.stage.snapshot())
    second.feed(signal("s1", 10, dead_clicks=1)).advance(1810)
    (left,) = second.of(Abandoned)
    assert left.cart.signals == CheckoutSignals(dead_clicks=3, hidden_seconds=7.0)


def test_a_checkpoint_written_before_checkout_signals_still_restores() -> None:
    # A session is checkpointed as an array of its fields; before this field its array was one shorter.
    first = SessionizeRun(abandon_after=1800).feed(add("s1", 0), add("s2", 1))
    old = legacy_checkpoint(first.stage.snapshot(), signals=False)
    assert [len(session) for session in msgspec.msgpack.decode(old)[1]] == [23, 23]
    second = SessionizeRun(abandon_after=1800)
    second.stage.restore(old)
    assert second.stage.snapshot() == first.stage.snapshot()
    second.advance(1801)
    assert sorted(a.cart.cart_key for a in second.of(Abandoned)) == ["s1", "s2"]
    assert all(a.cart.signals is None for a in second.of(Abandoned))
