"""The score stage: features of an abandoned cart, the default model, and containment of a shop's model."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from helpers import T0, abandoned
from recoverkit.cart import CartLine, CartSnapshot
from recoverkit.events import CheckoutStep
from recoverkit.route import Cancel
from recoverkit.score import Assessment, DefaultScorer, Features, Score, Scored, features_of
from recoverkit.sessionize import ContactChanged, Converted, Resumed


def features(**overrides: Any) -> Features:
    """Features of a plain anonymous 35.79 EUR cart at the cart step, with any field replaced."""
    return msgspec.structs.replace(features_of(abandoned(customer_id=None)), **overrides)


def score_one(item: Any, stage: Score | None = None) -> Any:
    out: list[Any] = []
    (stage or Score()).handle([item], out)
    [result] = out
    return result


# -- features -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "minor", "major"), [("EUR", 3579, 35.79), ("JPY", 1200, 1200.0), ("KWD", 1234, 1.234)]
)
def test_the_value_feature_is_in_major_units(currency: str, minor: int, major: float) -> None:
    assert features_of(abandoned(currency=currency, value=minor)).value == pytest.approx(major)


def test_shipping_ratio_is_shipping_over_cart_value() -> None:
    assert features_of(abandoned(value=4000, shipping=600)).shipping_ratio == pytest.approx(0.15)


@pytest.mark.parametrize(("value", "shipping"), [(4000, None), (0, 600)])
def test_shipping_ratio_is_zero_when_either_amount_is_unknown(value: int, shipping: int | None) -> None:
    assert features_of(abandoned(value=value, shipping=shipping)).shipping_ratio == 0.0


def test_checkout_seconds_is_the_time_from_checkout_start_to_last_activity() -> None:
    f = features_of(abandoned(checkout_at=T0 + 200, last_at=T0 + 600, step=CheckoutStep.PAYMENT))
    assert (f.checkout_seconds, f.step) == (400.0, int(CheckoutStep.PAYMENT))


def test_checkout_seconds_is_zero_for_a_cart_that_never_reached_checkout() -> None:
    assert features_of(abandoned(checkout_at=None)).checkout_seconds == 0.0


def test_features_count_lines_units_and_signals() -> None:
    cart_lines = (CartLine(item_id="A", price=100, quantity=2), CartLine(item_id="B", price=100, quantity=3))
    f = features_of(abandoned("exit_intent", lines=cart_lines, exit_intents=1, form_errors=2, customer_id="c"))
    assert (f.lines, f.quantity, f.exit_intent, f.form_errors, f.identified, f.trigger) == (
        2,
        5,
        True,
        2,
        True,
        "exit_intent",
    )


# -- the default model --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "f",
    [
        features(),
        features(value=0.0),
        features(value=1e12, shipping_ratio=50.0, form_errors=99, item_views=10_000, exit_intent=True),
        features(step=int(CheckoutStep.PURCHASE), returning=True, identified=True, payment_failures=9,
                 checkout_seconds=1e9),
    ],
)  # fmt: skip
def test_default_probability_is_within_zero_and_one(f: Features) -> None:
    assert 0.0 <= DefaultScorer().probability(f) <= 1.0


def test_a_deeper_checkout_step_scores_higher() -> None:
    scorer = DefaultScorer()
    steps = [CheckoutStep.CART, CheckoutStep.CHECKOUT, CheckoutStep.SHIPPING, CheckoutStep.PAYMENT]
    scores = [scorer.probability(features(step=int(step))) for step in steps]
    assert scores == sorted(scores)
    assert len(set(scores)) == len(scores)


def test_a_shipping_cost_shock_scores_lower() -> None:
    scorer = DefaultScorer(shipping_shock_ratio=0.1)
    calm = features(step=int(CheckoutStep.SHIPPING), shipping_ratio=0.05)
    shocked = features(step=int(CheckoutStep.SHIPPING), shipping_ratio=0.25)
    assert scorer.probability(shocked) < scorer.probability(calm)


def test_a_returning_customer_scores_higher() -> None:
    scorer = DefaultScorer()
    assert scorer.probability(features(returning=True)) > scorer.probability(features(returning=False))


def test_payment_failure_is_the_reason_whatever_else_happened() -> None:
    f = features(payment_failures=1, step=int(CheckoutStep.SHIPPING), shipping_ratio=0.5, form_errors=3)
    assert DefaultScorer().reason(f) == "payment_failure"


def test_shipping_cost_is_the_reason_from_the_shipping_step_at_the_shock_ratio() -> None:
    scorer = DefaultScorer(shipping_shock_ratio=0.1)
    assert scorer.reason(features(step=int(CheckoutStep.SHIPPING), shipping_ratio=0.1)) == "shipping_cost"


def test_shipping_cost_is_not_the_reason_below_the_shock_ratio() -> None:
    scorer = DefaultScorer(shipping_shock_ratio=0.1)
    assert scorer.reason(features(step=int(CheckoutStep.PAYMENT), shipping_ratio=0.09)) == "unknown"


def test_shipping_cost_is_not_the_reason_before_shipping_was_shown() -> None:
    scorer = DefaultScorer(shipping_shock_ratio=0.1)
    assert scorer.reason(features(step=int(CheckoutStep.CHECKOUT), shipping_ratio=0.5)) == "unknown"


def test_form_errors_make_form_friction_the_reason() -> None:
    assert DefaultScorer().reason(features(step=int(CheckoutStep.CHECKOUT), form_errors=1)) == "form_friction"


def test_many_item_views_before_checkout_make_price_comparison_the_reason() -> None:
    assert DefaultScorer().reason(features(lines=2, item_views=6)) == "price_comparison"


def test_few_item_views_leave_the_reason_unknown() -> None:
    assert DefaultScorer().reason(features(lines=2, item_views=5)) == "unknown"


def test_item_views_during_checkout_are_not_price_comparison() -> None:
    assert DefaultScorer().reason(features(step=int(CheckoutStep.CHECKOUT), lines=1, item_views=10)) == "unknown"


# -- the stage ----------------------------------------------------------------------------------------------


def test_the_stage_scores_an_abandonment_with_the_default_model() -> None:
    item = abandoned(payment_failures=1)
    scored = score_one(item)
    assert type(scored) is Scored
    assert scored.abandoned is item
    assert (scored.reason, scored.scorer) == ("payment_failure", "default")
    assert scored.probability == DefaultScorer().probability(features_of(item))


def test_the_shipping_shock_ratio_reaches_the_default_model() -> None:
    item = abandoned(step=CheckoutStep.SHIPPING, value=10_000, shipping=500)
    assert score_one(item, Score(shipping_shock_ratio=0.05)).reason == "shipping_cost"
    assert score_one(item, Score(shipping_shock_ratio=0.06)).reason == "unknown"


class FixedScorer:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.seen: list[tuple[CartSnapshot, Features]] = []

    def score(self, cart: CartSnapshot, features: Features) -> Any:
        self.seen.append((cart, features))
        return self.answer


def test_a_shops_scorer_is_used_and_named() -> None:
    scorer = FixedScorer(Assessment(0.42, "price_comparison"))
    item = abandoned()
    scored = score_one(item, Score(scorer))
    assert (scored.probability, scored.reason, scored.scorer) == (0.42, "price_comparison", "FixedScorer")
    assert scorer.seen == [(item.cart, features_of(item))]


class RaisingScorer:
    def score(self, cart: CartSnapshot, features: Features) -> Assessment:
        raise RuntimeError("model not loaded")


@pytest.mark.parametrize(
    "scorer",
    [
        RaisingScorer(),
        FixedScorer(Assessment(1.5, "unknown")),
        FixedScorer(Assessment(-0.1, "unknown")),
        FixedScorer(Assessment(math.nan, "unknown")),
        FixedScorer(0.7),
        FixedScorer(Assessment(0.5, "too_expensive")),  # type: ignore[arg-type]
    ],
    ids=["raises", "above_one", "below_zero", "nan", "not_an_assessment", "unknown_reason"],
)
def test_a_failing_scorer_is_replaced_by_the_default_and_counted(scorer: Any) -> None:
    stage = Score(scorer)
    item = abandoned(payment_failures=1)
    scored = score_one(item, stage)
    assert (scored.scorer, scored.reason) == ("default", "payment_failure")
    assert scored.probability == DefaultScorer().probability(features_of(item))
    assert stage.scorer_failures == 1
    assert stage.errors == 0


def test_reasons_are_counted() -> None:
    stage = Score()
    stage.handle([abandoned(payment_failures=1), abandoned(payment_failures=2), abandoned()], [])
    assert stage.extra_statistics()["reasons"] == {"payment_failure": 2, "unknown": 1}


def test_everything_but_abandonments_passes_through_unchanged_in_order() -> None:
    others = [
        Resumed(cart_key="c", contact_key="k", at=T0),
        ContactChanged(contact_key="k", at=T0, email="j@example.com"),
        Converted(cart_key="c", session_id="s", customer_id=None, contact_key="k", at=T0),
        Cancel(why="resumed", at=T0, cart_key="c"),
    ]
    items = [others[0], abandoned(), others[1], others[2], others[3]]
    out: list[Any] = []
    Score().handle(items, out)
    assert [type(x).__name__ for x in out] == ["Resumed", "Scored", "ContactChanged", "Converted", "Cancel"]
    assert [x for x in out if type(x) is not Scored] == others
    assert all(a is b for a, b in zip([out[0], *out[2:]], others, strict=True))


def test_a_snapshot_without_lines_still_scores() -> None:
    scored = score_one(abandoned(lines=(), value=0))
    assert 0.0 <= scored.probability <= 1.0
