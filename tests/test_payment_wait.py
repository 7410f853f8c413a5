"""The payment-failure wait: by default a declined shopper has 15 minutes to pay on their own before the cart
counts as abandoned (docs/scoring.md, "The payment-failure wait", says how the figure was chosen)."""

from __future__ import annotations

from helpers import T0, SessionizeRun, add, event
from recoverkit.config import Config
from recoverkit.events import AddPaymentInfo, PaymentFailed, Purchase
from recoverkit.sessionize import Abandoned, Converted


def test_the_default_wait_after_a_failed_payment_is_fifteen_minutes() -> None:
    assert Config().payment_failed_after == 900.0


def test_a_shopper_who_retries_and_pays_within_the_wait_is_never_abandoned() -> None:
    run = SessionizeRun(Config()).feed(add("s1", 0), event(PaymentFailed, "s1", 60))
    run.feed(event(AddPaymentInfo, "s1", 60 + 400), event(Purchase, "s1", 60 + 420)).advance(3 * 86_400)
    assert run.of(Abandoned) == []
    assert len(run.of(Converted)) == 1


def test_a_shopper_who_leaves_after_a_decline_is_abandoned_when_the_wait_is_over() -> None:
    run = SessionizeRun(Config()).feed(add("s1", 0), event(PaymentFailed, "s1", 60)).advance(60 + 899)
    assert run.of(Abandoned) == []
    [left] = run.advance(60 + 900).of(Abandoned)
    assert (left.trigger, left.at, left.cart.payment_failures) == ("payment_failed", T0 + 960, 1)


def test_a_retry_that_fails_again_is_abandoned_a_wait_after_the_last_failure() -> None:
    run = SessionizeRun(Config()).feed(add("s1", 0), event(PaymentFailed, "s1", 60))
    run.feed(event(AddPaymentInfo, "s1", 300), event(PaymentFailed, "s1", 320)).advance(320 + 899)
    assert run.of(Abandoned) == []
    [left] = run.advance(320 + 900).of(Abandoned)
    assert (left.trigger, left.cart.payment_failures) == ("payment_failed", 2)
