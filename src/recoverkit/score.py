"""Stage 3, score: how likely an abandoned cart is to convert, and the likely reason it was left.

Each :class:`~recoverkit.sessionize.Abandoned` cart becomes :class:`Features` (value, items, step reached,
time in checkout, returning customer, friction signals, shipping cost relative to cart value, ...) and then a
:class:`Scored` record with a conversion probability in [0, 1] and a :data:`Reason`. Everything else passes
through untouched.

The default model (:class:`DefaultScorer`) is a hand-set logistic model whose weights are listed and justified
in ``docs/scoring.md``; it needs no training data and scores in about a microsecond. A shop plugs in its own
model by passing any object with a ``score(cart, features) -> Assessment`` method (the :class:`Scorer`
protocol). A scorer that raises, answers outside [0, 1] or names a reason that is not a :data:`Reason` is
contained: the cart is scored by the default model instead, and the failure is counted and logged.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Final, Protocol, get_args, runtime_checkable

import msgspec

from ._pipeline import Stage
from .cart import CartSnapshot, CheckoutSignals
from .events import CheckoutStep
from .items import Abandoned, Features, Reason, Scored
from .money import minor_unit_exponent
from .reasons import ReasonRules

__all__ = ["Assessment", "DefaultScorer", "Features", "Score", "Scored", "Scorer", "features_of"]

_NO_SIGNALS: Final = CheckoutSignals()
#: Flows select on reasons: a reason outside this set from a shop's model would slip past every such flow.
_REASONS: Final = frozenset(get_args(Reason))


class Assessment(msgspec.Struct, frozen=True):
    """A scorer's answer: conversion probability in [0, 1] and the likely abandonment reason."""

    probability: float
    reason: Reason


@runtime_checkable
class Scorer(Protocol):
    """A conversion model. Called in the engine's event loop: it must be fast and must not block."""

    def score(self, cart: CartSnapshot, features: Features) -> Assessment: ...


def features_of(abandoned: Abandoned) -> Features:
    """Compute the model features of an abandoned cart."""
    cart = abandoned.cart
    major = cart.value / 10 ** minor_unit_exponent(cart.currency)
    checkout = (cart.last_at - cart.checkout_at) if cart.checkout_at is not None else 0.0
    ratio = cart.shipping / cart.value if cart.shipping is not None and cart.value > 0 else 0.0
    signals = cart.signals if cart.signals is not None else _NO_SIGNALS
    return Features(
        value=major,
        lines=len(cart.lines),
        quantity=cart.quantity,
        step=int(cart.step),
        checkout_seconds=max(checkout, 0.0),
        session_seconds=max(cart.last_at - cart.started_at, 0.0),
        returning=cart.returning,
        identified=cart.customer_id is not None,
        payment_failures=cart.payment_failures,
        form_errors=cart.form_errors,
        exit_intent=cart.exit_intents > 0,
        shipping_ratio=ratio,
        item_views=cart.item_views,
        views=cart.views,
        trigger=abandoned.trigger,
        dead_clicks=signals.dead_clicks,
        slow_steps=signals.slow_steps,
        tab_aways=signals.tab_aways,
        hidden_seconds=signals.hidden_seconds,
        longest_form_step=signals.longest_form_step,
        signals=cart.signals is not None,
    )


# Weights of the default model, log-odds. docs/scoring.md explains each, how they were chosen and how they rank
# carts on three public datasets; a test checks that its table shows these numbers. ``recoverkit train`` fits
# weights on a shop's own history instead.
_WEIGHTS: Final = {
    "intercept": -2.2,
    "step_checkout": 0.6,
    "step_shipping": 0.9,
    "step_payment": 1.3,
    "returning": 0.8,
    "identified": 0.3,
    "log_value": -0.08,
    "payment_failure": 0.4,
    "form_error": -0.2,
    "shipping_shock": -0.7,
    "exit_intent": -0.3,
    "log_item_views": 0.25,
    "log_session_minutes": 0.15,
    "log_checkout_minutes": 0.1,
}
_STEP_WEIGHT: Final = {
    CheckoutStep.BROWSE: 0.0,
    CheckoutStep.CART: 0.0,
    CheckoutStep.CHECKOUT: _WEIGHTS["step_checkout"],
    CheckoutStep.SHIPPING: _WEIGHTS["step_shipping"],
    CheckoutStep.PAYMENT: _WEIGHTS["step_payment"],
    CheckoutStep.PURCHASE: _WEIGHTS["step_payment"],
}


class DefaultScorer:
    """The documented default model: a hand-set logistic score and rule-based reasons.

    ``shipping_shock_ratio`` is the shipping-to-cart-value share from which shipping cost counts as a shock.
    """

    def __init__(self, shipping_shock_ratio: float = 0.1) -> None:
        self.shipping_shock_ratio = shipping_shock_ratio
        self._rules = ReasonRules(shipping_shock_ratio=shipping_shock_ratio)

    def score(self, cart: CartSnapshot, features: Features) -> Assessment:
        return Assessment(self.probability(features), self.reason(features))

    def probability(self, f: Features) -> float:
        """The default model's conversion probability: 1 / (1 + e^-z), z the sum of the weights that apply.

        More product views and a longer session raise it: engagement, the direction two of the three public
        datasets in docs/scoring.md agree on (the old "many views" penalty ranked their carts worse than
        chance). Each term is bounded or grows as a log.
        """
        w = _WEIGHTS
        z = w["intercept"] + _STEP_WEIGHT.get(CheckoutStep(f.step), 0.0)
        z += w["returning"] if f.returning else 0.0
        z += w["identified"] if f.identified else 0.0
        z += w["log_value"] * math.log1p(max(f.value, 0.0))
        z += w["payment_failure"] if f.payment_failures else 0.0
        z += w["form_error"] * min(f.form_errors, 3)
        z += w["shipping_shock"] if f.shipping_ratio >= self.shipping_shock_ratio else 0.0
        z += w["exit_intent"] if f.exit_intent else 0.0
        z += w["log_item_views"] * math.log1p(max(f.item_views, 0))
        z += w["log_session_minutes"] * math.log1p(max(f.session_seconds, 0.0) / 60.0)
        z += w["log_checkout_minutes"] * math.log1p(max(f.checkout_seconds, 0.0) / 60.0)
        return 1.0 / (1.0 + math.exp(-z))

    def reason(self, f: Features) -> Reason:
        """Most likely reason, in order of how certain the signal is: :mod:`recoverkit.reasons`' rules, with
        this scorer's ``shipping_shock_ratio``."""
        rules = self._rules
        if rules.shipping_shock_ratio != self.shipping_shock_ratio:  # the attribute was set after __init__
            rules = self._rules = ReasonRules(shipping_shock_ratio=self.shipping_shock_ratio)
        return rules.reason(f)


class Score(Stage):
    """Scores abandonments with the shop's scorer (or the default) and passes everything else on."""

    name = "score"

    def __init__(self, scorer: Scorer | None = None, *, shipping_shock_ratio: float = 0.1) -> None:
        super().__init__()
        self._default = DefaultScorer(shipping_shock_ratio)
        self._scorer: Scorer = scorer if scorer is not None else self._default
        self._scorer_name = "default" if scorer is None else type(scorer).__name__
        self.reasons: Counter[str] = Counter()
        self.scorer_failures = 0

    def handle(self, items: list[Any], out: list[Any]) -> None:
        for item in items:
            if type(item) is not Abandoned:
                out.append(item)
                continue
            try:
                out.append(self._score(item))
            except Exception:
                self.errors += 1
                self.log.exception("score_failed", cart=item.cart.cart_key)

    def _score(self, abandoned: Abandoned) -> Scored:
        features = features_of(abandoned)
        name = self._scorer_name
        try:
            assessment = self._scorer.score(abandoned.cart, features)
            if not (
                isinstance(assessment, Assessment)
                and 0.0 <= assessment.probability <= 1.0
                and assessment.reason in _REASONS
            ):
                raise ValueError(
                    "expected an Assessment with probability in [0, 1] and a known reason, "
                    f"got {assessment!r}"
                )
        except Exception as exc:
            # A shop's model must not stop recovery: fall back to the default and say so.
            self.scorer_failures += 1
            # The error's type only: a shop's exception text may quote the cart or the customer it was given.
            self.log.warning("scorer_failed", scorer=name, error=type(exc).__name__)
            assessment = self._default.score(abandoned.cart, features)
            name = "default"
        self.reasons[assessment.reason] += 1
        return Scored(
            abandoned=abandoned,
            features=features,
            probability=assessment.probability,
            reason=assessment.reason,
            scorer=name,
        )

    def extra_statistics(self) -> dict[str, Any]:
        return {"reasons": dict(self.reasons), "scorer_failures": self.scorer_failures}

    # The stage holds no state of its own, only counters, which a checkpoint carries across restarts.
    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode((self.watermark, dict(self.reasons), self.scorer_failures))

    def restore(self, state: bytes | None) -> None:
        if state is None:
            self.watermark, self.reasons, self.scorer_failures = -math.inf, Counter(), 0
            return
        watermark, reasons, failures = msgspec.msgpack.decode(state, type=tuple[float, dict[str, int], int])
        self.watermark, self.reasons, self.scorer_failures = watermark, Counter(reasons), failures
