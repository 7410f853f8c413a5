"""The default reason rules (:mod:`recoverkit.reasons`): each reason from its signal, in order of certainty, and
``unknown`` only when no rule's signal is there."""

from __future__ import annotations

from typing import Any

import pytest

from recoverkit.events import CheckoutStep
from recoverkit.items import Features
from recoverkit.reasons import ReasonRules, infer_reason
from recoverkit.score import DefaultScorer


def features(**overrides: Any) -> Features:
    """A one-line cart left at the cart page with nothing to say why."""
    fields: dict[str, Any] = {
        "value": 40.0,
        "lines": 1,
        "quantity": 1,
        "step": int(CheckoutStep.CART),
        "checkout_seconds": 0.0,
        "session_seconds": 300.0,
        "returning": False,
        "identified": False,
        "payment_failures": 0,
        "form_errors": 0,
        "exit_intent": False,
        "shipping_ratio": 0.0,
        "item_views": 1,
        "views": 2,
        "trigger": "inactivity",
    }
    fields.update(overrides)
    return Features(**fields)


SHIPPING = int(CheckoutStep.SHIPPING)
CHECKOUT = int(CheckoutStep.CHECKOUT)
PAYMENT = int(CheckoutStep.PAYMENT)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({}, "unknown"),
        ({"payment_failures": 1, "step": PAYMENT}, "payment_failure"),
        ({"step": SHIPPING, "shipping_ratio": 0.1}, "shipping_cost"),
        ({"step": SHIPPING, "shipping_ratio": 0.09}, "unknown"),
        ({"step": CHECKOUT, "form_errors": 1}, "form_friction"),
        ({"step": CHECKOUT, "dead_clicks": 3}, "form_friction"),
        ({"step": CHECKOUT, "dead_clicks": 2}, "unknown"),
        ({"step": CHECKOUT, "slow_steps": 1}, "form_friction"),
        ({"step": CHECKOUT, "longest_form_step": 240.0}, "form_friction"),
        ({"step": CHECKOUT, "longest_form_step": 239.0}, "unknown"),
        ({"tab_aways": 2}, "price_comparison"),
        ({"tab_aways": 1, "hidden_seconds": 59.0}, "unknown"),
        ({"tab_aways": 1, "hidden_seconds": 60.0}, "price_comparison"),
        ({"step": CHECKOUT, "hidden_seconds": 300.0}, "price_comparison"),
        ({"step": SHIPPING, "hidden_seconds": 300.0}, "unknown"),  # past the checkout's first page: not shopping around
        ({"item_views": 3}, "price_comparison"),
        ({"item_views": 5, "lines": 2}, "unknown"),
        ({"step": CHECKOUT, "item_views": 9}, "unknown"),  # views count only before checkout
    ],
)
def test_each_reason_comes_from_its_signal(overrides: dict[str, Any], reason: str) -> None:
    assert infer_reason(features(**overrides)) == reason


def test_a_payment_failure_outranks_every_other_signal() -> None:
    f = features(step=SHIPPING, payment_failures=2, shipping_ratio=0.5, form_errors=3, tab_aways=4)
    assert infer_reason(f) == "payment_failure"


def test_friction_the_shopper_went_through_outranks_the_shipping_share_everyone_saw() -> None:
    assert infer_reason(features(step=SHIPPING, shipping_ratio=0.3, dead_clicks=4)) == "form_friction"
    assert infer_reason(features(step=SHIPPING, shipping_ratio=0.3, slow_steps=1)) == "form_friction"


def test_a_rejected_form_the_shopper_got_past_does_not_outrank_a_shipping_shock() -> None:
    assert infer_reason(features(step=SHIPPING, shipping_ratio=0.3, form_errors=1)) == "shipping_cost"
    assert infer_reason(features(step=SHIPPING, shipping_ratio=0.05, form_errors=1)) == "form_friction"


def test_shipping_cost_is_not_the_reason_once_payment_details_were_entered() -> None:
    # Shoppers who went on to pay had accepted the cost (the rule before required only the shipping step).
    assert infer_reason(features(step=PAYMENT, shipping_ratio=0.3)) == "unknown"


def test_the_thresholds_are_the_rules_own() -> None:
    rules = ReasonRules(shipping_shock_ratio=0.05, dead_clicks=1, tab_aways=1)
    assert infer_reason(features(step=SHIPPING, shipping_ratio=0.06), rules) == "shipping_cost"
    assert infer_reason(features(step=CHECKOUT, dead_clicks=1), rules) == "form_friction"
    assert infer_reason(features(tab_aways=1), rules) == "price_comparison"


def test_the_default_scorer_answers_the_rules_with_its_own_shipping_share() -> None:
    scorer = DefaultScorer(shipping_shock_ratio=0.2)
    f = features(step=SHIPPING, shipping_ratio=0.15)
    assert scorer.reason(f) == "unknown"
    scorer.shipping_shock_ratio = 0.1  # set after construction, as a shop may
    assert scorer.reason(f) == "shipping_cost"
    assert DefaultScorer().reason(features(tab_aways=3)) == infer_reason(features(tab_aways=3)) == "price_comparison"
